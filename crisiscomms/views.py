"""Read models for the dashboard and CLI: engine functions, aggregates computed in SQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from crisiscomms.db import session_scope
from crisiscomms.ledger import ChannelCounts, counts_by_incident
from crisiscomms.models import Incident, Message


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


def holding_statements(engine: Engine, incident_id: int) -> dict[str, str]:
    """The newest approved support holding statement of an incident, by locale."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(Message)
            .where(Message.incident_id == incident_id, Message.channel == "support")
            .order_by(col(Message.id).desc())
        ).all()
        out: dict[str, str] = {}
        for m in rows:
            out.setdefault(m.locale, json.loads(m.parts_json).get("text", ""))
        return out
