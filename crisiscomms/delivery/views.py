"""Reach per channel, in total and over time: the executive page's rollout figures.

Two sources, both small whatever the audience: the ledger (batch-grain, one row per thousand
email recipients) says planned, sent and failed; the per-minute event rollup
(``delivery/rollup.py``) says delivered, opened and bounced. Neither reads the per-recipient
``DeliveryEvent`` table, which is what keeps a page fast at a million recipients.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session, col

from crisiscomms.delivery.models import Delivery, DeliveryEventRollup, DeliveryState
from crisiscomms.delivery.rollup import minute_of

MEASURES = ("planned", "sent", "delivered", "opened", "bounced", "failed")
"""What reach counts, in rollout order."""
EVENT_MEASURES = {"delivered": "delivered", "open": "opened", "bounce": "bounced",
                  "dropped": "bounced"}
"""Provider events → the measure they count toward (``dropped``: SendGrid refused to try)."""


@dataclass(frozen=True)
class Reach:
    """Recipients of one channel: planned (every ledger row), sent, failed (ledger), and what
    the provider reported back (delivered, opened, bounced: events, not distinct people)."""

    channel: str
    planned: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    bounced: int = 0
    failed: int = 0


@dataclass(frozen=True)
class ReachPoint:
    """A cumulative count of one channel and measure at the end of one time bucket."""

    at: datetime
    channel: str
    measure: str
    count: int


def reach(session: Session, incident_id: int) -> list[Reach]:
    """Reach per channel of one incident, channels in alphabetical order: one GROUP BY on the
    ledger (by channel and state) and one on the rollup (by channel and event)."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(MEASURES, 0))
    ledger = session.execute(
        select(col(Delivery.channel), col(Delivery.state), func.sum(col(Delivery.recipient_count)))
        .where(col(Delivery.incident_id) == incident_id)
        .group_by(col(Delivery.channel), col(Delivery.state)))
    for channel, state, n in ledger:
        row = totals[str(channel)]
        row["planned"] += int(n or 0)
        if state == DeliveryState.sent:
            row["sent"] += int(n or 0)
        elif state == DeliveryState.failed:
            row["failed"] += int(n or 0)
    events = session.execute(
        select(col(DeliveryEventRollup.channel), col(DeliveryEventRollup.event),
               func.sum(col(DeliveryEventRollup.count)))
        .where(col(DeliveryEventRollup.incident_id) == incident_id)
        .group_by(col(DeliveryEventRollup.channel), col(DeliveryEventRollup.event)))
    for channel, event, n in events:
        measure = EVENT_MEASURES.get(str(event))
        if measure is not None:
            totals[str(channel)][measure] += int(n or 0)
    names = {f.name for f in fields(Reach)} - {"channel"}
    return [Reach(channel, **{k: v for k, v in row.items() if k in names})
            for channel, row in sorted(totals.items())]


def reach_over_time(session: Session, incident_id: int, *, bucket_minutes: int = 1
                    ) -> list[ReachPoint]:
    """Cumulative reach per channel and measure at the end of each ``bucket_minutes`` bucket,
    oldest first: the rollout as a line per measure. A measure appears once it is non-zero.
    Ledger rows count at their ``created_at`` (planned) and ``updated_at`` (sent, failed);
    events at their minute."""
    if not 1 <= bucket_minutes <= 1440:
        raise ValueError("bucket_minutes must be between 1 and 1440")
    width = timedelta(minutes=bucket_minutes)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)

    def bucket(at: datetime) -> datetime:
        at = minute_of(at)
        return epoch + ((at - epoch) // width) * width

    added: dict[tuple[datetime, str, str], int] = defaultdict(int)
    ledger = session.execute(
        select(col(Delivery.channel), col(Delivery.state), col(Delivery.created_at),
               col(Delivery.updated_at), col(Delivery.recipient_count))
        .where(col(Delivery.incident_id) == incident_id))
    for channel, state, created, updated, n in ledger:
        added[(bucket(created), str(channel), "planned")] += int(n)
        if state == DeliveryState.sent:
            added[(bucket(updated), str(channel), "sent")] += int(n)
        elif state == DeliveryState.failed:
            added[(bucket(updated), str(channel), "failed")] += int(n)
    events = session.execute(
        select(col(DeliveryEventRollup.minute), col(DeliveryEventRollup.channel),
               col(DeliveryEventRollup.event), col(DeliveryEventRollup.count))
        .where(col(DeliveryEventRollup.incident_id) == incident_id))
    for minute, channel, event, n in events:
        measure = EVENT_MEASURES.get(str(event))
        if measure is not None:
            added[(bucket(minute), str(channel), measure)] += int(n)
    running: dict[tuple[str, str], int] = defaultdict(int)
    points: list[ReachPoint] = []
    for (at, channel, measure), n in sorted(added.items()):
        running[(channel, measure)] += n
        points.append(ReachPoint(at + width, channel, measure,
                                 running[(channel, measure)]))
    return points
