"""Exactly once as an operator sees it, through the CLI, against emulators that behave like the
providers (X shows links as t.co links; SendGrid refuses a personalization over 10,000 bytes).

- One recipient with a 20,000-character name among 1,000: the 999 others are sent in one
  request, that one fails alone with SendGrid's reason, and a retry resends nobody else.
- A sender SIGKILLed mid-X-thread (X has accepted the second post, nobody recorded its id):
  ``crisiscomms resume --now`` posts every missing part once and nothing twice.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from approvers import cli_approver
from repo_paths import PROJECT_ROOT
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from crisiscomms.audience.recipients import insert_recipients
from crisiscomms.cli import app
from crisiscomms.core.database import init_db, make_engine
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.incident.models import Message
from crisiscomms.testing.drill import workspace_environment
from crisiscomms.testing.emulators import EmulatorPair, Faults

pytestmark = pytest.mark.integration
runner = CliRunner()
SENDGRID_KEY = "SG.integration-test-key"
X_TOKEN = "x-integration-test-token"
"""The session emulators' credentials (``conftest.py``)."""
OUTAGE = yaml.safe_load((PROJECT_ROOT / "playbooks" / "outage.yaml").read_text())
LOCALES: list[str] = OUTAGE["locales"]


@pytest.fixture
def emu(emulators: EmulatorPair) -> Iterator[EmulatorPair]:
    emulators.reset()
    yield emulators
    emulators.reset()


def _env(tmp_path: Path, emu: EmulatorPair, monkeypatch: pytest.MonkeyPatch,
         **extra: str) -> tuple[dict[str, str], Engine]:
    """A data folder and SQLite database wired to the emulators, with no recipients yet."""
    env = {**workspace_environment(tmp_path / "data", emu, SENDGRID_KEY, X_TOKEN,
                                   database_url=f"sqlite:///{tmp_path / 'crisiscomms.db'}"),
           "CRISISCOMMS_MAX_ATTEMPTS": "2", "CRISISCOMMS_HTTP_TIMEOUT_S": "5", **extra}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(env["CRISISCOMMS_DATABASE_URL"])
    init_db(engine)
    return env, engine


def _facts(tmp_path: Path, ref: str) -> Path:
    path = tmp_path / "facts.yaml"
    path.write_text(yaml.safe_dump({**OUTAGE["drill_facts"], "incident_ref": ref}))
    return path


def _text(output: str) -> str:
    return " ".join(output.split())


# -- one long personal value does not sink the batch ----------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_a_recipient_over_sendgrids_limit_fails_alone_and_999_are_sent(
        tmp_path: Path, emu: EmulatorPair, monkeypatch: pytest.MonkeyPatch) -> None:
    """The import refuses the 20,000-character name (bad input changes nothing, the line is
    named; ``--skip-invalid`` imports the 999 others). Such a value still reaches the table
    another way (a CRM sync writing rows as the importer does; SQLite does not enforce
    ``VARCHAR(200)``): the send leaves that one recipient out with SendGrid's reason."""
    from crisiscomms.cli import common

    monkeypatch.setattr(common.out, "_width", 400)  # a wide terminal: one table row per line
    _, engine = _env(tmp_path, emu, monkeypatch)
    rows = [{"email": f"customer{n:04d}@example.com", "name": f"Customer{n} Example"}
            for n in range(1000)]
    rows[537]["name"] = "A" * 20_000  # one word: it is also the %first_name%
    path = tmp_path / "customers.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["email", "name"])
        writer.writeheader()
        writer.writerows(rows)

    refused = runner.invoke(app, ["recipients", "import", str(path)])
    assert refused.exit_code == 2
    assert "line 539: name: 20,000 characters, over the 200" in _text(refused.output)
    partial = runner.invoke(app, ["recipients", "import", str(path), "--skip-invalid"])
    assert "imported 999 recipient(s)" in _text(partial.output) and partial.exit_code == 1
    big = rows[537]["email"]
    with Session(engine) as session:  # the 1,000th arrives by the bulk insert a sync uses
        insert_recipients(session, [rows[537]])
        session.commit()

    first = runner.invoke(app, ["trigger", "outage", "--facts", str(_facts(tmp_path, "BIG-1"))])
    assert first.exit_code == 1, first.output  # it reports the one failure
    published = _text(first.output)
    assert "│ email │ 999 │ 1 │" in published, first.output
    assert f"({big}) left out of email batch 0: SendGrid refuses it: The total collective " \
           "size of your substitutions may not exceed 10,000 bytes" in published

    stats = emu.sendgrid.stats()
    assert (stats["accepted_messages"], stats["recipients"], stats["duplicates"]) == (1, 999, 0)
    seen = emu.sendgrid.addresses()
    assert seen["distinct"] == 999 and seen["repeated"] == [] and big not in seen["addresses"]

    listing = runner.invoke(app, ["failures", "BIG-1"])
    listed = _text(listing.output)
    assert listing.exit_code == 0 and big in listed
    assert "may not exceed 10,000 bytes per personalization object" in listed
    assert "│ BIG-1 │ email │ en │ 0 │ 1 │ failed │ 1 │" in listed, listing.output
    overview = _text(runner.invoke(app, ["incidents"]).output)
    assert "999/1" in overview

    again = runner.invoke(app, ["retry", "BIG-1", "--channel", "email"])
    assert "re-queued 1 recipient(s) of BIG-1 on email" in _text(again.output)
    assert again.exit_code == 1  # refused again, and again without a request
    assert emu.sendgrid.stats()["requests"] == stats["requests"]
    assert emu.sendgrid.stats()["recipients"] == 999


# -- a crash mid-X-thread ----------------------------------------------------------------------

THREAD_PARTS = {
    "text_2": "{{ facts.impact }} ({{ facts.incident_ref }}) {{ facts.contact_url }}",
    "text_3": "{{ facts.title }}: {{ facts.status_page_url }}",
}
"""The acknowledgement on X becomes a thread of three posts in each language, each with a
link (which X shows as a t.co link)."""


def _thread_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example templates plus thread parts for the outage acknowledgement on X, approved
    as a PR lead approves them (``crisiscomms templates approve``)."""
    templates = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", templates)
    monkeypatch.setenv("CRISISCOMMS_TEMPLATES_DIR", str(templates))
    names = []
    for part, source in THREAD_PARTS.items():
        for locale in LOCALES:
            name = f"outage/acknowledge/x.{part}.{locale}.j2"
            (templates / name).write_text(source + "\n", encoding="utf-8")
            names.append(name)
    approved = runner.invoke(app, ["templates", "approve", *names],
                             env=cli_approver(tmp_path / "home"))
    assert approved.exit_code == 0, approved.output


def _crisiscomms() -> list[str]:
    script = Path(sys.executable).with_name("crisiscomms")
    return ([str(script)] if script.exists()
            else [sys.executable, "-c", "from crisiscomms.cli import app; app()"])


def _x_rows(engine: Engine) -> list[Delivery]:
    with Session(engine) as session:
        return list(session.exec(select(Delivery).where(Delivery.channel == "x")
                                 .order_by(col(Delivery.id))))


def _threads(engine: Engine) -> dict[str, list[str]]:
    with Session(engine) as session:
        messages = session.exec(select(Message).where(Message.channel == "x")).all()
        parts = {m.locale: json.loads(m.parts_json) for m in messages}
    return {locale: [p["text"], p["text_2"], p["text_3"]] for locale, p in parts.items()}


@pytest.mark.usefixtures("prefect_server")
def test_resume_after_a_crash_mid_thread_posts_nothing_twice(
        tmp_path: Path, emu: EmulatorPair, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL

    _, engine = _env(tmp_path, emu, monkeypatch, CRISISCOMMS_SEND_CONCURRENCY="1")
    _thread_templates(tmp_path, monkeypatch)
    # X answers the first post; accepts the second and holds its answer; the sender dies
    emu.x.set_faults(Faults(pass_first=1, lost_response_rate=1.0, max_faults=1,
                            lost_response_delay_s=120))
    child_env = {**os.environ, "CRISISCOMMS_HTTP_TIMEOUT_S": "90",
                 "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    log = tmp_path / "sender.log"
    with log.open("wb") as out:
        sender = subprocess.Popen(
            [*_crisiscomms(), "trigger", "outage", "--facts", str(_facts(tmp_path, "THREAD-1"))],
            env=child_env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
        while emu.x.stats()["accepted_messages"] < 2:
            assert sender.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.02)
        assert sender.poll() is None  # still waiting for X's answer to the second post
    finally:
        if sender.poll() is None:
            os.killpg(sender.pid, signal.SIGKILL)
        sender.wait()
    emu.x.set_faults(Faults())

    rows = _x_rows(engine)
    assert [r.state for r in rows] == [DeliveryState.sending] * len(LOCALES)
    cut = [r for r in rows if r.provider_id]
    assert len(cut) == 1 and "," not in (cut[0].provider_id or "")  # only the first post's id
    assert emu.x.stats()["accepted_messages"] == 2

    resumed = runner.invoke(app, ["resume", "THREAD-1", "--now"])
    assert resumed.exit_code == 0, resumed.output
    assert f"│ x │ {len(LOCALES)} │ 0 │ 0 │" in _text(resumed.output), resumed.output

    threads = _threads(engine)
    stats = emu.x.stats()
    assert stats["duplicates"] == 0 and "403" not in stats["rejected"], stats
    assert stats["accepted_messages"] == 3 * len(LOCALES)
    for locale, texts in threads.items():
        assert [emu.x.key_count(t) for t in texts] == [1, 1, 1], locale
    posts = {p["id"]: p for p in emu.x.received()}
    assert all("https://t.co/" in p["text"] for p in posts.values())
    for row in _x_rows(engine):
        assert row.state is DeliveryState.sent
        first, second, third = (row.provider_id or "").split(",")
        assert posts[first]["reply_to"] is None
        assert (posts[second]["reply_to"], posts[third]["reply_to"]) == (first, second)
    listing = runner.invoke(app, ["failures", "THREAD-1"])
    assert "THREAD-1" not in listing.output
