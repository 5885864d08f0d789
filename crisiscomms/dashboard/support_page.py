"""The unified holding statement: what every support agent says, per open incident.

Read-only. Only approved, published words show (``incident.views.holding_statements``): an
update still awaiting approval, or approved but not published yet, never appears here. Times
are shown in the reader's time zone (the browser's, when Streamlit knows it) with how far they
are from now.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import streamlit as st

from crisiscomms.channels.support_desk import SupportDeskChannel
from crisiscomms.core.clock import utcnow
from crisiscomms.core.settings import Settings
from crisiscomms.dashboard.data import engine
from crisiscomms.dashboard.session import require
from crisiscomms.identity.roles import Permission
from crisiscomms.incident.views import (
    HoldingStatement,
    holding_statements,
    incident_overview,
    relative_time,
)


def reader_zone() -> ZoneInfo:
    """The browser's time zone, else UTC."""
    try:
        return ZoneInfo(st.context.timezone or "UTC")
    except (ValueError, KeyError):  # an unknown or malformed zone name
        return ZoneInfo("UTC")


def when(at: datetime, tz: ZoneInfo, now: datetime) -> str:
    return f"{at.astimezone(tz):%a %d %b, %H:%M %Z} ({relative_time(at, now)})"


def show(statement: HoldingStatement, tz: ZoneInfo, now: datetime) -> None:
    if statement.stage_status == "resolved":
        due = "none: the incident is resolved"
    elif statement.next_update_at is None:
        due = "not promised"
    else:
        due = when(statement.next_update_at, tz, now)
        if statement.next_update_at < now:
            due = f":red[overdue: {due}]"
    title = f" ({statement.stage_title})" if statement.stage_title else ""
    st.markdown(f"**{statement.locale}** · stage **{statement.stage}**{title} · published "
                f"{when(statement.published_at, tz, now)} · next update due {due}")
    if statement.previous is not None:
        changed = ", ".join(statement.previous.changed_facts) or "no facts, only the stage"
        st.caption(f"Since stage {statement.previous.stage} "
                   f"({when(statement.previous.published_at, tz, now)}): changed {changed}")
    st.code(statement.text, language=None, wrap_lines=True)


user = require(Permission.view_support)
st.title("Holding statements")
st.caption("Say this, word for word: one answer on every channel and from every agent. "
           "Only approved, published statements appear here.")

tz, now = reader_zone(), utcnow()
playbooks_dir = Settings().playbooks_dir
rows = [r for r in incident_overview(engine()) if r.status != "resolved"] or incident_overview(
    engine())[:5]
if not rows:
    st.info("No incidents.")
for row in rows:
    # the incident row's title and status may already be an unapproved update's: show the
    # published statement's own
    statements = holding_statements(engine(), row.id, SupportDeskChannel.name,
                                    playbooks_dir=playbooks_dir)
    first = next(iter(statements.values()), None)
    label = row.ref if first is None else f"{row.ref} · {first.title} · stage {first.stage}"
    with st.expander(label, expanded=True):
        if not statements:
            st.write("No holding statement published yet.")
        for statement in statements.values():
            show(statement, tz, now)
