"""Process settings of long-running servers (the intake API, the listening and subscription
apps, the warm worker).

:func:`freeze_startup_heap`: a server imports Prefect, SQLAlchemy, FastAPI and its own
packages, several hundred thousand objects that live as long as the process. Python's full
(generation 2) garbage collection walks every one of them each time it runs, with the event
loop stopped: during ``bench/intake.py``'s 5,000 events the intake API ran 3 full collections
of up to 525 ms each (a ``gc.callbacks`` probe; the machine was loaded), the requests waiting
behind them were its p99. ``gc.freeze()`` moves what exists at start-up into a permanent
generation that collections skip; what requests allocate is collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect what start-up left behind, then exempt every object alive now from future
    collections; returns how many objects were frozen. Call it once, after the app is built
    and before serving."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
