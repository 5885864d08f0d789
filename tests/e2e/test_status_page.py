"""The status page a drill generates, as a reader sees it in headless Chromium.

Two drills (the outage through resolution, the data incident open in five locales) and two
maintenances (one on a grouped component) build the site; Chromium opens it over HTTP in the
America/New_York time zone: the banner, the components and groups with their uptime bars, the
active incident's timeline with times in the reader's zone, an incident page and the German
page. Screenshots go to the test artifacts (``status_page_readme.png`` is the README's
picture, 1280 wide).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.channels.registry import build_channels
from crisiscomms.channels.status_page import build_status_page
from crisiscomms.core.database import make_engine, session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.ledger import pending_ids
from crisiscomms.delivery.sender import publish_deliveries
from crisiscomms.incident.service import get_incident, load_bundle, plan_bundle
from crisiscomms.statuspage.server import serve_status_page
from crisiscomms.testing.drill import run_drill

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).parent / "artifacts"
SCREENSHOT = ARTIFACTS / "status_page_readme.png"
"""The README's picture (copy it to docs/img/status_page.png when the page changes; a test
never writes into the source tree)."""
ZONE = "America/New_York"
WIDTH = 1280


def _publish_in_process(incident_ref: str, stage: str) -> Mapping[str, Any]:
    """What the flow does, without Prefect: plan the approved stage, publish every row."""
    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(engine) as session:
            bundle = load_bundle(session, get_incident(session, incident_ref), stage)
        plan_bundle(engine, settings, CHANNEL_CLASSES, bundle)
        with session_scope(engine) as session:
            ids = [i for group in pending_ids(session, bundle.message_ids).values()
                   for i in group]
        report = publish_deliveries(engine, build_channels(settings), ids,
                                    playbooks_dir=settings.playbooks_dir, max_attempts=2)
        return {"channels": {}, "errors": report.errors}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("status-page-e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRISISCOMMS_DATA_DIR", str(root / "data"))
        mp.setenv("CRISISCOMMS_STATUS_PAGE_URL", "https://status.example.com")
        for name in ("CRISISCOMMS_DATABASE_URL", "CRISISCOMMS_STATUS_PAGE_DIR",
                     "CRISISCOMMS_SUBSCRIPTIONS_URL"):
            mp.delenv(name, raising=False)
        base = Settings(_env_file=None)  # type: ignore[call-arg]
        for playbook in ("outage", "data_incident"):
            report = run_drill(playbook_name=playbook, recipients=5,
                               publish=_publish_in_process, base=base,
                               data_dir=root / "data")
            assert all(not s["errors"] for s in report["stages"]), report["stages"]
        page = build_status_page(Settings(_env_file=None))  # type: ignore[call-arg]
        now = datetime.now(UTC)
        page.schedule_maintenance(name="Database failover test",
                                  components=["Platform / Database", "Platform / Queue"],
                                  start=now + timedelta(days=3),
                                  end=now + timedelta(days=3, hours=2))
        server = serve_status_page(page.site_path, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def reader(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": WIDTH, "height": 900},
                                  timezone_id=ZONE, locale="en-US")
    page = context.new_page()
    yield page
    context.close()


def test_front_page_banner_components_groups_and_active_timeline(reader: Any,
                                                                 site_url: str) -> None:
    reader.goto(f"{site_url}/")
    banner = reader.locator("p.banner[role=status]")
    assert re.search(r"(Partial|Major|Minor|Degraded).*(Outage|Performance)",
                     banner.inner_text(), re.I), banner.inner_text()
    components = reader.locator("ul.comps > li")
    names = [components.nth(i).locator(".row > span").first.inner_text()
             for i in range(components.count())]
    assert {"API", "Dashboard", "Platform"} <= set(names)
    group = reader.locator("ul.comps > li", has=reader.locator("text=Platform")).first
    assert group.locator("ul li").count() == 2  # Database, Queue
    bars = reader.locator("svg.up[role=img]")
    assert bars.count() >= 4 and "uptime" in (bars.first.get_attribute("aria-label") or "")
    # the open incident, with its timeline in the reader's time zone
    active = reader.locator("section[aria-labelledby=h-active] article").first
    assert "security incident" in active.inner_text()
    stamp = active.locator("ol.tl time").first
    iso = stamp.get_attribute("datetime")
    assert iso is not None
    shown = stamp.inner_text()
    local = datetime.fromisoformat(iso).astimezone(ZoneInfo(ZONE))
    assert f"{local.hour % 12 or 12}:{local.minute:02d}" in shown, (iso, shown)
    assert "UTC" not in shown
    assert reader.evaluate(
        "(iso) => new Intl.DateTimeFormat('en', {dateStyle: 'medium', timeStyle: 'short', "
        f"timeZone: '{ZONE}'}}).format(new Date(iso))", iso) == shown
    assert "Database failover test" in reader.locator(
        "section[aria-labelledby=h-maint]").inner_text()
    assert "API and Dashboard unavailable" in reader.locator(
        "section[aria-labelledby=h-past]").inner_text()  # the resolved outage, this month
    reader.screenshot(path=str(ARTIFACTS / "status_page.png"), full_page=True)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    height = min(1700, int(reader.evaluate("document.documentElement.scrollHeight")))
    reader.screenshot(path=str(SCREENSHOT), full_page=True,
                      clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
    assert SCREENSHOT.stat().st_size < 300_000


def test_incident_page_and_a_german_page(reader: Any, site_url: str) -> None:
    reader.goto(f"{site_url}/incidents/drill-outage-001")  # the link every message carries
    article = reader.locator("main article")
    assert "API and Dashboard unavailable" in article.locator("h2").inner_text()
    statuses = [s.inner_text() for s in article.locator("ol.tl > li > strong").all()]
    assert statuses == ["Resolved", "Identified", "Investigating"]
    permalink = article.get_by_role("link", name="Permanent link to this incident")
    assert permalink.get_attribute("href") == \
        "https://status.example.com/incidents/drill-outage-001.html"
    reader.screenshot(path=str(ARTIFACTS / "status_page_incident.png"), full_page=True)

    reader.goto(f"{site_url}/de/")
    assert reader.locator("html").get_attribute("lang") == "de"
    assert reader.locator("h2#h-active").inner_text() == "Aktuelle Störungen"
    stamp = reader.locator("section[aria-labelledby=h-active] ol.tl time").first
    assert "UTC" not in stamp.inner_text()  # German date, New York time
    reader.locator("nav a[hreflang=en]").first.click()
    reader.wait_for_url(f"{site_url}/index.html")
    reader.screenshot(path=str(ARTIFACTS / "status_page_de.png"), full_page=True)
