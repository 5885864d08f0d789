"""Fact sheets and playbooks: validation errors name the field; hashes are stable."""

from __future__ import annotations

import pytest
from repo_paths import PROJECT_ROOT

from crisiscomms.channels import CHANNEL_CLASSES
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
    ("name: bad\ntitle: t\nrequired_facts: [colour]\nstages:\n - {id: a, title: A, "
     "incident_status: investigating}\n", "colour"),
    ("name: [unclosed\n", "invalid YAML"),
    # a key twice: plain YAML keeps the last silently (a second `listening:` lost the first)
    ("name: bad\ntitle: t\nstages:\n - {id: a, title: A, incident_status: investigating}\n"
     "listening: {vip: ['@a']}\nlistening: {vip: ['@b']}\n", "found the key 'listening' twice"),
])
def test_invalid_playbooks_are_refused(tmp_path, text: str, match: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(PlaybookError, match=match):
        load_playbook("bad", tmp_path)


@pytest.mark.parametrize(("text", "match"), [
    ("stages:\n - {id: a, title: A, incident_status: investigating, channels: [x, fax]}\n",
     r"stage 'a': unknown channels \['fax'\] \(channels: status_page, x, "),
    ("must_carry: {fax: [title]}\nstages:\n - {id: a, title: A, "
     "incident_status: investigating}\n", r"must_carry names unknown channels \['fax'\]"),
    ("notice: {kind: recall, min_channels: 3}\nstages:\n - {id: a, title: A, "
     "incident_status: investigating, channels: [x, email]}\n",
     "a recall notice goes out on at least 3 channels"),
])
def test_channels_are_checked_against_the_registry(tmp_path, text: str, match: str) -> None:
    """The loader knows no channel: the registry the caller passes says which exist."""
    (tmp_path / "bad.yaml").write_text(f"name: bad\ntitle: t\n{text}")
    pb = load_playbook("bad", tmp_path)
    with pytest.raises(PlaybookError, match=match):
        pb.check_channels(CHANNEL_CLASSES)


def test_a_stage_without_channels_gets_the_default_enabled_ones_in_order(tmp_path) -> None:
    (tmp_path / "p.yaml").write_text("name: p\ntitle: t\nstages:\n - {id: a, title: A, "
                                     "incident_status: investigating}\n")
    pb = load_playbook("p", tmp_path)
    pb.check_channels(CHANNEL_CLASSES)
    assert pb.stages[0].channels is None
    assert pb.channels_of(pb.stages[0], CHANNEL_CLASSES) == tuple(
        name for name, cls in CHANNEL_CLASSES.items() if cls.default_enabled)
    assert "press" not in pb.channels_of(pb.stages[0], CHANNEL_CLASSES)  # opt-in


def test_outage_playbook_loads() -> None:
    pb = load_playbook("outage", PROJECT_ROOT / "playbooks")
    assert [s.id for s in pb.stages] == ["acknowledge", "update", "resolve"]
    assert pb.stages[0].auto_send and not pb.stages[1].auto_send
