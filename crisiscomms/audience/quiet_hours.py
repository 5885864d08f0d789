"""Quiet hours: the local night in which a recipient gets no message that can wait.

``QuietHours.parse("21:00-08:00")`` is a window in each recipient's own time zone (it may
cross midnight); :meth:`QuietHours.ends_after` answers when the window a moment falls in ends,
in UTC, or None when the moment is outside it. The SMS channel declares its window; the sender
defers a stage that is not urgent (``Stage.urgent``) until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _clock(text: str) -> time:
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"{text!r} is not HH:MM")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """``21:00-08:00``; ValueError naming what is wrong (equal ends: not a window)."""
        first, sep, second = text.partition("-")
        if not sep:
            raise ValueError(f"quiet hours {text!r} are not HH:MM-HH:MM")
        try:
            window = cls(_clock(first), _clock(second))
        except ValueError as exc:
            raise ValueError(f"quiet hours {text!r}: {exc}") from None
        if window.start == window.end:
            raise ValueError(f"quiet hours {text!r} start and end at the same time")
        return window

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, moment: datetime, zone: str) -> datetime | None:
        """When the quiet window ``moment`` (aware, any zone) falls in ends for someone living
        in ``zone`` (UTC); None when it is not quiet there. An unknown zone counts as UTC."""
        local = moment.astimezone(_zone(zone))
        if not self.contains(local.time().replace(tzinfo=None)):
            return None
        day = local.date()
        if self.start > self.end and local.time().replace(tzinfo=None) >= self.start:
            day += timedelta(days=1)  # after the start, before midnight: ends tomorrow
        end = datetime.combine(day, self.end, tzinfo=_zone(zone))
        return end.astimezone(UTC)
