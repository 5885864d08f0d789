"""Read models for the dashboard and CLI: engine functions, aggregates computed in SQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from crisiscomms.core.database import session_scope
from crisiscomms.delivery.ledger import ChannelCounts, FailureRow, counts_by_incident, failures
from crisiscomms.incident.models import Incident, Message


@dataclass(frozen=True)
class IncidentRow:
    id: int
    ref: str
    playbook: str
    title: str
    severity: str
    status: str
    drill: bool
    created_at: datetime
    counts: ChannelCounts


def incident_overview(engine: Engine, *, limit: int = 100) -> list[IncidentRow]:
    """Newest incidents first, each with recipients per channel and delivery state."""
    with session_scope(engine) as session:
        incidents = session.exec(
            select(Incident).order_by(col(Incident.created_at).desc()).limit(limit)
        ).all()
        counts = counts_by_incident(session)
        return [
            IncidentRow(i.id or 0, i.ref, i.playbook, i.title, i.severity, str(i.status), i.drill,
                        i.created_at, counts.get(i.id or 0, {}))
            for i in incidents
        ]


def holding_statements(engine: Engine, incident_id: int, channel: str) -> dict[str, str]:
    """The newest text of an incident on ``channel`` (the support desk's: the holding
    statement agents give), by locale."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(Message)
            .where(Message.incident_id == incident_id, Message.channel == channel)
            .order_by(col(Message.id).desc())
        ).all()
        out: dict[str, str] = {}
        for m in rows:
            out.setdefault(m.locale, json.loads(m.parts_json).get("text", ""))
        return out


def delivery_failures(engine: Engine, incident_ref: str | None = None, *,
                      limit: int = 500) -> list[FailureRow]:
    """Failed and unconfirmed deliveries with the provider's reason (the dashboard's failure
    list and ``crisiscomms failures``)."""
    from crisiscomms.incident.service import get_incident

    with session_scope(engine) as session:
        incident_id = get_incident(session, incident_ref).id if incident_ref else None
        return failures(session, incident_id, limit=limit)


def retry_failed(engine: Engine, incident_ref: str, *, channel: str | None = None,
                 include_unconfirmed: bool = False,
                 publish: Callable[[str], Mapping[str, Any]] | None = None,
                 ) -> tuple[int, Mapping[str, Any] | None]:
    """The one-click retry: put failed rows (and, after a human checked the provider,
    unconfirmed ones) back to planned under the same idempotency keys, then publish them with
    ``publish(incident_ref)`` when given (``crisiscomms.flows.run_playbook.run_resume``). Returns
    (recipients re-queued, publish result)."""
    from crisiscomms.delivery.ledger import requeue
    from crisiscomms.delivery.models import DeliveryState
    from crisiscomms.incident.service import audit, get_incident

    states = [DeliveryState.failed]
    if include_unconfirmed:
        states.append(DeliveryState.unconfirmed)
    with session_scope(engine) as session:
        incident = get_incident(session, incident_ref)
        assert incident.id is not None
        count = requeue(session, incident.id, channel=channel, states=states)
        audit(session, "retry", "deliveries.requeued", incident.id, channel=channel,
              recipients=count, unconfirmed=include_unconfirmed)
    return count, (publish(incident_ref) if publish is not None and count else None)
