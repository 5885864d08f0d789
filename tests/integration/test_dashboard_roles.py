"""The dashboard's gate, run by AppTest: signed out, only the sign-in page; signed in, the pages
of one's roles; a password check that refuses, throttles and audits."""

from __future__ import annotations

import pytest
from dashboard_apptest import open_app, open_page, texts
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from crisiscomms.dashboard.pages import PAGES
from crisiscomms.identity.models import AuditEvent
from crisiscomms.identity.roles import ROLE_PERMISSIONS, Role
from crisiscomms.identity.users import UserStore

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery staple"


def test_signed_out_sees_only_the_sign_in_form(dashboard_db: Engine) -> None:
    app = open_app().run()
    assert not app.exception, [e.value for e in app.exception]
    assert [t.label for t in app.text_input] == ["User id", "Password"]
    assert "Sign in" in texts(app)
    assert not app.table and not app.dataframe


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.url_path)
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_every_page_refuses_every_role_without_its_permission(
        dashboard_db: Engine, page: object, role: Role) -> None:
    from crisiscomms.dashboard.pages import PageSpec

    assert isinstance(page, PageSpec)
    app = open_page(page.file, role).run()
    assert not app.exception, [e.value for e in app.exception]
    if page.permission in ROLE_PERMISSIONS[role]:
        assert not [e.value for e in app.error if "do not allow" in str(e.value)]
    else:
        assert [e.value for e in app.error] == [f"Your roles ({role.value}) do not allow "
                                                "this page."]
        assert not app.table and not app.dataframe and not app.button


def test_signed_out_page_url_shows_nothing(dashboard_db: Engine) -> None:
    app = open_page("support_page.py").run()
    assert [w.value for w in app.warning] == ["Sign in to see this page."]
    assert not app.code and not app.table


def test_password_sign_in_then_refusals_lock_the_id(dashboard_db: Engine,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path) -> None:
    import streamlit as st

    users = tmp_path / "users.toml"
    monkeypatch.setenv("CRISISCOMMS_DASHBOARD_USERS_PATH", str(users))
    UserStore.load(users).add("sam", display_name="Sam Support", roles=["support"],
                              password=PASSWORD)
    st.cache_resource.clear()

    app = open_app().run()
    app.text_input[0].input("sam")
    app.text_input[1].input("wrong password!!")
    app.button[0].click().run()
    assert [e.value for e in app.error] == ["Wrong user id or password."]
    for _ in range(4):
        app.text_input[1].input("wrong password!!")
        app.button[0].click().run()
    app.text_input[1].input(PASSWORD)
    app.button[0].click().run()  # locked now, even with the right password
    assert "Too many refused sign-ins" in str(app.error[0].value)

    st.cache_resource.clear()  # a new process (or the window passed): the lock is gone
    app = open_app().run()
    app.text_input[0].input("SAM ")
    app.text_input[1].input(PASSWORD)
    app.button[0].click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert "Holding statements" in texts(app)  # support's home page
    assert "Sam Support" in texts(app)
    with Session(dashboard_db) as session:
        actions = [(a.actor, a.action) for a in session.exec(select(AuditEvent))]
    assert actions.count(("anonymous", "dashboard.sign_in_refused")) == 6
    assert actions[-1] == ("sam", "dashboard.signed_in")
