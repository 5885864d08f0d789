"""``crisiscomms lint`` on a playbook's ``intake:`` rules: what a rule makes of a signal must
pass the stage's required facts and render on every channel, and its components must exist on
the status page. The example workspace's outage playbook, edited one way per case, is linted
with the real templates and approvals."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from repo_paths import PROJECT_ROOT

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.playbook.lint import Problem, lint


def lint_outage(tmp_path: Path, *edits: tuple[str, str],
                known: list[str] | None = None) -> list[Problem]:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    shutil.copy(PROJECT_ROOT / "playbooks" / "outage.yaml", playbooks)
    text = (playbooks / "outage.yaml").read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (playbooks / "outage.yaml").write_text(text, encoding="utf-8")
    _, problems = lint(playbooks, PROJECT_ROOT / "templates", CHANNEL_CLASSES, ["outage"],
                       known_components=known)
    return problems


def test_the_rules_of_the_shipped_outage_playbook_pass_with_its_components(
        tmp_path: Path) -> None:
    assert lint_outage(tmp_path, known=["API", "Dashboard", "Billing"]) == []


def test_a_rule_whose_facts_lack_a_required_fact(tmp_path: Path) -> None:
    problems = lint_outage(
        tmp_path, ("        contact_url: https://www.example.com/support/contact\n", ""))
    assert problems, "a broken rule must not pass"
    assert {(p.message, p.field) for p in problems} == {("acknowledge", "contact_url"),
                                                        ("resolve", "contact_url")}
    assert {p.facts for p in problems} >= {"intake rule service-down, alertmanager firing",
                                           "intake rule service-down, alertmanager resolved"}


def test_words_over_a_fact_limit_name_the_rule_and_fact(tmp_path: Path) -> None:
    long_title = "Disruption to some of our services " + "and more " * 20
    problems = lint_outage(tmp_path, ("        title: Disruption to some of our services\n",
                                      f"        title: {long_title}\n"))
    assert {p.field for p in problems} == {f"intake.rules.{i}.facts.title" for i in range(3)}


def test_components_the_status_page_lacks(tmp_path: Path) -> None:
    problems = lint_outage(tmp_path, known=["API"])
    assert {(p.field, p.text.split(":")[0]) for p in problems} == {
        ("intake.rules.0.components", "rule service-down"),
        ("intake.rules.1.components", "rule pagerduty-high-urgency"),
        ("intake.rules.2.components", "rule our-events")}
    assert all("Dashboard" in p.text for p in problems)


def test_a_regex_that_does_not_compile_names_its_rule(tmp_path: Path) -> None:
    doc = yaml.safe_load((PROJECT_ROOT / "playbooks" / "outage.yaml").read_text("utf-8"))
    assert doc["intake"]["rules"][1]["match"]["urgency"] == "high"
    problems = lint_outage(tmp_path, ("match: {urgency: high,", 'match: {urgency: "(high",'))
    assert [p.field for p in problems] == ["intake.rules.1.match"]
    assert "does not compile" in problems[0].text
