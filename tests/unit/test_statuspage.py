"""The status page package: lifecycle, statuses, indicator, uptime, maintenance by the clock,
the v2 JSON shapes, HTML escaping and accessibility markers, feeds, catalogues, atomic builds."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from statuspage_v2 import PATHS, check_document

from crisiscomms.channels.status_page import StatusPageChannel
from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.delivery.contract import OutboundBatch, Outcome, RenderedMessage
from crisiscomms.incident.facts import FactSheet
from crisiscomms.statuspage import LifecycleError, model
from crisiscomms.statuspage.catalog import Catalog, available
from crisiscomms.statuspage.page import StatusPage, StatusPageError
from crisiscomms.statuspage.uptime import component_uptime

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def add(state: dict[str, Any], key: str, status: str, *, ref: str = "INC-1",
        severity: str = "major", components: tuple[str, ...] = ("API",), at: datetime = NOW,
        body: str = "Update.", locale: str = "en", reopen: bool = False,
        component_status: str | None = None) -> str:
    return model.add_incident_update(
        state, key=key, ref=ref, name=f"Incident {ref}", status=status, severity=severity,
        components=list(components), body=body, locale=locale, stage=status, now=at,
        started_at=at - timedelta(minutes=5), reopen=reopen, component_status=component_status,
        event=f"{ref}:{status}")


def batch(key: str, ref: str, body: str) -> OutboundBatch:
    """An acknowledgement for the status page channel (its body as rendered)."""
    facts = FactSheet(incident_ref=ref, organization="Example", title=f"Incident {ref}",
                      severity="major", components=("API",), started_at=NOW)
    message = RenderedMessage("outage", "acknowledge", "status_page", "en", {"text": body}, "h")
    return OutboundBatch(key=key, batch_no=0, facts=facts, incident_status="investigating",
                         message=message)


def page(tmp_path: Path, now: datetime = NOW, **kw: Any) -> StatusPage:
    return StatusPage(tmp_path / "sp", page_name="Example Status",
                      page_url="https://status.example.com", clock=lambda: now, **kw)


# -- lifecycle -----------------------------------------------------------------------------------


def test_lifecycle_moves_forward_and_refuses_going_back_without_reopen() -> None:
    state = model.new_state()
    for n, status in enumerate(("investigating", "identified", "monitoring", "resolved")):
        add(state, f"k{n}", status, at=NOW + timedelta(minutes=n))
    before = json.dumps(state, sort_keys=True)
    with pytest.raises(LifecycleError, match="explicit reopen") as info:
        add(state, "k-back", "investigating", at=NOW + timedelta(hours=1))
    assert isinstance(info.value, CrisisCommsError)
    assert json.dumps(state, sort_keys=True) == before  # refused: nothing changed
    add(state, "k-pm", "postmortem", at=NOW + timedelta(hours=2))
    with pytest.raises(LifecycleError):
        add(state, "k-res", "resolved", at=NOW + timedelta(hours=3))
    add(state, "k-reopen", "investigating", at=NOW + timedelta(hours=4), reopen=True)
    assert state["incidents"]["INC-1"]["status"] == "investigating"
    assert state["incidents"]["INC-1"]["resolved_at"] is None


def test_lifecycle_refuses_unknown_status_and_open_to_postmortem() -> None:
    state = model.new_state()
    with pytest.raises(LifecycleError, match="not one of"):
        add(state, "a", "fixed")
    add(state, "b", "investigating")
    with pytest.raises(LifecycleError, match="cannot move"):
        add(state, "c", "postmortem")
    assert state["incidents"]["INC-1"]["status"] == "investigating"


def test_same_key_is_added_once() -> None:
    state = model.new_state()
    first = add(state, "k", "investigating")
    assert add(state, "k", "investigating") == first
    assert len(state["incidents"]["INC-1"]["updates"]) == 1


# -- statuses and indicator ----------------------------------------------------------------------


@pytest.mark.parametrize(("severity", "expected", "indicator"), [
    ("minor", "degraded_performance", "minor"),
    ("major", "partial_outage", "major"),
    ("critical", "major_outage", "critical"),
])
def test_component_status_follows_severity(severity: str, expected: str, indicator: str) -> None:
    from crisiscomms.statuspage.indicator import component_statuses
    from crisiscomms.statuspage.indicator import indicator as page_indicator

    state = model.new_state()
    add(state, "a", "investigating", severity=severity)
    assert component_statuses(state, NOW) == {"API": expected}
    assert page_indicator(state, NOW) == indicator
    add(state, "b", "resolved", severity=severity, at=NOW + timedelta(minutes=1))
    assert component_statuses(state, NOW) == {"API": "operational"}
    assert page_indicator(state, NOW) == "none"


def test_several_incidents_worst_wins_and_explicit_component_status() -> None:
    from crisiscomms.statuspage.indicator import component_statuses, indicator

    state = model.new_state()
    add(state, "a", "investigating", ref="A", severity="minor", components=("API", "Web"))
    add(state, "b", "identified", ref="B", severity="critical", components=("API",),
        component_status="degraded_performance")
    add(state, "c", "investigating", ref="C", severity="minor", components=("Web",),
        component_status="major_outage")
    assert component_statuses(state, NOW) == {"API": "degraded_performance",
                                              "Web": "major_outage"}
    assert indicator(state, NOW) == "critical"  # the worst open impact
    history = state["components"]["Web"]["history"]
    assert [s for _, s in history] == ["degraded_performance", "major_outage"]


def test_maintenance_moves_with_the_clock_and_sets_the_indicator() -> None:
    from crisiscomms.statuspage.indicator import component_statuses, indicator

    state = model.new_state()
    start, end = NOW + timedelta(hours=1), NOW + timedelta(hours=3)
    mid = model.schedule_maintenance(state, name="DB upgrade", components=["DB"], start=start,
                                     end=end, now=NOW)
    m = state["maintenances"][mid]
    assert model.maintenance_status(m, NOW) == "scheduled"
    assert model.maintenance_status(m, start) == "in_progress"
    assert model.maintenance_status(m, end) == "completed"
    assert indicator(state, start + timedelta(minutes=1)) == "maintenance"
    assert component_statuses(state, start)["DB"] == "under_maintenance"
    add(state, "x", "investigating", components=("Other",), severity="minor")
    assert indicator(state, start) == "minor"  # an open incident outranks maintenance
    with pytest.raises(ValueError, match="end after"):
        model.schedule_maintenance(state, name="Bad", components=["DB"], start=end, end=start,
                                   now=NOW)


def test_uptime_counts_major_fully_and_partial_at_thirty_percent() -> None:
    created = NOW - timedelta(days=200)
    day = timedelta(days=1)
    component = {"created_at": model.iso(created), "history": [
        [model.iso(NOW - 10 * day), "major_outage"],
        [model.iso(NOW - 9 * day), "operational"],
        [model.iso(NOW - 5 * day), "partial_outage"],
        [model.iso(NOW - 4 * day), "operational"],
    ]}
    up = component_uptime(component, NOW)
    assert len(up.days) == 90 and up.days[-1].day == NOW.date()
    statuses = {d.day: d.status for d in up.days}
    assert statuses[(NOW - 10 * day).date()] == "major_outage"
    assert statuses[(NOW - 5 * day).date()] == "partial_outage"
    window = (NOW - datetime.combine((NOW - 89 * day).date(), datetime.min.time(), tzinfo=UTC))
    expected = 100 * (1 - (1 + 0.3) * day.total_seconds() / window.total_seconds())
    assert up.percent == pytest.approx(expected, abs=0.01)


# -- the site ------------------------------------------------------------------------------------


def busy_page(tmp_path: Path) -> StatusPage:
    sp = page(tmp_path, subscribe_url="http://127.0.0.1:8040/v1/subscribe")

    def fill(state: dict[str, Any]) -> None:
        for n in range(60):
            at = NOW - timedelta(days=n + 1)
            add(state, f"old{n}a", "investigating", ref=f"OLD-{n}", at=at, severity="minor",
                components=("Platform / EU",))
            add(state, f"old{n}b", "resolved", ref=f"OLD-{n}", at=at + timedelta(hours=1),
                severity="minor", components=("Platform / EU",))
        add(state, "now1", "investigating", ref="NOW-1", at=NOW - timedelta(minutes=30),
            components=("API", "Platform / US"),
            body="<script>alert(1)</script> & we're on it")
        add(state, "now1de", "investigating", ref="NOW-1", at=NOW - timedelta(minutes=29),
            components=("API", "Platform / US"), body="Wir sind dran.", locale="de")
        model.schedule_maintenance(state, name="Upgrade", components=["API"],
                                   start=NOW + timedelta(days=1), end=NOW + timedelta(days=1,
                                                                                      hours=1),
                                   now=NOW)
        model.schedule_maintenance(state, name="Network", components=["Platform / US"],
                                   start=NOW - timedelta(hours=1), end=NOW + timedelta(hours=1),
                                   now=NOW - timedelta(days=2))

    sp.change(fill)
    return sp


def test_every_api_document_fits_the_v2_shapes(tmp_path: Path) -> None:
    sp = busy_page(tmp_path)
    for prefix in ("", "de/"):
        for path in PATHS:
            data = json.loads((sp.site_path / prefix / "api/v2" / path).read_text())
            assert check_document(path, data) == [], (prefix, path)
    api = sp.site_path / "api/v2"
    summary = json.loads((api / "summary.json").read_text())
    assert summary["status"] == {"indicator": "major", "description": "Partial System Outage"}
    assert [i["id"] for i in summary["incidents"]] == ["NOW-1"]
    assert {m["status"] for m in summary["scheduled_maintenances"]} == {"scheduled",
                                                                        "in_progress"}
    incidents = json.loads((api / "incidents.json").read_text())["incidents"]
    assert len(incidents) == 50 and incidents[0]["id"] == "NOW-1"
    components = {c["name"]: c for c in summary["components"]}
    group = components["Platform"]
    assert group["group"] is True and group["status"] == "partial_outage"
    assert components["US"]["group_id"] == group["id"]
    assert sorted(group["components"]) == sorted([components["US"]["id"],
                                                  components["EU"]["id"]])
    assert json.loads((api / "scheduled-maintenances/active.json").read_text())[
        "scheduled_maintenances"][0]["name"] == "Network"
    root_updates = summary["incidents"][0]["incident_updates"]
    german = json.loads((sp.site_path / "de/api/v2/summary.json").read_text())
    assert [u["body"] for u in root_updates] == ["<script>alert(1)</script> & we're on it"]
    assert [u["body"] for u in german["incidents"][0]["incident_updates"]] == ["Wir sind dran."]


def test_html_is_escaped_accessible_and_self_contained(tmp_path: Path) -> None:
    sp = busy_page(tmp_path)
    html = (sp.site_path / "index.html").read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; we&#39;re on it" in html
    for marker in ('<html lang="en">', "<main", "<header", "<footer", 'role="status"',
                   '<time datetime="', 'aria-hidden="true">◆</span> Partial System Outage',
                   'action="http://127.0.0.1:8040/v1/subscribe"', 'href="history.atom"',
                   'role="img" aria-label="', 'hreflang="de"'):
        assert marker in html, marker
    assert "http://" not in html.replace("http://127.0.0.1:8040/v1/subscribe", "") \
        .replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "src=" not in html  # no external scripts, images or fonts
    incident = (sp.site_path / "incidents/NOW-1.html").read_text()
    assert "Investigating" in incident and "Affected: API, US" in incident
    assert (sp.site_path / "incidents/OLD-59.html").is_file()
    history = (sp.site_path / "history.html").read_text()
    assert "September 2026" in history and 'href="incidents/OLD-59.html"' in history
    german = (sp.site_path / "de/index.html").read_text()
    assert '<html lang="de">' in german and "Teilweiser Ausfall" in german
    assert 'href="../index.html" hreflang="en"' in german


def test_feeds_parse(tmp_path: Path) -> None:
    sp = busy_page(tmp_path)
    atom = feedparser.parse((sp.site_path / "history.atom").read_bytes())
    assert not atom.bozo, atom.get("bozo_exception")
    assert atom.version == "atom10" and len(atom.entries) == 50
    newest = atom.entries[0]
    assert newest.title == "Incident NOW-1"
    assert newest.link == "https://status.example.com/incidents/NOW-1.html"
    assert "&lt;script&gt;" in newest.content[0].value
    rss = feedparser.parse((sp.site_path / "history.rss").read_bytes())
    assert not rss.bozo and rss.version == "rss20" and len(rss.entries) == 50


def test_failed_build_leaves_the_previous_site(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sp = page(tmp_path)
    sp.change(lambda state: add(state, "a", "investigating"))
    live = sp.site_path.resolve()
    before = {p: p.read_bytes() for p in live.rglob("*") if p.is_file()}
    state_before = sp.state_path.read_text()

    def boom(*_: object, **__: object) -> dict[str, str]:
        raise RuntimeError("template exploded")

    monkeypatch.setattr("crisiscomms.statuspage.page.build_site", boom)
    with pytest.raises(RuntimeError):
        sp.change(lambda state: add(state, "b", "identified"))
    assert sp.state_path.read_text() == state_before  # built before the state is committed
    assert sp.site_path.resolve() == live
    assert {p: p.read_bytes() for p in live.rglob("*") if p.is_file()} == before
    assert not list((sp.output_dir / "builds").glob(".tmp-*"))
    # the refused lifecycle change writes nothing either
    monkeypatch.undo()
    sp.change(lambda state: add(state, "c", "resolved"))
    state_before = sp.state_path.read_text()
    with pytest.raises(LifecycleError):
        sp.change(lambda state: add(state, "d", "investigating"))
    assert sp.state_path.read_text() == state_before


def test_catalogues_cover_every_key() -> None:
    langs = available()
    assert {"en", "es", "fr", "de", "ja"} <= set(langs)
    english = Catalog("en").names()
    for lang in langs:
        path = Path(__file__).parents[2] / "crisiscomms/statuspage/locales" / f"{lang}.json"
        assert set(json.loads(path.read_text())) == english, lang
    assert Catalog("pt-BR")("components") == "Components"  # unknown language: English
    assert Catalog("fr-CA")("components") == "Composants"


# -- people's view: locales, permalinks, maintenance pages -------------------------------------


def test_a_locale_timeline_keeps_untranslated_updates_in_the_default_locale(
        tmp_path: Path) -> None:
    sp = page(tmp_path, default_locale="en")

    def fill(state: dict[str, Any]) -> None:
        add(state, "a-en", "investigating", at=NOW - timedelta(minutes=20), body="Looking.")
        add(state, "a-de", "investigating", at=NOW - timedelta(minutes=20), body="Wir schauen.",
            locale="de")
        add(state, "b-en", "identified", at=NOW - timedelta(minutes=10), body="Found it.")

    sp.change(fill)
    german = json.loads((sp.site_path / "de/api/v2/incidents.json").read_text())
    bodies = [u["body"] for u in german["incidents"][0]["incident_updates"]]
    assert bodies == ["Found it.", "Wir schauen."]  # nothing dropped, German where it exists
    english = json.loads((sp.site_path / "api/v2/incidents.json").read_text())
    assert [u["body"] for u in english["incidents"][0]["incident_updates"]] == [
        "Found it.", "Looking."]
    html = (sp.site_path / "de/incidents/INC-1.html").read_text()
    assert "Found it." in html and "Wir schauen." in html and "Looking." not in html
    # the permanent link of the German page is the German page
    assert german["incidents"][0]["shortlink"] == \
        "https://status.example.com/de/incidents/INC-1.html"
    assert 'href="https://status.example.com/de/incidents/INC-1.html"' in html


def test_maintenances_have_pages_and_completed_ones_stay_in_the_history(tmp_path: Path) -> None:
    early = page(tmp_path, now=NOW - timedelta(days=3))
    early.schedule_maintenance(name="Old upgrade", components=["API"],
                               start=NOW - timedelta(days=2), end=NOW - timedelta(days=2) +
                               timedelta(hours=1))
    sp = page(tmp_path)
    mid = sp.schedule_maintenance(name="Next upgrade", components=["API"],
                                  start=NOW + timedelta(days=1),
                                  end=NOW + timedelta(days=1, hours=1))
    docs = json.loads((sp.site_path / "api/v2/scheduled-maintenances.json").read_text())
    by_name = {m["name"]: m for m in docs["scheduled_maintenances"]}
    assert by_name["Old upgrade"]["status"] == "completed"
    for m in by_name.values():
        assert m["shortlink"] == f"https://status.example.com/incidents/{m['id']}.html"
        assert m["name"] in (sp.site_path / f"incidents/{m['id']}.html").read_text()
    index = (sp.site_path / "index.html").read_text()
    assert f'href="incidents/{mid}.html"' in index and "Old upgrade" in index  # recent months
    history = (sp.site_path / "history.html").read_text()
    assert "Old upgrade" in history and "Next upgrade" not in history


def test_incident_page_id_is_where_the_messages_link(tmp_path: Path) -> None:
    assert model.slug_from_url("https://status.example.com/incidents/drill-outage-001") == \
        "drill-outage-001"
    assert model.slug_from_url("https://status.example.com/incidents/abc.html?x=1") == "abc"
    for url in (None, "", "https://www.example.com/recalls/kettle",
                "https://status.example.com/incidents/a/b", "https://x.com/incidents/<b>"):
        assert model.slug_from_url(url) is None
    state = model.new_state("en")
    model.add_incident_update(state, key="k1", ref="REF-1", name="One", status="investigating",
                              severity="minor", components=["API"], body="b", locale="en",
                              stage="ack", now=NOW, started_at=NOW, slug="drill-outage-001")
    model.add_incident_update(state, key="k2", ref="REF-2", name="Two", status="investigating",
                              severity="minor", components=["API"], body="b", locale="en",
                              stage="ack", now=NOW, started_at=NOW, slug="drill-outage-001")
    assert state["incidents"]["REF-1"]["slug"] == "drill-outage-001"
    assert state["incidents"]["REF-2"]["slug"] == "REF-2"  # taken: its own reference


def test_failed_publish_keeps_state_with_the_live_site_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crisiscomms.statuspage.page import StatusPageError

    sp = page(tmp_path)
    sp.change(lambda state: add(state, "a", "investigating"))
    state_before, live = sp.state_path.read_text(), sp.site_path.resolve()

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("crisiscomms.statuspage.publish.write_tree", full)
    with pytest.raises(StatusPageError, match="ENOSPC"):
        sp.change(lambda state: add(state, "b", "identified"))
    assert sp.state_path.read_text() == state_before  # rolled back: not ahead of the site
    assert sp.site_path.resolve() == live and sp.live_generation() == sp.load()["generation"]
    with pytest.raises(StatusPageError, match="previous site is still live"):
        sp.rebuild()
    with pytest.raises(StatusPageError, match="ENOSPC"):
        sp.schedule_maintenance(name="M", components=["API"], start=NOW + timedelta(hours=1),
                                end=NOW + timedelta(hours=2))
    assert sp.state_path.read_text() == state_before
    sp.state_path.write_text("{not json")
    with pytest.raises(StatusPageError, match="unreadable"):
        sp.rebuild()


def test_cli_build_and_maintenance_fail_with_one_line_not_a_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from crisiscomms.cli import app

    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CRISISCOMMS_STATUS_PAGE_DIR", raising=False)
    runner = CliRunner()
    ok = runner.invoke(app, ["statuspage", "build"])
    assert ok.exit_code == 0, ok.output
    state = tmp_path / "data" / "status_page" / "state.json"
    state.write_text("[1, 2")
    bad = runner.invoke(app, ["statuspage", "build"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "status page state unreadable" in " ".join(bad.output.split())
    state.unlink()

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("crisiscomms.statuspage.publish.write_tree", full)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(days=1, hours=1)).isoformat()
    failed = runner.invoke(app, ["maintenance", "schedule", "--name", "DB", "--components",
                                 "API", "--start", later, "--end", end])
    assert failed.exit_code == 2, failed.output
    assert "ENOSPC" in failed.output and "Traceback" not in failed.output
    assert not state.exists()  # nothing committed for a site that never went live


def test_serve_answers_the_links_messages_carry(tmp_path: Path) -> None:
    import threading

    import httpx

    from crisiscomms.statuspage.server import serve_status_page

    sp = page(tmp_path)
    sp.change(lambda state: add(state, "a", "investigating", ref="inc-7"))
    server = serve_status_page(sp.site_path, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        page_answer = httpx.get(f"{base}/incidents/inc-7")
        assert page_answer.status_code == 200 and "Incident inc-7" in page_answer.text
        assert page_answer.headers["content-type"].startswith("text/html")
        summary = httpx.get(f"{base}/api/v2/summary.json")
        assert summary.headers["content-type"] == "application/json"
        assert summary.headers["access-control-allow-origin"] == "*"
        assert httpx.get(f"{base}/history.atom").headers["content-type"] == \
            "application/atom+xml"
        assert httpx.get(f"{base}/incidents/nope").status_code == 404
        assert httpx.get(f"{base}/incidents/").status_code == 404  # no directory listing
    finally:
        server.shutdown()
        server.server_close()


# -- subscriber emails: the unsubscribe link ---------------------------------------------------


def test_every_email_recipient_gets_an_unsubscribe_link_and_list_unsubscribe_headers() -> None:
    from crisiscomms.channels.sendgrid_email import UNSUBSCRIBE_TAG, SendGridEmailChannel
    from crisiscomms.delivery.contract import OutboundBatch, OutboundRecipient, RenderedMessage
    from crisiscomms.incident.facts import FactSheet
    from crisiscomms.render.environment import substitution_tag

    assert substitution_tag("unsubscribe_url", html=False) == UNSUBSCRIBE_TAG
    secret = "SG.very-secret-key"
    channel = SendGridEmailChannel(secret, from_email="status@example.com", from_name="S",
                                   unsubscribe_url="https://subs.example.com/v1/unsubscribe/")
    assert channel.unsubscribe_link("tok_1-A") == "https://subs.example.com/v1/unsubscribe/tok_1-A"
    bare = SendGridEmailChannel(secret, from_email="status@example.com", from_name="S")
    assert bare.unsubscribe_link("tok") == "mailto:status@example.com?subject=unsubscribe"
    assert channel.unsubscribe_link(None) == bare.unsubscribe_link(None)
    facts = FactSheet(incident_ref="I-1", organization="Example", title="T", severity="minor",
                      started_at=NOW)
    message = RenderedMessage(playbook="p", stage="s", channel="email", locale="en",
                              parts={"subject": "S", "text": "t %unsubscribe_url%",
                                     "html": "<a href=\"%unsubscribe_url.html%\">x</a>"},
                              content_hash="h")
    recipients = [
        OutboundRecipient(1, "a@example.com", {UNSUBSCRIBE_TAG: channel.unsubscribe_link("t1")}),
        OutboundRecipient(2, "b@example.com", {UNSUBSCRIBE_TAG: bare.unsubscribe_link("t2")}),
        OutboundRecipient(3, "c@example.com", {}),
    ]
    body = channel.build_body(OutboundBatch(key="k", batch_no=0, facts=facts,
                                            incident_status="investigating", message=message,
                                            recipients=recipients))
    first, second, third = body["personalizations"]
    assert first["headers"] == {
        "List-Unsubscribe": "<https://subs.example.com/v1/unsubscribe/t1>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert second["headers"] == {
        "List-Unsubscribe": "<mailto:status@example.com?subject=unsubscribe>"}
    assert "headers" not in third
    assert secret not in json.dumps(body)


def test_unchanged_incident_pages_are_linked_from_the_live_build(tmp_path: Path) -> None:
    sp = page(tmp_path)

    def fill(state: dict[str, Any]) -> None:
        add(state, "o1", "investigating", ref="OLD-1", at=NOW - timedelta(days=3))
        add(state, "o2", "resolved", ref="OLD-1", at=NOW - timedelta(days=3, hours=-1))
        add(state, "n1", "investigating", ref="NEW-1", at=NOW - timedelta(minutes=9))

    sp.change(fill)
    first = sp.site_path.resolve()
    sp.change(lambda state: add(state, "n2", "identified", ref="NEW-1",
                                at=NOW - timedelta(minutes=1), body="Found it."))
    second = sp.site_path.resolve()
    assert second != first
    old_before, old_after = first / "incidents/OLD-1.html", second / "incidents/OLD-1.html"
    assert old_after.stat().st_ino == old_before.stat().st_ino  # the same file, linked
    assert old_after.read_text() == old_before.read_text()
    new_page = (second / "incidents/NEW-1.html").read_text()
    assert "Found it." in new_page  # the changed incident was rendered again
    assert (second / "incidents/NEW-1.html").stat().st_ino != \
        (first / "incidents/NEW-1.html").stat().st_ino
    # no manifest in the served site; the ones beside the kept builds only
    assert not list(second.rglob("*.json.pages*")) and not (second / ".pages.json").exists()
    manifests = sorted(p.name for p in (sp.output_dir / ".pages").glob("*.json"))
    assert manifests == sorted(f"{b.name}.json" for b in (first, second))
    # a rebuild from scratch (no manifest) renders the same bytes
    for manifest in (sp.output_dir / ".pages").glob("*.json"):
        manifest.unlink()
    third = sp.rebuild()
    assert (third / "incidents/OLD-1.html").read_text() == old_after.read_text()
    assert (third / "incidents/OLD-1.html").stat().st_ino != old_after.stat().st_ino


# -- text the page cannot show --------------------------------------------------------------------


def legacy_state(sp: StatusPage, **texts: str) -> None:
    """``state.json`` as a version before the text rule wrote it: an incident whose name or
    body holds a control character (copied from a terminal)."""
    sp.change(lambda state: add(state, "old", "investigating", ref="OLD-1"))
    state = json.loads(sp.state_path.read_text())
    incident = state["incidents"]["OLD-1"]
    incident["name"] = texts.get("name", incident["name"])
    incident["updates"][0]["body"] = texts.get("body", incident["updates"][0]["body"])
    sp.state_path.write_text(json.dumps(state))


def test_the_model_refuses_text_the_page_cannot_show_before_changing_anything(
        tmp_path: Path) -> None:
    state = model.new_state()
    before = json.dumps(state, sort_keys=True)
    for texts in ({"body": "We see \x1b[31merrors\x1b[0m"}, {"body": "bell\x07"},
                  {"components": ("API\x08",)}, {"body": "\u202eevil"}):
        args: dict[str, Any] = {"name": "Incident", "components": ["API"], "body": "Update.",
                                **texts}
        with pytest.raises(ValueError, match="U\\+"):
            model.add_incident_update(state, key="k", ref="INC-1", status="investigating",
                                      severity="major", locale="en", stage="ack", now=NOW,
                                      started_at=NOW, **args)
        assert json.dumps(state, sort_keys=True) == before
    sp = page(tmp_path)
    with pytest.raises(ValueError, match="name holds a control character U\\+0007"):
        sp.schedule_maintenance(name="DB\x07", components=["API"],
                                start=NOW + timedelta(hours=1), end=NOW + timedelta(hours=2))
    assert not sp.state_path.exists()


def test_a_state_the_page_cannot_show_is_never_committed(tmp_path: Path) -> None:
    sp = page(tmp_path)
    sp.change(lambda state: add(state, "a", "investigating"))
    before, live = sp.state_path.read_text(), sp.site_path.resolve()
    state = sp.load()
    state["incidents"]["INC-1"]["name"] = "bad \x1b name"  # past the model's own check
    with pytest.raises(StatusPageError, match=re.escape(
            "incidents.INC-1.name holds a control character U+001B (ESC)")):
        sp.commit(state)
    assert sp.state_path.read_text() == before and sp.site_path.resolve() == live


def test_the_channel_never_commits_an_update_it_cannot_publish(tmp_path: Path) -> None:
    """The hole: an acknowledgement holding ESC was committed, then every build failed."""
    channel = StatusPageChannel(tmp_path / "sp", page_name="Example Status",
                                page_url="https://status.example.com", clock=lambda: NOW)
    assert channel.send(batch("k1", "GOOD-1", "Investigating.")).outcome == Outcome.sent
    before = channel.state_path.read_text()
    bad = channel.send(batch("k2", "BAD-1", "We see \x1b[31merrors\x07"))
    assert bad.outcome == Outcome.permanent and "U+001B (ESC)" in str(bad.reason)
    assert channel.state_path.read_text() == before
    nxt = channel.send(batch("k3", "NEXT-1", "Investigating."))
    assert nxt.outcome == Outcome.sent
    assert channel.live_generation() == channel.page.load()["generation"]
    summary = json.loads((channel.site_path / "api" / "v2" / "incidents.json").read_text())
    assert {i["id"] for i in summary["incidents"]} >= {"GOOD-1", "NEXT-1"}


def test_a_legacy_state_says_how_to_repair_and_the_next_incident_publishes_after(
        tmp_path: Path) -> None:
    channel = StatusPageChannel(tmp_path / "sp", page_name="Example Status",
                                page_url="https://status.example.com", clock=lambda: NOW)
    legacy_state(channel.page, name="Disk \x1b[31mfull\x1b[0m", body="Looking\x07 into it")
    before = channel.state_path.read_text()
    blocked = channel.send(batch("k1", "NEXT-1", "Investigating."))
    assert blocked.outcome == Outcome.retryable
    reason = " ".join(str(blocked.reason).split())
    assert "incidents.OLD-1.updates.0.body holds a control character U+0007 (BEL)" in reason
    assert "(and 1 more)" in reason and "crisiscomms statuspage repair" in reason
    assert channel.state_path.read_text() == before  # the refused build wrote nothing
    with pytest.raises(StatusPageError, match="crisiscomms statuspage repair"):
        channel.page.rebuild()
    assert "\x1b" not in reason and "\x07" not in reason  # named, never printed raw
    assert sorted(channel.page.repair()) == ["incidents.OLD-1.name",
                                             "incidents.OLD-1.updates.0.body"]
    repaired = channel.page.load()["incidents"]["OLD-1"]
    assert (repaired["name"], repaired["updates"][0]["body"]) == ("Disk [31mfull[0m",
                                                                  "Looking into it")
    assert channel.send(batch("k1", "NEXT-1", "Investigating.")).outcome == Outcome.sent
    assert channel.page.repair() == []


def test_cli_repair_fixes_a_legacy_state_in_one_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from crisiscomms.cli import app

    monkeypatch.setenv("CRISISCOMMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CRISISCOMMS_STATUS_PAGE_DIR", raising=False)
    runner = CliRunner()
    sp = StatusPage(tmp_path / "data" / "status_page", page_name="Example Status",
                    page_url="https://status.example.com")
    legacy_state(sp, body="bell\x07")
    bad = runner.invoke(app, ["statuspage", "build"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "run `crisiscomms statuspage repair`" in " ".join(bad.output.split())
    fixed = runner.invoke(app, ["statuspage", "repair"])
    assert fixed.exit_code == 0, fixed.output
    assert "repaired: incidents.OLD-1.updates.0.body" in fixed.output
    assert runner.invoke(app, ["statuspage", "build"]).exit_code == 0


def test_repair_renames_a_component_whose_name_holds_a_control_character(tmp_path: Path) -> None:
    sp = page(tmp_path)
    sp.change(lambda state: add(state, "a", "investigating", components=("API",)))
    sp.state_path.write_text(sp.state_path.read_text().replace('"API"', '"API\\u001b[0m"'))
    assert model.text_problems(sp.load())[0][0] == "components.API\\x1b[0m"
    assert "components.API\\x1b[0m" in sp.repair()
    state = sp.load()
    assert list(state["components"]) == ["API[0m"]
    assert state["incidents"]["INC-1"]["components"] == ["API[0m"]
    assert sp.live_generation() == state["generation"]
