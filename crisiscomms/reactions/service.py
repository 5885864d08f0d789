"""Storing reactions: one batch in, triaged once, linked, inserted once per source id.

Every receiver (SendGrid Inbound Parse, tickets, CSAT, the X poller) turns what it got into
:class:`ReactionIn` values and calls :func:`store_reactions`. Why one batch API: a webhook POST
or a page of mentions carries many reactions, and triage, the lookups that link them and the
INSERT are each one call per batch, not one per reaction (``bench/reactions.py`` measures it).

Linking, from the most exact clue to the least:

1. ``delivery_key``: our ledger batch key (the Reply-To ``replies+<key>@…`` of an email, the
   ``custom_args`` of an event) → the delivery row, its message, incident, channel and locale;
2. ``provider_ids``: ids the provider gave our sends (SendGrid's ``X-Message-Id`` found in
   ``In-Reply-To``/``References``, an X post id) → the delivery row whose ``provider_id``
   holds one;
3. ``message_id`` / ``delivery_id`` / ``incident_id`` given by the caller;
4. ``incident_refs`` (references a ticket names in its subject, tags or fields; compared
   case-insensitively, as help desks lower-case tags) → the incident;
5. ``recipient_address`` → the recipient (and their locale when no message tells it);
6. with ``open_incident=True`` and nothing else: the most recent incident not resolved.

The text is stored exactly as sent (any script, control characters, markup: the pages that
show it escape it), with one exception on both backends alike: NUL (U+0000), which a
PostgreSQL text column cannot hold, becomes U+FFFD (:func:`storable`). ``triage_text`` (the
reply without its quoted history) is what triage reads when given. A replay of the same
(source, source_id) inserts nothing (``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL),
except with ``replace=True`` (a CSAT rating given again replaces the first).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from crisiscomms.audience.models import Recipient
from crisiscomms.core.clock import utcnow
from crisiscomms.delivery.models import Delivery
from crisiscomms.incident.models import Incident, IncidentStatus, Message
from crisiscomms.reactions.models import Reaction, ReactionSource, Sentiment
from crisiscomms.reactions.triage import Triager, Verdict

SOURCE_CHANNELS: dict[ReactionSource, str] = {
    ReactionSource.email_reply: "email",
    ReactionSource.x_mention: "x",
    ReactionSource.x_reply: "x",
    ReactionSource.ticket: "support",
    ReactionSource.csat: "email",
}
"""The channel a reaction is counted under when no answered message tells (spikes group by
channel and locale)."""

@dataclass(frozen=True, slots=True)
class ReactionIn:
    """One reaction as a receiver read it, before triage and linking."""

    source: ReactionSource
    source_id: str
    """The provider's id: tweet id, Message-ID, ``<ticket id>:<comment id>``..."""
    author: str
    text: str = ""
    """Stored exactly as sent."""
    author_name: str | None = None
    received_at: datetime | None = None
    """When it happened at the source (default: now)."""
    rating: int | None = None
    triage_text: str | None = None
    """What triage reads (default: ``text``): a reply without its quoted history."""
    delivery_key: str | None = None
    """Our ledger batch key (``Delivery.key``), when the reaction names it."""
    provider_ids: tuple[str, ...] = ()
    """Ids the provider gave a send of ours, each compared with a whole
    ``Delivery.provider_id`` (SendGrid's ``X-Message-Id``). An X thread's row holds several
    post ids, comma-separated: a poller that knows the row passes ``delivery_id`` instead."""
    incident_id: int | None = None
    incident_refs: tuple[str, ...] = ()
    """Candidate incident references (the first that names an incident wins)."""
    message_id: int | None = None
    delivery_id: int | None = None
    recipient_id: int | None = None
    recipient_address: str | None = None
    channel: str | None = None
    locale: str | None = None
    open_incident: bool = False
    """Link to the open incident when nothing more exact is known (tickets)."""
    sentiment: Sentiment | None = None
    """A sentiment the source states itself (a CSAT rating), kept over triage's."""
    language: str | None = None
    """The source's own idea of the language (X's ``lang``), used when triage has none."""


@dataclass
class StoreResult:
    """What one batch did."""

    received: int = 0
    stored: int = 0
    """Rows inserted (or replaced, with ``replace=True``)."""
    duplicates: int = 0
    """Already stored by (source, source_id): nothing changed."""
    needs_human: int = 0
    """Of the rows stored, those triage flagged."""
    linked: int = 0
    """Of the rows stored, those linked to a message."""
    ids: list[int] = field(default_factory=list)
    """Ids of the rows stored, in no particular order."""
    stored_keys: set[tuple[str, str]] = field(default_factory=set)
    """(source, source_id) of the rows stored, as stored (see :func:`storable`)."""
    flagged_keys: set[tuple[str, str]] = field(default_factory=set)
    """Of ``stored_keys``, those triage flagged for a human."""
    linked_keys: set[tuple[str, str]] = field(default_factory=set)
    """Of ``stored_keys``, those linked to a message."""


@dataclass
class _Links:
    """The lookups of one batch, each one query."""

    by_key: dict[str, tuple[int, int, int, str, str]] = field(default_factory=dict)
    by_provider_id: dict[str, tuple[int, int, int, str, str]] = field(default_factory=dict)
    by_delivery_id: dict[int, tuple[int, int, int, str, str]] = field(default_factory=dict)
    messages: dict[int, tuple[int, str, str]] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    recipients: dict[str, tuple[int, str]] = field(default_factory=dict)
    recipient_locales: dict[int, str] = field(default_factory=dict)
    open_incident: int | None = None


_DELIVERY_COLUMNS = (col(Delivery.id), col(Delivery.message_id), col(Delivery.incident_id),
                     col(Delivery.channel), col(Delivery.locale))


def _chunks(values: Sequence[Any], size: int = 900) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _in(column: Any) -> Any:
    """``column IN (:values)``, expanded at execution: each lookup is built once at import,
    its compiled form cached, instead of a new statement per batch."""
    return column.in_(bindparam("values", expanding=True))


_LOOKUP_BY_KEY = select(col(Delivery.key), *_DELIVERY_COLUMNS).where(_in(col(Delivery.key)))
_LOOKUP_BY_PROVIDER_ID = select(col(Delivery.provider_id), *_DELIVERY_COLUMNS).where(
    _in(col(Delivery.provider_id)))
_LOOKUP_BY_DELIVERY_ID = select(*_DELIVERY_COLUMNS).where(_in(col(Delivery.id)))
_LOOKUP_MESSAGES = select(col(Message.id), col(Message.incident_id), col(Message.channel),
                          col(Message.locale)).where(_in(col(Message.id)))
_LOOKUP_INCIDENTS = select(col(Incident.ref), col(Incident.id)).where(
    _in(func.lower(col(Incident.ref))))
_LOOKUP_RECIPIENTS = select(col(Recipient.id), col(Recipient.email),
                            col(Recipient.locale)).where(_in(col(Recipient.email)))
_LOOKUP_RECIPIENT_LOCALES = select(col(Recipient.id), col(Recipient.locale)).where(
    _in(col(Recipient.id)))


def _rows(session: Session, statement: Any, values: Sequence[Any]) -> Iterable[Any]:
    """The rows of a lookup for ``values``, 900 at a time (SQLite's parameter limit), on
    the session's connection (Core: no ORM work for plain tuples)."""
    connection = session.connection()
    for chunk in _chunks(values):
        yield from connection.execute(statement, {"values": list(chunk)})


def _lookups(session: Session, items: Sequence[ReactionIn]) -> _Links:
    links = _Links()
    keys = sorted({i.delivery_key for i in items if i.delivery_key})
    for row in _rows(session, _LOOKUP_BY_KEY, keys):
        links.by_key[str(row[0])] = (int(row[1]), int(row[2]), int(row[3]), str(row[4]),
                                     str(row[5]))
    provider_ids = sorted({p for i in items for p in i.provider_ids if p})
    for row in _rows(session, _LOOKUP_BY_PROVIDER_ID, provider_ids):
        links.by_provider_id[str(row[0])] = (int(row[1]), int(row[2]), int(row[3]),
                                             str(row[4]), str(row[5]))
    delivery_ids = sorted({i.delivery_id for i in items if i.delivery_id is not None})
    for row in _rows(session, _LOOKUP_BY_DELIVERY_ID, delivery_ids):
        links.by_delivery_id[int(row[0])] = (int(row[0]), int(row[1]), int(row[2]),
                                             str(row[3]), str(row[4]))
    message_ids = sorted({i.message_id for i in items if i.message_id is not None})
    for mid, iid, channel, locale in _rows(session, _LOOKUP_MESSAGES, message_ids):
        links.messages[int(mid)] = (int(iid), str(channel), str(locale))
    refs = sorted({r.lower() for i in items for r in i.incident_refs if r})
    for ref, iid in _rows(session, _LOOKUP_INCIDENTS, refs):
        links.incidents[str(ref).lower()] = int(iid)
    addresses = sorted({i.recipient_address.strip().lower() for i in items
                        if i.recipient_address and i.recipient_id is None})
    for rid, email, locale in _rows(session, _LOOKUP_RECIPIENTS, addresses):
        links.recipients[str(email)] = (int(rid), str(locale))
    known_ids = sorted({i.recipient_id for i in items if i.recipient_id is not None})
    for rid, locale in _rows(session, _LOOKUP_RECIPIENT_LOCALES, known_ids):
        links.recipient_locales[int(rid)] = str(locale)
    if any(i.open_incident for i in items):
        links.open_incident = open_incident_id(session)
    return links


def storable(text: str) -> str:
    """``text`` as a database text column can hold it on SQLite and PostgreSQL alike: NUL
    (which PostgreSQL refuses) becomes U+FFFD; everything else is kept as sent."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def open_incident_id(session: Session) -> int | None:
    """The most recently created incident that is not resolved (None when every one is)."""
    found = session.execute(
        select(col(Incident.id)).where(col(Incident.status) != IncidentStatus.resolved)
        .order_by(col(Incident.created_at).desc(), col(Incident.id).desc()).limit(1)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def _row(item: ReactionIn, verdict: Verdict, links: _Links, now: datetime) -> dict[str, Any]:
    delivery = None
    if item.delivery_key:
        delivery = links.by_key.get(item.delivery_key)
    if delivery is None:
        delivery = next((links.by_provider_id[p] for p in item.provider_ids
                         if p in links.by_provider_id), None)
    if delivery is None and item.delivery_id is not None:
        delivery = links.by_delivery_id.get(item.delivery_id)
    delivery_id, message_id, incident_id, channel, locale = (
        delivery if delivery is not None else (None, None, None, None, None))
    if message_id is None and item.message_id in links.messages:
        message_id = item.message_id
        incident_id, channel, locale = links.messages[item.message_id]
    if incident_id is None:
        incident_id = item.incident_id
    if incident_id is None:
        incident_id = next((links.incidents[r.lower()] for r in item.incident_refs
                            if r.lower() in links.incidents), None)
    if incident_id is None and item.open_incident:
        incident_id = links.open_incident
    recipient_id, recipient_locale = item.recipient_id, None
    if recipient_id is not None:
        recipient_locale = links.recipient_locales.get(recipient_id)
    elif item.recipient_address:
        found = links.recipients.get(item.recipient_address.strip().lower())
        if found is not None:
            recipient_id, recipient_locale = found
    sentiment = item.sentiment or verdict.sentiment
    return {
        "source": item.source.value,
        "source_id": storable(item.source_id),
        "incident_id": incident_id,
        "message_id": message_id,
        "delivery_id": delivery_id,
        "recipient_id": recipient_id,
        "channel": channel or item.channel or SOURCE_CHANNELS.get(item.source),
        "locale": locale or item.locale or recipient_locale,
        "author": storable(item.author[:320]),
        "author_name": storable(item.author_name[:200]) if item.author_name else None,
        "text": storable(item.text),
        "rating": item.rating,
        "language": verdict.language or item.language,
        "sentiment": sentiment.value,
        "score": verdict.score,
        "needs_human": verdict.needs_human,
        "reasons_json": json.dumps(list(verdict.reasons), ensure_ascii=False),
        "received_at": item.received_at or now,
        "created_at": now,
    }


_REPLACED = ("incident_id", "message_id", "delivery_id", "recipient_id", "channel", "locale",
             "author", "author_name", "text", "rating", "language", "sentiment", "score",
             "needs_human", "reasons_json", "received_at")


def _insert(session: Session, rows: list[dict[str, Any]], *,
            replace: bool) -> list[tuple[int, str, str]]:
    """Insert ignoring (or, with ``replace``, updating) rows whose (source, source_id) is
    stored; (id, source, source_id) of the rows written.

    One executemany of one cached statement: SQLAlchemy batches it into multi-row INSERTs
    ("insertmanyvalues", RETURNING included) without compiling a new statement per batch
    size, which would cost more than the INSERT itself."""
    dialect = session.get_bind().dialect.name
    conflict = ["source", "source_id"]
    table = Reaction.__table__  # type: ignore[attr-defined]
    stmt: Any
    if dialect in ("sqlite", "postgresql"):
        base = sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table)
        if replace:
            stmt = base.on_conflict_do_update(
                index_elements=conflict,
                set_={name: getattr(base.excluded, name) for name in _REPLACED})
        else:
            stmt = base.on_conflict_do_nothing(index_elements=conflict)
    else:  # pragma: no cover - other backends: plain insert, the unique key still guards
        stmt = insert(table)
    returning: Executable = stmt.returning(
        col(Reaction.id), col(Reaction.source), col(Reaction.source_id))
    result = session.connection().execute(returning, rows)
    return [(int(i), str(src), str(sid)) for i, src, sid in result]


def store_reactions(session: Session, items: Sequence[ReactionIn], *, triager: Triager,
                    replace: bool = False) -> StoreResult:
    """Triage ``items`` in one batch, link each where known and insert them, each
    (source, source_id) once; commits. ``replace``: a stored row with the same source id is
    overwritten (CSAT: a second rating replaces the first) instead of left as it is."""
    result = StoreResult(received=len(items))
    if not items:
        return result
    # The same id twice in one batch (a provider's retry inside a batch): keep the first.
    unique: dict[tuple[str, str], ReactionIn] = {}
    for item in items:
        unique.setdefault((item.source.value, storable(item.source_id)), item)
    batch = list(unique.values())
    verdicts = triager.score([i.triage_text if i.triage_text is not None else i.text
                              for i in batch], authors=[i.author for i in batch])
    links = _lookups(session, batch)
    now = utcnow()
    rows = [_row(item, verdict, links, now) for item, verdict in zip(batch, verdicts,
                                                                      strict=True)]
    written = _insert(session, rows, replace=replace)
    session.commit()
    by_source_id = {(r["source"], r["source_id"]): r for r in rows}  # as stored
    for rid, source, source_id in written:
        result.ids.append(rid)
        result.stored_keys.add((source, source_id))
        row = by_source_id.get((source, source_id))
        if row is not None and row["needs_human"]:
            result.flagged_keys.add((source, source_id))
        if row is not None and row["message_id"] is not None:
            result.linked_keys.add((source, source_id))
    result.needs_human = len(result.flagged_keys)
    result.linked = len(result.linked_keys)
    result.stored = len(written)
    result.duplicates = len(items) - len(written)
    return result
