"""The real send loop: ``send_once`` (retry, ``Retry-After``, reconcile before any resend, rate
limit) and ``publish_deliveries`` recording its results in a real SQLite ledger.

The provider is :class:`FakeProvider`, an in-process object behind the ``Channel`` protocol that
keeps what it accepted (by idempotency key, with each recipient's personalised text) and answers
each request as scripted, so every test can say what the provider holds, not only what we
recorded. Nothing sleeps: ``send_once`` takes ``sleep`` and ``rng``; the ledger tests use a
policy without delays.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from approvers import approve_all
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from crisiscomms.channels.base import BaseChannel
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.contract import (
    CUSTOMER_LIST,
    Channel,
    ChannelLimits,
    DeliveryResult,
    Lane,
    OutboundBatch,
    OutboundRecipient,
    Outcome,
    RenderedMessage,
)
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.delivery.rate_limits import use_global_rate_limits
from crisiscomms.delivery.sender import (
    PublishReport,
    SendPolicy,
    StillSending,
    publish_deliveries,
    reconcile_sending,
    send_once,
)
from crisiscomms.incident.facts import build_fact_sheet

# -- the fake provider ---------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """How the provider treats one request: whether it keeps it, and what reaches us (None:
    the success answer with a message id)."""

    accepted: bool
    result: DeliveryResult | None = None


ACCEPT = Answer(accepted=True)
ACCEPTED_ANSWER_LOST = Answer(True, DeliveryResult.lost("connection reset after the request"))
REFUSED_ANSWER_LOST = Answer(False, DeliveryResult.lost("connection reset before the request"))
SERVER_ERROR = Answer(False, DeliveryResult.retry("503 service unavailable"))
BAD_REQUEST = Answer(False, DeliveryResult.permanent("400 the from address is not verified"))


def too_many_requests(retry_after_s: float) -> Answer:
    return Answer(False, DeliveryResult.retry("429 too many requests", retry_after_s))


Reconcile = Literal["answers", "cannot tell", "unreachable"]


@dataclass(frozen=True)
class Kept:
    """One recipient of one accepted request, as the provider would deliver it."""

    key: str
    address: str
    text: str
    substitutions: dict[str, str]


@dataclass
class FakeProvider(BaseChannel):
    """A personal email provider in process: scripted answers (then ACCEPT), idempotency keys
    it can be asked about (``reconcile``), everything it accepted. It stands in for the email
    channel (its name, audience and batch size); the other declarations are the defaults."""

    name: ClassVar[str] = "email"
    recipients: ClassVar[str | None] = CUSTOMER_LIST
    personal: ClassVar[bool] = True
    limits: ClassVar[ChannelLimits] = ChannelLimits(batch_size=1000)
    lane: ClassVar[Lane] = Lane.fan_out
    order: ClassVar[int] = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> FakeProvider | None:
        return cls()

    script: list[Answer] = field(default_factory=list)
    reconciles: Reconcile = "answers"
    requests: list[str] = field(default_factory=list)
    """Idempotency key of every request that reached the provider, in order."""
    asked: list[str] = field(default_factory=list)
    """Keys we asked about (``reconcile``), in order."""
    kept: list[Kept] = field(default_factory=list)

    def validate(self, message: RenderedMessage) -> list[str]:
        return []

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        self.requests.append(batch.key)
        answer = self.script.pop(0) if self.script else ACCEPT
        if answer.accepted:
            for r in batch.recipients:
                text = batch.message.parts.get("text", "")
                for tag, value in r.substitutions.items():
                    text = text.replace(tag, value)
                self.kept.append(Kept(batch.key, r.address, text, dict(r.substitutions)))
        return answer.result or DeliveryResult.sent(f"msg-{len(self.requests)}")

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        self.asked.append(batch.key)
        if self.reconciles == "unreachable":
            raise ConnectionError("provider unreachable")
        if self.reconciles == "cannot tell":
            return None
        return any(k.key == batch.key for k in self.kept)

    def unsubscribe_link(self, token: str | None) -> str:
        """The recipient's own one-click link (as ``SendGridEmailChannel`` builds it)."""
        return f"https://subscriptions.example.com/v1/unsubscribe/{token}"

    def addresses(self, key: str | None = None) -> list[str]:
        return sorted(k.address for k in self.kept if key is None or k.key == key)


def test_the_fake_provider_is_a_channel() -> None:
    provider: Channel = FakeProvider()
    assert isinstance(provider, Channel)


# -- send_once on its own ----------------------------------------------------------------------

FACTS = build_fact_sheet({"incident_ref": "INC-LOOP-1", "organization": "Example Corp",
                          "title": "Checkout errors", "severity": "major",
                          "started_at": "2026-11-23T09:40:00+00:00"})


def batch(key: str = "k-1") -> OutboundBatch:
    message = RenderedMessage(playbook="outage", stage="acknowledge", channel="email",
                              locale="en", content_hash="h",
                              parts={"subject": "Checkout errors", "text": "Hi %first_name%",
                                     "html": "<p>Hi %first_name.html%</p>"})
    recipients = [OutboundRecipient(i, f"r{i}@example.com", {"%first_name%": f"R{i}"})
                  for i in (1, 2, 3)]
    return OutboundBatch(key=key, batch_no=0, facts=FACTS, incident_status="investigating",
                         message=message, recipients=recipients)


POLICY = SendPolicy(max_attempts=4, base_delay_s=0.5, max_delay_s=30.0,
                    rate_per_s={"email": None})
EVERYONE = ["r1@example.com", "r2@example.com", "r3@example.com"]


def run(provider: FakeProvider, policy: SendPolicy = POLICY, jitter: float = 1.0,
        ) -> tuple[DeliveryResult, int, list[float]]:
    sleeps: list[float] = []
    result, attempts = send_once(provider, batch(), policy, sleep=sleeps.append,
                                 rng=lambda: jitter)
    return result, attempts, sleeps


def test_sent_at_the_first_request() -> None:
    provider = FakeProvider()
    result, attempts, sleeps = run(provider)
    assert (result.outcome, result.provider_id, attempts, sleeps) == (Outcome.sent, "msg-1", 1, [])
    assert provider.addresses() == EVERYONE
    assert [k.text for k in provider.kept] == ["Hi R1", "Hi R2", "Hi R3"]


def test_server_errors_back_off_with_growing_full_jitter_then_send() -> None:
    provider = FakeProvider([SERVER_ERROR] * 3)
    result, attempts, sleeps = run(provider, jitter=1.0)
    assert result.outcome is Outcome.sent and attempts == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert provider.addresses() == EVERYONE  # resent three times, accepted once
    assert provider.asked == []  # a clear refusal needs no question before the resend


def test_retry_after_is_honoured_plus_jitter_and_capped() -> None:
    provider = FakeProvider([too_many_requests(7.0), too_many_requests(90.0)])
    result, attempts, sleeps = run(provider, jitter=0.5)
    assert result.outcome is Outcome.sent and attempts == 3
    assert sleeps == [pytest.approx(7.25), 30.0]  # 7 s + half of base 0.5; 90 s capped at 30
    assert provider.addresses() == EVERYONE


def test_a_permanent_failure_is_not_retried() -> None:
    provider = FakeProvider([BAD_REQUEST])
    result, attempts, sleeps = run(provider)
    assert result.outcome is Outcome.permanent
    assert result.reason == "400 the from address is not verified"
    assert (attempts, sleeps, provider.requests, provider.kept) == (1, [], ["k-1"], [])


def test_a_lost_answer_to_an_accepted_request_is_reconciled_never_resent() -> None:
    provider = FakeProvider([ACCEPTED_ANSWER_LOST])
    result, attempts, sleeps = run(provider)
    assert (result.outcome, result.provider_id) == (Outcome.sent, "reconciled")
    assert (attempts, sleeps) == (1, [])
    assert provider.requests == ["k-1"] and provider.asked == ["k-1"]
    assert provider.addresses() == EVERYONE


def test_a_lost_request_the_provider_does_not_have_is_resent_once() -> None:
    provider = FakeProvider([REFUSED_ANSWER_LOST])
    result, attempts, sleeps = run(provider)
    assert result.outcome is Outcome.sent and attempts == 2 and len(sleeps) == 1
    assert provider.asked == ["k-1"] and provider.requests == ["k-1", "k-1"]
    assert provider.addresses() == EVERYONE


def test_a_provider_that_cannot_tell_makes_the_batch_unknown_not_resent() -> None:
    provider = FakeProvider([ACCEPTED_ANSWER_LOST], reconciles="cannot tell")
    result, attempts, sleeps = run(provider)
    assert result.outcome is Outcome.unknown and "cannot confirm key k-1" in (result.reason or "")
    assert (attempts, sleeps, provider.requests) == (1, [], ["k-1"])


def test_a_provider_that_cannot_be_asked_leaves_the_batch_sending() -> None:
    provider = FakeProvider([ACCEPTED_ANSWER_LOST], reconciles="unreachable")
    with pytest.raises(StillSending, match="provider not asked: provider unreachable"):
        run(provider)
    assert provider.requests == ["k-1"]  # not resent


def test_retryable_answers_stop_at_max_attempts() -> None:
    provider = FakeProvider([SERVER_ERROR] * 9)
    policy = SendPolicy(max_attempts=3, base_delay_s=0.5, rate_per_s={"email": None})
    result, attempts, sleeps = run(provider, policy)
    assert result.outcome is Outcome.retryable and attempts == 3 and len(sleeps) == 2
    assert provider.requests == ["k-1"] * 3 and provider.kept == []


def test_lost_answers_count_towards_max_attempts() -> None:
    provider = FakeProvider([REFUSED_ANSWER_LOST] * 9)
    policy = SendPolicy(max_attempts=3, base_delay_s=0.5, rate_per_s={"email": None})
    result, attempts, _ = run(provider, policy)
    assert result.outcome is Outcome.retryable and result.ambiguous and attempts == 3
    assert provider.asked == ["k-1"] * 3  # asked before each resend, and after the last


@pytest.mark.usefixtures("process_rate_limits")
def test_every_request_takes_a_rate_limit_slot_retries_included() -> None:
    """The limiter a worker shares with the others (a Prefect global concurrency limit, here
    without a server: ``take`` records the slot) is taken before each request."""
    taken: list[str] = []
    use_global_rate_limits({"email": "crisiscomms-email-rate"},
                           take=lambda name, timeout_s: taken.append(name))
    provider = FakeProvider([SERVER_ERROR, too_many_requests(1.0)])
    result, attempts, _ = run(provider)
    assert result.outcome is Outcome.sent and attempts == 3
    assert len(provider.requests) == 3
    assert taken == ["crisiscomms-email-rate"] * 3


@pytest.mark.usefixtures("process_rate_limits")
def test_a_rate_limit_that_cannot_be_had_sends_nothing() -> None:
    def take(name: str, timeout_s: float | None) -> None:
        raise TimeoutError(f"{name}: no slot within {timeout_s} s")

    use_global_rate_limits({"email": "crisiscomms-email-rate"}, take=take)
    provider = FakeProvider()
    with pytest.raises(TimeoutError, match="no slot"):
        run(provider)
    assert provider.requests == []


# -- publish_deliveries: the loop recorded in a real ledger --------------------------------

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "lint" / "base"
"""A small recall playbook (status page, X, email; en and es) with its templates."""
NO_WAIT = SendPolicy(max_attempts=4, base_delay_s=0.0, max_delay_s=0.0,
                     rate_per_s={"email": None})


@dataclass(frozen=True)
class Planned:
    """An approved, planned incident: 6 drill recipients (3 en, 3 es), 2 per email batch."""

    db: Path
    playbooks_dir: Path
    incident_id: int


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Planned:
    """Trigger, approve and plan once; each test gets its own copy of the database file."""
    from crisiscomms.audience.recipients import insert_recipients
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.core.settings import Settings
    from crisiscomms.identity.identities import Identity
    from crisiscomms.incident.service import approve, plan_bundle, trigger
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.testing.audiences import drill_recipients

    root = tmp_path_factory.mktemp("send-loop")
    shutil.copytree(FIXTURE, root / "project")
    approve_all(root / "project" / "templates", root)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=root / "data", database_url=f"sqlite:///{root / 'planned.db'}",
        playbooks_dir=root / "project" / "playbooks",
        templates_dir=root / "project" / "templates", email_batch_size=2)
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        insert_recipients(session, drill_recipients(6, locales=("en", "es")))
    facts = dict(load_playbook("mini_recall", settings.playbooks_dir).drill_facts)
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="mini_recall",
                     facts=facts, actor=Identity("alice", "Alice", "key"))
    bundle = approve(engine, incident_ref=bundle.incident_ref, stage="announce",
                     approver=Identity("bob", "Bob", "key"),
                     playbooks_dir=settings.playbooks_dir, settings=settings)
    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    engine.dispose()
    return Planned(root / "planned.db", settings.playbooks_dir, bundle.incident_id)


@dataclass
class Ledger:
    engine: Engine
    planned: Planned

    def email_ids(self) -> list[int]:
        with Session(self.engine) as s:
            return [int(i) for i in s.exec(
                select(Delivery.id).where(Delivery.channel == "email")
                .order_by(col(Delivery.id))) if i is not None]

    def rows(self) -> list[Delivery]:
        with Session(self.engine) as s:
            return list(s.exec(select(Delivery).where(Delivery.channel == "email")
                               .order_by(col(Delivery.id))))

    def publish(self, provider: FakeProvider, policy: SendPolicy = NO_WAIT) -> PublishReport:
        return publish_deliveries(self.engine, {"email": provider}, self.email_ids(),
                                  playbooks_dir=self.planned.playbooks_dir,
                                  max_attempts=policy.max_attempts, concurrency=1,
                                  policy=policy)

    def audience(self) -> list[str]:
        from crisiscomms.audience.models import Recipient

        with Session(self.engine) as s:
            return sorted(s.exec(select(Recipient.email)))


@pytest.fixture
def ledger(planned: Planned, tmp_path: Path) -> Iterator[Ledger]:
    from crisiscomms.core.database import make_engine

    shutil.copy(planned.db, tmp_path / "ledger.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield Ledger(engine, planned)
    engine.dispose()


def test_publish_sends_each_recipient_exactly_once_and_records_it(ledger: Ledger) -> None:
    provider = FakeProvider()
    report = ledger.publish(provider)
    assert (report.sent, report.failed, report.unconfirmed, report.errors) == (6, 0, 0, [])
    rows = ledger.rows()
    assert len(rows) == 4  # 3 en + 3 es recipients, 2 per batch
    assert [(r.state, r.attempts) for r in rows] == [(DeliveryState.sent, 1)] * 4
    assert sorted(r.provider_id or "" for r in rows) == ["msg-1", "msg-2", "msg-3", "msg-4"]
    assert provider.addresses() == ledger.audience()  # everyone once, nobody twice
    assert sorted(provider.requests) == sorted(r.key for r in rows)
    texts = {k.address: k.text for k in provider.kept}
    assert texts["subscriber0000002@drill.example.com"].startswith("Hi Alan,")
    assert all("%first_name" not in t for t in texts.values())  # every tag filled
    # the recipient without a name gets the playbook's fallback, in their language
    assert texts["subscriber0000006@drill.example.com"].startswith("Hi there,")


def test_each_recipient_gets_their_own_unsubscribe_link(ledger: Ledger) -> None:
    from crisiscomms.audience.models import Recipient
    from crisiscomms.delivery.sender import UNSUBSCRIBE_TEXT_TAG

    provider = FakeProvider()
    ledger.publish(provider)
    with Session(ledger.engine) as s:
        tokens = {r.email: r.unsubscribe_token for r in s.exec(select(Recipient))}
    links = {k.address: k.substitutions[UNSUBSCRIBE_TEXT_TAG] for k in provider.kept}
    assert links == {email: provider.unsubscribe_link(token) for email, token in tokens.items()}
    assert len(set(links.values())) == len(links) == 6 and all(tokens.values())


def test_retry_after_then_sent_is_recorded_with_its_attempts(ledger: Ledger) -> None:
    provider = FakeProvider([too_many_requests(2.0), SERVER_ERROR])
    report = ledger.publish(provider)
    assert report.sent == 6 and report.failed == 0
    first, *others = ledger.rows()
    assert (first.state, first.attempts) == (DeliveryState.sent, 3)
    assert [(r.state, r.attempts) for r in others] == [(DeliveryState.sent, 1)] * 3
    assert provider.requests.count(first.key) == 3
    assert provider.addresses() == ledger.audience()


def test_a_permanent_failure_is_recorded_once_and_never_retried(ledger: Ledger) -> None:
    from crisiscomms.delivery.ledger import failures

    provider = FakeProvider([BAD_REQUEST])
    report = ledger.publish(provider)
    first, *others = ledger.rows()
    assert (report.sent, report.failed) == (4, 2)
    assert (first.state, first.attempts) == (DeliveryState.failed, 1)
    assert first.error == "400 the from address is not verified"
    assert all(r.state is DeliveryState.sent for r in others)
    assert provider.requests.count(first.key) == 1
    assert provider.addresses(first.key) == []
    # publishing the same rows again claims nothing: no second request, no second record
    again = ledger.publish(provider)
    assert (again.sent, again.failed, again.skipped) == (0, 0, 4)
    assert provider.requests.count(first.key) == 1
    with Session(ledger.engine) as s:
        listed = failures(s, ledger.planned.incident_id)
    assert [(f.id, f.state, f.attempts) for f in listed] == [(first.id, "failed", 1)]


def test_a_lost_answer_is_reconciled_and_recorded_sent_without_a_resend(ledger: Ledger) -> None:
    provider = FakeProvider([ACCEPTED_ANSWER_LOST])
    report = ledger.publish(provider)
    first = ledger.rows()[0]
    assert report.sent == 6 and report.errors == []
    assert (first.state, first.provider_id, first.attempts) == (DeliveryState.sent,
                                                                "reconciled", 1)
    assert provider.asked == [first.key] and provider.requests.count(first.key) == 1
    assert provider.addresses() == ledger.audience()


def test_an_answer_the_provider_cannot_confirm_is_recorded_unconfirmed(ledger: Ledger) -> None:
    provider = FakeProvider([ACCEPTED_ANSWER_LOST], reconciles="cannot tell")
    report = ledger.publish(provider)
    first = ledger.rows()[0]
    assert (report.sent, report.unconfirmed, report.failed) == (4, 2, 0)
    assert first.state is DeliveryState.unconfirmed and first.attempts == 1
    assert "crisiscomms retry --unconfirmed" in (first.error or "")
    assert provider.requests.count(first.key) == 1  # never resent automatically


def test_a_provider_that_cannot_be_asked_leaves_the_row_sending_until_reconciled(
        ledger: Ledger) -> None:
    provider = FakeProvider([ACCEPTED_ANSWER_LOST], reconciles="unreachable")
    report = ledger.publish(provider)
    first = ledger.rows()[0]
    assert first.state is DeliveryState.sending
    assert report.sent == 4 and any("still sending" in e for e in report.errors)
    provider.reconciles = "answers"  # the provider is back: it has the batch
    result = reconcile_sending(ledger.engine, {"email": provider},
                               playbooks_dir=ledger.planned.playbooks_dir,
                               incident_id=ledger.planned.incident_id)
    assert (result.confirmed, result.requeued, result.unconfirmed) == (1, 0, 0)
    first = ledger.rows()[0]
    assert (first.state, first.provider_id) == (DeliveryState.sent, "reconciled")
    assert provider.requests.count(first.key) == 1
    assert provider.addresses() == ledger.audience()


def test_retryable_to_the_last_attempt_is_recorded_failed(ledger: Ledger) -> None:
    provider = FakeProvider([SERVER_ERROR] * 3)
    policy = SendPolicy(max_attempts=3, base_delay_s=0.0, max_delay_s=0.0,
                        rate_per_s={"email": None})
    report = ledger.publish(provider, policy)
    first = ledger.rows()[0]
    assert (report.sent, report.failed) == (4, 2)
    assert (first.state, first.attempts) == (DeliveryState.failed, 3)
    assert first.error == "503 service unavailable"
    assert provider.requests.count(first.key) == 3 and provider.addresses(first.key) == []


# -- one recipient the provider would refuse never sinks the batch ----------------------------


@dataclass
class LimitedProvider(FakeProvider):
    """The fake provider with SendGrid's 10,000 bytes of substitutions per recipient."""

    limits: ClassVar[ChannelLimits] = ChannelLimits(batch_size=1000,
                                                    max_substitution_bytes=10_000)


def _rename(ledger: Ledger, recipient_id: int, name: str) -> str:
    from crisiscomms.audience.models import Recipient

    with Session(ledger.engine) as s:
        recipient = s.get(Recipient, recipient_id)
        assert recipient is not None
        recipient.name = name
        s.add(recipient)
        s.commit()
        return recipient.email


def test_an_oversized_recipient_is_split_out_and_the_rest_of_the_batch_goes(
        ledger: Ledger) -> None:
    from crisiscomms.delivery.ledger import channel_counts, exception_key, failures, requeue

    first = ledger.rows()[0]
    big_id, other_id = (int(i) for i in first.recipient_ids.split(","))
    big = _rename(ledger, big_id, "A" * 20_000)  # the first name alone is 40,000 bytes
    provider = LimitedProvider()
    report = ledger.publish(provider)

    assert (report.sent, report.failed) == (5, 1)
    assert provider.addresses() == sorted(set(ledger.audience()) - {big})  # 5, none twice
    batch_row, *_, exception = ledger.rows()
    assert (batch_row.id, batch_row.state, batch_row.recipient_ids,
            batch_row.recipient_count) == (first.id, DeliveryState.sent, str(other_id), 1)
    assert provider.requests.count(first.key) == 1  # the batch under its own key, once
    assert (exception.key, exception.state, exception.recipient_ids,
            exception.recipient_count, exception.batch_no) == (
        exception_key(first.key, big_id), DeliveryState.failed, str(big_id), 1, 0)
    assert f"recipient {big_id} ({big})" in (exception.error or "")
    assert re.search(r"substitutions are 40,\d{3} bytes, over the limit of 10,000",
                     exception.error or "")
    assert report.errors == [exception.error]
    with Session(ledger.engine) as s:
        assert channel_counts(s, ledger.planned.incident_id)["email"]["sent"] == 5
        assert channel_counts(s, ledger.planned.incident_id)["email"]["failed"] == 1
        assert [(f.id, f.recipients) for f in failures(s, ledger.planned.incident_id)] == [
            (exception.id, 1)]

    # retry: only the failed recipient is re-queued, and it is refused again without a request
    with Session(ledger.engine) as s:
        assert requeue(s, ledger.planned.incident_id) == 1
    requests = list(provider.requests)
    again = ledger.publish(provider)
    assert (again.sent, again.failed) == (0, 1)
    assert provider.requests == requests
    # once someone fixes the record, the retry sends it, alone, under its own key
    _rename(ledger, big_id, "Ada Lovelace")
    with Session(ledger.engine) as s:
        requeue(s, ledger.planned.incident_id)
    fixed = ledger.publish(provider)
    assert (fixed.sent, fixed.failed) == (1, 0)
    assert provider.addresses() == ledger.audience()  # everyone, once
    assert provider.requests[len(requests):] == [exception.key]


def test_a_crash_after_the_split_never_counts_the_oversized_recipient_as_sent(
        ledger: Ledger) -> None:
    """The split is committed before the request: a crash between the two leaves the batch
    row sending without that recipient, and reconciliation settles only the others."""
    first = ledger.rows()[0]
    big_id = int(first.recipient_ids.split(",")[0])
    _rename(ledger, big_id, "B" * 20_000)
    provider = LimitedProvider([ACCEPTED_ANSWER_LOST], reconciles="unreachable")
    ledger.publish(provider)  # the batch stays sending: it may be at the provider
    provider.reconciles = "answers"
    reconcile_sending(ledger.engine, {"email": provider},
                      playbooks_dir=ledger.planned.playbooks_dir,
                      incident_id=ledger.planned.incident_id)
    rows = ledger.rows()
    assert [(r.state, r.recipient_count) for r in rows if r.key == first.key] == [
        (DeliveryState.sent, 1)]
    assert [r.state for r in rows if r.recipient_ids == str(big_id)] == [DeliveryState.failed]
    assert provider.requests.count(first.key) == 1


# -- a provider that confirms later (SendGrid's Event Webhook) ----------------------------------


def test_an_unconfirmed_row_is_settled_by_the_providers_later_word(ledger: Ledger) -> None:
    """Real SendGrid cannot be asked (reconcile: None), so a row a crash left sending becomes
    unconfirmed, listed for a human; its Event Webhook ``processed`` event will carry our key
    (``custom_args``) and the receiver calls ``confirm_by_key``."""
    from crisiscomms.delivery.ledger import confirm_by_key, failures

    provider = FakeProvider([ACCEPTED_ANSWER_LOST], reconciles="unreachable")
    ledger.publish(provider)  # left sending, as a crash would leave it
    provider.reconciles = "cannot tell"
    result = reconcile_sending(ledger.engine, {"email": provider},
                               playbooks_dir=ledger.planned.playbooks_dir,
                               incident_id=ledger.planned.incident_id)
    assert result.unconfirmed == 1
    first = ledger.rows()[0]
    with Session(ledger.engine) as s:
        (listed,) = failures(s, ledger.planned.incident_id)
        assert (listed.id, listed.state) == (first.id, "unconfirmed")
        assert confirm_by_key(s, first.key)
        assert not confirm_by_key(s, first.key)  # events repeat: harmless
        assert not confirm_by_key(s, "no-such-key")
        assert failures(s, ledger.planned.incident_id) == []
    first = ledger.rows()[0]
    assert (first.state, first.error) == (DeliveryState.sent, None)
    assert provider.requests.count(first.key) == 1
