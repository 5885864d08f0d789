"""Trigger-to-all-channels-published latency, warm, against the emulators.

Each iteration triggers a new outage incident (the auto-sent acknowledgement) and runs the
publish flow until the status page, X, support and every email batch are recorded as sent.
Beside it, in the same run, the emulators' own round trip: a bare HTTP POST of the same
SendGrid request and one X post, so the engine's overhead reads as a ratio.

    uv run python bench/latency.py [--iterations 20] [--recipients 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _common import prefect_env


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="crisiscomms-bench-"))
    os.environ.update(prefect_env(work))  # a loaded machine: the server may take over 20 s

    from crisiscomms.audience.recipients import insert_recipients
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.flows.run_playbook import run_stage
    from crisiscomms.identity.identities import system_identity
    from crisiscomms.incident.service import trigger
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.testing.audiences import drill_recipients
    from crisiscomms.testing.drill import workspace_environment
    from crisiscomms.testing.emulators import start_emulators

    sg_key, x_token = "SG.bench-key", "bench-x-token"
    pair = start_emulators(sendgrid_key=sg_key, x_token=x_token)
    os.environ.update({
        **workspace_environment(work / "data", pair, sg_key, x_token),
        # Back-to-back incidents, five X posts each (one per language): our X quota guard
        # (1 post/s after a burst of 10) would set the pace, not the path being measured.
        "CRISISCOMMS_X_RATE_PER_S": "1000",
    })
    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        insert_recipients(session, drill_recipients(args.recipients))
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)

    def one(i: int) -> float:
        started = time.perf_counter()
        bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                         facts={**facts, "incident_ref": f"BENCH-{i:04d}"},
                         actor=system_identity("bench"))
        result = run_stage(bundle.incident_ref, bundle.stage)
        elapsed = time.perf_counter() - started
        failed = sum(c["failed"] for c in result["channels"].values())
        if failed or result["errors"]:
            raise SystemExit(f"iteration {i} failed: {result['errors']}")
        return elapsed

    cold_started = time.perf_counter()
    cold = one(0)  # starts Prefect's temporary server
    cold_total = time.perf_counter() - cold_started
    warm = [one(i) for i in range(1, args.iterations + 1)]

    body = {
        "personalizations": [{"to": [{"email": f"r{i}@bench.example.com"}],
                              "substitutions": {"%first_name%": "Ada"}}
                             for i in range(min(args.recipients, 1000))],
        "from": {"email": "status@example.com"}, "subject": "Bench",
        "content": [{"type": "text/plain", "value": "Hi %first_name%"},
                    {"type": "text/html", "value": "<p>Hi %first_name%</p>"}],
    }
    sg_rtt, x_rtt = [], []
    with httpx.Client() as client:
        for i in range(args.iterations):
            t = time.perf_counter()
            r = client.post(f"{pair.sendgrid.url}/v3/mail/send", json=body,
                            headers={"Authorization": f"Bearer {sg_key}"})
            sg_rtt.append(time.perf_counter() - t)
            assert r.status_code == 202, r.text
            t = time.perf_counter()
            r = client.post(f"{pair.x.url}/2/tweets", json={"text": f"bench post {i}"},
                            headers={"Authorization": f"Bearer {x_token}"})
            x_rtt.append(time.perf_counter() - t)
            assert r.status_code == 201, r.text
    pair.stop()

    batches = -(-args.recipients // 1000)
    emulator_floor = statistics.median(sg_rtt) * batches + statistics.median(x_rtt)
    report = {
        "iterations": args.iterations,
        "recipients": args.recipients,
        "cold_first_run_s": round(cold_total, 3),
        "warm_p50_s": round(percentile(warm, 50), 3),
        "warm_p95_s": round(percentile(warm, 95), 3),
        "warm_min_s": round(min(warm), 3),
        "emulator_sendgrid_rtt_p50_ms": round(statistics.median(sg_rtt) * 1000, 2),
        "emulator_x_rtt_p50_ms": round(statistics.median(x_rtt) * 1000, 2),
        "emulator_floor_s": round(emulator_floor, 4),
        "ratio_p50_to_floor": round(percentile(warm, 50) / emulator_floor, 1),
    }
    del cold
    if args.json:
        print(json.dumps(report))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
