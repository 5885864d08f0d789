"""The trigger form a playbook asks for: which facts, of what kind, required or not, prefilled.

Why a domain module and not the page: the form is derived from the playbook and the
:class:`~crisiscomms.incident.facts.FactSheet` model alone (no Streamlit, no database), so it is
unit-tested, and another face (an API, a TUI) could draw the same form. The dashboard page only
draws each :class:`FormField` with the widget its ``kind`` names and hands the typed values back
to :func:`facts_from_form`.

What is asked: the playbook's ``required_facts`` and the stage's (required), then the optional
facts a person would fill (the rest of the FactSheet's top level, the recall or breach section
when the playbook's notice or required facts name it, the ``extra`` facts its drill facts use),
then the prose facts of every locale but the default (``translations.<locale>.<fact>``), which
``fact_problems`` requires once the fact itself is filled.

Nothing here validates: the values go to :func:`crisiscomms.incident.service.trigger` as the
CLI's facts file would, so the form refuses exactly what the CLI refuses, with the same messages
(:func:`errors_by_field` puts each next to the field it names).
"""

from __future__ import annotations

import secrets
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, available_timezones

from pydantic import BaseModel

from crisiscomms.core.errors import CrisisCommsError
from crisiscomms.incident.facts import (
    LOCALIZABLE_FACTS,
    BreachFacts,
    FactSheet,
    RecallFacts,
    build_fact_sheet,
)
from crisiscomms.playbook.loader import Playbook, Stage

FieldKind = Literal["line", "prose", "url", "datetime", "date", "number", "choice",
                    "multichoice", "list", "zone"]
"""How a fact is typed: ``line`` one line of text; ``prose`` several lines; ``url``; ``datetime``
a date and time with a time zone picker; ``date``; ``number`` (an integer or a price);
``choice`` one of ``choices``; ``multichoice`` several of them; ``list`` one item per line;
``zone`` an IANA time zone."""

FORM_ERRORS = "_form"
"""The key of :func:`errors_by_field` for problems that name no field of the form."""

_URL_FACTS = frozenset({"contact_url", "status_page_url", "recall.photo_url", "recall.website"})
_NOT_ASKED = frozenset({"extra", "recall", "breach", "translations"})
_HELP = {
    "incident_ref": "The reference every message carries (letters, digits, . _ -); left empty, "
                    "one is made from the playbook's name and the time.",
    "organization": "Who speaks (default: the workspace's organization).",
    "title": "The headline, as customers read it.",
    "severity": "minor, major or critical; sets the status page's component status unless "
                "component status is chosen.",
    "components": "What is affected, one per line, named as on the status page.",
    "component_status": "The status page status of the components while open (default: from "
                        "the severity).",
    "impact": "What customers notice.",
    "cause": "Why it happened, once known.",
    "remedy": "What we are doing about it.",
    "workaround": "What customers can do meanwhile.",
    "started_at": "When it started (default: now).",
    "next_update_at": "When the next update is due; messages promise it.",
    "resolved_at": "When it was resolved.",
    "contact_url": "Where customers reach support (https://...).",
    "contact_phone": "A phone number customers can call.",
    "status_page_url": "The incident's page on the status page (default: the workspace's).",
    "time_zone": "The zone times are shown in for the default locale (other locales use the "
                 "playbook's time_zones).",
}


@dataclass(frozen=True)
class FormField:
    """One fact the form asks for."""

    path: str
    """The fact path as the engine names it (``impact``, ``recall.hazard``,
    ``extra.prevention``, ``translations.es.impact``): also the key of errors for this field."""
    label: str
    kind: FieldKind
    required: bool
    help: str
    choices: tuple[str, ...] = ()
    locale: str | None = None
    """For a translation: its locale."""
    value: Any = None
    """The prefill: the incident's latest fact (an update changes only what changed), else the
    model's default; a string, a list of strings, or a datetime."""


@dataclass(frozen=True)
class FactForm:
    playbook: str
    stage: str
    fields: tuple[FormField, ...]
    default_zone: str = "UTC"
    """The zone a date-time field's picker starts at: the incident's ``time_zone`` fact."""
    sections: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def field(self, path: str) -> FormField:
        for f in self.fields:
            if f.path == path:
                return f
        raise KeyError(path)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.fields)


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _kind(path: str, annotation: Any) -> tuple[FieldKind, tuple[str, ...]]:
    inner = _unwrap_optional(annotation)
    origin = get_origin(inner)
    if path == "time_zone":
        return "zone", ()
    if origin is Literal:
        return "choice", tuple(str(a) for a in get_args(inner))
    if origin is tuple:
        item = get_args(inner)[0]
        if get_origin(item) is Literal:
            return "multichoice", tuple(str(a) for a in get_args(item))
        return "list", ()
    if inner is datetime:
        return "datetime", ()
    if inner is date:
        return "date", ()
    if inner in (int, Decimal):
        return "number", ()
    if path in _URL_FACTS:
        return "url", ()
    if (path in LOCALIZABLE_FACTS and path != "title") or path.startswith("extra."):
        return "prose", ()
    return "line", ()


def _label(path: str, locale: str | None = None) -> str:
    name = path.rsplit(".", 1)[-1].replace("_", " ")
    label = name[:1].upper() + name[1:]
    if path.startswith("recall."):
        label = f"Recall: {name}"
    elif path.startswith("breach."):
        label = f"Breach: {name}"
    elif path.startswith("extra."):
        label = f"Extra: {name}"
    return f"{label} ({locale})" if locale else label


def _model_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any, bool]]:
    """(path, annotation, required by the model) of each field of ``model``."""
    return [(f"{prefix}{name}", info.annotation, info.is_required())
            for name, info in model.model_fields.items()]


def _sections(playbook: Playbook) -> list[str]:
    """The FactSheet sections (recall, breach) this playbook's incidents carry."""
    wanted = {*(playbook.required_facts), *(f for s in playbook.stages for f in s.required_facts)}
    out = []
    for name in ("recall", "breach"):
        if (playbook.notice is not None and playbook.notice.kind == name) or name in wanted \
                or any(w.startswith(f"{name}.") for w in wanted) or name in playbook.drill_facts:
            out.append(name)
    return out


def _extras(playbook: Playbook, base: FactSheet | None) -> list[str]:
    names = {*(playbook.drill_facts.get("extra") or {}), *(base.extra if base else {})}
    names |= {f.removeprefix("extra.") for f in (*playbook.required_facts,
              *(f for s in playbook.stages for f in s.required_facts)) if f.startswith("extra.")}
    return sorted(names)


def _prefill(base: FactSheet | None, path: str, model_default: Any) -> Any:
    if base is None:
        return model_default
    if path.startswith("translations."):
        _, locale, fact = path.split(".", 2)
        return base.translations.get(locale, {}).get(fact)
    return base.value(path)


def build_form(playbook: Playbook, stage: Stage | str, *,
               base: FactSheet | None = None) -> FactForm:
    """The form of ``stage`` of ``playbook``; prefilled from ``base`` (the incident's latest
    fact sheet) for an update. Required first (in the playbook's order), then the optional
    facts, then the translations."""
    stage_obj = playbook.stage(stage) if isinstance(stage, str) else stage
    required = playbook.required_for(stage_obj)
    candidates: list[tuple[str, Any, bool]] = [
        t for t in _model_fields(FactSheet) if t[0] not in _NOT_ASKED]
    sections = _sections(playbook)
    for name in sections:
        model: type[BaseModel] = RecallFacts if name == "recall" else BreachFacts
        candidates += _model_fields(model, f"{name}.")
    candidates += [(f"extra.{n}", str, False) for n in _extras(playbook, base)]
    by_path = {p: (a, model_required) for p, a, model_required in candidates}
    defaults = {p: info.default for p, info in FactSheet.model_fields.items()
                if not info.is_required() and info.default_factory is None}

    def make(path: str, req: bool, locale: str | None = None, source: str | None = None) -> \
            FormField:
        annotation = by_path.get(source or path, (str, False))[0]
        kind, choices = _kind(source or path, annotation)
        help_text = _HELP.get(source or path, "")
        if locale is not None:
            help_text = (f"{_label(source or path)} in {locale}: needed once "
                         f"{source} is filled.")
        default = defaults.get(path) if base is None else None
        return FormField(path, _label(source or path, locale), kind, req, help_text, choices,
                         locale, _prefill(base, path, default))

    fields: list[FormField] = []
    seen: set[str] = set()
    for path in required:
        if path in sections:  # a whole section is required: each of its fields is asked
            continue
        fields.append(make(path, True))
        seen.add(path)
    for path, (_, model_required) in by_path.items():
        if path in seen:
            continue
        section, dot, _ = path.partition(".")
        fields.append(make(path, model_required and (not dot or section in required)))
        seen.add(path)
    prose = [f.path for f in fields if f.path in LOCALIZABLE_FACTS or f.path.startswith("extra.")]
    for locale in playbook.locales:
        if locale == playbook.default_locale:
            continue
        fields += [make(f"translations.{locale}.{p}", False, locale, p) for p in prose]
    zone = base.time_zone if base is not None else "UTC"
    return FactForm(playbook.name, stage_obj.id, tuple(fields), default_zone=zone,
                    sections={s: tuple(f.path for f in fields if f.path.startswith(f"{s}."))
                              for s in sections})


@cache
def time_zones() -> tuple[str, ...]:
    """Every IANA zone this machine knows, UTC first (the picker's choices; read once)."""
    return ("UTC", *sorted(z for z in available_timezones() if z != "UTC"))


def combine_datetime(text: str, zone: str) -> str | None:
    """A date-time typed as ``2026-11-23 09:40`` (or ISO 8601) read in ``zone``, as ISO 8601
    with its offset; a text that carries its own offset keeps it. Empty: None. A text that is
    no date-time is returned as it is, so the engine refuses it with its own message."""
    text = text.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed.isoformat()


def split_datetime(value: Any, zone: str) -> tuple[str, str]:
    """A prefilled date-time as the form shows it: the text in ``zone`` and the zone."""
    if isinstance(value, datetime):
        shown = value.astimezone(ZoneInfo(zone)) if value.tzinfo else value
        return shown.strftime("%Y-%m-%d %H:%M"), zone
    return ("" if value is None else str(value)), zone


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    return [str(v) for v in value]


def facts_from_form(form: FactForm, values: Mapping[str, Any]) -> dict[str, Any]:
    """The facts to trigger with, from the values typed into ``form`` (keyed by field path;
    a ``list`` field may be a string of lines; a ``datetime`` field already combined with
    :func:`combine_datetime`). Empty fields are left out (an update keeps the incident's
    fact); a section (recall, breach) is sent only when one of its fields is filled; strings
    are passed as typed so the engine checks them as it checks a facts file."""
    facts: dict[str, Any] = {}
    for f in form.fields:
        value = values.get(f.path)
        if _empty(value):
            continue
        if f.kind in ("list", "multichoice"):
            value = _as_list(value)
            if not value:
                continue
        if f.path.startswith("translations."):
            _, locale, fact = f.path.split(".", 2)
            facts.setdefault("translations", {}).setdefault(locale, {})[fact] = value
            continue
        head, _, rest = f.path.partition(".")
        if rest:
            facts.setdefault(head, {})[rest] = value
        else:
            facts[head] = value
    return facts


def errors_by_field(exc: CrisisCommsError, paths: Iterable[str]) -> dict[str, list[str]]:
    """The messages of a refusal keyed by the form field they name (``paths``): each problem
    at its ``field`` (a list item ``recall.colors.1`` at ``recall.colors``; a missing fact
    per name in ``values``; a translation at ``translations.<locale>.<field>``); what names no
    field of the form under :data:`FORM_ERRORS`."""
    known = set(paths)
    out: dict[str, list[str]] = {}

    def place(name: str | None, locale: str | None) -> str:
        if name and locale and not name.startswith("translations."):
            name = f"translations.{locale}.{name}"
        while name:
            if name in known:
                return name
            name = name.rpartition(".")[0]
        return FORM_ERRORS

    for problem in exc.problems or (exc,):
        names: list[str | None] = ([problem.field] if problem.field
                                   else list(problem.values) or [None])
        for name in names:
            out.setdefault(place(name, problem.locale), []).append(problem.reason
                                                                  if name else str(problem))
    return out


def rehearsal_facts(playbook: Playbook, *, now: datetime) -> FactSheet | None:
    """The playbook's rehearsal facts (``drill_facts``) as a form's starting point for a new
    incident, under a reference of their own (``DRILL-<PLAYBOOK>-<UTC time>-<4 hex>``, so a
    rehearsal never posts onto an earlier one, even one started the same second); None when the
    playbook has none."""
    if not playbook.drill_facts:
        return None
    ref = (f"DRILL-{playbook.name.upper().replace('_', '-')}-{now:%Y%m%d-%H%M%S}-"
           f"{secrets.token_hex(2).upper()}")
    return build_fact_sheet({**playbook.drill_facts, "incident_ref": ref})
