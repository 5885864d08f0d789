"""GroupCommit: batches what concurrent callers submit; async callers are woken once per batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from crisiscomms.core.group_commit import GroupCommit

T = TypeVar("T")


def run_fresh(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: the suite's earlier tests may leave an event
    loop running in the main thread, where ``asyncio.run`` refuses to start."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class Recorder:
    """A store that doubles each item and remembers its batches; it can be held shut so that
    submissions pile up into one batch, or told to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None

    def __call__(self, batch: list[int]) -> list[int]:
        self.gate.wait(10)
        self.batches.append(list(batch))
        if self.fail is not None:
            raise self.fail
        return [item * 2 for item in batch]


async def _store_many(writer: GroupCommit[int, int], items: range) -> list[int]:
    return list(await asyncio.gather(*(writer.store(i) for i in items)))


def test_async_callers_get_their_own_results_from_few_batches() -> None:
    store = Recorder()
    writer: GroupCommit[int, int] = GroupCommit(store, name="t", max_batch=50)
    store.gate.clear()  # the first batch waits: the rest queue up behind it
    first = writer.submit(-1)

    async def main() -> list[int]:
        task = asyncio.ensure_future(_store_many(writer, range(120)))
        await asyncio.sleep(0.05)
        store.gate.set()
        return await task

    assert run_fresh(main()) == [i * 2 for i in range(120)]
    assert first.result(5) == -2
    writer.stop()
    assert sorted(i for batch in store.batches for i in batch) == [-1, *range(120)]
    assert max(len(batch) for batch in store.batches) == 50  # max_batch holds
    assert len(store.batches) <= 1 + 3  # the held one, then 120 in batches of 50


def test_a_failed_batch_fails_every_caller_in_it() -> None:
    store = Recorder()
    store.fail = RuntimeError("database is down")
    writer: GroupCommit[int, int] = GroupCommit(store, name="t")

    async def main() -> list[BaseException | int]:
        return list(await asyncio.gather(*(writer.store(i) for i in range(5)),
                                         return_exceptions=True))

    results = run_fresh(main())
    writer.stop()
    assert all(isinstance(r, RuntimeError) and "down" in str(r) for r in results)
    assert store.batches  # it was tried


def test_a_caller_that_left_does_not_break_the_others() -> None:
    store = Recorder()
    writer: GroupCommit[int, int] = GroupCommit(store, name="t")
    store.gate.clear()

    async def main() -> int:
        leaving = asyncio.ensure_future(writer.store(1))
        staying = asyncio.ensure_future(writer.store(2))
        await asyncio.sleep(0.02)
        leaving.cancel()
        store.gate.set()
        return await staying

    assert run_fresh(main()) == 4
    writer.stop()


def test_a_stopped_writer_refuses_new_items() -> None:
    writer: GroupCommit[int, int] = GroupCommit(Recorder(), name="t")
    assert writer.submit(3).result(5) == 6
    writer.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        writer.submit(4)
