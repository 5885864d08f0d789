"""The delivery event rollup: counts per (incident, channel, event, minute), kept up to date.

Why maintained rather than computed: reach per channel over time (delivered, opened, bounced)
is a GROUP BY over ``DeliveryEvent``, one row per recipient and event, three or more million
rows for a million recipients; the executive page asks for it every refresh. The rollup holds
one row per minute and kind instead (a few thousand), upserted by the code that stores events,
in its transaction, with the rows it really inserted (``RETURNING``), so replays never count
twice and the rollup equals the GROUP BY it replaces (a test holds it to that).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from crisiscomms.delivery.models import DeliveryEventRollup

RollupKey = tuple[int, str, str, datetime]
"""(incident id, channel, event, minute)."""


def minute_of(at: datetime) -> datetime:
    """``at`` truncated to the minute, in UTC (stored times are UTC; SQLite hands them back
    naive)."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.replace(second=0, microsecond=0)


def rollup_counts(events: Iterable[tuple[int | None, str, str, datetime]]) -> Counter[RollupKey]:
    """(incident id, channel, event, occurred at) of stored events → counts per rollup key;
    events without an incident are left out."""
    counts: Counter[RollupKey] = Counter()
    for incident_id, channel, event, occurred_at in events:
        if incident_id is not None:
            counts[(int(incident_id), channel, event, minute_of(occurred_at))] += 1
    return counts


def add_to_rollup(connection: Connection, counts: Counter[RollupKey]) -> None:
    """Add ``counts`` to the rollup: one executemany ``INSERT … ON CONFLICT DO UPDATE SET
    count = count + excluded.count`` (SQLite and PostgreSQL alike)."""
    if not counts:
        return
    table = DeliveryEventRollup.__table__  # type: ignore[attr-defined]
    base = (sqlite.insert(table) if connection.dialect.name == "sqlite"
            else postgresql.insert(table))
    stmt = base.on_conflict_do_update(
        index_elements=["incident_id", "channel", "event", "minute"],
        set_={"count": table.c.count + base.excluded.count})
    connection.execute(stmt, [
        {"incident_id": iid, "channel": channel, "event": event, "minute": minute, "count": n}
        for (iid, channel, event, minute), n in sorted(counts.items())])
