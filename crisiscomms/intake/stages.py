"""Run the playbook stage of one accepted event (what ``flows/handle_event.py`` does first).

The outbox row (:class:`~crisiscomms.intake.models.IntakeEvent`) holds everything: playbook,
stage, complete facts with the incident reference ``service.accept`` chose, and whether the
stage is only a proposal (a resolved alert: rendered and stored for approval, never auto-sent).

**Once per event.** A flow retry, a worker that died after the trigger committed, or a second
dispatch of the same row must not render a second fact sheet version or plan anything twice.
``trigger`` records the event's id in its ``stage.triggered`` audit row (in the same
transaction as the bundle), so :func:`run_event_stage` first looks for that row and, when it
is there, returns the bundle that event made instead of triggering again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.core.clock import utcnow
from crisiscomms.core.database import session_scope
from crisiscomms.core.errors import IncidentError
from crisiscomms.core.redaction import safe_reason
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import Channel
from crisiscomms.identity.identities import system_identity
from crisiscomms.identity.models import AuditEvent
from crisiscomms.incident.models import FactSheetVersion, Incident
from crisiscomms.incident.service import (
    StageBundle,
    bundle_approval,
    stage_messages,
    trigger,
)
from crisiscomms.intake.models import IntakeEvent
from crisiscomms.render.approvals import bundle_hash

AUDIT_KEY = "intake_event"
"""The ``stage.triggered`` audit detail naming the event that triggered the stage."""


def event_actor(source: str) -> str:
    """The identity id an event's acts are recorded under (``intake:<source>``)."""
    return f"intake:{source}"


def _read_event(engine: Engine, event_id: int) -> IntakeEvent:
    with session_scope(engine) as session:
        row = session.get(IntakeEvent, event_id)
        if row is None:
            raise IncidentError(f"intake event {event_id} does not exist", field="event_id",
                                values=(str(event_id),))
        if not row.playbook or not row.stage:
            raise IncidentError(f"intake event {event_id} ({row.outcome}) runs no playbook "
                                "stage", field="event_id", values=(str(event_id),))
        return row


def _facts(row: IntakeEvent) -> dict[str, Any]:
    facts = json.loads(row.facts_json or "{}")
    if not isinstance(facts, dict) or not facts.get("incident_ref"):
        raise IncidentError(f"intake event {row.id} has no incident_ref in its facts",
                            playbook=row.playbook, stage=row.stage, field="incident_ref")
    return facts


def bundle_of_version(session: Session, incident: Incident, stage: str,
                      facts_version: int) -> StageBundle:
    """The bundle of a stage as rendered from one fact sheet version (the one an event made,
    even when a later update rendered the stage again)."""
    assert incident.id is not None
    messages = stage_messages(session, incident.id, stage, facts_version)
    if not messages:
        raise IncidentError(f"incident {incident.ref} has no stage {stage!r} of facts version "
                            f"{facts_version}", playbook=incident.playbook, stage=stage)
    facts_row = session.exec(select(FactSheetVersion).where(
        FactSheetVersion.incident_id == incident.id,
        FactSheetVersion.version == facts_version)).one()
    return StageBundle(incident.id, incident.ref, incident.playbook, stage, facts_version,
                       facts_row.facts_hash, tuple(m.id for m in messages if m.id),
                       bundle_hash(m.content_hash for m in messages),
                       bundle_approval(session, incident.id, stage, facts_version))


def triggered_by_event(session: Session, incident_ref: str, event_id: int
                       ) -> StageBundle | None:
    """The bundle ``event_id`` already triggered, or None (never triggered, or rolled back)."""
    incident = session.exec(select(Incident).where(Incident.ref == incident_ref)).first()
    if incident is None:
        return None
    rows = session.exec(select(AuditEvent).where(
        AuditEvent.incident_id == incident.id, AuditEvent.action == "stage.triggered"
    ).order_by(col(AuditEvent.id))).all()
    for row in rows:
        detail: Mapping[str, Any] = json.loads(row.detail_json or "{}")
        if detail.get(AUDIT_KEY) == event_id:
            return bundle_of_version(session, incident, str(detail["stage"]),
                                     int(detail["facts_version"]))
    return None


def _finish(engine: Engine, event_id: int, error: str | None) -> None:
    with session_scope(engine) as session:
        row = session.get(IntakeEvent, event_id)
        if row is not None:
            row.finished_at = utcnow()
            row.error = error


def run_event_stage(engine: Engine, settings: Settings, channels: Mapping[str, type[Channel]],
                    event_id: int) -> StageBundle:
    """Trigger the stage of ``IntakeEvent`` ``event_id`` (once: a second call returns the
    bundle the first one made), recording ``finished_at`` and ``error`` on the row.

    A proposal (``row.proposal``) is never auto-approved, whatever the playbook says; the
    actor is ``intake:<source>``, so under a two-person rule two people still approve."""
    row = _read_event(engine, event_id)
    facts = _facts(row)
    with session_scope(engine) as session:
        done = triggered_by_event(session, str(facts["incident_ref"]), event_id)
    if done is not None:
        _finish(engine, event_id, None)
        return done
    assert row.playbook is not None and row.stage is not None
    try:
        bundle = trigger(engine, settings, channels, playbook_name=row.playbook, facts=facts,
                         stage=row.stage, actor=system_identity(event_actor(row.source)),
                         auto_send=not row.proposal, audit_detail={AUDIT_KEY: event_id})
    except Exception as exc:
        _finish(engine, event_id, safe_reason(exc))
        raise
    _finish(engine, event_id, None)
    return bundle
