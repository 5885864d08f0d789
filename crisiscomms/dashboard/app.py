"""crisiscomms dashboard: ``streamlit run dashboard/app.py``.

One page per job (st.navigation). Pages read through engine functions (crisiscomms.incident.views),
never raw SQL.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="crisiscomms", page_icon=":material/campaign:", layout="wide")

pages = st.navigation(
    [
        st.Page("incidents_page.py", title="Incidents", icon=":material/emergency:", default=True),
        st.Page("support_page.py", title="Holding statements", icon=":material/support_agent:"),
        st.Page("failures_page.py", title="Failures", icon=":material/error:"),
        st.Page("reactions_page.py", title="Reactions", icon=":material/forum:",
                url_path="reactions"),
    ]
)
pages.run()
