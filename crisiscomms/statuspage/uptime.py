"""90-day uptime bars from the component status history kept in the state.

Each component's history is a list of ``[time, status]`` changes. A day's bar shows the worst
status the component had that day; the uptime figure counts a major outage fully and a partial
outage at 30 % (Statuspage's weighting), degraded performance and maintenance not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from crisiscomms.statuspage.model import COMPONENT_RANK, parse_time

DAYS = 90
DOWNTIME_WEIGHT = {"major_outage": 1.0, "partial_outage": 0.3}


@dataclass(frozen=True)
class Day:
    day: date
    status: str  # the worst status of the day; "none" before the component existed


@dataclass(frozen=True)
class Uptime:
    days: tuple[Day, ...]
    percent: float


def component_uptime(
    component: dict[str, Any],
    now: datetime,
    maintenance_days: frozenset[date] = frozenset(),
    *,
    days: int = DAYS,
) -> Uptime:
    """The last ``days`` days (oldest first, today last) and the weighted uptime over them."""
    today = now.astimezone(UTC).date()
    first_day = today - timedelta(days=days - 1)
    window_start = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
    created = parse_time(component["created_at"])
    start = max(window_start, created.astimezone(UTC).replace(hour=0, minute=0, second=0,
                                                               microsecond=0))
    worst: dict[date, str] = {}
    downtime = 0.0
    changes = [(parse_time(t), s) for t, s in component.get("history", [])]
    # the status in force when the window opens
    status = "operational"
    for when, value in changes:
        if when <= window_start:
            status = value
    segments: list[tuple[datetime, datetime, str]] = []
    cursor = window_start
    for when, value in changes:
        if when <= window_start:
            continue
        if when > now:
            break
        segments.append((cursor, when, status))
        cursor, status = when, value
    segments.append((cursor, now, status))
    for seg_start, seg_end, value in segments:
        if value == "operational" or seg_end <= seg_start:
            continue
        downtime += (seg_end - seg_start).total_seconds() * DOWNTIME_WEIGHT.get(value, 0.0)
        day = seg_start.astimezone(UTC).date()
        last = (seg_end - timedelta(microseconds=1)).astimezone(UTC).date()
        while day <= last:
            if COMPONENT_RANK[value] > COMPONENT_RANK[worst.get(day, "operational")]:
                worst[day] = value
            day += timedelta(days=1)
    total = (now - start).total_seconds()
    percent = 100.0 if total <= 0 else max(0.0, 100.0 * (1 - downtime / total))
    bars = []
    created_day = start.date()
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        if day < created_day:
            bars.append(Day(day, "none"))
            continue
        value = worst.get(day, "operational")
        if value == "operational" and day in maintenance_days:
            value = "under_maintenance"
        bars.append(Day(day, value))
    return Uptime(tuple(bars), round(percent, 2))


def maintenance_days(windows: list[tuple[datetime, datetime]], now: datetime) -> frozenset[date]:
    """The days touched by maintenance windows that have started."""
    out: set[date] = set()
    for start, end in windows:
        if start > now:
            continue
        day = start.astimezone(UTC).date()
        last = min(end, now).astimezone(UTC).date()
        while day <= last:
            out.add(day)
            day += timedelta(days=1)
    return frozenset(out)
