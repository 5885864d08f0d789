"""Read views of listening for pages and commands: counts, volume over time, the flagged
list, spikes. Aggregates are GROUP BYs in the database, lists are paged: a page or a command
never loads every reaction of an incident.

Pages (``dashboard/reactions_page.py``), ``crisiscomms reactions list`` and anything that
shows reactions read through these functions, never through SQL of their own, so the access
rules of issue 12 (roles) have one place to go.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from crisiscomms.core.clock import as_utc
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.incident.models import Incident, IncidentStatus, Message
from crisiscomms.reactions.models import Reaction, Spike
from crisiscomms.reactions.spikes import UNKNOWN, bucket_start, window_bucket

DIMENSIONS = ("source", "channel", "locale", "sentiment", "needs_human")
"""What :func:`reaction_counts` can count by."""
MAX_PAGE = 500


def incident_id_of(session: Session, ref: str) -> int:
    """The id of the incident ``ref`` (a clear error naming it when there is none)."""
    found = session.execute(select(col(Incident.id)).where(col(Incident.ref) == ref)).scalar()
    if found is None:
        raise CrisisCommsError(f"no incident {ref!r}", field="incident", values=(ref,))
    return int(found)


def listening_incidents(session: Session) -> list[tuple[str, str, str]]:
    """(ref, title, status) of every incident, open ones first, newest first: the choices of
    the reactions page."""
    rows = session.execute(select(col(Incident.ref), col(Incident.title), col(Incident.status))
                           .order_by(col(Incident.resolved_at).is_not(None),
                                     col(Incident.created_at).desc()))
    return [(str(r), str(t), str(s)) for r, t, s in rows]


def open_incidents(session: Session) -> list[Incident]:
    """Incidents not resolved: the ones the watcher looks after."""
    return list(session.execute(select(Incident).where(
        col(Incident.status).not_in([IncidentStatus.resolved.value,
                                     IncidentStatus.postmortem.value])).order_by(col(Incident.id))).scalars())


def _dimension(name: str) -> Any:
    if name == "channel":
        return func.coalesce(col(Reaction.channel), col(Reaction.source))
    if name == "locale":
        return func.coalesce(col(Reaction.locale), col(Reaction.language), UNKNOWN)
    if name == "sentiment":
        return func.coalesce(col(Reaction.sentiment), "unscored")
    if name == "source":
        return col(Reaction.source)
    if name == "needs_human":
        return col(Reaction.needs_human)
    raise CrisisCommsError(f"cannot count reactions by {name!r}; one of {', '.join(DIMENSIONS)}",
                           field="by", values=(name,))


def reaction_counts(session: Session, incident_id: int, by: str) -> dict[str, int]:
    """Reactions of an incident per value of ``by`` (one of :data:`DIMENSIONS`), largest
    first."""
    dim = _dimension(by)  # grouped by the expression: PostgreSQL reads a name as a column
    rows = session.execute(select(dim, func.count()).where(
        col(Reaction.incident_id) == incident_id).group_by(dim).order_by(
        func.count().desc()))
    return {_label(v): int(n) for v, n in rows}


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and not isinstance(value, bool):  # SQLite answers 0/1
        return "yes" if value else "no"
    return str(value)


@dataclass(frozen=True)
class Summary:
    incident_ref: str
    total: int
    needs_human: int
    by_source: dict[str, int]
    by_channel: dict[str, int]
    by_locale: dict[str, int]
    by_sentiment: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"incident": self.incident_ref, "total": self.total,
                "needs_human": self.needs_human, "by_source": self.by_source,
                "by_channel": self.by_channel, "by_locale": self.by_locale,
                "by_sentiment": self.by_sentiment}


def summary(session: Session, incident_ref: str) -> Summary:
    """Counts of an incident's reactions by source, channel, locale, sentiment and
    needs-a-human: one GROUP BY over the five (a few hundred groups at most), added up here,
    so the incident's rows are read once."""
    iid = incident_id_of(session, incident_ref)
    dims = [_dimension(name) for name in DIMENSIONS]
    rows = session.execute(select(*dims, func.count()).where(
        col(Reaction.incident_id) == iid).group_by(*dims))
    totals: dict[str, Counter[str]] = {name: Counter() for name in DIMENSIONS}
    for *values, n in rows:
        for name, value in zip(DIMENSIONS, values, strict=True):
            totals[name][_label(value)] += int(n)

    def ordered(name: str) -> dict[str, int]:
        return dict(totals[name].most_common())

    by_source = ordered("source")
    return Summary(incident_ref, sum(by_source.values()), totals["needs_human"]["yes"],
                   by_source, ordered("channel"), ordered("locale"), ordered("sentiment"))


@dataclass(frozen=True)
class MessageCounts:
    message_id: int
    stage: str
    channel: str
    locale: str
    total: int
    negative: int
    needs_human: int


def per_message(session: Session, incident_ref: str) -> list[MessageCounts]:
    """Reactions per message they answer (those linked to one), with negatives and flagged."""
    from sqlalchemy import case

    iid = incident_id_of(session, incident_ref)
    negative = func.sum(case((col(Reaction.sentiment) == "negative", 1), else_=0))
    flagged = func.sum(case((col(Reaction.needs_human).is_(True), 1), else_=0))
    rows = session.execute(
        select(col(Message.id), col(Message.stage), col(Message.channel), col(Message.locale),
               func.count(col(Reaction.id)), negative, flagged)
        .join(Message, col(Message.id) == col(Reaction.message_id))
        .where(col(Reaction.incident_id) == iid)
        .group_by(col(Message.id), col(Message.stage), col(Message.channel),
                  col(Message.locale))
        .order_by(func.count(col(Reaction.id)).desc()))
    return [MessageCounts(int(m), str(s), str(c), str(loc), int(t), int(n or 0), int(f or 0))
            for m, s, c, loc, t, n, f in rows]


@dataclass(frozen=True)
class Bucket:
    start: datetime
    sentiment: str
    count: int


def over_time(session: Session, incident_ref: str, *, bucket_minutes: int = 5,
              since: datetime | None = None) -> list[Bucket]:
    """Reactions per time bucket and sentiment (for a stacked chart), oldest first."""
    if not 1 <= bucket_minutes <= 1440:
        raise CrisisCommsError("bucket_minutes must be between 1 and 1440",
                               field="bucket_minutes", values=(str(bucket_minutes),))
    iid = incident_id_of(session, incident_ref)
    width = bucket_minutes * 60
    bucket = window_bucket(session.get_bind().dialect.name, width)
    sentiment = func.coalesce(col(Reaction.sentiment), "unscored")
    conditions = [col(Reaction.incident_id) == iid]
    if since is not None:
        conditions.append(col(Reaction.received_at) >= since)
    rows = session.execute(select(bucket, sentiment, func.count()).where(*conditions)
                           .group_by(bucket, sentiment).order_by(bucket, sentiment))
    return [Bucket(bucket_start(int(b), width), str(s), int(n)) for b, s, n in rows]


@dataclass(frozen=True)
class ReactionRow:
    """One reaction as lists show it (text as sent: the face escapes it)."""

    id: int
    source: str
    author: str
    text: str
    channel: str | None
    locale: str | None
    language: str | None
    sentiment: str | None
    score: float | None
    needs_human: bool
    reasons: tuple[str, ...]
    received_at: datetime
    incident_ref: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "incident": self.incident_ref, "source": self.source,
                "author": self.author, "text": self.text, "channel": self.channel,
                "locale": self.locale, "language": self.language,
                "sentiment": self.sentiment, "score": self.score,
                "needs_human": self.needs_human, "reasons": list(self.reasons),
                "received_at": self.received_at.isoformat()}


def reactions(session: Session, *, incident_ref: str | None = None, needs_human: bool = False,
              limit: int = 50, before_id: int | None = None) -> list[ReactionRow]:
    """Reactions newest first (by id), optionally of one incident and only those that need a
    human; paged by ``before_id`` (the last id of the previous page) and ``limit`` (at most
    :data:`MAX_PAGE`)."""
    if not 1 <= limit <= MAX_PAGE:
        raise CrisisCommsError(f"limit must be between 1 and {MAX_PAGE}", field="limit",
                               values=(str(limit),))
    stmt = (select(Reaction, col(Incident.ref))
            .join(Incident, col(Incident.id) == col(Reaction.incident_id), isouter=True))
    if incident_ref is not None:
        stmt = stmt.where(col(Reaction.incident_id) == incident_id_of(session, incident_ref))
    if needs_human:
        stmt = stmt.where(col(Reaction.needs_human).is_(True))
    if before_id is not None:
        stmt = stmt.where(col(Reaction.id) < before_id)
    rows = session.execute(stmt.order_by(col(Reaction.id).desc()).limit(limit))
    return [_row(r, ref) for r, ref in rows]


def flagged(session: Session, incident_ref: str, *, limit: int = 50,
            before_id: int | None = None) -> list[ReactionRow]:
    """The reactions of an incident that need a human, with triage's reasons, newest first."""
    return reactions(session, incident_ref=incident_ref, needs_human=True, limit=limit,
                     before_id=before_id)


def _row(r: Reaction, ref: str | None) -> ReactionRow:
    return ReactionRow(
        id=r.id or 0, source=str(r.source), author=r.author, text=r.text, channel=r.channel,
        locale=r.locale, language=r.language,
        sentiment=str(r.sentiment) if r.sentiment is not None else None, score=r.score,
        needs_human=bool(r.needs_human), reasons=tuple(json.loads(r.reasons_json or "[]")),
        received_at=as_utc(r.received_at) or r.received_at, incident_ref=ref)


@dataclass(frozen=True)
class SpikeRow:
    id: int
    channel: str
    locale: str
    window_start: datetime
    volume: int
    negative_share: float
    baseline_volume: float
    baseline_negative_share: float
    alerted_at: datetime | None
    examples: tuple[dict[str, Any], ...]

    @property
    def alert_state(self) -> str:
        return "alerted" if self.alerted_at is not None else "alert pending (retried)"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "locale": self.locale,
                "window_start": self.window_start.isoformat(), "volume": self.volume,
                "negative_share": self.negative_share,
                "baseline_volume": self.baseline_volume,
                "baseline_negative_share": self.baseline_negative_share,
                "alerted_at": self.alerted_at.isoformat() if self.alerted_at else None,
                "examples": list(self.examples)}


def spikes(session: Session, incident_ref: str) -> list[SpikeRow]:
    """The incident's spikes, newest window first, with whether the alert went out."""
    iid = incident_id_of(session, incident_ref)
    rows = session.execute(select(Spike).where(col(Spike.incident_id) == iid)
                           .order_by(col(Spike.window_start).desc(), col(Spike.id)))
    return [SpikeRow(s.id or 0, s.channel, s.locale, as_utc(s.window_start) or s.window_start,
                     s.volume, s.negative_share, s.baseline_volume, s.baseline_negative_share,
                     as_utc(s.alerted_at), tuple(json.loads(s.examples_json or "[]")))
            for s in rows.scalars()]


def pivot(buckets: Sequence[Bucket]) -> list[dict[str, Any]]:
    """Buckets as records for a chart (``start``, ``sentiment``, ``count``)."""
    return [{"start": b.start, "sentiment": b.sentiment, "count": b.count} for b in buckets]


@dataclass(frozen=True)
class ReplyRow:
    """One automatic reply: to whom, by which rule, in which locale, and its ledger state."""

    author: str
    source: str
    rule: str
    channel: str
    locale: str
    state: str
    error: str | None
    text: str
    created_at: datetime


def automatic_replies(session: Session, incident_ref: str, *, limit: int = 100
                      ) -> list[ReplyRow]:
    """The incident's automatic replies, newest first, with what each said (its text part)."""
    from crisiscomms.delivery.models import Delivery
    from crisiscomms.reactions.models import ReactionReply

    iid = incident_id_of(session, incident_ref)
    rows = session.execute(
        select(ReactionReply, Delivery, Message)
        .join(Delivery, col(Delivery.id) == col(ReactionReply.delivery_id))
        .join(Message, col(Message.id) == col(Delivery.message_id))
        .where(col(ReactionReply.incident_id) == iid)
        .order_by(col(ReactionReply.id).desc()).limit(min(limit, MAX_PAGE)))
    out = []
    for reply, delivery, message in rows:
        parts = json.loads(message.parts_json)
        rule = message.stage.split("/")[1] if message.stage.count("/") >= 1 else message.stage
        out.append(ReplyRow(reply.author, str(reply.source), rule, delivery.channel,
                            delivery.locale, str(delivery.state), delivery.error,
                            str(parts.get("text", "")),
                            as_utc(reply.created_at) or reply.created_at))
    return out
