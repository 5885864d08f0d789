"""The unified holding statement: what every support agent says, per open incident."""

from __future__ import annotations

import streamlit as st

from crisiscomms.channels.support_desk import SupportDeskChannel
from crisiscomms.dashboard.data import engine
from crisiscomms.incident.views import holding_statements, incident_overview

st.title("Holding statements")
st.caption("Say this, word for word: one answer on every channel and from every agent.")

rows = [r for r in incident_overview(engine()) if r.status != "resolved"] or incident_overview(
    engine())[:5]
if not rows:
    st.info("No incidents.")
for row in rows:
    with st.expander(f"{row.ref} · {row.title} · {row.status}", expanded=True):
        statements = holding_statements(engine(), row.id, SupportDeskChannel.name)
        if not statements:
            st.write("No holding statement published yet.")
        for locale, text in statements.items():
            st.markdown(f"**{locale}**")
            st.code(text, language=None, wrap_lines=True)
