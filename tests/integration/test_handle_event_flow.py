"""The flow of accepted events, for real: ``prefect server start`` (SQLite) on loopback, our
deployments made by ``flows/deploy.py`` from a test workspace, a stock ``prefect worker start
--type process``, the SendGrid and X emulators and a loopback Slack receiver.

- An ``IntakeEvent`` (outcome start, the outage acknowledgement, complete facts), dispatched
  with ``PrefectDispatcher``, is published to the status page, X and email; dispatched again it
  is the same flow run and nothing is sent twice.
- An update event under the two-person rule pauses its flow run; a forged resume (the right
  hash, no approval in our database) publishes nothing and the run pauses again; one
  ``crisiscomms approve`` leaves it paused, the second resumes it and it publishes once.
- A proposed stage with a short ``CRISISCOMMS_APPROVAL_REMINDER_S`` reminds the PR lead by
  email and Slack while its run stays paused and nothing is published; once that run is
  cancelled, approving it publishes in-process and says the run could not be resumed.

Every wait has a deadline; every process this starts is ended in ``finally``.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from approvers import cli_approver
from live_processes import Processes, child_environment, wait_until
from test_listening_watch import Recorder
from typer.testing import CliRunner

from crisiscomms.testing.drill import workspace_environment
from crisiscomms.testing.emulators import EmulatorPair
from crisiscomms.testing.pgcluster import free_port

pytestmark = pytest.mark.integration

SENDGRID_KEY = "SG.integration-test-key"  # the keys the session's emulators accept
X_TOKEN = "x-integration-test-token"
POOL = "crisiscomms-intake-test"
SLACK_PATH = "/services/T000/B000/secret-slack-token"
RECIPIENTS = 20


@pytest.fixture
def intake_stack(emulators: EmulatorPair, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A workspace whose outage needs two approvers, a Prefect server, a worker, the
    ``CRISISCOMMS_*`` environment (in this process too), our deployments."""
    from crisiscomms.core.workspace import new_workspace

    ws = new_workspace(tmp_path / "ws")
    outage = ws / "playbooks" / "outage.yaml"
    outage.write_text(outage.read_text(encoding="utf-8") + "\napprovals: {required: 2}\n",
                      encoding="utf-8")
    recorder = Recorder()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    emulators.reset()
    crisis_env = {
        **workspace_environment(tmp_path / "data", emulators, SENDGRID_KEY, X_TOKEN),
        "CRISISCOMMS_WORKSPACE": str(ws),
        "CRISISCOMMS_MAX_ATTEMPTS": "2",
        "CRISISCOMMS_HTTP_TIMEOUT_S": "5",
        "CRISISCOMMS_ALERT_EMAIL_TO": "pr-lead@example.com",
        "CRISISCOMMS_ALERT_SLACK_WEBHOOK_URL": f"{recorder.url}{SLACK_PATH}",
        "CRISISCOMMS_DASHBOARD_URL": "https://dashboard.example.com",
        "CRISISCOMMS_APPROVAL_REMINDER_S": "600",
    }
    env = child_environment(tmp_path / "prefect-home", api, crisis_env, worker_query_s="1")
    for key, value in crisis_env.items():
        monkeypatch.setenv(key, value)

    procs = Processes(tmp_path)
    try:
        procs.start("server", [sys.executable, "-m", "prefect", "server", "start",
                               "--host", "127.0.0.1", "--port", str(port)],
                    {**env, "PREFECT_API_DATABASE_CONNECTION_URL":
                     f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"})

        def healthy() -> bool:
            try:
                return httpx.get(f"{api}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("the Prefect server", healthy, 180, procs)
        yield {"api": api, "env": env, "procs": procs, "ws": ws, "recorder": recorder,
               "home": tmp_path / "home"}
    finally:
        procs.stop_all()
        recorder.stop()


def _event(engine: Any, *, ref: str, stage: str, facts: dict[str, Any],
           proposal: bool = False) -> int:
    """An outbox row as the intake service stores an accepted event."""
    from crisiscomms.core.database import session_scope
    from crisiscomms.intake.models import IntakeEvent

    with session_scope(engine) as session:
        row = IntakeEvent(source="monitoring", kind="events", dedup_key=f"{ref}-{stage}",
                          group_key=ref, status="firing", outcome="propose" if proposal
                          else "start", playbook="outage", stage=stage, incident_ref=ref,
                          facts_json=json.dumps({**facts, "incident_ref": ref}),
                          proposal=proposal)
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def _state(run_id: str) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(run_id)).state


def _is(run_id: str, kind: str) -> Callable[[], bool]:
    def check() -> bool:
        state = _state(run_id)
        return state is not None and getattr(state, f"is_{kind}")()
    return check


def _sent(engine: Any, ref: str, stage: str) -> dict[str, int]:
    """Ledger rows sent per channel for one stage of one incident."""
    from sqlmodel import Session, col, select

    from crisiscomms.delivery.models import Delivery, DeliveryState
    from crisiscomms.incident.models import Incident, Message

    with Session(engine) as session:
        incident = session.exec(select(Incident).where(Incident.ref == ref)).first()
        if incident is None:
            return {}
        ids = list(session.exec(select(Message.id).where(Message.incident_id == incident.id,
                                                          Message.stage == stage)))
        rows = session.exec(select(Delivery).where(col(Delivery.message_id).in_(ids))).all()
        out: dict[str, int] = {}
        for row in rows:
            if row.state == DeliveryState.sent:
                out[row.channel] = out.get(row.channel, 0) + 1
        return out


def _reminders(emulators: EmulatorPair, recorder: Recorder) -> tuple[list[str], list[Any]]:
    mails = [str(r["subject"]) for r in emulators.sendgrid.iter_received()
             if "Approval needed" in str(r["subject"])]
    return mails, recorder.posted(SLACK_PATH)


def test_events_publish_through_prefect_and_approvals_wait_in_the_flow(
    intake_stack: dict[str, Any], emulators: EmulatorPair
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crisiscomms.audience.recipients import insert_recipients
    from crisiscomms.cli import app
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.flows.deploy import deploy
    from crisiscomms.flows.dispatch import PrefectDispatcher
    from crisiscomms.flows.handle_event import ApprovalInput
    from crisiscomms.incident.flow_waits import open_waits
    from crisiscomms.incident.service import get_incident, load_bundle
    from crisiscomms.intake.outbox import mark_dispatched, pending_dispatch
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.testing.audiences import drill_recipients

    procs: Processes = intake_stack["procs"]
    recorder: Recorder = intake_stack["recorder"]
    with temporary_settings(updates={PREFECT_API_URL: intake_stack["api"]}):
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        made = deploy(POOL, source=intake_stack["ws"], rates={"email": 200.0, "x": 5.0})
        assert settings.intake_deployment in made["deployments"]
        procs.start("worker", [sys.executable, "-m", "prefect", "worker", "start", "--pool",
                               POOL, "--type", "process", "--limit", "4"], intake_stack["env"])
        engine = make_engine(settings.resolved_database_url)
        init_db(engine)
        with session_scope(engine) as session:
            insert_recipients(session, drill_recipients(RECIPIENTS))
        facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
        dispatcher = PrefectDispatcher(settings.intake_deployment)

        # 1. the acknowledgement: out without a human, on every channel, status page first
        ack = _event(engine, ref="EVT-A", stage="acknowledge", facts=facts)
        assert [r.id for r in pending_dispatch(engine)] == [ack]
        run_a = dispatcher.start(ack, incident_ref="EVT-A", stage="acknowledge")
        assert mark_dispatched(engine, ack, run_a)
        assert pending_dispatch(engine) == []
        wait_until("the acknowledgement's flow run", _is(run_a, "final"), 240, procs, 1)
        assert _state(run_a).is_completed(), procs.log("worker")
        sent = _sent(engine, "EVT-A", "acknowledge")
        assert sent.get("status_page", 0) >= 1 and sent.get("x", 0) >= 1, sent
        assert sent.get("email", 0) >= 1, sent
        site = settings.resolved_status_page_dir / "site" / "api" / "v2" / "incidents.json"
        assert "EVT-A" in site.read_text(encoding="utf-8")
        assert emulators.x.stats()["accepted_messages"] >= 1
        before = (emulators.sendgrid.stats(), emulators.x.stats())
        assert before[0]["recipients"] == RECIPIENTS and before[0]["duplicates"] == 0

        # 2. the same event again: the same flow run (Prefect's idempotency key), nothing new
        assert dispatcher.start(ack, incident_ref="EVT-A", stage="acknowledge") == run_a
        assert not mark_dispatched(engine, ack, run_a)  # marked once
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(
                    all_=["incident:EVT-A", "stage:acknowledge"])),
                sort=FlowRunSort.ID_DESC, offset=0, limit=10)
        assert [str(r.id) for r in runs] == [run_a]
        assert (emulators.sendgrid.stats(), emulators.x.stats()) == before

        # 3. the update, two approvers: the flow run waits paused
        update = _event(engine, ref="EVT-A", stage="update", facts={
            "cause": facts["cause"], "next_update_at": "2026-11-23T10:40:00+00:00"})
        run_u = dispatcher.start(update, incident_ref="EVT-A", stage="update")
        mark_dispatched(engine, update, run_u)
        wait_until("the update's run to pause", _is(run_u, "paused"), 240, procs, 1)
        with session_scope(engine) as session:
            bundle = load_bundle(session, get_incident(session, "EVT-A"), "update")
        assert not bundle.approved

        # a forged resume (right hash, no approval in our database): nothing sent, paused again
        first_key = _state(run_u).state_details.pause_key
        resume_flow_run(uuid.UUID(run_u), run_input=ApprovalInput(  # type: ignore[call-arg]
            bundle_hash=bundle.bundle_hash, approved_by="mallory").model_dump(), _sync=True)

        def paused_again() -> bool:
            state = _state(run_u)
            return bool(state.is_paused() and state.state_details.pause_key != first_key)

        wait_until("the forged resume to pause again", paused_again, 60, procs, 0.5)
        assert _sent(engine, "EVT-A", "update") == {}

        runner = CliRunner()
        home: Path = intake_stack["home"]
        people = {"dana": cli_approver(home, "dana", "Dana (PR lead)"),
                  "lee": cli_approver(home, "lee", "Lee (legal)")}
        one = runner.invoke(app, ["approve", "EVT-A", "--stage", "update"], env=people["dana"])
        assert one.exit_code == 0, one.output
        assert "first approval" in one.output and "resumed" not in one.output
        assert _is(run_u, "paused")() and _sent(engine, "EVT-A", "update") == {}

        two = runner.invoke(app, ["approve", "EVT-A", "--stage", "update"], env=people["lee"])
        assert two.exit_code == 0, two.output
        assert f"flow run {run_u} resumed; it publishes" in " ".join(two.output.split())
        wait_until("the update's run to publish", _is(run_u, "final"), 120, procs, 1)
        assert _state(run_u).is_completed(), procs.log("worker")
        sent_u = _sent(engine, "EVT-A", "update")
        assert sent_u.get("status_page", 0) >= 1 and sent_u.get("email", 0) >= 1, sent_u
        sg = emulators.sendgrid.stats()
        assert sg["recipients"] == 2 * RECIPIENTS and sg["duplicates"] == 0
        assert emulators.x.stats()["duplicates"] == 0

        # 4. a proposed stage waits; a short reminder period reminds and keeps waiting
        proposed = _event(engine, ref="EVT-B", stage="acknowledge", facts=facts, proposal=True)
        run_b: Any = run_deployment(  # type: ignore[call-arg]
            settings.intake_deployment, parameters={"event_id": proposed}, timeout=0,
            job_variables={"env": {"CRISISCOMMS_APPROVAL_REMINDER_S": "2"}}, _sync=True)
        mark_dispatched(engine, proposed, str(run_b.id))

        def reminded_twice() -> bool:
            mails, posts = _reminders(emulators, recorder)
            return len(mails) >= 2 and len(posts) >= 2

        wait_until("two approval reminders", reminded_twice, 120, procs, 0.5)
        mails, posts = _reminders(emulators, recorder)
        assert all("[EVT-B]" in m and "acknowledge" in m for m in mails), mails
        slack_text = json.dumps(posts[0])
        assert "https://dashboard.example.com/approvals?incident=EVT-B" in slack_text
        assert "secret-slack-token" not in slack_text
        state = _state(str(run_b.id))
        assert state.is_paused() or state.is_running(), state  # between two pauses at most
        assert not state.is_final()
        assert _sent(engine, "EVT-B", "acknowledge") == {}

        # 5. the waiting run is gone (cancelled: the worker ends its process): approving
        # publishes in-process, says so, and ends the wait
        from prefect.states import Cancelling

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_b.id, Cancelling(), force=True)
        wait_until("the cancelled run to end", _is(str(run_b.id), "final"), 120, procs, 1)
        for who in ("dana", "lee"):
            done = runner.invoke(app, ["approve", "EVT-B", "--stage", "acknowledge"],
                                 env=people[who])
            assert done.exit_code == 0, done.output
        said = " ".join(done.output.split())  # the console wraps long lines
        assert f"flow run {run_b.id} could not be resumed (" in said, said
        assert "; publishing here instead" in said
        sent_b = _sent(engine, "EVT-B", "acknowledge")
        assert sent_b.get("status_page", 0) >= 1 and sent_b.get("email", 0) >= 1, sent_b
        with session_scope(engine) as session:
            incident = get_incident(session, "EVT-B")
            assert incident.id is not None
            assert open_waits(session, incident.id, "acknowledge") == []
        assert emulators.sendgrid.stats()["duplicates"] == 0
        engine.dispose()
