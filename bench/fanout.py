"""Email fan-out throughput: the full path beside the raw ceiling, measured in one run.

Full path: trigger the outage acknowledgement (render), plan the ledger (bulk), publish
through the Prefect flow (claim, read recipients, substitutions, SendGrid SDK requests of 1,000
personalizations, several in flight, bulk records) to the SendGrid emulator. Raw ceiling: a bare
httpx client posting prebuilt 1,000-personalization requests of the same shape to the same
emulator with the same number of requests in flight. The emulators run in a subprocess (their
memory is not in ``peak_rss_mb``); Prefect's temporary server is a subprocess too and is
started before the clock starts. Importing the recipients is timed separately (``import_s``).

    uv run python bench/fanout.py --recipients 1000000 [--backend sqlite|postgresql] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    SG_KEY,
    EmulatorProcess,
    base_env,
    database,
    emit,
    peak_rss_mb,
    set_env,
    workdir,
)


def raw_ceiling(url: str, recipients: int, in_flight: int) -> float:
    """Recipients per second a bare HTTP client gets through the emulator."""
    def body(i: int) -> bytes:
        return json.dumps({
            "personalizations": [
                {"to": [{"email": f"raw{i}-{j:04d}@drill.example.com"}],
                 "substitutions": {"%first_name%": "Ada", "%first_name.html%": "Ada"},
                 "custom_args": {"crisiscomms_key": f"raw-{i}",
                                 "crisiscomms_recipient": str(j)}}
                for j in range(1000)],
            "from": {"email": "status@example.com", "name": "Status"},
            "subject": "Raw ceiling",
            "content": [{"type": "text/plain", "value": "Hi %first_name%"},
                        {"type": "text/html", "value": "<p>Hi %first_name.html%</p>"}],
            "custom_args": {"crisiscomms_key": f"raw-{i}", "crisiscomms_batch": str(i)},
        }).encode()

    bodies = [body(i) for i in range(8)]
    local = threading.local()
    headers = {"Authorization": f"Bearer {SG_KEY}", "Content-Type": "application/json"}

    def post(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60)
        response = client.post(f"{url}/v3/mail/send", content=bodies[i % 8], headers=headers)
        if response.status_code != 202:
            raise SystemExit(f"raw ceiling: emulator answered {response.status_code}")

    requests = -(-recipients // 1000)
    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(post, range(requests)))
    return recipients / (time.perf_counter() - started)


def naive(count: int) -> dict[str, Any]:
    """One Prefect task per recipient (the shape to avoid), on ``count`` recipients."""
    from prefect import flow, task
    from prefect.cache_policies import NONE
    from prefect.task_runners import ThreadPoolTaskRunner
    from sqlmodel import Session, select

    from crisiscomms.channels.base import OutboundBatch, OutboundRecipient, RenderedMessage
    from crisiscomms.config import Settings
    from crisiscomms.db import make_engine
    from crisiscomms.facts import FactSheet
    from crisiscomms.incidents import facts_of, latest_facts
    from crisiscomms.models import Incident, Message, Recipient
    from crisiscomms.wiring import build_channels

    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    channel = build_channels(settings)["email"]
    with Session(engine) as s:
        incident = s.exec(select(Incident)).first()
        assert incident is not None and incident.id is not None
        facts: FactSheet = facts_of(latest_facts(s, incident.id))
        message = s.exec(select(Message).where(Message.channel == "email")).first()
        assert message is not None
        rendered = RenderedMessage(playbook="outage", stage=message.stage, channel="email",
                                   locale=message.locale, parts=json.loads(message.parts_json),
                                   content_hash=message.content_hash)

    @task(cache_policy=NONE)
    def send_one(rid: int) -> bool:
        with Session(engine) as s:
            r = s.get(Recipient, rid)
            assert r is not None
        batch = OutboundBatch(key=f"naive-{rid}", batch_no=rid, facts=facts,
                              incident_status="investigating", message=rendered,
                              recipients=[OutboundRecipient(rid, r.email, {
                                  "%first_name%": r.name or "there",
                                  "%first_name.html%": r.name or "there"})])
        return channel.send(batch).outcome == "sent"

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))  # type: ignore[arg-type]
    def naive_fanout(n: int) -> int:
        futures = [send_one.submit(i) for i in range(1, n + 1)]
        return sum(1 for f in futures if f.result())

    started = time.perf_counter()
    sent = naive_fanout(count)
    elapsed = time.perf_counter() - started
    return {"recipients": count, "sent": sent, "elapsed_s": round(elapsed, 2),
            "per_s": round(count / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--max-workers", type=int, default=2, help="email tasks in parallel")
    parser.add_argument("--send-concurrency", type=int, default=3,
                        help="requests in flight per task")
    parser.add_argument("--naive", type=int, default=2000,
                        help="recipients for the one-task-per-recipient flow (0: skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = workdir()
    in_flight = args.max_workers * args.send_concurrency
    with EmulatorProcess() as emulators, database(args.backend, work) as db_url:
        set_env(base_env(work, db_url, emulators))
        os.environ.update({"CRISISCOMMS_MAX_WORKERS": str(args.max_workers),
                           "CRISISCOMMS_SEND_CONCURRENCY": str(args.send_concurrency),
                           "CRISISCOMMS_BATCHES_PER_TASK": "50"})
        from prefect import flow

        from crisiscomms.audience import drill_recipients, insert_recipients
        from crisiscomms.channels import CHANNEL_CLASSES
        from crisiscomms.config import Settings
        from crisiscomms.db import init_db, make_engine, session_scope
        from crisiscomms.incidents import trigger
        from crisiscomms.ledger import channel_counts
        from crisiscomms.playbooks import load_playbook
        from flows.run_playbook import run_stage

        settings = Settings()
        engine = make_engine(settings.resolved_database_url)
        init_db(engine)
        started = time.perf_counter()
        with session_scope(engine) as session:
            insert_recipients(session, drill_recipients(args.recipients))
        import_s = time.perf_counter() - started

        @flow
        def warm() -> None:
            return None

        warm()  # Prefect's temporary server starts here, before the clock

        facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
        started = time.perf_counter()
        bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                         facts={**facts, "incident_ref": "FANOUT-1"}, actor="bench")
        render_s = time.perf_counter() - started
        result = run_stage(bundle.incident_ref, bundle.stage)
        elapsed = time.perf_counter() - started
        rss = peak_rss_mb()
        stats = emulators.stats()
        with session_scope(engine) as session:
            counts = channel_counts(session, bundle.incident_id)["email"]
        duplicates = int(stats["duplicates"])
        delivered = int(stats["recipients"]) - duplicates
        emulators.reset()
        ceiling = raw_ceiling(emulators.sendgrid_url, args.recipients, in_flight)
        emulators.reset()
        naive_report = naive(args.naive) if args.naive else None
        per_s = args.recipients / elapsed
        report = {
            "recipients": args.recipients,
            "backend": args.backend,
            "elapsed_s": round(elapsed, 2),
            "per_s": round(per_s, 1),
            "raw_ceiling_per_s": round(ceiling, 1),
            "ratio": round(per_s / ceiling, 3),
            "peak_rss_mb": rss,
            "duplicates": duplicates,
            "missing": max(0, args.recipients - delivered),
            "ledger_sent": counts["sent"],
            "ledger_failed": counts["failed"],
            "errors": result["errors"][:5],
            "import_s": round(import_s, 2),
            "render_s": round(render_s, 2),
            "email_lane_s": result["lane_seconds"].get("email"),
            "requests_in_flight": in_flight,
            "emulator": "subprocess (its memory is not in peak_rss_mb)",
            "naive_one_task_per_recipient": naive_report,
        }
        engine.dispose()
    emit(report, args.json)


if __name__ == "__main__":
    main()
