"""Scheduled maintenance as a person runs it: announce a window, list them, start one early or
complete it when the work is done.

A maintenance's status follows the clock (``model.maintenance_status``: scheduled before its
start, in progress until its end, completed after). Starting one now moves its start to now;
completing one now moves its end to now; the page is then rebuilt and published under the
directory's lock, as ``crisiscomms maintenance schedule`` and ``statuspage build`` do
(:meth:`StatusPage.change`). Why move the window rather than keep a separate status: the
status page, its feeds, its JSON API and the uptime bars all read the window, so one truth
stays one truth, and the published timeline says when the work really started and ended.

Refusals are :class:`~crisiscomms.core.errors.FactsError` naming the field at fault (``name``,
``components``, ``start``, ``end``, ``body``, ``maintenance``), with the messages the CLI prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crisiscomms.core.errors import FactsError
from crisiscomms.statuspage import model
from crisiscomms.statuspage.page import StatusPage


@dataclass(frozen=True)
class MaintenanceRow:
    id: str
    name: str
    components: tuple[str, ...]
    starts: datetime
    ends: datetime
    status: str
    """scheduled, in_progress or completed (now)."""
    body: str | None


def parse_window_time(value: str, option: str) -> datetime:
    """A window's start or end: ISO 8601 with an offset; FactsError naming ``option`` (the CLI
    passes ``--start``, the dashboard ``start``) otherwise."""
    field = option.removeprefix("--")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise FactsError(f"{option} {value!r} is not an ISO 8601 time", field=field,
                         values=(value,)) from None
    if parsed.tzinfo is None:
        raise FactsError(f"{option} needs an offset, e.g. 2026-11-25T02:00:00+00:00",
                         field=field, values=(value,))
    return parsed


def _field_of(message: str) -> str | None:
    """The form field a refusal of ``model.schedule_maintenance`` is about."""
    for prefix, field in (("a maintenance needs a name", "name"),
                          ("name at least one component", "components"), ("name ", "name"),
                          ("components ", "components"), ("body ", "body"),
                          ("start and end need", "start"), ("a maintenance must end", "end"),
                          ("a maintenance that has already ended", "end")):
        if message.startswith(prefix):
            return field
    return None


def schedule(page: StatusPage, *, name: str, components: Sequence[str], start: datetime,
             end: datetime, body: str | None = None) -> str:
    """Announce a window (idempotent: the same window gives the same id); the page is rebuilt
    and published. FactsError naming the field when refused; nothing is written then."""
    try:
        return page.schedule_maintenance(name=name, components=list(components), start=start,
                                          end=end, body=body or None)
    except ValueError as exc:
        raise FactsError(str(exc), field=_field_of(str(exc))) from None


def maintenances(page: StatusPage) -> list[MaintenanceRow]:
    """Every maintenance of the page, the latest start first, with its status now."""
    now = page.clock()
    rows = [MaintenanceRow(m["id"], m["name"], tuple(m["components"]),
                           model.parse_time(m["scheduled_for"]),
                           model.parse_time(m["scheduled_until"]),
                           model.maintenance_status(m, now), m.get("body"))
            for m in page.load()["maintenances"].values()]
    return sorted(rows, key=lambda r: r.starts, reverse=True)


def _window(state: dict[str, Any], maintenance_id: str) -> dict[str, str]:
    found: dict[str, str] | None = state["maintenances"].get(maintenance_id)
    if found is None:
        raise FactsError(f"no maintenance {maintenance_id!r} on the status page",
                         field="maintenance", values=(maintenance_id,))
    return found


def start_now(page: StatusPage, maintenance_id: str) -> None:
    """Start a scheduled maintenance now (its start moves to now); refused unless it is
    scheduled."""
    _move_to_now(page, maintenance_id, "scheduled_for", when="scheduled",
                 refusal="only a scheduled one can be started")


def complete_now(page: StatusPage, maintenance_id: str) -> None:
    """Complete an in-progress maintenance now (its end moves to now); refused unless it is in
    progress."""
    _move_to_now(page, maintenance_id, "scheduled_until", when="in_progress",
                 refusal="only one in progress can be completed")


def _move_to_now(page: StatusPage, maintenance_id: str, edge: str, *, when: str,
                 refusal: str) -> None:
    """Move one edge of a window (its start or its end) to now, if the window is ``when``."""
    now = page.clock()

    def change(state: dict[str, Any]) -> None:
        window = _window(state, maintenance_id)
        status = model.maintenance_status(window, now)
        if status != when:
            raise FactsError(f"maintenance {window['name']!r} is {status}; {refusal}",
                             field="maintenance", values=(maintenance_id,))
        window[edge] = model.iso(now)

    page.change(change)


def known_components(page: StatusPage) -> list[str]:
    """The components the status page already shows (a maintenance may name new ones)."""
    return sorted(page.load()["components"])
