"""What the PR lead must know about events coming in: the ones that did not start their stage.

An accepted event is meant to start its playbook's stage within seconds. :func:`unstarted_events`
lists every event, newest first, for which that did not happen:

- ``failed``: its flow ran and the stage could not be triggered (``IntakeEvent.error``, kept
  without credentials): a fact the playbook requires is missing, the playbook does not load...
- ``not dispatched``: no flow run was started ``dispatch_grace_s`` after it was accepted: the
  dispatcher (``crisiscomms api``) is not running or cannot reach the Prefect server;
- ``not run``: its flow run was created ``run_grace_s`` ago and has not triggered the stage:
  no worker serves the work pool, or the run is stuck.

The failures page of the dashboard shows them (``dashboard/failures_page.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, or_, select

from crisiscomms.core.clock import as_utc
from crisiscomms.intake.models import IntakeEvent
from crisiscomms.intake.outbox import DISPATCHED_OUTCOMES

DISPATCH_GRACE_S = 60.0
RUN_GRACE_S = 300.0


@dataclass(frozen=True)
class UnstartedEvent:
    """One event that did not start its stage, and what to do about it."""

    event_id: int
    source: str
    kind: str
    playbook: str | None
    stage: str | None
    incident_ref: str | None
    received_at: datetime
    problem: str
    """``failed``, ``not dispatched`` or ``not run``."""
    reason: str
    flow_run_id: str | None


def unstarted_events(session: Session, *, now: datetime,
                    dispatch_grace_s: float = DISPATCH_GRACE_S,
                    run_grace_s: float = RUN_GRACE_S, limit: int = 100) -> list[UnstartedEvent]:
    """Events that failed, were never dispatched, or were dispatched and never ran (see the
    module docstring), newest first, at most ``limit``."""
    now = as_utc(now)
    undispatched_before = now - timedelta(seconds=dispatch_grace_s)
    unrun_before = now - timedelta(seconds=run_grace_s)
    rows = session.exec(
        select(IntakeEvent)
        .where(col(IntakeEvent.outcome).in_(DISPATCHED_OUTCOMES))
        .where(or_(
            col(IntakeEvent.error).is_not(None),
            (col(IntakeEvent.flow_run_id).is_(None))
            & (col(IntakeEvent.received_at) < undispatched_before),
            (col(IntakeEvent.flow_run_id).is_not(None))
            & col(IntakeEvent.finished_at).is_(None)
            & (col(IntakeEvent.dispatched_at) < unrun_before)))
        .order_by(col(IntakeEvent.id).desc())
        .limit(limit)).all()
    return [_problem(row, dispatch_grace_s, run_grace_s) for row in rows]


def _problem(row: IntakeEvent, dispatch_grace_s: float, run_grace_s: float) -> UnstartedEvent:
    assert row.id is not None
    if row.error is not None:
        problem, reason = "failed", row.error
    elif row.flow_run_id is None:
        problem = "not dispatched"
        reason = (f"no flow run started {dispatch_grace_s:g} s after it was accepted: is "
                  "`crisiscomms api` running, and can it reach the Prefect server?")
    else:
        problem = "not run"
        reason = (f"flow run {row.flow_run_id} has not triggered the stage {run_grace_s:g} s "
                  "after it was created: is a worker (`crisiscomms worker`) serving the work "
                  "pool?")
    return UnstartedEvent(event_id=row.id, source=row.source, kind=row.kind,
                         playbook=row.playbook, stage=row.stage, incident_ref=row.incident_ref,
                         received_at=row.received_at, problem=problem, reason=reason,
                         flow_run_id=row.flow_run_id)
