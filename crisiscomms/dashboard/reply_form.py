"""The reactions page's "Answer a flagged reaction" form (drawn only for Permission.reply).

Why its own module: the reactions page reads; this part acts (renders, writes the ledger,
sends), and keeping it apart keeps the page's reads and its one action easy to check. The reply
is never free text: the person picks one of the playbook's pre-approved replies and
``reactions/person_replies.py`` sends it as the watcher would, once per author per incident,
audited with the signed-in identity. Customer text is shown only as data (table cells, select
options) and in escaped messages.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st
from sqlmodel import Session

from crisiscomms.channels.registry import build_channels, configured_rates
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.dashboard.data import engine, settings
from crisiscomms.dashboard.plain_text import plain
from crisiscomms.dashboard.playbooks import playbook
from crisiscomms.dashboard.session import audit, require
from crisiscomms.identity.roles import Permission
from crisiscomms.reactions.person_replies import (
    answerable_flagged,
    incident_playbook,
    send_reply,
)
from crisiscomms.reactions.replies import send_policy

RESULT_KEY = "reply_result"


def _send(incident_ref: str) -> None:
    """The "Send reply" button (re-checks the permission when the click arrives)."""
    user = require(Permission.reply)
    reaction_id = st.session_state.get("reply_reaction")
    rule_id = st.session_state.get("reply_rule")
    if reaction_id is None or rule_id is None:
        st.session_state[RESULT_KEY] = ("error", "Choose a flagged reaction and a reply.")
        return
    config = settings()
    policy = replace(send_policy(config), rate_per_s=configured_rates(config))
    try:
        sent = send_reply(engine(), config, build_channels(config), incident_ref=incident_ref,
                          reaction_id=int(reaction_id), rule_id=str(rule_id),
                          actor=user.identity.id, policy=policy)
    except CrisisCommsError as exc:
        st.session_state[RESULT_KEY] = ("error", f"Not sent, nothing was written: {exc}")
        return
    audit(user, "reply.sent", None, incident_ref=incident_ref, reaction_id=int(reaction_id),
          rule=str(rule_id), delivery_key=sent.delivery_key, state=sent.state)
    if sent.state == "sent":
        st.session_state[RESULT_KEY] = (
            "success", f"Reply {rule_id} sent to reaction #{reaction_id} on {sent.channel} "
                       f"({sent.locale}).")
    else:
        st.session_state[RESULT_KEY] = (
            "warning", f"Reply {rule_id} to reaction #{reaction_id} is {sent.state}: "
                       f"{sent.error or ''} (see the Failures page).")


def reply_form(incident_ref: str) -> None:
    """The form, for someone who may reply (the caller checks ``user.may(Permission.reply)``)."""
    st.subheader("Answer a flagged reaction")
    st.caption("With one of the playbook's pre-approved replies only, once per person per "
               "incident, on the reaction's own channel and in its language.")
    result = st.session_state.pop(RESULT_KEY, None)
    if result is not None:
        kind, text = result
        getattr(st, kind)(plain(text))
    with Session(engine()) as session:
        candidates = answerable_flagged(session, incident_ref)
    rules = [rule.id for rule in playbook(incident_playbook(engine(), incident_ref))
             .listening.replies]
    if not rules:
        st.caption("This incident's playbook has no pre-approved replies.")
        return
    if not candidates:
        st.caption("No flagged reaction left to answer.")
        return
    st.dataframe([{"id": c.id, "source": c.source, "author": c.author,
                   "reasons": ", ".join(c.reasons), "text": c.text} for c in candidates],
                 hide_index=True)
    labels = {c.id: c.label() for c in candidates}
    with st.form("reply_form"):
        st.selectbox("Flagged reaction", list(labels), format_func=lambda i: labels[i],
                     key="reply_reaction")
        st.selectbox("Pre-approved reply", rules, key="reply_rule")
        st.form_submit_button("Send reply", on_click=_send, args=(incident_ref,))
