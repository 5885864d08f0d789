"""The dashboard as its people use it, in headless Chromium, against a running drill: real
emulators, the listening app, one signed-in person per role, each in their own browser.

The PR lead triggers a rehearsal outage from the playbook's facts (its acknowledgement goes at
once), posts the update and previews it; two approvers approve it (the outage playbook of this
workspace asks for two people); support copies the published statement; the executive watches
reach and reactions move while a crowd reacts. Screenshots of every role's page are kept in
``tests/e2e/artifacts/`` (the README shows them)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlmodel import Session, col, select

from crisiscomms.core.database import init_db, make_engine, session_scope
from crisiscomms.core.settings import Settings
from crisiscomms.incident.models import Incident
from crisiscomms.testing.audiences import ensure_drill_audience
from crisiscomms.testing.crowd_drill import drill_listening_env, listening_app
from crisiscomms.testing.drill import environment, workspace_environment
from crisiscomms.testing.emulators import start_emulators
from crisiscomms.testing.pgcluster import free_port
from tests.e2e.conftest import ARTIFACTS, e2e_users, run_dashboard, sign_in
from tests.repo_paths import PROJECT_ROOT

pytestmark = pytest.mark.e2e
SUBSCRIBERS = 200
TIMEOUT = 90_000


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("e2e-roles")
    playbooks = root / "playbooks"
    shutil.copytree(PROJECT_ROOT / "playbooks", playbooks)
    outage = playbooks / "outage.yaml"
    outage.write_text(outage.read_text(encoding="utf-8") + "\napprovals: {required: 2}\n",
                      encoding="utf-8")
    listen_port = free_port()
    with start_emulators(sendgrid_key="SG.e2e-roles", x_token="e2e-roles") as pair:
        env = {**workspace_environment(root / "data", pair, "SG.e2e-roles", "e2e-roles",
                                       playbooks_dir=playbooks),
               **drill_listening_env(f"http://127.0.0.1:{listen_port}"),
               **e2e_users(root), "CRISISCOMMS_DASHBOARD_OVERVIEW_REFRESH_S": "5"}
        with environment(env):
            settings = Settings(_env_file=None)  # type: ignore[call-arg]
            engine = make_engine(settings.resolved_database_url)
            init_db(engine)
            with session_scope(engine) as session:
                ensure_drill_audience(session, SUBSCRIBERS)
            from crisiscomms.api.listen import create_app
            from crisiscomms.reactions.triage.workspace import workspace_triager

            triager = workspace_triager(settings)
            with listening_app(lambda s, t: create_app(s, triager=t), settings, triager,
                               listen_port) as listen_url:
                for url in run_dashboard({**os.environ, **env}):
                    yield {"url": url, "pair": pair, "engine": engine, "settings": settings,
                           "triager": triager, "listen_url": listen_url, "state": {}}
            engine.dispose()


def settled(page: Any) -> None:
    """Wait until the app has finished running the script (no "Running..." widget)."""
    page.wait_for_timeout(300)  # the widget shows up once the rerun has started
    expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=TIMEOUT)


def switch_on(page: Any, label: str) -> None:
    """Turn on the Streamlit toggle ``label`` once the page has settled (a click on an element
    a rerun is replacing is lost: check, and click again if so)."""
    settled(page)
    toggle = page.locator("label").filter(has_text=label).locator(
        "input[type=checkbox]").first
    for _ in range(3):
        if toggle.is_checked():
            break
        page.get_by_text(label, exact=True).first.click()
        settled(page)
    expect(toggle).to_be_checked(timeout=TIMEOUT)


def choose(page: Any, label: str, option: str) -> None:
    """Pick ``option`` (its text starts so) in the Streamlit select box labelled ``label``, and
    wait for the page drawn with it."""
    box = page.get_by_test_id("stSelectbox").filter(
        has=page.get_by_text(label, exact=True)).first
    box.get_by_role("combobox").click()
    page.get_by_role("option").filter(has_text=option).first.click()
    expect(box.get_by_role("combobox")).to_have_value(re.compile("^" + re.escape(option)),
                                                      timeout=TIMEOUT)
    settled(page)


def rehearsal_ref(drill: dict[str, Any]) -> str:
    with Session(drill["engine"]) as session:
        return session.exec(select(Incident.ref).where(
            col(Incident.ref).startswith("DRILL-OUTAGE-"))).one()


def test_pr_lead_triggers_a_rehearsal_outage_then_previews_its_update(
        browser: Any, drill: dict[str, Any]) -> None:
    page = sign_in(browser, drill["url"], "pr-lead", path="Trigger")
    choose(page, "Playbook", "outage")
    switch_on(page, "Start from the playbook's rehearsal facts")
    # the form is drawn again, filled: wait for it before pressing its button
    expect(page.get_by_role("textbox", name="Incident ref *")).to_have_value(
        re.compile(r"^DRILL-OUTAGE-"), timeout=TIMEOUT)
    page.get_by_role("button", name="Trigger").click()
    page.get_by_text("Auto-sent:").wait_for(timeout=TIMEOUT)
    ref = rehearsal_ref(drill)
    assert drill["pair"].sendgrid.stats()["accepted_messages"] >= 1
    shoot(page, "pr_lead_trigger.png")

    choose(page, "Incident", ref)
    choose(page, "Stage", "update")
    page.get_by_text("Facts of outage · update").wait_for(timeout=TIMEOUT)
    expect(page.get_by_role("textbox", name="Cause *")).not_to_have_value("", timeout=TIMEOUT)
    page.get_by_role("button", name="Trigger").click()
    page.get_by_text(f"Awaiting approval: {ref} · update").wait_for(timeout=TIMEOUT)
    page.get_by_role("link", name="Approvals").first.click()
    page.get_by_text("/280 weighted").first.wait_for(timeout=TIMEOUT)  # the preview is drawn
    body = page.locator("body").inner_text()
    assert ref in body and "/280 weighted" in body
    assert "Hi Alex" in page.frame_locator("iframe").first.frame_locator(
        "iframe").first.locator("body").inner_text()  # the sample's name, in the sandbox
    shoot(page, "pr_lead_preview.png")
    drill["state"]["ref"] = ref
    page.close()


def shoot(page: Any, name: str) -> None:
    """A tall screenshot (Streamlit scrolls inside its own container, not the page)."""
    page.set_viewport_size({"width": 1400, "height": 2000})
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / name))
    page.set_viewport_size({"width": 1400, "height": 900})


def approve_as(browser: Any, drill: dict[str, Any], user_id: str) -> Any:
    page = sign_in(browser, drill["url"], user_id, path="Approvals")
    ref = drill["state"]["ref"]
    page.get_by_text("/280 weighted").first.wait_for(timeout=TIMEOUT)
    page.get_by_role("button", name=re.compile(f"^Approve {re.escape(ref)} · update")).click()
    return page


def test_two_approvers_approve_the_update_and_it_is_published(
        browser: Any, drill: dict[str, Any]) -> None:
    ref = drill["state"]["ref"]
    emails_before = drill["pair"].sendgrid.stats()["accepted_messages"]
    first = approve_as(browser, drill, "approver-1")
    first.get_by_text("Waiting for a second person").first.wait_for(timeout=TIMEOUT)
    shoot(first, "approver_first.png")
    first.close()
    assert drill["pair"].sendgrid.stats()["accepted_messages"] == emails_before  # nothing yet

    second = approve_as(browser, drill, "approver-2")
    second.get_by_text(re.compile(r"Approved by approver-1 \+ approver-2 and published: "
                                  r"\d+ sent, 0 failed")).wait_for(timeout=TIMEOUT)
    shoot(second, "approver_second.png")
    second.close()
    sent = drill["pair"].sendgrid.stats()["accepted_messages"] - emails_before
    assert sent >= 1  # the update's email batches, once
    assert drill["pair"].sendgrid.stats()["duplicates"] == 0
    texts = [p["text"] for p in drill["pair"].x.received()]
    assert any(ref in t for t in texts)


def test_support_copies_the_published_update_word_for_word(browser: Any,
                                                           drill: dict[str, Any]) -> None:
    ref = drill["state"]["ref"]
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        page = sign_in(context, drill["url"], "support")
        page.get_by_text("stage update").first.wait_for(timeout=TIMEOUT)
        statement = page.get_by_test_id("stCode").first
        statement.hover()
        statement.get_by_role("button").first.click()  # st.code's copy button
        copied = page.evaluate("navigator.clipboard.readText()")
        assert ref in copied and copied.strip() == statement.inner_text().strip()
        body = page.locator("body").inner_text()
        assert "You may grant, without asking" in body and "Q&A" in body
        assert "stage acknowledge" not in body.split("stage update")[0]  # the latest first
        shoot(page, "support.png")
    finally:
        context.close()


def metric(page: Any, label: str) -> str:
    box = page.get_by_test_id("stMetric").filter(has=page.get_by_text(label, exact=True))
    return str(box.first.get_by_test_id("stMetricValue").inner_text())


def test_the_executive_watches_reach_and_reactions_move(browser: Any,
                                                        drill: dict[str, Any]) -> None:
    from crisiscomms.testing.crowd_drill import play_crowd

    ref = drill["state"]["ref"]
    page = sign_in(browser, drill["url"], "executive")
    page.get_by_text("Refreshes every").first.wait_for(timeout=TIMEOUT)
    switch_on(page, "Include drills")  # a rehearsal: drills are hidden by default
    page.get_by_text("People delivered", exact=True).wait_for(timeout=TIMEOUT)
    assert ref in page.locator("body").inner_text()
    reactions, delivered = metric(page, "Reactions"), metric(page, "People delivered")
    with Session(drill["engine"]) as session:
        incident = session.exec(select(Incident).where(Incident.ref == ref)).one()
    assert incident.id is not None
    play_crowd(drill["engine"], drill["settings"], drill["pair"], incident_id=incident.id,
               count=300, triager=drill["triager"], listen_url=drill["listen_url"])
    # the page refreshes itself (every 5 s here): nobody reloads it
    expect(page.get_by_test_id("stMetric").filter(has=page.get_by_text(
        "Reactions", exact=True)).get_by_test_id("stMetricValue")).not_to_have_text(
        reactions, timeout=TIMEOUT)
    expect(page.get_by_test_id("stMetric").filter(has=page.get_by_text(
        "People delivered", exact=True)).get_by_test_id("stMetricValue")).not_to_have_text(
        delivered, timeout=TIMEOUT)
    assert int(metric(page, "Reactions").replace(",", "")) > int(reactions.replace(",", ""))
    shoot(page, "executive.png")
    page.close()
