"""Headless Chromium (Debian's ``chromium``) driven by Playwright, and a published incident."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from crisiscomms.core.settings import Settings
from crisiscomms.delivery.sender import PublishReport
from crisiscomms.identity.identities import system_identity
from crisiscomms.testing.pgcluster import free_port

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("Debian's chromium is not installed: `make test` installs it "
                       "(apt-get install chromium chromium-driver)")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


E2E_PASSWORD = "e2e password of every role"
E2E_USERS = {"pr-lead": ("pr_lead",), "approver-1": ("approver",), "approver-2": ("approver",),
             "support": ("support",), "executive": ("executive",), "admin": ("admin",)}
"""One person per role (two approvers for the two-person rule), all with ``E2E_PASSWORD``."""


def e2e_users(root: Path) -> dict[str, str]:
    """The users file of an e2e dashboard (``E2E_USERS``) under ``root``; its environment."""
    from crisiscomms.identity.users import UserStore

    path = root / "dashboard_users.toml"
    if not path.exists():
        store = UserStore.load(path)
        for user_id, roles in E2E_USERS.items():
            store.add(user_id, display_name=user_id.replace("-", " ").title(), roles=roles,
                      password=E2E_PASSWORD)
    return {"CRISISCOMMS_DASHBOARD_USERS_PATH": str(path)}


def sign_in(browser: Any, url: str, user_id: str, *, path: str = "",
            viewport: Mapping[str, int] | None = None) -> Any:
    """A new page of ``browser`` (or of a context) signed in to the dashboard at ``url`` as
    ``user_id`` through the sign-in form, then at ``path`` (a page's title in the menu; in-app
    navigation keeps the session)."""
    page = browser.new_page()  # a Browser or a BrowserContext (with its own permissions)
    page.set_viewport_size(dict(viewport or {"width": 1400, "height": 900}))
    page.goto(url)
    page.get_by_label("User id").fill(user_id)
    page.get_by_label("Password", exact=True).fill(E2E_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for(timeout=60_000)
    if path:
        page.get_by_role("link", name=path).first.click()
    return page


def run_dashboard(env: Mapping[str, str], *, port: int | None = None,
                  cwd: Path | None = None) -> Iterator[str]:
    """Start the Streamlit dashboard on a loopback port (default: a free one) with ``env``
    from ``cwd`` (where Streamlit looks for ``.streamlit/secrets.toml``); yield its URL once
    its health check answers; stop it afterwards (the body of each page's fixture)."""
    port = port or free_port()
    from crisiscomms.cli.users import dashboard_command

    # its log goes to a file: a pipe nobody reads would block it once full
    with tempfile.TemporaryFile(prefix="dashboard-", suffix=".log") as log:
        proc = subprocess.Popen(dashboard_command("127.0.0.1", port), env=dict(env),
                                stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            proc.kill()
            log.seek(0)
            raise RuntimeError(f"dashboard did not start: {log.read()[-3000:].decode()}")
        try:
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a page still publishing: stop it hard
                proc.kill()
                proc.wait(timeout=10)


def publish_outage_acknowledgement(
    settings: Settings, ref: str, recipients: int, *,
    before_publish: Callable[[], None] = lambda: None,
) -> tuple[Engine, PublishReport]:
    """``recipients`` drill subscribers, the outage acknowledged as ``ref``, planned and
    published through the real channels without Prefect (a dashboard page needs data, not a
    flow). ``before_publish`` runs between planning and sending (stop an emulator there)."""
    from crisiscomms.channels import CHANNEL_CLASSES
    from crisiscomms.channels.registry import build_channels
    from crisiscomms.core.database import init_db, make_engine, session_scope
    from crisiscomms.delivery.ledger import pending_ids
    from crisiscomms.delivery.sender import publish_deliveries
    from crisiscomms.incident.service import plan_bundle, trigger
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.testing.audiences import ensure_drill_audience

    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    with session_scope(engine) as session:
        ensure_drill_audience(session, recipients)
    facts = {**load_playbook("outage", settings.playbooks_dir).drill_facts, "incident_ref": ref}
    bundle = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage", facts=facts,
                     actor=system_identity("e2e"))
    plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
    with session_scope(engine) as session:
        ids = [i for group in pending_ids(session, bundle.message_ids).values() for i in group]
    before_publish()
    report = publish_deliveries(engine, build_channels(settings), ids,
                                playbooks_dir=settings.playbooks_dir, max_attempts=2)
    return engine, report
