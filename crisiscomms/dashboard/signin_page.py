"""Sign in: a local user's id and password (``crisiscomms users add``), or single sign-on
(``st.login``) when ``.streamlit/secrets.toml`` configures an OIDC provider.

A refused sign-in says only that the id or password is wrong (never which), is audited, and
after ``MAX_FAILURES`` refusals for one id within ``LOCKOUT_S`` that id is locked for the rest of
the window, whatever the password: Argon2 makes one guess slow, the lock makes many impossible.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import streamlit as st

from crisiscomms.core.errors import IdentityError
from crisiscomms.dashboard.data import settings
from crisiscomms.dashboard.session import audit, current_user, oidc_configured, sign_in
from crisiscomms.identity.users import UserStore

MAX_FAILURES = 5
LOCKOUT_S = 15 * 60


class Throttle:
    """Refused sign-ins per typed id in this process, over a sliding window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def locked(self, user_id: str) -> bool:
        with self._lock:
            recent = self._recent(user_id)
            return len(recent) >= MAX_FAILURES

    def failed(self, user_id: str) -> None:
        with self._lock:
            self._recent(user_id).append(time.monotonic())

    def clear(self, user_id: str) -> None:
        with self._lock:
            self._failures.pop(user_id, None)

    def _recent(self, user_id: str) -> deque[float]:
        recent = self._failures.setdefault(user_id, deque(maxlen=MAX_FAILURES))
        while recent and time.monotonic() - recent[0] > LOCKOUT_S:
            recent.popleft()
        return recent


@st.cache_resource(show_spinner=False)
def throttle() -> Throttle:
    return Throttle()


def attempt(user_id: str, password: str) -> str | None:
    """Sign in; the error to show, or None when signed in."""
    typed = user_id.strip().casefold()[:128]
    if not typed or not password:
        return "Enter your user id and password."
    if throttle().locked(typed):
        audit(None, "dashboard.sign_in_refused", typed_id=typed, reason="locked")
        return (f"Too many refused sign-ins for this id: try again in {LOCKOUT_S // 60} "
                "minutes, or ask an admin.")
    try:
        store = UserStore.load(settings().resolved_dashboard_users_path)
    except IdentityError as exc:
        return f"The users file cannot be read: {exc}"
    user = store.authenticate(typed, password)
    if user is None:
        throttle().failed(typed)
        audit(None, "dashboard.sign_in_refused", typed_id=typed, reason="wrong id or password")
        return "Wrong user id or password."
    throttle().clear(typed)
    sign_in(user)
    audit(user, "dashboard.signed_in", method="password")
    return None


st.title("crisiscomms")
if st.session_state.get("signin_error"):
    st.error(st.session_state["signin_error"])
if oidc_configured():
    if st.user.is_logged_in and current_user() is None:
        st.warning(f"Signed in as {st.user.get('email') or 'this account'}, which has no role "
                   "here. Ask an admin to add you: crisiscomms users add ID --email ADDRESS "
                   "--role ROLE.")
        st.button("Sign out", on_click=st.logout)
    else:
        st.button("Sign in with single sign-on", type="primary", on_click=st.login)
    st.divider()
with st.form("signin"):
    st.subheader("Sign in")
    user_id = st.text_input("User id", autocomplete="username")
    password = st.text_input("Password", type="password", autocomplete="current-password")
    if st.form_submit_button("Sign in", type="primary"):
        error = attempt(user_id, password)
        st.session_state["signin_error"] = error
        st.rerun()
st.caption("No account? An admin adds you with `crisiscomms users add`.")
