"""The outbox side of accepted events: which rows still need a flow run, and recording the run
that was started for one.

An accepted event is committed (``service.accept``) before anything is started, so a crash or a
Prefect server that is down loses nothing: ``flows/dispatch.py``'s ``OutboxLoop`` reads
:func:`pending_dispatch` until every row has its flow run. A row is marked only after its
dispatcher answered, and the Prefect dispatcher's idempotency key makes a second dispatch of the
same row the same flow run, so "dispatched twice" cannot mean "ran twice".
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from crisiscomms.core.clock import utcnow
from crisiscomms.core.database import session_scope
from crisiscomms.intake.contract import Outcome
from crisiscomms.intake.models import IntakeEvent

DISPATCHED_OUTCOMES = (Outcome.start.value, Outcome.propose.value)
"""Outcomes that run a flow (the others are recorded only)."""


def pending_dispatch(engine: Engine, limit: int = 100) -> list[IntakeEvent]:
    """Rows that should run a flow and have none yet, oldest first."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(IntakeEvent)
            .where(col(IntakeEvent.outcome).in_(DISPATCHED_OUTCOMES),
                   col(IntakeEvent.flow_run_id).is_(None))
            .order_by(col(IntakeEvent.id))
            .limit(limit)).all()
        return list(rows)


def mark_dispatched(engine: Engine, event_id: int, flow_run_id: str) -> bool:
    """Record the flow run started for ``event_id``; False when the row already had one (a
    second dispatcher got there first: its run is the one kept)."""
    with session_scope(engine) as session:
        result = session.execute(
            update(IntakeEvent)
            .where(col(IntakeEvent.id) == event_id, col(IntakeEvent.flow_run_id).is_(None))
            .values(flow_run_id=flow_run_id, dispatched_at=utcnow()))
        return bool(result.rowcount)  # type: ignore[attr-defined]
