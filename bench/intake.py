"""The intake API under load, and event → acknowledgement through a real Prefect server.

Part 1, throughput: ``crisiscomms api --no-dispatch`` in its own process (uvicorn, the
workspace's SQLite database, an events source at an unlimited rate); ``--events`` signed
events of ours (distinct ids and dedup keys, ``--groups`` alert groups: a storm that opens that
many incidents) posted by ``--concurrency`` keep-alive clients. Prints signed events accepted
per second (202s over the wall time), p50/p99 request latency, and what an unsigned and a
replayed request get. Baseline in the same run: a bare FastAPI app answering 202 to the same
requests in the same kind of process (``baseline_per_s``), so the engine's cost reads as a
ratio.

Part 2, event → acknowledgement: ``prefect server start``, the deployments of
``flows/deploy.py``, a warm ``crisiscomms worker`` and ``crisiscomms api`` dispatching to
Prefect; ``--acks`` outage alerts from Alertmanager, one at a time, each a new incident: the
time from the POST to the moment the ledger holds the acknowledgement sent on every channel
(status page, X, email, support). The first alert warms the worker and is not timed.

    uv run python bench/intake.py [--events 20000] [--concurrency 64] [--acks 20]
        [--prefect-db sqlite|postgresql] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _common import ROOT, SG_KEY, X_TOKEN, cpu_seconds, prefect_env, process
from _loadgen import fire, serialise
from latency import percentile

CLI = str(Path(sys.executable).parent / "crisiscomms")
HOST = "127.0.0.1"

BASELINE_APP = """
import sys
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
app = FastAPI()
@app.post("/v1/events")
async def events(request: Request):
    await request.body()
    return JSONResponse({"accepted": 1}, 202)
@app.get("/healthz")
def healthz():
    return {"ok": True}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    from crisiscomms.testing.pgcluster import free_port as pick

    return pick()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not healthy after {timeout_s} s:\n{log.read_text()[-3000:]}")


def signed_event(secret: str, index: int, groups: int, run: str) -> tuple[bytes, dict[str, str]]:
    from crisiscomms.intake.signatures import sign_standard

    body = json.dumps({
        "playbook": "outage", "dedup_key": f"bench-{run}-{index}",
        "group_key": f"bench-{run}-group-{index % groups}", "status": "firing",
        "occurred_at": "2026-12-01T07:00:00+00:00", "summary": "bench event",
        "labels": {"alertname": "BenchDown", "service": "api", "severity": "critical"},
        "facts": {}}).encode()
    msg_id, stamp = f"msg_{run}_{index}", str(int(time.time()))
    return body, {"content-type": "application/json", "webhook-id": msg_id,
                  "webhook-timestamp": stamp,
                  "webhook-signature": sign_standard(secret, msg_id, int(stamp), body)}


def workspace(work: Path, **rates: float) -> tuple[dict[str, str], dict[str, str]]:
    """A new workspace in ``work`` (``crisiscomms new``: the example playbooks, templates and
    their intake rules) in drill mode, with one source per kind in ``rates`` (its rate per
    second); returns its ``CRISISCOMMS_*`` environment and each source's key."""
    from crisiscomms.core.settings import Settings
    from crisiscomms.core.workspace import new_workspace
    from crisiscomms.intake.sources import SourceStore
    from crisiscomms.testing.drill import environment

    work.mkdir(parents=True, exist_ok=True)
    ws = new_workspace(work / "ws")
    env = {"CRISISCOMMS_WORKSPACE": str(ws), "CRISISCOMMS_DATA_DIR": str(work / "data"),
           "CRISISCOMMS_MODE": "drill",
           "CRISISCOMMS_INTAKE_SOURCES_PATH": str(work / "intake_sources.toml")}
    (work / "data").mkdir(parents=True, exist_ok=True)
    with environment(env):
        store = SourceStore.from_settings(Settings())
        keys = {kind: store.add(f"bench-{kind}", kind, rate_per_s=rate)
                for kind, rate in rates.items()}
    return env, keys


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    env_ws, keys = workspace(work / "throughput", events=1_000_000.0)
    secret = keys["events"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRISISCOMMS_")}
    run = uuid.uuid4().hex[:8]
    requests = [signed_event(secret, i, args.groups, run) for i in range(args.events)]
    out: dict[str, Any] = {}

    def wire(port: int, batch: list[tuple[bytes, dict[str, str]]]) -> list[bytes]:
        return [serialise(HOST, port, "/v1/events", body, headers) for body, headers in batch]

    port = free_port()
    log = work / "baseline.log"
    with process([sys.executable, "-c", BASELINE_APP, str(port)], base, log) as proc:
        wait_healthy(f"http://{HOST}:{port}/healthz", proc, log, 60)
        asyncio.run(fire(HOST, port, wire(port, requests[:500]), args.concurrency))  # warm
        cpu = cpu_seconds(proc.pid)
        took, _, _ = asyncio.run(fire(HOST, port, wire(port, requests), args.concurrency))
        out["baseline_per_s"] = round(len(requests) / took, 1)
        out["baseline_cpu_ms_per_request"] = round(
            (cpu_seconds(proc.pid) - cpu) * 1000 / len(requests), 3)

    port = free_port()
    log = work / "api.log"
    cmd = [CLI, "api", "--port", str(port), "--no-dispatch"]
    with process(cmd, {**base, **env_ws}, log) as proc:
        url = f"http://{HOST}:{port}"
        wait_healthy(f"{url}/healthz", proc, log, 60)
        warm = [signed_event(secret, i, 5, run + "w") for i in range(300)]
        asyncio.run(fire(HOST, port, wire(port, warm), args.concurrency))
        cpu = cpu_seconds(proc.pid)
        took, latencies, statuses = asyncio.run(fire(HOST, port, wire(port, requests),
                                                     args.concurrency))
        accepted = statuses.get(202, 0)
        out.update({
            "api_cpu_ms_per_event": round((cpu_seconds(proc.pid) - cpu) * 1000 / len(requests),
                                          3),
            "accepted_per_s": round(accepted / took, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
        })
        body, headers = requests[0]
        unsigned = {k: v for k, v in headers.items() if not k.startswith("webhook-")}
        out["unsigned_status"] = httpx.post(f"{url}/v1/events", content=body,
                                            headers=unsigned).status_code
        out["replayed_status"] = httpx.post(f"{url}/v1/events", content=body,
                                            headers=headers).status_code
    out["ratio_to_baseline"] = round(out["accepted_per_s"] / out["baseline_per_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--acks", type=int, default=20,
                        help="alert groups timed to acknowledgement (0: skip that part)")
    parser.add_argument("--ack-recipients", type=int, default=100,
                        help="email subscribers each acknowledgement goes to")
    parser.add_argument("--prefect-db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the Prefect server's database for the acknowledgements")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crisiscomms-bench-intake-"))
    figures = throughput(args, work)
    if args.acks:
        figures.update(event_to_ack(args, work))
    keys = ("accepted_per_s", "p50_ms", "p99_ms", "unsigned_status", "replayed_status",
            "event_to_ack_p50_s", "event_to_ack_p95_s")
    result = {k: figures.get(k) for k in keys} | {
        k: v for k, v in figures.items() if k not in keys}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


POOL = "crisiscomms-bench-intake"
ACK_CHANNELS = ("status_page", "x", "email", "support")


def alert_group(template: dict[str, Any], run: str, index: int) -> bytes:
    """The Alertmanager fixture as a new alert group: its own group key and fingerprints (a new
    incident each time), the same rule match (HighErrorRate on the api service)."""
    group = copy.deepcopy(template)
    group["groupKey"] = f'{{}}/{{bench="{run}"}}:{{alertname="HighErrorRate",n="{index}"}}'
    for number, alert in enumerate(group["alerts"]):
        alert["fingerprint"] = f"{run}{index:06d}{number:02d}"
        alert["startsAt"] = f"2026-12-01T07:{index // 60 % 60:02d}:{index % 60:02d}Z"
    return json.dumps(group).encode()


def event_to_ack(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Event → acknowledgement on a real Prefect server with the warm worker (see the module
    docstring): seconds from the POST to the ledger holding the acknowledgement sent on every
    channel with nothing left planned, for ``args.acks`` alert groups one after another."""
    from crisiscomms.channels.registry import rate_settings
    from crisiscomms.testing.drill import workspace_environment
    from crisiscomms.testing.emulators import start_emulators

    work = work / "event_to_ack"
    env_ws, keys = workspace(work, alertmanager=1_000_000.0)
    pair = start_emulators(sendgrid_key=SG_KEY, x_token=X_TOKEN)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    crisis = {**workspace_environment(work / "data", pair, SG_KEY, X_TOKEN), **env_ws,
              # back-to-back incidents against emulators: our quota guards (X, Slack 1/s...)
              # would set the pace otherwise
              **{f"CRISISCOMMS_{field.upper()}": "1000"
                 for field in rate_settings().values()}}
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith(("PREFECT_", "CRISISCOMMS_"))},
           **prefect_env(work), "PREFECT_API_URL": api, "PREFECT_SERVER_UI_ENABLED": "false",
           **crisis}
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with prefect_database(args.prefect_db, work) as url, \
                process([sys.executable, "-m", "prefect", "server", "start", "--host",
                         "127.0.0.1", "--port", str(port)],
                        {**env, "PREFECT_API_DATABASE_CONNECTION_URL": url},
                        work / "server.log") as server:
            wait_healthy(f"{api}/health", server, work / "server.log", 180)
            return {**_acks(args, work, env, keys["alertmanager"], pair),
                    "prefect_db": args.prefect_db}
    finally:
        pair.stop()
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def prefect_database(backend: str, work: Path) -> Iterator[str]:
    """The Prefect server's database: a SQLite file (``prefect server start``'s default) or a
    throwaway PostgreSQL cluster (what Prefect recommends beyond light use: SQLite answers a
    write that meets another writer with ``database is locked``, 503, and Prefect's client
    waits 2 s before asking again)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{work / 'prefect.db'}"
        return
    from crisiscomms.testing.pgcluster import ThrowawayCluster

    with ThrowawayCluster(durable=True) as pg:
        pg.create_database("prefect")
        yield pg.url("prefect", driver="asyncpg")


def _acks(args: argparse.Namespace, work: Path, env: dict[str, str], token: str,
          pair: Any) -> dict[str, Any]:
    from crisiscomms.channels.registry import rate_settings
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.flows.deploy import deploy
    from crisiscomms.testing.audiences import ensure_drill_audience
    from crisiscomms.testing.demo_events import acknowledged

    settings = Settings()
    deploy(POOL, source=Path(env["CRISISCOMMS_WORKSPACE"]),
           rates=dict.fromkeys(rate_settings(), 1000.0))
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        ensure_drill_audience(session, args.ack_recipients)
    template = json.loads((ROOT / "tests" / "fixtures" / "intake" /
                           "alertmanager_firing.json").read_text(encoding="utf-8"))
    run = uuid.uuid4().hex[:8]
    timings: list[float] = []
    every_channel: list[float] = []
    refs: list[str] = []
    with process([CLI, "worker", "--pool", POOL, "--limit", "4"], env,
                 work / "worker.log") as worker, \
            process([CLI, "api", "--port", str(api_port := free_port())], env,
                    work / "api.log") as api:
        url = f"http://127.0.0.1:{api_port}"
        wait_healthy(f"{url}/healthz", api, work / "api.log", 120)
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        for index in range(args.acks + 1):  # the first one warms up: not timed
            started = time.perf_counter()
            posted = httpx.post(f"{url}/v1/events/alertmanager/bench-alertmanager",
                                content=alert_group(template, run, index), headers=headers,
                                timeout=30)
            if posted.status_code != 202:
                raise SystemExit(f"alert {index}: {posted.status_code} {posted.text}")
            ref = posted.json()["events"][0]["incident_ref"]
            if index:
                refs.append(ref)
            deadline = time.monotonic() + 300
            while acknowledged(engine, ref, ACK_CHANNELS) is None:
                for name, proc in (("worker", worker), ("api", api)):
                    if proc.poll() is not None:
                        raise SystemExit(f"{name} exited {proc.returncode}:\n"
                                         f"{(work / f'{name}.log').read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"{ref} not acknowledged in 300 s:\n"
                                     f"{(work / 'worker.log').read_text()[-3000:]}")
                time.sleep(0.02)
            if index:
                timings.append(time.perf_counter() - started)
            while acknowledged(engine, ref) is None:  # SMS, chat, fediverse, webhook too
                if time.monotonic() > deadline:
                    raise SystemExit(f"{ref}: not every channel sent in 300 s")
                time.sleep(0.02)
            if index:
                every_channel.append(time.perf_counter() - started)
    phases = ack_phases(engine, refs, ACK_CHANNELS)
    sg = pair.sendgrid.stats()
    expected = args.ack_recipients * (args.acks + 1)
    if sg["recipients"] != expected or sg["duplicates"]:
        raise SystemExit(f"email not exactly once: {sg} (expected {expected} recipients)")
    engine.dispose()
    return {"event_to_ack_p50_s": round(percentile(timings, 50), 3),
            "event_to_ack_p95_s": round(percentile(timings, 95), 3),
            "event_to_ack_all_s": [round(t, 3) for t in timings],
            "event_to_every_channel_p50_s": round(percentile(every_channel, 50), 3),
            "event_to_ack_phases_p50_s": phases,
            "ack_recipients": args.ack_recipients, "email_duplicates": sg["duplicates"]}


PHASES = ("dispatch", "pickup", "start", "trigger", "publish")


def ack_phases(engine: Any, refs: list[str], channels: tuple[str, ...]) -> dict[str, float]:
    """Where an acknowledgement's seconds go (p50 of each phase over ``refs``), from the
    records both sides keep: ``dispatch`` the event's receipt to its flow run Scheduled on the
    Prefect server, ``pickup`` Scheduled to Pending (the worker's poll and its proposal),
    ``start`` Pending to Running (job configuration, the flow engine), ``trigger`` Running to
    the first ledger row (fact sheet, render, approval check, plan), ``publish`` that row to
    the last of ``channels`` sent."""
    from datetime import UTC

    from prefect import get_client
    from sqlmodel import col, func, select

    from crisiscomms.core.database import session_scope
    from crisiscomms.delivery.models import Delivery
    from crisiscomms.incident.models import Incident
    from crisiscomms.intake.models import IntakeEvent

    spans: dict[str, list[float]] = {name: [] for name in PHASES}
    with session_scope(engine) as session, get_client(sync_client=True) as client:
        for ref in refs:
            received, run_id = session.execute(
                select(col(IntakeEvent.received_at), col(IntakeEvent.flow_run_id))
                .where(col(IntakeEvent.incident_ref) == ref,
                       col(IntakeEvent.flow_run_id).is_not(None))
                .order_by(col(IntakeEvent.id))).first() or (None, None)
            first_row, last_sent = session.execute(
                select(func.min(col(Delivery.created_at)), func.max(col(Delivery.updated_at)))
                .join(Incident, col(Incident.id) == col(Delivery.incident_id))
                .where(col(Incident.ref) == ref, col(Delivery.channel).in_(channels))).one()
            if not (received and run_id and first_row):
                continue
            states: dict[str, Any] = {}
            for state in client.read_flow_run_states(run_id):
                states.setdefault(state.type.value, state.timestamp)
            if not {"SCHEDULED", "PENDING", "RUNNING"} <= set(states):
                continue
            marks = [received.replace(tzinfo=UTC), states["SCHEDULED"], states["PENDING"],
                     states["RUNNING"],
                     first_row.replace(tzinfo=UTC), last_sent.replace(tzinfo=UTC)]
            for name, start, end in zip(PHASES, marks[:-1], marks[1:], strict=True):
                spans[name].append((end - start).total_seconds())
    return {name: round(percentile(values, 50), 3) for name, values in spans.items() if values}


if __name__ == "__main__":
    main()
