"""The trigger form built from a playbook: which facts, their kinds, the prefill of an update,
the facts it hands to the engine, and refusals placed at the field they name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from repo_paths import PROJECT_ROOT

from crisiscomms.core.errors import FactsError
from crisiscomms.incident.fact_form import (
    FORM_ERRORS,
    build_form,
    combine_datetime,
    errors_by_field,
    facts_from_form,
    split_datetime,
    time_zones,
)
from crisiscomms.incident.facts import build_fact_sheet
from crisiscomms.playbook.loader import Playbook, load_playbook
from crisiscomms.playbook.notices import fact_problems

PLAYBOOKS = PROJECT_ROOT / "playbooks"


def playbook(name: str) -> Playbook:
    return load_playbook(name, PLAYBOOKS)


def test_outage_acknowledge_asks_the_required_facts_first_with_their_kinds() -> None:
    form = build_form(playbook("outage"), "acknowledge")
    required = [f.path for f in form.fields if f.required]
    assert required == ["incident_ref", "organization", "title", "severity", "components",
                        "impact", "started_at", "contact_url", "status_page_url",
                        "next_update_at"]
    kinds = {f.path: f.kind for f in form.fields}
    assert kinds["severity"] == "choice" and form.field("severity").choices == (
        "minor", "major", "critical")
    assert kinds["component_status"] == "choice"
    assert "under_maintenance" in form.field("component_status").choices
    assert (kinds["components"], kinds["impact"], kinds["title"]) == ("list", "prose", "line")
    assert (kinds["contact_url"], kinds["started_at"], kinds["time_zone"]) == (
        "url", "datetime", "zone")
    assert kinds["extra.prevention"] == "prose"  # an extra fact the playbook's drill uses
    assert all(f.help for f in form.fields if f.required)


def test_the_stage_adds_its_own_required_facts() -> None:
    pb = playbook("outage")
    assert build_form(pb, "update").field("cause").required
    assert not build_form(pb, "acknowledge").field("cause").required
    assert build_form(pb, "resolve").field("resolved_at").required


def test_prose_is_translated_for_every_locale_but_the_default() -> None:
    form = build_form(playbook("outage"), "acknowledge")
    translated = {f.path for f in form.fields if f.locale is not None}
    for locale in ("es", "fr", "de", "ja"):
        assert {f"translations.{locale}.{p}" for p in
                ("title", "impact", "cause", "remedy", "workaround",
                 "extra.prevention")} <= translated
    assert not any(p.startswith("translations.en.") for p in translated)
    assert not any(p.endswith((".contact_url", ".started_at", ".incident_ref"))
                   for p in translated)  # names, times and URLs are the same everywhere
    assert form.field("translations.ja.impact").kind == "prose"


def test_recall_and_breach_sections_with_their_choices_and_lists() -> None:
    recall = build_form(playbook("product_recall"), "announce")
    assert recall.field("recall.hazard").required
    assert recall.field("recall.remedy").kind == "multichoice"
    assert recall.field("recall.remedy").choices == ("refund", "repair", "replace")
    assert recall.field("recall.recall_class").kind == "choice"
    assert not recall.field("recall.recall_class").required
    assert recall.field("recall.colors").kind == "list"
    assert recall.field("recall.sold_from").kind == "date"
    assert recall.field("recall.units_affected").kind == "number"
    assert recall.field("translations.es.recall.colors").kind == "list"
    assert "breach.what_happened" not in recall.paths
    breach = build_form(playbook("data_incident"), "notify")
    assert breach.field("breach.discovered_at").kind == "datetime"
    assert breach.field("breach.dpo_contact").required
    assert "recall.hazard" not in breach.paths


def test_an_update_is_prefilled_from_the_latest_facts() -> None:
    pb = playbook("outage")
    base = build_fact_sheet({**pb.drill_facts, "incident_ref": "OUT-1"})
    form = build_form(pb, "update", base=base)
    assert form.field("impact").value == base.impact
    assert form.field("components").value == ("API", "Dashboard")
    assert form.field("translations.de.cause").value == base.translations["de"]["cause"]
    assert form.default_zone == "Europe/Berlin"
    assert split_datetime(form.field("started_at").value, form.default_zone) == (
        "2026-11-23 10:40", "Europe/Berlin")


def form_values(form: Any, facts: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in form.fields:
        if f.path.startswith("translations."):
            _, locale, name = f.path.split(".", 2)
            values[f.path] = facts.get("translations", {}).get(locale, {}).get(name)
        elif f.path.startswith("extra."):
            values[f.path] = facts.get("extra", {}).get(f.path[6:])
        else:
            head, _, rest = f.path.partition(".")
            value = facts.get(head)
            values[f.path] = value.get(rest) if rest and isinstance(value, dict) else value
    return values


@pytest.mark.parametrize("name", ["outage", "product_recall", "data_incident"])
def test_the_drill_facts_typed_into_the_form_make_a_valid_fact_sheet(name: str) -> None:
    pb = playbook(name)
    form = build_form(pb, pb.stages[0])
    facts = facts_from_form(form, form_values(form, pb.drill_facts))
    sheet = build_fact_sheet(facts)
    assert not fact_problems(pb, pb.stages[0], sheet)
    assert sheet == build_fact_sheet(pb.drill_facts)


def test_empty_fields_are_left_out_and_lines_become_lists() -> None:
    form = build_form(playbook("outage"), "acknowledge")
    facts = facts_from_form(form, {"title": "Down", "impact": "", "components": "API\n\n Web \n",
                                   "cause": None, "translations.es.title": "Caído"})
    assert facts == {"title": "Down", "components": ["API", "Web"],
                     "translations": {"es": {"title": "Caído"}}}


def test_combine_datetime_reads_the_picked_zone_and_keeps_a_typed_offset() -> None:
    assert combine_datetime("2026-11-23 10:40", "Europe/Berlin") == "2026-11-23T10:40:00+01:00"
    assert combine_datetime("2026-11-23T09:40:00+00:00", "Asia/Tokyo") == \
        "2026-11-23T09:40:00+00:00"
    assert combine_datetime("  ", "UTC") is None
    assert combine_datetime("next tuesday", "UTC") == "next tuesday"  # the engine refuses it
    assert datetime.fromisoformat(str(combine_datetime("2026-06-01 12:00", "UTC"))) == \
        datetime(2026, 6, 1, 12, tzinfo=UTC)
    zones = time_zones()
    assert zones[0] == "UTC" and "Europe/Berlin" in zones and "Mars/Olympus" not in zones


def test_refusals_are_placed_at_the_field_they_name() -> None:
    pb = playbook("outage")
    form = build_form(pb, "acknowledge")
    with pytest.raises(FactsError) as refused:
        build_fact_sheet({**pb.drill_facts, "contact_url": "www.example.com",
                          "time_zone": "Mars/Olympus", "components": ["API", "bad\u202e"]})
    errors = errors_by_field(refused.value, form.paths)
    assert "must be an http(s) URL" in errors["contact_url"][0]
    assert "unknown time zone 'Mars/Olympus'" in errors["time_zone"][0]
    assert errors["components"]  # components.1 is shown at the components field
    missing = FactsError("missing required facts: impact, cause", values=("impact", "cause"))
    assert set(errors_by_field(missing, form.paths)) == {"impact", "cause"}
    translation = FactsError("locale es, field impact: no translation", field="impact",
                             locale="es", reason="no translation")
    assert errors_by_field(translation, form.paths) == {
        "translations.es.impact": ["no translation"]}
    elsewhere = FactsError("facts file: not JSON", field="facts")
    assert errors_by_field(elsewhere, form.paths) == {FORM_ERRORS: ["facts file: not JSON"]}
