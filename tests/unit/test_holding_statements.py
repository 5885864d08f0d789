"""Support sees only approved, published words: the holding statements view against a real
SQLite database built by the real trigger → approve → plan → publish path (no Prefect)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from crisiscomms.core.settings import Settings
from crisiscomms.identity.identities import Identity
from crisiscomms.incident.service import StageBundle
from crisiscomms.incident.views import holding_statements, relative_time

REF = "HOLD-1"
ACK_DUE = "2026-11-23T10:10:00+00:00"
UPDATE_DUE = "2026-11-23T10:40:00+00:00"
CAUSE = "A configuration change to our load balancers sent traffic to servers not ready for it."


def support() -> str:
    from crisiscomms.channels.support_desk import SupportDeskChannel

    return SupportDeskChannel.name


PR_LEAD = Identity("pr-lead", "PR lead", "key")
DANA = Identity("dana", "Dana (PR lead)", "key")


def _facts(settings: Settings, **over: Any) -> dict[str, Any]:
    from crisiscomms.playbook.loader import load_playbook

    facts = {**load_playbook("outage", settings.playbooks_dir).drill_facts, "incident_ref": REF}
    facts.update(over)
    return {k: v for k, v in facts.items() if v is not None}


def _trigger(engine: Engine, settings: Settings, stage: str, **facts: Any) -> StageBundle:
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.incident.service import trigger

    return trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                   facts=_facts(settings, **facts), stage=stage, actor=PR_LEAD)


def _plan_and_publish(engine: Engine, settings: Settings, bundle: StageBundle) -> None:
    """Plan the approved bundle and publish what the configured channels can send (status
    page and support desk: no provider credentials here)."""
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.channels.registry import build_channels
    from crisiscomms.delivery.ledger import pending_ids
    from crisiscomms.delivery.sender import publish_deliveries
    from crisiscomms.incident.service import plan_bundle

    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    channels = build_channels(settings)
    with Session(engine) as session:
        ids = [i for channel, group in pending_ids(session, bundle.message_ids).items()
               if channel in channels for i in group]
    report = publish_deliveries(engine, channels, ids, playbooks_dir=settings.playbooks_dir,
                                max_attempts=1)
    assert report.failed == 0, report.errors


def _support_text(engine: Engine, bundle: StageBundle, locale: str) -> str:
    from crisiscomms.incident.models import Message

    with Session(engine) as session:
        message = session.exec(select(Message).where(
            col(Message.id).in_(bundle.message_ids), Message.channel == support(),
            Message.locale == locale)).one()
        return str(json.loads(message.parts_json)["text"])


def test_an_unapproved_or_unpublished_update_never_shows(engine: Engine,
                                                         settings: Settings) -> None:
    ack = _trigger(engine, settings, "acknowledge", cause=None, next_update_at=ACK_DUE)
    assert ack.approved  # auto_send
    assert holding_statements(engine, ack.incident_id, support()) == {}  # not published yet
    _plan_and_publish(engine, settings, ack)

    shown = holding_statements(engine, ack.incident_id, support(),
                               playbooks_dir=settings.playbooks_dir)
    locales = list(shown)
    assert locales == ["en", "es", "fr", "de", "ja"]  # the playbook's, default first
    en = shown["en"]
    assert (en.incident_ref, en.stage, en.previous) == (REF, "acknowledge", None)
    assert (en.stage_title, en.stage_status) == ("We're on it", "investigating")
    assert en.text == _support_text(engine, ack, "en")
    assert en.next_update_at == datetime.fromisoformat(ACK_DUE)
    assert en.published_at.tzinfo is not None

    # the update is rendered and stored, but nobody approved it
    update = _trigger(engine, settings, "update", cause=CAUSE, next_update_at=UPDATE_DUE)
    assert not update.approved
    waiting = _support_text(engine, update, "en")
    assert CAUSE in waiting  # the words that must not reach an agent yet
    for statement in holding_statements(engine, ack.incident_id, support(),
                                        playbooks_dir=settings.playbooks_dir).values():
        assert statement.stage == "acknowledge" and CAUSE not in statement.text
        assert statement.stage_status == "investigating"  # not the update's "identified"

    # approved, not published: still the acknowledgement
    from crisiscomms.incident.service import approve

    update = approve(engine, incident_ref=REF, stage="update", approver=DANA,
                     playbooks_dir=settings.playbooks_dir)
    assert update.approved
    assert holding_statements(engine, ack.incident_id, support())["en"].stage == "acknowledge"

    # published: the update, with what changed since the acknowledgement
    _plan_and_publish(engine, settings, update)
    shown = holding_statements(engine, ack.incident_id, support())
    assert sorted(shown) == sorted(locales)  # no playbook: alphabetical
    en = shown["en"]
    assert en.stage == "update" and en.text == waiting
    assert en.next_update_at == datetime.fromisoformat(UPDATE_DUE)
    assert en.previous is not None and en.previous.stage == "acknowledge"
    assert {"cause", "next_update_at"} <= set(en.previous.changed_facts)
    assert en.previous.published_at <= en.published_at
    assert shown["es"].text == _support_text(engine, update, "es")


def test_statements_command_prints_only_published_words(
        engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    from crisiscomms.cli import app

    for key, value in {"CRISISCOMMS_DATA_DIR": settings.data_dir,
                       "CRISISCOMMS_DATABASE_URL": settings.resolved_database_url,
                       "CRISISCOMMS_PLAYBOOKS_DIR": settings.playbooks_dir,
                       "CRISISCOMMS_TEMPLATES_DIR": settings.templates_dir}.items():
        monkeypatch.setenv(key, str(value))
    ack = _trigger(engine, settings, "acknowledge", cause=None, next_update_at=ACK_DUE)
    runner = CliRunner()
    before = runner.invoke(app, ["statements", REF])
    assert before.exit_code == 0, before.output
    assert "no holding statement published yet" in before.output
    _plan_and_publish(engine, settings, ack)
    _trigger(engine, settings, "update", cause=CAUSE, next_update_at=UPDATE_DUE)  # unapproved
    result = runner.invoke(app, ["statements", REF, "--locale", "en"])
    assert result.exit_code == 0, result.output
    assert f"{REF} · en · stage acknowledge · published" in result.output
    assert "next update due" in result.output
    assert _support_text(engine, ack, "en").splitlines()[0] in result.output
    assert CAUSE not in result.output
    unknown = runner.invoke(app, ["statements", "NO-SUCH"])
    assert unknown.exit_code == 2 and "unknown incident 'NO-SUCH'" in unknown.output


def test_relative_time() -> None:
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert relative_time(datetime(2026, 11, 23, 10, 25, tzinfo=UTC), now) == "in 25 min"
    assert relative_time(datetime(2026, 11, 23, 8, 55, tzinfo=UTC), now) == "1 h 5 min ago"
    assert relative_time(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), now) == "in 2 d"
    assert relative_time(now, now) == "now"
