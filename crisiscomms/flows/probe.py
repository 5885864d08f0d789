"""A flow that does nothing but start, wait if asked, and end (or fail if asked): how to tell
that a work pool's workers serve runs, and how fast.

``bench/worker_latency.py`` measures worker start latency with it (``run_deployment`` to the
run's Running state, which the engine sets just before the flow's code starts), and the warm
worker's tests use ``hold_s`` to have a run in flight to cancel and ``fail`` to have one that
raises. It lives in the package (not in a workspace's ``flows/``) and is deployed by module
path, so a stock process worker can import it from any working directory.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prefect import flow, get_run_logger

PROBE_DEPLOYMENT_NAME = "crisiscomms-probe"


@flow(name="worker-probe", log_prints=False)
def worker_probe(hold_s: float = 0.0, fail: bool = False) -> dict[str, Any]:
    """Log one line, hold for ``hold_s`` seconds in short steps (so a cancellation lands
    between two of them), then return where it ran, or raise if ``fail``."""
    started = time.time()
    get_run_logger().info("worker probe started in process %d", os.getpid())
    deadline = time.monotonic() + max(0.0, hold_s)
    while time.monotonic() < deadline:
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    if fail:
        raise RuntimeError("worker probe: asked to fail (fail=true)")
    return {"pid": os.getpid(), "started": started, "held_s": hold_s}


def deploy_probe(pool: str, name: str = PROBE_DEPLOYMENT_NAME) -> str:
    """Deploy the probe to ``pool`` by module path (no pull step, no workspace needed);
    returns the deployment id. Idempotent."""
    from prefect.types.entrypoint import EntrypointType

    deployment: Any = worker_probe.to_deployment(  # type: ignore[call-arg]
        name=name, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH,
        _sync=True)
    return str(deployment.apply(work_pool_name=pool, _sync=True))
