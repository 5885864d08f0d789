"""An accepted event's stage runs once however often it is handled; the outbox hands out rows
without a flow run; approval waits are recorded, found and ended; reminders say who, what and
how long, escaped for each place they go."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.alerts import (
    reminder_email_parts,
    slack_reminder_payload,
    teams_reminder_payload,
)
from crisiscomms.core.database import session_scope
from crisiscomms.core.errors import FactsError
from crisiscomms.core.settings import Settings
from crisiscomms.flows.dispatch import OutboxLoop, safe_reason
from crisiscomms.identity.identities import system_identity
from crisiscomms.identity.models import AuditEvent
from crisiscomms.incident.approval_reminders import reminder_for, waited_words
from crisiscomms.incident.flow_waits import end_waits, note_reminder, open_wait, open_waits
from crisiscomms.incident.models import FactSheetVersion, FlowWait
from crisiscomms.incident.service import approve
from crisiscomms.intake.models import IntakeEvent
from crisiscomms.intake.outbox import mark_dispatched, pending_dispatch
from crisiscomms.intake.stages import run_event_stage
from crisiscomms.playbook.loader import load_playbook

REF = "EVT-UNIT-1"


def _event(engine: Engine, settings: Settings, *, stage: str = "acknowledge",
           proposal: bool = False, outcome: str = "start", **facts: Any) -> int:
    base = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
    with session_scope(engine) as session:
        row = IntakeEvent(source="grafana-prod", kind="grafana", dedup_key=f"k-{stage}",
                          group_key="g", status="firing", outcome=outcome, playbook="outage",
                          stage=stage, incident_ref=REF, proposal=proposal,
                          facts_json=json.dumps({**base, **facts, "incident_ref": REF}))
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def test_an_event_handled_twice_renders_and_records_once(engine: Engine,
                                                          settings: Settings) -> None:
    event = _event(engine, settings)
    first = run_event_stage(engine, settings, CHANNEL_CLASSES, event)
    assert first.approved  # the acknowledgement is auto_send
    again = run_event_stage(engine, settings, CHANNEL_CLASSES, event)
    assert again == first
    with Session(engine) as session:
        assert len(session.exec(select(FactSheetVersion)).all()) == 1
        triggered = session.exec(select(AuditEvent).where(
            AuditEvent.action == "stage.triggered")).all()
        assert len(triggered) == 1 and triggered[0].actor == "intake:grafana-prod"
        row = session.get(IntakeEvent, event)
        assert row is not None and row.finished_at is not None and row.error is None


def test_the_event_finds_its_own_bundle_after_a_later_update(engine: Engine,
                                                             settings: Settings) -> None:
    ack = run_event_stage(engine, settings, CHANNEL_CLASSES, _event(engine, settings))
    update = _event(engine, settings, stage="update", next_update_at="2026-11-23T11:00:00+00:00")
    first = run_event_stage(engine, settings, CHANNEL_CLASSES, update)
    assert first.facts_version == ack.facts_version + 1
    assert run_event_stage(engine, settings, CHANNEL_CLASSES, update) == first
    with Session(engine) as session:
        assert len(session.exec(select(FactSheetVersion)).all()) == 2


def test_a_proposal_is_never_auto_sent(engine: Engine, settings: Settings) -> None:
    bundle = run_event_stage(engine, settings, CHANNEL_CLASSES,
                             _event(engine, settings, proposal=True, outcome="propose"))
    assert not bundle.approved  # acknowledge is auto_send in the playbook, not for a proposal


def test_a_stage_refused_records_its_error_and_stores_nothing(engine: Engine,
                                                              settings: Settings) -> None:
    event = _event(engine, settings, next_update_at=None)
    with pytest.raises(FactsError):
        run_event_stage(engine, settings, CHANNEL_CLASSES, event)
    with Session(engine) as session:
        row = session.get(IntakeEvent, event)
        assert row is not None and row.finished_at is not None
        assert row.error and "next_update_at" in row.error
        assert session.exec(select(FactSheetVersion)).all() == []


def test_the_outbox_hands_out_rows_without_a_run_oldest_first(engine: Engine,
                                                              settings: Settings) -> None:
    a = _event(engine, settings)
    _event(engine, settings, outcome="grouped")  # recorded only: never dispatched
    b = _event(engine, settings, stage="update", outcome="propose")
    assert [r.id for r in pending_dispatch(engine)] == [a, b]
    assert [r.id for r in pending_dispatch(engine, limit=1)] == [a]
    assert mark_dispatched(engine, a, "run-a")
    assert not mark_dispatched(engine, a, "run-other")  # the first run is kept
    assert [r.id for r in pending_dispatch(engine)] == [b]
    with Session(engine) as session:
        row = session.get(IntakeEvent, a)
        assert row is not None and row.flow_run_id == "run-a" and row.dispatched_at is not None


class _Recording:
    """A Dispatcher (the contract's protocol) that starts nothing: records, or refuses with
    a message holding a credential, as an unreachable server's error might."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.started = fail, []  # type: list[int]

    def start(self, event_id: int, *, incident_ref: str, stage: str) -> str:
        if self.fail:
            raise ConnectionError("connect to https://admin:hunter2@prefect.internal/api "
                                  "failed (Authorization: Bearer sk-live-123)")
        self.started.append(event_id)
        return f"run-{event_id}"


def test_the_outbox_loop_retries_what_failed_and_logs_no_secret(
        engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    a, b = _event(engine, settings), _event(engine, settings, stage="update")
    down = OutboxLoop(engine, _Recording(fail=True))
    with caplog.at_level(logging.WARNING):
        assert down.run_once() == 0
    assert down.failures == 1 and [r.id for r in pending_dispatch(engine)] == [a, b]
    assert "hunter2" not in caplog.text and "sk-live-123" not in caplog.text
    assert f"intake event {a} not dispatched" in caplog.text
    up = _Recording()
    assert OutboxLoop(engine, up).run_once() == 2
    assert up.started == [a, b] and pending_dispatch(engine) == []
    assert OutboxLoop(engine, up).run_once() == 0


def test_safe_reason_blanks_credentials() -> None:
    text = safe_reason(RuntimeError("GET http://u:p4ss@h/api Bearer abc.def"))
    assert "p4ss" not in text and "abc.def" not in text and text.startswith("RuntimeError")


def test_waits_are_one_per_run_and_bundle_and_end(engine: Engine, settings: Settings) -> None:
    bundle = run_event_stage(engine, settings, CHANNEL_CLASSES,
                             _event(engine, settings, proposal=True))
    w1 = open_wait(engine, incident_id=bundle.incident_id, stage=bundle.stage,
                   bundle_hash=bundle.bundle_hash, flow_run_id="run-1")
    again = open_wait(engine, incident_id=bundle.incident_id, stage=bundle.stage,
                      bundle_hash=bundle.bundle_hash, flow_run_id="run-1")
    assert again.id == w1.id
    open_wait(engine, incident_id=bundle.incident_id, stage=bundle.stage,
              bundle_hash=bundle.bundle_hash, flow_run_id="run-2")
    with Session(engine) as session:
        assert [w.flow_run_id for w in open_waits(session, bundle.incident_id, "acknowledge")
                ] == ["run-1", "run-2"]
        assert open_waits(session, bundle.incident_id, "update") == []
    assert end_waits(engine, incident_id=bundle.incident_id, stage=bundle.stage,
                     how="published", flow_run_id="run-2") == 1
    assert end_waits(engine, incident_id=bundle.incident_id, stage=bundle.stage,
                     how="published_in_process") == 1
    with Session(engine) as session:
        assert open_waits(session, bundle.incident_id, "acknowledge") == []
        hows = session.exec(select(FlowWait.ended_how).order_by(col(FlowWait.id))).all()
        assert hows == ["published_in_process", "published"]


def test_a_reminder_says_who_approved_how_long_and_where(engine: Engine, settings: Settings,
                                                         tmp_path: Any) -> None:
    import shutil

    from repo_paths import PROJECT_ROOT

    books = tmp_path / "books"
    shutil.copytree(PROJECT_ROOT / "playbooks", books)
    outage = books / "outage.yaml"
    outage.write_text(outage.read_text() + "\napprovals: {required: 2}\n")
    two = settings.model_copy(update={"playbooks_dir": books})
    bundle = run_event_stage(engine, two, CHANNEL_CLASSES,
                             _event(engine, two, stage="acknowledge", proposal=True))
    approve(engine, incident_ref=REF, stage="acknowledge",
            approver=system_identity("dana", "Dana"), settings=two)  # the first of two
    wait = open_wait(engine, incident_id=bundle.incident_id, stage=bundle.stage,
                     bundle_hash=bundle.bundle_hash, flow_run_id="run-1")
    with session_scope(engine) as session:
        row = session.get(FlowWait, wait.id)
        assert row is not None
        row.created_at = row.created_at - timedelta(minutes=16)
    note_reminder(engine, wait.id or 0)
    with Session(engine) as session:
        row = session.get(FlowWait, wait.id)
        assert row is not None and row.reminders == 1
        reminder = reminder_for(session, row, playbooks_dir=books,
                                dashboard_url="https://dash.example.com/")
    assert reminder.subject == f"[{REF}] Approval needed: stage acknowledge has waited 16 min"
    assert reminder.approved_by == ("dana",) and reminder.required == 2
    assert "approved so far by: dana" in reminder.text and "(reminder 2)" in reminder.text
    assert reminder.link == f"https://dash.example.com/approvals?incident={REF}"
    assert reminder.key == f"approval-reminder-{wait.id}-2"
    assert waited_words(7300) == "2 h 1 min" and waited_words(12) == "12 s"


def test_reminder_payloads_escape_for_each_place() -> None:
    from crisiscomms.incident.approval_reminders import ApprovalReminder

    hostile = "Title <!channel> *bold* <b>&"
    reminder = ApprovalReminder(
        wait_id=1, incident_ref="R-1", incident_title=hostile, stage="update",
        bundle_hash="a" * 64, waited_s=60, reminders=0, required=1, approved_by=(),
        link="https://d.example.com/approvals?incident=R-1&x=<y>",
        subject="[R-1] Approval needed", text=f"Incident R-1 ({hostile})\nsecond line")
    slack = slack_reminder_payload(reminder)
    assert slack["blocks"][1]["text"]["type"] == "plain_text"
    assert "&lt;y&gt;" in slack["blocks"][2]["text"]["text"]
    teams = json.dumps(teams_reminder_payload(reminder))
    assert "\\\\*bold\\\\*" in teams and "\\\\<b\\\\>" in teams
    subject, text, body = reminder_email_parts(reminder)
    assert subject == "[R-1] Approval needed" and hostile in text
    assert "<b>&" not in body and "&lt;b&gt;&amp;" in body


@pytest.fixture
def no_prefect_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ``PREFECT_API_URL``, in the environment or in the settings context (where the suite's
    session-wide Prefect test server may have put one)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


@pytest.mark.usefixtures("no_prefect_server")
def test_resuming_nothing_without_a_complete_approval_or_a_server(
        engine: Engine, settings: Settings) -> None:
    from crisiscomms.flows.approval_resume import resume_waiting

    bundle = run_event_stage(engine, settings, CHANNEL_CLASSES,
                             _event(engine, settings, proposal=True))
    open_wait(engine, incident_id=bundle.incident_id, stage=bundle.stage,
              bundle_hash=bundle.bundle_hash, flow_run_id="6f1c3c52-0000-4000-8000-000000000001")
    assert resume_waiting(engine, bundle, approved_by="dana").resumed == ()  # not approved
    approved = approve(engine, incident_ref=REF, stage="acknowledge",
                       approver=system_identity("dana", "Dana"), settings=settings)
    outcome = resume_waiting(engine, approved, approved_by="dana", require_api=True)
    assert outcome.publish_here and outcome.resumed == ()
    assert outcome.lines() == ["flow run 6f1c3c52-0000-4000-8000-000000000001 could not be "
                               "resumed (no Prefect server configured (PREFECT_API_URL)); "
                               "publishing here instead"]
    with Session(engine) as session:  # the caller publishes: the wait is over
        assert open_waits(session, bundle.incident_id, "acknowledge") == []
