"""Read views of the audit trail (the admins' page, the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.identity.models import AuditEvent
from crisiscomms.incident.models import Incident


@dataclass(frozen=True)
class AuditRow:
    at: datetime
    actor: str
    action: str
    incident_ref: str | None
    detail: str


def audit_trail(engine: Engine, *, action_prefix: str | None = None,
                incident_ref: str | None = None, limit: int = 500) -> list[AuditRow]:
    """The newest ``limit`` audit rows, optionally of one action family or incident."""
    query = (select(AuditEvent, Incident.ref)
             .join(Incident, col(Incident.id) == col(AuditEvent.incident_id), isouter=True)
             .order_by(col(AuditEvent.id).desc()).limit(limit))
    if action_prefix:
        query = query.where(col(AuditEvent.action).startswith(action_prefix, autoescape=True))
    if incident_ref:
        query = query.where(Incident.ref == incident_ref)
    with Session(engine) as session:
        return [AuditRow(event.at, event.actor, event.action, ref, event.detail_json)
                for event, ref in session.exec(query).all()]
