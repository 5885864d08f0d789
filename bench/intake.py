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
(status page, X, email, support).

    uv run python bench/intake.py [--events 20000] [--concurrency 64] [--acks 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from _common import ROOT, process
from latency import percentile

CLI = str(Path(sys.executable).parent / "crisiscomms")

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


async def fire(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int
               ) -> tuple[float, list[float], dict[int, int]]:
    """Post every request, ``concurrency`` at a time; (seconds, latencies, status counts)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(reversed(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def one_client() -> None:
            while queue:
                body, headers = queue.pop()
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, statuses


def workspace(work: Path) -> tuple[dict[str, str], str]:
    """The CRISISCOMMS_* environment of a drill workspace in ``work`` (this checkout's
    playbooks and templates) and the key of its events source."""
    from crisiscomms.core.settings import Settings
    from crisiscomms.intake.contract import SourceKind
    from crisiscomms.intake.sources import SourceStore

    env = {"CRISISCOMMS_WORKSPACE": str(ROOT), "CRISISCOMMS_DATA_DIR": str(work / "data"),
           "CRISISCOMMS_MODE": "drill",
           "CRISISCOMMS_INTAKE_SOURCES_PATH": str(work / "intake_sources.toml")}
    (work / "data").mkdir(parents=True, exist_ok=True)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        store = SourceStore(Settings())
        secret = store.add("bench", SourceKind.events, rate_per_s=1_000_000.0)
        store.add("alerts", SourceKind.alertmanager, rate_per_s=1_000_000.0)
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return env, secret


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    env_ws, secret = workspace(work / "throughput")
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRISISCOMMS_")}
    run = uuid.uuid4().hex[:8]
    requests = [signed_event(secret, i, args.groups, run) for i in range(args.events)]
    out: dict[str, Any] = {}

    port = free_port()
    log = work / "baseline.log"
    with process([sys.executable, "-c", BASELINE_APP, str(port)], base, log) as proc:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, log, 60)
        asyncio.run(fire(f"http://127.0.0.1:{port}/v1/events", requests[:500],
                         args.concurrency))  # warm
        took, _, _ = asyncio.run(fire(f"http://127.0.0.1:{port}/v1/events", requests,
                                      args.concurrency))
        out["baseline_per_s"] = round(len(requests) / took, 1)

    port = free_port()
    log = work / "api.log"
    cmd = [CLI, "api", "--port", str(port), "--no-dispatch"]
    with process(cmd, {**base, **env_ws}, log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{url}/healthz", proc, log, 60)
        warm = [signed_event(secret, i, 5, run + "w") for i in range(300)]
        asyncio.run(fire(f"{url}/v1/events", warm, args.concurrency))
        took, latencies, statuses = asyncio.run(fire(f"{url}/v1/events", requests,
                                                     args.concurrency))
        accepted = statuses.get(202, 0)
        out.update({
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
    parser.add_argument("--acks", type=int, default=20)
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


def event_to_ack(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Not measured by this script yet (null in the JSON): the end-to-end path runs in
    tests/integration/test_intake_end_to_end.py, and bench/worker_latency.py measures the warm
    worker's start and publish times."""
    del args, work
    return {"event_to_ack_p50_s": None, "event_to_ack_p95_s": None}


if __name__ == "__main__":
    main()
