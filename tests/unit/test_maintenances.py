"""Maintenance windows as a person runs them: announce, list, start now, complete now; each
refusal names its field and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crisiscomms.core.errors import FactsError
from crisiscomms.statuspage.maintenances import (
    complete_now,
    known_components,
    maintenances,
    parse_window_time,
    schedule,
    start_now,
)
from crisiscomms.statuspage.page import StatusPage

T0 = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def status_page(tmp_path: Path, clock: Clock) -> StatusPage:
    return StatusPage(tmp_path / "sp", page_name="Example Status",
                      page_url="https://status.example.com", clock=clock)


def test_a_window_is_announced_started_and_completed_by_moving_its_edges(
        tmp_path: Path) -> None:
    clock = Clock()
    page = status_page(tmp_path, clock)
    start, end = T0 + timedelta(hours=2), T0 + timedelta(hours=4)
    mid = schedule(page, name="DB upgrade", components=["API"], start=start, end=end)
    assert schedule(page, name="DB upgrade", components=["API"], start=start, end=end) == mid
    [row] = maintenances(page)
    assert (row.id, row.status, row.starts, row.ends) == (mid, "scheduled", start, end)
    assert known_components(page) == ["API"]
    with pytest.raises(FactsError, match="only one in progress can be completed"):
        complete_now(page, mid)

    clock.now = T0 + timedelta(hours=1)
    start_now(page, mid)
    [row] = maintenances(page)
    assert (row.status, row.starts, row.ends) == ("in_progress", clock.now, end)
    with pytest.raises(FactsError, match="only a scheduled one can be started") as refused:
        start_now(page, mid)
    assert refused.value.field == "maintenance"

    clock.now = T0 + timedelta(hours=3)
    complete_now(page, mid)
    [row] = maintenances(page)
    assert (row.status, row.ends) == ("completed", clock.now)
    assert "DB upgrade" in (page.site_path / "history.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "components", "hours", "field"), [
    ("", ["API"], (1, 2), "name"),
    ("Upgrade", [], (1, 2), "components"),
    ("Upgrade", ["API"], (2, 1), "end"),
    ("Upgrade", ["API"], (-3, -1), "end"),
    ("Up\u202egrade", ["API"], (1, 2), "name"),
])
def test_a_refused_window_names_its_field_and_writes_nothing(
        tmp_path: Path, name: str, components: list[str], hours: tuple[int, int],
        field: str) -> None:
    page = status_page(tmp_path, Clock())
    with pytest.raises(FactsError) as refused:
        schedule(page, name=name, components=components,
                 start=T0 + timedelta(hours=hours[0]), end=T0 + timedelta(hours=hours[1]))
    assert refused.value.field == field
    assert not page.state_path.exists() and not maintenances(page)


def test_unknown_window_and_window_times() -> None:
    assert parse_window_time(" 2026-11-25T02:00:00+01:00 ", "start") == datetime(
        2026, 11, 25, 1, tzinfo=UTC)
    with pytest.raises(FactsError, match=r"^--start 'soon' is not an ISO 8601 time$") as bad:
        parse_window_time("soon", "--start")
    assert bad.value.field == "start"
    with pytest.raises(FactsError, match="end needs an offset") as naive:
        parse_window_time("2026-11-25T02:00", "end")
    assert naive.value.field == "end"


def test_starting_an_unknown_window_is_refused(tmp_path: Path) -> None:
    page = status_page(tmp_path, Clock())
    with pytest.raises(FactsError, match="no maintenance 'nope'"):
        start_now(page, "nope")
