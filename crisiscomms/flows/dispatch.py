"""Start the flow of accepted events: the contract's ``Dispatcher`` (``intake/contract.py``) and
the loop that drains the outbox.

- :class:`PrefectDispatcher`: a run of the ``handle-event`` deployment
  (``Settings.intake_deployment``) on a Prefect server, picked up by a worker. Its Prefect
  idempotency key is ``intake-event-<id>``: dispatching the same event twice (a crash between
  starting the run and marking the row, two API processes) gives the same one flow run.
- :class:`InlineDispatcher`: the same flow in a bounded thread pool of this process (the
  embedded default, drills without a server); heartbeats off as for ``run_stage``.
- :class:`OutboxLoop`: a daemon thread that starts a flow for each committed outbox row
  without one (``intake/outbox.py``) and records its run; the API calls :meth:`OutboxLoop.wake`
  right after committing, so dispatch does not wait for the next poll. A dispatch that fails
  (the server is down) leaves the row pending for the next pass, and is logged without
  secrets.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Engine

from crisiscomms.core.redaction import safe_reason
from crisiscomms.core.settings import Settings
from crisiscomms.intake.contract import Dispatcher
from crisiscomms.intake.outbox import mark_dispatched, pending_dispatch

log = logging.getLogger(__name__)


def idempotency_key(event_id: int) -> str:
    """Prefect's idempotency key of an event's flow run: one run per event."""
    return f"intake-event-{event_id}"


def run_tags(incident_ref: str, stage: str) -> list[str]:
    """Tags of an event's flow run (filter them in Prefect's UI and API)."""
    return ["crisiscomms", "intake", f"incident:{incident_ref}", f"stage:{stage}"]


BUSY_STATUSES = frozenset({429, 503})
"""Answers of a Prefect server that is busy now: its SQLite database was locked by another
writer (503) or it sheds load (429)."""
BUSY_RETRIES_S = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
"""Pauses before each new attempt of a busy answer, 6.4 s in all (then the loop's next pass).
Prefect's own client waits 2 s, then 4 s...: on a SQLite server, a flow run created while the
previous run's task events were being written waited 2 s this way (``bench/intake.py``:
``dispatch`` 1.9-2.4 s of an acknowledgement's p50)."""


class PrefectDispatcher:
    """A run of ``deployment`` (``handle-event/crisiscomms-intake``) per event.

    One request per event on a kept connection: the deployment's id is looked up once (again
    when the server no longer knows it: deleted and deployed anew), and the client stays open
    between events. ``run_deployment`` opened a client and read the deployment by name for
    every event, two round trips before the run existed."""

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self._lock = threading.Lock()
        self._client: Any = None
        self._deployment_id: Any = None

    def __repr__(self) -> str:
        return f"PrefectDispatcher({self.deployment!r})"

    def start(self, event_id: int, *, incident_ref: str, stage: str) -> str:
        from prefect.exceptions import PrefectHTTPStatusError
        from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

        with self._lock, temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):
            for pause in BUSY_RETRIES_S:
                try:
                    return self._create(event_id, incident_ref, stage)
                except PrefectHTTPStatusError as exc:
                    status = exc.response.status_code
                    if status in BUSY_STATUSES:
                        time.sleep(pause)  # the same idempotency key: never a second run
                    elif status == 404 and self._deployment_id is not None:
                        self._deployment_id = None  # deployed anew: find it again
                    else:
                        self.close()
                        raise
                except Exception:
                    self.close()  # a broken connection or server: the next event afresh
                    raise
            try:
                return self._create(event_id, incident_ref, stage)  # whatever it answers now
            except Exception:
                self.close()
                raise

    def _create(self, event_id: int, incident_ref: str, stage: str) -> str:
        from prefect import get_client
        from prefect.states import Scheduled

        if self._client is None:
            client = get_client(sync_client=True)
            client.__enter__()
            self._client = client
        if self._deployment_id is None:
            self._deployment_id = self._client.read_deployment_by_name(self.deployment).id
        run = self._client.create_flow_run_from_deployment(
            self._deployment_id, parameters={"event_id": event_id}, state=Scheduled(),
            tags=run_tags(incident_ref, stage), idempotency_key=idempotency_key(event_id))
        return str(run.id)

    def close(self) -> None:
        """Close the kept client (the loop's :meth:`OutboxLoop.stop` calls it)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.__exit__(None, None, None)


class InlineDispatcher:
    """The ``handle-event`` flow in a thread of this process, ``max_workers`` at a time.

    The flow run is created first (so its id is known and recorded at once), then run by
    Prefect's engine in the pool. An event started here is not started again by this process;
    across processes, ``run_event_stage`` and the ledger keep a second run from rendering or
    sending anything twice."""

    def __init__(self, max_workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers,
                                        thread_name_prefix="handle-event")
        self._started: dict[int, str] = {}
        self._lock = threading.Lock()
        self.futures: dict[str, Future[Any]] = {}

    def __repr__(self) -> str:
        return f"InlineDispatcher(started={len(self._started)})"

    def start(self, event_id: int, *, incident_ref: str, stage: str) -> str:
        from prefect import get_client

        from crisiscomms.flows.handle_event import handle_event

        with self._lock:
            if event_id in self._started:
                return self._started[event_id]
            with get_client(sync_client=True) as client:
                run = client.create_flow_run(handle_event, parameters={"event_id": event_id},
                                             tags=run_tags(incident_ref, stage))
            run_id = str(run.id)
            self._started[event_id] = run_id
            # the caller's context (Prefect's settings, e.g. a temporary_settings API URL)
            # goes with the flow into the pool's thread
            context = contextvars.copy_context()
            self.futures[run_id] = self._pool.submit(context.run, self._run, run, event_id)
            return run_id

    @staticmethod
    def _run(run: Any, event_id: int) -> Any:
        from prefect.flow_engine import run_flow
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        from crisiscomms.flows.handle_event import handle_event

        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            try:
                return run_flow(handle_event, flow_run=run, parameters={"event_id": event_id})
            except Exception as exc:
                log.warning("handle-event for intake event %s failed: %s", event_id,
                            safe_reason(exc))
                raise

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


class OutboxLoop:
    """Dispatch committed outbox rows that have no flow run yet; mark each with its run.

    :meth:`run_once` is one pass (tests and the CLI); :meth:`start` runs passes in a daemon
    thread every ``poll_s`` seconds, or at once after :meth:`wake`."""

    def __init__(self, engine: Engine, dispatcher: Dispatcher, poll_s: float = 0.5,
                 batch: int = 100) -> None:
        self.engine, self.dispatcher = engine, dispatcher
        self.poll_s, self.batch = poll_s, batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pass = threading.Lock()
        self.failures = 0
        """Dispatches that failed so far (each is retried on a later pass)."""

    def run_once(self) -> int:
        """Dispatch pending rows, oldest first; how many were started. Stops at the first
        failure (a server that is down fails them all): the rest wait for the next pass."""
        started = 0
        with self._pass:  # one pass at a time: wake() during a pass just asks for another
            for row in pending_dispatch(self.engine, self.batch):
                assert row.id is not None
                try:
                    run_id = self.dispatcher.start(row.id, incident_ref=row.incident_ref or "",
                                                   stage=row.stage or "")
                except Exception as exc:
                    self.failures += 1
                    log.warning("intake event %s not dispatched (retried next pass): %s",
                                row.id, safe_reason(exc))
                    break
                mark_dispatched(self.engine, row.id, run_id)
                started += 1
        return started

    def wake(self) -> None:
        """Dispatch now (the API calls it right after committing accepted events)."""
        self._wake.set()

    def start(self) -> OutboxLoop:
        if self._thread is None:
            context = contextvars.copy_context()  # Prefect's settings of the starter
            self._thread = threading.Thread(target=context.run, args=(self._loop,),
                                            name="intake-outbox", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_once()
            except Exception as exc:  # the database itself: keep the loop alive
                log.warning("intake outbox pass failed: %s", safe_reason(exc))
            self._wake.wait(self.poll_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        close = getattr(self.dispatcher, "close", None)
        if close is not None:
            close()


def make_outbox_loop(settings: Settings, engine: Engine) -> OutboxLoop:
    """The outbox loop ``crisiscomms api`` and ``crisiscomms dispatch`` run, with the dispatcher
    ``settings.intake_dispatch`` names: runs of ``intake_deployment`` on the Prefect server
    (``PREFECT_API_URL``), or the flow in this process (``inline``)."""
    dispatcher: Dispatcher = (PrefectDispatcher(settings.intake_deployment)
                              if settings.intake_dispatch == "prefect"
                              else InlineDispatcher(settings.max_workers))
    return OutboxLoop(engine, dispatcher)
