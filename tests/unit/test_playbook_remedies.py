"""Remedies agents may grant without asking: every shipped playbook has them in every locale,
the same kinds everywhere; the loader refuses a stray locale or kind; lint names a locale whose
remedies differ; the support guide falls back like messages do; every support holding
statement lists them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from repo_paths import PROJECT_ROOT

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.core.errors import PlaybookError
from crisiscomms.playbook.lint import lint, resolve_paths
from crisiscomms.playbook.loader import load_playbook
from crisiscomms.playbook.support import support_guide

PLAYBOOKS = PROJECT_ROOT / "playbooks"
SHIPPED = ("outage", "product_recall", "data_incident")


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_playbook_empowers_agents_in_every_locale(name: str) -> None:
    book = load_playbook(name, PLAYBOOKS)
    assert set(book.remedies) == set(book.locales)
    kinds = {loc: [r.kind for r in rs] for loc, rs in book.remedies.items()}
    assert all(k == kinds[book.default_locale] and k for k in kinds.values()), kinds
    for remedies in book.remedies.values():
        for remedy in remedies:
            assert remedy.what.strip() and remedy.limit.strip() and remedy.when.strip()


def _copy_with(tmp_path: Path, name: str, change: object) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir(exist_ok=True)
    raw = yaml.safe_load((PLAYBOOKS / f"{name}.yaml").read_text(encoding="utf-8"))
    change(raw)  # type: ignore[operator]
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True),
                                         encoding="utf-8")
    return folder


def test_the_loader_refuses_a_stray_locale_and_an_unknown_kind(tmp_path: Path) -> None:
    folder = _copy_with(tmp_path, "outage",
                        lambda raw: raw["remedies"].update(pt=raw["remedies"]["en"]))
    with pytest.raises(PlaybookError, match="remedies name locales the playbook lacks"):
        load_playbook("outage", folder)

    def bad_kind(raw: dict) -> None:  # type: ignore[type-arg]
        raw["remedies"]["en"][0]["kind"] = "free_lunch"

    folder = _copy_with(tmp_path, "outage", bad_kind)
    with pytest.raises(PlaybookError, match=r"remedies\.en\.0\.kind"):
        load_playbook("outage", folder)


def test_lint_names_a_locale_whose_remedies_differ(tmp_path: Path) -> None:
    folder = _copy_with(tmp_path, "outage",
                        lambda raw: raw["remedies"]["ja"].reverse())
    shutil.copytree(PROJECT_ROOT / "templates", tmp_path / "templates")
    playbooks, templates, _names = resolve_paths(tmp_path, folder, tmp_path / "templates")
    _, problems = lint(playbooks, templates, CHANNEL_CLASSES, ["outage"])
    remedies = [p for p in problems if p.field == "remedies"]
    assert [(p.locale, p.playbook) for p in remedies] == [("ja", "outage")]


def test_the_support_guide_falls_back_like_messages() -> None:
    exact = support_guide("product_recall", PLAYBOOKS, "fr")
    assert exact.locale == "fr" and not exact.is_fallback
    assert exact.remedies[0].kind == "replacement" and "remplacement" in exact.remedies[0].what
    regional = support_guide("product_recall", PLAYBOOKS, "de-AT")
    assert regional.locale == "de" and regional.is_fallback
    unknown = support_guide("data_incident", PLAYBOOKS, "pt-BR")
    assert unknown.locale == "en"
    assert unknown.qa == load_playbook("data_incident", PLAYBOOKS).qa["en"]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_support_statement_lists_the_remedies_agents_may_grant(name: str) -> None:
    """What support copies is complete and agrees with the support page: every stage's
    statement, in every locale, lists each remedy (what, up to what limit, when) and no longer
    forbids the credits and refunds the playbook lets agents grant."""
    from crisiscomms.incident.facts import build_fact_sheet
    from crisiscomms.render.environment import StageRenderer

    book = load_playbook(name, PLAYBOOKS)
    renderer = StageRenderer(PROJECT_ROOT / "templates", CHANNEL_CLASSES)
    facts = build_fact_sheet(book.drill_facts)
    seen = set()
    for stage in book.stages:
        for message, _ in renderer.render_stage(book, stage, facts):
            if message.channel != "support":
                continue
            seen.add((stage.id, message.locale))
            text = message.parts["text"]
            for remedy in book.remedies[message.locale]:
                assert remedy.what in text, (stage.id, message.locale, remedy.kind)
                assert remedy.limit in text and remedy.when in text, (stage.id, message.locale)
            assert "Promise a credit or a refund" not in text
            assert "Promise credits or refunds" not in text
    assert {loc for _, loc in seen} == set(book.locales)
