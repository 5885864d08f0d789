"""Publish one approved stage of an incident, coordinated across channels; resume after a crash.

Each channel class declares its **lane** (``Channel.lane``; the registry lists them in
publication order): the ``first`` lane (the status page: every other message links to it) is
published and awaited, then every ``parallel`` channel (X, support, press) runs in its own lane
beside the ``fan_out`` ones (email). The task runner has a slot per non-fan-out channel beside
``max_workers`` slots for the fan-out, and fan-out chunks are submitted ``max_workers`` at a
time, so a dead channel retrying with backoff never takes a slot another channel needs. A
fan-out task runs ``batches_per_task`` ledger rows (up to 1,000 recipients each),
``send_concurrency`` requests in flight inside each: never one task per recipient (the local
Prefect server records only ~30 task runs/s).

**Status page first, for real**: after the first lane, ``hold_task`` keeps back every other row
of a stage whose status page rows are not all ``sent`` (``delivery/first_lane.py``): they stay
``planned``, the summary lists the stage under ``held`` and its line ("status page failed for
stage update: <reason>; nothing else was sent") ends ``errors``. A playbook stage may opt out
with ``status_page_first: false``. ``resume_incident`` puts the failed status page rows of held
stages back to ``planned`` first, so once the page can be written it goes, then the rest.

Every run starts by reconciling rows a dead sender left ``sending`` for longer than the lease
(``Settings.sending_lease_s``), so a flow retry never resends what the provider already has.
``resume_incident`` does the same for a whole incident, with a lease the operator chooses
(``crisiscomms resume``), then publishes whatever is planned (also after ``crisiscomms retry``).

Scale-out: with ``batches_deployment`` set (``publish-batches/<deployment>``), the fan-out
chunks run as flow runs of that deployment instead of local tasks, so a work pool's workers
share them; each chunk still claims its rows (``ledger.claim``), so no two workers send the same
batch, and the parent reads each chunk's outcome from the ledger (``prefect.yaml``,
``flows/deploy.py``, ``docs/scaling.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture, as_completed
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy.engine import Engine

from crisiscomms.channels.registry import (
    build_channels,
    channel_class,
    channel_classes,
    configured_rates,
    in_lane,
)
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import Channel, Lane
from crisiscomms.delivery.first_lane import hold_back, requeue_held_first
from crisiscomms.delivery.ledger import pending_by_channel, pending_ids
from crisiscomms.delivery.rate_limits import use_global_rate_limits
from crisiscomms.delivery.sender import (
    PublishReport,
    SendPolicy,
    publish_deliveries,
    reconcile_sending,
)
from crisiscomms.incident.service import get_incident, load_bundle, plan_bundle


def lane_slots() -> int:
    """Task-runner slots kept for the channels outside the fan-out (one lane each)."""
    return sum(1 for cls in channel_classes().values() if cls.lane is not Lane.fan_out)


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    engine = make_engine(url)
    init_db(engine)
    return engine


_RUN: ContextVar[tuple[Settings, dict[str, Channel]] | None] = ContextVar(
    "crisiscomms_run", default=None)


@contextmanager
def run_context(settings: Settings | None = None) -> Iterator[Settings]:
    """The settings and channels of one flow run, read once and shared by all its tasks (they
    inherit the context: Prefect's task runner copies it into each task's thread).

    py-spy on the warm worker during ``bench/intake.py``'s acknowledgements: building
    ``Settings`` (environment, workspace ``.env``, paths resolved) in every task was 6% of its
    CPU. One run also sees one configuration from its first task to its last. Nested: the
    outer run's settings stay."""
    current = _RUN.get()
    if current is not None:
        yield current[0]
        return
    settings = settings or Settings()
    token = _RUN.set((settings, build_channels(settings)))
    try:
        yield settings
    finally:
        _RUN.reset(token)


def _context() -> tuple[Settings, Engine, dict[str, Channel]]:
    """This run's settings (:func:`run_context`; read now outside a run), engine and channels."""
    current = _RUN.get()
    if current is None:
        settings = Settings()
        return settings, _engine(settings.resolved_database_url), build_channels(settings)
    settings, channels = current
    return settings, _engine(settings.resolved_database_url), channels


def send_policy(settings: Settings) -> SendPolicy:
    return SendPolicy(
        max_attempts=settings.max_attempts,
        base_delay_s=settings.retry_base_delay_s,
        max_delay_s=settings.retry_max_delay_s,
        rate_per_s=configured_rates(settings),
    )


def publish_chunk(channel: str, delivery_ids: Sequence[int]) -> dict[str, Any]:
    """Claim and publish up to ``batches_per_task`` ledger rows of one channel."""
    started = time.time()
    settings, engine, channels = _context()
    report = publish_deliveries(engine, channels, list(delivery_ids),
                                playbooks_dir=settings.playbooks_dir,
                                max_attempts=settings.max_attempts,
                                concurrency=settings.send_concurrency,
                                policy=send_policy(settings))
    return {"channel": channel, "sent": report.sent, "failed": report.failed,
            "skipped": report.skipped, "unconfirmed": report.unconfirmed,
            "deferred": report.deferred, "errors": report.errors, "started": started,
            "finished": time.time()}


@task(name="plan-deliveries", cache_policy=NONE)
def plan_task(incident_ref: str, stage: str) -> dict[str, Any]:
    """Reconcile stale ``sending`` rows of the stage, write its ledger rows (idempotent) and
    return the planned row ids by channel."""
    settings, engine, channels = _context()
    with session_scope(engine) as session:
        bundle = load_bundle(session, get_incident(session, incident_ref), stage)
    reconciled = reconcile_sending(engine, channels, playbooks_dir=settings.playbooks_dir,
                                   message_ids=bundle.message_ids,
                                   stale_after_s=settings.sending_lease_s)
    plan = plan_bundle(engine, settings, channel_classes(), bundle)
    with session_scope(engine) as session:
        planned = pending_ids(session, bundle.message_ids)
    return {"planned": planned, "reconciled": reconciled.as_dict(),
            "suppressed": plan.suppressed}


@task(name="reconcile-sending", cache_policy=NONE)
def reconcile_task(incident_ref: str, stale_after_s: float | None) -> dict[str, Any]:
    """Reconcile the incident's ``sending`` rows, then return its planned rows by channel."""
    settings, engine, channels = _context()
    with session_scope(engine) as session:
        incident_id = get_incident(session, incident_ref).id
    lease = settings.sending_lease_s if stale_after_s is None else stale_after_s
    reconciled = reconcile_sending(engine, channels, playbooks_dir=settings.playbooks_dir,
                                   incident_id=incident_id, stale_after_s=lease)
    assert incident_id is not None
    with session_scope(engine) as session:
        # a stage held behind a failed status page: publish the page again (same keys), so
        # what waited behind it can follow
        requeued = requeue_held_first(session, incident_id, channel_classes(),
                                      playbooks_dir=settings.playbooks_dir)
        planned = pending_by_channel(session, incident_id)
    return {"planned": planned, "reconciled": reconciled.as_dict(), "suppressed": 0,
            "first_requeued": [h.as_dict() for h in requeued]}


@task(name="hold-back", cache_policy=NONE)
def hold_task(planned: dict[str, list[int]]) -> dict[str, Any]:
    """After the first lane: the rows that may go now, and the stages held back because their
    status page is not published (their rows stay planned for resume)."""
    settings, engine, _ = _context()
    with session_scope(engine) as session:
        go, held = hold_back(session, planned, channel_classes(),
                             playbooks_dir=settings.playbooks_dir)
    return {"planned": go, "held": [h.as_dict() for h in held]}


@task(name="publish-batches", cache_policy=NONE)
def publish_task(channel: str, delivery_ids: list[int]) -> dict[str, Any]:
    """Claim and publish up to ``batches_per_task`` ledger rows of one channel."""
    return publish_chunk(channel, delivery_ids)


@flow(name="publish-batches", log_prints=False)
def publish_batches(channel: str, delivery_ids: list[int],
                    rate_limits: dict[str, str] | None = None) -> dict[str, Any]:
    """One chunk as its own flow run: what a work pool's workers pick up in scale-out mode.

    ``rate_limits`` maps a channel to a Prefect global concurrency limit with slot decay (made
    by ``flows/deploy.py``), so every worker draws from one shared rate; a name that does not
    exist fails the run before anything is claimed."""
    if rate_limits:
        _check_global_limits(rate_limits)
        use_global_rate_limits(rate_limits)
    return publish_chunk(channel, delivery_ids)


def _check_global_limits(names: Mapping[str, str]) -> None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        for channel, name in names.items():
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
            except Exception as exc:  # ObjectNotFound, or the API is unreachable
                raise RuntimeError(f"rate limit {name!r} for {channel} is not usable: "
                                   f"{exc}; run flows/deploy.py") from exc
            if not limit.slot_decay_per_second:
                raise RuntimeError(f"rate limit {name!r} for {channel} has no slot decay")


def _local_submit(channel: str, ids: list[int]) -> Callable[[], dict[str, Any]]:
    future: PrefectFuture[dict[str, Any]] = publish_task.submit(channel, ids)
    return future.result


class _DeploymentLane:
    """Email chunks as flow runs of the ``publish-batches`` deployment, picked up by whichever
    worker of the pool is free; the pool's and workers' limits bound concurrency.

    The outcome of a chunk is read from **our ledger** once its flow run is final, never from
    Prefect's result storage: the Delivery rows are the record (exactly once by claim), and a
    worker on another machine needs no shared result storage. Runs are polled in bulk (one API
    call per 200 pending runs per ``poll_s``), not one call per chunk.
    """

    def __init__(self, deployment: str, poll_s: float = 1.0,
                 wait_s: float | None = None) -> None:
        self.deployment, self.poll_s, self.wait_s = deployment, poll_s, wait_s
        self._deadline: float | None = None
        self._pending: set[Any] = set()
        self._final: dict[Any, tuple[str, float, float]] = {}

    def submit(self, channel: str, ids: list[int]) -> Callable[[], dict[str, Any]]:
        from prefect.deployments import run_deployment

        run: Any = run_deployment(  # type: ignore[call-arg]
            self.deployment, parameters={"channel": channel, "delivery_ids": ids},
            timeout=0, as_subflow=True, _sync=True)  # sync even if an event loop is running
        self._pending.add(run.id)
        return lambda: self._wait(run.id, channel, ids)

    def _wait(self, run_id: Any, channel: str, ids: list[int]) -> dict[str, Any]:
        """Until the run is final, or ``wait_s`` after the first wait: a run still waiting for
        a worker then is reported unsettled from the ledger and may run later (its claim
        keeps it exactly once; ``crisiscomms resume`` picks up what it leaves)."""
        if self._deadline is None and self.wait_s is not None:
            self._deadline = time.monotonic() + self.wait_s
        while run_id not in self._final:
            self._poll()
            if run_id in self._final:
                break
            if self._deadline is not None and time.monotonic() >= self._deadline:
                now = time.time()
                return _ledger_report(channel, ids, f"{channel} chunk flow run {run_id} not "
                                      f"final after {self.wait_s} s", now, now)
            time.sleep(self.poll_s)
        state, started, finished = self._final[run_id]
        return _ledger_report(channel, ids, f"{channel} chunk flow run {run_id} ended {state}",
                              started, finished)

    def _poll(self) -> None:
        from prefect import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.sorting import FlowRunSort

        pending = list(self._pending)
        with get_client(sync_client=True) as client:
            for i in range(0, len(pending), 200):
                page = pending[i:i + 200]
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)),
                    sort=FlowRunSort.ID_DESC, limit=len(page), offset=0)
                # limit and sort explicit: Prefect 3.8.8's client sends null for both, which
                # its server refuses (422) under the FastAPI we pin
                for run in runs:
                    if run.state is not None and run.state.is_final():
                        now = time.time()
                        start = run.start_time.timestamp() if run.start_time else now
                        end = run.end_time.timestamp() if run.end_time else now
                        self._final[run.id] = (str(run.state.name), start, end)
                        self._pending.discard(run.id)


def _ledger_report(channel: str, ids: Sequence[int], note: str, started: float,
                   finished: float) -> dict[str, Any]:
    """A chunk's outcome as the ledger holds it (recipients by state, failed rows' reasons)."""
    from sqlalchemy import func, select, tuple_
    from sqlmodel import col

    from crisiscomms.delivery.models import Delivery, DeliveryState

    _, engine, _ = _context()
    by_state: dict[str, int] = {}
    errors: list[str] = []
    # the chunk's rows and the recipients split out of them (same message and batch number)
    batches = select(col(Delivery.message_id), col(Delivery.batch_no)).where(
        col(Delivery.id).in_(list(ids)))
    of_chunk = tuple_(col(Delivery.message_id), col(Delivery.batch_no)).in_(batches)
    with session_scope(engine) as session:
        for state, total in session.execute(
                select(col(Delivery.state), func.sum(col(Delivery.recipient_count)))
                .where(of_chunk).group_by(col(Delivery.state))).all():
            by_state[DeliveryState(state).value] = int(total or 0)
        for batch_no, error in session.execute(
                select(col(Delivery.batch_no), col(Delivery.error))
                .where(of_chunk,
                       col(Delivery.state).in_([DeliveryState.failed,
                                                DeliveryState.unconfirmed]))).all():
            errors.append(f"{channel} batch {batch_no}: {error}")
    left = by_state.get("planned", 0) + by_state.get("sending", 0)
    if left:
        errors.append(f"{note}; {left} recipients not settled (crisiscomms resume "
                      "reconciles and sends them)")
    return {"channel": channel, "sent": by_state.get("sent", 0),
            "failed": by_state.get("failed", 0), "skipped": 0,
            "unconfirmed": by_state.get("unconfirmed", 0),
            "deferred": by_state.get("deferred", 0), "errors": errors,
            "started": started, "finished": finished}


def _run_lanes(planned: Mapping[str, list[int]], settings: Settings,
               remote: _DeploymentLane | None = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``first`` lane (awaited), then every ``parallel`` channel in its own lane beside the
    ``fan_out`` chunks, but only the rows of stages whose first lane is published: the others
    stay planned and are returned as held (``delivery/first_lane.py``). With ``remote``, the
    fan-out chunks become flow runs of the batches deployment (the fan-out that needs the
    workers); the handful of rows of the other channels stay tasks of this run.
    Returns (chunk results, held stages)."""
    rows: Mapping[str, list[int]] = planned

    def chunks(channel: str) -> list[list[int]]:
        ids = rows.get(channel, [])
        cls = channel_class(channel)
        one_each = cls.recipients is not None and cls.limits.batch_size == 1  # SMS: a row
        # is one recipient, so a task takes many more of them than of 1,000-recipient rows
        step = settings.single_rows_per_task if one_each else settings.batches_per_task
        return [ids[i:i + step] for i in range(0, len(ids), step)]

    results = [_local_submit(channel, ids)()
               for channel in in_lane(Lane.first) for ids in chunks(channel)]
    gate = hold_task(dict(planned))
    rows = gate["planned"]  # only stages whose status page is up (or that opted out)
    waits: list[Callable[[], dict[str, Any]]] = [
        _local_submit(channel, ids) for channel in in_lane(Lane.parallel)
        for ids in chunks(channel)]
    fan_out = [(channel, ids) for channel in in_lane(Lane.fan_out) for ids in chunks(channel)]
    if remote is None:
        results.extend(_fan_out_lane(fan_out, settings.max_workers))
    else:  # every chunk at once: the work pool and its workers bound concurrency
        submitted = [remote.submit(channel, ids) for channel, ids in fan_out]
        results.extend(w() for w in submitted)
    results.extend(w() for w in waits)
    return results, gate["held"]


def _fan_out_lane(chunks: list[tuple[str, list[int]]], width: int) -> list[dict[str, Any]]:
    """Fan-out chunks (channel, row ids) as local tasks, ``width`` at a time (never the other
    channels' slots)."""
    queue = list(chunks)
    running: list[PrefectFuture[dict[str, Any]]] = [
        publish_task.submit(*queue.pop(0)) for _ in range(min(width, len(queue)))]
    out: list[dict[str, Any]] = []
    while running:
        done = next(iter(as_completed(running)))
        running.remove(done)
        out.append(done.result())
        if queue:
            running.append(publish_task.submit(*queue.pop(0)))
    return out


def _summary(incident_ref: str, stage: str | None, prep: Mapping[str, Any],
             lanes: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> dict[str, Any]:
    """Per channel sent/failed/skipped/unconfirmed and held (recipients left planned behind a
    status page that is not published); ``errors`` ends with one line per held stage."""
    results, held = lanes
    totals: dict[str, PublishReport] = {c: PublishReport() for c in prep["planned"]}
    held_by_channel: dict[str, int] = {}
    for hold in held:
        for channel, count in hold["held"].items():
            held_by_channel[channel] = held_by_channel.get(channel, 0) + count
    spans: dict[str, list[float]] = {}
    for out in results:
        totals.setdefault(out["channel"], PublishReport()).add(PublishReport(
            out["sent"], out["failed"], out["skipped"], out.get("unconfirmed", 0),
            out.get("deferred", 0), list(out["errors"])))
        span = spans.setdefault(out["channel"], [out["started"], out["finished"]])
        span[0], span[1] = min(span[0], out["started"]), max(span[1], out["finished"])
    return {
        "incident_ref": incident_ref,
        "stage": stage,
        "channels": {c: {"sent": r.sent, "failed": r.failed, "skipped": r.skipped,
                         "unconfirmed": r.unconfirmed, "deferred": r.deferred,
                         "held": held_by_channel.get(c, 0)}
                     for c, r in totals.items()},
        "lane_seconds": {c: round(b - a, 3) for c, (a, b) in spans.items()},
        "reconciled": prep["reconciled"],
        "suppressed": prep["suppressed"],
        "held": held,
        "first_requeued": prep.get("first_requeued", []),
        "errors": [e for r in totals.values() for e in r.errors] + [h["line"] for h in held],
    }


def publish_in_run(incident_ref: str, stage: str, batches_deployment: str | None = None,
                   chunk_wait_s: float | None = None) -> dict[str, Any]:
    """Plan and publish one approved stage as tasks of the flow run this is called in (its
    task runner); per-channel sent/failed/skipped. ``publish-stage`` is this as a flow;
    ``handle-event`` calls it in its own run (a subflow cost 0.4 s of API round trips before
    the first send)."""
    with run_context() as settings:
        prep = plan_task(incident_ref, stage)
        return _publish_planned(incident_ref, stage, prep, settings, batches_deployment,
                                chunk_wait_s)


def _publish_planned(incident_ref: str, stage: str | None, prep: Mapping[str, Any],
                     settings: Settings, batches_deployment: str | None,
                     chunk_wait_s: float | None) -> dict[str, Any]:
    """Publish what ``prep`` planned, in lanes (fan-out chunks as runs of
    ``batches_deployment`` when given), and summarise it."""
    remote = (_DeploymentLane(batches_deployment, wait_s=chunk_wait_s)
              if batches_deployment else None)
    return _summary(incident_ref, stage, prep, _run_lanes(prep["planned"], settings, remote))


@flow(name="publish-stage", log_prints=False)
def publish_stage(incident_ref: str, stage: str, batches_deployment: str | None = None,
                  chunk_wait_s: float | None = None) -> dict[str, Any]:
    """Plan and publish one approved stage; returns per-channel sent/failed/skipped.

    ``batches_deployment``: fan-out chunks run as flow runs of that deployment (scale-out);
    ``chunk_wait_s``: stop waiting for them after that long (None: until they end)."""
    return publish_in_run(incident_ref, stage, batches_deployment, chunk_wait_s)


@flow(name="resume-incident", log_prints=False)
def resume_incident(incident_ref: str, stale_after_s: float | None = None,
                    batches_deployment: str | None = None,
                    chunk_wait_s: float | None = None) -> dict[str, Any]:
    """Reconcile the incident's ``sending`` rows against the providers, then publish every
    planned row (requeued by reconciliation or by ``crisiscomms retry``)."""
    with run_context() as settings:
        prep = reconcile_task(incident_ref, stale_after_s)
        return _publish_planned(incident_ref, None, prep, settings, batches_deployment,
                                chunk_wait_s)


def _in_process(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return fn()


def _runner(max_workers: int | None) -> Any:
    workers = max_workers or Settings().max_workers
    return ThreadPoolTaskRunner(max_workers=workers + lane_slots())


def run_stage(incident_ref: str, stage: str, *, max_workers: int | None = None) -> dict[str, Any]:
    """Run the flow in this process with a bounded thread pool (``max_workers`` fan-out slots
    from Settings, plus one lane per other channel).

    Flow-run heartbeats are off for in-process runs: Prefect 3.8 joins its heartbeat thread,
    which sleeps in 1 s steps, at the end of every flow run (measured: an empty flow takes 1.1 s
    with heartbeats, 0.2 s without). Heartbeats detect crashed runs on workers; here the caller
    is the process and sees the crash itself. Deployed flows on workers keep them.
    """
    runner = publish_stage.with_options(task_runner=_runner(max_workers))
    return _in_process(lambda: runner(incident_ref, stage))


def run_resume(incident_ref: str, *, stale_after_s: float | None = None,
               max_workers: int | None = None) -> dict[str, Any]:
    """Run ``resume_incident`` in this process (``crisiscomms resume`` / ``retry``)."""
    runner = resume_incident.with_options(task_runner=_runner(max_workers))
    return _in_process(lambda: runner(incident_ref, stale_after_s))
