"""The embedded default: accepted events run ``handle-event`` in a thread pool of this process
(``InlineDispatcher``), started by the outbox loop, against Prefect's temporary test server and
the emulators. An acknowledgement is published; a proposed update waits paused in its flow
run until its approval is complete, and resuming it publishes it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crisiscomms.core.database import session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.intake.models import IntakeEvent
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.testing.emulators import EmulatorPair

pytestmark = pytest.mark.integration

REF = "EVT-INLINE-1"


def _until(what: str, check: Callable[[], bool], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _event(engine: Engine, settings: Settings, stage: str, *, proposal: bool,
           **facts: Any) -> int:
    base = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
    with session_scope(engine) as session:
        row = IntakeEvent(source="alertmanager-prod", kind="alertmanager", dedup_key=stage,
                          group_key="g", status="firing",
                          outcome="propose" if proposal else "start", playbook="outage",
                          stage=stage, incident_ref=REF, proposal=proposal,
                          facts_json=json.dumps({**base, **facts, "incident_ref": REF}))
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def _run_of(engine: Engine, event_id: int) -> str | None:
    with Session(engine) as session:
        row = session.get(IntakeEvent, event_id)
        return row.flow_run_id if row is not None else None


def test_inline_dispatch_publishes_and_waits_in_process(
        prefect_server: None, workspace: tuple[Settings, Engine],
        emulators: EmulatorPair) -> None:
    from prefect import get_client

    from crisiscomms.flows.approval_resume import resume_waiting
    from crisiscomms.flows.dispatch import InlineDispatcher, OutboxLoop
    from crisiscomms.identity.identities import system_identity
    from crisiscomms.incident.flow_waits import open_waits
    from crisiscomms.incident.service import approve, get_incident

    settings, engine = workspace
    dispatcher = InlineDispatcher(max_workers=2)
    loop = OutboxLoop(engine, dispatcher, poll_s=5.0).start()
    try:
        ack = _event(engine, settings, "acknowledge", proposal=False)
        loop.wake()  # not the 5 s poll: at once
        _until("the acknowledgement dispatched", lambda: _run_of(engine, ack) is not None, 10)
        run_ack = _run_of(engine, ack)
        assert run_ack is not None
        done = dispatcher.futures[run_ack].result(timeout=120)
        assert done["waited"] is False and done["published"]["errors"] == []
        assert done["published"]["channels"]["status_page"]["sent"] >= 1
        assert emulators.sendgrid.stats()["recipients"] == 1000

        update = _event(engine, settings, "update", proposal=True,
                        next_update_at="2026-11-23T11:00:00+00:00")
        loop.wake()
        _until("the update dispatched", lambda: _run_of(engine, update) is not None, 10)
        run_u = _run_of(engine, update)
        assert run_u is not None

        def waiting() -> bool:
            with session_scope(engine) as session:
                incident_id = get_incident(session, REF).id
                assert incident_id is not None
                waits = open_waits(session, incident_id, "update")
            if not waits:
                return False
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(uuid.UUID(waits[0].flow_run_id)).state
            return state is not None and state.is_paused()

        _until("the update's run to pause", waiting)
        assert not dispatcher.futures[run_u].done()
        assert emulators.sendgrid.stats()["recipients"] == 1000  # nothing of the update sent

        bundle = approve(engine, incident_ref=REF, stage="update",
                         approver=system_identity("dana", "Dana"), settings=settings)
        outcome = resume_waiting(engine, bundle, approved_by="dana")
        assert outcome.resumed == (run_u,) and outcome.lines() == [
            f"flow run {run_u} resumed; it publishes"]
        result = dispatcher.futures[run_u].result(timeout=120)
        assert result["waited"] is True and result["published"]["errors"] == []
        assert emulators.sendgrid.stats()["recipients"] == 2000
        assert emulators.sendgrid.stats()["duplicates"] == 0
        with session_scope(engine) as session:
            incident_id = get_incident(session, REF).id
            assert incident_id is not None
            assert open_waits(session, incident_id, "update") == []
    finally:
        loop.stop()
        dispatcher.shutdown()
