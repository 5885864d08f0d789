"""The playbooks' ``intake:`` rules: which signals run which stage, with which facts.

Signals are built directly (they are plain contract values); the playbooks are small ones
written here, plus the example workspace's three, whose rules must route their own senders.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from repo_paths import PROJECT_ROOT

from crisiscomms.core.errors import PlaybookError
from crisiscomms.intake.contract import Signal, SourceKind
from crisiscomms.intake.rules import route, workspace_playbooks
from crisiscomms.playbook.loader import Playbook, load_playbook

PLAYBOOKS = PROJECT_ROOT / "playbooks"

NOW = datetime(2026, 12, 1, 7, 12, tzinfo=UTC)
STARTED = datetime(2026, 12, 1, 7, 5, tzinfo=UTC)
ENDED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

STAGES = [{"id": "acknowledge", "title": "On it", "incident_status": "investigating"},
          {"id": "update", "title": "Cause", "incident_status": "identified"},
          {"id": "resolve", "title": "Resolved", "incident_status": "resolved"}]

RULES: list[dict[str, Any]] = [
    {"name": "api-down", "sources": ["alertmanager", "grafana"],
     "match": {"alertname": "^(APIDown|DashboardDown)$", "team": "web.*"},
     "stage": "acknowledge", "resolve_stage": "resolve", "group_by": ["alertname"],
     "components": {"label": "service", "map": {"api": "API", "dashboard": "Dashboard"},
                    "fallback": "Website"},
     "severity": {"label": "severity", "map": {"critical": "critical", "page": "major"},
                  "default": "minor"},
     "next_update_minutes": 30,
     "facts": {"title": "Some requests fail", "impact": "Errors for some customers.",
               "translations": {"es": {"title": "Fallan algunas solicitudes"}}}},
    {"name": "pd", "sources": ["pd-main"], "match": {"urgency": "high"},
     "components": {"label": "service", "map": {"API Gateway": "API"}},
     "facts": {"title": "Service disruption"}},
    {"name": "ours", "sources": ["events"], "stage": "acknowledge",
     "facts": {"title": "Default words", "impact": "Default impact.",
               "translations": {"es": {"title": "Palabras por defecto"}}}},
]


def playbook(name: str = "outage", rules: list[dict[str, Any]] | None = None,
             **extra: Any) -> Playbook:
    return Playbook.model_validate({"name": name, "title": name, "locales": ["en", "es"],
                                    "stages": STAGES, "intake": {"rules": rules or RULES},
                                    **extra})


BOOKS = {"outage": playbook()}


def signal(kind: SourceKind = SourceKind.alertmanager, *, source: str = "am-prod",
           status: str = "firing", labels: Mapping[str, str] | None = None,
           **fields: Any) -> Signal:
    base = {"alertname": "APIDown", "team": "web-platform", "service": "api",
            "severity": "critical"}
    return Signal(source=source, kind=kind, dedup_key="fp-1", group_key="am-group",
                  status=status,  # type: ignore[arg-type]
                  labels=base if labels is None else labels, started_at=STARTED,
                  ended_at=ENDED if status == "resolved" else None,
                  summary="p99 latency 4.2s on api-7f9c (engineer's words)", **fields)


ROUTES: list[tuple[str, Signal, dict[str, Any] | None]] = [
    # case, signal, expected (stage, proposal, rule and some facts) or None: no rule takes it
    ("matches: the rule's stage and words, components and severity from labels",
     signal(), {"stage": "acknowledge", "proposal": False, "rule": "api-down",
                "title": "Some requests fail", "components": ["API"], "severity": "critical",
                "started_at": STARTED.isoformat(),
                "next_update_at": (NOW + timedelta(minutes=30)).isoformat()}),
    ("a regex is matched against the whole value",
     signal(labels={"alertname": "APIDownXL", "team": "web"}), None),
    ("every match entry must hold (team is missing)",
     signal(labels={"alertname": "APIDown"}), None),
    ("an alternative of the regex", signal(labels={"alertname": "DashboardDown", "team": "web",
                                                   "service": "dashboard"}),
     {"components": ["Dashboard"], "severity": "minor"}),
    ("severity map: page → major", signal(labels={"alertname": "APIDown", "team": "web",
                                                  "severity": "page"}),
     {"severity": "major"}),
    ("an unknown component value takes the fallback, never a crash",
     signal(labels={"alertname": "APIDown", "team": "web", "service": "billing-7"}),
     {"components": ["Website"], "severity": "minor"}),
    ("a kind the rule does not take", signal(SourceKind.pagerduty, source="pd-other",
                                             labels={"urgency": "high"}), None),
    ("a source named by its name; an unmapped component is no component",
     signal(SourceKind.pagerduty, source="pd-main",
            labels={"urgency": "high", "service": "Billing"}),
     {"rule": "pd", "stage": "acknowledge", "components": None, "severity": "major"}),
    ("resolved: the resolve stage, proposed, resolved_at = the signal's end",
     signal(status="resolved"), {"stage": "resolve", "proposal": True,
                                 "resolved_at": ENDED.isoformat(), "next_update_at": None}),
    ("resolved without a resolve stage named: the playbook's resolved stage",
     signal(SourceKind.pagerduty, source="pd-main", status="resolved",
            labels={"urgency": "high"}), {"stage": "resolve", "proposal": True}),
    ("our shape names its playbook and stage; its facts override the rule's words",
     signal(SourceKind.events, source="ops-tool", labels={}, playbook="outage",
            stage="update", incident_ref="OUTAGE-1",
            facts={"cause": "A bad deploy.", "title": "API errors"}),
     {"rule": "ours", "stage": "update", "title": "API errors", "cause": "A bad deploy.",
      "impact": "Default impact."}),
    ("our shape naming a playbook that does not exist", signal(
        SourceKind.events, source="ops-tool", labels={}, playbook="nope"), None),
    ("our shape naming a stage the playbook lacks", signal(
        SourceKind.events, source="ops-tool", labels={}, playbook="outage", stage="nope"), None),
    ("our shape naming no playbook is matched like any signal (the rule has no match)",
     signal(SourceKind.events, source="ops-tool", labels={}), {"rule": "ours"}),
]


@pytest.mark.parametrize(("case", "sig", "expected"), ROUTES, ids=[c for c, _, _ in ROUTES])
def test_route(case: str, sig: Signal, expected: dict[str, Any] | None) -> None:
    request = route(sig, BOOKS, now=NOW)
    if expected is None:
        assert request is None, case
        return
    assert request is not None, case
    facts = dict(request.facts)
    for key, value in expected.items():
        if key in ("stage", "proposal", "rule"):
            assert getattr(request, key) == value, (case, key)
        else:
            assert facts.get(key) == value, (case, key, facts)
    assert "p99 latency" not in repr(facts)  # the alert's own words are never a fact


def test_group_by_makes_one_incident_per_label_value() -> None:
    a = route(signal(), BOOKS, now=NOW)
    b = route(signal(labels={"alertname": "DashboardDown", "team": "web"}), BOOKS, now=NOW)
    c = route(signal(labels={"alertname": "APIDown", "team": "web-2"}), BOOKS, now=NOW)
    assert a is not None and b is not None and c is not None
    assert a.group_key == c.group_key == "api-down:alertname=APIDown" != b.group_key
    pd = route(signal(SourceKind.pagerduty, source="pd-main", labels={"urgency": "high"}),
               BOOKS, now=NOW)
    assert pd is not None and pd.group_key is None  # the sender's own group key


def test_translations_of_the_rule_and_of_our_event_merge() -> None:
    sig = signal(SourceKind.events, source="ops", labels={}, playbook="outage",
                 facts={"translations": {"es": {"impact": "Errores."}}})
    request = route(sig, BOOKS, now=NOW)
    assert request is not None
    assert request.facts["translations"] == {"es": {"title": "Palabras por defecto",
                                                    "impact": "Errores."}}


def test_playbooks_are_tried_by_name_and_rules_in_order() -> None:
    first = playbook("a_first", [{**RULES[0], "name": "first", "stage": "update"}])
    books = {"z_last": playbook("z_last"), "a_first": first}
    request = route(signal(), books, now=NOW)
    assert request is not None and (request.playbook, request.rule) == ("a_first", "first")
    twice = playbook("b", [{**RULES[0], "name": "one", "stage": "update"},
                           {**RULES[0], "name": "two"}])
    request = route(signal(), {"b": twice}, now=NOW)
    assert request is not None and request.rule == "one"


def test_no_resolve_stage_anywhere_means_a_resolution_runs_nothing() -> None:
    book = Playbook.model_validate({
        "name": "recall", "title": "r", "stages": [STAGES[1]],
        "intake": {"rules": [{"name": "feed", "sources": ["recall"]}]}})
    assert route(signal(SourceKind.recall, labels={}), {"recall": book}, now=NOW) is not None
    assert route(signal(SourceKind.recall, labels={}, status="resolved"), {"recall": book},
                 now=NOW) is None


INVALID: list[tuple[str, dict[str, Any], str]] = [
    # case, the rule's changed keys, the field the error names
    ("a stage that does not exist", {"stage": "announce"}, "intake.rules.0.stage"),
    ("a resolve stage that does not exist", {"resolve_stage": "close"},
     "intake.rules.0.resolve_stage"),
    ("a regex that does not compile", {"match": {"alertname": "(APIDown"}},
     "intake.rules.0.match"),
    ("an invalid severity", {"severity": {"label": "severity", "map": {"p1": "sev1"}}},
     "intake.rules.0.severity.map.p1"),
    ("an invalid default severity", {"severity": {"default": "high"}},
     "intake.rules.0.severity.default"),
    ("a fact that is not a FactSheet field", {"facts": {"headline": "x"}},
     "intake.rules.0.facts.headline"),
    ("a fact the signal gives", {"facts": {"started_at": "2026-12-01T00:00:00Z"}},
     "intake.rules.0.facts"),
    ("a translation into a locale the playbook lacks",
     {"facts": {"translations": {"pt": {"title": "x"}}}},
     "intake.rules.0.facts.translations.pt"),
    ("no sources", {"sources": []}, "intake.rules.0.sources"),
    ("an unknown key", {"when": "always"}, "intake.rules.0.when"),
    ("next update in zero minutes", {"next_update_minutes": 0},
     "intake.rules.0.next_update_minutes"),
]


@pytest.mark.parametrize(("case", "change", "field"), INVALID, ids=[c for c, _, _ in INVALID])
def test_an_invalid_section_names_the_field(tmp_path: Path, case: str, change: dict[str, Any],
                                            field: str) -> None:
    rule = {"name": "r", "sources": ["alertmanager"], **change}
    doc = {"name": "outage", "title": "o", "locales": ["en", "es"], "stages": STAGES,
           "intake": {"rules": [rule]}}
    (tmp_path / "outage.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(PlaybookError) as caught:
        load_playbook("outage", tmp_path)
    fields = [p.field for p in caught.value.each()]
    assert field in fields, (case, fields)


def test_two_rules_of_one_name_are_refused(tmp_path: Path) -> None:
    doc = {"name": "outage", "title": "o", "stages": STAGES,
           "intake": {"rules": [{"name": "r", "sources": ["events"]}] * 2}}
    (tmp_path / "outage.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(PlaybookError, match="used twice") as caught:
        load_playbook("outage", tmp_path)
    assert [p.field for p in caught.value.each()] == ["intake"]


def test_the_example_playbooks_route_their_senders() -> None:
    books = workspace_playbooks(PLAYBOOKS)
    assert sorted(books) == ["data_incident", "outage", "product_recall"]
    alert = signal(labels={"alertname": "APIDown", "severity": "critical", "service": "api"})
    request = route(alert, books, now=NOW)
    assert request is not None and (request.playbook, request.stage) == ("outage",
                                                                         "acknowledge")
    assert request.facts["components"] == ["API"] and request.facts["severity"] == "critical"
    assert set(request.facts["translations"]) == {"es", "fr", "de", "ja"}
    assert route(signal(labels={"alertname": "DiskFull", "severity": "critical"}), books,
                 now=NOW) is None  # an internal alert publishes nothing
    recall = route(signal(SourceKind.recall, source="cpsc", labels={"recall_class": "I"}),
                   books, now=NOW)
    assert recall is not None and (recall.playbook, recall.stage, recall.facts["severity"]) == (
        "product_recall", "announce", "critical")
    ours = route(signal(SourceKind.events, source="ops", labels={}, playbook="data_incident"),
                 books, now=NOW)
    assert ours is not None and ours.stage == "notify"
    assert route(signal(SourceKind.pagerduty, source="pd", labels={"urgency": "low",
                                                                   "service": "Dashboard"}),
                 books, now=NOW) is None


def test_a_broken_playbook_does_not_stop_the_others(tmp_path: Path) -> None:
    for path in PLAYBOOKS.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("name: broken\nstages: [\n", encoding="utf-8")
    assert sorted(workspace_playbooks(tmp_path)) == ["data_incident", "outage",
                                                     "product_recall"]
