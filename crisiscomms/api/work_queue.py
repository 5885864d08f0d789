"""A bounded queue drained by a few worker threads: the subscriptions app hands each accepted
subscribe request to it and answers at once, so a slow email provider never holds a request,
the event loop or another client (and the answer takes the same time whatever the address's
state, because the database and the provider are only touched here, after the answer).

Full (``max_pending`` waiting or running): :meth:`WorkQueue.submit` says so and the caller
answers 503 with ``Retry-After``. A job that raises is logged (its type, never its data) and
the queue goes on. In-memory: what is queued when the process dies is lost, and the reader is
told to try again if no email arrives (the answer says an email is "on its way", no more).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class WorkQueue(Generic[T]):
    """``handle`` each submitted item on one of ``workers`` threads; at most ``max_pending``
    items waiting or running."""

    def __init__(self, handle: Callable[[T], None], *, workers: int, max_pending: int,
                 name: str = "work-queue") -> None:
        if workers < 1 or max_pending < 1:
            raise ValueError("workers and max_pending must be at least 1")
        self._handle, self.name, self.max_pending = handle, name, max_pending
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._pending = 0
        self._idle = threading.Condition()
        self._stopped = False

    @property
    def pending(self) -> int:
        with self._idle:
            return self._pending

    def submit(self, item: T) -> bool:
        """Queue ``item``; False (and nothing queued) when the queue is full or stopped."""
        with self._idle:
            if self._stopped or self._pending >= self.max_pending:
                return False
            self._pending += 1
        try:
            self._pool.submit(self._run, item).add_done_callback(self._done)
        except RuntimeError:  # shut down meanwhile
            self._done(None)
            return False
        return True

    def _run(self, item: T) -> None:
        try:
            self._handle(item)
        except Exception as exc:  # one bad job never stops the queue; no data in the log
            log.error("%s: a job failed: %s", self.name, type(exc).__name__)

    def _done(self, _: Future[None] | None) -> None:
        with self._idle:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until nothing is waiting or running; False when ``timeout_s`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def stop(self, *, wait: bool = True) -> None:
        """Refuse new items; with ``wait``, finish the queued ones first."""
        with self._idle:
            self._stopped = True
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
