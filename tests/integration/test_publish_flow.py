"""The outage playbook end to end: trigger → render → approve → plan → publish, on Prefect's
test server, through the real channel adapters to the emulators."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.core.errors import ApprovalError, FactsError, LimitError, RenderError
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.ledger import channel_counts
from crisiscomms.delivery.models import Delivery
from crisiscomms.identity.identities import Identity, system_identity
from crisiscomms.incident.models import Incident
from crisiscomms.incident.service import approve, trigger
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.testing.emulators import EmulatorPair

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture
def workspace(backend_workspace: tuple[Settings, Engine]) -> tuple[Settings, Engine]:
    """The flow tests run on SQLite and on PostgreSQL."""
    return backend_workspace


def languages(settings: Settings) -> int:
    return len(load_playbook("outage", settings.playbooks_dir).locales)


def drill_facts(settings: Settings, **over: object) -> dict[str, object]:
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
    facts.update(over)
    return facts


def run(ref: str, stage: str) -> dict[str, object]:
    from crisiscomms.flows.run_playbook import run_stage

    return run_stage(ref, stage)


def test_acknowledgement_goes_out_on_every_channel(
    workspace: tuple[Settings, Engine], emulators: EmulatorPair
) -> None:
    settings, engine = workspace
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                     facts=drill_facts(settings), actor=system_identity("test"))
    assert bundle.approved and bundle.approval is not None
    assert bundle.approval.kind == "auto_send"
    result = run(bundle.incident_ref, "acknowledge")
    assert result["errors"] == []
    with Session(engine) as s:
        counts = channel_counts(s, bundle.incident_id)
    n = languages(settings)  # broadcast channels publish one message per language
    assert counts["email"]["sent"] == 1000 and counts["email"]["failed"] == 0
    assert counts["x"]["sent"] == n and counts["status_page"]["sent"] == n
    assert counts["support"]["sent"] == n
    sg = emulators.sendgrid.stats()
    assert sg["recipients"] == 1000 and sg["duplicates"] == 0
    assert emulators.x.stats()["accepted_messages"] == n
    received = emulators.sendgrid.received()
    ada = next(r for r in received if r["to"] == "subscriber0000010@drill.example.com")
    assert "Hi Ada" in ada["text"] and "%first_name" not in ada["text"] + ada["html"]
    nameless = next(r for r in received if r["to"] == "subscriber0000006@drill.example.com")
    assert "Hi there" in nameless["text"]
    summary = json.loads(next(settings.resolved_status_page_dir.rglob("summary.json"))
                         .read_text())
    assert summary["incidents"][0]["status"] == "investigating"


def test_triggering_the_same_update_twice_sends_nothing_twice(
    workspace: tuple[Settings, Engine], emulators: EmulatorPair
) -> None:
    settings, engine = workspace
    for _ in range(2):
        bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                         facts=drill_facts(settings), actor=system_identity("test"))
        run(bundle.incident_ref, "acknowledge")
    assert emulators.sendgrid.stats()["recipients"] == 1000
    assert emulators.sendgrid.stats()["duplicates"] == 0
    n = languages(settings)
    assert emulators.x.stats()["accepted_messages"] == n
    assert emulators.more is not None
    for emulator in emulators.more.all():  # Mastodon, Bluesky, Slack, Teams, the webhook
        assert (emulator.stats()["accepted_messages"], emulator.stats()["duplicates"]) == (n, 0)
    with Session(engine) as s:  # one email batch (all English) + one row per language of
        # x, status page, support and the five issue 15 channels
        assert len(s.exec(select(Delivery)).all()) == 1 + 8 * n


def test_update_waits_for_approval_then_threads_on_x(
    workspace: tuple[Settings, Engine], emulators: EmulatorPair
) -> None:
    settings, engine = workspace
    facts = drill_facts(settings)
    ack = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage", facts=facts,
                  actor=system_identity("test"))
    run(ack.incident_ref, "acknowledge")
    update = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                     facts={"incident_ref": ack.incident_ref}, stage="update",
                     actor=system_identity("test"))
    assert not update.approved
    with pytest.raises(ApprovalError, match="awaits approval"):
        run(ack.incident_ref, "update")
    assert emulators.sendgrid.stats()["recipients"] == 1000
    approve(engine, incident_ref=ack.incident_ref, stage="update",
            approver=Identity("pr-lead", "PR lead", "key"), settings=settings)
    result = run(ack.incident_ref, "update")
    assert result["errors"] == []
    assert emulators.sendgrid.stats()["recipients"] == 2000
    posts = emulators.x.received()
    n = languages(settings)  # each language's update replies to that language's post
    assert len(posts) == 2 * n
    roots = {p["id"] for p in posts[:n]}
    assert sorted(p["reply_to"] for p in posts[n:]) == sorted(roots)


def test_a_dead_channel_does_not_stop_the_others(
    workspace: tuple[Settings, Engine], emulators: EmulatorPair,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("CRISISCOMMS_X_BASE_URL", dead)
    settings, engine = workspace
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                     facts=drill_facts(settings), actor=system_identity("test"))
    result = run(bundle.incident_ref, "acknowledge")
    with Session(engine) as s:
        counts = channel_counts(s, bundle.incident_id)
        x_rows = s.exec(select(Delivery).where(Delivery.channel == "x")).all()
    n = languages(settings)
    assert counts["email"]["sent"] == 1000 and counts["status_page"]["sent"] == n
    assert counts["x"]["failed"] == n
    assert all(r.attempts == 2 and r.error for r in x_rows)
    assert any(e.startswith("x batch 0") for e in result["errors"])  # type: ignore[union-attr]
    assert emulators.x.stats()["accepted_messages"] == 0


@pytest.mark.parametrize(("facts", "error", "match"), [
    ({"components": []}, FactsError, "missing required facts: components"),
    ({"next_update_at": None, "incident_ref": "NEW-1"}, None, None),
    ({"severity": "apocalyptic"}, FactsError, "severity"),
    ({"components": ["障" * 150]}, LimitError,
     "message acknowledge, channel x, locale en, field text: text is"),
])
def test_bad_facts_are_refused_and_change_nothing(
    workspace: tuple[Settings, Engine], emulators: EmulatorPair, facts: dict[str, object],
    error: type[Exception] | None, match: str | None,
) -> None:
    settings, engine = workspace
    data = drill_facts(settings, **facts)
    if error is None:  # drill facts minus next_update_at: still missing → refused
        data.pop("next_update_at")
        error, match = FactsError, "next_update_at"
    with pytest.raises(error, match=match):
        trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage", facts=data,
                actor=system_identity("test"))
    with Session(engine) as s:
        assert s.exec(select(Incident)).all() == []
    assert emulators.sendgrid.stats()["accepted_messages"] == 0


def test_template_problems_are_refused(
    workspace: tuple[Settings, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, engine = workspace
    templates = tmp_path / "templates"
    shutil.copytree(settings.templates_dir, templates)
    edited = templates / "outage" / "acknowledge" / "email.text.en.j2"
    edited.write_text(edited.read_text() + "\nP.S. unapproved words")
    local = settings.model_copy(update={"templates_dir": templates})
    with pytest.raises(ApprovalError, match=r"email\.text\.en\.j2 was edited after approval"):
        trigger(engine, local, CHANNEL_CLASSES, playbook_name="outage",
                facts=drill_facts(settings), actor=system_identity("test"))
    x_tpl = templates / "outage" / "acknowledge" / "x.text.en.j2"
    x_tpl.write_text("{{ facts.no_such_fact }}")
    from approvers import make_key

    from crisiscomms.render.approvals import ApprovalLock

    ApprovalLock(templates).approve(ApprovalLock(templates).template_names(),
                                    make_key(tmp_path, templates, "tester"))
    with pytest.raises(RenderError, match="undefined"):
        trigger(engine, local, CHANNEL_CLASSES, playbook_name="outage",
                facts=drill_facts(settings), actor=system_identity("test"))
    with Session(engine) as s:
        assert s.exec(select(Incident)).all() == []
