"""The dashboard and the status page as a person sees them, in headless Chromium."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crisiscomms.core.settings import Settings
from crisiscomms.statuspage.server import serve_status_page
from crisiscomms.testing.drill import environment, workspace_environment
from crisiscomms.testing.emulators import start_emulators
from tests.e2e.conftest import (
    e2e_users,
    publish_outage_acknowledgement,
    run_dashboard,
    sign_in,
)

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).parent / "artifacts"
REF = "E2E-OUTAGE-1"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An acknowledged outage published through the real channels to the emulators."""
    root = tmp_path_factory.mktemp("e2e")
    with start_emulators(sendgrid_key="SG.e2e", x_token="e2e") as pair:
        env = {
            **workspace_environment(root, pair, "SG.e2e", "e2e",
                                    database_url=f"sqlite:///{root / 'crisiscomms.db'}"),
        }
        with environment(env):
            settings = Settings(_env_file=None)  # type: ignore[call-arg]
            engine, report = publish_outage_acknowledgement(settings, REF, 250)
            assert report.failed == 0
            # the update is rendered and stored but nobody approved it: support never sees it
            from crisiscomms.channels import CHANNEL_CLASSES
            from crisiscomms.incident.service import trigger

            update = trigger(engine, settings, CHANNEL_CLASSES, playbook_name="outage",
                             facts={"incident_ref": REF}, stage="update", actor="e2e")
            assert not update.approved
            engine.dispose()
            yield {**env, "site": str(settings.resolved_status_page_dir / "site")}


@pytest.fixture(scope="module")
def dashboard_url(published: dict[str, str]) -> Iterator[str]:
    env = {k: v for k, v in published.items() if k.startswith("CRISISCOMMS")}
    yield from run_dashboard({**os.environ, **env,
                              **e2e_users(Path(env["CRISISCOMMS_DATA_DIR"]))})


def test_dashboard_lists_the_incident_with_channel_counts(browser, dashboard_url: str) -> None:
    page = sign_in(browser, dashboard_url, "pr-lead")
    table = page.locator("table").first
    table.wait_for(timeout=60_000)
    text = table.inner_text()
    assert REF in text
    assert "250/250" in text  # email: recipients sent / planned
    assert "5/5" in text  # X, status page, support: one message per language
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.get_by_role("link", name="Holding statements").click()
    page.get_by_text("Say this, word for word").wait_for(timeout=30_000)
    page.get_by_text(REF).first.wait_for(timeout=30_000)  # the expander renders after
    page.get_by_text("What to say (paste as is)").first.wait_for(timeout=30_000)
    page.get_by_text("stage acknowledge").first.wait_for(timeout=30_000)
    body = page.locator("body").inner_text()
    assert "next update due" in body
    assert "We've found what's causing the problem" not in body  # the unapproved update
    assert "stage update" not in body
    # the statement itself lists what an agent may grant without asking (the playbook's remedies)
    assert "What you may grant (no need to ask)" in body
    assert "A service credit on the next invoice" in body
    page.screenshot(path=str(ARTIFACTS / "holding_statements.png"), full_page=True)
    page.close()


def test_status_page_shows_the_incident(browser, published: dict[str, str]) -> None:
    server = serve_status_page(Path(published["site"]), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{server.server_port}/")
        body = page.locator("body").inner_text()
        assert "API and Dashboard unavailable for some customers" in body
        assert "nvestigating" in body
        page.screenshot(path=str(ARTIFACTS / "status_page.png"), full_page=True)
        page.close()
    finally:
        server.shutdown()
