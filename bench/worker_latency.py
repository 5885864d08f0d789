"""How long from ``run_deployment`` to a flow's first line, and to an acknowledgement on the
emulators: the stock process worker against ``crisiscomms worker`` (the warm worker), on a
real ``prefect server start`` (temporary PREFECT_HOME, loopback, SQLite), same run.

- ``*_start_*``: ``run_deployment`` of the trivial ``worker-probe`` flow → its Running state
  (the engine sets it just before the flow's code starts);
- ``*_publish_*``: an auto-sent outage acknowledgement (triggered beforehand, not timed) →
  ``run_deployment`` of ``publish-stage`` (``flows/deploy.py``) → every status page, X and
  email row of the stage recorded sent (the ledger records ``sent`` once the emulator accepted
  it); its email chunk is a ``publish-batches`` run on the same worker;
- ``warm_publish_one_run_*``: the same with ``batches_deployment=None``: the email lane as
  tasks of the ``publish-stage`` run itself (no second flow run to schedule and pick up).

Both workers poll every ``--query-seconds`` (0.5 s: ``crisiscomms worker``'s default) with
``--limit 4`` and log at ``--logging-level`` (WARNING, its default). Runs go one after another.

    uv run python bench/worker_latency.py [--runs 5] [--recipients 100] [--json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _common import emit, prefect_env, process, workdir
from latency import percentile

POOL = "crisiscomms-bench"
PROBE = "worker-probe/crisiscomms-probe"


def wait_for(what: str, check: Callable[[], bool], timeout_s: float,
             proc: subprocess.Popen[bytes] | None = None, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what}: the process exited {proc.returncode}")
        time.sleep(interval_s)
    raise SystemExit(f"timed out after {timeout_s} s waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind per worker")
    parser.add_argument("--recipients", type=int, default=100)
    parser.add_argument("--query-seconds", type=float, default=0.5)
    parser.add_argument("--logging-level", default="WARNING",
                        help="PREFECT_LOGGING_LEVEL of both workers and their runs (WARNING: "
                             "crisiscomms worker's default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = workdir()
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    prefect = {**prefect_env(work), "PREFECT_API_URL": api, "PREFECT_SERVER_UI_ENABLED": "false",
               "PREFECT_LOGGING_LEVEL": args.logging_level,
               "PREFECT_WORKER_QUERY_SECONDS": str(args.query_seconds)}
    os.environ.update(prefect)

    from crisiscomms.testing.drill import workspace_environment
    from crisiscomms.testing.emulators import start_emulators

    sg_key, x_token = "SG.bench-key", "bench-x-token"
    pair = start_emulators(sendgrid_key=sg_key, x_token=x_token)
    crisis = {**workspace_environment(work / "data", pair, sg_key, x_token),
              # back-to-back incidents: our X quota guard would set the pace otherwise
              "CRISISCOMMS_X_RATE_PER_S": "1000"}
    os.environ.update(crisis)
    env = {k: v for k, v in os.environ.items()}
    load_before = os.getloadavg()[0]
    try:
        with process([sys.executable, "-m", "prefect", "server", "start", "--host",
                      "127.0.0.1", "--port", str(port)], env, work / "server.log") as server:
            wait_for("the Prefect server", lambda: _healthy(api), 180, server, 0.5)
            report = _measure(args, env, work, pair)
    finally:
        pair.stop()
    report.update({"load_avg_1m_before": round(load_before, 2),
                   "load_avg_1m_after": round(os.getloadavg()[0], 2),
                   "cpu_count": os.cpu_count()})
    emit(report, args.json)


def _measure(args: argparse.Namespace, env: dict[str, str], work: Path,
             pair: Any) -> dict[str, Any]:
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.delivery.ledger import channel_counts, pending_by_channel
    from crisiscomms.flows.deploy import STAGE_DEPLOYMENT, deploy
    from crisiscomms.flows.probe import deploy_probe
    from crisiscomms.identity.identities import system_identity
    from crisiscomms.incident.service import trigger
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.testing.audiences import ensure_drill_audience

    deploy(POOL, rates={"email": 1000.0, "x": 1000.0})
    deploy_probe(POOL)
    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        ensure_drill_audience(session, args.recipients)
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)

    def start_latency() -> float:
        started = time.time()
        run_id = _run_deployment(PROBE, {})
        wait_for("a probe run", lambda: _final(run_id), 300)
        run = _read(run_id)
        if not run.state.is_completed() or run.start_time is None:
            raise SystemExit(f"probe run {run_id} ended {run.state}")
        return float(run.start_time.timestamp() - started)

    def publish_latency(ref: str, one_run: bool = False) -> float:
        bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                         facts={**facts, "incident_ref": ref}, actor=system_identity("bench"))
        assert bundle.approved and bundle.incident_id is not None
        incident_id = bundle.incident_id

        def published() -> bool:
            with session_scope(engine) as session:
                counts = channel_counts(session, incident_id)
                pending = pending_by_channel(session, incident_id)
            return (not pending and counts.get("email", {}).get("sent") == args.recipients
                    and all(counts.get(c, {}).get("sent", 0) >= 1 for c in ("status_page", "x")))

        started = time.time()
        parameters: dict[str, Any] = {"incident_ref": bundle.incident_ref,
                                      "stage": bundle.stage}
        if one_run:  # the email lane as tasks of this run, not chunk runs of the pool
            parameters["batches_deployment"] = None
        run_id = _run_deployment(STAGE_DEPLOYMENT, parameters)
        wait_for(f"{ref} published", published, 300)
        elapsed = time.time() - started
        wait_for(f"{ref}'s run final", lambda: _final(run_id), 300)
        if not _read(run_id).state.is_completed():
            raise SystemExit(f"publish-stage run for {ref} ended {_read(run_id).state}")
        return elapsed

    workers = {
        "stock": [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
                  "--type", "process", "--name", "bench-stock", "--limit", "4"],
        "warm": [str(Path(sys.executable).parent / "crisiscomms"), "worker", "--pool", POOL,
                 "--name", "bench-warm", "--limit", "4"],
    }
    figures: dict[str, dict[str, list[float]]] = {}
    for kind, command in workers.items():
        with process(command, env, work / f"worker-{kind}.log") as proc:
            wait_for(f"the {kind} worker online", lambda k=kind: _online(f"bench-{k}"), 180,
                     proc, 0.5)
            starts = [start_latency() for _ in range(args.runs)]
            publishes = [publish_latency(f"BENCH-{kind.upper()}-{i:03d}")
                         for i in range(args.runs)]
            figures[kind] = {"start": starts, "publish": publishes}
            if kind == "warm":
                figures[kind]["one_run"] = [publish_latency(f"BENCH-ONE-{i:03d}", True)
                                            for i in range(args.runs)]
    sg = pair.sendgrid.stats()
    expected = args.recipients * args.runs * (len(workers) + 1)
    if sg["recipients"] != expected or sg["duplicates"]:
        raise SystemExit(f"email not exactly once: {sg} (expected {expected} recipients)")
    engine.dispose()

    def p(kind: str, what: str, q: float) -> float:
        return round(percentile(figures[kind][what], q), 3)

    return {
        "runs": args.runs, "recipients": args.recipients,
        "query_seconds": args.query_seconds, "logging_level": args.logging_level,
        "stock_start_p50_s": p("stock", "start", 50), "stock_start_p95_s": p("stock", "start", 95),
        "warm_start_p50_s": p("warm", "start", 50), "warm_start_p95_s": p("warm", "start", 95),
        "stock_publish_p50_s": p("stock", "publish", 50),
        "stock_publish_p95_s": p("stock", "publish", 95),
        "warm_publish_p50_s": p("warm", "publish", 50),
        "warm_publish_p95_s": p("warm", "publish", 95),
        "warm_publish_one_run_p50_s": p("warm", "one_run", 50),
        "warm_publish_one_run_p95_s": p("warm", "one_run", 95),
        "start_speedup_p50": round(p("stock", "start", 50) / p("warm", "start", 50), 1),
        "publish_speedup_p50": round(p("stock", "publish", 50) / p("warm", "publish", 50), 1),
        "email_duplicates": sg["duplicates"],
        "warm_start_all_s": [round(v, 3) for v in figures["warm"]["start"]],
        "warm_publish_all_s": [round(v, 3) for v in figures["warm"]["publish"]],
    }


def _run_deployment(name: str, parameters: dict[str, Any]) -> Any:
    from prefect.deployments import run_deployment

    run: Any = run_deployment(name, parameters=parameters, timeout=0,  # type: ignore[call-arg]
                              _sync=True)
    return run.id


def _read(run_id: Any) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def _final(run_id: Any) -> bool:
    state = _read(run_id).state
    return state is not None and state.is_final()


def _online(name: str) -> bool:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return any(w.name == name and str(w.status).lower().endswith("online")
                   for w in client.read_workers_for_work_pool(POOL, offset=0, limit=50))


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    from crisiscomms.testing.pgcluster import free_port

    return free_port()


if __name__ == "__main__":
    main()
