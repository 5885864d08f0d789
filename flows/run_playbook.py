"""Publish one approved stage of an incident, coordinated across channels.

The status page goes first (every other message links to it), then X, then email fan-out in
batches; each channel runs in its own tasks so a dead channel never blocks another. Email runs
``batches_per_task`` ledger rows (up to 1,000 recipients each) per task: never one task per
recipient (the local Prefect server records only ~30 task runs/s).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture, wait
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy.engine import Engine

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.base import Channel
from crisiscomms.config import Settings
from crisiscomms.db import init_db, make_engine, session_scope
from crisiscomms.incidents import get_incident, load_bundle, plan_bundle
from crisiscomms.ledger import pending_ids
from crisiscomms.publishing import PublishReport, publish_deliveries
from crisiscomms.wiring import build_channels

PUBLISH_ORDER = ("status_page", "x", "support", "email")


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    engine = make_engine(url)
    init_db(engine)
    return engine


def _context() -> tuple[Settings, Engine, dict[str, Channel]]:
    settings = Settings()
    return settings, _engine(settings.resolved_database_url), build_channels(settings)


@task(name="plan-deliveries", cache_policy=NONE)
def plan_task(incident_ref: str, stage: str) -> dict[str, list[int]]:
    """Write the stage's ledger rows (idempotent) and return the planned row ids by channel."""
    settings, engine, _ = _context()
    with session_scope(engine) as session:
        bundle = load_bundle(session, get_incident(session, incident_ref), stage)
    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    with session_scope(engine) as session:
        return pending_ids(session, bundle.message_ids)


@task(name="publish-batches", cache_policy=NONE)
def publish_task(channel: str, delivery_ids: list[int]) -> dict[str, Any]:
    """Claim and publish up to ``batches_per_task`` ledger rows of one channel."""
    settings, engine, channels = _context()
    report = publish_deliveries(engine, channels, delivery_ids,
                                playbooks_dir=settings.playbooks_dir,
                                max_attempts=settings.max_attempts)
    return {"channel": channel, "sent": report.sent, "failed": report.failed,
            "skipped": report.skipped, "errors": report.errors}


@flow(name="publish-stage", log_prints=False)
def publish_stage(incident_ref: str, stage: str) -> dict[str, Any]:
    """Plan and publish one approved stage; returns per-channel sent/failed/skipped."""
    settings = Settings()
    planned = plan_task(incident_ref, stage)
    totals: dict[str, PublishReport] = {c: PublishReport() for c in planned}
    futures: list[PrefectFuture[dict[str, Any]]] = []
    for channel in PUBLISH_ORDER:
        ids = planned.get(channel, [])
        step = settings.batches_per_task
        for start in range(0, len(ids), step):
            futures.append(publish_task.submit(channel, ids[start:start + step]))
        if channel == "status_page" and futures:
            wait(futures)  # the source of truth is live before anything links to it
    wait(futures)
    for future in futures:
        out = future.result()
        totals[out["channel"]].add(PublishReport(out["sent"], out["failed"], out["skipped"],
                                                 list(out["errors"])))
    return {
        "incident_ref": incident_ref,
        "stage": stage,
        "channels": {c: {"sent": r.sent, "failed": r.failed, "skipped": r.skipped}
                     for c, r in totals.items()},
        "errors": [e for r in totals.values() for e in r.errors],
    }


def run_stage(incident_ref: str, stage: str, *, max_workers: int | None = None) -> dict[str, Any]:
    """Run the flow in this process with a bounded thread pool (``max_workers`` from Settings).

    Flow-run heartbeats are off for in-process runs: Prefect 3.8 joins its heartbeat thread,
    which sleeps in 1 s steps, at the end of every flow run (measured: an empty flow takes 1.1 s
    with heartbeats, 0.2 s without). Heartbeats detect crashed runs on workers; here the caller
    is the process and sees the crash itself. Deployed flows on workers keep them.
    """
    workers = max_workers or Settings().max_workers
    pool: Any = ThreadPoolTaskRunner(max_workers=workers)  # Prefect's generic is too narrow
    runner = publish_stage.with_options(task_runner=pool)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        result: dict[str, Any] = runner(incident_ref, stage)
    return result
