"""The production set-up, for real: ``prefect server start`` on PostgreSQL, a process work pool,
our flows deployed by ``flows/deploy.py``, two ``prefect worker start`` processes, our tables on
PostgreSQL; an outage acknowledgement to 2,000 recipients fans out as chunk flow runs that both
workers pick up, and every recipient gets the email exactly once.

Takes about a minute (server start with its migrations, two workers, a subprocess per flow
run). Every wait has a deadline; every process this starts is ended in ``finally``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from live_processes import Processes, api_healthy, child_environment, wait_until
from repo_paths import PROJECT_ROOT
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from crisiscomms.identity.identities import system_identity
from crisiscomms.testing.drill import workspace_environment
from crisiscomms.testing.emulators import EmulatorPair
from crisiscomms.testing.pgcluster import free_port

pytestmark = pytest.mark.integration

SENDGRID_KEY = "SG.integration-test-key"  # the keys the session's emulators accept
X_TOKEN = "x-integration-test-token"
RECIPIENTS = 2000
EMAIL_BATCH = 100  # recipients per ledger row / SendGrid request: 20 rows
ROWS_PER_CHUNK = 4  # ledger rows per chunk flow run: 5 chunks of 400 recipients
POOL = "crisiscomms-test"
WORKERS = ("worker-a", "worker-b")


@pytest.fixture
def stack(pg_cluster: Any, emulators: EmulatorPair, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """PostgreSQL databases, a Prefect server on one of them, the CRISISCOMMS_* environment."""
    suffix = uuid.uuid4().hex[:8]
    ours = str(pg_cluster.create_database(f"cc_{suffix}"))
    pg_cluster.create_database(f"prefect_{suffix}")
    prefect_db = pg_cluster.url(f"prefect_{suffix}", driver="asyncpg")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    emulators.reset()
    crisis_env = {
        **workspace_environment(tmp_path / "data", emulators, SENDGRID_KEY, X_TOKEN,
                                database_url=ours),
        "CRISISCOMMS_MAX_ATTEMPTS": "2",
        "CRISISCOMMS_HTTP_TIMEOUT_S": "5",
        "CRISISCOMMS_EMAIL_BATCH_SIZE": str(EMAIL_BATCH),
        "CRISISCOMMS_BATCHES_PER_TASK": str(ROWS_PER_CHUNK),
    }
    env = child_environment(tmp_path / "prefect-home", api, crisis_env, worker_query_s="1")
    for key, value in crisis_env.items():
        monkeypatch.setenv(key, value)

    procs = Processes(tmp_path)
    try:
        procs.start("server", [sys.executable, "-m", "prefect", "server", "start",
                               "--host", "127.0.0.1", "--port", str(port)],
                    {**env, "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db})
        wait_until("the Prefect server on PostgreSQL", api_healthy(api), 180, procs)
        yield {"api": api, "env": env, "procs": procs, "db_url": ours}
    finally:
        procs.stop_all()


def test_two_process_workers_share_the_fan_out_and_send_each_recipient_once(
    stack: dict[str, Any], emulators: EmulatorPair
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.channels.registry import configured_rates
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.delivery.ledger import channel_counts, pending_by_channel
    from crisiscomms.delivery.models import Delivery
    from crisiscomms.flows.deploy import BATCHES_DEPLOYMENT, STAGE_DEPLOYMENT, deploy
    from crisiscomms.incident.service import trigger
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.testing.audiences import ensure_drill_audience

    procs: Processes = stack["procs"]
    with temporary_settings(updates={PREFECT_API_URL: stack["api"]}):
        made = deploy(POOL, rates={"email": 200.0, "x": 5.0})
        assert made["work_pool_type"] == "process"
        # the two given, and every channel whose own setting has a rate (Mastodon 1/s...)
        assert set(made["rate_limits"]) == {"email", "x"} | {
            channel for channel, rate in configured_rates(Settings()).items() if rate}
        for name in WORKERS:
            procs.start(name, [sys.executable, "-m", "prefect", "worker", "start",
                               "--pool", POOL, "--type", "process", "--name", name,
                               "--limit", "2"], stack["env"])

        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        engine = make_engine(settings.resolved_database_url)
        init_db(engine)
        with session_scope(engine) as session:
            ensure_drill_audience(session, RECIPIENTS)
        facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
        bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                         facts=facts, actor=system_identity("test"))
        assert bundle.approved  # the acknowledgement is auto_send

        def workers_online() -> bool:
            with get_client(sync_client=True) as client:
                online = {w.name for w in client.read_workers_for_work_pool(
                    POOL, offset=0, limit=50)
                          if str(w.status).lower().endswith("online")}
            return set(WORKERS) <= online

        wait_until("two workers online", workers_online, 120, procs)

        # _sync: Playwright's sync API (the e2e tests, same process) leaves a running loop
        parent: Any = run_deployment(STAGE_DEPLOYMENT, parameters={  # type: ignore[call-arg]
            "incident_ref": bundle.incident_ref, "stage": bundle.stage}, timeout=0, _sync=True)

        def final(run_id: Any) -> Callable[[], bool]:
            def check() -> bool:
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(run_id).state
                return state is not None and state.is_final()
            return check

        wait_until("the publish-stage flow run", final(parent.id), 300, procs, interval_s=1)
        with get_client(sync_client=True) as client:
            parent_run = client.read_flow_run(parent.id)
            chunks = client.read_flow_runs(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=[BATCHES_DEPLOYMENT.split("/")[1]])),
                sort=FlowRunSort.ID_DESC, offset=0, limit=200)
        assert parent_run.state is not None and parent_run.state.is_completed(), (
            f"{parent_run.state}\n" + "\n".join(procs.log(n) for n in procs.started))
        assert parent_run.labels.get("prefect.worker.name") in WORKERS

        # The ledger: every recipient sent once, nothing left planned or sending.
        with session_scope(engine) as session:
            counts = channel_counts(session, bundle.incident_id)
            assert bundle.incident_id is not None
            assert pending_by_channel(session, bundle.incident_id) == {}
            ids = [int(i) for i in session.exec(select(col(Delivery.id)).where(
                col(Delivery.incident_id) == bundle.incident_id,
                col(Delivery.channel) == "email"))]
        email_rows = len(ids)
        assert counts["email"]["sent"] == RECIPIENTS, counts
        assert counts["email"]["failed"] == 0 and counts["x"]["sent"] >= 1
        assert counts["x"]["failed"] == 0 and counts["status_page"]["sent"] >= 1
        sg = emulators.sendgrid.stats()
        assert sg["recipients"] == RECIPIENTS and sg["duplicates"] == 0

        # The drill subscribers have mobile numbers: one SMS each, one row each, chunked by
        # single_rows_per_task (one chunk of 2,000), each sent once.
        assert counts["sms"]["sent"] == RECIPIENTS and counts["sms"]["failed"] == 0
        tw = emulators.twilio.stats()
        assert tw["accepted_messages"] == RECIPIENTS and tw["duplicates"] == 0

        # The fan-out ran as chunk flow runs spread over both workers.
        expected_chunks = -(-email_rows // ROWS_PER_CHUNK) + 1  # the email chunks, the SMS one
        assert email_rows == RECIPIENTS // EMAIL_BATCH
        assert len(chunks) == expected_chunks
        assert all(c.state is not None and c.state.is_completed() for c in chunks)
        ran_by = {c.labels.get("prefect.worker.name") for c in chunks}
        assert ran_by == set(WORKERS), ran_by

        # Two workers handed the same rows at once: the claim lets one send, never both.
        replays = [run_deployment(BATCHES_DEPLOYMENT, timeout=0, _sync=True,  # type: ignore[call-arg]
                                  parameters={"channel": "email", "delivery_ids": ids})
                   for _ in range(2)]
        for run in replays:
            wait_until("a replayed chunk", final(run.id), 180, procs, interval_s=1)
        sg = emulators.sendgrid.stats()
        assert sg["recipients"] == RECIPIENTS and sg["duplicates"] == 0
        with session_scope(engine) as session:
            assert channel_counts(session, bundle.incident_id)["email"]["sent"] == RECIPIENTS
        engine.dispose()


def _planned_email_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ref: str,
                        recipients: int) -> tuple[Engine, list[int]]:
    """A database with ``recipients`` drill subscribers and one English email message of
    incident ``ref`` planned in 1,000-recipient rows; the engine and the row ids, in order."""
    from crisiscomms.audience.recipients import insert_recipients
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.delivery.contract import CUSTOMER_LIST
    from crisiscomms.delivery.ledger import plan_messages
    from crisiscomms.delivery.models import Delivery
    from crisiscomms.incident.models import Incident, Message
    from crisiscomms.testing.audiences import drill_recipients

    url = f"sqlite:///{tmp_path / (ref.lower() + '.db')}"
    monkeypatch.setenv("CRISISCOMMS_DATABASE_URL", url)
    engine = make_engine(url)
    init_db(engine)
    with session_scope(engine) as s:
        insert_recipients(s, drill_recipients(recipients))
        inc = Incident(ref=ref, playbook="outage", title="t", severity="major")
        s.add(inc)
        s.flush()
        assert inc.id is not None
        msg = Message(incident_id=inc.id, stage="acknowledge", facts_version=1, channel="email",
                      locale="en", parts_json="{}", content_hash="h", template_hashes_json="{}")
        s.add(msg)
        s.flush()
        plan_messages(s, incident_ref=ref, facts_hash="f" * 64, messages=[msg],
                      audiences={"email": CUSTOMER_LIST}, locales=("en",), default_locale="en",
                      batch_size=1000)
    with session_scope(engine) as s:
        ids = [int(i) for i in s.exec(select(col(Delivery.id)).order_by(col(Delivery.id)))]
    return engine, ids


def test_prefect_yaml_declares_what_deploy_py_makes() -> None:
    """prefect.yaml (for ``prefect deploy --all``) and flows/deploy.py must not drift: same
    deployment names, entrypoints that exist, parameters the flows accept, same rate limits."""
    import importlib
    import inspect

    import yaml

    from crisiscomms.core.settings import Settings
    from crisiscomms.flows import deploy as deploy_script

    spec = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    made: set[str] = set()
    for dep in spec["deployments"]:
        path, name = dep["entrypoint"].split(":")
        assert (PROJECT_ROOT / path).is_file()
        module = importlib.import_module(f"crisiscomms.flows.{Path(path).stem}")
        flow_obj = getattr(module, name)
        made.add(f"{flow_obj.name}/{dep['name']}")
        accepted = set(inspect.signature(flow_obj.fn).parameters)
        assert set(dep.get("parameters", {})) <= accepted, dep["name"]
        params = dep.get("parameters", {})
        if "batches_deployment" in params:
            assert params["batches_deployment"] == deploy_script.BATCHES_DEPLOYMENT
        if "rate_limits" in params:
            assert params["rate_limits"] == deploy_script.rate_limit_names()
    assert made == {deploy_script.STAGE_DEPLOYMENT, deploy_script.BATCHES_DEPLOYMENT,
                    deploy_script.RESUME_DEPLOYMENT,
                    Settings.model_fields["intake_deployment"].default}


def test_the_parent_reads_chunk_outcomes_from_the_ledger_and_stops_waiting_when_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No server: the lane's poll is stubbed; what it reports comes from the Delivery rows."""
    from crisiscomms.core.database import session_scope
    from crisiscomms.delivery.contract import DeliveryResult
    from crisiscomms.delivery.ledger import claim, record
    from crisiscomms.flows import run_playbook

    engine, ids = _planned_email_rows(tmp_path, monkeypatch, "INC-LANE", 2500)
    with session_scope(engine) as s:
        assert len(ids) == 3
        claim(s, ids[:2])
        record(s, ids[0], DeliveryResult.sent("p1"), 1)
        record(s, ids[1], DeliveryResult.permanent("400 bad"), 1)

    lane = run_playbook._DeploymentLane("publish-batches/x", poll_s=0.01, wait_s=0.05)
    monkeypatch.setattr(lane, "_poll", lambda: None)  # the run never becomes final
    out = lane._wait("run-1", "email", ids)
    assert (out["sent"], out["failed"]) == (1000, 1000), out
    assert any("400 bad" in e for e in out["errors"])
    assert any("not final after 0.05 s" in e and "500 recipients not settled" in e
               for e in out["errors"]), out["errors"]

    lane._final["run-2"] = ("Completed", 1.0, 2.0)
    done = lane._wait("run-2", "email", ids[:1])
    assert done == {"channel": "email", "sent": 1000, "failed": 0, "skipped": 0,
                    "unconfirmed": 0, "deferred": 0, "errors": [], "started": 1.0,
                    "finished": 2.0}
    engine.dispose()


def test_the_parent_counts_the_recipients_split_out_of_a_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipient split out of a batch (over SendGrid's limit) is on a row of its own that
    the chunk's ids do not name: the parent still reads it (999 sent, 1 failed, its reason)."""
    from crisiscomms.core.database import session_scope
    from crisiscomms.delivery.contract import DeliveryResult
    from crisiscomms.delivery.ledger import claim, record, split_out
    from crisiscomms.delivery.models import Delivery
    from crisiscomms.flows import run_playbook

    engine, ids = _planned_email_rows(tmp_path, monkeypatch, "INC-SPLIT", 2000)
    with session_scope(engine) as s:
        first = s.get(Delivery, ids[0])
        assert first is not None
        big = int(first.recipient_ids.split(",")[7])
        claim(s, ids)
        assert split_out(s, ids[0], {big: f"recipient {big}: over 10,000 bytes"}) == [big]
        record(s, ids[0], DeliveryResult.sent("p1"), 1)
        record(s, ids[1], DeliveryResult.sent("p2"), 1)

    out = run_playbook._ledger_report("email", ids[:1], "chunk", 1.0, 2.0)
    assert (out["sent"], out["failed"]) == (999, 1), out
    assert out["errors"] == [f"email batch 0: recipient {big}: over 10,000 bytes"]
    both = run_playbook._ledger_report("email", ids, "chunk", 1.0, 2.0)
    assert (both["sent"], both["failed"]) == (1999, 1), both
    engine.dispose()
