"""Shared bench helpers: emulators in a subprocess, a workspace per backend, peak RSS.

The emulators run in their OWN process (``python -m bench._emulators``... started by
:class:`EmulatorProcess`), so the memory they use to remember a million recipients is not
counted in the sender's peak RSS, and a SIGKILLed sender leaves them running to testify.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SG_KEY, X_TOKEN = "SG.bench-key", "bench-x-token"
TWILIO_SID, TWILIO_TOKEN = "AC" + "be0c4" * 6 + "00", "bench-twilio-token"
SMS_FROM = "+15005550006"

_RUNNER = """
import json, os, sys, signal
from crisiscomms.testing.emulators import SendGridEmulator, TwilioEmulator, XEmulator
sg = SendGridEmulator(sys.argv[1]).start()
x = XEmulator(sys.argv[2]).start()
tw = TwilioEmulator(sys.argv[3], sys.argv[4]).start()
print(json.dumps({"sendgrid": sg.url, "x": x.url, "twilio": tw.url}), flush=True)
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
sys.stdin.read()
"""


class EmulatorProcess:
    """SendGrid, X and Twilio emulators in a child process, driven through their control
    endpoints."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _RUNNER, SG_KEY, X_TOKEN,
                                      TWILIO_SID, TWILIO_TOKEN],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=ROOT)
        assert self.proc.stdout is not None
        urls = json.loads(self.proc.stdout.readline())
        self.sendgrid_url: str = urls["sendgrid"]
        self.x_url: str = urls["x"]
        self.twilio_url: str = urls["twilio"]
        self.http = httpx.Client(timeout=120)

    def env(self) -> dict[str, str]:
        return {"CRISISCOMMS_SENDGRID_API_KEY": SG_KEY,
                "CRISISCOMMS_SENDGRID_BASE_URL": self.sendgrid_url,
                "CRISISCOMMS_X_BEARER_TOKEN": X_TOKEN, "CRISISCOMMS_X_BASE_URL": self.x_url,
                "CRISISCOMMS_TWILIO_ACCOUNT_SID": TWILIO_SID,
                "CRISISCOMMS_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
                "CRISISCOMMS_TWILIO_BASE_URL": self.twilio_url, "CRISISCOMMS_SMS_FROM": SMS_FROM}

    def _url(self, which: str) -> str:
        return {"sendgrid": self.sendgrid_url, "twilio": self.twilio_url}.get(which, self.x_url)

    def stats(self, which: str = "sendgrid") -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(f"{self._url(which)}/_emulator/stats").json()
        return data

    def reset(self) -> None:
        for which in ("sendgrid", "x", "twilio"):
            self.http.post(f"{self._url(which)}/_emulator/reset").raise_for_status()

    def faults(self, which: str, **faults: Any) -> None:
        self.http.post(f"{self._url(which)}/_emulator/faults",
                       json=faults).raise_for_status()

    def stop(self) -> None:
        self.http.close()
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def database(backend: str, work: Path) -> Iterator[str]:
    """A database URL: a SQLite file in ``work`` or a throwaway PostgreSQL cluster."""
    if backend == "sqlite":
        yield f"sqlite:///{work / 'crisiscomms.db'}"
        return
    from crisiscomms.testing.pgcluster import ThrowawayCluster

    # durable: fsync on, as in production (tests turn it off)
    with ThrowawayCluster(durable=True) as pg:
        yield pg.create_database("crisiscomms")


def prefect_env(work: Path) -> dict[str, str]:
    return {"PREFECT_HOME": str(work / "prefect"), "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="crisiscomms-bench-"))


CONTENT = ("playbooks", "templates")
content_source = "worktree"
"""Where the playbooks and templates of the last `content_dirs` call came from."""


def content_dirs(work: Path) -> tuple[Path, Path]:
    """The playbooks and templates folders to use: the repository's own, or, while they have
    uncommitted changes (someone is editing a template in this checkout), a snapshot of the
    committed ones, so a half-edited, unapproved template cannot stop a benchmark."""
    global content_source
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *CONTENT], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        dirty = ""
    if not dirty:
        content_source = "worktree"
        return ROOT / "playbooks", ROOT / "templates"
    target = work / "content"
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "HEAD", *CONTENT], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    content_source = "HEAD snapshot (templates/playbooks had uncommitted changes)"
    return target / "playbooks", target / "templates"


def content_note() -> str:
    return content_source


def base_env(work: Path, db_url: str, emulators: EmulatorProcess) -> dict[str, str]:
    playbooks, templates = content_dirs(work)
    return {
        **prefect_env(work),
        "CRISISCOMMS_MODE": "drill",  # against the emulators: provisional approvals may be used
        "CRISISCOMMS_DATA_DIR": str(work / "data"),
        "CRISISCOMMS_DATABASE_URL": db_url,
        "CRISISCOMMS_PLAYBOOKS_DIR": str(playbooks),
        "CRISISCOMMS_TEMPLATES_DIR": str(templates),
        **emulators.env(),
    }


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group, SIGTERM then SIGKILL to the group on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (Linux ``/proc``): a cost
    that other load on a shared machine does not inflate the way it does wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def emit(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
        return
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")


def set_env(values: dict[str, str]) -> None:
    os.environ.update(values)
