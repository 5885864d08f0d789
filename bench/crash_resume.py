"""Exactly once across crashes: SIGKILL the sending process at random points, resume each time.

The bench seeds ``--recipients`` subscribers, triggers the outage acknowledgement and plans its
ledger (status page, X, support, email in 1,000-recipient batches). Then it starts the real
``crisiscomms resume INCIDENT --now`` as a separate process (its own session and process group)
and SIGKILLs it at a random point of the send: when the emulator has received a random 5-50%
of the recipients still to reach (so every kill lands mid-send, with requests in flight and
results not yet recorded); ``--kills`` times; then ``crisiscomms resume --now`` runs to
completion (repeated, up to three times, while rows are left ``sending`` or ``planned``).
Every resume reconciles the rows the dead sender left ``sending`` against the provider
(``GET /_emulator/keys/<key>``) before anything is sent again.

The SendGrid and X emulators run in their own process (never killed) and are the witness:
``duplicates`` are addresses that received the message more than once (under any key, so
both "same batch key twice" and "same address in two batches"), ``missing`` are recipients
who should have received it and did not, ``unexpected`` addresses nobody planned; all three are
compared by identity (the set of addresses), not by counts. A Prefect server runs in its own
process too, so every resume is a short-lived client of it (no ephemeral server per child,
which a SIGKILL would orphan).

    uv run python bench/crash_resume.py --recipients 200000 --kills 10 [--seed 1]
        [--backend sqlite|postgresql] [--json]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ROOT,
    EmulatorProcess,
    base_env,
    content_note,
    database,
    emit,
    set_env,
    workdir,
)

REF = "CRASH-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrefectServer:
    """``prefect server start`` in its own process, for the resumes to report to."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}/api"
        self.log = (work / "prefect-server.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"prefect server exited; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"prefect server did not start; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _crisiscomms() -> list[str]:
    script = Path(sys.executable).with_name("crisiscomms")
    if script.exists():
        return [str(script)]
    found = shutil.which("crisiscomms")
    if found:
        return [found]
    return [sys.executable, "-c", "from crisiscomms.cli import app; app()"]


def _resume(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``crisiscomms resume REF --now``: a real separate process in its own process group."""
    with log.open("ab") as out:
        return subprocess.Popen([*_crisiscomms(), "resume", REF, "--now"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)


def _received(emulators: EmulatorProcess) -> int:
    return int(emulators.stats()["recipients"])


def _kill_at_random(proc: subprocess.Popen[bytes], emulators: EmulatorProcess,
                    rng: random.Random, remaining: int) -> dict[str, Any]:
    """SIGKILL the process at a random point of the send: once the emulator has received a
    random share (5-50%) of the recipients still to reach, so every kill lands mid-send and
    leaves work for the next resume; a process that finishes first is not killed."""
    started = time.monotonic()
    before = _received(emulators)
    target = before + max(1, int(remaining * rng.uniform(0.05, 0.5)))
    first: float | None = None
    while proc.poll() is None:
        received = _received(emulators)
        if first is None and received > before:
            first = time.monotonic() - started
        if received >= target:
            break
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return {"killed": killed, "first_recipient_after_s": None if first is None else round(first, 2),
            "kill_target_received": target - before, "exit": proc.returncode}


def _ledger(db_url: str) -> dict[str, int]:
    from sqlalchemy import func, select
    from sqlmodel import col

    from crisiscomms.core.database import make_engine, session_scope
    from crisiscomms.delivery.models import Delivery

    engine = make_engine(db_url)
    try:
        with session_scope(engine) as session:
            rows = session.execute(
                select(col(Delivery.state), func.sum(col(Delivery.recipient_count)),
                       func.count()).where(col(Delivery.channel) == "email")
                .group_by(col(Delivery.state))).all()
        return {str(getattr(state, "value", state)): int(n or 0) for state, n, _ in rows}
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=200_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--max-workers", type=int, default=2, help="email tasks in parallel")
    parser.add_argument("--send-concurrency", type=int, default=3,
                        help="requests in flight per task")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    work = workdir()
    with EmulatorProcess() as emulators, database(args.backend, work) as db_url:
        env = {**base_env(work, db_url, emulators),
               "CRISISCOMMS_MAX_WORKERS": str(args.max_workers),
               "CRISISCOMMS_SEND_CONCURRENCY": str(args.send_concurrency),
               "PREFECT_LOGGING_LEVEL": "ERROR"}
        set_env(env)
        prefect = PrefectServer(work, env)
        try:
            report = _run(args, rng, work, env, db_url, emulators, prefect.url)
        finally:
            prefect.stop()
    emit(report, args.json)


def _run(args: argparse.Namespace, rng: random.Random, work: Path, env: dict[str, str],
         db_url: str, emulators: EmulatorProcess, prefect_url: str) -> dict[str, Any]:
    from sqlmodel import col, select

    from crisiscomms.audience.models import Recipient
    from crisiscomms.audience.recipients import insert_recipients
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.identity.identities import system_identity
    from crisiscomms.incident.service import plan_bundle, trigger
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.testing.audiences import drill_recipients

    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        insert_recipients(session, drill_recipients(args.recipients))
    facts = {**load_playbook("outage", settings.playbooks_dir).drill_facts, "incident_ref": REF}
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage", facts=facts,
                     actor=system_identity("bench"))
    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    with session_scope(engine) as session:
        expected = {e.lower() for e in session.exec(
            select(col(Recipient.email)).where(col(Recipient.consent))).all()}
    engine.dispose()

    child_env = {**os.environ, **env, "PREFECT_API_URL": prefect_url}
    log = work / "resume.log"
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    for n in range(args.kills):
        received = _received(emulators)
        remaining = max(0, len(expected) - received)
        t0 = time.perf_counter()
        proc = _resume(child_env, log)
        run = _kill_at_random(proc, emulators, rng, remaining)
        got = _received(emulators) - received
        runs.append({"run": n + 1, **run, "received": got,
                     "run_s": round(time.perf_counter() - t0, 2)})
    final: list[dict[str, Any]] = []
    for _ in range(3):  # a resume may leave rows it could not ask about: run it again
        t0 = time.perf_counter()
        received = _received(emulators)
        proc = _resume(child_env, log)
        proc.wait()
        final.append({"exit": proc.returncode, "received": _received(emulators) - received,
                      "run_s": round(time.perf_counter() - t0, 2)})
        ledger = _ledger(db_url)
        if not ledger.get("sending") and not ledger.get("planned"):
            break
    elapsed = time.perf_counter() - started

    seen = emulators.http.get(f"{emulators.sendgrid_url}/_emulator/addresses").json()
    addresses = set(seen["addresses"])
    stats = emulators.stats()
    x_stats = emulators.stats("x")
    ledger = _ledger(db_url)
    return {
        "recipients": len(expected),
        "kills": sum(1 for r in runs if r["killed"]),
        "duplicates": len(seen["repeated"]),
        "missing": len(expected - addresses),
        "unexpected": len(addresses - expected),
        "elapsed_s": round(elapsed, 2),
        "unconfirmed": ledger.get("unconfirmed", 0),
        "backend": args.backend,
        "seed": args.seed,
        "duplicate_key_pairs": int(stats["duplicates"]),
        "emulator_recipient_messages": int(stats["recipients"]),
        "emulator_requests": int(stats["requests"]),
        "x_posts": int(x_stats["accepted_messages"]),
        "x_duplicates": int(x_stats["duplicates"]),
        "ledger_email_recipients_by_state": ledger,
        "runs": runs,
        "final_resumes": final,
        "sender": "crisiscomms resume CRASH-1 --now (separate process, SIGKILLed)",
        "log": str(log),
        "content": content_note(),
    }


if __name__ == "__main__":
    main()
