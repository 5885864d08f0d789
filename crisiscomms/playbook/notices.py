"""What a message must say: required facts, regulated notices (recall, data breach), the
canonical facts every channel carries, and every locale's prose present.

Two checks, both before anything is stored or sent:

- :func:`fact_problems` on the fact sheet of a stage: required facts, the notice's section
  (``facts.recall`` for a recall: US CPSC 16 CFR 1115.27 and FDA 21 CFR 7.49 fields, validated
  by :class:`crisiscomms.incident.facts.RecallFacts`), the headline word in the title of every
  locale,
  and a translation of every prose fact for every locale.
- :func:`message_problems` on each rendered message: the facts the playbook's ``must_carry``
  names for the channel appear verbatim (escaped in HTML parts), and an email subject carries
  the notice's headline word, and its urgent word for a class I/II food or drug recall.

Each problem is an error value (not raised) whose ``field`` names the fact, with ``locale``
where one locale is at fault; ``str(problem)`` reads ``locale de, field title: ...``. Callers
raise them gathered in one error (``problems=``) that adds playbook, stage, channel and locale.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar

from babel.numbers import format_decimal
from markupsafe import escape

from crisiscomms.core.errors import CrisisCommsError, FactsError, RenderError
from crisiscomms.core.locales import fallback_chain
from crisiscomms.incident.facts import LOCALIZABLE_FACTS, FactSheet
from crisiscomms.playbook.loader import Playbook, Stage
from crisiscomms.render.escaping import escape_percent

SUBJECT_PARTS = ("subject",)
ATTACHMENT_PARTS = frozenset({"image", "alt"})
"""An image a post attaches and its description: not the body, so they carry no facts."""
E = TypeVar("E", bound=CrisisCommsError)


def _localized_value(facts: FactSheet, path: str, locale: str, default: str) -> Any:
    for loc in fallback_chain(locale, default):
        entries = facts.translations.get(loc, {})
        if path in entries:
            return entries[path]
        if loc == default:
            break
    return facts.value(path)


def _translated(facts: FactSheet, path: str, locale: str, default: str) -> bool:
    chain = fallback_chain(locale, default)
    return any(path in facts.translations.get(loc, {}) for loc in chain if loc != default)


def _prose_paths(facts: FactSheet) -> list[str]:
    paths = [p for p in sorted(LOCALIZABLE_FACTS) if facts.value(p) not in (None, "", ())]
    paths += [f"extra.{k}" for k, v in sorted(facts.extra.items()) if v]
    return paths


def _at(cls: type[E], reason: str, *, field: str, locale: str | None = None) -> E:
    where = f"locale {locale}, field {field}" if locale else f"field {field}"
    return cls(f"{where}: {reason}", field=field, locale=locale, reason=reason)


def fact_problems(playbook: Playbook, stage: Stage, facts: FactSheet) -> list[FactsError]:
    """Why these facts cannot make this stage's messages (empty when they can)."""
    missing = facts.missing(playbook.required_for(stage))
    text = f"missing required facts: {', '.join(missing)}"
    problems = [FactsError(text, field=missing[0] if len(missing) == 1 else None,
                           values=missing)] if missing else []
    notice = playbook.notice
    if notice is not None:
        section = facts.recall if notice.kind == "recall" else facts.breach
        if section is None:
            problems.append(_at(FactsError, f"a {notice.kind} notice needs the {notice.kind} "
                                "facts (see docs/playbooks.md)", field=notice.kind))
        for locale in playbook.locales:
            word = notice.headline.get(locale)
            title = _localized_value(facts, "title", locale, playbook.default_locale)
            if word and word.casefold() not in str(title).casefold():
                problems.append(_at(FactsError, f"the headline must say {word!r} (it reads "
                                    f"{title!r})", field="title", locale=locale))
    for locale in playbook.locales:
        if locale == playbook.default_locale:
            continue
        lacking = [p for p in _prose_paths(facts)
                   if not _translated(facts, p, locale, playbook.default_locale)]
        problems += [_at(FactsError, f"no translation (facts.translations.{locale})", field=p,
                         locale=locale) for p in lacking]
    return problems


def _as_texts(value: Any, locale: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, tuple | list):
        return [t for v in value for t in _as_texts(v, locale)]
    if isinstance(value, bool):
        return []
    if isinstance(value, int | Decimal):
        return [format_decimal(value, locale=locale.replace("-", "_"))]
    if isinstance(value, str):
        return [value]
    return []  # dates and times are formatted per reader; the templates' business


def _body_parts(parts: Mapping[str, str]) -> dict[str, str]:
    body = {k: v for k, v in parts.items()
            if k not in SUBJECT_PARTS and k not in ATTACHMENT_PARTS}
    thread = [v for k, v in sorted(body.items()) if k == "text" or k.startswith("text_")]
    if len(thread) > 1:  # a thread carries its facts across its posts
        body = {k: v for k, v in body.items() if not (k == "text" or k.startswith("text_"))}
        body["thread"] = "\n".join(thread)
    return body


def message_problems(playbook: Playbook, facts: FactSheet, channel: str, locale: str,
                     parts: Mapping[str, str]) -> list[RenderError]:
    """Canonical facts missing from a rendered message, or a notice word missing."""
    problems: list[RenderError] = []
    for path in playbook.must_carry.get(channel, ()):
        expected = _as_texts(_localized_value(facts, path, locale, playbook.default_locale),
                             locale)
        for part, text in _body_parts(parts).items():
            html = ".html" in part or part == "html"
            for value in expected:
                forms = (value, escape_percent(value)) if "%" in value else (value,)
                if not any(f in text or (html and str(escape(f)) in text) for f in forms):
                    problems.append(_at(RenderError, f"{part} does not carry {value!r}",
                                        field=path))
    notice = playbook.notice
    subject = parts.get("subject")
    if notice is not None and subject is not None:
        word = notice.headline.get(locale)
        if word and word.casefold() not in subject.casefold():
            problems.append(_at(RenderError, f"must say {word!r}", field="subject"))
        urgent = notice.urgent.get(locale)
        if facts.recall is not None and facts.recall.urgent and urgent and urgent not in subject:
            problems.append(_at(RenderError, f"a class {facts.recall.recall_class} "
                                f"{facts.recall.product_type} recall must say {urgent!r}",
                                field="subject"))
    return problems
