"""``freeze_startup_heap``: what exists at start-up leaves the collector's full passes; what
is allocated afterwards is still collected."""

from __future__ import annotations

import gc
import weakref

from crisiscomms.core.runtime import freeze_startup_heap


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_startup_objects_are_frozen_and_later_garbage_is_still_collected() -> None:
    try:
        assert freeze_startup_heap() > 0
        assert gc.get_freeze_count() > 0
        garbage = _Cycle()
        gone = weakref.ref(garbage)
        del garbage
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
