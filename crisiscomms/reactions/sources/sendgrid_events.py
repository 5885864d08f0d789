"""SendGrid Event Webhook batches: what happened to each recipient of our emails.

One POST carries up to thousands of events (SendGrid batches them). Each is stored once in
``DeliveryEvent`` by its ``sg_event_id`` (``INSERT … ON CONFLICT DO NOTHING``: SendGrid
retries a batch it did not see acknowledged, so replays are normal). Our ``custom_args`` come
back as top-level fields: ``crisiscomms_key`` (the ledger batch key) and
``crisiscomms_recipient`` (the recipient id), which link the event to its delivery row,
incident and recipient.

Then, in a few statements for the whole batch:

- the events newly stored are added to the per-minute rollup (``delivery/rollup.py``) that
  the executive page reads instead of this table;
- ``processed``/``delivered`` settle a batch row a crash left ``sending`` or ``unconfirmed``
  (``delivery/ledger.py`` ``confirm_by_key``, once per distinct key: a batch of 1,000
  recipients is one key), with the message id of ``sg_message_id``. The emulator (like
  SendGrid) can send ``processed`` before our Mail Send request has its answer: the row is
  then ``sent`` by the event, and the answer only fills its message id (``ledger.record``);
- ``bounce``, ``dropped``, ``spamreport``, ``unsubscribe`` and ``group_unsubscribe``
  withdraw the recipient's consent (``consent = false``, ``suppression = <event>``), so the
  next stage's plan (``ledger.stream_audience``) and the sender skip them. A bounce of type
  ``blocked`` (SendGrid's temporary refusal) does not suppress.

The whole batch is parsed before anything is written: a malformed event refuses the request
(400 naming ``[i].field``) and nothing of it is stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from crisiscomms.audience.models import Recipient
from crisiscomms.core.clock import utcnow
from crisiscomms.delivery.ledger import CONFIRMABLE, confirm_by_key
from crisiscomms.delivery.models import Delivery, DeliveryEvent
from crisiscomms.delivery.rollup import add_to_rollup, rollup_counts
from crisiscomms.reactions.service import storable
from crisiscomms.reactions.sources.payload import PayloadError, parse_json, text_field

CONFIRMING = frozenset({"processed", "delivered"})
"""Events that prove SendGrid accepted the batch."""
SUPPRESSING = frozenset({"bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"})
"""Events after which the recipient must not be mailed again."""
KEY_ARG = "crisiscomms_key"
RECIPIENT_ARG = "crisiscomms_recipient"
CHANNEL = "email"


@dataclass(frozen=True, slots=True)
class SendGridEvent:
    """One event as SendGrid sent it, checked."""

    event_id: str
    event: str
    email: str
    occurred_at: datetime
    key: str | None = None
    recipient_id: int | None = None
    reason: str | None = None
    bounce_type: str | None = None
    message_id: str | None = None
    """The Mail Send answer's ``X-Message-Id``: ``sg_message_id`` up to its first dot."""


@dataclass
class EventsResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    confirmed: int = 0
    """Ledger rows moved from sending/unconfirmed to sent."""
    suppressed: int = 0
    """Recipients whose consent this batch withdrew."""
    by_event: dict[str, int] = field(default_factory=dict)


def parse_events(body: bytes) -> list[SendGridEvent]:
    """The events of one webhook body; PayloadError naming ``[i].field`` when one is
    malformed (the whole batch is refused)."""
    data = parse_json(body, what="SendGrid events")
    if not isinstance(data, list):
        raise PayloadError("SendGrid events: the body must be a JSON array", field="body")
    out: list[SendGridEvent] = []
    for index, raw in enumerate(data):
        where = f"[{index}]."
        if not isinstance(raw, dict):
            raise PayloadError(f"[{index}] must be an object", field=f"[{index}]")
        out.append(_event(raw, where))
    return out


def _event(raw: dict[str, Any], where: str) -> SendGridEvent:
    event_id = text_field(raw, "sg_event_id", where=where, max_length=128)
    event = text_field(raw, "event", where=where, max_length=32)
    email = text_field(raw, "email", where=where, max_length=320)
    stamp = raw.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise PayloadError(f"{where}timestamp must be a Unix time", field=f"{where}timestamp")
    try:
        occurred = datetime.fromtimestamp(float(stamp), UTC)
    except (OverflowError, OSError, ValueError):
        raise PayloadError(f"{where}timestamp is out of range", field=f"{where}timestamp") \
            from None
    key = text_field(raw, KEY_ARG, where=where, required=False, max_length=64)
    recipient = text_field(raw, RECIPIENT_ARG, where=where, required=False, max_length=20)
    recipient_id: int | None = None
    if recipient is not None:
        if not recipient.isdigit():
            raise PayloadError(f"{where}{RECIPIENT_ARG} must be a recipient id",
                               field=f"{where}{RECIPIENT_ARG}")
        recipient_id = int(recipient)
    reason = raw.get("reason") or raw.get("response") or raw.get("status")
    bounce_type = raw.get("type") if isinstance(raw.get("type"), str) else None
    sg_message_id = text_field(raw, "sg_message_id", where=where, required=False,
                               max_length=256)
    message_id = sg_message_id.split(".", 1)[0] if sg_message_id else None
    assert event_id is not None and event is not None and email is not None
    return SendGridEvent(event_id=storable(event_id), event=storable(event),
                         email=storable(email), occurred_at=occurred,
                         key=storable(key) if key else None, recipient_id=recipient_id,
                         reason=storable(str(reason)[:500]) if reason else None,
                         bounce_type=bounce_type,
                         message_id=storable(message_id) if message_id else None)


_DELIVERIES = select(col(Delivery.key), col(Delivery.id), col(Delivery.incident_id),
                     col(Delivery.state)).where(
    col(Delivery.key).in_(bindparam("keys", expanding=True)))


def record_events(session: Session, events: Sequence[SendGridEvent]) -> EventsResult:
    """Store, confirm and suppress for one batch; commits. Replays change nothing."""
    result = EventsResult(received=len(events))
    if not events:
        return result
    keys = sorted({e.key for e in events if e.key})
    deliveries: dict[str, tuple[int | None, int | None]] = {}
    unsettled: set[str] = set()
    connection = session.connection()
    for start in range(0, len(keys), 900):
        for row in connection.execute(_DELIVERIES, {"keys": keys[start:start + 900]}):
            deliveries[str(row[0])] = (row[1], row[2])
            if row[3] in CONFIRMABLE:
                unsettled.add(str(row[0]))
    now = utcnow()
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        delivery_id, incident_id = deliveries.get(e.key or "", (None, None))
        rows.setdefault(e.event_id, {
            "event_key": e.event_id, "delivery_id": delivery_id, "incident_id": incident_id,
            "recipient_id": e.recipient_id, "channel": CHANNEL, "event": e.event,
            "reason": e.reason, "occurred_at": e.occurred_at, "created_at": now})
        result.by_event[e.event] = result.by_event.get(e.event, 0) + 1
    result.stored = _insert_events(session, list(rows.values()))
    result.duplicates = len(events) - result.stored
    result.suppressed = _suppress(session, events)
    session.commit()
    # Usually every row is already ``sent``: only those still waiting are confirmed, each
    # through the ledger's own seam.
    # The event names the Mail Send answer's message id: the row keeps it even when the event
    # outruns that answer (the sender's record then finds the row already sent).
    message_ids = {e.key: e.message_id for e in events
                   if e.key in unsettled and e.event in CONFIRMING and e.message_id}
    for key in sorted({e.key for e in events if e.key and e.event in CONFIRMING} & unsettled):
        if confirm_by_key(session, key, provider_id=message_ids.get(key)):
            result.confirmed += 1
    return result


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert the events not stored yet (one cached executemany) and add them to the
    per-minute rollup (``delivery/rollup.py``); how many were new."""
    dialect = session.get_bind().dialect.name
    table = DeliveryEvent.__table__  # type: ignore[attr-defined]
    base = sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table)
    stmt = base.on_conflict_do_nothing(index_elements=["event_key"]).returning(
        col(DeliveryEvent.incident_id), col(DeliveryEvent.channel), col(DeliveryEvent.event),
        col(DeliveryEvent.occurred_at))
    connection = session.connection()
    inserted = connection.execute(stmt, rows).all()
    # the rollup counts exactly the rows inserted: a replayed event adds nothing
    add_to_rollup(connection, rollup_counts(
        (iid, str(channel), str(event), occurred) for iid, channel, event, occurred in inserted))
    return len(inserted)


def _suppress(session: Session, events: Sequence[SendGridEvent]) -> int:
    """Withdraw consent of the recipients this batch says must not be mailed: by recipient id
    where our ``custom_args`` name one, else by address. One UPDATE per event kind."""
    by_id: dict[str, set[int]] = defaultdict(set)
    by_email: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.event not in SUPPRESSING or (e.event == "bounce" and e.bounce_type == "blocked"):
            continue
        if e.recipient_id is not None:
            by_id[e.event].add(e.recipient_id)
        else:
            by_email[e.event].add(e.email.strip().lower())
    changed = 0
    for kind in sorted(set(by_id) | set(by_email)):
        for column, values in ((col(Recipient.id), sorted(by_id.get(kind, ()))),
                               (col(Recipient.email), sorted(by_email.get(kind, ())))):
            for start in range(0, len(values), 900):
                changed += len(session.execute(
                    update(Recipient)
                    .where(column.in_(values[start:start + 900]),
                           col(Recipient.consent).is_(True))
                    .values(consent=False, suppression=kind)
                    .returning(col(Recipient.id))).all())
    return changed
