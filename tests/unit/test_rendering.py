"""Sandboxed rendering: strict variables, escaping, injection as data, limits, approvals."""

from __future__ import annotations

from pathlib import Path

import pytest
from approvers import make_key
from mini_playbook import PLAYBOOK, STAGE

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.core.errors import ApprovalError, LimitError, RenderError
from crisiscomms.core.locales import fallback_chain, resolve_locale
from crisiscomms.incident.facts import FactSheet, build_fact_sheet
from crisiscomms.render.approvals import ApprovalLock
from crisiscomms.render.environment import StageRenderer, recipient_substitutions


def facts(**over: object) -> FactSheet:
    base: dict[str, object] = {
        "incident_ref": "INC-1", "organization": "Example Corp", "title": "API down",
        "severity": "major", "components": ["API", "Dashboard"],
        "started_at": "2026-11-23T09:40:00+00:00", "next_update_at": "2026-11-23T14:00:00+00:00",
        "time_zone": "Europe/Berlin", "status_page_url": "https://status.example.com/",
    }
    base.update(over)
    return build_fact_sheet(base)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    return write(tmp_path, {
        "pb/s/x.text.en.j2": "{{ facts.title }}: {{ facts.components | join_and }}. "
                             "Next update {{ facts.next_update_at | time }}.",
        "pb/s/email.subject.en.j2": "[{{ facts.incident_ref }}] {{ facts.title }}",
        "pb/s/email.html.en.j2": "<p>Hi {{ recipient.first_name }}, {{ facts.title }}</p>",
        "pb/s/email.text.en.j2": "Hi {{ recipient.first_name }}, {{ facts.title }}",
    })


def render(tdir: Path, sheet: FactSheet, *, approvals: bool = False) -> dict[str, dict[str, str]]:
    lock = ApprovalLock(tdir) if approvals else None
    renderer = StageRenderer(tdir, CHANNEL_CLASSES, approvals=lock)
    return {m.channel: dict(m.parts) for m, _ in renderer.render_stage(PLAYBOOK, STAGE, sheet)}


def test_renders_every_channel_with_babel_and_tags(tdir: Path) -> None:
    out = render(tdir, facts())
    assert out["x"]["text"] == "API down: API and Dashboard. Next update 15:00 CET."
    assert out["email"]["subject"] == "[INC-1] API down"
    assert out["email"]["html"] == "<p>Hi %first_name.html%, API down</p>"
    assert out["email"]["text"] == "Hi %first_name%, API down"


def test_recipient_values_are_escaped_for_html() -> None:
    subs = recipient_substitutions({"first_name": "<b>Zoë</b> & co"})
    assert subs["%first_name%"] == "<b>Zoë</b> & co"
    assert subs["%first_name.html%"] == "&lt;b&gt;Zoë&lt;/b&gt; &amp; co"


@pytest.mark.parametrize("payload", [
    "{{7*7}}", "{{ config }}", "{{ ''.__class__.__mro__ }}", "{% for x in y %}{% endfor %}",
    "<script>alert(1)</script>",
])
def test_fact_values_are_data_never_code(tdir: Path, payload: str) -> None:
    out = render(tdir, facts(title=payload))
    assert out["email"]["text"].endswith(payload)
    assert "49" not in out["email"]["text"].replace(payload, "")
    assert "<script>" not in out["email"]["html"]


def test_undefined_variable_is_refused(tdir: Path) -> None:
    write(tdir, {"pb/s/x.text.en.j2": "{{ facts.title }} {{ facts.nope }}"})
    with pytest.raises(RenderError, match=r"channel x, locale en: template pb/s/x\.text\.en\.j2"):
        render(tdir, facts())


def test_public_channel_cannot_use_recipient_fields(tdir: Path) -> None:
    write(tdir, {"pb/s/x.text.en.j2": "Hi {{ recipient.first_name }}"})
    with pytest.raises(RenderError, match="undefined"):
        render(tdir, facts())


def test_sandbox_blocks_unsafe_attribute_access(tdir: Path) -> None:
    write(tdir, {"pb/s/x.text.en.j2": "{{ facts.title.__class__.__mro__[1].__subclasses__() }}"})
    with pytest.raises(RenderError):
        render(tdir, facts())


def test_over_limit_x_post_is_refused_never_truncated(tdir: Path) -> None:
    write(tdir, {"pb/s/x.text.en.j2": "{{ facts.title }} " + "x" * 300})
    with pytest.raises(LimitError, match=r"over the limit of 280.*short variant"):
        render(tdir, facts())


def test_short_variant_is_used_when_over_limit(tdir: Path) -> None:
    write(tdir, {"pb/s/x.text.en.j2": "{{ facts.title }} " + "x" * 300,
                 "pb/s/x.short.en.j2": "{{ facts.incident_ref }}: short"})
    assert render(tdir, facts())["x"]["text"] == "INC-1: short"


def test_cjk_counts_double(tdir: Path) -> None:
    write(tdir, {"pb/s/x.text.en.j2": "{{ facts.title }}"})
    assert render(tdir, facts(title="障" * 140))["x"]["text"] == "障" * 140
    with pytest.raises(LimitError, match="282 weighted"):
        render(tdir, facts(title="障" * 141))


def test_unapproved_and_edited_templates_are_refused(
        tdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(ApprovalError, match="not approved"):
        render(tdir, facts(), approvals=True)
    lock = ApprovalLock(tdir)
    lock.approve(lock.template_names(), make_key(tmp_path_factory.mktemp("home"), tdir, "alice"))
    render(tdir, facts(), approvals=True)
    write(tdir, {"pb/s/email.text.en.j2": "Hi {{ recipient.first_name }}! {{ facts.title }}"})
    with pytest.raises(ApprovalError, match=r"email\.text\.en\.j2 was edited after approval"):
        render(tdir, facts(), approvals=True)


def test_content_hash_follows_content(tdir: Path) -> None:
    renderer = StageRenderer(tdir, CHANNEL_CLASSES)
    a = {m.channel: m.content_hash for m, _ in renderer.render_stage(PLAYBOOK, STAGE, facts())}
    b = {m.channel: m.content_hash for m, _ in
         renderer.render_stage(PLAYBOOK, STAGE, facts(title="Other"))}
    assert a != b and len(a["x"]) == 64


@pytest.mark.parametrize(("requested", "expected"), [
    ("es-MX", "es"), ("es", "es"), ("fr-CA", "en"), ("de_DE", "de"), (None, "en"), ("", "en"),
])
def test_locale_fallback_chain(requested: str | None, expected: str) -> None:
    assert resolve_locale(requested, ["en", "es", "de"], "en") == expected


def test_fallback_chain_order() -> None:
    assert fallback_chain("es-MX", "en") == ["es-MX", "es", "en"]
