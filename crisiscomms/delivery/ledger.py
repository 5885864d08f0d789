"""The delivery ledger (outbox): plan deliveries, claim batches, record results, count.

Grain: one row per (message, channel, batch). Email batches are a deterministic partition of the
consenting recipients (ordered by id, grouped by resolved locale, ``batch_size`` per row); every
other channel has one row per message. Keys are deterministic, so planning the same stage twice
adds nothing, and a row moves planned → sending → sent | failed exactly once.

Crash safety: a row is ``sending`` (committed) before its request leaves, ``sent``/``failed``
after. Rows found ``sending`` later (the sender died) are reconciled against the provider
(``publishing.reconcile_sending``) before anything is resent: accepted → ``sent``, not
accepted → ``planned`` again, provider cannot tell → ``unconfirmed`` (a human decides).
Claims: ``SELECT … FOR UPDATE SKIP LOCKED`` inside the UPDATE on PostgreSQL, a single
``UPDATE … WHERE state = 'planned' RETURNING`` on SQLite (which serialises writers anyway).

Exceptions: a recipient the provider would refuse (SendGrid: substitutions over 10,000 bytes)
is split out of its batch before the request (``split_out``): a row of its own, ``failed`` with
the provider's reason under a key derived from the batch's (``exception_key``), and the batch
row keeps the others. Multi-part messages (an X thread) record each part's provider id in
``provider_id`` as it succeeds (``save_progress``), so a resend continues the thread.
``confirm_by_key`` is how a provider's later word settles a row: the seam the SendGrid Event
Webhook receiver calls with the ``crisiscomms_key`` of our ``custom_args``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Executable,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from crisiscomms.audience.models import Recipient
from crisiscomms.core.clock import utcnow
from crisiscomms.core.locales import resolve_locale
from crisiscomms.delivery.contract import CUSTOMER_LIST, DeliveryResult, Outcome
from crisiscomms.delivery.models import Delivery, DeliveryState
from crisiscomms.incident.models import Incident, Message

PLAN_CHUNK_ROWS = 2000
"""Rows per bulk INSERT statement."""


def delivery_key(
    incident_ref: str, stage: str, facts_hash: str, channel: str, locale: str, batch_no: int,
    recipient_ids: str,
) -> str:
    """Deterministic idempotency key of one ledger row (sent to the provider with the batch)."""
    material = "\x1f".join(
        [incident_ref, stage, facts_hash, channel, locale, str(batch_no), recipient_ids]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:40]


def exception_key(batch_key: str, recipient_id: int) -> str:
    """Deterministic key of the row of one recipient split out of the batch ``batch_key``."""
    material = "\x1f".join([batch_key, "recipient", str(recipient_id)])
    return hashlib.sha256(material.encode()).hexdigest()[:40]


def encode_ids(ids: Sequence[int]) -> str:
    return ",".join(map(str, ids))


def decode_ids(text: str) -> list[int]:
    return [int(x) for x in text.split(",")] if text else []


@dataclass
class PlanResult:
    new_rows: int = 0
    recipients: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    """Recipients without consent (unsubscribed, suppressed): skipped, counted, never planned."""


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt: Executable
    if dialect == "sqlite":
        stmt = sqlite.insert(Delivery).on_conflict_do_nothing(index_elements=["key"])
    elif dialect == "postgresql":
        stmt = postgresql.insert(Delivery).on_conflict_do_nothing(index_elements=["key"])
    else:  # pragma: no cover - other backends: plain insert, the unique key still guards
        stmt = insert(Delivery)
    session.execute(stmt, rows)




def _on_list(name: str) -> Any:
    return (literal(",") + func.coalesce(col(Recipient.lists), "") + literal(",")).contains(
        f",{name},")


def _follows_components(components: Sequence[str]) -> Any:
    """Status page subscribers: those who follow no particular component (everything), or at
    least one of ``components`` (``Recipient.components``, comma-separated)."""
    padded = literal(",") + func.coalesce(col(Recipient.components), "") + literal(",")
    return or_(col(Recipient.components).is_(None), col(Recipient.components) == "",
               *(padded.contains(f",{name},") for name in components))


PHONE = "phone"
"""A channel's ``address`` naming the recipient's mobile number (SMS) instead of the email."""


def addressable(address: str) -> Any:
    """Recipients a channel addressed by ``address`` can reach: any (email, the required
    column), or, for ``phone``, those with a number that has not replied STOP."""
    if address == PHONE:
        return and_(col(Recipient.phone).is_not(None), col(Recipient.sms_opted_out_at).is_(None))
    return literal(True)


def stream_audience(session: Session, *, chunk: int = 10_000,
                    recipients: str = CUSTOMER_LIST,
                    components: Sequence[str] | None = None,
                    address: str = "email") -> Iterator[tuple[int, str]]:
    """(id, locale) of every consenting recipient of the list ``recipients`` (a channel's
    ``recipients``: the customer list, recipients on no list or on ``customers``; else those
    whose ``Recipient.lists`` name it), ordered by id, streamed in chunks. With ``components``
    (the incident's), only recipients who follow one of them or follow everything."""
    audience = (or_(col(Recipient.lists).is_(None), _on_list(CUSTOMER_LIST))
                if recipients == CUSTOMER_LIST else _on_list(recipients))
    if components:
        audience = and_(audience, _follows_components(components))
    if address != "email":
        audience = and_(audience, addressable(address))
    last_id = 0
    while True:
        rows = session.execute(
            select(col(Recipient.id), col(Recipient.locale))
            .where(col(Recipient.consent).is_(True), col(Recipient.id) > last_id, audience)
            .order_by(col(Recipient.id))
            .limit(chunk)
        ).all()
        if not rows:
            return
        for rid, locale in rows:
            yield int(rid), str(locale)
        last_id = int(rows[-1][0])


def plan_messages(
    session: Session,
    *,
    incident_ref: str,
    facts_hash: str,
    messages: Sequence[Message],
    audiences: Mapping[str, str],
    locales: Sequence[str],
    default_locale: str,
    batch_size: int,
    components: Sequence[str] | None = None,
    batch_sizes: Mapping[str, int] | None = None,
    addresses: Mapping[str, str] | None = None,
) -> PlanResult:
    """Write the ledger rows for ``messages`` in bulk; messages already planned add nothing.
    ``audiences``: the recipient list of each channel that addresses recipients (its
    ``recipients``); a channel not in it is a broadcast, one row per message.
    ``components``: the incident's, so addressed channels reach those who follow them.
    ``batch_sizes``: recipients per row of a channel when not ``batch_size`` (SMS: one, a
    Twilio request carries one ``To``); ``addresses``: the recipient column a channel
    addresses when not ``email`` (``phone``: only recipients with a number and no STOP)."""
    result = PlanResult()
    personal = set(audiences)
    already = set(
        session.execute(
            select(col(Delivery.message_id))
            .where(col(Delivery.message_id).in_([m.id for m in messages]))
            .distinct()
        ).scalars()
    )
    to_plan = [m for m in messages if m.id not in already]
    rows: list[dict[str, object]] = []

    def add(message: Message, batch_no: int, ids: Sequence[int]) -> None:
        encoded = encode_ids(ids)
        rows.append({
            "key": delivery_key(incident_ref, message.stage, facts_hash, message.channel,
                                message.locale, batch_no, encoded),
            "incident_id": message.incident_id,
            "message_id": message.id,
            "channel": message.channel,
            "locale": message.locale,
            "batch_no": batch_no,
            "recipient_ids": encoded,
            "recipient_count": max(len(ids), 1) if message.channel not in personal else len(ids),
            "state": DeliveryState.planned,
            "attempts": 0,
            "created_at": utcnow(),
            "updated_at": utcnow(),
        })
        if len(rows) >= PLAN_CHUNK_ROWS:
            _insert_ignoring_duplicates(session, rows)
            result.new_rows += len(rows)
            rows.clear()

    public = [m for m in to_plan if m.channel not in personal]
    for message in public:
        add(message, 0, [])
    by_channel_locale: dict[tuple[str, str], Message] = {
        (m.channel, m.locale): m for m in to_plan if m.channel in personal
    }
    for channel in sorted({c for c, _ in by_channel_locale}):
        pending: dict[str, list[int]] = defaultdict(list)
        batch_no: dict[str, int] = defaultdict(int)
        count = 0
        resolved: dict[str, str] = {}
        size = (batch_sizes or {}).get(channel, batch_size)
        for rid, requested in stream_audience(session, recipients=audiences[channel],
                                              components=components,
                                              address=(addresses or {}).get(channel, "email")):
            locale = resolved.get(requested)
            if locale is None:
                locale = resolved[requested] = resolve_locale(requested, locales, default_locale)
            target = by_channel_locale.get((channel, locale))
            if target is None:
                continue
            bucket = pending[locale]
            bucket.append(rid)
            count += 1
            if len(bucket) >= size:
                add(target, batch_no[locale], bucket)
                batch_no[locale] += 1
                bucket.clear()
        for locale, bucket in pending.items():
            if bucket:
                add(by_channel_locale[(channel, locale)], batch_no[locale], bucket)
        result.recipients[channel] = count
    _insert_ignoring_duplicates(session, rows)
    result.new_rows += len(rows)
    if by_channel_locale:
        result.suppressed = suppressed_count(session)
    return result


def suppressed_count(session: Session) -> int:
    """Recipients that must not be mailed (consent withdrawn, unsubscribed, suppressed)."""
    return int(session.execute(
        select(func.count()).select_from(Recipient).where(col(Recipient.consent).is_(False))
    ).scalar_one())


def claim(session: Session, delivery_ids: Sequence[int]) -> list[int]:
    """Move planned rows to ``sending`` (attempts + 1) and commit; returns the ids claimed.

    PostgreSQL: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)``, so concurrent
    claimers on several workers never wait on each other nor claim the same row. SQLite: one
    ``UPDATE … WHERE state = 'planned' RETURNING id`` (SQLite serialises writers).
    """
    if not delivery_ids:
        return []
    ids = list(delivery_ids)
    condition = [col(Delivery.id).in_(ids), col(Delivery.state) == DeliveryState.planned]
    if session.get_bind().dialect.name == "postgresql":
        lockable = (select(col(Delivery.id)).where(*condition).order_by(col(Delivery.id))
                    .with_for_update(skip_locked=True))
        condition = [col(Delivery.id).in_(lockable.scalar_subquery())]
    stmt = (
        update(Delivery)
        .where(*condition)
        .values(state=DeliveryState.sending, attempts=Delivery.attempts + 1, updated_at=utcnow())
        .returning(col(Delivery.id))
    )
    claimed = sorted(int(i) for i in session.execute(stmt).scalars())
    session.commit()
    return claimed


def _result_values(result: DeliveryResult, attempts: int) -> dict[str, object]:
    if result.outcome is Outcome.sent:
        state, error = DeliveryState.sent, None
    elif result.outcome is Outcome.unknown:
        state, error = DeliveryState.unconfirmed, result.reason or "unconfirmed"
    elif result.outcome is Outcome.deferred:
        state, error = DeliveryState.deferred, result.reason or "deferred"
    else:
        state, error = DeliveryState.failed, result.reason or str(result.outcome)
    return {"b_state": state, "b_provider_id": result.provider_id, "b_error": error,
            "b_fill": state is DeliveryState.sent and result.provider_id is not None,
            "b_extra": max(attempts - 1, 0), "b_now": utcnow(),
            "b_not_before": result.not_before if result.outcome is Outcome.deferred else None}


_RECORD = (
    update(Delivery)
    .where(col(Delivery.id) == bindparam("b_id"),
           or_(col(Delivery.state) == DeliveryState.sending,
               # the provider's own word (``confirm_by_key``: SendGrid's ``processed`` event)
               # settled the row while our request was still open: this answer is that same
               # send, and only its message id is still missing
               and_(bindparam("b_fill", type_=Boolean),
                    col(Delivery.state) == DeliveryState.sent,
                    col(Delivery.provider_id).is_(None))))
    .values(state=bindparam("b_state"),
            # a failure without an id keeps the ids of the parts that did go out (a thread)
            provider_id=func.coalesce(bindparam("b_provider_id"), col(Delivery.provider_id)),
            error=bindparam("b_error"), attempts=Delivery.attempts + bindparam("b_extra"),
            not_before=bindparam("b_not_before"), updated_at=bindparam("b_now"))
)


def release_deferred(session: Session, *, now: datetime | None = None,
                     incident_id: int | None = None) -> list[int]:
    """Every ``deferred`` row whose ``not_before`` has come (of one incident, or all) becomes
    ``planned`` again, its reason and ``not_before`` kept until it is sent (the sender sends a
    released row without asking about quiet hours again: a row is deferred once); commits and
    returns their ids (the caller publishes them: ``crisiscomms sms release``, the drill, which
    passes the latest ``not_before`` as ``now`` to compress time)."""
    moment = now or utcnow()
    stmt = (update(Delivery)
            .where(col(Delivery.state) == DeliveryState.deferred,
                   col(Delivery.not_before) <= moment)
            .values(state=DeliveryState.planned, updated_at=utcnow())
            .returning(col(Delivery.id)))
    if incident_id is not None:
        stmt = stmt.where(col(Delivery.incident_id) == incident_id)
    ids = [int(i) for i in session.execute(stmt).scalars()]
    session.commit()
    return sorted(ids)


def record_many(session: Session, outcomes: Sequence[tuple[int, DeliveryResult, int]]) -> None:
    """Record the outcomes of claimed rows in one executemany (sending → sent | failed |
    unconfirmed) and commit. ``attempts`` counts the requests made for the row this time."""
    if not outcomes:
        return
    params = [{"b_id": did, **_result_values(result, attempts)}
              for did, result, attempts in outcomes]
    session.connection().execute(_RECORD, params)
    session.commit()


def record(session: Session, delivery_id: int, result: DeliveryResult, attempts: int) -> None:
    """Record the outcome of one claimed row (sending → sent | failed | unconfirmed)."""
    record_many(session, [(delivery_id, result, attempts)])


def sending_rows(
    session: Session,
    *,
    incident_id: int | None = None,
    message_ids: Sequence[int] | None = None,
    older_than: datetime | None = None,
) -> list[int]:
    """Ids of rows left ``sending`` (a sender died, or is still at work: see ``older_than``)."""
    stmt = select(col(Delivery.id)).where(col(Delivery.state) == DeliveryState.sending)
    if incident_id is not None:
        stmt = stmt.where(col(Delivery.incident_id) == incident_id)
    if message_ids is not None:
        stmt = stmt.where(col(Delivery.message_id).in_(list(message_ids)))
    if older_than is not None:
        stmt = stmt.where(col(Delivery.updated_at) < older_than)
    return [int(i) for i in session.execute(stmt.order_by(col(Delivery.id))).scalars()]


def settle_sending(session: Session, delivery_id: int, state: DeliveryState,
                   *, provider_id: str | None = None, error: str | None = None) -> bool:
    """Move one ``sending`` row after reconciliation; False when it was no longer sending.
    Without ``provider_id`` the row keeps the one it has (the parts of a thread found so far)."""
    done = session.execute(
        update(Delivery)
        .where(col(Delivery.id) == delivery_id, col(Delivery.state) == DeliveryState.sending)
        .values(state=state, error=error, updated_at=utcnow(),
                provider_id=func.coalesce(provider_id, col(Delivery.provider_id)))
        .returning(col(Delivery.id))
    ).first()
    session.commit()
    return done is not None


def save_progress(session: Session, delivery_id: int, provider_ids: Sequence[str]) -> bool:
    """Record the provider ids of the parts of a ``sending`` row published so far (an X
    thread: one id per post, in order) and commit; False when the row is no longer sending."""
    done = session.execute(
        update(Delivery)
        .where(col(Delivery.id) == delivery_id, col(Delivery.state) == DeliveryState.sending)
        .values(provider_id=",".join(provider_ids) or None, updated_at=utcnow())
        .returning(col(Delivery.id))
    ).first()
    session.commit()
    return done is not None


def split_out(session: Session, delivery_id: int,
              excluded: Mapping[int, str]) -> list[int]:
    """Take the recipients ``excluded`` (id → the provider's reason) out of a claimed
    (``sending``) batch row before its request: each gets a row of its own, ``failed`` with its
    reason, under :func:`exception_key`; the batch row keeps the others (same key). Commits
    before the request leaves, so a crash cannot count them as sent. Returns the recipient ids
    split out (none when the row is no longer sending)."""
    row = session.execute(
        select(col(Delivery.key), col(Delivery.incident_id), col(Delivery.message_id),
               col(Delivery.channel), col(Delivery.locale), col(Delivery.batch_no),
               col(Delivery.recipient_ids))
        .where(col(Delivery.id) == delivery_id, col(Delivery.state) == DeliveryState.sending)
    ).first()
    if row is None:
        return []
    key, incident_id, message_id, channel, locale, batch_no, encoded = row
    ids = decode_ids(str(encoded))
    out = [rid for rid in ids if rid in excluded]
    if not out:
        return []
    keep = [rid for rid in ids if rid not in excluded]
    now = utcnow()
    _insert_ignoring_duplicates(session, [{
        "key": exception_key(str(key), rid), "incident_id": incident_id,
        "message_id": message_id, "channel": channel, "locale": locale, "batch_no": batch_no,
        "recipient_ids": str(rid), "recipient_count": 1, "state": DeliveryState.failed,
        "attempts": 1, "error": excluded[rid], "created_at": now, "updated_at": now,
    } for rid in out])
    session.execute(
        update(Delivery)
        .where(col(Delivery.id) == delivery_id, col(Delivery.state) == DeliveryState.sending)
        .values(recipient_ids=encode_ids(keep), recipient_count=len(keep), updated_at=now))
    session.commit()
    return out


CONFIRMABLE = (DeliveryState.sending, DeliveryState.unconfirmed)
"""States a provider's later confirmation settles (``failed`` is ours to retry, and a
``planned`` row has not been sent)."""


def confirm_by_key(session: Session, key: str, *, provider_id: str | None = None) -> bool:
    """The provider confirms it accepted the row of idempotency key ``key``: an
    ``unconfirmed`` (or still ``sending``) row becomes ``sent`` and leaves the failure list;
    commits. True when a row moved; False for an unknown key or a row already settled (a
    provider repeats events: confirming twice is harmless).

    This is the seam for providers that cannot be asked synchronously. Real SendGrid cannot
    answer "did you accept this request" (``SendGridEmailChannel.reconcile`` says None, so a
    row a crash left ``sending`` becomes ``unconfirmed`` for a human); its Event Webhook
    ``processed`` events carry our ``custom_args`` back, and the receiver (the listening
    issue) calls this with their ``crisiscomms_key`` once the ECDSA signature is verified."""
    done = session.execute(
        update(Delivery)
        .where(col(Delivery.key) == key, col(Delivery.state).in_(list(CONFIRMABLE)))
        .values(state=DeliveryState.sent, error=None, updated_at=utcnow(),
                provider_id=func.coalesce(provider_id, col(Delivery.provider_id)))
        .returning(col(Delivery.id))
    ).first()
    session.commit()
    return done is not None


def requeue(
    session: Session,
    incident_id: int,
    *,
    channel: str | None = None,
    states: Sequence[DeliveryState] = (DeliveryState.failed,),
) -> int:
    """Put failed (and, when asked, unconfirmed) rows back to ``planned``; returns recipients.

    Same row, same idempotency key: the provider sees the same batch again.
    """
    stmt = (
        update(Delivery)
        .where(col(Delivery.incident_id) == incident_id, col(Delivery.state).in_(list(states)))
        .values(state=DeliveryState.planned, error=None, updated_at=utcnow())
        .returning(col(Delivery.recipient_count))
    )
    if channel is not None:
        stmt = stmt.where(col(Delivery.channel) == channel)
    total = sum(int(n) for n in session.execute(stmt).scalars())
    session.commit()
    return total


@dataclass(frozen=True)
class FailureRow:
    id: int
    incident_id: int
    incident_ref: str
    channel: str
    locale: str
    batch_no: int
    recipients: int
    state: str
    """``failed`` (retry re-sends it) or ``unconfirmed`` (check the provider first)."""
    attempts: int
    error: str | None
    updated_at: datetime

    @property
    def reason(self) -> str:
        """The provider's answer (or ours), for people."""
        return self.error or ""


def failures(session: Session, incident_id: int | None = None, *,
             limit: int = 500) -> list[FailureRow]:
    """Failed and unconfirmed rows with the provider's reason, newest first."""
    stmt = select(
        col(Delivery.id), col(Delivery.incident_id), col(Incident.ref), col(Delivery.channel),
        col(Delivery.locale), col(Delivery.batch_no), col(Delivery.recipient_count),
        col(Delivery.state), col(Delivery.attempts), col(Delivery.error),
        col(Delivery.updated_at),
    ).join(Incident, col(Incident.id) == col(Delivery.incident_id)).where(
        col(Delivery.state).in_([DeliveryState.failed, DeliveryState.unconfirmed]))
    if incident_id is not None:
        stmt = stmt.where(col(Delivery.incident_id) == incident_id)
    rows = session.execute(stmt.order_by(col(Delivery.id).desc()).limit(limit)).all()
    return [FailureRow(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5]),
                       int(r[6]), DeliveryState(r[7]).value, int(r[8]), r[9], r[10])
            for r in rows]


def _planned_by_channel(session: Session, scope: Any) -> dict[str, list[int]]:
    """Planned rows matching ``scope`` (a WHERE clause), by channel, in id (batch) order."""
    rows = session.execute(
        select(col(Delivery.channel), col(Delivery.id))
        .where(scope, col(Delivery.state) == DeliveryState.planned)
        .order_by(col(Delivery.id))
    ).all()
    out: dict[str, list[int]] = defaultdict(list)
    for channel, did in rows:
        out[str(channel)].append(int(did))
    return dict(out)


def pending_by_channel(session: Session, incident_id: int) -> dict[str, list[int]]:
    """Planned rows of an incident (every stage), by channel, in id order."""
    return _planned_by_channel(session, col(Delivery.incident_id) == incident_id)


def pending_ids(session: Session, message_ids: Sequence[int]) -> dict[str, list[int]]:
    """Planned rows of the given messages, by channel, in batch order."""
    return _planned_by_channel(session, col(Delivery.message_id).in_(list(message_ids)))


ChannelCounts = dict[str, dict[str, int]]


def channel_counts(session: Session, incident_id: int | None = None) -> ChannelCounts:
    """Recipients per channel and state, computed in SQL (GROUP BY), never by loading rows."""
    stmt = select(
        col(Delivery.channel), col(Delivery.state), func.sum(col(Delivery.recipient_count))
    ).group_by(col(Delivery.channel), col(Delivery.state))
    if incident_id is not None:
        stmt = stmt.where(col(Delivery.incident_id) == incident_id)
    counts: ChannelCounts = {}
    for channel, state, total in session.execute(stmt).all():
        bucket = counts.setdefault(str(channel), {s.value: 0 for s in DeliveryState})
        bucket[DeliveryState(state).value] = int(total or 0)
    return counts


def counts_by_incident(session: Session) -> Mapping[int, ChannelCounts]:
    stmt = select(
        col(Delivery.incident_id), col(Delivery.channel), col(Delivery.state),
        func.sum(col(Delivery.recipient_count)),
    ).group_by(col(Delivery.incident_id), col(Delivery.channel), col(Delivery.state))
    out: dict[int, ChannelCounts] = {}
    for incident_id, channel, state, total in session.execute(stmt).all():
        per = out.setdefault(int(incident_id), {})
        bucket = per.setdefault(str(channel), {s.value: 0 for s in DeliveryState})
        bucket[DeliveryState(state).value] = int(total or 0)
    return out
