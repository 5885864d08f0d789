"""Links between dashboard pages that degrade to text when the target is not reachable.

``st.page_link`` to a file works only for a page the running app registered with
``st.navigation`` (``app.py`` registers just the pages the signed-in person's roles allow, and a
page run on its own, as AppTest does, registers none). A link to a page someone may not open
would be refused by that page anyway; showing its label as plain text keeps the hint without
raising.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError


def page_link(file: str, label: str, *, query: Mapping[str, str] | None = None,
              icon: str | None = None) -> None:
    """A link to ``file`` (a page of this folder) with ``query`` parameters, or its label as
    text when this session's navigation does not hold that page."""
    try:
        st.page_link(file, label=label, icon=icon, query_params=dict(query or {}) or None)
    except StreamlitPageNotFoundError:
        st.text(label)
