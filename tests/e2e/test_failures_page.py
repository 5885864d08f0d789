"""The Failures page: X is down during the publish, the row shows X's reason; X comes back, one
click re-sends, the row goes away and X has each post exactly once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crisiscomms.core.settings import Settings
from crisiscomms.incident.views import delivery_failures
from crisiscomms.testing.drill import environment, workspace_environment
from crisiscomms.testing.emulators import EmulatorPair, start_emulators
from tests.e2e.conftest import e2e_users, publish_outage_acknowledgement, run_dashboard, sign_in

pytestmark = pytest.mark.e2e
REF = "E2E-FAILURES-1"


@pytest.fixture(scope="module")
def x_down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An outage acknowledgement published while the X emulator is stopped: X rows fail."""
    root = tmp_path_factory.mktemp("e2e-failures")
    with start_emulators(sendgrid_key="SG.e2e-f", x_token="e2e-f") as pair:
        env = {
            **workspace_environment(root, pair, "SG.e2e-f", "e2e-f",
                                    database_url=f"sqlite:///{root / 'crisiscomms.db'}"),
            "CRISISCOMMS_MAX_ATTEMPTS": "2",
            "CRISISCOMMS_HTTP_TIMEOUT_S": "2",
        }
        with environment(env):
            settings = Settings(_env_file=None)  # type: ignore[call-arg]
            # X is down: connection refused, nothing reaches it
            engine, report = publish_outage_acknowledgement(settings, REF, 50,
                                                            before_publish=pair.x.stop)
            failed_x = [f for f in delivery_failures(engine, REF) if f.channel == "x"]
            assert report.failed > 0 and failed_x
            assert {f.channel for f in delivery_failures(engine, REF)} == {"x"}
            engine.dispose()
            yield {"env": env, "pair": pair, "failed_x": len(failed_x)}


@pytest.fixture(scope="module")
def dashboard_url(x_down: dict[str, Any]) -> Iterator[str]:
    root = Path(x_down["env"]["CRISISCOMMS_DATA_DIR"])
    yield from run_dashboard({**os.environ, **x_down["env"], **e2e_users(root)})


def test_retry_failed_x_posts_once_and_clears_the_row(browser: Any, dashboard_url: str,
                                                      x_down: dict[str, Any]) -> None:
    pair: EmulatorPair = x_down["pair"]
    page = sign_in(browser, dashboard_url, "pr-lead", path="Failures")
    page.get_by_role("heading", name=f"{REF} · x").wait_for(timeout=60_000)
    table = page.locator("table").first
    assert "failed" in table.inner_text()
    assert "X unreachable" in table.inner_text()  # the provider's reason, as recorded
    assert pair.x.stats()["accepted_messages"] == 0

    pair.x.start()  # X is healthy again (same port)
    page.get_by_role("button", name="Retry failed").click()
    page.get_by_text(f"{REF} · x: re-sent").wait_for(timeout=60_000)
    page.get_by_text("No failed or unconfirmed deliveries.").wait_for(timeout=30_000)
    assert page.get_by_role("heading", name=f"{REF} · x").count() == 0
    assert "0 failed, 0 unconfirmed" in page.get_by_text(f"{REF} · x: re-sent").inner_text()

    posts = pair.x.received()
    assert len(posts) == x_down["failed_x"]  # one post per failed X row
    assert len({p["text"] for p in posts}) == len(posts)
    assert pair.x.stats()["duplicates"] == 0  # nothing was attempted twice
    page.close()
