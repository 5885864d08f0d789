"""Publish claimed ledger rows through their channel: claim, verify approval, send, record;
and reconcile rows a crash left ``sending``.

The hot path (one email batch = one ledger row = one SendGrid request of up to 1,000
personalizations):

1. the task claims its rows in one statement (``ledger.claim``: they are ``sending``,
   committed, before any request leaves);
2. per message (not per row) the approval is re-verified, the rendered parts, facts and
   playbook are loaded once (:class:`_MessageContext`);
3. ``concurrency`` threads each take a row, read its recipients with one Core range query
   (``id BETWEEN first AND last``: tuples, no ORM objects), build the substitutions, and send
   through the channel with retry, rate limit and reconciliation (:func:`send_once`);
4. the calling thread records results in bulk (``ledger.record_many``: one executemany per
   ``RECORD_EVERY`` results).

Exactly once: a retryable answer that may hide an accepted request (timeout, reset, garbage)
is never resent before the channel's ``reconcile`` says the provider does not have the key.
The parts of a multi-part message (an X thread) reach the ledger one by one as the provider
answers (``PartProgress``), so a resend continues after the last part it has an id for.

One bad recipient never sinks a batch: a recipient the channel says its provider would refuse
(``Channel.recipient_problems``: SendGrid's 10,000 bytes of substitutions) is split out of the
batch before the request (``ledger.split_out``) and recorded failed on its own row with the
provider's reason; the others go.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from crisiscomms.audience.models import Recipient
from crisiscomms.core.clock import utcnow
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.delivery.backoff import backoff_delay
from crisiscomms.delivery.contract import (
    RECONCILED,
    Channel,
    DeliveryResult,
    OutboundBatch,
    OutboundRecipient,
    Outcome,
    PartProgress,
    RenderedMessage,
    SaveProgress,
)
from crisiscomms.delivery.ledger import (
    PHONE,
    addressable,
    claim,
    decode_ids,
    record_many,
    save_progress,
    sending_rows,
    settle_sending,
    split_out,
)
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.delivery.rate_limits import RateLimiter, channel_bucket
from crisiscomms.incident.facts import FactSheet
from crisiscomms.incident.models import FactSheetVersion, Incident, Message
from crisiscomms.incident.service import facts_of, verify_approved
from crisiscomms.playbook.loader import Playbook, playbook_on_disk
from crisiscomms.render.environment import substitution_tag, time_tags, time_values

RECORD_EVERY = 16
"""Results recorded per executemany (a crash loses at most these, and reconcile finds them)."""
log = logging.getLogger(__name__)


@dataclass
class PublishReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unconfirmed: int = 0
    deferred: int = 0
    """Held back until the recipient's quiet hours end (ledger state ``deferred``)."""
    errors: list[str] = field(default_factory=list)

    def add(self, other: PublishReport) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.skipped += other.skipped
        self.unconfirmed += other.unconfirmed
        self.deferred += other.deferred
        self.errors.extend(other.errors)


@lru_cache(maxsize=32)
def _playbook(name: str, playbooks_dir: Path) -> Playbook:
    """The playbook as parsed once per version of its file: every message's context asks
    (fields, the stage's status and urgency), and parsing and validating the outage playbook
    again takes about 40 ms (measured on an idle core)."""
    return playbook_on_disk(name, playbooks_dir)


RatingLink = Callable[[int], str | None]
"""The recipient id → their signed satisfaction-rating link (``csat_url``), or None when
ratings are not configured (the playbook's fallback is used then)."""
Unsubscribe = Callable[[str | None], str]
"""A personal email channel's ``unsubscribe_link``: the recipient's unsubscribe token → their
link (``SendGridEmailChannel.unsubscribe_link``)."""


# -- sending one batch exactly once -----------------------------------------------------------


@dataclass(frozen=True)
class SendPolicy:
    max_attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 30.0
    rate_per_s: Mapping[str, float | None] = field(default_factory=dict)
    """Per channel overrides of ``channel.limits.rate_per_s`` (None: no limit)."""

    def bucket(self, channel: Channel) -> RateLimiter | None:
        rate = self.rate_per_s.get(channel.name, channel.limits.rate_per_s)
        return channel_bucket(channel.name, rate)


def _reconcile(channel: Channel, batch: OutboundBatch) -> bool | Exception | None:
    method = getattr(channel, "reconcile", None)
    if method is None:
        return None
    try:
        answer: bool | None = method(batch)
    except Exception as exc:  # the provider cannot be asked now: keep the row sending
        return exc
    return answer


def _with_parts(result: DeliveryResult, batch: OutboundBatch) -> DeliveryResult:
    """A failure carries the ids of every part published so far, those reconciliation found
    after the failing answer included (the ledger keeps them for the resend)."""
    if not batch.progress.ids:
        return result
    return dataclasses.replace(result, provider_id=batch.progress.joined)


class StillSending(Exception):
    """The provider may have the batch and could not be asked: leave the row ``sending``."""


def send_once(
    channel: Channel,
    batch: OutboundBatch,
    policy: SendPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> tuple[DeliveryResult, int]:
    """Send ``batch`` with retry (backoff with jitter, ``Retry-After`` honoured, the channel's
    rate limit); answers (result, requests made).

    An ambiguous failure (the provider may have accepted it) is followed by
    ``channel.reconcile(batch)`` before any resend: True → sent, None → unknown (no resend),
    False → resend. Raises :class:`StillSending` when the provider could not be asked.
    """
    bucket = policy.bucket(channel)
    attempt = 0
    while True:
        attempt += 1
        if bucket is not None:
            bucket.acquire()
        result = channel.send(batch)
        if result.outcome is not Outcome.retryable:
            return result, attempt
        if result.ambiguous:
            answer = _reconcile(channel, batch)
            if isinstance(answer, Exception):
                raise StillSending(f"{result.reason}; provider not asked: {answer}")
            if answer is True:
                return DeliveryResult.sent(batch.progress.joined or RECONCILED), attempt
            if answer is None:
                return _with_parts(DeliveryResult.unknown(
                    f"{result.reason}; the provider cannot confirm key {batch.key}: check "
                    "it, then crisiscomms retry --unconfirmed"), batch), attempt
        if attempt >= policy.max_attempts:
            return _with_parts(result, batch), attempt
        sleep(backoff_delay(attempt, result.retry_after_s, base_delay_s=policy.base_delay_s,
                            max_delay_s=policy.max_delay_s, rng=rng))


# -- building batches -------------------------------------------------------------------------


@dataclass(frozen=True)
class _MessageContext:
    message: RenderedMessage
    facts: FactSheet
    incident_status: str
    fields: tuple[tuple[str, str, str, str], ...]
    """(field, fallback, text tag, html tag) of each declared personal field."""
    reply_to: str | None
    time_tags: tuple[str, ...] = ()
    """Per-recipient time tags of the message (filled in each recipient's time zone)."""
    incident_id: int = 0
    urgent: bool = False
    """The stage is ``urgent``: a channel's quiet hours do not hold it back."""


@dataclass(frozen=True)
class _Row:
    id: int
    key: str
    channel: str
    message_id: int
    batch_no: int
    recipient_ids: str
    recipient_count: int
    provider_id: str | None = None
    released: bool = False
    """It waited out quiet hours (``deferred``, then released): it is sent now, never
    deferred twice."""


def _thread_root(session: Session, incident_id: int, channel: str,
                 locale: str) -> str | None:
    """The incident's first post on a ``threaded`` channel (X) in ``locale``: later updates in
    that language reply to it, keeping one thread per language."""
    first = session.execute(
        select(col(Delivery.provider_id))
        .where(col(Delivery.incident_id) == incident_id, col(Delivery.channel) == channel,
               col(Delivery.locale) == locale,
               col(Delivery.state) == DeliveryState.sent,
               col(Delivery.provider_id).is_not(None),
               col(Delivery.provider_id) != RECONCILED)
        .order_by(col(Delivery.id))
    ).scalars().first()
    ids = PartProgress.parse(first).ids  # a thread's row holds every part's id: the first
    return ids[0] if ids else None


def _threaded(channels: Mapping[str, Channel], name: str) -> bool:
    """Does channel ``name`` thread an incident's messages (``Channel.threaded``)?"""
    channel = channels.get(name)
    return channel is not None and channel.threaded


def personal_fields(playbook: Playbook, locale: str) -> tuple[tuple[str, str, str, str], ...]:
    """(field, fallback, text tag, html tag) of each personal field the playbook declares, with
    the fallback of ``locale``: what :func:`personalize` fills."""
    return tuple(
        (name, spec.fallback_for(locale, playbook.default_locale),
         substitution_tag(name, html=False), substitution_tag(name, html=True))
        for name, spec in playbook.recipient_fields.items()
    )


def _context(session: Session, message_id: int, playbooks_dir: Path, *,
             channels: Mapping[str, Channel]) -> _MessageContext:
    message = session.get(Message, message_id)
    assert message is not None
    incident = session.get(Incident, message.incident_id)
    assert incident is not None
    verify_approved(session, message)
    facts_row = session.execute(select(FactSheetVersion).where(
        col(FactSheetVersion.incident_id) == incident.id,
        col(FactSheetVersion.version) == message.facts_version)).scalars().one()
    playbook = _playbook(incident.playbook, playbooks_dir)
    fields = personal_fields(playbook, message.locale)
    parts = json.loads(message.parts_json)
    return _MessageContext(
        time_tags=time_tags(parts),
        message=RenderedMessage(
            playbook=incident.playbook, stage=message.stage, channel=message.channel,
            locale=message.locale, parts=parts,
            content_hash=message.content_hash),
        facts=facts_of(facts_row),
        incident_status=str(playbook.stage(message.stage).incident_status),
        fields=fields,
        reply_to=(_thread_root(session, message.incident_id, message.channel, message.locale)
                  if _threaded(channels, message.channel) else None),
        incident_id=int(message.incident_id),
        urgent=playbook.stage(message.stage).urgent,
    )


_RECIPIENT_COLUMNS = (col(Recipient.id), col(Recipient.email), col(Recipient.name),
                      col(Recipient.plan), col(Recipient.consent), col(Recipient.time_zone),
                      col(Recipient.product), col(Recipient.order_ref),
                      col(Recipient.unsubscribe_token))
UNSUBSCRIBE_TEXT_TAG = substitution_tag("unsubscribe_url", html=False)


RecipientRow = Sequence[Any]
"""A recipient as :func:`personalize` reads it: (id, email, name, plan, consent, time zone,
product, order ref, unsubscribe token), the columns of ``_RECIPIENT_COLUMNS``."""


def _columns(address: str) -> tuple[Any, ...]:
    """The recipient columns with the channel's ``address`` column in the email's place."""
    if address != PHONE:
        return _RECIPIENT_COLUMNS
    return (_RECIPIENT_COLUMNS[0], col(Recipient.phone), *_RECIPIENT_COLUMNS[2:])


def _recipients(conn: Connection, ids: Sequence[int],
                fields: tuple[tuple[str, str, str, str], ...], *, tags: tuple[str, ...] = (),
                locale: str = "en", unsubscribe: Unsubscribe | None = None,
                rating: RatingLink | None = None, address: str = "email",
                ) -> tuple[list[OutboundRecipient], int]:
    """The batch's recipients with their substitutions (:func:`personalize`), in batch order;
    and how many were skipped (deleted, or consent withdrawn since planning; for a channel
    addressed by ``phone``, also no number any more or a STOP since planning)."""
    if not ids:
        return [], 0
    lo, hi = min(ids), max(ids)
    columns = _columns(address)
    stmt = select(*columns).where(col(Recipient.id).between(lo, hi))
    if hi - lo + 1 > 4 * len(ids):  # a sparse batch: ask for the ids themselves
        stmt = select(*columns).where(col(Recipient.id).in_(list(ids)))
    if address != "email":
        stmt = stmt.where(addressable(address))
    out = personalize(conn.execute(stmt.order_by(col(Recipient.id))), fields, wanted=set(ids),
                      tags=tags, locale=locale, unsubscribe=unsubscribe, rating=rating)
    return out, len(ids) - len(out)


def personalize(rows: Iterable[RecipientRow], fields: tuple[tuple[str, str, str, str], ...],
                *, wanted: Container[int], tags: tuple[str, ...] = (), locale: str = "en",
                unsubscribe: Unsubscribe | None = None, rating: RatingLink | None = None,
                ) -> list[OutboundRecipient]:
    """Each wanted, consenting recipient of ``rows`` with the substitutions the provider fills
    in their message: the declared personal ``fields`` (or their fallback), the per-recipient
    times of ``tags`` in their zone. The one place personal values are made: publishing calls
    it for every batch, the dashboard's preview for its sample recipient, so what an approver
    sees is what a recipient gets.

    With ``unsubscribe`` (a personal email channel), every recipient's substitutions carry
    their own unsubscribe link under ``%unsubscribe_url%`` (the channel's List-Unsubscribe
    header), and the declared field ``unsubscribe_url`` is that link. With ``rating``, the
    declared field ``csat_url`` is the recipient's own signed rating link."""
    out: list[OutboundRecipient] = []
    append = out.append  # the hot loop: a million iterations per fan-out
    for rid, email, name, plan, consent, zone, product, order_ref, *token in rows:
        if rid not in wanted or not consent:
            continue
        subs: dict[str, str] = dict(time_values(tags, locale, zone)) if tags else {}
        link = ""
        if unsubscribe is not None:
            link = subs[UNSUBSCRIBE_TEXT_TAG] = unsubscribe(token[0] if token else None)
        for fname, fallback, text_tag, html_tag in fields:
            if fname == "first_name":
                value = name.split(None, 1)[0] if name and not name.isspace() else ""
            elif fname == "unsubscribe_url" and link:  # unique per recipient: not cached
                subs[text_tag] = link
                subs[html_tag] = escape(link, quote=True)
                continue
            elif fname == "csat_url" and rating is not None:  # unique per recipient
                value = rating(rid) or fallback
                subs[text_tag] = value
                subs[html_tag] = escape(value, quote=True)
                continue
            else:
                value = {"name": name, "email": email, "plan": plan, "product": product,
                         "order_ref": order_ref}.get(fname) or ""
            value = value or fallback
            subs[text_tag] = value
            subs[html_tag] = _escaped(value)
        append(OutboundRecipient(rid, email, subs, zone or "UTC"))
    return out


@lru_cache(maxsize=65536)
def _escaped(value: str) -> str:
    """HTML-escaped personal value (cached: first names repeat across a million recipients)."""
    return escape(value, quote=True)


def _outbound(session: Session, delivery: Delivery, playbooks_dir: Path,
              channels: Mapping[str, Channel]) -> OutboundBatch:
    """One ledger row as the channel sees it (kept for callers outside the hot path)."""
    ctx = _context(session, delivery.message_id, playbooks_dir, channels=channels)
    recipients, _ = _recipients(session.connection(), decode_ids(delivery.recipient_ids),
                                ctx.fields, tags=ctx.time_tags, locale=ctx.message.locale)
    return _batch(ctx, delivery.key, delivery.batch_no, recipients)


def _batch(ctx: _MessageContext, key: str, batch_no: int,
           recipients: Sequence[OutboundRecipient],
           progress: PartProgress | None = None) -> OutboundBatch:
    return OutboundBatch(key=key, batch_no=batch_no, facts=ctx.facts,
                         incident_status=ctx.incident_status, message=ctx.message,
                         recipients=recipients, reply_to=ctx.reply_to,
                         progress=progress or PartProgress())


def _saver(engine: Engine, delivery_id: int) -> SaveProgress:
    """Records a row's part ids as the channel reports them. A failure to record is logged,
    not raised: the part is published, and reconciliation finds it at the provider."""
    def save(ids: Sequence[str]) -> None:
        try:
            with Session(engine) as session:
                save_progress(session, delivery_id, ids)
        except SQLAlchemyError as exc:
            log.warning("delivery %s: part ids %s not recorded (%s); reconciliation will "
                        "look them up", delivery_id, ",".join(ids), type(exc).__name__)
    return save


def _split_oversized(engine: Engine, channel: Channel, row: _Row,
                     recipients: list[OutboundRecipient],
                     ) -> tuple[list[OutboundRecipient], list[str]]:
    """The recipients the provider would accept, and the reasons of those it would refuse
    (``Channel.recipient_problems``), which are split out of the row in the ledger first
    (each failed on a row of its own); every recipient refused: nothing is split, the caller
    fails the row itself."""
    refused: dict[int, str] = {}
    for r in recipients:
        problems = channel.recipient_problems(r)
        if problems:
            refused[r.id] = (f"recipient {r.id} ({r.address}) left out of {row.channel} batch "
                             f"{row.batch_no}: {'; '.join(problems)}")
    if not refused:
        return recipients, []
    kept = [r for r in recipients if r.id not in refused]
    if kept:
        with Session(engine) as session:
            split = split_out(session, row.id, refused)
        if len(split) != len(refused):  # no longer ours to send (another sender settled it)
            raise StillSending(f"{row.channel} batch {row.batch_no} is no longer sending")
    return kept, list(refused.values())


# -- publishing claimed rows -------------------------------------------------------------------

@dataclass(frozen=True)
class _Outcome:
    row: _Row
    result: DeliveryResult | None
    """None: leave the row ``sending`` (the provider could not be asked)."""
    attempts: int
    skipped: int = 0
    """Recipients no longer to be sent to (deleted, consent withdrawn since planning)."""
    note: str | None = None
    excluded: tuple[str, ...] = ()
    """The reasons of the recipients split out of the row (failed on rows of their own)."""


def rating_for(channel: Channel, fields: tuple[tuple[str, str, str, str], ...],
               incident_id: int, message_id: int) -> RatingLink | None:
    """The channel's rating links for this message, when its playbook declares ``csat_url``
    and the channel makes them (``SendGridEmailChannel.rating_link``)."""
    make = getattr(channel, "rating_link", None) if channel.personal else None
    if make is None or not any(f[0] == "csat_url" for f in fields):
        return None

    def link(recipient_id: int) -> str | None:
        value = make(incident_id, recipient_id, message_id)
        return value if isinstance(value, str) else None
    return link


def unsubscribe_for(channel: Channel) -> Unsubscribe | None:
    """A personal channel's ``unsubscribe_link`` (None for a public channel)."""
    found = getattr(channel, "unsubscribe_link", None) if channel.personal else None
    return found if callable(found) else None


def quiet_until(channel: Channel, recipients: Sequence[OutboundRecipient], *, urgent: bool,
                now: datetime | None = None) -> DeliveryResult | None:
    """A deferral when the channel keeps quiet hours (``quiet_hours``: the SMS channel), the
    stage is not urgent and it is night where a recipient of the batch lives: the row waits
    until the latest of their windows ends. None: send now."""
    quiet = getattr(channel, "quiet_hours", None)
    if quiet is None or urgent or not recipients:
        return None
    moment = now or utcnow()
    ends = [(end, r) for r in recipients
            if (end := quiet.ends_after(moment, r.time_zone)) is not None]
    if not ends:
        return None
    end, who = max(ends, key=lambda pair: pair[0])
    return DeliveryResult.defer(
        f"quiet hours {quiet} where recipient {who.id} lives ({who.time_zone}): deferred "
        f"until {end:%Y-%m-%d %H:%M} UTC", end)


def _publish_row(engine: Engine, channels: Mapping[str, Channel], row: _Row,
                 ctx: _MessageContext | CrisisCommsError, policy: SendPolicy) -> _Outcome:
    if isinstance(ctx, CrisisCommsError):
        return _Outcome(row, DeliveryResult.permanent(str(ctx)), 1)
    channel = channels.get(row.channel)
    if channel is None:
        return _Outcome(row, DeliveryResult.permanent(f"channel {row.channel} is not "
                                                      "configured"), 1)
    skipped = 0
    recipients: list[OutboundRecipient] = []
    ids = decode_ids(row.recipient_ids)
    if ids:
        with engine.connect() as conn:
            recipients, skipped = _recipients(
                conn, ids, ctx.fields, tags=ctx.time_tags, locale=ctx.message.locale,
                unsubscribe=unsubscribe_for(channel),
                rating=rating_for(channel, ctx.fields, ctx.incident_id, row.message_id),
                address=getattr(channel, "address", "email"))
    excluded: list[str] = []
    if recipients:
        try:
            recipients, excluded = _split_oversized(engine, channel, row, recipients)
        except StillSending as exc:
            return _Outcome(row, None, 0, skipped, str(exc))
        if not recipients:  # every one refused (a row split out before, retried): fail it
            return _Outcome(row, DeliveryResult.permanent("; ".join(excluded)), 1, skipped)
    if channel.personal and not recipients:
        return _Outcome(row, DeliveryResult.sent(None), 1, skipped)
    wait = quiet_until(channel, recipients, urgent=ctx.urgent or row.released)
    if wait is not None:
        return _Outcome(row, wait, 0, skipped)
    progress = PartProgress.parse(row.provider_id, _saver(engine, row.id))
    batch = _batch(ctx, row.key, row.batch_no, recipients, progress)
    try:
        result, attempts = send_once(channel, batch, policy)
    except StillSending as exc:
        return _Outcome(row, None, policy.max_attempts, skipped, str(exc), tuple(excluded))
    except ValueError as exc:  # a batch the provider can never accept
        return _Outcome(row, DeliveryResult.permanent(str(exc)), 1, skipped,
                        excluded=tuple(excluded))
    return _Outcome(row, result, attempts, skipped, excluded=tuple(excluded))


def publish_deliveries(
    engine: Engine,
    channels: Mapping[str, Channel],
    delivery_ids: Sequence[int],
    *,
    playbooks_dir: Path,
    max_attempts: int,
    concurrency: int = 4,
    policy: SendPolicy | None = None,
) -> PublishReport:
    """Claim the given planned rows and publish them, ``concurrency`` requests in flight,
    recording results in bulk."""
    report = PublishReport()
    policy = policy or SendPolicy(max_attempts=max_attempts)
    with Session(engine, expire_on_commit=False) as session:
        claimed = claim(session, delivery_ids)
        report.skipped = len(delivery_ids) - len(claimed)
        if not claimed:
            return report
        rows = [_Row(int(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), str(r[5]), int(r[6]),
                     r[7], r[8] is not None)
                for r in session.execute(
                    select(col(Delivery.id), col(Delivery.key), col(Delivery.channel),
                           col(Delivery.message_id), col(Delivery.batch_no),
                           col(Delivery.recipient_ids), col(Delivery.recipient_count),
                           col(Delivery.provider_id), col(Delivery.not_before))
                    .where(col(Delivery.id).in_(claimed)).order_by(col(Delivery.id)))]
        contexts: dict[int, _MessageContext | CrisisCommsError] = {}
        for row in rows:
            if row.message_id not in contexts:
                try:
                    contexts[row.message_id] = _context(session, row.message_id, playbooks_dir,
                                                        channels=channels)
                except CrisisCommsError as exc:
                    contexts[row.message_id] = exc
        session.commit()  # end the read transaction before the long sends

        pending: list[tuple[int, DeliveryResult, int]] = []

        def absorb(outcome: _Outcome) -> None:
            row, result = outcome.row, outcome.result
            report.skipped += outcome.skipped
            report.failed += len(outcome.excluded)  # recorded already, each on its own row
            report.errors.extend(outcome.excluded)
            if result is None:
                report.errors.append(f"{row.channel} batch {row.batch_no}: still sending "
                                     f"({outcome.note}); crisiscomms resume reconciles it")
                return
            pending.append((row.id, result, outcome.attempts))
            counted = row.recipient_count - outcome.skipped - len(outcome.excluded)
            if result.outcome is Outcome.sent:
                report.sent += counted
            elif result.outcome is Outcome.deferred:
                report.deferred += counted
            elif result.outcome is Outcome.unknown:
                report.unconfirmed += counted
                report.errors.append(f"{row.channel} batch {row.batch_no}: {result.reason}")
            else:
                report.failed += counted
                report.errors.append(f"{row.channel} batch {row.batch_no}: {result.reason}")
            if len(pending) >= RECORD_EVERY:
                record_many(session, pending)
                pending.clear()

        workers = max(1, min(concurrency, len(rows)))
        if workers == 1:
            for row in rows:
                absorb(_publish_row(engine, channels, row, contexts[row.message_id], policy))
        else:
            with ThreadPoolExecutor(max_workers=workers,
                                    thread_name_prefix="crisiscomms-send") as pool:
                for outcome in _bounded(pool, rows, workers, lambda row: _publish_row(
                        engine, channels, row, contexts[row.message_id], policy)):
                    absorb(outcome)
        record_many(session, pending)
    return report


def _bounded(pool: ThreadPoolExecutor, rows: Sequence[_Row], in_flight: int,
             fn: Callable[[_Row], _Outcome]) -> Iterator[_Outcome]:
    """Run ``fn`` over ``rows`` with at most ``in_flight`` queued or running (bounded memory)."""
    it = iter(rows)
    running: set[Future[_Outcome]] = set()
    for row in it:
        running.add(pool.submit(fn, row))
        if len(running) >= in_flight:
            break
    while running:
        done, running = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            yield future.result()
            nxt = next(it, None)
            if nxt is not None:
                running.add(pool.submit(fn, nxt))


# -- reconciliation of rows left sending ---------------------------------------------------------


@dataclass
class ReconcileReport:
    confirmed: int = 0
    """Rows the provider had: now ``sent`` (nothing resent)."""
    requeued: int = 0
    """Rows the provider did not have: ``planned`` again, sent by the next publish."""
    unconfirmed: int = 0
    """Rows the provider cannot confirm either way: ``unconfirmed``, for a human."""
    still_sending: int = 0
    """Rows the provider could not be asked about now (left ``sending``)."""
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"confirmed": self.confirmed, "requeued": self.requeued,
                "unconfirmed": self.unconfirmed, "still_sending": self.still_sending,
                "errors": list(self.errors)}


def reconcile_sending(
    engine: Engine,
    channels: Mapping[str, Channel],
    *,
    playbooks_dir: Path,
    incident_id: int | None = None,
    message_ids: Sequence[int] | None = None,
    stale_after_s: float = 0.0,
) -> ReconcileReport:
    """Ask the provider about every row left ``sending`` for longer than ``stale_after_s``.

    ``stale_after_s`` is the lease: a row claimed more recently may belong to a sender that is
    still alive (give it longer than max attempts × (timeout + max backoff)); 0 when the caller
    knows the sender is dead (``crisiscomms resume`` after a crash).
    """
    report = ReconcileReport()
    older_than = utcnow() - timedelta(seconds=stale_after_s) if stale_after_s > 0 else None
    with Session(engine, expire_on_commit=False) as session:
        ids = sending_rows(session, incident_id=incident_id, message_ids=message_ids,
                           older_than=older_than)
        contexts: dict[int, _MessageContext | CrisisCommsError] = {}
        for did in ids:
            delivery = session.get(Delivery, did)
            if delivery is None:
                continue
            ctx = contexts.get(delivery.message_id)
            if ctx is None:
                try:
                    ctx = _context(session, delivery.message_id, playbooks_dir,
                                   channels=channels)
                except CrisisCommsError as exc:
                    ctx = exc
                contexts[delivery.message_id] = ctx
            channel = channels.get(delivery.channel)
            where = f"{delivery.channel} batch {delivery.batch_no}"
            if isinstance(ctx, CrisisCommsError) or channel is None:
                report.still_sending += 1
                report.errors.append(f"{where}: cannot reconcile: "
                                     f"{ctx if channel is not None else 'channel not configured'}")
                continue
            progress = PartProgress.parse(delivery.provider_id, _saver(engine, did))
            answer = _reconcile(channel, _batch(ctx, delivery.key, delivery.batch_no, (),
                                                progress))
            if isinstance(answer, Exception):
                report.still_sending += 1
                report.errors.append(f"{where}: provider not reachable: {answer}")
            elif answer is True:
                report.confirmed += settle_sending(session, did, DeliveryState.sent,
                                                   provider_id=progress.joined or RECONCILED)
            elif answer is False:
                report.requeued += settle_sending(session, did, DeliveryState.planned)
            else:
                report.unconfirmed += settle_sending(
                    session, did, DeliveryState.unconfirmed,
                    error=f"left sending by a crash; {delivery.channel} cannot confirm key "
                          f"{delivery.key}: check it, then crisiscomms retry --unconfirmed")
    return report
