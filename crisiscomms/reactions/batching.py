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

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlmodel import Session

from crisiscomms.core.group_commit import GroupCommit
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


@dataclass(frozen=True)
class _Pending:
    items: Sequence[ReactionIn]
    replace: bool


class ReactionWriter:
    """One writer thread storing what concurrent requests hand it, in batches
    (:class:`~crisiscomms.core.group_commit.GroupCommit`)."""

    def __init__(self, sessions: Callable[[], AbstractContextManager[Session]],
                 triager: Triager, *, max_batch: int = 500) -> None:
        self._sessions, self._triager = sessions, triager
        self._writer: GroupCommit[_Pending, Share] = GroupCommit(
            self._store_batch, name="reaction-writer", max_batch=max_batch,
            weight=lambda pending: len(pending.items))

    @property
    def batches(self) -> int:
        return self._writer.batches

    def submit(self, items: Sequence[ReactionIn], *, replace: bool = False) -> Future[Share]:
        """Queue ``items`` for the next batch; the future gives this request's share."""
        return self._writer.submit(_Pending(items, replace))

    def stop(self) -> None:
        self._writer.stop()

    def _store_batch(self, batch: list[_Pending]) -> list[Share]:
        """Plain and replacing reactions in two store calls, then each request's share."""
        shares: dict[int, Share] = {}
        for replace in (False, True):
            group = [(i, p) for i, p in enumerate(batch) if p.replace is replace]
            if not group:
                continue
            items = [item for _, pending in group for item in pending.items]
            with self._sessions() as session:
                result = store_reactions(session, items, triager=self._triager,
                                         replace=replace)
            for (i, _), share in zip(group, _shares([p for _, p in group], result),
                                     strict=True):
                shares[i] = share
        return [shares[i] for i in range(len(batch))]


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
