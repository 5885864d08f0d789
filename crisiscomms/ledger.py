"""The delivery ledger (outbox): plan deliveries, claim batches, record results, count.

Grain: one row per (message, channel, batch). Email batches are a deterministic partition of the
consenting recipients (ordered by id, grouped by resolved locale, ``batch_size`` per row); every
other channel has one row per message. Keys are deterministic, so planning the same stage twice
adds nothing, and a row moves planned → sending → sent | failed exactly once.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Executable, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from crisiscomms.channels.base import DeliveryResult, Outcome
from crisiscomms.locales import resolve_locale
from crisiscomms.models import Delivery, DeliveryState, Message, Recipient, utcnow

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


def encode_ids(ids: Sequence[int]) -> str:
    return ",".join(map(str, ids))


def decode_ids(text: str) -> list[int]:
    return [int(x) for x in text.split(",")] if text else []


@dataclass
class PlanResult:
    new_rows: int = 0
    existing_messages: int = 0
    recipients: dict[str, int] = field(default_factory=dict)


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


def stream_audience(session: Session, *, chunk: int = 10_000) -> Iterator[tuple[int, str]]:
    """(id, locale) of every consenting recipient, ordered by id, streamed in chunks."""
    last_id = 0
    while True:
        rows = session.execute(
            select(col(Recipient.id), col(Recipient.locale))
            .where(col(Recipient.consent).is_(True), col(Recipient.id) > last_id)
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
    personal_channels: Iterable[str],
    locales: Sequence[str],
    default_locale: str,
    batch_size: int,
) -> PlanResult:
    """Write the ledger rows for ``messages`` in bulk; messages already planned add nothing."""
    result = PlanResult()
    personal = set(personal_channels)
    already = set(
        session.execute(
            select(col(Delivery.message_id))
            .where(col(Delivery.message_id).in_([m.id for m in messages]))
            .distinct()
        ).scalars()
    )
    to_plan = [m for m in messages if m.id not in already]
    result.existing_messages = len(messages) - len(to_plan)
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
        for rid, requested in stream_audience(session):
            locale = resolve_locale(requested, locales, default_locale)
            target = by_channel_locale.get((channel, locale))
            if target is None:
                continue
            bucket = pending[locale]
            bucket.append(rid)
            count += 1
            if len(bucket) >= batch_size:
                add(target, batch_no[locale], bucket)
                batch_no[locale] += 1
                bucket.clear()
        for locale, bucket in pending.items():
            if bucket:
                add(by_channel_locale[(channel, locale)], batch_no[locale], bucket)
        result.recipients[channel] = count
    _insert_ignoring_duplicates(session, rows)
    result.new_rows += len(rows)
    return result


def claim(session: Session, delivery_ids: Sequence[int]) -> list[int]:
    """Move planned rows to ``sending`` (attempts + 1); returns the ids this caller claimed.

    One UPDATE ... WHERE state = 'planned' RETURNING id: two workers can never claim the same row.
    """
    if not delivery_ids:
        return []
    stmt = (
        update(Delivery)
        .where(col(Delivery.id).in_(list(delivery_ids)),
               col(Delivery.state) == DeliveryState.planned)
        .values(state=DeliveryState.sending, attempts=Delivery.attempts + 1, updated_at=utcnow())
        .returning(col(Delivery.id))
    )
    claimed = [int(i) for i in session.execute(stmt).scalars()]
    session.commit()
    return claimed


def record(session: Session, delivery_id: int, result: DeliveryResult, attempts: int) -> None:
    """Record the outcome of one claimed row (sending → sent | failed)."""
    state = DeliveryState.sent if result.outcome is Outcome.sent else DeliveryState.failed
    session.execute(
        update(Delivery)
        .where(col(Delivery.id) == delivery_id, col(Delivery.state) == DeliveryState.sending)
        .values(
            state=state,
            provider_id=result.provider_id,
            error=None if state is DeliveryState.sent else (result.reason or result.outcome),
            attempts=Delivery.attempts + max(attempts - 1, 0),
            updated_at=utcnow(),
        )
    )
    session.commit()


def pending_ids(session: Session, message_ids: Sequence[int]) -> dict[str, list[int]]:
    """Planned rows of the given messages, by channel, in batch order."""
    rows = session.execute(
        select(col(Delivery.channel), col(Delivery.id))
        .where(
            col(Delivery.message_id).in_(list(message_ids)),
            col(Delivery.state) == DeliveryState.planned,
        )
        .order_by(col(Delivery.id))
    ).all()
    out: dict[str, list[int]] = defaultdict(list)
    for channel, did in rows:
        out[str(channel)].append(int(did))
    return dict(out)


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
