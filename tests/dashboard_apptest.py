"""Running dashboard pages with Streamlit's AppTest, signed in as a role (or not at all).

``open_page("support_page.py", Role.support)`` returns an AppTest of that page whose session
holds a signed-in user with those roles (the state ``signin_page.py`` leaves after a password
check), ready to ``.run()``; with no role, nobody is signed in. ``open_app(...)`` does the same
for ``app.py``, whose navigation shows only the pages the roles allow. The database comes from
the ``dashboard_db`` fixture (tests/integration/conftest.py), which points the settings at a
fresh SQLite file and clears Streamlit's caches around the test.
"""

from __future__ import annotations

import time

from repo_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest

from crisiscomms.dashboard.session import SIGNED_IN_KEY, USER_KEY
from crisiscomms.identity.identities import Identity
from crisiscomms.identity.roles import Role
from crisiscomms.identity.users import DashboardUser

DASHBOARD = PROJECT_ROOT / "crisiscomms" / "dashboard"


def user(*roles: Role, user_id: str | None = None) -> DashboardUser:
    uid = user_id or "-".join(r.value for r in roles).replace("_", "-") or "nobody"
    return DashboardUser(Identity(uid, uid.title(), "dashboard"), frozenset(roles))


def _signed_in(app: AppTest, roles: tuple[Role, ...], user_id: str | None) -> AppTest:
    if roles:
        app.session_state[USER_KEY] = user(*roles, user_id=user_id)
        app.session_state[SIGNED_IN_KEY] = time.monotonic()
    return app


def open_page(file: str, *roles: Role, user_id: str | None = None,
              timeout: float = 60) -> AppTest:
    """An AppTest of one page, signed in with ``roles`` (none: signed out)."""
    return _signed_in(AppTest.from_file(str(DASHBOARD / file), default_timeout=timeout), roles,
                      user_id)


def open_app(*roles: Role, user_id: str | None = None, timeout: float = 60) -> AppTest:
    """An AppTest of the whole app (navigation by role), signed in with ``roles``."""
    return _signed_in(AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=timeout),
                      roles, user_id)


def texts(app: AppTest) -> str:
    """Every piece of text the run showed (titles, markdown, captions, alerts), joined."""
    parts = [*app.title, *app.header, *app.subheader, *app.markdown, *app.caption, *app.info,
             *app.warning, *app.error, *app.success, *app.code]
    return "\n".join(str(p.value) for p in parts)
