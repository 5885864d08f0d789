"""Group commit for receivers that get one reaction per request (Inbound Parse, tickets, CSAT).

SendGrid posts one reply per request and help desks one ticket comment per webhook, so a
busy minute is hundreds of small concurrent requests. Storing each on its own costs a triage
call, the linking lookups and a commit per reaction, and concurrent SQLite writers wait on
each other's locks. :class:`ReactionWriter` instead runs one writer thread: each request
hands over its reactions and waits; the writer takes everything queued meanwhile (up to
``max_batch``) and stores it with **one** :func:`~crisiscomms.reactions.service.store_reactions`
call (one triage batch, one set of lookups, one INSERT, one commit), then answers each request
with its own share. Under light load a batch is one request, so nothing waits for company.

A failure of the batch (the database is down) fails every request in it; the provider
retries each, and a replay is stored once anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlmodel import Session

from crisiscomms.reactions.service import ReactionIn, StoreResult, storable, store_reactions
from crisiscomms.reactions.triage import Triager


@dataclass(frozen=True)
class Share:
    """One request's part of a stored batch."""

    received: int
    stored: int
    duplicates: int
    needs_human: int
    linked: int

    def as_dict(self) -> dict[str, int]:
        return {"received": self.received, "stored": self.stored,
                "duplicates": self.duplicates, "needs_human": self.needs_human,
                "linked": self.linked}


@dataclass
class _Pending:
    items: Sequence[ReactionIn]
    replace: bool
    future: Future[Share]


class ReactionWriter:
    """One writer thread storing what concurrent requests hand it, in batches."""

    def __init__(self, sessions: Callable[[], AbstractContextManager[Session]],
                 triager: Triager, *, max_batch: int = 500) -> None:
        self._sessions, self._triager, self._max_batch = sessions, triager, max_batch
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.batches = 0

    def submit(self, items: Sequence[ReactionIn], *, replace: bool = False) -> Future[Share]:
        """Queue ``items`` for the next batch; the future gives this request's share."""
        future: Future[Share] = Future()
        with self._cond:
            if self._stopped:
                raise RuntimeError("the reaction writer is stopped")
            if self._thread is None:  # started on first use: no thread at import or build
                self._thread = threading.Thread(target=self._run, name="reaction-writer",
                                                daemon=True)
                self._thread.start()
            self._queue.append(_Pending(items, replace, future))
            self._cond.notify()
        return future

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _take(self) -> list[_Pending] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if not self._queue:
                return None
            taken: list[_Pending] = []
            count = 0
            while self._queue and (not taken or count + len(self._queue[0].items)
                                   <= self._max_batch):
                pending = self._queue.pop(0)
                taken.append(pending)
                count += len(pending.items)
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            for replace in (False, True):
                group = [p for p in taken if p.replace is replace]
                if group:
                    self._store(group, replace)

    def _store(self, group: list[_Pending], replace: bool) -> None:
        items = [item for pending in group for item in pending.items]
        try:
            with self._sessions() as session:
                result = store_reactions(session, items, triager=self._triager,
                                         replace=replace)
        except Exception as exc:  # every waiting request gets the failure, then retries
            for pending in group:
                pending.future.set_exception(exc)
            return
        self.batches += 1
        for pending, share in zip(group, _shares(group, result), strict=True):
            pending.future.set_result(share)


def _shares(group: list[_Pending], result: StoreResult) -> list[Share]:
    """Each request's part: a key stored in this batch counts for the first request that
    carried it; every other copy is a duplicate."""
    unclaimed = set(result.stored_keys)
    shares = []
    for pending in group:
        mine = set()
        for item in pending.items:
            key = (item.source.value, storable(item.source_id))
            if key in unclaimed:
                unclaimed.discard(key)
                mine.add(key)
        shares.append(Share(received=len(pending.items), stored=len(mine),
                            duplicates=len(pending.items) - len(mine),
                            needs_human=len(mine & result.flagged_keys),
                            linked=len(mine & result.linked_keys)))
    return shares
