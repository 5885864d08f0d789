"""crisiscomms dashboard: ``crisiscomms dashboard`` (binds 127.0.0.1 unless told otherwise).

A session without a signed-in user sees the sign-in page only. A signed-in person sees the pages
their roles allow (``pages.py``), grouped by section, their home page first; every page checks
its permission again (``session.require``). Pages read through the domain's views (no SQL of
their own) and act through the engine's services, as the signed-in identity.
"""

from __future__ import annotations

import streamlit as st

from crisiscomms.dashboard.pages import pages_for
from crisiscomms.dashboard.session import current_user, sign_out

st.set_page_config(page_title="crisiscomms", page_icon=":material/campaign:", layout="wide")

user = current_user()
if user is None:
    st.navigation([st.Page("signin_page.py", title="Sign in", icon=":material/login:",
                           url_path="signin", default=True)], position="hidden").run()
else:
    sections: dict[str, list[st.Page]] = {}
    for index, page in enumerate(pages_for(user)):
        sections.setdefault(page.section, []).append(st.Page(
            page.file, title=page.title, icon=page.icon, url_path=page.url_path,
            default=index == 0))
    with st.sidebar:
        roles = ", ".join(sorted(r.value for r in user.roles))
        st.caption(f"Signed in as **{user.identity.display_name}** (`{user.identity.id}`) · "
                   f"{roles}")
        st.button("Sign out", on_click=sign_out, key="sign_out")
    if not sections:  # a user whose roles open no page: not possible with today's roles
        st.error("Your roles open no page here.")
        st.stop()
    st.navigation(sections).run()
