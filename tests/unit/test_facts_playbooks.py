"""Fact sheets and playbooks: validation errors name the field; hashes are stable."""

from __future__ import annotations

import pytest
from repo_paths import PROJECT_ROOT

from crisiscomms.core.errors import FactsError, PlaybookError
from crisiscomms.incident.facts import build_fact_sheet
from crisiscomms.playbook.loader import load_playbook

GOOD = {
    "incident_ref": "INC-1", "organization": "Example", "title": "Down", "severity": "major",
    "started_at": "2026-11-23T09:40:00+00:00",
}


def test_fact_sheet_hash_is_canonical() -> None:
    a = build_fact_sheet(GOOD)
    b = build_fact_sheet(dict(reversed(list(GOOD.items()))))
    assert a.content_hash() == b.content_hash()
    assert build_fact_sheet({**GOOD, "title": "Other"}).content_hash() != a.content_hash()


@pytest.mark.parametrize(("change", "field"), [
    ({"severity": "apocalyptic"}, "severity"),
    ({"started_at": "2026-11-23T09:40:00"}, "started_at"),
    ({"contact_url": "javascript:alert(1)"}, "contact_url"),
    ({"unknown_fact": "x"}, "unknown_fact"),
    ({"incident_ref": "../../etc"}, "incident_ref"),
])
def test_bad_facts_name_the_field(change: dict[str, str], field: str) -> None:
    with pytest.raises(FactsError, match=field):
        build_fact_sheet({**GOOD, **change})


def test_update_merges_over_previous_facts() -> None:
    first = build_fact_sheet(GOOD)
    second = build_fact_sheet({"cause": "a bad deploy"}, base=first)
    assert second.title == "Down" and second.cause == "a bad deploy"


def test_missing_lists_required_facts() -> None:
    sheet = build_fact_sheet(GOOD)
    assert sheet.missing(["title", "impact", "components", "extra.prevention"]) == [
        "impact", "components", "extra.prevention"]


def test_unknown_playbook_names_the_available_ones() -> None:
    with pytest.raises(PlaybookError, match=r"unknown playbook 'nope' \(available: .*outage"):
        load_playbook("nope", PROJECT_ROOT / "playbooks")


@pytest.mark.parametrize(("text", "match"), [
    ("name: bad\ntitle: t\nstages: []\n", "at least one stage"),
    ("name: bad\ntitle: t\nstages:\n - {id: a, title: A, incident_status: exploded}\n",
     "incident_status"),
    ("name: bad\ntitle: t\nstages:\n - {id: a, title: A, incident_status: investigating, "
     "channels: [fax]}\n", "unknown channels"),
    ("name: bad\ntitle: t\nrequired_facts: [colour]\nstages:\n - {id: a, title: A, "
     "incident_status: investigating}\n", "colour"),
    ("name: [unclosed\n", "invalid YAML"),
])
def test_invalid_playbooks_are_refused(tmp_path, text: str, match: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(PlaybookError, match=match):
        load_playbook("bad", tmp_path)


def test_outage_playbook_loads() -> None:
    pb = load_playbook("outage", PROJECT_ROOT / "playbooks")
    assert [s.id for s in pb.stages] == ["acknowledge", "update", "resolve"]
    assert pb.stages[0].auto_send and not pb.stages[1].auto_send
