"""``crisiscomms lint``: the shipped playbooks pass; each broken fixture fails, naming playbook,
message, channel, locale and field, with a non-zero exit code.

Fixtures: ``tests/fixtures/lint/base`` is a small correct recall project; each
``tests/fixtures/lint/cases/<case>`` breaks it one way (see the README there). A test builds the
case in a temporary folder: the base, the case's ``before/`` files, ``delete.txt`` applied, every
template approved (a real ``approvals.lock``), then the case's ``after/`` files (edits after
approval).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from approvers import approve_all
from repo_paths import PROJECT_ROOT
from typer.testing import CliRunner

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.cli import app
from crisiscomms.playbook.lint import Problem, lint, resolve_paths
from crisiscomms.render.approvals import ApprovalLock

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lint"
runner = CliRunner()


def build(case: str | None, root: Path) -> Path:
    project = root / "project"
    shutil.copytree(FIXTURES / "base", project)
    folder = FIXTURES / "cases" / case if case else None

    def overlay(sub: str) -> None:
        if folder is not None and (folder / sub).is_dir():
            shutil.copytree(folder / sub, project, dirs_exist_ok=True)

    overlay("before")
    if folder is not None and (folder / "delete.txt").is_file():
        for name in (folder / "delete.txt").read_text(encoding="utf-8").split():
            (project / name).unlink()
    approve_all(project / "templates", root)
    overlay("after")
    return project


def run_lint(path: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["lint", str(path)])
    return result.exit_code, result.stdout, result.stderr


def problems_of(project: Path) -> list[Problem]:
    playbooks, templates, names = resolve_paths(project, project, project)
    _, problems = lint(playbooks, templates, CHANNEL_CLASSES, names)
    return problems


def test_shipped_playbooks_pass() -> None:
    code, out, err = run_lint(PROJECT_ROOT)
    assert code == 0, err
    assert "0 problem(s)" in out
    for name in ("product_recall", "data_incident", "outage"):
        assert name in out


def test_the_base_fixture_passes(tmp_path: Path) -> None:
    project = build(None, tmp_path)
    code, out, err = run_lint(project)
    assert (code, err) == (0, "")
    assert "linted 1 playbook(s) (mini_recall): 0 problem(s)" in out
    # a single playbook file is a PATH too
    code, out, _ = run_lint(project / "playbooks" / "mini_recall.yaml")
    assert code == 0 and "(mini_recall)" in out


CASES = {
    # case: (message, channel, locale, field, words the problem must say)
    "missing_recall_field": ("announce", None, None, "recall.hazard",
                             ["drill_facts.recall.hazard", "Field required"]),
    "missing_locale": ("announce", "email", "es", "text",
                       ["mini_recall/announce/email.text.es.j2 is missing"]),
    "over_limit_no_short": ("announce", "x", "es", "text",
                            ["over the limit of 280", "never truncated",
                             "add a short variant mini_recall/announce/x.short.es.j2"]),
    "unapproved_template": ("announce", "email", "en", "subject_short",
                            ["email.subject_short.en.j2 is unapproved",
                             "crisiscomms templates diff"]),
    "edited_template": ("announce", "email", "en", "text",
                        ["email.text.en.j2 is edited", "crisiscomms templates diff"]),
    "undeclared_recipient_field": ("announce", "email", "en", "text",
                                   ["uses recipient.plan", "does not declare",
                                    "recipient_fields: first_name"]),
    "undefined_variable": ("announce", "status_page", "es", "text",
                           ["status_page.text.es.j2 uses an undefined value",
                            "recall_number"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_broken_fixture_fails_naming_the_problem(case: str, tmp_path: Path) -> None:
    message, channel, locale, field, words = CASES[case]
    project = build(case, tmp_path)
    code, out, err = run_lint(project)
    assert code != 0
    assert "linted 1 playbook(s) (mini_recall)" in out and "0 problem(s)" not in out
    where = ["playbook mini_recall", f"message {message}"]
    where += [f"channel {channel}"] if channel else []
    where += [f"locale {locale}"] if locale else []
    where += [f"field {field}"]
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines, err
    prefix = ", ".join(where)
    matching = [line for line in lines if prefix in line and all(w in line for w in words)]
    assert matching, f"no line names {prefix} and {words}:\n{err}"
    # the API says the same, in fields
    problems = problems_of(project)
    assert any(p.playbook == "mini_recall" and p.message == message and p.channel == channel
               and p.locale == locale and p.field == field for p in problems), problems


def test_unapproved_template_also_refused_where_it_is_used(tmp_path: Path) -> None:
    """An unapproved template is refused at render time too (trigger renders with the lock)."""
    from crisiscomms.core.errors import ApprovalError
    from crisiscomms.incident.facts import build_fact_sheet
    from crisiscomms.playbook.loader import load_playbook
    from crisiscomms.render.environment import StageRenderer

    project = build("edited_template", tmp_path)
    pb = load_playbook("mini_recall", project / "playbooks")
    renderer = StageRenderer(project / "templates", CHANNEL_CLASSES,
                             approvals=ApprovalLock(project / "templates"))
    with pytest.raises(ApprovalError, match=r"email\.text\.en\.j2 was edited after approval"):
        renderer.render_stage(pb, pb.stages[0], build_fact_sheet(dict(pb.drill_facts)))


def test_a_problem_found_with_several_fact_sets_is_reported_once(tmp_path: Path) -> None:
    problems = problems_of(build("undefined_variable", tmp_path))
    assert len(problems) == 1 and problems[0].facts == "drill"


def test_an_invalid_playbook_file_fails_with_its_name(tmp_path: Path) -> None:
    project = build(None, tmp_path)
    path = project / "playbooks" / "mini_recall.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "channels: [status_page, x, email]", "channels: [email]"), encoding="utf-8")
    code, _, err = run_lint(project)
    assert code != 0
    assert "playbook mini_recall" in err and "at least 2 channels" in err
