"""The warm worker, for real: ``prefect server start`` (SQLite, loopback), our deployments
(``flows/deploy.py`` and the probe), ``crisiscomms worker --limit 2`` as a subprocess.

- an auto-sent outage acknowledgement published by a ``publish-stage`` run is Completed and on
  the status page, X and SendGrid emulators exactly once, with its email chunk run in-process too;
- a run whose flow raises ends Failed and the worker serves the next run;
- a cancelled run ends Cancelled and the worker process is alive and serving;
- two runs at once with ``--limit 2`` both run, overlapping, and complete;
- a flow that is not ours runs the stock way, in a subprocess.

One server and one worker for the module (starting them takes most of a minute on a loaded
machine). Every wait has a deadline; every process is ended in ``finally``.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from live_processes import Processes, api_healthy, child_environment, wait_until

from crisiscomms.testing.drill import workspace_environment
from crisiscomms.testing.emulators import EmulatorPair
from crisiscomms.testing.pgcluster import free_port

pytestmark = pytest.mark.integration

SENDGRID_KEY = "SG.integration-test-key"  # the keys the session's emulators accept
X_TOKEN = "x-integration-test-token"
POOL = "crisiscomms-warm-test"
WORKER = "warm-a"
RECIPIENTS = 200
PROBE = "worker-probe/crisiscomms-probe"


@pytest.fixture(scope="module")
def warm(emulators: EmulatorPair, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str, Any]]:
    """A Prefect server, the deployments, ``crisiscomms worker --limit 2`` serving them, and
    the CRISISCOMMS_*/PREFECT_* environment in this process too."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crisiscomms.flows.deploy import deploy
    from crisiscomms.flows.probe import deploy_probe

    tmp = tmp_path_factory.mktemp("warm")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    crisis_env = {
        **workspace_environment(tmp / "data", emulators, SENDGRID_KEY, X_TOKEN,
                                database_url=f"sqlite:///{tmp / 'crisiscomms.db'}"),
        "CRISISCOMMS_MAX_ATTEMPTS": "2",
        "CRISISCOMMS_HTTP_TIMEOUT_S": "5",
    }
    env = child_environment(tmp / "prefect-home", api, crisis_env)
    procs = Processes(tmp)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in crisis_env.items():
            patch.setenv(key, value)
        try:
            procs.start("server", [sys.executable, "-m", "prefect", "server", "start",
                                   "--host", "127.0.0.1", "--port", str(port)], env)
            wait_until("the Prefect server", api_healthy(api), 180, procs)
            with temporary_settings(updates={PREFECT_API_URL: api}):
                deploy(POOL, rates={"email": 200.0, "x": 5.0})
                deploy_probe(POOL)
                elsewhere = tmp / "elsewhere"
                elsewhere.mkdir()
                (elsewhere / "not_ours.py").write_text(
                    "from prefect import flow\n\n\n@flow(name='not-ours')\n"
                    "def not_ours() -> int:\n    return 7\n")
                _deploy_file_flow(POOL, elsewhere, "not_ours.py:not_ours")
                procs.start("worker", [str(Path(sys.executable).parent / "crisiscomms"),
                                       "worker", "--pool", POOL, "--limit", "2",
                                       "--name", WORKER, "--grace-s", "5"], env)
                wait_until("the warm worker online", _worker_online, 120, procs)
                yield {"api": api, "procs": procs, "tmp": tmp}
        finally:
            procs.stop_all()


def _deploy_file_flow(pool: str, source: Path, entrypoint: str) -> None:
    from prefect import Flow

    loaded: Any = Flow.from_source(  # type: ignore[call-arg]
        source=str(source), entrypoint=entrypoint, _sync=True)
    loaded.to_deployment(name="elsewhere", work_pool_name=pool, _sync=True).apply(
        work_pool_name=pool, _sync=True)


def _worker_online() -> bool:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return any(w.name == WORKER and str(w.status).lower().endswith("online")
                   for w in client.read_workers_for_work_pool(POOL, offset=0, limit=50))


def _start(deployment: str, **parameters: Any) -> Any:
    from prefect.deployments import run_deployment

    run: Any = run_deployment(deployment, parameters=parameters, timeout=0,  # type: ignore[call-arg]
                              _sync=True)
    return run.id


def _run(run_id: uuid.UUID) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def _state_is(run_id: uuid.UUID, test: Callable[[Any], bool]) -> Callable[[], bool]:
    def check() -> bool:
        state = _run(run_id).state
        return state is not None and test(state)
    return check


def _final(run_id: uuid.UUID, warm: dict[str, Any], timeout_s: float = 120) -> Any:
    wait_until(f"flow run {run_id} final", _state_is(run_id, lambda s: s.is_final()),
               timeout_s, warm["procs"], interval_s=0.3)
    return _run(run_id)


def _in_process(run: Any) -> bool:
    return str(run.infrastructure_pid or "").startswith("crisiscomms-warm:")


def test_an_auto_sent_acknowledgement_is_published_once_by_a_warm_run(
    warm: dict[str, Any], emulators: EmulatorPair
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.delivery.ledger import channel_counts, pending_by_channel
    from crisiscomms.flows.deploy import BATCHES_DEPLOYMENT, STAGE_DEPLOYMENT
    from crisiscomms.identity.identities import system_identity
    from crisiscomms.incident.service import trigger
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.testing.audiences import ensure_drill_audience

    emulators.reset()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        ensure_drill_audience(session, RECIPIENTS)
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage", facts=facts,
                     actor=system_identity("test"))
    assert bundle.approved  # the acknowledgement is auto_send
    with temporary_settings(updates={PREFECT_API_URL: warm["api"]}):
        run_id = _start(STAGE_DEPLOYMENT, incident_ref=bundle.incident_ref, stage=bundle.stage)
        run = _final(run_id, warm, 240)
        assert run.state.is_completed(), f"{run.state}\n{warm['procs'].log('worker')}"
        assert _in_process(run), run.infrastructure_pid
        assert run.labels.get("prefect.worker.name") == WORKER
        with get_client(sync_client=True) as client:
            chunks = client.read_flow_runs(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=[BATCHES_DEPLOYMENT.split("/")[1]])),
                sort=FlowRunSort.ID_DESC, offset=0, limit=20)
    assert chunks and all(c.state.is_completed() and _in_process(c) for c in chunks)

    with session_scope(engine) as session:
        assert bundle.incident_id is not None
        counts = channel_counts(session, bundle.incident_id)
        assert pending_by_channel(session, bundle.incident_id) == {}
    sg, x = emulators.sendgrid.stats(), emulators.x.stats()
    assert counts["email"]["sent"] == RECIPIENTS and counts["email"]["failed"] == 0
    assert sg["recipients"] == RECIPIENTS and sg["duplicates"] == 0
    assert counts["x"]["sent"] >= 1 and x["accepted_messages"] == counts["x"]["sent"]
    assert x["duplicates"] == 0
    assert counts["status_page"]["sent"] >= 1 and counts["status_page"]["failed"] == 0
    summary = json.loads(next(settings.resolved_status_page_dir.rglob("summary.json"))
                         .read_text())
    assert summary["incidents"][0]["status"] == "investigating"
    engine.dispose()


def test_a_run_that_raises_ends_failed_and_the_worker_serves_the_next(
    warm: dict[str, Any]
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: warm["api"]}):
        failed = _final(_start(PROBE, fail=True), warm)
        assert failed.state.is_failed(), failed.state
        assert "asked to fail" in (failed.state.message or "")
        assert _in_process(failed)
        after = _final(_start(PROBE), warm)
        assert after.state.is_completed(), after.state
    assert warm["procs"].started["worker"].poll() is None


def test_a_cancelled_run_ends_cancelled_and_the_worker_lives_on(warm: dict[str, Any]) -> None:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Cancelling

    with temporary_settings(updates={PREFECT_API_URL: warm["api"]}):
        run_id = _start(PROBE, hold_s=120)
        wait_until("the held probe running", _state_is(run_id, lambda s: s.is_running()), 120,
                   warm["procs"], interval_s=0.3)
        with get_client(sync_client=True) as client:  # what `prefect flow-run cancel` does
            client.set_flow_run_state(run_id, Cancelling(message="test cancels it"))
        run = _final(run_id, warm, 60)
        assert run.state.is_cancelled(), run.state
        assert _in_process(run)
        assert warm["procs"].started["worker"].poll() is None  # the worker's process lives
        after = _final(_start(PROBE), warm)
        assert after.state.is_completed(), after.state


def test_two_runs_at_once_with_limit_two_both_complete(warm: dict[str, Any]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: warm["api"]}):
        ids = [_start(PROBE, hold_s=10) for _ in range(2)]
        runs = [_final(run_id, warm) for run_id in ids]
    assert all(r.state.is_completed() and _in_process(r) for r in runs), [r.state for r in runs]
    first, second = sorted(runs, key=lambda r: r.start_time)
    assert second.start_time < first.end_time, "the two runs did not run at the same time"


def test_a_flow_that_is_not_ours_runs_the_stock_way_in_a_subprocess(
    warm: dict[str, Any]
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: warm["api"]}):
        run = _final(_start("not-ours/elsewhere"), warm, 240)
    assert run.state.is_completed(), f"{run.state}\n{warm['procs'].log('worker')}"
    assert str(run.infrastructure_pid).isdigit(), run.infrastructure_pid
    assert int(run.infrastructure_pid) != warm["procs"].started["worker"].pid
