"""The status page a drill writes, read the way machines and people read it.

Two drills share one status page (the outage in English through all three stages, the data
incident in five locales, left open), with a completed and an upcoming maintenance: every
generated ``api/v2`` document fits the Statuspage v2 shapes, the feeds parse with feedparser,
every shortlink and every link our messages carry lands on a page, a maintained Statuspage
reader from PyPI (``statuspage-prometheus-exporter``) reads the served summary unchanged, and a
stage the lifecycle refuses stops at trigger with nothing sent.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from repo_paths import PROJECT_ROOT
from sqlalchemy import func, select
from statuspage_v2 import PATHS, check_document
from typer.testing import CliRunner

from crisiscomms.channels.status_page import build_status_page
from crisiscomms.cli import app
from crisiscomms.cli.common import publish
from crisiscomms.core.database import make_engine, session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.delivery.models import Delivery
from crisiscomms.statuspage.page import StatusPage
from crisiscomms.statuspage.server import serve_status_page
from crisiscomms.testing.drill import run_drill
from crisiscomms.testing.emulators import EmulatorPair

pytestmark = pytest.mark.integration
PAGE_URL = "https://status.example.com"
LOCALES = ("en", "es", "fr", "de", "ja")


@dataclass
class Drill:
    site: Path
    sent: list[dict[str, Any]]
    settings: Settings
    base_url: str


def _serve(site: Path) -> tuple[str, Any]:
    server = serve_status_page(site, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Iterator[Drill]:
    root = tmp_path_factory.mktemp("sp-drill")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRISISCOMMS_DATA_DIR", str(root / "data"))
        mp.setenv("CRISISCOMMS_STATUS_PAGE_URL", PAGE_URL)
        for name in ("CRISISCOMMS_DATABASE_URL", "CRISISCOMMS_STATUS_PAGE_DIR",
                     "CRISISCOMMS_SUBSCRIPTIONS_URL"):
            mp.delenv(name, raising=False)
        base = Settings(_env_file=None)  # type: ignore[call-arg]
        sent: list[dict[str, Any]] = []
        for playbook in ("outage", "data_incident"):
            out = root / f"out-{playbook}"
            report = run_drill(playbook_name=playbook, recipients=10, publish=publish,
                               base=base, data_dir=root / "data", out=out)
            assert all(not s["errors"] for s in report["stages"]), report["stages"]
            sent += [json.loads(line) for line in (out / "sent.jsonl").read_text().splitlines()]
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        now = datetime.now(UTC)
        earlier = build_status_page(settings)
        earlier.clock = lambda: now - timedelta(hours=3)
        earlier.schedule_maintenance(name="Database upgrade", components=["API"],
                                     start=now - timedelta(hours=2), end=now - timedelta(hours=1))
        page = build_status_page(settings)
        page.schedule_maintenance(name="Network maintenance", components=["Dashboard"],
                                  start=now + timedelta(days=2),
                                  end=now + timedelta(days=2, hours=2))
        site = page.site_path
        url, server = _serve(site)
        try:
            yield Drill(site=site, sent=sent, settings=settings, base_url=url)
        finally:
            server.shutdown()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _json(site: Path, path: str) -> dict[str, Any]:
    data = json.loads((site / path).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_every_generated_api_document_fits_the_v2_shapes(drill: Drill) -> None:
    documents = sorted(drill.site.rglob("api/v2/**/*.json"))
    by_locale: dict[str, set[str]] = {}
    for path in documents:
        relative = path.relative_to(drill.site).as_posix()
        prefix, _, api_path = relative.partition("api/v2/")
        by_locale.setdefault(prefix.rstrip("/") or "en", set()).add(api_path)
        assert check_document(api_path, json.loads(path.read_text())) == [], relative
    assert set(by_locale) == set(LOCALES)  # the root is the playbooks' default locale, en
    assert all(paths == set(PATHS) for paths in by_locale.values()), by_locale
    summary = _json(drill.site, "api/v2/summary.json")
    assert summary["page"]["url"] == PAGE_URL
    assert [i["id"] for i in summary["incidents"]] == ["drill-data-001"]
    assert summary["status"]["indicator"] in ("minor", "major", "critical")
    maintenances = _json(drill.site, "api/v2/scheduled-maintenances.json")
    assert {m["name"]: m["status"] for m in maintenances["scheduled_maintenances"]} == {
        "Database upgrade": "completed", "Network maintenance": "scheduled"}
    upcoming = _json(drill.site, "api/v2/scheduled-maintenances/upcoming.json")
    assert [m["name"] for m in upcoming["scheduled_maintenances"]] == ["Network maintenance"]


def test_feeds_parse_and_link_to_the_incident_pages(drill: Drill) -> None:
    for locale in LOCALES:
        prefix = "" if locale == "en" else f"{locale}/"
        incidents = _json(drill.site, f"{prefix}api/v2/incidents.json")["incidents"]
        for name, version in (("history.atom", "atom10"), ("history.rss", "rss20")):
            feed = feedparser.parse((drill.site / prefix / name).read_bytes())
            assert not feed.bozo, (locale, name, feed.get("bozo_exception"))
            assert feed.version == version
            assert {e.link for e in feed.entries} == {i["shortlink"] for i in incidents}


def test_ids_shortlinks_and_message_links_all_land_on_pages(drill: Drill) -> None:
    incidents = _json(drill.site, "api/v2/incidents.json")["incidents"]
    assert {i["id"] for i in incidents} == {"drill-outage-001", "drill-data-001"}
    outage = next(i for i in incidents if i["id"] == "drill-outage-001")
    assert [u["status"] for u in outage["incident_updates"]] == [
        "resolved", "identified", "investigating"]
    assert outage["resolved_at"] is not None
    for locale in LOCALES:
        prefix = "" if locale == "en" else f"{locale}/"
        docs = [*_json(drill.site, f"{prefix}api/v2/incidents.json")["incidents"],
                *_json(drill.site, f"{prefix}api/v2/scheduled-maintenances.json")[
                    "scheduled_maintenances"]]
        for doc in docs:
            assert doc["shortlink"] == f"{PAGE_URL}/{prefix}incidents/{doc['id']}.html"
            page = drill.site / prefix / "incidents" / f"{doc['id']}.html"
            assert doc["name"] in page.read_text(encoding="utf-8"), page
            if locale != "en":  # the permanent link of a locale's page stays in that locale
                assert f'href="{doc["shortlink"]}"' in page.read_text(encoding="utf-8")
    # every status page link our messages carry answers with that incident's page
    link_re = re.compile(r"https://status\.example\.com/[A-Za-z0-9/._~%-]*[A-Za-z0-9/]")
    links = {m for record in drill.sent for text in _strings(record)
             for m in link_re.findall(text)}
    assert links, "the messages carry no status page link"
    with httpx.Client(base_url=drill.base_url) as client:
        for link in links:
            path = link.removeprefix(PAGE_URL)
            response = client.get(path)
            assert response.status_code == 200, link
            assert response.headers["content-type"].startswith("text/html")
        summary = client.get("/api/v2/summary.json")
        assert summary.headers["content-type"] == "application/json"


def test_people_see_every_update_in_every_locale_and_completed_maintenance(drill: Drill) -> None:
    index = (drill.site / "index.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in index
    assert "Network maintenance" in index and 'href="incidents/' in index
    # every locale's page of the outage shows all three updates (its own text where the
    # playbook has that locale, else the default locale's: see the unit tests)
    english = (drill.site / "incidents/drill-outage-001.html").read_text(encoding="utf-8")
    assert len(re.findall(r'<p class="body">', english)) == 3
    for locale in LOCALES[1:]:
        page = (drill.site / locale / "incidents/drill-outage-001.html").read_text(
            encoding="utf-8")
        assert f'<html lang="{locale}">' in page
        assert len(re.findall(r'<p class="body">', page)) == 3, locale
    # data incident: each locale shows its own text
    german = (drill.site / "de/incidents/drill-data-001.html").read_text(encoding="utf-8")
    assert re.findall(r'<p class="body">(.*?)</p>', german, re.S) != re.findall(
        r'<p class="body">(.*?)</p>',
        (drill.site / "incidents/drill-data-001.html").read_text(encoding="utf-8"), re.S)
    # a completed maintenance stays in the history, with its page
    for prefix in ("", "fr/"):
        history = (drill.site / prefix / "history.html").read_text(encoding="utf-8")
        assert "Database upgrade" in history, prefix


def test_a_maintained_statuspage_reader_reads_our_served_summary(drill: Drill,
                                                                 tmp_path: Path) -> None:
    """statuspage-prometheus-exporter (PyPI, maintained) polls Statuspage v2 ``summary.json``
    pages; pointed at ours it reports the page, the open incident, the maintenance and every
    component as it would for a page hosted by Atlassian."""
    summary_url = f"{drill.base_url}/api/v2/summary.json"
    (tmp_path / "services.json").write_text(json.dumps(
        {"example": {"url": summary_url, "name": "Example Corp"}}))
    script = (
        "from statuspage_prometheus_exporter.service_monitor import monitor_services\n"
        "from prometheus_client import generate_latest\n"
        "monitor_services(is_initial_run=True)\n"
        "print(generate_latest().decode())\n"
    )
    env = {"SERVICES_JSON_PATH": str(tmp_path / "services.json"), "PATH": "/usr/bin:/bin",
           "NO_PROXY": "*"}
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(run.stdout):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    assert [s.value for s in samples["statuspage_probe_check"]] == [1.0]
    assert [s.value for s in samples["statuspage_service_status"]] == [0.0]  # an open incident
    (incident,) = samples["statuspage_incident_info"]
    assert incident.labels["incident_id"] == "drill-data-001"
    assert incident.labels["shortlink"] == f"{PAGE_URL}/incidents/drill-data-001.html"
    assert incident.labels["impact"] in ("minor", "major", "critical")
    (maintenance,) = samples["statuspage_maintenance_info"]
    assert maintenance.labels["maintenance_id"] and "Network" in str(maintenance.labels)
    components = {s.labels["component_name"]: s.value
                  for s in samples["statuspage_component_status"]}
    summary = httpx.get(summary_url).json()
    assert set(components) == {c["name"] for c in summary["components"]}
    assert components == {c["name"]: 1.0 if c["status"] == "operational" else 0.0
                          for c in summary["components"]}


# -- the lifecycle, refused at trigger -----------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_resolved_incident_refuses_investigating_at_trigger_and_sends_nothing(
        workspace: tuple[Settings, Any], emulators: EmulatorPair, tmp_path: Path) -> None:
    settings, engine = workspace
    runner = CliRunner()
    raw = yaml.safe_load((PROJECT_ROOT / "playbooks" / "outage.yaml").read_text())
    facts = tmp_path / "facts.yaml"
    facts.write_text(yaml.safe_dump({**raw["drill_facts"], "incident_ref": "LIFE-1"}))
    first = runner.invoke(app, ["trigger", "outage", "--facts", str(facts)])
    assert first.exit_code == 0, first.output
    resolve = runner.invoke(app, ["trigger", "outage", "--incident", "LIFE-1", "--stage",
                                  "resolve", "--no-publish"])
    assert resolve.exit_code == 0, resolve.output
    approved = runner.invoke(app, ["approve", "LIFE-1", "--stage", "resolve", "--by", "Dana"])
    assert approved.exit_code == 0, approved.output
    page = StatusPage(settings.resolved_status_page_dir, page_name="x",
                      page_url=settings.status_page_url)
    state_before = page.state_path.read_text()
    assert page.load()["incidents"]["LIFE-1"]["status"] == "resolved"
    with session_scope(engine) as session:
        rows_before = session.execute(select(func.count()).select_from(Delivery)).scalar_one()
    emulators.reset()

    again = runner.invoke(app, ["trigger", "outage", "--incident", "LIFE-1", "--stage",
                                "acknowledge"])
    assert again.exit_code == 2, again.output
    said = " ".join(again.output.split())
    assert "incident LIFE-1: stage 'acknowledge' refused" in said
    assert "needs an explicit reopen" in said
    assert emulators.sendgrid.stats()["recipients"] == 0
    assert emulators.x.stats()["accepted_messages"] == 0
    assert page.state_path.read_text() == state_before
    check = make_engine(settings.resolved_database_url)
    with session_scope(check) as session:
        assert session.execute(
            select(func.count()).select_from(Delivery)).scalar_one() == rows_before
    check.dispose()
