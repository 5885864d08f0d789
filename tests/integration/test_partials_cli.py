"""Partials through the CLI: a template that includes, imports or extends another is only as
approved as everything it loads.

In a new workspace (``crisiscomms new``, a copy of the example), the outage acknowledgement's
English status page template pulls in a partial; ``crisiscomms templates approve`` approves
both; then the partial is edited. ``crisiscomms lint`` must fail naming the partial, and
``crisiscomms drill outage`` and ``crisiscomms trigger outage`` (an ``auto_send`` stage: no
human would see it) must fail with nothing published on any channel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from approvers import cli_approver
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from crisiscomms.cli import app
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.models import Delivery
from crisiscomms.incident.models import Incident, Message
from crisiscomms.testing.emulators import EmulatorPair

pytestmark = pytest.mark.integration
runner = CliRunner()

ACK_STATUS_EN = "outage/acknowledge/status_page.text.en.j2"
PARTIALS: dict[str, tuple[Callable[[str], str], str, str]] = {
    # construct: (how the acknowledgement uses it, the partial's name and text)
    "include": (lambda t: t + '\n{% include "partials/footer.j2" %}\n',
                "partials/footer.j2", "Follow every update at {{ facts.status_page_url }}."),
    "import": (lambda t: '{% import "partials/macros.j2" as m %}' + t
               + "\n{{ m.footer(facts.status_page_url) }}\n",
               "partials/macros.j2",
               "{% macro footer(url) %}Follow every update at {{ url }}.{% endmacro %}"),
    "from": (lambda t: '{% from "partials/macros.j2" import footer %}' + t
             + "\n{{ footer(facts.status_page_url) }}\n",
             "partials/macros.j2",
             "{% macro footer(url) %}Follow every update at {{ url }}.{% endmacro %}"),
    "extends": (lambda t: '{% extends "partials/layout.j2" %}{% block body %}' + t
                + "{% endblock %}",
                "partials/layout.j2",
                "{% block body %}{% endblock %}\nFollow every update at "
                "{{ facts.status_page_url }}."),
}
EDITED = "UNAPPROVED TEXT, never reviewed: {{ facts.status_page_url }}"


def one_line(text: str) -> str:
    return " ".join(text.split())


def workspace_with_partial(root: Path, construct: str) -> tuple[Path, str]:
    """A new workspace whose outage acknowledgement (status page, English) uses a partial,
    both approved with ``crisiscomms templates approve``."""
    ws = root / "ws"
    made = runner.invoke(app, ["new", str(ws)])
    assert made.exit_code == 0, made.output
    use, name, text = PARTIALS[construct]
    top = ws / "templates" / ACK_STATUS_EN
    top.write_text(use(top.read_text(encoding="utf-8").strip()), encoding="utf-8")
    (ws / "templates" / name).parent.mkdir(parents=True, exist_ok=True)
    (ws / "templates" / name).write_text(text, encoding="utf-8")
    return ws, name


def approve_then_edit(ws: Path, name: str) -> None:
    dana = cli_approver(ws.parent / "home")
    approved = runner.invoke(app, ["templates", "approve"], env=dana)
    assert approved.exit_code == 0, approved.output
    assert "approved 2 template(s)" in approved.output
    assert ACK_STATUS_EN in approved.output and name in approved.output
    clean = runner.invoke(app, ["lint", str(ws / "playbooks" / "outage.yaml")])
    assert clean.exit_code == 0, clean.output  # approved as it is: nothing to say
    (ws / "templates" / name).write_text(EDITED, encoding="utf-8")
    status = runner.invoke(app, ["templates", "status"])
    assert any(name in line and "edited" in line for line in status.output.splitlines())


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CRISISCOMMS_DATABASE_URL", raising=False)
    return tmp_path


@pytest.mark.parametrize("construct", sorted(PARTIALS))
def test_lint_fails_naming_an_edited_partial(construct: str, cli_env: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ws, name = workspace_with_partial(cli_env, construct)
    monkeypatch.setenv("CRISISCOMMS_WORKSPACE", str(ws))
    approve_then_edit(ws, name)

    lint = runner.invoke(app, ["lint"])
    assert lint.exit_code == 1, lint.output
    # the webhook's text includes the status page's: one problem names both loaders
    assert (f"playbook outage, message acknowledge, locale en, field text: template {name} "
            f"(loaded by {ACK_STATUS_EN} and 1 more) is edited") in one_line(lint.stderr)
    report = json.loads(runner.invoke(app, ["lint", "--json"]).stdout)
    assert [p["template"] for p in report["problems"]] == [name]


@pytest.mark.usefixtures("prefect_server")  # only used if the drill wrongly gets to publish
@pytest.mark.parametrize("construct", sorted(PARTIALS))
def test_the_drill_fails_on_an_edited_partial_and_publishes_nothing(
        construct: str, cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, name = workspace_with_partial(cli_env, construct)
    monkeypatch.setenv("CRISISCOMMS_WORKSPACE", str(ws))
    approve_then_edit(ws, name)

    out = cli_env / "drill-out"
    drill = runner.invoke(app, ["drill", "outage", "--recipients", "20", "--json",
                                "--out", str(out)])
    assert drill.exit_code == 2, drill.output
    assert drill.stdout.strip() == ""  # no report: nothing ran
    assert not out.exists()  # no status page, no support statement, no sent.jsonl
    error = one_line(drill.stderr)
    assert ("error: playbook outage, message acknowledge, channel status_page, locale en: "
            f"template {name} was edited after approval") in error
    assert f"(loaded by {ACK_STATUS_EN})" in error


@pytest.mark.usefixtures("prefect_server")  # only used if the trigger wrongly gets to publish
def test_an_auto_sent_acknowledgement_with_an_edited_partial_sends_nothing(
        workspace: tuple[Settings, Engine], emulators: EmulatorPair, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``trigger`` of the auto-sent acknowledgement: refused before anything is stored, so
    neither emulator, nor the status page folder, nor the ledger sees anything."""
    settings, engine = workspace
    ws, name = workspace_with_partial(tmp_path, "include")
    monkeypatch.setenv("CRISISCOMMS_WORKSPACE", str(ws))
    approve_then_edit(ws, name)
    facts = yaml.safe_load((ws / "playbooks" / "outage.yaml").read_text())["drill_facts"]
    path = tmp_path / "facts.yaml"
    path.write_text(yaml.safe_dump({**facts, "incident_ref": "PARTIAL-1"}))

    result = runner.invoke(app, ["trigger", "outage", "--facts", str(path)])
    assert result.exit_code == 2, result.output
    assert f"template {name} was edited after approval" in one_line(result.stderr)
    assert emulators.sendgrid.stats()["recipients"] == 0
    assert emulators.x.stats()["accepted_messages"] == 0
    site = settings.resolved_status_page_dir
    assert not site.exists() or not any(site.iterdir())
    assert not (settings.data_dir / "support").exists()
    with Session(engine) as session:
        for table in (Incident, Message, Delivery):
            assert session.exec(select(func.count()).select_from(table)).one() == 0
