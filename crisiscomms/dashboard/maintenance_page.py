"""Maintenance: what ``crisiscomms maintenance schedule`` does, for the PR lead.

- **Announce** a window: its name as readers see it, the components under maintenance, start and
  end (a date and time read in the picked time zone, or ISO 8601 with its own offset) and an
  optional announcement (the status page's standard wording otherwise). Refused as the CLI
  refuses, with the same messages, next to the field; nothing is written then.
- **List** every window with its status now (scheduled, in progress, completed).
- **Start now** a scheduled window (its start moves to now) and **Complete now** one in
  progress (its end moves to now), so the page says when the work really ran.

Each action rebuilds and publishes the status page as the CLI does
(``statuspage/maintenances.py``) and is audited with the signed-in identity.
"""

from __future__ import annotations

import streamlit as st

from crisiscomms.channels.status_page import build_status_page
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.dashboard.data import settings
from crisiscomms.dashboard.plain_text import plain
from crisiscomms.dashboard.session import audit, require
from crisiscomms.identity.roles import Permission
from crisiscomms.incident.fact_form import combine_datetime, time_zones
from crisiscomms.statuspage.maintenances import (
    MaintenanceRow,
    complete_now,
    known_components,
    maintenances,
    parse_window_time,
    schedule,
    start_now,
)

ERRORS_KEY = "maintenance_errors"
DONE_KEY = "maintenance_done"

user = require(Permission.schedule_maintenance)
st.title("Maintenance")
st.caption("Announce maintenance windows on the status page, start them and complete them. "
           "Each change rebuilds and publishes the page, as `crisiscomms maintenance schedule` "
           "does.")


def do_schedule() -> None:
    """The "Announce" button (runs before the page is drawn again)."""
    require(Permission.schedule_maintenance)
    st.session_state.pop(ERRORS_KEY, None)
    st.session_state.pop(DONE_KEY, None)
    state = st.session_state
    name = str(state.get("mnt_name") or "")
    names = [c.strip() for c in str(state.get("mnt_components") or "").replace(",", "\n")
             .splitlines() if c.strip()]
    body = str(state.get("mnt_body") or "").strip() or None
    try:
        start = parse_window_time(combine_datetime(str(state.get("mnt_start") or ""),
                                                   str(state.get("mnt_start_zone") or "UTC"))
                                  or "", "start")
        end = parse_window_time(combine_datetime(str(state.get("mnt_end") or ""),
                                                 str(state.get("mnt_end_zone") or "UTC"))
                                or "", "end")
        maintenance_id = schedule(build_status_page(settings()), name=name, components=names,
                                  start=start, end=end, body=body)
    except CrisisCommsError as exc:
        state[ERRORS_KEY] = (str(exc), exc.field)
        return
    audit(user, "maintenance.scheduled", None, maintenance_id=maintenance_id, name=name,
          components=names, start=start.isoformat(), end=end.isoformat())
    state[DONE_KEY] = f"Maintenance {maintenance_id} scheduled: {name} ({', '.join(names)}), " \
                      f"{start.isoformat()} to {end.isoformat()}. The status page is published."


def do_move(row: MaintenanceRow, action: str) -> None:
    """"Start now" / "Complete now"."""
    require(Permission.schedule_maintenance)
    st.session_state.pop(ERRORS_KEY, None)
    st.session_state.pop(DONE_KEY, None)
    page = build_status_page(settings())
    try:
        (start_now if action == "started" else complete_now)(page, row.id)
    except CrisisCommsError as exc:
        st.session_state[ERRORS_KEY] = (str(exc), "maintenance")
        return
    audit(user, f"maintenance.{action}", None, maintenance_id=row.id, name=row.name)
    st.session_state[DONE_KEY] = f"Maintenance {row.name} {action.replace('_', ' ')} now. " \
                                 "The status page is published."


def beside(field: str) -> None:
    error = st.session_state.get(ERRORS_KEY)
    if error and error[1] == field:
        st.error(plain(error[0]), icon=":material/error:")


error = st.session_state.get(ERRORS_KEY)
if error:
    st.error(plain(f"Refused, nothing was changed: {error[0]}"))
if st.session_state.get(DONE_KEY):
    st.success(plain(st.session_state[DONE_KEY]))

status_page = build_status_page(settings())
zones = time_zones()
st.subheader("Announce a window")
with st.form("maintenance_form"):
    st.text_input("Name *", key="mnt_name", help="What the maintenance is, as readers see it.")
    beside("name")
    known = known_components(status_page)
    st.text_area("Components *", key="mnt_components", height=80,
                 help="One per line (or comma-separated), named as on the status page"
                      + (f": {', '.join(known)}." if known else "."))
    beside("components")
    for edge in ("start", "end"):
        left, right = st.columns([2, 1])
        left.text_input(f"{edge.title()} *", key=f"mnt_{edge}", placeholder="YYYY-MM-DD HH:MM",
                        help="Read in the zone on the right; an ISO 8601 time with its own "
                             "offset keeps it.")
        right.selectbox(f"{edge.title()}: time zone", zones, key=f"mnt_{edge}_zone")
        beside(edge)
    st.text_area("Announcement", key="mnt_body", height=90,
                 help="Optional; the status page's standard wording otherwise.")
    beside("body")
    st.form_submit_button("Announce", type="primary", on_click=do_schedule)

st.subheader("Windows")
rows = maintenances(status_page)
if not rows:
    st.info("No maintenance scheduled.")
else:
    st.table([{"name": r.name, "components": ", ".join(r.components), "status": r.status,
               "starts": r.starts.isoformat(), "ends": r.ends.isoformat(), "id": r.id}
              for r in rows])
    beside("maintenance")
    for row in rows:
        if row.status not in ("scheduled", "in_progress"):
            continue
        text, button = st.columns([3, 1])
        text.text(f"{row.name} · {row.status}")
        if row.status == "scheduled":
            button.button("Start now", key=f"start-{row.id}", on_click=do_move,
                          args=(row, "started"))
        else:
            button.button("Complete now", key=f"complete-{row.id}", on_click=do_move,
                          args=(row, "completed"))
