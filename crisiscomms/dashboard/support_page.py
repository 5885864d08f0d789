"""What support agents say, per open incident and locale: the holding statement, the Q&A, and
the remedies they may grant without asking.

Read-only (``Permission.view_support``). The locale picker starts at the browser's language
(``st.context.locale``; the playbooks' default when none matches). Per open incident:

- the holding statement of the latest **approved and published** stage in that locale
  (``incident.views.holding_statements``): an update awaiting approval, or approved but not
  published, never appears; a copy button (``st.code``'s) copies it word for word;
- when it was published, what changed since the statement before it, and when the next update
  is due (overdue in red);
- the playbook's Q&A and the remedies agents may grant on their own (what, up to what limit,
  when: the playbook's ``remedies``), in the same locale or its fallback, said so.

Times are in the reader's time zone with how far they are from now. The playbook's words are
escaped before markdown shows them; nothing here is editable.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import streamlit as st

from crisiscomms.channels.support_desk import SupportDeskChannel
from crisiscomms.core.clock import utcnow
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.dashboard.data import engine_for, settings
from crisiscomms.dashboard.plain_text import plain
from crisiscomms.dashboard.reader import browser_locale, reader_zone, when
from crisiscomms.dashboard.session import require
from crisiscomms.identity.roles import Permission
from crisiscomms.incident.views import HoldingStatement, holding_statements, incident_overview
from crisiscomms.playbook.support import SupportGuide, playbook_locales, support_guide

REMEDY_KINDS = {"credit": "Credit", "fee_waiver": "Fee waiver", "refund": "Refund",
                "replacement": "Replacement", "other": "Other"}


def show_statement(statement: HoldingStatement, tz: ZoneInfo, now: datetime) -> None:
    if statement.stage_status == "resolved":
        due = "none: the incident is resolved"
    elif statement.next_update_at is None:
        due = "not promised"
    else:
        due = when(statement.next_update_at, tz, now)
        if statement.next_update_at < now:
            due = f":red[overdue: {due}]"
    title = f" ({plain(statement.stage_title)})" if statement.stage_title else ""
    st.markdown(f"**{statement.locale}** · stage **{plain(statement.stage)}**{title} · "
                f"published {when(statement.published_at, tz, now)} · next update due {due}")
    if statement.previous is not None:
        changed = ", ".join(statement.previous.changed_facts) or "no facts, only the stage"
        st.caption(f"Since stage {plain(statement.previous.stage)} "
                   f"({when(statement.previous.published_at, tz, now)}): changed "
                   f"{plain(changed)}")
    st.code(statement.text, language=None, wrap_lines=True)


def show_guide(guide: SupportGuide) -> None:
    if guide.is_fallback:
        st.caption(f"No {plain(guide.requested_locale)} version in the playbook: showing "
                   f"{plain(guide.locale)}.")
    if guide.remedies:
        st.markdown("**You may grant, without asking**")
        st.dataframe([{"remedy": REMEDY_KINDS[r.kind], "what": r.what, "up to": r.limit,
                       "when": r.when} for r in guide.remedies], hide_index=True)
    if guide.qa:
        st.markdown("**Q&A**")
        for item in guide.qa:
            st.markdown(f"**{plain(item.q)}**  \n{plain(item.a)}")


@st.cache_data(ttl=60, show_spinner=False)
def guide_for(playbook: str, playbooks_dir: str, locale: str) -> SupportGuide | None:
    """The playbook's Q&A and remedies (re-read at most once a minute); None when the
    playbook cannot be read."""
    from pathlib import Path

    try:
        return support_guide(playbook, Path(playbooks_dir), locale)
    except CrisisCommsError:
        return None


@st.cache_data(ttl=60, show_spinner=False)
def locales_of(playbooks: tuple[str, ...], playbooks_dir: str) -> tuple[str, ...]:
    from pathlib import Path

    found: dict[str, None] = {}
    for name in playbooks:
        try:
            found.update(dict.fromkeys(playbook_locales(name, Path(playbooks_dir))))
        except CrisisCommsError:
            continue
    return tuple(found) or ("en",)


user = require(Permission.view_support)
st.title("Holding statements")
st.caption("Say this, word for word: one answer on every channel and from every agent. "
           "Only approved, published statements appear here.")

tz, now = reader_zone(), utcnow()
current = settings()
db, playbooks_dir = engine_for(current), current.playbooks_dir
everything = incident_overview(db)
rows = [r for r in everything if r.status not in ("resolved", "postmortem")] or everything[:5]
if not rows:
    st.info("No incidents.")
    st.stop()
available = locales_of(tuple(sorted({r.playbook for r in rows})), str(playbooks_dir))
locale = st.selectbox("Language", available,
                      index=available.index(browser_locale(available, available[0])),
                      key="locale")
for row in rows:
    # the incident row's title and status may already be an unapproved update's: show the
    # published statement's own
    statements = holding_statements(db, row.id, SupportDeskChannel.name,
                                    playbooks_dir=playbooks_dir)
    statement = statements.get(locale)
    label = row.ref if statement is None else (
        f"{row.ref} · {statement.title} · stage {statement.stage}")
    with st.expander(plain(label), expanded=True):
        if statement is not None:
            show_statement(statement, tz, now)
        elif statements:
            st.warning(f"No {plain(locale)} statement published for this incident; published in: "
                       f"{', '.join(statements)}.")
        else:
            st.write("No holding statement published yet.")
        guide = guide_for(row.playbook, str(playbooks_dir), locale)
        if guide is None:
            st.warning(f"The playbook {plain(row.playbook)!r} cannot be read: no Q&A or "
                       "remedies to show.")
        else:
            show_guide(guide)
