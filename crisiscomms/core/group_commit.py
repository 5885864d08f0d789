"""Group commit: one writer thread stores what concurrent requests hand it, in batches.

A receiver that gets one small thing per request (a reply, a ticket comment, an alert) would
otherwise pay a transaction, its lookups and a commit per request, and concurrent SQLite
writers wait on each other's locks. :class:`GroupCommit` runs one writer thread: each request
submits its item and waits on a future; the writer takes everything queued meanwhile (up to
``max_batch`` by ``weight``) and calls ``store`` **once** with the whole batch, which returns
one result per item, in order. Under light load a batch is one request, so nothing waits for
company.

A failure of the batch (the database is down) fails every request in it; each caller answers
with an error and the sender retries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class GroupCommit(Generic[In, Out]):
    """One writer thread calling ``store(batch) -> results`` for what requests submit."""

    def __init__(self, store: Callable[[list[In]], Sequence[Out]], *, name: str,
                 max_batch: int = 500, weight: Callable[[In], int] = lambda _: 1) -> None:
        self._store, self._name = store, name
        self._max_batch, self._weight = max_batch, weight
        self._queue: list[tuple[In, Future[Out]]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.batches = 0

    def submit(self, item: In) -> Future[Out]:
        """Queue ``item`` for the next batch; the future gives its result."""
        future: Future[Out] = Future()
        with self._cond:
            if self._stopped:
                raise RuntimeError(f"the {self._name} writer is stopped")
            if self._thread is None:  # started on first use: no thread at import or build
                self._thread = threading.Thread(target=self._run, name=self._name,
                                                daemon=True)
                self._thread.start()
            self._queue.append((item, future))
            self._cond.notify()
        return future

    def stop(self) -> None:
        """Store what is queued, then end the writer thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _take(self) -> list[tuple[In, Future[Out]]] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if not self._queue:
                return None
            taken: list[tuple[In, Future[Out]]] = []
            total = 0
            while self._queue and (not taken or total + self._weight(self._queue[0][0])
                                   <= self._max_batch):
                entry = self._queue.pop(0)
                taken.append(entry)
                total += self._weight(entry[0])
            return taken

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            try:
                results = self._store([item for item, _ in taken])
                if len(results) != len(taken):
                    raise RuntimeError(f"{self._name}: {len(results)} results for "
                                       f"{len(taken)} items")
            except Exception as exc:  # every waiting request gets the failure, then retries
                for _, future in taken:
                    future.set_exception(exc)
                continue
            self.batches += 1
            for (_, future), result in zip(taken, results, strict=True):
                future.set_result(result)
