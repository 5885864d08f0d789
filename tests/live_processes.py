"""Subprocesses the integration tests start (a Prefect server, workers) and waits with
deadlines, and their environment: shared by the Prefect-server tests (test_deployment.py,
test_warm_worker.py, test_handle_event_flow.py, test_intake_end_to_end.py).

Every process is started in its own process group and ended group by group in
:meth:`Processes.stop_all` (call it in ``finally``); :func:`wait_until` fails with each
process's last log lines when the deadline passes or a process exits meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from repo_paths import PROJECT_ROOT


class Processes:
    """Subprocesses in their own process groups, ended group by group."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str],
              cwd: Path = PROJECT_ROOT) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
        log.close()
        self.started[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self, name: str, timeout_s: float = 20) -> int:
        """SIGTERM to one process's group, SIGKILL after ``timeout_s``; its exit code."""
        proc = self.started[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in reversed(list(self.started.values())):  # workers before the server
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def child_environment(home: Path, api: str, crisis_env: dict[str, str], *,
                      worker_query_s: str | None = None) -> dict[str, str]:
    """The environment of a Prefect server, workers and our commands a test starts: this
    process's own minus its ``PREFECT_*``/``CRISISCOMMS_*``, a Prefect home and API of the
    test's, analytics and UI off, INFO logs, then ``crisis_env``."""
    prefect = {"PREFECT_HOME": str(home), "PREFECT_API_URL": api,
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
               "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "INFO"}
    if worker_query_s is not None:
        prefect["PREFECT_WORKER_QUERY_SECONDS"] = worker_query_s
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CRISISCOMMS_"))}
    return {**base, **prefect, **crisis_env}


def wait_until(what: str, check: Callable[[], bool], timeout_s: float,
               procs: Processes | None = None, interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if procs is not None:
            for name, proc in procs.started.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited {proc.returncode} while waiting for "
                                         f"{what}:\n{procs.log(name)}")
        time.sleep(interval_s)
    logs = "\n".join(f"--- {n}\n{procs.log(n)}" for n in procs.started) if procs else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{logs}")


def api_healthy(api: str) -> Callable[[], bool]:
    """A check for :func:`wait_until`: the Prefect API at ``api`` answers its health check."""
    def healthy() -> bool:
        try:
            return httpx.get(f"{api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    return healthy
