"""The Trigger page, run by AppTest against a real SQLite database: a new outage triggered
through the form and auto-sent to the emulators, its update prefilled and left awaiting
approval, refusals shown next to their fields with the CLI's message and nothing stored, and
every role but the PR lead refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_apptest import open_page, texts
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from crisiscomms.core.settings import Settings
from crisiscomms.dashboard.plain_text import plain
from crisiscomms.identity.models import AuditEvent
from crisiscomms.identity.roles import Role
from crisiscomms.incident.facts import FactSheet
from crisiscomms.incident.models import FactSheetVersion, Incident, Message
from crisiscomms.playbook.loader import load_playbook

pytestmark = pytest.mark.integration
PAGE = "trigger_page.py"


@pytest.fixture
def live_db(workspace: tuple[Settings, Engine]) -> Iterator[Engine]:
    """The emulator workspace (drill mode, 1,000 subscribers) with Streamlit's caches clear,
    so the page's engine is this database's."""
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield workspace[1]
    st.cache_resource.clear()
    st.cache_data.clear()


def widget(app: AppTest, path: str) -> Any:
    """The form's widget of the fact ``path`` (keys end with ``|<path>``)."""
    for kind in ("text_input", "text_area", "selectbox", "multiselect"):
        for element in getattr(app, kind):
            if element.key and element.key.startswith("fact|") and element.key.endswith(
                    f"|{path}"):
                return element
    raise KeyError(path)


def fill(app: AppTest, facts: dict[str, Any]) -> None:
    """Type ``facts`` (a drill fact set) into the form, as a person would."""
    flat: dict[str, Any] = {}
    for name, value in facts.items():
        if name == "translations":
            for locale, entries in value.items():
                flat.update({f"translations.{locale}.{k}": v for k, v in entries.items()})
        elif name == "extra":
            flat.update({f"extra.{k}": v for k, v in value.items()})
        else:
            flat[name] = value
    for path, value in flat.items():
        try:
            element = widget(app, path)
        except KeyError:
            continue
        if isinstance(value, list):
            value = "\n".join(value)
        element.set_value(str(value).replace("T", " ")[:16] if path.endswith("_at") else value)
        if path.endswith("_at"):
            widget(app, f"{path}|zone").set_value("UTC")


def outage_facts(ref: str, **changes: Any) -> dict[str, Any]:
    facts = {**load_playbook("outage", Settings().playbooks_dir).drill_facts,
             "incident_ref": ref, **changes}
    for key in [k for k, v in changes.items() if v is None]:
        facts.pop(key)
    return facts


def rows(engine: Engine) -> tuple[int, ...]:
    with Session(engine) as session:
        return tuple(session.exec(select(func.count()).select_from(model)).one()
                     for model in (Incident, FactSheetVersion, Message, AuditEvent))


def open_outage(user_id: str | None = None) -> AppTest:
    app = open_page(PAGE, Role.pr_lead, user_id=user_id).run()
    assert not app.exception, [e.value for e in app.exception]
    return choose(app, "Playbook", "outage")


def click_trigger(app: AppTest) -> AppTest:
    [button] = [b for b in app.button if b.label == "Trigger"]
    return button.click().run()


def choose(app: AppTest, label: str, value: str) -> AppTest:
    [box] = [s for s in app.selectbox if s.label == label]
    return box.set_value(value).run()


def test_pr_lead_triggers_an_outage_then_its_update(live_db: Engine) -> None:
    app = open_outage("pat")
    assert widget(app, "started_at").label == "Started at *"
    assert [s.value for s in app.selectbox if s.label == "Stage"] == ["acknowledge"]
    drill = app.checkbox(key="trigger_drill")
    assert drill.value and drill.disabled  # CRISISCOMMS_MODE=drill: every incident is one
    fill(app, outage_facts("DASH-OUT-1"))
    click_trigger(app)
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    shown = texts(app)
    assert plain("Auto-sent: ") in shown and plain(" sent, 0 failed, 0 unconfirmed.") in shown
    [bundle_hash] = [c.value for c in app.code]
    with Session(live_db) as session:
        incident = session.exec(select(Incident).where(Incident.ref == "DASH-OUT-1")).one()
        assert incident.drill and str(incident.status) == "investigating"
        audits = [(a.actor, a.action) for a in session.exec(select(AuditEvent))]
        triggered = session.exec(select(AuditEvent).where(
            AuditEvent.action == "stage.triggered")).one()
    assert ("pat", "stage.triggered") in audits and ("pat", "stage.published") in audits
    assert bundle_hash in triggered.detail_json
    channels = {row["channel"]: row for row in app.table[0].value.to_dict("records")}
    assert set(channels) == {"status_page", "x", "mastodon", "bluesky", "email", "support",
                             "slack", "teams", "webhook"}
    assert channels["email"]["sent"] == 1000  # every drill subscriber, once

    # the update: the open incident, its next stages, the form prefilled from its facts
    app = open_outage("pat")
    [label] = [o for o in app.selectbox(key="trigger_incident|outage").options
               if o.startswith("DASH-OUT-1")]
    choose(app, "Incident", label)
    stage_box = next(s for s in app.selectbox if s.label == "Stage")
    assert stage_box.options[0].startswith("acknowledge") and any(
        o.startswith("update") for o in stage_box.options)
    choose(app, "Stage", "update")
    assert widget(app, "impact").value.startswith("Some customers can't sign in")
    assert widget(app, "incident_ref").disabled
    widget(app, "next_update_at").set_value("2026-11-23 10:40")
    widget(app, "next_update_at|zone").set_value("Europe/Berlin")
    click_trigger(app)
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert plain("Awaiting approval: DASH-OUT-1 · update") in texts(app)
    with Session(live_db) as session:
        latest = session.exec(select(FactSheetVersion).order_by(
            FactSheetVersion.version.desc())).first()  # type: ignore[attr-defined]
        assert latest is not None and latest.version == 2
        sheet = FactSheet.model_validate_json(latest.facts_json)
    assert sheet.next_update_at == datetime(2026, 11, 23, 9, 40, tzinfo=UTC)  # 10:40 Berlin
    first = load_playbook("outage", Settings().playbooks_dir).drill_facts
    assert sheet.impact == " ".join(first["impact"].split())  # unchanged: prefilled
    assert sheet.started_at == datetime(2026, 11, 23, 9, 40, tzinfo=UTC)


def cli_refusal(tmp_path: Path, facts: dict[str, Any]) -> str:
    """What ``crisiscomms trigger outage --facts`` prints for ``facts``."""
    from crisiscomms.cli import app as cli

    path = tmp_path / "facts.yaml"
    path.write_text(yaml.safe_dump(facts, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(cli, ["trigger", "outage", "--facts", str(path)])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split()).removeprefix("error: ")


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"impact": None}, "impact", "missing required facts: impact"),
    ({"contact_url": "www.example.com/support"}, "contact_url", "must be an http(s) URL"),
    ({"started_at": "2026-11-23T09:40:00+25:00"}, "started_at", "valid datetime"),
], ids=["missing", "bad-url", "bad-offset"])
def test_a_refused_form_shows_the_cli_message_next_to_the_field_and_stores_nothing(
        dashboard_db: Engine, tmp_path: Path, change: dict[str, Any], field: str,
        reason: str) -> None:
    facts = outage_facts("DASH-BAD-1", **change)
    if change.get("impact", "") is None:
        for entries in facts["translations"].values():
            entries.pop("impact")
    app = open_outage()
    fill(app, facts)
    if "started_at" in change:  # typed with its own (impossible) offset
        widget(app, "started_at").set_value("2026-11-23 09:40+25:00")
    before = rows(dashboard_db)
    click_trigger(app)
    assert not app.exception, [e.value for e in app.exception]
    assert rows(dashboard_db) == before  # nothing stored
    message = cli_refusal(tmp_path, facts)
    assert reason in message
    assert plain(f"Refused, nothing was stored: {message}") == " ".join(
        str(app.error[0].value).split())
    beside = [e for e in app.error[1:] if reason in str(e.value).replace("\\", "")]
    assert beside, [e.value for e in app.error]
    # the error sits right after the field it names
    flat = list(app.main)  # every element, depth first
    at = next(i for i, e in enumerate(flat) if getattr(e, "key", None) and
              str(e.key).endswith(f"|{field}"))
    assert any(e.type == "error" and reason in str(e.value).replace("\\", "")
               for e in flat[at + 1:at + 4])


def test_a_bad_time_zone_fact_is_refused_as_the_cli_refuses_it(dashboard_db: Engine,
                                                                tmp_path: Path) -> None:
    facts = outage_facts("DASH-TZ-1", time_zone="Mars/Olympus")
    message = cli_refusal(tmp_path, facts)
    assert "unknown time zone 'Mars/Olympus'" in message
    app = open_outage()
    assert "Mars/Olympus" not in widget(app, "time_zone").options  # the picker cannot
    assert widget(app, "time_zone").value == "UTC"


def test_typed_text_is_shown_as_data(dashboard_db: Engine) -> None:
    """A title full of markup is stored as typed and shown only inside widgets (the incident
    picker); no markdown element of the page renders it."""
    hostile = "[click](https://evil.example) **bold** <b>x</b> :red[alarm]"
    facts = outage_facts("DASH-HTML-1", title=hostile)
    app = open_outage()
    fill(app, facts)
    click_trigger(app)
    assert not app.exception and not app.error, [e.value for e in app.error]
    app = open_outage()
    assert any(hostile in option for option in app.selectbox(key="trigger_incident|outage")
               .options)
    for element in app.main:
        body = str(getattr(element, "body", getattr(element, "value", "")))
        if element.type in ("markdown", "error", "info", "success", "warning", "caption"):
            assert "[click](" not in body and "**bold**" not in body


@pytest.mark.parametrize("role", [Role.approver, Role.support, Role.executive, Role.admin],
                         ids=str)
def test_every_other_role_is_refused(dashboard_db: Engine, role: Role) -> None:
    app = open_page(PAGE, role).run()
    assert [e.value for e in app.error] == [f"Your roles ({role.value}) do not allow this page."]
    assert not app.button and not app.text_input and not app.selectbox


def test_signed_out_sees_nothing(dashboard_db: Engine) -> None:
    app = open_page(PAGE).run()
    assert [w.value for w in app.warning] == ["Sign in to see this page."]
    assert not app.text_input


def test_the_resolution_is_a_stage_and_a_resolved_incident_leaves_the_list(
        live_db: Engine) -> None:
    app = open_outage()
    fill(app, outage_facts("DASH-RES-1"))
    click_trigger(app)
    assert not app.error, [e.value for e in app.error]
    app = open_outage()
    [label] = [o for o in app.selectbox(key="trigger_incident|outage").options
               if o.startswith("DASH-RES-1")]
    choose(app, "Incident", label)
    choose(app, "Stage", "resolve")
    assert widget(app, "resolved_at").label == "Resolved at *"
    widget(app, "resolved_at").set_value("2026-11-23 12:25")
    widget(app, "resolved_at|zone").set_value("Europe/Berlin")
    click_trigger(app)
    assert not app.error, [e.value for e in app.error]
    assert plain("Awaiting approval: DASH-RES-1 · resolve") in texts(app)
    app = open_outage()
    assert not [o for o in app.selectbox(key="trigger_incident|outage").options
                if o.startswith("DASH-RES-1")]


def test_a_broken_playbook_is_named_not_a_crash(dashboard_db: Engine, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    playbooks = tmp_path / "playbooks"
    shutil.copytree(Settings().playbooks_dir, playbooks)
    (playbooks / "broken.yaml").write_text("name: broken\ntitle: Broken\nstages: []\n",
                                           encoding="utf-8")
    monkeypatch.setenv("CRISISCOMMS_PLAYBOOKS_DIR", str(playbooks))
    app = open_page(PAGE, Role.pr_lead).run()
    choose(app, "Playbook", "broken")
    assert not app.exception, [e.value for e in app.exception]
    assert "broken" in str(app.error[0].value) and "stage" in str(app.error[0].value)
    assert not [b for b in app.button if b.label == "Trigger"]


def test_a_rehearsal_starts_from_the_playbooks_facts_under_a_new_reference(
        live_db: Engine) -> None:
    """The PR lead rehearsing: one toggle fills the whole form (translations too) with the
    playbook's drill facts under a fresh DRILL-OUTAGE-<time> reference; triggering sends the
    acknowledgement and forgets that reference, so the next rehearsal is a new incident."""
    app = open_outage("pat")
    app.toggle(key="trigger_rehearse|outage").set_value(True).run()
    assert not app.exception, [e.value for e in app.exception]
    ref = widget(app, "incident_ref").value
    assert ref.startswith("DRILL-OUTAGE-") and ref != "DRILL-OUTAGE-001"
    assert widget(app, "translations.ja.title").value  # every locale's prose is there
    click_trigger(app)
    assert not app.error, [e.value for e in app.error]
    assert plain("Auto-sent: ") in texts(app)
    with Session(live_db) as session:
        assert session.exec(select(Incident).where(Incident.ref == ref)).one().drill
    assert widget(app, "incident_ref").value != ref  # the next rehearsal: a new incident
