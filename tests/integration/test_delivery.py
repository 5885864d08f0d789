"""Delivery at scale (issue 6), on SQLite and PostgreSQL, against the emulators through the
Prefect flow: exactly once under faults, reconciliation after a crash, a dead channel, permanent
failures, one-command retry, and recipient import."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.registry import build_channels
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.ledger import channel_counts, claim, pending_ids
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.delivery.sender import _outbound
from crisiscomms.identity.identities import system_identity
from crisiscomms.incident.service import plan_bundle, trigger
from crisiscomms.incident.views import delivery_failures, retry_failed
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.testing.emulators import EmulatorPair, Faults

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture
def ws(backend_workspace: tuple[Settings, Engine],
       monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Engine]:
    monkeypatch.setenv("CRISISCOMMS_EMAIL_BATCH_SIZE", "50")  # 1,000 recipients: 20 batches
    monkeypatch.setenv("CRISISCOMMS_BATCHES_PER_TASK", "5")
    monkeypatch.setenv("CRISISCOMMS_MAX_ATTEMPTS", "10")
    monkeypatch.setenv("CRISISCOMMS_RETRY_BASE_DELAY_S", "0.01")
    monkeypatch.setenv("CRISISCOMMS_RETRY_MAX_DELAY_S", "0.2")
    _settings, engine = backend_workspace
    return Settings(_env_file=None), engine  # type: ignore[call-arg]


def languages(settings: Settings) -> int:
    return len(load_playbook("outage", settings.playbooks_dir).locales)


def acknowledge(settings: Settings, engine: Engine, ref: str = "INC-SCALE-1") -> int:
    facts = dict(load_playbook("outage", settings.playbooks_dir).drill_facts)
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                     facts={**facts, "incident_ref": ref}, actor=system_identity("test"))
    return bundle.incident_id


def test_every_recipient_once_while_the_provider_fails_a_quarter_of_requests(
    ws: tuple[Settings, Engine], emulators: EmulatorPair
) -> None:
    from crisiscomms.flows.run_playbook import run_stage

    settings, engine = ws
    emulators.sendgrid.set_faults(Faults(error_rate=0.1, timeout_rate=0.05, hang_s=3.0,
                                         reset_rate=0.05, lost_response_rate=0.05, seed=7))
    incident_id = acknowledge(settings, engine)
    result = run_stage("INC-SCALE-1", "acknowledge")
    stats = emulators.sendgrid.stats()
    assert stats["dropped"], "faults were injected"
    assert result["errors"] == []
    assert stats["duplicates"] == 0 and stats["recipients"] == 1000
    with Session(engine) as s:
        assert channel_counts(s, incident_id)["email"]["sent"] == 1000


def test_a_crash_mid_send_is_reconciled_not_resent(
    ws: tuple[Settings, Engine], emulators: EmulatorPair
) -> None:
    """Rows left ``sending``: those the provider has become sent without a resend."""
    from crisiscomms.flows.run_playbook import run_resume

    settings, engine = ws
    incident_id = acknowledge(settings, engine)
    with Session(engine) as s:
        from crisiscomms.incident.service import get_incident, load_bundle

        bundle = load_bundle(s, get_incident(s, "INC-SCALE-1"), "acknowledge")
    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    channels = build_channels(settings)
    with Session(engine) as s:
        email = pending_ids(s, bundle.message_ids)["email"]
        claimed = claim(s, email[:6])  # the dead sender had claimed six batches...
        for did in claimed[:3]:  # ...and three requests reached SendGrid before SIGKILL
            delivery = s.get(Delivery, did)
            assert delivery is not None
            assert channels["email"].send(_outbound(s, delivery, settings.playbooks_dir,
                                                    channels)).outcome \
                == "sent"
    before = emulators.sendgrid.stats()["recipients"]
    assert before == 150
    result = run_resume("INC-SCALE-1", stale_after_s=0)
    assert result["reconciled"]["confirmed"] == 3 and result["reconciled"]["requeued"] == 3
    stats = emulators.sendgrid.stats()
    assert stats["duplicates"] == 0 and stats["recipients"] == 1000
    with Session(engine) as s:
        counts = channel_counts(s, incident_id)
    assert counts["email"]["sent"] == 1000 and counts["x"]["sent"] == languages(settings)


def test_a_dead_channel_fails_alone_and_one_command_retries_it(
    ws: tuple[Settings, Engine], emulators: EmulatorPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crisiscomms.flows.run_playbook import run_resume, run_stage

    monkeypatch.setenv("CRISISCOMMS_MAX_ATTEMPTS", "2")
    settings, engine = ws
    emulators.x.set_faults(Faults(error_rate=1.0, error_statuses=(503,)))
    incident_id = acknowledge(settings, engine)
    result = run_stage("INC-SCALE-1", "acknowledge")
    n = languages(settings)  # one X post per language
    assert result["channels"]["email"]["sent"] == 1000
    assert result["channels"]["x"]["failed"] == n
    failures = delivery_failures(engine, "INC-SCALE-1")
    assert [(f.channel, f.state) for f in failures] == [("x", "failed")] * n
    assert "503" in failures[0].reason
    emulators.x.set_faults(Faults())
    count, out = retry_failed(engine, "INC-SCALE-1", channel="x",
                              publish=lambda ref: run_resume(ref))
    assert count == n and out is not None and out["channels"]["x"]["sent"] == n
    assert emulators.x.stats()["accepted_messages"] == n
    assert emulators.sendgrid.stats()["recipients"] == 1000  # email was not sent again
    with Session(engine) as s:
        assert channel_counts(s, incident_id)["x"]["sent"] == n


def test_a_permanent_refusal_is_recorded_once_with_the_reason(
    ws: tuple[Settings, Engine], emulators: EmulatorPair
) -> None:
    from crisiscomms.flows.run_playbook import run_stage

    settings, engine = ws
    emulators.sendgrid.set_faults(Faults(error_rate=1.0, error_statuses=(403,)))
    acknowledge(settings, engine)
    run_stage("INC-SCALE-1", "acknowledge")
    with Session(engine) as s:
        rows = s.exec(select(Delivery).where(Delivery.channel == "email")).all()
    assert {r.state for r in rows} == {DeliveryState.failed}
    assert all(r.attempts == 1 and "403" in (r.error or "") for r in rows)
    assert emulators.sendgrid.stats()["requests"] == len(rows)  # none retried


def test_unsubscribed_recipients_are_counted_and_never_sent(
    ws: tuple[Settings, Engine], emulators: EmulatorPair
) -> None:
    from crisiscomms.flows.run_playbook import run_stage

    settings, engine = ws
    with Session(engine) as s:
        from crisiscomms.audience.models import Recipient

        s.execute(update(Recipient).where(Recipient.id <= 10).values(consent=False))
        s.commit()
    acknowledge(settings, engine)
    result = run_stage("INC-SCALE-1", "acknowledge")
    assert result["suppressed"] == 10
    assert emulators.sendgrid.stats()["recipients"] == 990
    sent_to = {r["to"] for r in emulators.sendgrid.received()}
    assert "subscriber0000001@drill.example.com" not in sent_to


def test_recipient_import_validates_every_line(
    ws: tuple[Settings, Engine], tmp_path: Path, emulators: EmulatorPair
) -> None:
    from crisiscomms.cli import app

    _settings, engine = ws
    bad = tmp_path / "bad.csv"
    bad.write_text("email,name,locale,unsubscribed\n"
                   "ok@example.com,Ok,en,\n"
                   "not-an-address,X,en,\n"
                   "OK@example.com,Dup,en,\n"
                   "subscriber0000001@drill.example.com,Old,en,\n"
                   "gone@example.com,Gone,en,yes\n"
                   "zone@example.com,Z,en,maybe\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["recipients", "import", str(bad)])
    assert result.exit_code == 2
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "line 3:" in text and "line 4: duplicate of line 2" in text
    assert "line 5:" in text and "already a recipient" in text and "line 7:" in text
    from crisiscomms.audience.models import Recipient

    with Session(engine) as s:
        assert len(s.exec(select(Recipient)).all()) == 1000  # nothing imported
    result = runner.invoke(app, ["recipients", "import", str(bad), "--skip-invalid"])
    assert result.exit_code == 1, result.output
    assert "imported 2 recipient(s) (1 unsubscribed" in result.output
    with Session(engine) as s:
        gone = s.exec(select(Recipient).where(Recipient.email == "gone@example.com")).one()
        assert gone.consent is False
    assert emulators.sendgrid.stats()["requests"] == 0


def test_sendgrid_lost_answer_is_reconciled_by_key(
    ws: tuple[Settings, Engine], emulators: EmulatorPair
) -> None:
    """A request accepted whose answer was lost is recognised, never resent."""
    import dataclasses

    from crisiscomms.channels.sendgrid_email import SendGridEmailChannel
    from crisiscomms.delivery.contract import Outcome
    from crisiscomms.delivery.sender import SendPolicy, send_once
    from crisiscomms.incident.service import get_incident, load_bundle
    from tests.integration.conftest import SENDGRID_KEY

    settings, engine = ws
    acknowledge(settings, engine)
    with Session(engine) as s:
        bundle = load_bundle(s, get_incident(s, "INC-SCALE-1"), "acknowledge")
    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    with Session(engine) as s:
        row = s.get(Delivery, pending_ids(s, bundle.message_ids)["email"][0])
        assert row is not None
        batch = _outbound(s, row, settings.playbooks_dir, build_channels(settings))
    for transport in ("httpx", "sdk"):
        channel = SendGridEmailChannel(SENDGRID_KEY, base_url=emulators.sendgrid.url,
                                       from_email="s@example.com", from_name="S",
                                       timeout_s=2, transport=transport)
        one = dataclasses.replace(batch, key=f"lost-{transport}")
        emulators.sendgrid.set_faults(Faults(lost_response_rate=1.0))
        first = channel.send(one)
        assert first.outcome is Outcome.retryable and first.ambiguous
        assert channel.reconcile(one) is True
        two = dataclasses.replace(batch, key=f"lost2-{transport}")
        result, attempts = send_once(channel, two, SendPolicy(max_attempts=5))
        assert result.outcome is Outcome.sent and attempts == 1
        emulators.sendgrid.set_faults(Faults())
        assert channel.reconcile(dataclasses.replace(batch, key="never-sent")) is False
    assert emulators.sendgrid.stats()["duplicates"] == 0
