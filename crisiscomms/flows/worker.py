"""The warm worker: a Prefect process worker that runs crisiscomms' own flows in its own,
already-warm process, so an event's acknowledgement starts in well under a second.

Why: a stock ``prefect worker start --type process`` starts a new Python process per flow run,
which imports Prefect (~4 s here) and loads the flow from its entrypoint (~6 s), 10-13 s before
the flow's first line. This worker has imported Prefect and every flow of
``crisiscomms.flows`` once, at start; a run of one of them executes in a thread of the worker
(``prefect.flow_engine.run_flow`` on the existing flow run: the engine sets its states and its
logs go to the Prefect API as from a subprocess). Anything else (another project's flow, a
deployment with a custom command, other environment variables, a pull step other than our
workspace's ``set_working_directory``) runs the stock way, in a subprocess
(:mod:`crisiscomms.flows.warm_routing` decides). Same ``type = "process"``: stock workers can
serve the same pool.

Safety, in a process that runs several flows at once:

- ``--limit`` bounds the runs in flight (threads here, subprocesses on the stock path); a run
  that pauses (``pause_flow_run``, an approval waiting in its flow) keeps its slot while it
  waits; ``suspend_flow_run`` gives it back.
- Cancelling a run never kills this process: a warm run's infrastructure id is
  ``crisiscomms-warm:<flow run id>``, never a pid, and :meth:`WarmProcessWorker.kill_infrastructure`
  only ever stops a thread of its own. The flow gets :class:`RunCancelled` (a
  ``TerminationSignal``, what a stock cancellation's SIGTERM raises) in its thread at its next
  Python step: an HTTP request in flight finishes first and is recorded in the ledger, a task
  already running in the flow's task runner ends its current step. The engine then sets the
  run Cancelling and Cancelled as for a subprocess (:func:`install_cancellation_intent`).
- A flow that raises ends Failed, one that crashes (a BaseException) ends Crashed, set by the
  engine; the worker serves the next run either way. A flow that calls ``os._exit`` would end
  the worker: only the package's own flows run here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import pkgutil
import threading
import uuid
from pathlib import Path
from signal import SIGTERM
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc
from prefect.exceptions import Abort, InfrastructureNotFound, Pause, TerminationSignal
from prefect.flows import Flow
from prefect.settings import get_current_settings
from prefect.states import Cancelled
from prefect.utilities.processutils import command_to_string, get_sys_executable
from prefect.workers.process import (
    ProcessJobConfiguration,
    ProcessWorker,
    ProcessWorkerResult,
)

from crisiscomms.flows import warm_routing

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun, State
    from prefect.client.schemas.responses import DeploymentResponse

WARM_ID_PREFIX = "crisiscomms-warm:"
"""A warm run's infrastructure id; never a pid, so nothing can take it for a process."""


def warm_identifier(flow_run_id: uuid.UUID) -> str:
    return f"{WARM_ID_PREFIX}{flow_run_id}"


def warm_run_id(infrastructure_pid: str | None) -> uuid.UUID | None:
    """The flow run a warm infrastructure id names, or None for anything else (a pid)."""
    if not infrastructure_pid or not infrastructure_pid.startswith(WARM_ID_PREFIX):
        return None
    try:
        return uuid.UUID(infrastructure_pid[len(WARM_ID_PREFIX):])
    except ValueError:
        return None


class RunCancelled(TerminationSignal):
    """Raised inside a warm run's thread when its flow run is cancelled: what the SIGTERM of
    a stock cancellation raises in a subprocess. A BaseException, so ``except Exception`` in
    the flow does not swallow it; ``finally`` blocks still run."""

    def __init__(self, signal: int = SIGTERM) -> None:
        super().__init__(signal)


_cancelled_threads: set[int] = set()
"""Threads whose flow run is being cancelled (see :func:`install_cancellation_intent`)."""


def install_cancellation_intent() -> bool:
    """Make the flow engine treat a :class:`RunCancelled` in a cancelled warm run's thread as
    a cancellation (Cancelling, then Cancelled, ``on_cancellation`` hooks, the run's tasks
    cancelled), as it does for the runner's SIGTERM in a subprocess. The engine asks
    ``prefect.flow_engine._termination_intent()`` at that moment; the runner's answer is
    process-wide, so this wraps it to answer "cancel" in those threads only and defer to
    Prefect everywhere else. Installed by the worker when it starts (never at import).
    Returns False when this Prefect has no such hook: the worker then sets the run Cancelled
    itself after the engine's Crashed."""
    from prefect import flow_engine

    original = getattr(flow_engine, "_termination_intent", None)
    if original is None:
        return False
    if getattr(original, "crisiscomms_warm", False):
        return True

    def termination_intent() -> Any:
        if threading.get_ident() in _cancelled_threads:
            return "cancel"
        return original()

    termination_intent.crisiscomms_warm = True  # type: ignore[attr-defined]
    flow_engine._termination_intent = termination_intent
    return True


def preload_flows() -> dict[str, str]:
    """Import every flow module of ``crisiscomms.flows`` now, so the first run finds it warm;
    returns the modules that could not be imported, with why (they run the stock way)."""
    import crisiscomms.flows as package

    failed: dict[str, str] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in warm_routing.NOT_FLOW_MODULES:
            continue
        name = f"{warm_routing.FLOWS_PACKAGE}.{info.name}"
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken module must not stop the worker
            failed[name] = f"{type(exc).__name__}: {exc}"
    return failed


def warm_up() -> dict[str, str]:
    """What makes the first run fast: the flow modules and the channel classes (with their
    provider SDKs) imported now. Returns the flow modules that failed to import, with why."""
    from crisiscomms.channels.registry import channel_classes

    failed = preload_flows()
    channel_classes()
    return failed


def execute_flow_run(flow: Flow[..., Any], flow_run_id: uuid.UUID) -> tuple[str, State | None]:
    """Run an existing flow run of ``flow`` in this thread, as ``python -m prefect.engine``
    does in a subprocess, minus what only a process does (signal handlers, ``exit``).
    Returns ("final", state), ("paused", None) or ("aborted", None)."""
    from prefect.flow_engine import load_flow_run, run_flow
    from prefect.logging.loggers import flow_run_logger

    flow_run = load_flow_run(flow_run_id)
    try:
        result: Any = run_flow(flow, flow_run=flow_run, return_type="state",
                               error_logger=cast(logging.Logger, flow_run_logger(flow_run)))
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except Pause:  # suspended: the server reschedules it when resumed
        return "paused", None
    except Abort:  # the server refused to start it (already running elsewhere, cancelled)
        return "aborted", None
    return "final", result


class WarmRun:
    """One flow run executing in a thread of the worker's process."""

    def __init__(self, flow_run: FlowRun, flow: Flow[..., Any],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.flow_run, self.flow = flow_run, flow
        self._loop = loop
        self._done: asyncio.Future[None] = loop.create_future()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._executing = False
        self.cancel_requested = False
        self.outcome = "not started"
        self.state: State | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name=f"flow-run {self.flow_run.name}")
        self._thread.start()

    async def finished(self) -> None:
        await self._done

    def _main(self) -> None:
        try:
            with self._lock:
                self._executing = not self.cancel_requested
            if self._executing:
                try:
                    self.outcome, self.state = execute_flow_run(self.flow, self.flow_run.id)
                finally:
                    with self._lock:
                        self._executing = False
        except BaseException as exc:  # the engine has recorded it; keep the worker serving
            self.error = exc
        finally:
            _cancelled_threads.discard(threading.get_ident())
            with contextlib.suppress(RuntimeError):  # a closed loop: the worker is gone
                self._loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def request_cancel(self) -> bool:
        """Stop the flow at its next Python step; True the first time it is asked. Raised at
        most once, and only while the flow executes, never into the worker's own code."""
        import ctypes

        with self._lock:
            if self.cancel_requested:
                return False
            self.cancel_requested = True
            if self._executing and self._thread is not None and self._thread.ident:
                _cancelled_threads.add(self._thread.ident)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._thread.ident), ctypes.py_object(RunCancelled))
        return True


class WarmProcessWorker(ProcessWorker):
    """A process worker that runs crisiscomms' own flows in its own process (see the
    module's docstring); everything else the stock way."""

    type = "process"

    @classmethod
    def __dispatch_key__(cls) -> str | None:
        # Prefect registers worker classes by key; ours must not replace the stock
        # ``process`` worker in this process's registry.
        return "crisiscomms-warm-process"

    def __init__(self, *args: Any, workspace: Path | None = None,
                 cancel_poll_s: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        self._cancel_poll_s = cancel_poll_s
        self._warm: dict[uuid.UUID, WarmRun] = {}
        self._stock: dict[uuid.UUID, str] = {}
        self._draining = False
        self._observer: Any = None

    # -- serving ---------------------------------------------------------------------------

    async def __aenter__(self) -> WarmProcessWorker:
        from prefect._internal.observers import FlowRunCancellingObserver

        install_cancellation_intent()
        await super().__aenter__()
        # On the worker's own exit stack (as Prefect's own observer is), which its teardown
        # closes in one go, with the runs' task group.
        self._observer = await self._exit_stack.enter_async_context(
            FlowRunCancellingObserver(on_cancelling=self._on_cancelling,
                                      polling_interval=self._cancel_poll_s))
        return self

    def drain(self) -> None:
        """Take no new run; the runs in flight go on."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    def in_flight(self) -> dict[str, str]:
        """The runs in progress: flow run id → "name (in-process|subprocess)"."""
        runs = {str(i): "(being submitted)" for i in self._submitting_flow_run_ids}
        runs.update({str(i): f"{r.flow_run.name} (in-process)" for i, r in self._warm.items()})
        runs.update({str(i): f"{name} (subprocess)" for i, name in self._stock.items()})
        return runs

    async def get_and_submit_flow_runs(self) -> list[FlowRun]:
        if self._draining:
            return []
        return await super().get_and_submit_flow_runs()

    # -- one run -----------------------------------------------------------------------------

    async def run(self, flow_run: FlowRun, configuration: ProcessJobConfiguration,
                  task_status: anyio.abc.TaskStatus[int] | None = None) -> ProcessWorkerResult:
        flow, reason, ours = await self._in_process_flow(flow_run, configuration)
        if flow is None:
            # a flow of ours that cannot run here is worth a warning (it starts 10+ s later)
            self.get_flow_run_logger(flow_run).log(
                logging.WARNING if ours else logging.INFO,
                "Running in a subprocess, the stock way: %s", reason)
            self._stock[flow_run.id] = flow_run.name
            try:
                return await super().run(flow_run, configuration, task_status)
            finally:
                self._stock.pop(flow_run.id, None)
        return await self._run_warm(flow_run, flow, task_status)

    async def _run_warm(self, flow_run: FlowRun, flow: Flow[..., Any],
                        task_status: anyio.abc.TaskStatus[Any] | None) -> ProcessWorkerResult:
        identifier = warm_identifier(flow_run.id)
        run = WarmRun(flow_run, flow, asyncio.get_running_loop())
        self._warm[flow_run.id] = run
        if self._observer is not None:
            self._observer.add_in_flight_flow_run_id(flow_run.id)
        try:
            run.start()
            if task_status is not None:
                task_status.started(identifier)
            try:
                await run.finished()
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await self._propose_crashed_state(
                        flow_run, "the crisiscomms worker stopped while this run was in "
                        "progress in its process; `crisiscomms resume INCIDENT` reconciles "
                        "what it had sent")
                raise
            await self._settle(run)
        finally:
            self._warm.pop(flow_run.id, None)
            if self._observer is not None:
                self._observer.remove_in_flight_flow_run_id(flow_run.id)
        return ProcessWorkerResult(status_code=0, identifier=identifier)

    async def _settle(self, run: WarmRun) -> None:
        """The run's final state, where the engine could not set it."""
        logger = self.get_flow_run_logger(run.flow_run)
        if run.error is None and not run.cancel_requested:
            return
        current = (await self.client.read_flow_run(run.flow_run.id)).state
        if run.cancel_requested:
            if current is None or not current.is_cancelled():
                await self.client.set_flow_run_state(
                    run.flow_run.id, Cancelled(message="Flow run was cancelled; the "
                                               "crisiscomms worker stopped it in its thread."),
                    force=True)
            logger.info("Flow run %s cancelled; the worker goes on serving", run.flow_run.id)
            return
        if current is None or not (current.is_final() or current.is_paused()
                                   or current.is_scheduled()):
            await self._propose_crashed_state(
                run.flow_run, f"the flow could not run in the crisiscomms worker: "
                f"{type(run.error).__name__}: {run.error}")

    # -- cancellation ------------------------------------------------------------------------

    def _on_cancelling(self, flow_run_id: uuid.UUID) -> None:
        run = self._warm.get(flow_run_id)
        if run is not None and run.request_cancel():
            self.get_flow_run_logger(run.flow_run).info(
                "Cancelling: the flow stops at its next step in the worker's thread (a "
                "request in flight finishes first)")

    async def _cancel_run(self, flow_run_id: uuid.UUID) -> None:
        if flow_run_id in self._warm:
            self._on_cancelling(flow_run_id)
            return
        await super()._cancel_run(flow_run_id)

    async def kill_infrastructure(self, infrastructure_pid: str,
                                  configuration: ProcessJobConfiguration,
                                  grace_seconds: int = 30) -> None:
        """Stop a warm run's thread; never signal a process. A pid (a stock subprocess) is
        left to the runner supervising it, as the stock process worker does."""
        run_id = warm_run_id(infrastructure_pid)
        if run_id is None:
            raise NotImplementedError("the process worker's subprocesses are cancelled by "
                                      "the runner that supervises them")
        if run_id not in self._warm:
            raise InfrastructureNotFound(f"no run {run_id} in this worker")
        self._on_cancelling(run_id)

    # -- routing -----------------------------------------------------------------------------

    async def _in_process_flow(self, flow_run: FlowRun, configuration: ProcessJobConfiguration
                               ) -> tuple[Flow[..., Any] | None, str, bool]:
        """The flow object to run in this process, or None and why not; and whether the
        deployment names one of our flows."""
        if flow_run.deployment_id is None:
            return None, "not a deployment run", False
        # the deployment and flow the job configuration was just built from (one read each
        # less on the way to the first line); read again should Prefect stop keeping them
        related = getattr(configuration, "_related_objects", None) or {}
        try:
            deployment = related.get("deployment") or await self.client.read_deployment(
                flow_run.deployment_id)
            ours = warm_routing.flow_ref(deployment.entrypoint) is not None
            flow, reason = self._flow_of(deployment, configuration)
            if flow is None:
                return None, reason, ours
            api_flow = related.get("flow") or await self.client.read_flow(flow_run.flow_id)
        except Exception as exc:  # never lose a run over the check: run it the stock way
            return None, f"could not check its deployment ({type(exc).__name__}: {exc})", True
        if api_flow.name != flow.name:
            return None, (f"its deployment's flow is {api_flow.name!r}, the package's is "
                          f"{flow.name!r}"), True
        return flow, "", True

    def _flow_of(self, deployment: DeploymentResponse, configuration: ProcessJobConfiguration
                 ) -> tuple[Flow[..., Any] | None, str]:
        ref = warm_routing.flow_ref(deployment.entrypoint)
        if ref is None:
            return None, f"entrypoint {deployment.entrypoint!r} is not a crisiscomms flow"
        directory, problem = warm_routing.working_directory(deployment.pull_steps)
        if problem:
            return None, problem
        if directory is not None and not (
                self.workspace is not None
                and warm_routing.same_directory(directory, self.workspace)):
            return None, (f"it runs in {directory}, this worker in workspace "
                          f"{self.workspace or '(none)'}")
        if configuration.working_dir is not None and not (
                self.workspace is not None
                and warm_routing.same_directory(configuration.working_dir, self.workspace)):
            return None, f"its job configuration runs it in {configuration.working_dir}"
        base = directory or configuration.working_dir
        if configuration.command != command_to_string(
                [get_sys_executable(), "-m", "prefect.engine"]):
            return None, "its job configuration sets a custom command"
        differing = warm_routing.env_differences(
            configuration.env, os.environ,
            get_current_settings().to_environment_variables(exclude_unset=True))
        if differing:
            return None, ("it sets environment variables this worker has otherwise: "
                          + ", ".join(differing))
        if ref.path is not None:
            if base is None:
                return None, "a file entrypoint with no working directory"
            file = Path(base) / ref.path
            if ref.thin:
                try:
                    source = file.read_text(encoding="utf-8")
                except OSError as exc:
                    return None, f"cannot read {file}: {exc.strerror}"
                if not warm_routing.reexports(source, ref):
                    return None, f"{file} is not the thin re-export of {ref.module}"
        try:
            module = importlib.import_module(ref.module)
        except Exception as exc:
            return None, f"{ref.module} cannot be imported here ({type(exc).__name__})"
        if ref.path is not None and not ref.thin and not warm_routing.same_directory(
                Path(base or ".") / ref.path, Path(str(module.__file__))):
            return None, f"{ref.path} is another copy of {ref.module} than this worker's"
        flow = getattr(module, ref.attr, None)
        if not isinstance(flow, Flow):
            return None, f"{ref.module}.{ref.attr} is not a flow"
        if flow.isgenerator:
            return None, "generator flows run the stock way"
        return flow, ""
