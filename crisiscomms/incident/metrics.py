"""Incidents at a glance, timed: the executive overview's first table.

For each incident: when it started (the fact ``started_at``), when its first message went out
(the first ledger row recorded ``sent``, any channel), when it was resolved, and when the next
update is due (the ``next_update_at`` of the newest fact sheet a message was published with;
none once resolved). Times to first acknowledgement and to resolution follow. Three small
queries whatever the audience: the incidents, one GROUP BY over the batch-grain ledger, the
fact sheets they name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, tuple_
from sqlmodel import Session, col

from crisiscomms.core.clock import as_utc
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.incident.models import FactSheetVersion, Incident, IncidentStatus, Message

CLOSED = (IncidentStatus.resolved.value, IncidentStatus.postmortem.value)


@dataclass(frozen=True)
class IncidentGlance:
    id: int
    ref: str
    title: str
    playbook: str
    severity: str
    status: str
    drill: bool
    started_at: datetime | None
    first_published_at: datetime | None
    resolved_at: datetime | None
    next_update_at: datetime | None
    """The promise of the newest published fact sheet; None once resolved or when none."""

    @property
    def time_to_first_ack(self) -> timedelta | None:
        """From the start to the first message out (None until both are known)."""
        if self.started_at is None or self.first_published_at is None:
            return None
        return self.first_published_at - self.started_at

    @property
    def time_to_resolution(self) -> timedelta | None:
        if self.started_at is None or self.resolved_at is None:
            return None
        return self.resolved_at - self.started_at

    def overdue(self, now: datetime) -> bool:
        """Whether the promised next update is late at ``now``."""
        return self.next_update_at is not None and self.next_update_at < now


def _fact_time(facts: dict[str, object], name: str) -> datetime | None:
    raw = facts.get(name)
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return as_utc(datetime.fromisoformat(raw))
    except ValueError:
        return None


def incidents_at_a_glance(session: Session, *, include_drills: bool = False,
                          limit: int = 50) -> list[IncidentGlance]:
    """Newest incidents first (drills left out unless ``include_drills``), timed."""
    stmt = select(Incident).order_by(col(Incident.created_at).desc(), col(Incident.id).desc())
    if not include_drills:
        stmt = stmt.where(col(Incident.drill).is_(False))
    incidents = list(session.execute(stmt.limit(limit)).scalars())
    ids = [i.id for i in incidents if i.id is not None]
    if not ids:
        return []
    published = {int(iid): (first, int(version)) for iid, first, version in session.execute(
        select(col(Delivery.incident_id), func.min(col(Delivery.updated_at)),
               func.max(col(Message.facts_version)))
        .join(Message, col(Message.id) == col(Delivery.message_id))
        .where(col(Delivery.incident_id).in_(ids), col(Delivery.state) == DeliveryState.sent)
        .group_by(col(Delivery.incident_id)))}
    latest = dict(session.execute(
        select(col(FactSheetVersion.incident_id), func.max(col(FactSheetVersion.version)))
        .where(col(FactSheetVersion.incident_id).in_(ids))
        .group_by(col(FactSheetVersion.incident_id))).all())
    wanted = {(iid, published[iid][1] if iid in published else int(latest[iid]))
              for iid in ids if iid in latest}
    facts: dict[int, dict[str, object]] = {}
    if wanted:
        for iid, facts_json in session.execute(
                select(col(FactSheetVersion.incident_id), col(FactSheetVersion.facts_json))
                .where(tuple_(col(FactSheetVersion.incident_id),
                              col(FactSheetVersion.version)).in_(sorted(wanted)))):
            facts[int(iid)] = json.loads(facts_json)
    out = []
    for incident in incidents:
        iid = incident.id or 0
        sheet = facts.get(iid, {})
        closed = str(incident.status) in CLOSED
        out.append(IncidentGlance(
            id=iid, ref=incident.ref, title=incident.title, playbook=incident.playbook,
            severity=incident.severity, status=str(incident.status), drill=incident.drill,
            started_at=_fact_time(sheet, "started_at"),
            first_published_at=as_utc(published[iid][0]) if iid in published else None,
            resolved_at=as_utc(incident.resolved_at) if closed else None,
            next_update_at=(None if closed or iid not in published
                            else _fact_time(sheet, "next_update_at"))))
    return out
