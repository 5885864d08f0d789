"""Reactions over time for the executive overview: volume, sentiment and needs-a-human per
bucket in one GROUP BY, and the CSAT ratings' summary.

One query per figure, grouped in the database over the ``(incident_id, received_at)`` index
(a covering index, ``ix_reaction_incident_trend``, holds sentiment and needs-a-human too, so
the rows themselves are never read); the page caches the answers for its refresh interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session, col

from crisiscomms.reactions.models import Reaction, ReactionSource
from crisiscomms.reactions.spikes import bucket_start, window_bucket

SENTIMENTS = ("negative", "neutral", "positive", "unscored")


@dataclass(frozen=True)
class TrendBucket:
    """Reactions received in one bucket, by sentiment, and how many need a person."""

    start: datetime
    volume: int
    negative: int
    neutral: int
    positive: int
    unscored: int
    needs_human: int


def reaction_trend(session: Session, incident_id: int, *, bucket_minutes: int = 5
                   ) -> list[TrendBucket]:
    """Per ``bucket_minutes`` bucket, oldest first: volume, each sentiment and needs-a-human
    (one GROUP BY by bucket, sentiment and needs-a-human; summed here)."""
    if not 1 <= bucket_minutes <= 1440:
        raise ValueError("bucket_minutes must be between 1 and 1440")
    width = bucket_minutes * 60
    bucket = window_bucket(session.get_bind().dialect.name, width)
    sentiment = func.coalesce(col(Reaction.sentiment), "unscored")
    rows = session.execute(
        select(bucket, sentiment, col(Reaction.needs_human), func.count())
        .where(col(Reaction.incident_id) == incident_id)
        .group_by(bucket, sentiment, col(Reaction.needs_human)))
    acc: dict[int, dict[str, int]] = {}
    for b, s, flagged, n in rows:
        counts = acc.setdefault(int(b), dict.fromkeys((*SENTIMENTS, "needs_human"), 0))
        counts[str(s) if str(s) in SENTIMENTS else "unscored"] += int(n)
        if flagged:
            counts["needs_human"] += int(n)
    return [TrendBucket(bucket_start(b, width), sum(c[s] for s in SENTIMENTS), c["negative"],
                        c["neutral"], c["positive"], c["unscored"], c["needs_human"])
            for b, c in sorted(acc.items())]


@dataclass(frozen=True)
class Csat:
    """Satisfaction ratings (1-5) of one incident: how many, their mean, the share of 4s and
    5s (the usual CSAT score) and the count of each rating."""

    ratings: int
    mean: float | None
    satisfied_share: float | None
    by_rating: dict[int, int]


def csat(session: Session, incident_id: int) -> Csat:
    """The incident's CSAT from its rating reactions (``reactions/sources/csat.py``: one per
    recipient, the latest rating kept)."""
    rows = session.execute(
        select(col(Reaction.rating), func.count())
        .where(col(Reaction.source) == ReactionSource.csat.value,
               col(Reaction.incident_id) == incident_id, col(Reaction.rating).is_not(None))
        .group_by(col(Reaction.rating)))
    by_rating = {r: 0 for r in range(1, 6)}
    for rating, n in rows:
        if int(rating) in by_rating:
            by_rating[int(rating)] += int(n)
    total = sum(by_rating.values())
    if not total:
        return Csat(0, None, None, by_rating)
    mean = sum(r * n for r, n in by_rating.items()) / total
    return Csat(total, mean, (by_rating[4] + by_rating[5]) / total, by_rating)
