"""Template safety, property-based: fact and recipient values are data, never template code.

Every shipped playbook (product_recall, data_incident, outage) is rendered through the real
``StageRenderer`` with a payload in one of its facts (top-level, ``recall.*``, ``breach.*``,
translations included) or in a recipient's name. Personal email is then filled exactly as the
provider fills it (``apply_substitutions``, with the recipient's substitutions and time values
as publishing builds them), so what is checked is what a reader reads: the payload literally in
text parts, HTML-escaped in HTML parts, and nothing of it evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from html import unescape
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError
from markupsafe import escape
from repo_paths import PROJECT_ROOT

from crisiscomms.channels import CHANNEL_CLASSES
from crisiscomms.core.errors import RenderError
from crisiscomms.core.text import ZERO_WIDTH, text_problem
from crisiscomms.delivery.sender import _recipients
from crisiscomms.incident.facts import build_fact_sheet
from crisiscomms.playbook.loader import Playbook, load_playbook
from crisiscomms.render.environment import (
    StageRenderer,
    make_environment,
    substitution_tag,
    time_tags,
    time_values,
)
from crisiscomms.testing.emulators.sendgrid import apply_substitutions

PLAYBOOKS = PROJECT_ROOT / "playbooks"
TEMPLATES = PROJECT_ROOT / "templates"
SHIPPED = ("product_recall", "data_incident", "outage")

OPEN, CLOSE = "QQ", "ZZ"
"""Sentinels around the payload (never inside it), so each occurrence can be checked whole."""

PAYLOADS = (
    "{{7*7}}", "{{ 7*7 }}", "{{ config }}", "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{% for x in y %}",
    "{% for x in y %}{{ x }}{% endfor %}", "{#", "#}", "{# comment #}", "{%", "%}", "{{", "}}",
    "{% raw %}{{ x }}{% endraw %}", "{{ cycler.__init__.__globals__.os }}",
    "{{ self.__init__.__globals__ }}", "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ request.application }}", "${7*7}", "#{7*7}", "<%= 7*7 %>",
    "%first_name%", "%first_name.html%", "%name%", "%email%", "%at|time|garbage|%",
    "%at|time|2026-11-23T14:00:00+00:00|%", "%at.html|date|2026-11-23T14:00:00+00:00|long%",
    "%at|pct|-|%", "100%", "%%", "<script>alert(1)</script>", "\" onmouseover=\"alert(1)",
    "<img src=x onerror=alert(1)>", "&amp; &lt;", "'; DROP TABLE recipient; --",
)

_SPECIAL = st.sampled_from(list("{}%#<>&'\"|.()[]_\\$=*-:/ "))
_SYNTAX = st.sampled_from(["{{", "}}", "{%", "%}", "{#", "#}", "%first_name%", "%at|"])
_CHAR = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="QZ"
                      ).filter(lambda c: text_problem(c) is None and c not in ZERO_WIDTH)
"""Characters the text rule keeps as they are (those it refuses or strips: test_text_rule.py)."""
_TEXT = st.lists(st.one_of(_CHAR, _SPECIAL, _SYNTAX), min_size=1, max_size=12).map("".join)
PAYLOAD = st.one_of(st.sampled_from(PAYLOADS), _TEXT)
"""Known injection payloads and arbitrary text rich in template syntax."""

NOT_FREE_TEXT = {
    "incident_ref", "severity", "component_status", "time_zone", "started_at", "next_update_at",
    "resolved_at", "contact_url", "status_page_url", "product_type", "recall_class",
    "photo_url", "website", "country_of_manufacture", "currency", "recall.remedy",
    "media_contact_email", "occurred_from", "occurred_to", "discovered_at",
    "manufactured_from", "manufactured_to", "sold_from", "sold_to", "price_min", "price_max",
    "units_affected", "injuries_reported", "incidents_reported", "people_affected",
}
"""Facts with a format (codes, URLs, dates, numbers): validated, so no free text gets there."""

FACT_LIMITS = {"recall.toll_free_phone": 40, "recall.media_contact_phone": 40,
               "recall.product_name": 80}


@cache
def playbook(name: str) -> Playbook:
    return load_playbook(name, PLAYBOOKS)


@cache
def renderer() -> StageRenderer:
    return StageRenderer(TEMPLATES, CHANNEL_CLASSES)


def ready_locales(pb: Playbook, stage_id: str) -> list[str]:
    """Locales whose templates of the stage are all on disk (another change may be adding a
    locale right now; a missing template is lint's business, tests/unit/test_lint.py)."""
    stage = pb.stage(stage_id)
    return [loc for loc in pb.locales
            if all((TEMPLATES / name).is_file()
                   for channel in pb.channels_of(stage, CHANNEL_CLASSES)
                   for name in renderer().part_names(pb.name, stage.id, channel, loc).values())]


def free_text_paths(pb: Playbook) -> list[str]:
    """Every free-text fact (or list of texts) of the playbook's drill facts."""
    out = []
    for key, value in pb.drill_facts.items():
        if key in ("recall", "breach") and isinstance(value, Mapping):
            out += [f"{key}.{k}" for k, v in value.items()
                    if k not in NOT_FREE_TEXT and f"{key}.{k}" not in NOT_FREE_TEXT
                    and isinstance(v, str | list)]
        elif key == "extra" and isinstance(value, Mapping):
            out += [f"extra.{k}" for k in value]
        elif key not in NOT_FREE_TEXT and key != "translations" and isinstance(value, str | list):
            out.append(key)
    return sorted(out)


CASES = [(name, path) for name in SHIPPED for path in free_text_paths(playbook(name))]


def with_fact(pb: Playbook, path: str, value: str) -> dict[str, Any]:
    """The drill facts with ``path`` set to ``value`` in every language it is written in (a
    list gets it as one item; a headline keeps the notice's word)."""
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v)
                            for k, v in pb.drill_facts.items()}
    head, _, rest = path.partition(".")
    words = pb.notice.headline if pb.notice is not None and path == "title" else {}

    def item(locale: str, old: Any) -> Any:
        text = f"{words[locale]} {value}" if locale in words else value
        return [text, *old[1:]] if isinstance(old, list | tuple) else text

    target = data[head] if rest else data
    target[rest or head] = item(pb.default_locale, target[rest or head])
    translations = {loc: dict(entries) for loc, entries in data.get("translations", {}).items()}
    for loc, entries in translations.items():
        if path in entries:
            entries[path] = item(loc, entries[path])
    if translations:
        data["translations"] = translations
    return data


class _Rows:
    """The recipients table as ``publishing._recipients`` reads it."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def execute(self, _stmt: object) -> list[tuple[Any, ...]]:
        return self.rows


def as_read(pb: Playbook, parts: Mapping[str, str], locale: str, *, name: str | None = "Ada",
            zone: str = "Asia/Kathmandu") -> dict[str, str]:
    """A personal message as its recipient reads it: substitutions built by the publisher
    (``_recipients``), filled the way SendGrid fills them."""
    fields = tuple((f, spec.fallback_for(locale, pb.default_locale),
                    substitution_tag(f, html=False), substitution_tag(f, html=True))
                   for f, spec in pb.recipient_fields.items())
    row = (1, "reader@example.com", name, "pro", True, zone, "Gadget", "ORD-1")
    recipients, skipped = _recipients(cast(Any, _Rows([row])), [1], fields,
                                      tags=time_tags(parts), locale=locale)
    assert skipped == 0
    subs = dict(recipients[0].substitutions)
    return {part: apply_substitutions(text, subs) or "" for part, text in parts.items()}


def occurrences(text: str) -> list[str]:
    """What stands between each opening sentinel and the next closing one."""
    return re.findall(f"{OPEN}(.*?){CLOSE}", text, flags=re.DOTALL)


_RAW_HTML = re.compile(r"[<>\"']|&(?!(?:#\d+|#x[0-9a-fA-F]+|[a-z]+);)")


def assert_literal(parts: Mapping[str, str], payload: str) -> int:
    """Every occurrence is the payload itself (HTML-escaped in HTML parts: no raw markup
    character left, and it unescapes to the payload); returns how many."""
    found = 0
    for part, text in parts.items():
        html = "html" in part
        assert text.count(OPEN) == text.count(CLOSE) == len(occurrences(text)), (part, text)
        for got in occurrences(text):
            if html:
                assert unescape(got) == payload and not _RAW_HTML.search(got), (part, got)
            else:
                assert got == payload, (part, got, payload)
            found += 1
    return found


@given(case=st.sampled_from(CASES), payload=PAYLOAD, data=st.data())
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_fact_is_literal_text_on_every_channel(case: tuple[str, str], payload: str,
                                                   data: st.DataObject) -> None:
    name, path = case
    pb = playbook(name)
    value = f"{OPEN}{payload}{CLOSE}"
    limit = FACT_LIMITS.get(path)
    if limit is not None:
        value = value[:limit - len(CLOSE)] + CLOSE if len(value) > limit else value
        payload = value[len(OPEN):-len(CLOSE)]
    sheet = build_fact_sheet(with_fact(pb, path, value))
    stage = data.draw(st.sampled_from(pb.stages), label="stage")
    locale = data.draw(st.sampled_from(ready_locales(pb, stage.id)), label="locale")
    found = 0
    for channel in pb.channels_of(stage, CHANNEL_CLASSES):
        message, _ = renderer().render_message(pb, stage, sheet, channel, locale)
        parts = dict(message.parts)
        if CHANNEL_CLASSES[channel].personal:
            parts = as_read(pb, parts, locale)
        found += assert_literal(parts, payload)
        assert "%at|" not in "".join(parts.values()) or "%at|" in payload
    if path in _used_facts(name, stage.id, locale):
        assert found, f"{path} is used by {name}/{stage.id} but the payload never appeared"


@cache
def _used_facts(name: str, stage_id: str, locale: str) -> frozenset[str]:
    """The facts a stage's templates in a locale visibly print (a plain sentinel value)."""
    pb = playbook(name)
    stage = pb.stage(stage_id)
    used = set()
    for _, path in (c for c in CASES if c[0] == name):
        sheet = build_fact_sheet(with_fact(pb, path, f"{OPEN}plain{CLOSE}"))
        for channel in pb.channels_of(stage, CHANNEL_CLASSES):
            message, _ = renderer().render_message(pb, stage, sheet, channel, locale)
            if any(OPEN in t for t in message.parts.values()):
                used.add(path)
                break
    return frozenset(used)


def test_the_property_covers_recall_and_breach_facts() -> None:
    paths = {p for _, p in CASES}
    assert {"recall.product_name", "recall.hazard", "recall.consumer_action",
            "recall.toll_free_phone", "recall.colors", "recall.model_numbers",
            "breach.what_happened", "breach.data_categories", "breach.dpo_contact",
            "title", "organization"} <= paths
    assert _used_facts("product_recall", "announce", "en") >= {
        "recall.product_name", "recall.hazard", "recall.consumer_action"}


_NAME = st.lists(st.one_of(_CHAR, _SPECIAL, _SYNTAX).filter(lambda s: not any(
    c.isspace() for c in s)), min_size=1, max_size=12).map("".join)


@given(name=st.sampled_from([n for n in SHIPPED if playbook(n).recipient_fields]),
       payload=st.one_of(st.sampled_from([p for p in PAYLOADS if " " not in p]), _NAME),
       data=st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_recipient_name_is_literal_text(name: str, payload: str,
                                            data: st.DataObject) -> None:
    pb = playbook(name)
    assert "first_name" in pb.recipient_fields
    stage = data.draw(st.sampled_from([s for s in pb.stages
                                       if "email" in pb.channels_of(s, CHANNEL_CLASSES)]))
    locale = data.draw(st.sampled_from(ready_locales(pb, stage.id)))
    message, _ = renderer().render_message(pb, stage, build_fact_sheet(dict(pb.drill_facts)),
                                           "email", locale)
    read = as_read(pb, message.parts, locale, name=f"{OPEN}{payload}{CLOSE} Surname")
    assert assert_literal(read, payload) >= 2  # text and HTML greet the reader by name
    rest = re.sub(f"{OPEN}.*?{CLOSE}", "", "".join(read.values()), flags=re.DOTALL)
    assert "%first_name" not in rest


@pytest.mark.parametrize("name", SHIPPED)
def test_an_empty_recipient_name_gets_the_locale_fallback(name: str) -> None:
    pb = playbook(name)
    stage = next(s for s in pb.stages if "email" in pb.channels_of(s, CHANNEL_CLASSES))
    for locale in ready_locales(pb, stage.id):
        message, _ = renderer().render_message(pb, stage, build_fact_sheet(dict(pb.drill_facts)),
                                               "email", locale)
        read = as_read(pb, message.parts, locale, name=None)
        fallback = pb.recipient_fields["first_name"].fallback_for(locale, pb.default_locale)
        assert fallback in read["text"] and str(escape(fallback)) in read["html"]
        assert "%" not in "".join(read.values()).replace("100%", "")


@pytest.mark.parametrize("expression", [
    "''.__class__", "''.__class__.__mro__", "facts.title.__class__.__mro__[1].__subclasses__()",
    "facts.__class__", "facts.recall.colors.__class__", "cycler.__init__.__globals__",
    "qa.__class__.__base__", "'{0.__class__}'.format(facts.title)",
    "facts.title.__init__.__globals__",
])
def test_sandbox_blocks_unsafe_attribute_access_in_a_template(expression: str) -> None:
    env = make_environment(TEMPLATES)
    with pytest.raises(SecurityError):
        env.from_string("{{ " + expression + " }}").render(
            facts={"title": "t", "recall": {"colors": ["red"]}}, qa=[])


@pytest.mark.parametrize("statement", [
    "{{ facts.recall.colors.append('x') }}", "{{ facts.recall.update({'a': 1}) }}",
    "{% set _ = qa.append(1) %}",
])
def test_immutable_sandbox_blocks_mutation(statement: str) -> None:
    env = make_environment(TEMPLATES)
    with pytest.raises(SecurityError):
        env.from_string(statement).render(facts={"recall": {"colors": ["red"]}}, qa=[])


def test_an_unsafe_shipped_style_template_is_refused_by_the_renderer(tmp_path: Path) -> None:
    """A copy of the recall playbook whose X post tries ``''.__class__``: the real renderer
    stops it and names playbook, message, channel, locale and template."""
    pb = playbook("product_recall")
    stage = pb.stages[0]
    names = renderer().part_names(pb.name, stage.id, "x", "en")
    for part, name in names.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        source = (TEMPLATES / name).read_text(encoding="utf-8")
        if part == "text":
            source = "{{ ''.__class__.__mro__ }} " + source
        target.write_text(source, encoding="utf-8")
    unsafe = StageRenderer(tmp_path, CHANNEL_CLASSES)
    with pytest.raises(RenderError, match=r"playbook product_recall, message announce, channel "
                                          r"x, locale en: template .*x\.text\.en\.j2 was stopped "
                                          r"by the sandbox"):
        unsafe.render_message(pb, stage, build_fact_sheet(dict(pb.drill_facts)), "x", "en")


def test_time_tag_lookalike_in_a_fact_neither_fills_nor_crashes() -> None:
    """A fact reading like a per-recipient time tag used to be collected as one and crash the
    publisher (``datetime.fromisoformat('garbage')``), or be filled with a time."""
    pb = playbook("product_recall")
    stage = pb.stages[0]
    for fake in ("%at|time|garbage|%", "%at|date|2026-11-23T14:00:00+00:00|long%"):
        sheet = build_fact_sheet(with_fact(pb, "recall.hazard", f"{OPEN}{fake}{CLOSE}"))
        message, _ = renderer().render_message(pb, stage, sheet, "email", "en")
        assert all("%at|date" not in t and "%at|time" not in t
                   for t in time_tags(message.parts))
        assert time_values(("%at|time|garbage|%",), "en", "UTC") == {}
        assert assert_literal(as_read(pb, message.parts, "en"), fake) >= 2
