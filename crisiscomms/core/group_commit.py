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

An async caller awaits :meth:`GroupCommit.store`: its waiter is a future of its own event loop,
and the writer settles every such waiter of a batch with **one** ``call_soon_threadsafe`` per
loop (waking a loop from a thread costs a syscall; one per request was a fifth of the writer's
time under load).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def _settle(waiters: list[tuple[asyncio.Future[Out], Out | None, BaseException | None]]
            ) -> None:
    """On the waiters' loop: give each its result or exception (unless its caller left)."""
    for waiter, result, error in waiters:
        if waiter.done():
            continue
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)  # type: ignore[arg-type]


class GroupCommit(Generic[In, Out]):
    """One writer thread calling ``store(batch) -> results`` for what requests submit."""

    def __init__(self, store: Callable[[list[In]], Sequence[Out]], *, name: str,
                 max_batch: int = 500, weight: Callable[[In], int] = lambda _: 1) -> None:
        self._store, self._name = store, name
        self._max_batch, self._weight = max_batch, weight
        self._queue: deque[tuple[In, Future[Out] | asyncio.Future[Out]]] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.batches = 0

    def submit(self, item: In) -> Future[Out]:
        """Queue ``item`` for the next batch; the future gives its result (from any thread)."""
        future: Future[Out] = Future()
        self._put(item, future)
        return future

    async def store(self, item: In) -> Out:
        """Queue ``item`` for the next batch and await its result (from an event loop)."""
        waiter: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._put(item, waiter)
        return await waiter

    def _put(self, item: In, waiter: Future[Out] | asyncio.Future[Out]) -> None:
        with self._cond:
            if self._stopped:
                raise RuntimeError(f"the {self._name} writer is stopped")
            if self._thread is None:  # started on first use: no thread at import or build
                self._thread = threading.Thread(target=self._run, name=self._name,
                                                daemon=True)
                self._thread.start()
            self._queue.append((item, waiter))
            self._cond.notify()

    def stop(self) -> None:
        """Store what is queued, then end the writer thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _take(self) -> list[tuple[In, Future[Out] | asyncio.Future[Out]]] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if not self._queue:
                return None
            taken: list[tuple[In, Future[Out] | asyncio.Future[Out]]] = []
            total = 0
            while self._queue and (not taken or total + self._weight(self._queue[0][0])
                                   <= self._max_batch):
                entry = self._queue.popleft()
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
                self._answer(taken, [None] * len(taken), exc)
                continue
            self.batches += 1
            self._answer(taken, list(results), None)

    @staticmethod
    def _answer(taken: list[tuple[In, Future[Out] | asyncio.Future[Out]]],
                results: list[Out | None], error: BaseException | None) -> None:
        """Settle the batch's waiters: thread futures here, loop futures with one wake-up per
        loop."""
        by_loop: dict[asyncio.AbstractEventLoop,
                      list[tuple[asyncio.Future[Out], Out | None, BaseException | None]]] = {}
        for (_, waiter), result in zip(taken, results, strict=True):
            if isinstance(waiter, asyncio.Future):
                by_loop.setdefault(waiter.get_loop(), []).append((waiter, result, error))
            elif error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(result)  # type: ignore[arg-type]
        for loop, waiters in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, waiters)


class CallerCommit(Generic[In, Out]):
    """Group commit without a thread of its own: the caller that finds nobody storing stores
    everything queued meanwhile, its own item and the waiting callers', in one ``store`` call.

    For work that already runs in several threads and costs the same for one item as for
    many (the status page: one locale's update or five, it is one build and one publish).
    Every caller gets its own result; a failure of the batch is every caller's. A caller
    interrupted while storing (a cancelled flow run's ``BaseException``) puts the others' items
    back for the next caller and raises in its own thread only."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._leader = threading.Lock()
        self._queue: list[tuple[In, Future[Out]]] = []
        self.batches = 0

    def run(self, item: In, store: Callable[[list[In]], Sequence[Out]]) -> Out:
        """``item``'s result, stored by this caller or by the one storing when it came."""
        future: Future[Out] = Future()
        with self._mutex:
            self._queue.append((item, future))
        while not future.done():
            with self._leader:
                if future.done():
                    break
                with self._mutex:
                    taken, self._queue = self._queue, []
                try:
                    results = list(store([queued for queued, _ in taken]))
                    if len(results) != len(taken):
                        raise RuntimeError(f"{len(results)} results for {len(taken)} items")
                except Exception as exc:
                    for _, waiter in taken:
                        waiter.set_exception(exc)
                except BaseException:  # interrupted: the others wait for the next caller
                    with self._mutex:
                        self._queue[:0] = [entry for entry in taken if entry[1] is not future]
                    raise
                else:
                    self.batches += 1
                    for (_, waiter), result in zip(taken, results, strict=True):
                        waiter.set_result(result)
        return future.result()
