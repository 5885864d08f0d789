"""Errors carry their fields (playbook, stage, template, channel, locale, field, values,
reason) besides the message a person reads; each kind is raised here through the real code
path, and lint and the CLI's ``lint --json`` name the fields."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
from approvers import approve_all
from repo_paths import PROJECT_ROOT
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from crisiscomms.audience.subscriptions import SubscriptionError, normalise_components
from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.cli import app
from crisiscomms.core.errors import (
    ApprovalError,
    CrisisCommsError,
    FactsError,
    LimitError,
    PlaybookError,
    RenderError,
)
from crisiscomms.core.settings import Settings
from crisiscomms.incident.facts import build_fact_sheet
from crisiscomms.playbook.lint import lint, resolve_paths
from crisiscomms.playbook.loader import Playbook, load_playbook
from crisiscomms.render.approvals import ApprovalLock
from crisiscomms.render.environment import StageRenderer
from crisiscomms.statuspage.model import LifecycleError, check_transition

BASE = Path(__file__).resolve().parent.parent / "fixtures" / "lint" / "base"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The small correct recall project of the lint fixtures, in a temporary folder."""
    shutil.copytree(BASE, tmp_path / "project")
    return tmp_path / "project"


def playbook_file(project: Path) -> Path:
    return project / "playbooks" / "mini_recall.yaml"


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def mini(project: Path) -> Playbook:
    return load_playbook("mini_recall", project / "playbooks")


def render(project: Path, channel: str, locale: str, *, lock: bool = False) -> None:
    pb = mini(project)
    renderer = StageRenderer(project / "templates", CHANNEL_CLASSES,
                             approvals=ApprovalLock(project / "templates") if lock else None)
    renderer.render_message(pb, pb.stages[0], build_fact_sheet(dict(pb.drill_facts)), channel,
                            locale)


def template(project: Path, name: str) -> Path:
    return project / "templates" / "mini_recall" / "announce" / name


# -- the base class ---------------------------------------------------------------------------


def test_the_message_is_unchanged_and_the_fields_are_for_machines() -> None:
    exc = LimitError("playbook p, message s, channel x, locale en, field text: too long",
                     playbook="p", stage="s", channel="x", locale="en", field="text",
                     reason="too long")
    assert str(exc) == "playbook p, message s, channel x, locale en, field text: too long"
    assert exc.fields() == {"playbook": "p", "stage": "s", "channel": "x", "locale": "en",
                            "field": "text"}
    assert exc.as_dict() == {"error": "LimitError", "message": str(exc), **exc.fields(),
                             "reason": "too long"}
    bare = CrisisCommsError("something")
    assert (bare.fields(), bare.reason, list(bare.each())) == ({}, "something", [bare])
    again = pickle.loads(pickle.dumps(exc))  # Prefect moves errors between processes
    assert (type(again), str(again), again.fields()) == (LimitError, str(exc), exc.fields())


def test_a_gathering_error_is_where_its_problems_agree_and_lends_them_its_place() -> None:
    one = FactsError("a: bad", field="a", locale="de", reason="bad")
    two = FactsError("b: bad", field="b", locale="de", reason="bad")
    outer = FactsError("p, s: a: bad; b: bad", playbook="p", stage="s", problems=[one, two])
    assert outer.fields() == {"playbook": "p", "stage": "s", "locale": "de"}
    assert [(e.playbook, e.stage, e.field) for e in outer.each()] == [("p", "s", "a"),
                                                                      ("p", "s", "b")]
    assert one.playbook is None  # each() copies; the problems themselves are unchanged
    assert [p["field"] for p in outer.as_dict()["problems"]] == ["a", "b"]


# -- each kind, raised by the real code ------------------------------------------------------


def test_facts_validation_names_each_field() -> None:
    pb = load_playbook("product_recall", PROJECT_ROOT / "playbooks")
    facts: dict[str, Any] = dict(pb.drill_facts)
    facts["recall"] = {**facts["recall"]}
    del facts["recall"]["hazard"]
    facts["severity"] = "apocalyptic"
    with pytest.raises(FactsError) as caught:
        build_fact_sheet(facts)
    assert str(caught.value).startswith("invalid facts: ")
    assert {p.field for p in caught.value.each()} == {"severity", "recall.hazard"}
    assert caught.value.field is None  # two fields at fault: see problems
    facts["severity"] = pb.drill_facts["severity"]
    with pytest.raises(FactsError) as caught:
        build_fact_sheet(facts)
    assert str(caught.value) == "invalid facts: recall.hazard: Field required"
    assert caught.value.field == "recall.hazard"
    assert caught.value.problems[0].reason == "Field required"


def test_trigger_refuses_facts_naming_playbook_stage_locale_and_field(
        engine: Engine, settings: Settings) -> None:
    from crisiscomms.identity.identities import system_identity
    from crisiscomms.incident.service import trigger

    pb = load_playbook("product_recall", settings.playbooks_dir)
    facts = {**pb.drill_facts, "title": "An important notice"}  # no "Recall" in English
    with pytest.raises(FactsError) as caught:
        trigger(engine, settings, CHANNEL_CLASSES, playbook_name="product_recall", facts=facts,
                actor=system_identity("test"))
    exc = caught.value
    assert str(exc).startswith(f"playbook product_recall, stage {pb.stages[0].id}: ")
    assert (exc.playbook, exc.stage) == ("product_recall", pb.stages[0].id)
    assert ("en", "title") in {(p.locale, p.field) for p in exc.each()}


def test_an_unknown_playbook_names_it(project: Path) -> None:
    with pytest.raises(PlaybookError, match="unknown playbook 'nope'") as caught:
        load_playbook("nope", project / "playbooks")
    assert caught.value.playbook == "nope" and caught.value.field is None


def test_a_broken_playbook_names_playbook_stage_and_field(project: Path) -> None:
    rewrite(playbook_file(project), "channels: [status_page, x, email]", "channels: [email]")
    with pytest.raises(PlaybookError) as caught:
        mini(project).check_channels(CHANNEL_CLASSES)
    exc = caught.value
    assert "at least 2 channels" in str(exc)
    assert exc.fields() == {"playbook": "mini_recall", "stage": "announce", "field": "channels"}
    assert exc.problems[0].reason == "a recall notice goes out on at least 2 channels"


def test_a_playbook_key_error_names_the_key(project: Path) -> None:
    rewrite(playbook_file(project), "default_locale: en", "default_locale: de")
    with pytest.raises(PlaybookError, match="default_locale 'de' is not in locales") as caught:
        mini(project)
    assert caught.value.field == "default_locale"
    rewrite(playbook_file(project), "default_locale: de", "default_locale: en\nfoo: 1")
    with pytest.raises(PlaybookError, match="foo: Extra inputs") as caught:
        mini(project)
    assert caught.value.field == "foo"


def test_an_unknown_stage_names_playbook_and_stage(project: Path) -> None:
    with pytest.raises(PlaybookError, match="has no stage 'later'") as caught:
        mini(project).stage("later")
    assert caught.value.fields() == {"playbook": "mini_recall", "stage": "later"}


def test_a_render_error_names_playbook_stage_channel_locale_template_and_part(
        project: Path) -> None:
    rewrite(template(project, "status_page.text.es.j2"), "{{ facts.incident_ref }}",
            "{{ facts.recall.recall_number }}")
    with pytest.raises(RenderError, match="uses an undefined value") as caught:
        render(project, "status_page", "es")
    assert caught.value.fields() == {
        "playbook": "mini_recall", "stage": "announce", "channel": "status_page",
        "locale": "es", "template": "mini_recall/announce/status_page.text.es.j2",
        "field": "text"}
    assert caught.value.reason.startswith("template mini_recall/announce/status_page.text.es.j2")


def test_a_limit_error_names_the_part(project: Path) -> None:
    path = template(project, "x.text.en.j2")
    path.write_text(path.read_text(encoding="utf-8") + " " + "word " * 80, encoding="utf-8")
    with pytest.raises(LimitError, match="over the limit of 280") as caught:
        render(project, "x", "en")
    exc = caught.value
    assert str(exc).startswith("playbook mini_recall, message announce, channel x, locale en, "
                               "field text: ")
    assert (exc.channel, exc.locale, exc.field, exc.template) == (
        "x", "en", "text", "mini_recall/announce/x.text.en.j2")
    assert str(exc).endswith(exc.reason) and not exc.reason.startswith("playbook")


def test_a_message_lacking_canonical_facts_names_each_fact(project: Path) -> None:
    template(project, "email.text.en.j2").write_text("Hello.", encoding="utf-8")
    with pytest.raises(RenderError, match="does not carry") as caught:
        render(project, "email", "en")
    faults = list(caught.value.each())
    assert {f.field for f in faults} >= {"incident_ref", "recall.hazard", "recall.website"}
    assert {(f.channel, f.locale) for f in faults} == {("email", "en")}


def test_an_unapproved_template_names_the_template_where_it_is_used(project: Path) -> None:
    approve_all(project / "templates", project.parent)
    rewrite(template(project, "email.text.en.j2"), "Hi ", "Hello ")
    name = "mini_recall/announce/email.text.en.j2"
    with pytest.raises(ApprovalError, match="was edited after approval") as caught:
        ApprovalLock(project / "templates").check(
            name, (project / "templates" / name).read_text(encoding="utf-8"))
    assert caught.value.fields() == {"template": name}
    with pytest.raises(ApprovalError, match="was edited after approval") as caught:
        render(project, "email", "en", lock=True)
    assert caught.value.fields() == {"playbook": "mini_recall", "stage": "announce",
                                     "template": name, "channel": "email", "locale": "en",
                                     "field": "text"}


def test_a_refused_status_change_names_the_status() -> None:
    with pytest.raises(LifecycleError, match="needs an explicit reopen") as caught:
        check_transition("resolved", "investigating")
    assert caught.value.fields() == {"field": "status", "values": ["investigating"]}


def test_an_unknown_component_names_the_field_and_the_values() -> None:
    with pytest.raises(SubscriptionError, match="unknown components: Nope") as caught:
        normalise_components(["API", "Nope"], ["API"])
    assert caught.value.fields() == {"field": "components", "values": ["Nope"]}


# -- lint reads the fields -------------------------------------------------------------------


def test_lint_names_the_fields_of_a_broken_playbook(project: Path) -> None:
    rewrite(playbook_file(project), "channels: [status_page, x, email]", "channels: [email]")
    playbooks, templates, names = resolve_paths(project, project, project)
    _, problems = lint(playbooks, templates, CHANNEL_CLASSES, names)
    assert [str(p) for p in problems] == [
        "playbook mini_recall, message announce, field channels: a recall notice goes out on "
        "at least 2 channels"]


def test_lint_json_gives_each_problem_its_fields(project: Path) -> None:
    rewrite(template(project, "status_page.text.es.j2"), "{{ facts.incident_ref }}",
            "{{ facts.recall.recall_number }}")
    approve_all(project / "templates", project.parent)
    result = CliRunner().invoke(app, ["lint", "--json", str(project)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["checked"] == ["mini_recall"]
    (problem,) = report["problems"]
    assert {k: v for k, v in problem.items() if k != "text"} == {
        "playbook": "mini_recall", "message": "announce", "channel": "status_page",
        "locale": "es", "field": "text", "facts": "drill",
        "template": "mini_recall/announce/status_page.text.es.j2"}
    assert "uses an undefined value" in problem["text"]
    ok = CliRunner().invoke(app, ["lint", "--json", str(PROJECT_ROOT)])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["problems"] == []
