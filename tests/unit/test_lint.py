"""``crisiscomms lint``: the shipped playbooks pass; each broken fixture fails, naming playbook,
message, channel, locale and field, with a non-zero exit code.

Fixtures: ``tests/fixtures/lint/base`` is a small correct recall project; each
``tests/fixtures/lint/cases/<case>`` breaks it one way (see the README there). A test builds the
case in a temporary folder: the base, the case's ``before/`` files, ``delete.txt`` applied, every
template approved (a real ``approvals.lock``), then the case's ``after/`` files (edits after
approval).
"""

from __future__ import annotations

import json
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


# -- partials: templates the playbook's templates include, import or extend --------------------

STATUS_EN = "templates/mini_recall/announce/status_page.text.en.j2"
PARTIALS = {
    # construct: (how the status page template uses it, the partial's name and text)
    "include": (lambda t: t + ' {% include "partials/footer.j2" %}',
                "partials/footer.j2", "Updates: {{ facts.status_page_url }}"),
    "import": (lambda t: '{% import "partials/macros.j2" as m %}' + t
               + " {{ m.footer(facts.status_page_url) }}",
               "partials/macros.j2", "{% macro footer(url) %}Updates: {{ url }}{% endmacro %}"),
    "from": (lambda t: '{% from "partials/macros.j2" import footer %}' + t
             + " {{ footer(facts.status_page_url) }}",
             "partials/macros.j2", "{% macro footer(url) %}Updates: {{ url }}{% endmacro %}"),
    "extends": (lambda t: '{% extends "partials/layout.j2" %}{% block body %}' + t
                + "{% endblock %}",
                "partials/layout.j2", "{% block body %}{% endblock %} Updates: "
                "{{ facts.status_page_url }}"),
}


def with_partial(construct: str, root: Path, *, approve: bool = True) -> tuple[Path, str]:
    """The base project whose English status page template uses a partial (approved)."""
    project = build(None, root)
    use, name, text = PARTIALS[construct]
    top = project / STATUS_EN
    top.write_text(use(top.read_text(encoding="utf-8").strip()), encoding="utf-8")
    (project / "templates" / name).parent.mkdir(parents=True, exist_ok=True)
    (project / "templates" / name).write_text(text, encoding="utf-8")
    lock = ApprovalLock(project / "templates")
    approve_all(project / "templates", root,
                          names=[n for n in lock.template_names() if approve or n != name])
    return project, name


@pytest.mark.parametrize("construct", sorted(PARTIALS))
def test_lint_names_a_partial_edited_after_approval(construct: str, tmp_path: Path) -> None:
    project, name = with_partial(construct, tmp_path)
    code, out, err = run_lint(project)
    assert (code, err) == (0, ""), err  # approved as it is: fine
    assert "0 problem(s)" in out
    partial = project / "templates" / name
    partial.write_text(partial.read_text(encoding="utf-8").replace("Updates:", "UNAPPROVED:"),
                       encoding="utf-8")
    code, _, err = run_lint(project)
    assert code == 1
    assert ("error: playbook mini_recall, message announce, channel status_page, locale en, "
            f"field text: template {name} (loaded by mini_recall/announce/status_page.text.en"
            ".j2) is edited") in " ".join(err.split())
    (problem,) = problems_of(project)
    assert (problem.template, problem.message, problem.channel, problem.locale) == (
        name, "announce", "status_page", "en")
    report = json.loads(runner.invoke(app, ["lint", "--json", str(project)]).stdout)
    assert [p["template"] for p in report["problems"]] == [name]


def test_lint_names_a_partial_never_approved(tmp_path: Path) -> None:
    project, name = with_partial("include", tmp_path, approve=False)
    (problem,) = problems_of(project)
    assert problem.template == name and f"template {name} (loaded by" in problem.text
    assert "is unapproved" in problem.text


def test_lint_names_a_partial_loaded_by_a_name_known_only_at_render(tmp_path: Path) -> None:
    """``{% include "partials/" ~ locale ~ ".j2" %}``: the render, with the lock, refuses it."""
    project, _ = with_partial("include", tmp_path)
    top = project / STATUS_EN
    top.write_text(top.read_text(encoding="utf-8").replace(
        '"partials/footer.j2"', '"partials/" ~ locale ~ ".j2"'), encoding="utf-8")
    (project / "templates" / "partials" / "en.j2").write_text("UNAPPROVED", encoding="utf-8")
    approve_all(project / "templates", tmp_path,
                          names=["mini_recall/announce/status_page.text.en.j2"])
    problems = problems_of(project)
    assert problems and {p.template for p in problems} == {"partials/en.j2"}
    assert {(p.message, p.channel, p.locale) for p in problems} == {
        ("announce", "status_page", "en")}


def test_lint_passes_a_shared_partial_used_by_two_locales_naming_neither_alone(
        tmp_path: Path) -> None:
    project, name = with_partial("include", tmp_path)
    es = project / "templates/mini_recall/announce/status_page.text.es.j2"
    es.write_text(es.read_text(encoding="utf-8").strip() + ' {% include "partials/footer.j2" %}',
                  encoding="utf-8")
    approve_all(project / "templates", tmp_path,
                          names=[es.relative_to(project / "templates").as_posix()])
    assert problems_of(project) == []
    (project / "templates" / name).write_text("UNAPPROVED", encoding="utf-8")
    (problem,) = problems_of(project)
    assert (problem.template, problem.message, problem.channel, problem.locale) == (
        name, "announce", "status_page", None)
    assert "and 1 more" in problem.text
