"""``crisiscomms worker``: serve a Prefect work pool with the warm worker
(:mod:`crisiscomms.flows.worker`), which runs crisiscomms' own flows in its already-warm
process (an acknowledgement starts in under a second instead of 10-13 s) and anything else
the stock way. docs/scaling.md, "The warm worker"."""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from crisiscomms.cli import common
from crisiscomms.cli.common import app, err, out

if TYPE_CHECKING:
    from crisiscomms.flows.worker import WarmProcessWorker

QUERY_SECONDS_DEFAULT = "0.2"


def _prefect_worker_defaults() -> None:
    """Before Prefect is imported: poll every 0.2 s (Prefect's default is 10 s; its setting
    is a float), no analytics, and Prefect's log lines from WARNING up, as for every in-process
    run of ours (``cli/common.py``): each INFO line of a run (one per task state) is a record
    shipped to the API from the same process, ~0.7 s per acknowledgement measured here.
    What the environment sets wins (``PREFECT_LOGGING_LEVEL=INFO`` for every line in the UI)."""
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", QUERY_SECONDS_DEFAULT)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


@app.command()
def worker(
    pool: Annotated[str, typer.Option("--pool", help="The Prefect work pool to serve")],
    limit: Annotated[int, typer.Option(
        min=1, help="Runs in flight at once. A run paused for approval keeps its slot while "
                    "it waits: count those, plus the acknowledgements that must never wait, "
                    "plus one per publish-stage waiting for its email chunks")] = 10,
    name: Annotated[str | None, typer.Option(
        help="The worker's name in Prefect (default: <host>-warm-<pid>)")] = None,
    work_queue: Annotated[list[str] | None, typer.Option(
        "--work-queue", help="Serve only these work queues of the pool (repeatable; "
                             "default: all)")] = None,
    grace_s: Annotated[float, typer.Option(
        "--grace-s", min=0, help="On SIGTERM/SIGINT, how long to let the runs in progress "
                                  "finish before stopping anyway")] = 60.0,
) -> None:
    """Serve a work pool: crisiscomms' flows run in this warm process, anything else in a
    subprocess as with ``prefect worker start --type process``."""
    _prefect_worker_defaults()
    settings = common.load_settings()
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        err.print("[bold red]error:[/] PREFECT_API_URL is not set: point it at your Prefect "
                  "server's API, e.g. http://127.0.0.1:4200/api", highlight=False)
        raise typer.Exit(2)

    import faulthandler

    import anyio

    from crisiscomms.core.runtime import freeze_startup_heap
    from crisiscomms.flows.worker import WarmProcessWorker, warm_up

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: where it is stuck

    for module, why in warm_up().items():
        err.print(f"warning: {module} could not be imported ({why}); its runs go to a "
                  "subprocess", highlight=False, markup=False)
    if settings.workspace is None:
        err.print("warning: not in a crisiscomms workspace: deployments of this workspace's "
                  "flows run in subprocesses", highlight=False, markup=False)
    freeze_startup_heap()  # the warm flows and SDKs imported: out of full GC passes
    serving = WarmProcessWorker(
        work_pool_name=pool, work_queues=work_queue or None, limit=limit,
        workspace=settings.workspace,
        name=name or f"{socket.gethostname()}-warm-{os.getpid()}")
    left = anyio.run(serve, serving, grace_s)
    if left:
        raise typer.Exit(1)


def _say(message: str) -> None:
    out.print(message, highlight=False, markup=False)


async def serve(worker: WarmProcessWorker, grace_s: float) -> int:
    """Run the worker until it ends or a signal stops it: the first SIGTERM/SIGINT takes no
    new run and waits up to ``grace_s`` for those in progress, a second one stops at once.
    Returns how many runs were left in progress (their runs are set Crashed)."""
    import anyio

    left: dict[str, str] = {}
    waited: dict[str, str] = {}

    async with anyio.create_task_group() as group:
        async def run_worker() -> None:
            await worker.start(printer=_say)
            group.cancel_scope.cancel()

        async def drain_then_stop() -> None:
            with anyio.move_on_after(grace_s):
                while worker.in_flight():
                    await anyio.sleep(0.2)
            stop_now()

        def stop_now() -> None:
            left.update(worker.in_flight())
            group.cancel_scope.cancel()

        group.start_soon(run_worker)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if worker.draining:
                    _say(f"{name} again: stopping now")
                    stop_now()
                    break
                worker.drain()
                runs = worker.in_flight()
                waited.update(runs)
                _say(f"{name}: taking no new run; waiting up to {grace_s:g} s for "
                     f"{len(runs)} run(s) in progress" + "".join(
                         f"\n  {run_id} {what}" for run_id, what in runs.items()))
                group.start_soon(drain_then_stop)
    if left:
        lines = "".join(f"\n  {run_id} {what}" for run_id, what in left.items())
        _say(f"stopped with {len(left)} run(s) left in progress (the in-process ones are "
             "now marked Crashed; `crisiscomms resume INCIDENT` reconciles what they sent):"
             + lines)
    elif waited:
        _say(f"worker {worker.name} stopped: the {len(waited)} run(s) in progress finished")
    else:
        _say(f"worker {worker.name} stopped: no run was in progress")
    return len(left)
