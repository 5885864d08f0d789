"""Faults: delivery under a 20% provider fault rate, and one dead channel beside a healthy one.

Part 1, ``faults``: both emulators answer ``--fault-rate`` (default 20%) of provider requests
with a fault, split evenly between 429/500/503 errors, hangs (longer than the channel
timeout), connection resets and garbage answers (a success status with a non-JSON body, or a
truncated response: the request was recorded). The outage acknowledgement goes to
``--recipients`` subscribers through the Prefect flow (``run_stage``), then one ``run_resume``
(what ``crisiscomms resume --now`` runs) settles rows whose provider could not be asked.
``delivered``, ``duplicates`` and ``missing`` compare addresses (the emulator's distinct
recipients against the consenting recipients), not counts.

Part 2, ``isolation``: no faults; the same stage for ``--isolation-recipients`` subscribers, three
incidents in this one run: X healthy, X answering 503 to everything, X hanging on everything.
``email_lane_s`` (first email chunk start to last end) and ``flow_s`` are printed for each; the
aim is an email lane no more than 1 s slower while X is down.

    uv run python bench/faults.py [--recipients 100000] [--isolation-recipients 50000] [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    EmulatorProcess,
    base_env,
    content_note,
    database,
    emit,
    set_env,
    workdir,
)

HANG_S = 5.0
TIMEOUT_S = 1.0
"""The channels' HTTP timeout: a hanging provider costs this much per attempt."""


def _faults(rate: float, seed: int) -> dict[str, Any]:
    share = rate / 4
    return {"error_rate": share, "error_statuses": [429, 500, 503], "timeout_rate": share,
            "hang_s": HANG_S, "reset_rate": share, "garbage_rate": share, "seed": seed}


def _identity(emulators: EmulatorProcess, expected: set[str]) -> dict[str, int]:
    seen = emulators.http.get(f"{emulators.sendgrid_url}/_emulator/addresses").json()
    received = set(seen["addresses"])
    return {"delivered": len(expected & received), "duplicates": len(seen["repeated"]),
            "missing": len(expected - received), "unexpected": len(received - expected)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--isolation-recipients", type=int, default=50_000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--max-workers", type=int, default=2)
    parser.add_argument("--send-concurrency", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = workdir()
    with EmulatorProcess() as emulators, database(args.backend, work) as db_url:
        set_env(base_env(work, db_url, emulators))
        os.environ.update({"CRISISCOMMS_MAX_WORKERS": str(args.max_workers),
                           "CRISISCOMMS_SEND_CONCURRENCY": str(args.send_concurrency),
                           "CRISISCOMMS_HTTP_TIMEOUT_S": str(TIMEOUT_S),
                           "CRISISCOMMS_MAX_ATTEMPTS": "8",
                           "CRISISCOMMS_RETRY_MAX_DELAY_S": "5"})
        report = _run(args, emulators)
    emit(report, args.json)


def _run(args: argparse.Namespace, emulators: EmulatorProcess) -> dict[str, Any]:
    from prefect import flow
    from sqlalchemy import delete, select
    from sqlmodel import col

    from crisiscomms.audience.models import Recipient
    from crisiscomms.audience.recipients import insert_recipients
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.delivery.ledger import channel_counts
    from crisiscomms.flows.run_playbook import run_resume, run_stage
    from crisiscomms.identity.identities import system_identity
    from crisiscomms.incident.service import trigger
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.testing.audiences import drill_recipients

    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)

    def audience(count: int) -> set[str]:
        with session_scope(engine) as session:
            session.execute(delete(Recipient))
            insert_recipients(session, drill_recipients(count))
        with session_scope(engine) as session:
            return {str(e).lower() for e in session.execute(
                select(col(Recipient.email)).where(col(Recipient.consent))).scalars()}

    def publish(ref: str) -> tuple[dict[str, Any], float, int]:
        bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                         facts={**facts, "incident_ref": ref}, actor=system_identity("bench"))
        started = time.perf_counter()
        result = run_stage(bundle.incident_ref, bundle.stage)
        return result, time.perf_counter() - started, int(bundle.incident_id)

    @flow
    def warm() -> None:
        return None

    warm()  # Prefect's temporary server starts here, before any clock

    # -- part 1: 20% faults on both providers --------------------------------------------------
    expected = audience(args.recipients)
    emulators.reset()
    emulators.faults("sendgrid", **_faults(args.fault_rate, args.seed))
    emulators.faults("x", **_faults(args.fault_rate, args.seed + 1))
    result, elapsed, incident_id = publish("FAULTS-1")
    first_pass = _identity(emulators, expected)
    resume = run_resume("FAULTS-1", stale_after_s=0)  # rows whose provider could not be asked
    sg_stats, x_stats = emulators.stats(), emulators.stats("x")
    with session_scope(engine) as session:
        ledger = {c: dict(v) for c, v in channel_counts(session, incident_id).items()}
    faults_report = {
        "recipients": len(expected),
        **_identity(emulators, expected),
        "elapsed_s": round(elapsed, 2),
        "delivered_before_resume": first_pass["delivered"],
        "resume_reconciled": resume["reconciled"],
        "ledger": ledger,
        "sendgrid_requests": sg_stats["requests"],
        "sendgrid_faults": {**sg_stats["rejected"], **sg_stats["dropped"]},
        "x_posts": x_stats["accepted_messages"],
        "x_duplicates": x_stats["duplicates"],
        "x_faults": {**x_stats["rejected"], **x_stats["dropped"]},
        "errors": result["errors"][:5],
    }

    # -- part 2: a dead X beside a healthy email lane, in the same run -------------------------
    expected = audience(args.isolation_recipients)
    isolation: dict[str, Any] = {"recipients": len(expected)}
    cases = (("x_healthy", None),
             ("x_down_503", {"error_rate": 1.0, "error_statuses": [503]}),
             ("x_down_hanging", {"timeout_rate": 1.0, "hang_s": 60.0}),
             ("x_healthy_again", None))
    for n, (name, x_faults) in enumerate(cases):
        emulators.reset()
        if x_faults:
            emulators.faults("x", **x_faults)
        result, elapsed, incident_id = publish(f"ISOLATION-{n + 1}")
        isolation[name] = {
            "email_lane_s": result["lane_seconds"].get("email"),
            "x_lane_s": result["lane_seconds"].get("x"),
            "flow_s": round(elapsed, 2),
            "email_sent": result["channels"].get("email", {}).get("sent"),
            "x": result["channels"].get("x"),
            **_identity(emulators, expected),
        }
        emulators.reset()  # a hanging handler is woken; the X lane does not outlive its case
    healthy = min(isolation["x_healthy"]["email_lane_s"],
                  isolation["x_healthy_again"]["email_lane_s"])
    down = max(isolation["x_down_503"]["email_lane_s"],
               isolation["x_down_hanging"]["email_lane_s"])
    engine.dispose()
    return {
        "recipients": faults_report["recipients"],
        "delivered": faults_report["delivered"],
        "duplicates": faults_report["duplicates"],
        "missing": faults_report["missing"],
        "healthy_channel_s_with_x_down": down,
        "healthy_channel_s_with_x_healthy": healthy,
        "healthy_channel_slowdown_s": round(down - healthy, 3),
        "fault_rate": args.fault_rate,
        "backend": args.backend,
        "faults": faults_report,
        "isolation": isolation,
        "content": content_note(),
    }


if __name__ == "__main__":
    main()
