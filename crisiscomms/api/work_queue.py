"""A bounded queue drained by a few worker threads: the subscriptions app hands each accepted
subscribe request to it and answers at once, so a slow email provider never holds a request,
the event loop or another client (and the answer takes the same time whatever the address's
state, because the database and the provider are only touched here, after the answer).

Full (``max_pending`` waiting or running): :meth:`WorkQueue.submit` says so and the caller
answers 503 with ``Retry-After``. A job that raises is logged (its type, never its data) and
the queue goes on. In-memory: what is queued when the process dies is lost, and the reader is
told to try again if no email arrives (the answer says an email is "on its way", no more).

A plain deque under one lock, not a ``ThreadPoolExecutor``: submitting is on the event loop's
path, and an executor builds a ``Future`` (with its ``Condition`` and lock) per item, three
times the work of the rest of :meth:`WorkQueue.submit`; and ten thousand waiting items would
be ten thousand such groups for every full garbage collection to walk, a pause of a fifth of a
second during which no request is answered. Here a waiting item is the item itself.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class WorkQueue(Generic[T]):
    """``handle`` each submitted item on one of ``workers`` threads (started as needed); at
    most ``max_pending`` items waiting or running."""

    def __init__(self, handle: Callable[[T], None], *, workers: int, max_pending: int,
                 name: str = "work-queue") -> None:
        if workers < 1 or max_pending < 1:
            raise ValueError("workers and max_pending must be at least 1")
        self._handle, self.name, self.max_pending = handle, name, max_pending
        self.workers = workers
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # an item waits, or stopping
        self._idle = threading.Condition(self._lock)  # nothing waiting or running
        self._pending = 0
        self._sleeping = 0
        self._threads: list[threading.Thread] = []
        self._stopped = False

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def submit(self, item: T) -> bool:
        """Queue ``item``; False (and nothing queued) when the queue is full or stopped."""
        with self._lock:
            if self._stopped or self._pending >= self.max_pending:
                return False
            self._pending += 1
            self._items.append(item)
            if self._sleeping:
                self._ready.notify()
            elif len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self.name}_{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
        return True

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._items and not self._stopped:
                    self._sleeping += 1
                    self._ready.wait()
                    self._sleeping -= 1
                if not self._items:  # stopped, and nothing left to do
                    return
                item = self._items.popleft()
            try:
                self._handle(item)
            except Exception as exc:  # one bad job never stops the queue; no data in the log
                log.error("%s: a job failed: %s", self.name, type(exc).__name__)
            finally:
                del item  # a finished item is not kept alive while the worker sleeps
                self._finished(1)

    def _finished(self, count: int) -> None:
        with self._lock:
            self._pending -= count
            if self._pending == 0:
                self._idle.notify_all()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until nothing is waiting or running; False when ``timeout_s`` passed first."""
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def stop(self, *, wait: bool = True) -> None:
        """Refuse new items; with ``wait``, finish the queued ones first (else drop them and
        let the running ones end on their own)."""
        with self._lock:
            self._stopped = True
            dropped = 0 if wait else len(self._items)
            if dropped:
                self._items.clear()
            self._ready.notify_all()
            threads = list(self._threads)
        if dropped:
            self._finished(dropped)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()
