"""The reader's side of a page: their time zone and language as the browser tells Streamlit,
times shown in their zone with how far they are from now (text made safe for markdown is
``plain_text.plain``).

Shared by the support page and the executive overview so both show a time the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import streamlit as st

from crisiscomms.incident.views import relative_time


def reader_zone() -> ZoneInfo:
    """The browser's time zone, else UTC."""
    try:
        return ZoneInfo(st.context.timezone or "UTC")
    except (ValueError, KeyError):  # an unknown or malformed zone name
        return ZoneInfo("UTC")


def browser_locale(available: Sequence[str], default: str) -> str:
    """The first of ``available`` the browser's language matches (``de-AT`` → ``de``), else
    ``default``."""
    requested = (st.context.locale or "").replace("_", "-").lower()
    lowered = {a.lower(): a for a in available}
    while requested:
        if requested in lowered:
            return lowered[requested]
        requested = requested.rpartition("-")[0]
    return default


def when(at: datetime, tz: ZoneInfo, now: datetime) -> str:
    """``Mon 23 Nov, 10:10 CET (in 25 min)``."""
    return f"{at.astimezone(tz):%a %d %b, %H:%M %Z} ({relative_time(at, now)})"


def duration(span: timedelta | None) -> str:
    """``1 h 45 min``, ``3 d 2 h``, ``40 s``; an em dash when unknown."""
    if span is None:
        return "—"
    seconds = int(span.total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds} s"
    minutes = seconds // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{n} {u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "min")) if n]
    return sign + " ".join(parts[:2])

