"""Single sign-on: the dashboard's ``st.login`` against a real OpenID Connect provider on
loopback (``crisiscomms.testing.oidc_provider``: discovery, code + PKCE, an RS256 ID token
checked against its JWKS). A person whose verified e-mail the users file lists gets their
roles; an account the file does not list is signed in to the provider but sees no page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from crisiscomms.identity.users import UserStore
from crisiscomms.testing.asgi import serve_app
from crisiscomms.testing.oidc_provider import OidcProvider
from crisiscomms.testing.pgcluster import free_port
from tests.e2e.conftest import ARTIFACTS, run_dashboard
from tests.repo_paths import PROJECT_ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("sso")
    idp_port, port = free_port(), free_port()
    provider = OidcProvider(f"http://127.0.0.1:{idp_port}")
    with serve_app(provider.app(), idp_port, name="oidc-provider"):
        (root / ".streamlit").mkdir()
        (root / ".streamlit" / "secrets.toml").write_text(
            "[auth]\n"
            f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
            'cookie_secret = "a cookie secret only this test knows"\n'
            f'client_id = "{provider.client_id}"\n'
            f'client_secret = "{provider.client_secret}"\n'
            f'server_metadata_url = "{provider.issuer}/.well-known/openid-configuration"\n',
            encoding="utf-8")
        users = root / "data" / "dashboard_users.toml"
        UserStore.load(users).add("dana", display_name="Dana Executive", roles=["executive"],
                                  email="dana@example.com")
        env = {**os.environ, "CRISISCOMMS_WORKSPACE": str(PROJECT_ROOT),
               "CRISISCOMMS_DATA_DIR": str(root / "data"), "CRISISCOMMS_MODE": "drill",
               "CRISISCOMMS_DASHBOARD_USERS_PATH": str(users)}
        for url in run_dashboard(env, port=port, cwd=root):
            yield {"url": url, "provider": provider}


def _sign_in_with_sso(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(url)
    page.get_by_role("button", name="Sign in with single sign-on").click()
    return page


def test_a_listed_verified_email_signs_in_with_its_roles(browser: Any,
                                                         sso: dict[str, Any]) -> None:
    sso["provider"].account = {"sub": "idp|42", "email": "Dana@example.com",
                               "email_verified": True, "name": "Dana"}
    page = _sign_in_with_sso(browser, sso["url"])
    page.get_by_text("Signed in as").wait_for(timeout=60_000)
    sidebar = page.locator("[data-testid=stSidebar]").inner_text()
    assert "Dana Executive" in sidebar and "dana" in sidebar and "executive" in sidebar
    page.screenshot(path=str(ARTIFACTS / "sso_signed_in.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("account", [
    {"sub": "idp|7", "email": "eve@example.com", "email_verified": True},
    {"sub": "idp|8", "email": "dana@example.com", "email_verified": False},
], ids=["unlisted", "unverified"])
def test_an_account_without_a_role_sees_only_the_sign_in_page(
        browser: Any, sso: dict[str, Any], account: dict[str, Any]) -> None:
    sso["provider"].account = account
    page = _sign_in_with_sso(browser, sso["url"])
    page.get_by_text("which has no role here").wait_for(timeout=60_000)
    page.get_by_label("User id").wait_for(timeout=30_000)  # still the sign-in page
    assert page.locator("[data-testid=stSidebar]").count() == 0  # no menu, no page
    assert page.get_by_role("link", name="Overview").count() == 0
    page.close()
