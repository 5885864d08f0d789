"""Who is signed in, and the gate every page passes: :func:`require`.

A session holds a :class:`~crisiscomms.identity.users.DashboardUser` once the sign-in page
(``signin_page.py``) checked a local user's password, or once ``st.login`` (OIDC) signed them in
and the users file lists their verified e-mail. It lasts ``Settings.dashboard_session_minutes``.
A session without a user sees the sign-in page only; a page asks :func:`require` for the
permission it needs (``identity/roles.py``) and shows nothing else to anyone without it, even when
its URL is typed by hand. Every action a page takes is audited with the signed-in identity
(:func:`audit`), the id the two-person rule compares.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from crisiscomms.core.database import session_scope
from crisiscomms.identity.roles import Permission
from crisiscomms.identity.users import DashboardUser, UserStore

USER_KEY = "crisiscomms_user"
"""``st.session_state`` key of the signed-in :class:`DashboardUser`."""
SIGNED_IN_KEY = "crisiscomms_signed_in_at"
"""``st.session_state`` key of the sign-in time (``time.monotonic()``)."""


def oidc_configured() -> bool:
    """Whether ``st.login`` has a provider (an ``[auth]`` section in ``secrets.toml``)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all: Streamlit raises its own error type
        return False


def sign_in(user: DashboardUser) -> None:
    st.session_state[USER_KEY] = user
    st.session_state[SIGNED_IN_KEY] = time.monotonic()


def sign_out() -> None:
    for key in (USER_KEY, SIGNED_IN_KEY):
        st.session_state.pop(key, None)
    if oidc_configured() and st.user.is_logged_in:
        st.logout()


def current_user() -> DashboardUser | None:
    """The signed-in person, or None (expired sessions are signed out)."""
    from crisiscomms.dashboard.data import settings

    user = st.session_state.get(USER_KEY)
    if isinstance(user, DashboardUser):
        started = st.session_state.get(SIGNED_IN_KEY, 0.0)
        if time.monotonic() - started <= settings().dashboard_session_minutes * 60:
            return user
        sign_out()
        return None
    if oidc_configured() and st.user.is_logged_in:
        store = UserStore.load(settings().resolved_dashboard_users_path)
        found = store.by_email(_claim("email"), verified=bool(_claim("email_verified")))
        if found is not None:
            sign_in(found)
            audit(found, "dashboard.signed_in", method="oidc")
        return found
    return None


def _claim(name: str) -> Any:
    try:
        return st.user.get(name)
    except Exception:  # not signed in through OIDC
        return None


def require(permission: Permission) -> DashboardUser:
    """The signed-in user when they may ``permission``; otherwise the page says why and
    stops here, before it reads or changes anything."""
    user = current_user()
    if user is None:
        st.warning("Sign in to see this page.")
        st.stop()
    if not user.may(permission):
        roles = ", ".join(sorted(r.value for r in user.roles))
        st.error(f"Your roles ({roles}) do not allow this page.")
        st.stop()
    return user


def audit(user: DashboardUser | None, action: str, incident_id: int | None = None,
          **detail: Any) -> None:
    """One audit row for a dashboard action, by the signed-in identity (``anonymous`` for a
    refused sign-in); the engine's own actions (trigger, approve) audit themselves."""
    from crisiscomms.dashboard.data import engine
    from crisiscomms.incident.service import audit as append

    with session_scope(engine()) as session:
        append(session, user.identity if user is not None else "anonymous", action, incident_id,
               via="dashboard", **detail)
