"""Flow runs waiting for an approval (``flows/handle_event.py``), recorded so the faces that
approve (``crisiscomms approve``, the dashboard) know which run to resume.

A flow run records its wait (:func:`open_wait`) *before* it pauses, so an approval that lands
between the two still finds it; the run ends it (:func:`end_waits`) when it has published, or
the face that approved ends it when it had to publish in-process because the run was gone.
Resuming is a face's job (Prefect is not imported here); the database stays the truth: a run
resumed without a complete approval in our tables sends nothing and waits again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.core.clock import as_utc, utcnow
from crisiscomms.core.database import session_scope
from crisiscomms.incident.models import FlowWait


def open_wait(engine: Engine, *, incident_id: int, stage: str, bundle_hash: str,
              flow_run_id: str) -> FlowWait:
    """The open wait of ``flow_run_id`` for this bundle (made if there is none): one row per
    run and bundle, however many times the run pauses again."""
    with session_scope(engine) as session:
        row = session.exec(select(FlowWait).where(
            FlowWait.flow_run_id == flow_run_id, FlowWait.bundle_hash == bundle_hash,
            FlowWait.incident_id == incident_id, FlowWait.stage == stage,
            col(FlowWait.ended_at).is_(None))).first()
        if row is None:
            row = FlowWait(incident_id=incident_id, stage=stage, bundle_hash=bundle_hash,
                           flow_run_id=flow_run_id)
            session.add(row)
            session.flush()
        return row


def open_waits(session: Session, incident_id: int, stage: str) -> list[FlowWait]:
    """The runs still waiting for this stage's approval, oldest first."""
    return list(session.exec(select(FlowWait).where(
        FlowWait.incident_id == incident_id, FlowWait.stage == stage,
        col(FlowWait.ended_at).is_(None)).order_by(col(FlowWait.id))).all())


def end_waits(engine: Engine, *, incident_id: int, stage: str, how: str,
              flow_run_id: str | None = None) -> int:
    """End the open waits of a stage (only ``flow_run_id``'s when given); how many ended.
    ``how``: ``published`` (the run published), ``published_in_process`` (the approving face
    did, the run being gone), ``superseded``..."""
    with session_scope(engine) as session:
        rows = open_waits(session, incident_id, stage)
        now = utcnow()
        ended = 0
        for row in rows:
            if flow_run_id is not None and row.flow_run_id != flow_run_id:
                continue
            row.ended_at, row.ended_how = now, how[:32]
            ended += 1
        return ended


def note_reminder(engine: Engine, wait_id: int) -> FlowWait:
    """Count one reminder sent for this wait."""
    with session_scope(engine) as session:
        row = session.get(FlowWait, wait_id)
        if row is None:
            raise LookupError(f"flow wait {wait_id} does not exist")
        row.reminders += 1
        row.reminded_at = utcnow()
        return row


def waited_s(wait: FlowWait, now: datetime | None = None) -> float:
    """Seconds since the run started waiting."""
    return max(0.0, ((now or utcnow()) - as_utc(wait.created_at)).total_seconds())
