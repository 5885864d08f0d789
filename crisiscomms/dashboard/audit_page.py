"""The audit trail (admins): who did what, when, newest first; and who may sign in."""

from __future__ import annotations

import streamlit as st

from crisiscomms.dashboard.data import engine, settings
from crisiscomms.dashboard.session import require
from crisiscomms.identity.roles import Permission
from crisiscomms.identity.users import UserStore
from crisiscomms.identity.views import audit_trail

require(Permission.view_audit)
st.title("Audit trail")
action = st.text_input("Action starts with", placeholder="stage., approval., dashboard.")
rows = audit_trail(engine(), action_prefix=action.strip() or None, limit=500)
st.dataframe([{"at (UTC)": r.at.strftime("%Y-%m-%d %H:%M:%S"), "actor": r.actor,
               "action": r.action, "incident": r.incident_ref or "", "detail": r.detail}
              for r in rows], hide_index=True)

st.subheader("Users")
st.caption("Change them with `crisiscomms users add|set|remove` (the file is a secret).")
store = UserStore.load(settings().resolved_dashboard_users_path)
st.dataframe([{"id": r.id, "name": r.display_name,
               "roles": ", ".join(sorted(x.value for x in r.roles)),
               "sign-in": "password" if r.password_hash else f"single sign-on ({r.email})"}
              for r in store.records.values()], hide_index=True)
