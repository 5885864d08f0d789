"""Where each incident's latest stage stands: awaiting approval, half-approved, approved but not
published, or out. The approvals queue and the PR lead's command centre read it.

Only an incident's **latest** stage can be acted on: once a later stage is triggered (the
resolution after an unapproved update), the earlier bundle is superseded, and approving it would
publish words the incident has moved past. "Latest" is the stage of the incident's last
``stage.triggered`` audit event (a stage re-triggered with unchanged facts stores no new message,
but it is the one the PR lead asked for last); its bundle is the stage's newest fact-sheet
version (``service.load_bundle``), exactly what ``approve`` would approve.

No Streamlit here: the dashboard's pages call these functions, and so do the tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.core.clock import as_utc
from crisiscomms.core.database import session_scope
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.delivery.ledger import ChannelCounts
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.identity.models import AuditEvent
from crisiscomms.incident.models import FactSheetVersion, Incident, IncidentStatus, Message
from crisiscomms.incident.service import (
    StageBundle,
    bundle_trigger,
    first_approval,
    load_bundle,
)
from crisiscomms.playbook.loader import Playbook, playbook_on_disk

TRIGGERED = "stage.triggered"


@dataclass(frozen=True)
class LatestStage:
    """An incident's latest stage and its bundle's state."""

    incident_id: int
    incident_ref: str
    title: str
    playbook: str
    drill: bool
    incident_status: str
    stage: str
    stage_title: str | None
    facts_version: int
    bundle_hash: str
    required: int | None
    """People the playbook's approval rule asks for (1, or 2 under the two-person rule); None
    when the playbook cannot be read."""
    triggered_by: str | None
    """The identity id that triggered this exact bundle (audit ``stage.triggered``)."""
    triggered_by_name: str | None
    triggered_at: datetime | None
    first_approver: str | None
    """The identity id of a recorded first of two approvals, else None."""
    first_approved_at: datetime | None
    approver: str | None
    """Who approved the bundle (``a + b`` under the two-person rule; the playbook's policy for
    an ``auto_send`` stage); None while it awaits approval."""
    rollout: ChannelCounts
    """This bundle's deliveries: recipients per channel and state (empty: nothing planned)."""

    @property
    def awaiting_approval(self) -> bool:
        return self.approver is None

    @property
    def waiting_for_second(self) -> bool:
        return self.awaiting_approval and self.first_approver is not None

    @property
    def unpublished(self) -> bool:
        """Approved, and not (completely) handed to the channels: never planned, or rows still
        planned (a publish that stopped half-way, or a stage held behind the status page)."""
        if self.awaiting_approval:
            return False
        return not self.rollout or any(c.get(DeliveryState.planned.value, 0)
                                       for c in self.rollout.values())


def latest_stages(engine: Engine, *, playbooks_dir: Path | None = None,
                  limit: int = 200) -> list[LatestStage]:
    """Every incident's latest stage (newest incidents first, at most ``limit``), with who
    triggered it, its approvals and its rollout. ``playbooks_dir``: where the approval rules and
    stage titles are read (default: the settings')."""
    if playbooks_dir is None:
        from crisiscomms.core.settings import Settings

        playbooks_dir = Settings().playbooks_dir
    books: dict[str, Playbook | None] = {}
    out: list[LatestStage] = []
    with session_scope(engine) as session:
        incidents = session.exec(
            select(Incident).order_by(col(Incident.created_at).desc(), col(Incident.id).desc())
            .limit(limit)).all()
        stages = _latest_triggered(session, [i.id for i in incidents if i.id is not None])
        for incident in incidents:
            stage = stages.get(incident.id or 0)
            if stage is None:
                continue
            try:
                bundle = load_bundle(session, incident, stage)
            except CrisisCommsError:  # a stage whose messages are gone: nothing to act on
                continue
            if incident.playbook not in books:
                books[incident.playbook] = _playbook(incident.playbook, playbooks_dir)
            out.append(_latest(session, incident, bundle, books[incident.playbook]))
    return out


def approval_queue(engine: Engine, *, playbooks_dir: Path | None = None) -> list[LatestStage]:
    """The stage bundles awaiting approval (each incident's latest stage, latest fact-sheet
    version, not approved), newest incidents first."""
    return [s for s in latest_stages(engine, playbooks_dir=playbooks_dir) if s.awaiting_approval]


def awaiting_publication(engine: Engine, *,
                         playbooks_dir: Path | None = None) -> list[LatestStage]:
    """Approved latest stages not (completely) published: what a "Publish" button is for."""
    return [s for s in latest_stages(engine, playbooks_dir=playbooks_dir) if s.unpublished]


def bundle_rollout(engine: Engine, incident_ref: str, stage: str) -> ChannelCounts:
    """Recipients per channel and state of a stage's current bundle (the result an approval
    that published it shows)."""
    from crisiscomms.incident.service import get_incident

    with session_scope(engine) as session:
        bundle = load_bundle(session, get_incident(session, incident_ref), stage)
        return _rollout(session, bundle.message_ids)


def next_update_due(engine: Engine, incident_ids: Iterable[int]) -> dict[int, datetime]:
    """Per incident, the next update its latest **published** words promise (UTC): the fact
    sheet of the newest message with a sent delivery. Resolved incidents promise none."""
    ids = list(incident_ids)
    if not ids:
        return {}
    with session_scope(engine) as session:
        newest = session.execute(
            select(col(Message.incident_id), func.max(col(Message.id)))
            .join(Delivery, col(Delivery.message_id) == col(Message.id))
            .where(col(Message.incident_id).in_(ids), col(Delivery.state) == DeliveryState.sent)
            .group_by(col(Message.incident_id))).all()
        out: dict[int, datetime] = {}
        for incident_id, message_id in newest:
            message = session.get(Message, message_id)
            incident = session.get(Incident, incident_id)
            if message is None or incident is None or incident.status in (
                    IncidentStatus.resolved, IncidentStatus.postmortem):
                continue
            facts = session.exec(select(FactSheetVersion).where(
                FactSheetVersion.incident_id == incident_id,
                FactSheetVersion.version == message.facts_version)).one()
            due = json.loads(facts.facts_json).get("next_update_at")
            if due:
                out[int(incident_id)] = as_utc(datetime.fromisoformat(due))
        return out


def _latest_triggered(session: Session, incident_ids: list[int]) -> dict[int, str]:
    """Incident id → the stage of its last ``stage.triggered`` event."""
    if not incident_ids:
        return {}
    last = select(func.max(col(AuditEvent.id))).where(
        col(AuditEvent.action) == TRIGGERED, col(AuditEvent.incident_id).in_(incident_ids)
    ).group_by(col(AuditEvent.incident_id))
    events = session.exec(select(AuditEvent).where(col(AuditEvent.id).in_(last))).all()
    return {int(e.incident_id or 0): str(json.loads(e.detail_json).get("stage"))
            for e in events}


def _latest(session: Session, incident: Incident, bundle: StageBundle,
            book: Playbook | None) -> LatestStage:
    event = bundle_trigger(session, bundle)
    detail = json.loads(event.detail_json) if event is not None else {}
    first = first_approval(session, bundle) if bundle.approval is None else None
    titles = {s.id: s.title for s in book.stages} if book is not None else {}
    return LatestStage(
        incident_id=bundle.incident_id, incident_ref=incident.ref, title=incident.title,
        playbook=incident.playbook, drill=incident.drill, incident_status=str(incident.status),
        stage=bundle.stage, stage_title=titles.get(bundle.stage),
        facts_version=bundle.facts_version, bundle_hash=bundle.bundle_hash,
        required=book.approvals.required if book is not None else None,
        triggered_by=event.actor if event is not None else None,
        triggered_by_name=detail.get("display_name"),
        triggered_at=as_utc(event.at) if event is not None else None,
        first_approver=first.approver if first is not None else None,
        first_approved_at=as_utc(first.created_at) if first is not None else None,
        approver=bundle.approval.approver if bundle.approval is not None else None,
        rollout=_rollout(session, bundle.message_ids) if bundle.approval is not None else {},
    )


def _rollout(session: Session, message_ids: Iterable[int]) -> ChannelCounts:
    ids = list(message_ids)
    counts: ChannelCounts = {}
    if not ids:
        return counts
    rows = session.execute(
        select(col(Delivery.channel), col(Delivery.state), func.sum(col(Delivery.recipient_count)))
        .where(col(Delivery.message_id).in_(ids))
        .group_by(col(Delivery.channel), col(Delivery.state))).all()
    for channel, state, total in rows:
        bucket = counts.setdefault(str(channel), {s.value: 0 for s in DeliveryState})
        bucket[DeliveryState(state).value] = int(total or 0)
    return counts


def _playbook(name: str, playbooks_dir: Path) -> Playbook | None:
    try:
        return playbook_on_disk(name, playbooks_dir)
    except CrisisCommsError:
        return None

