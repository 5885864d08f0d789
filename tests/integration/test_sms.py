"""The SMS channel against real servers: the ``twilio`` SDK talking to the Twilio emulator on
loopback, the SMS app (``api/sms.py``) under uvicorn receiving the emulator's signed inbound
replies and status callbacks, and a real SQLite ledger."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from twilio.request_validator import RequestValidator

from crisiscomms.audience.models import Recipient
from crisiscomms.audience.recipients import insert_recipients
from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.registry import build_channels
from crisiscomms.channels.twilio_sms import TwilioSMSChannel
from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    OutboundBatch,
    OutboundRecipient,
    Outcome,
    RenderedMessage,
)
from crisiscomms.delivery.ledger import pending_ids, release_deferred
from crisiscomms.delivery.models import Delivery, DeliveryEvent, DeliveryEventRollup, DeliveryState
from crisiscomms.delivery.sender import publish_deliveries
from crisiscomms.identity.identities import system_identity
from crisiscomms.incident.facts import build_fact_sheet
from crisiscomms.incident.service import StageBundle, approve, plan_bundle, trigger
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.testing.asgi import serve_app
from crisiscomms.testing.audiences import drill_recipients
from crisiscomms.testing.drill import workspace_environment
from crisiscomms.testing.emulators import EmulatorPair, Faults, start_emulators

pytestmark = pytest.mark.integration
SG_KEY, X_TOKEN, TWILIO_TOKEN = "SG.sms-test-key", "x-sms-token", "twilio-sms-test-token"
RECIPIENTS = 30
FACTS = build_fact_sheet({"incident_ref": "INC-SMS-0", "organization": "Example Corp",
                          "title": "Checkout errors", "severity": "major",
                          "components": ["Checkout"], "started_at": "2026-11-23T09:40:00Z"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def emus() -> Iterator[EmulatorPair]:
    with start_emulators(sendgrid_key=SG_KEY, x_token=X_TOKEN,
                         twilio_auth_token=TWILIO_TOKEN) as pair:
        yield pair


@dataclass
class Sms:
    base: str
    settings: Settings
    engine: Engine
    emulators: EmulatorPair

    @property
    def channel(self) -> TwilioSMSChannel:
        built = build_channels(self.settings)["sms"]
        assert isinstance(built, TwilioSMSChannel)
        return built

    def recipient(self, rid: int) -> Recipient:
        with Session(self.engine) as s:
            found = s.get(Recipient, rid)
            assert found is not None
            return found


def workspace(tmp_path: Path, emus: EmulatorPair, monkeypatch: pytest.MonkeyPatch,
              **extra: str) -> Iterator[Sms]:
    emus.reset()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**workspace_environment(tmp_path / "data", emus, SG_KEY, X_TOKEN,
                                   database_url=f"sqlite:///{tmp_path / 'sms.db'}"),
           "CRISISCOMMS_HTTP_TIMEOUT_S": "2", "CRISISCOMMS_SMS_URL": base, **extra}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        insert_recipients(session, drill_recipients(RECIPIENTS, locales=("en", "de"),
                                                    phones=True))
    from crisiscomms.api.sms import create_app

    with serve_app(create_app(settings), port, name="sms"):
        yield Sms(base, settings, engine, emus)
    engine.dispose()


@pytest.fixture
def sms(tmp_path: Path, emus: EmulatorPair, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sms]:
    yield from workspace(tmp_path, emus, monkeypatch)


def batch(text: str, to: str, key: str = "k-sms-1", rid: int = 1) -> OutboundBatch:
    message = RenderedMessage(playbook="outage", stage="acknowledge", channel="sms",
                              locale="en", parts={"text": text}, content_hash="0" * 64)
    return OutboundBatch(key=key, batch_no=0, facts=FACTS, incident_status="investigating",
                         message=message, recipients=[OutboundRecipient(rid, to)])


# -- the channel through the SDK, the emulator answering like Twilio ------------------------------


def test_a_message_is_created_through_the_sdk_and_recorded_once(sms: Sms) -> None:
    result = sms.channel.send(batch("Checkout is failing, we are on it 🚨", "+15550000001"))
    assert result.outcome is Outcome.sent and result.provider_id
    assert result.provider_id.startswith("SM") and len(result.provider_id) == 34
    (record,) = sms.emulators.twilio.received("k-sms-1")
    assert record["to"] == "+15550000001" and record["from"] == "+15005550006"
    assert (record["encoding"], record["segments"]) == ("UCS-2", 1)


@pytest.mark.parametrize(("to", "code"), [("+1555", "21211"), ("15550000001", "21211")])
def test_a_bad_number_fails_permanently_naming_twilios_code(sms: Sms, to: str,
                                                            code: str) -> None:
    result = sms.channel.send(batch("Hello", to))
    assert result.outcome is Outcome.permanent
    assert result.reason is not None and f"code {code}" in result.reason
    assert TWILIO_TOKEN not in result.reason
    assert sms.emulators.twilio.stats()["accepted_messages"] == 0


def test_over_the_rate_twilio_asks_to_wait_and_the_channel_says_how_long(sms: Sms) -> None:
    sms.emulators.twilio.set_faults(Faults(rate_limit=0, rate_window_s=30))
    result = sms.channel.send(batch("Hello", "+15550000001"))
    assert result.outcome is Outcome.retryable and result.reason is not None
    assert "429" in result.reason and "20429" in result.reason
    assert result.retry_after_s is not None and 0 < result.retry_after_s <= 30


def test_a_lost_answer_is_reconciled_by_the_exact_text_never_resent(sms: Sms) -> None:
    twilio = sms.emulators.twilio
    twilio.set_faults(Faults(lost_response_rate=1.0, max_faults=1, seed=1))
    sent = batch("Checkout is back. Thank you for your patience.", "+15550000002", key="k-lost")
    result = sms.channel.send(sent)
    assert result.outcome is Outcome.retryable and result.ambiguous
    assert sms.channel.reconcile(sent) is True
    assert sent.progress.ids and sent.progress.ids[0].startswith("SM")
    assert twilio.key_count("k-lost") == 1  # accepted once, never resent
    assert twilio.stats()["accepted_messages"] == 1
    other = batch("A different text", "+15550000002", key="k-other")
    assert sms.channel.reconcile(other) is False


# -- the SMS app: signed inbound replies ----------------------------------------------------------


def test_unsigned_or_badly_signed_requests_are_refused_and_change_nothing(sms: Sms) -> None:
    phone = sms.recipient(1).phone
    assert phone is not None
    form = {"From": phone, "Body": "STOP", "MessageSid": "SM" + "0" * 32}
    for headers in ({}, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}):
        for path in ("/v1/sms/inbound", "/v1/sms/status?key=k&r=1"):
            answer = httpx.post(sms.base + path, data=form, headers=headers, timeout=10)
            assert answer.status_code == 403, (path, headers, answer.text)
    # signed with another account's token, or for another URL (a replay elsewhere): 403
    inbound = sms.base + "/v1/sms/inbound"
    wrong_token = RequestValidator("another-token").compute_signature(inbound, form)
    elsewhere = RequestValidator(TWILIO_TOKEN).compute_signature(inbound + "?x=1", form)
    for signature in (wrong_token, elsewhere):
        answer = httpx.post(inbound, data=form, headers={"X-Twilio-Signature": signature},
                            timeout=10)
        assert answer.status_code == 403
    assert sms.recipient(1).sms_opted_out_at is None


def test_stop_opts_the_number_out_start_back_in_and_help_is_answered(sms: Sms) -> None:
    twilio, url = sms.emulators.twilio, sms.base + "/v1/sms/inbound"
    german = sms.recipient(1)  # drill recipient 1 speaks the second locale: de
    assert german.locale == "de" and german.phone
    answer = twilio.inbound(german.phone, " stop ", url=url)
    assert answer.status_code == 200 and "<Message>" not in answer.text
    assert sms.recipient(1).sms_opted_out_at is not None
    assert sms.recipient(2).sms_opted_out_at is None
    refused = sms.channel.send(batch("Hello", german.phone))  # Twilio blocks it too
    assert refused.outcome is Outcome.permanent and "21610" in (refused.reason or "")
    help_answer = twilio.inbound(german.phone, "HELP", url=url)
    assert help_answer.status_code == 200
    assert "<Message>Störungsmeldungen von Example Corp per SMS" in help_answer.text
    assert twilio.inbound(german.phone, "START", url=url).status_code == 200
    assert sms.recipient(1).sms_opted_out_at is None
    assert sms.channel.send(batch("Hello", german.phone)).outcome is Outcome.sent


# -- the ledger: planning by phone, status callbacks, quiet hours ---------------------------------


def stage(sms: Sms, name: str, ref: str = "INC-SMS-1") -> StageBundle:
    facts = {**load_playbook("outage", sms.settings.playbooks_dir).drill_facts,
             "incident_ref": ref}
    bundle = trigger(sms.engine, sms.settings, CHANNEL_CLASSES, playbook_name="outage",
                     facts=facts, stage=name, actor=system_identity("test"), drill=True)
    if not bundle.approved:
        bundle = approve(sms.engine, incident_ref=bundle.incident_ref, stage=name,
                         approver=system_identity("sms-approver"), kind="drill",
                         playbooks_dir=sms.settings.playbooks_dir, settings=sms.settings)
    plan_bundle(sms.engine, sms.settings, CHANNEL_CLASSES, bundle)
    return bundle


def publish_sms(sms: Sms, bundle: StageBundle) -> int:
    with Session(sms.engine) as s:
        ids = pending_ids(s, bundle.message_ids).get("sms", [])
    report = publish_deliveries(sms.engine, {"sms": sms.channel}, ids,
                                playbooks_dir=sms.settings.playbooks_dir, max_attempts=2)
    assert report.failed == 0 and not report.errors, report.errors
    return len(ids)


def counts(sms: Sms, *columns: object) -> list[tuple[object, ...]]:
    with Session(sms.engine) as s:
        return [tuple(r) for r in s.execute(
            select(*columns, func.count()).group_by(*columns).order_by(*columns)).all()]


def test_one_row_per_recipient_with_a_number_status_callbacks_stored_once(sms: Sms) -> None:
    with session_scope(sms.engine) as s:  # no number: no SMS; STOP before planning: none
        s.execute(update(Recipient).where(col(Recipient.id) == 3).values(phone=None))
        s.execute(update(Recipient).where(col(Recipient.id) == 4)
                  .values(sms_opted_out_at=datetime.now(UTC)))
    twilio = sms.emulators.twilio
    undeliverable = sms.recipient(5).phone
    assert undeliverable is not None
    twilio.set_undeliverable({undeliverable})
    bundle = stage(sms, "acknowledge")  # urgent: never deferred
    assert publish_sms(sms, bundle) == RECIPIENTS - 2
    with Session(sms.engine) as s:
        rows = s.execute(select(col(Delivery.recipient_count), col(Delivery.state),
                                col(Delivery.provider_id))
                         .where(col(Delivery.channel) == "sms")).all()
    assert len(rows) == RECIPIENTS - 2 and {r[0] for r in rows} == {1}
    assert {r[1] for r in rows} == {DeliveryState.sent}
    assert all(str(r[2]).startswith("SM") for r in rows)
    assert twilio.flush_callbacks(30)
    stats = twilio.stats()
    assert stats["accepted_messages"] == RECIPIENTS - 2 and stats["duplicates"] == 0
    events = dict(((e,), n) for e, n in counts(sms, col(DeliveryEvent.event)))
    assert events == {("sent",): RECIPIENTS - 2, ("delivered",): RECIPIENTS - 3,
                      ("undelivered",): 1}
    with Session(sms.engine) as s:
        reason = s.execute(select(col(DeliveryEvent.reason), col(DeliveryEvent.recipient_id))
                           .where(col(DeliveryEvent.event) == "undelivered")).one()
        rolled = s.execute(select(func.sum(col(DeliveryEventRollup.count)))
                           .where(col(DeliveryEventRollup.channel) == "sms")).scalar_one()
    assert tuple(reason) == ("error 30003", 5) and rolled == 2 * (RECIPIENTS - 2)
    # Twilio retries a callback: the replay stores nothing new
    (record,) = [r for r in twilio.received() if r["to"] == undeliverable]
    key = record["key"]
    url = f"{sms.base}/v1/sms/status?key={key}&r=5"
    params = {"MessageSid": record["sid"], "MessageStatus": "undelivered", "ErrorCode": "30003",
              "To": undeliverable, "AccountSid": twilio.account_sid}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    again = httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert again.status_code == 204
    assert dict(counts(sms, col(DeliveryEvent.event)))["undelivered"] == 1


def test_a_stage_that_can_wait_is_deferred_in_quiet_hours_then_sent_once(
        tmp_path: Path, emus: EmulatorPair, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    window = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"
    for sms in workspace(tmp_path, emus, monkeypatch, CRISISCOMMS_SMS_QUIET_HOURS=window):
        with session_scope(sms.engine) as s:
            s.execute(update(Recipient).values(time_zone="UTC"))
        assert publish_sms(sms, stage(sms, "acknowledge")) == RECIPIENTS  # urgent: at once
        update_stage = stage(sms, "update")
        with Session(sms.engine) as s:
            ids = pending_ids(s, update_stage.message_ids)["sms"]
        report = publish_deliveries(sms.engine, {"sms": sms.channel}, ids,
                                    playbooks_dir=sms.settings.playbooks_dir, max_attempts=2)
        assert (report.sent, report.failed, report.deferred) == (0, 0, RECIPIENTS)
        with Session(sms.engine) as s:
            waiting = s.execute(select(col(Delivery.not_before), col(Delivery.error))
                                .where(col(Delivery.state) == DeliveryState.deferred)).all()
        assert len(waiting) == RECIPIENTS
        not_before = {w[0] for w in waiting}
        assert len(not_before) == 1
        assert all("quiet hours" in str(w[1]) for w in waiting)
        assert emus.twilio.stats()["accepted_messages"] == RECIPIENTS
        with Session(sms.engine) as s:  # before the window ends nothing is released
            assert release_deferred(s, now=now) == []
            released = release_deferred(s, now=now + timedelta(hours=2))
        assert sorted(released) == sorted(ids)
        report = publish_deliveries(sms.engine, {"sms": sms.channel}, released,
                                    playbooks_dir=sms.settings.playbooks_dir, max_attempts=2)
        assert (report.sent, report.deferred) == (RECIPIENTS, 0)
        stats = emus.twilio.stats()
        assert stats["accepted_messages"] == 2 * RECIPIENTS and stats["duplicates"] == 0
        # publishing the same rows again sends nothing (they are sent, not planned)
        again = publish_deliveries(sms.engine, {"sms": sms.channel}, released,
                                   playbooks_dir=sms.settings.playbooks_dir, max_attempts=2)
        assert again.sent == 0 and emus.twilio.stats()["accepted_messages"] == 2 * RECIPIENTS
