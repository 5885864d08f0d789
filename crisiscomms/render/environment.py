"""Sandboxed rendering of a playbook stage for every channel and locale from one fact sheet.

Templates live at ``templates/<playbook>/<stage>/<channel>.<part>.<locale>.j2``. Fact and
recipient values are data, never template code. Personal fields in email render as substitution
tags (``%first_name%``; ``%first_name.html%`` in HTML parts) so one approved text serves a
1,000-recipient request; the values are filled per recipient by the provider.

Times in personal email follow each recipient's time zone: there the ``datetime``, ``date`` and
``time`` filters emit a self-describing tag (``%at|time|2026-11-23T14:00:00+00:00|%``) that the
publisher fills per recipient with Babel in the message's locale and the recipient's zone
(:func:`time_tags`, :func:`time_values`; cached per zone, so a million recipients in twenty zones
cost twenty formats). Public channels use the playbook's zone for the locale, else the facts'.

A channel with ``max_thread_parts > 1`` (X) may have thread parts ``text_2`` ... ``text_9``
(templates ``x.text_2.<locale>.j2``), each checked against the limit on its own. Any part over a
limit uses its short variant (``short`` for ``text``, ``<part>_short`` otherwise) or the render
fails: approved text is never truncated.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_time
from babel.lists import format_list
from babel.numbers import format_currency, format_decimal
from jinja2 import StrictUndefined, TemplateNotFound, pass_context
from jinja2.bccache import Bucket, BytecodeCache
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from crisiscomms.core.errors import CrisisCommsError, LimitError, Location, RenderError
from crisiscomms.core.locales import fallback_chain
from crisiscomms.delivery.contract import Channel, RenderedMessage
from crisiscomms.incident.facts import FactSheet
from crisiscomms.playbook.loader import Playbook, Stage
from crisiscomms.playbook.notices import message_problems
from crisiscomms.render.approvals import ApprovalLock
from crisiscomms.render.escaping import escape_data, limit_text
from crisiscomms.render.limits import limit_problems
from crisiscomms.render.loader import CheckingLoader

SHORT_PART = "short"
MAX_THREAD_PARTS = 9
TIME_TAG = re.compile(r"%at(?:\.html)?\|(?:datetime|date|time|pct)\|[^|%]+\|[^%|]*%")
_TIME_TAG_PARTS = re.compile(r"%at(\.html)?\|(datetime|date|time|pct)\|([^|%]+)\|([^%|]*)%")
"""Time tags, and the ``pct`` tag of a data ``%`` (:mod:`crisiscomms.render.escaping`)."""


@dataclass(frozen=True)
class Where:
    """Which message is rendering: the fields of its errors, and the start of their text."""

    playbook: str
    stage: str
    channel: str
    locale: str

    def __str__(self) -> str:
        return (f"playbook {self.playbook}, message {self.stage}, channel {self.channel}, "
                f"locale {self.locale}")

    def fields(self, *, template: str | None = None, part: str | None = None) -> Location:
        """The location fields of an error here (``part``: the message part, its ``field``)."""
        out: Location = {"playbook": self.playbook, "stage": self.stage,
                         "channel": self.channel, "locale": self.locale}
        if template is not None:
            out["template"] = template
        if part is not None:
            out["field"] = part
        return out


def short_part(part: str) -> str:
    """The short variant's part name: ``short`` for ``text``, else ``<part>_short``."""
    return SHORT_PART if part == "text" else f"{part}_short"


def thread_part(n: int) -> str:
    return "text" if n == 1 else f"text_{n}"


def part_problems(limits: Any, part: str, value: str) -> list[str]:
    """Limit problems of one part; thread parts (``text_2``...) are checked as posts."""
    key = "text" if part == "text" or re.fullmatch(r"text_\d", part) else part
    return [p.replace(f"{key} is", f"{part} is", 1) if key != part else p
            for p in limit_problems(limits, {key: value})]


def babel_locale(locale: str) -> str:
    return locale.replace("-", "_")


def template_name(playbook: str, stage: str, channel: str, part: str, locale: str) -> str:
    return f"{playbook}/{stage}/{channel}.{part}.{locale}.j2"


def content_hash(channel: str, locale: str, parts: Mapping[str, str],
                 templates: Mapping[str, str] | None = None) -> str:
    """The hash a bundle approval covers: the message's text and, when given, the
    ``{template: sha256}`` of every template it was rendered from (partials included)."""
    payload: dict[str, Any] = {"channel": channel, "locale": locale, "parts": dict(parts)}
    if templates is not None:
        payload["templates"] = dict(templates)
    canonical = json.dumps(
        payload,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def substitution_tag(field: str, *, html: bool) -> str:
    return f"%{field}.html%" if html else f"%{field}%"


def recipient_substitutions(values: Mapping[str, str]) -> dict[str, str]:
    """Per-recipient substitutions for the tags: plain text and HTML-escaped variants."""
    out: dict[str, str] = {}
    for field, value in values.items():
        out[substitution_tag(field, html=False)] = value
        out[substitution_tag(field, html=True)] = escape(value, quote=True)
    return out


def _tz(ctx: Context) -> ZoneInfo:
    return ZoneInfo(str(ctx.get("time_zone") or "UTC"))


def format_when(kind: str, value: datetime, fmt: str | None, locale: str, tz: ZoneInfo) -> str:
    """One date/time in a locale and zone, as the ``datetime``/``date``/``time`` filters do."""
    loc = babel_locale(locale)
    if kind == "datetime":
        return format_datetime(value, fmt or "medium", tzinfo=tz, locale=loc)
    if kind == "date":
        return format_date(value.astimezone(tz), fmt or "long", locale=loc)
    if fmt:
        return format_time(value, fmt, tzinfo=tz, locale=loc)
    local = value.astimezone(tz)
    return f"{format_time(local, 'HH:mm', tzinfo=tz, locale=loc)} {local.tzname()}"


def _when(ctx: Context, kind: str, value: datetime, fmt: str | None) -> str:
    if ctx.get("personal_times"):
        html = ".html" if ctx.get("html_part") else ""
        tag = f"%at{html}|{kind}|{value.isoformat()}|{fmt or ''}%"
        return Markup(tag) if html else tag
    return format_when(kind, value, fmt, ctx["locale"], _tz(ctx))


@pass_context
def _datetime_filter(ctx: Context, value: datetime, fmt: str = "medium") -> str:
    return _when(ctx, "datetime", value, fmt)


@pass_context
def _time_filter(ctx: Context, value: datetime, fmt: str | None = None) -> str:
    """``15:00 CET``: the locale's time with the zone's own abbreviation (Babel's ``z`` gives
    ``+0100`` for most locales); pass a Babel pattern to choose another form."""
    return _when(ctx, "time", value, fmt)


@pass_context
def _date_filter(ctx: Context, value: datetime | date, fmt: str = "long") -> str:
    if not isinstance(value, datetime):  # a calendar date has no zone
        return format_date(value, fmt, locale=babel_locale(ctx["locale"]))
    return _when(ctx, "date", value, fmt)


@pass_context
def _join_and(ctx: Context, values: list[str] | tuple[str, ...]) -> str:
    return format_list(list(values), locale=babel_locale(ctx["locale"])) if values else ""


@pass_context
def _number_filter(ctx: Context, value: int | float | Decimal) -> str:
    return format_decimal(value, locale=babel_locale(ctx["locale"]))


@pass_context
def _money_filter(ctx: Context, value: Decimal | float, currency: str) -> str:
    return format_currency(value, currency, locale=babel_locale(ctx["locale"]))


@pass_context
def _country_filter(ctx: Context, code: str) -> str:
    """An ISO 3166 code as the country's name in the locale (``CN`` → ``China``, ``中国``)."""
    return str(Locale.parse(babel_locale(ctx["locale"])).territories.get(code, code))


def time_tags(parts: Mapping[str, str]) -> tuple[str, ...]:
    """The per-recipient time tags a rendered message holds (sorted, distinct)."""
    return tuple(sorted({m.group(0) for text in parts.values() for m in TIME_TAG.finditer(text)}))


@lru_cache(maxsize=4096)
def time_values(tags: tuple[str, ...], locale: str, time_zone: str) -> Mapping[str, str]:
    """The tags' values in a locale and zone (cached: recipients share a handful of zones)."""
    try:
        tz = ZoneInfo(time_zone or "UTC")
    except (ValueError, KeyError):  # an unknown zone on a recipient: the facts' zone is safer
        tz = ZoneInfo("UTC")
    out: dict[str, str] = {}
    for tag in tags:
        m = _TIME_TAG_PARTS.fullmatch(tag)
        if m is None:
            continue
        html, kind, iso, fmt = m.groups()
        if kind == "pct":
            out[tag] = "%"
            continue
        try:
            when = datetime.fromisoformat(iso)
        except ValueError:  # not one of ours (data is escaped): leave it as it is
            continue
        value = format_when(kind, when, fmt or None, locale, tz)
        out[tag] = escape(value, quote=True) if html else value
    return out


class _CompiledTemplates(BytecodeCache):
    """Compiled templates kept in memory for the process, shared by every environment
    :func:`make_environment` makes (all alike). Jinja keys a bucket by template name and file
    and keeps the source's checksum in it: an edited template compiles anew, the same text never
    twice. py-spy on the warm worker (``bench/intake.py``'s acknowledgements): compiling the
    stage's templates again in every trigger was half of rendering it.

    The loader still reads, hashes and approval-checks every template on every load; only the
    text → code step is cached."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._code: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            data = self._code.get(bucket.key)
            if data is not None:
                self._code.move_to_end(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)  # resets itself when the checksum differs

    def dump_bytecode(self, bucket: Bucket) -> None:
        data = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = data
            self._code.move_to_end(bucket.key)
            while len(self._code) > self.max_entries:
                self._code.popitem(last=False)


_COMPILED = _CompiledTemplates()


def make_environment(templates_dir: Path, *, approvals: ApprovalLock | None = None,
                     loader: CheckingLoader | None = None) -> ImmutableSandboxedEnvironment:
    """The sandboxed environment over ``templates_dir``: every template it loads, included
    ones too, goes through a :class:`CheckingLoader` (approval-checked when given a lock)."""
    env = ImmutableSandboxedEnvironment(
        loader=loader or CheckingLoader(templates_dir, approvals),
        undefined=StrictUndefined,
        autoescape=lambda name: name is not None and ".html." in name,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=True,  # a cached template is re-checked (loader's uptodate) on each use
        bytecode_cache=_COMPILED,
    )
    env.filters.update(
        datetime=_datetime_filter, time=_time_filter, date=_date_filter, join_and=_join_and,
        number=_number_filter, money=_money_filter, country=_country_filter,
    )
    return env


@lru_cache(maxsize=4096)
def recipient_fields_in(source: str) -> frozenset[str]:
    """The recipient fields a template's text names (``recipient.plan``,
    ``recipient['plan']``); cached by text for the process (every trigger asks again)."""
    from jinja2 import nodes

    used = set()
    tree = make_environment(Path(".")).parse(source)
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == "recipient":
            used.add(attr.attr)
    for item in tree.find_all(nodes.Getitem):
        if (isinstance(item.node, nodes.Name) and item.node.name == "recipient"
                and isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str)):
            used.add(item.arg.value)
    return frozenset(used)


class StageRenderer:
    """Renders stages of playbooks; refuses unapproved templates, at any depth, when given an
    approval lock (every template goes through one :class:`CheckingLoader`)."""

    def __init__(
        self,
        templates_dir: Path,
        channels: Mapping[str, type[Channel]],
        *,
        approvals: ApprovalLock | None = None,
    ) -> None:
        self.templates_dir = templates_dir
        self.channels = channels
        self.approvals = approvals
        self.loader = CheckingLoader(templates_dir, approvals)
        self.env = make_environment(templates_dir, loader=self.loader)

    def _fields_in(self, name: str) -> frozenset[str]:
        """The recipient fields in the text ``name`` was compiled from (loaded already)."""
        _, source = self.loader.compiled(name)
        return recipient_fields_in(source)

    def recipient_fields_used(self, name: str) -> frozenset[str]:
        """The recipient fields a template names (``recipient.plan``, ``recipient['plan']``),
        read from the checked text it is compiled from."""
        self.env.get_template(name)
        return self._fields_in(name)

    def _exists(self, name: str) -> bool:
        return (self.templates_dir / name).is_file()

    def _failing_template(self, exc: BaseException, loaded: Collection[str]) -> str | None:
        """The template whose code raised ``exc`` (an included one, say): the innermost
        frame Jinja attributes to one of the templates loaded."""
        files = {str(self.templates_dir / name): name for name in loaded}
        found = None
        tb = exc.__traceback__
        while tb is not None:
            found = files.get(tb.tb_frame.f_code.co_filename, found)
            tb = tb.tb_next
        return found

    def render_part(self, name: str, context: Mapping[str, Any], where: Where,
                    declared: Collection[str] | None = None, *, part: str | None = None) -> str:
        """One template (of message part ``part``); ``declared``: the playbook's recipient
        fields, the only ones a template may name."""
        return self.render_part_loaded(name, context, where, declared, part=part)[0]

    def render_part_loaded(
        self, name: str, context: Mapping[str, Any], where: Where,
        declared: Collection[str] | None = None, *, part: str | None = None,
    ) -> tuple[str, dict[str, str]]:
        """:meth:`render_part`, with the ``{template: sha256}`` of every template it loaded
        (``name`` and whatever it includes, imports or extends, at any depth)."""

        def error(culprit: str, reason: str) -> RenderError:
            return RenderError(f"{where}: {reason}", **where.fields(template=culprit, part=part),
                               reason=reason)

        def via(culprit: str) -> str:
            return "" if culprit == name else f" (loaded by {name})"

        def undeclared_in(names: Collection[str]) -> RenderError | None:
            if declared is None:
                return None
            for used in names:
                undeclared = sorted(self._fields_in(used) - set(declared))
                if undeclared:
                    return error(used, (
                        f"template {used}{via(used)} uses "
                        f"{', '.join('recipient.' + f for f in undeclared)}, which the playbook "
                        f"does not declare (recipient_fields: {', '.join(declared) or 'none'})"))
            return None

        loaded: dict[str, str] = {}
        try:
            with self.loader.recording() as loaded:
                template = self.env.get_template(name)
                problem = undeclared_in([name])
                if problem is not None:
                    raise problem
                text = template.render(context)
        except CrisisCommsError as exc:
            if exc.stage is not None:  # raised here, located already
                raise
            # the loader's (an unapproved or unreadable template): it names the template
            culprit = exc.template or name
            raise type(exc)(f"{where}: {exc}{via(culprit)}",
                            **where.fields(template=culprit, part=part),
                            reason=f"{exc.reason}{via(culprit)}") from None
        except TemplateNotFound as exc:
            missing = exc.name if isinstance(exc.name, str) else name
            needed = "" if missing == name else f" (needed by {name})"
            raise error(missing, f"template {missing}{needed} is missing") from None
        except UndefinedError as exc:
            culprit = self._failing_template(exc, loaded) or name
            raise (undeclared_in([n for n in loaded if n != name]) or error(
                culprit, f"template {culprit}{via(culprit)} uses an undefined value: {exc}")
            ) from None
        except SecurityError as exc:
            culprit = self._failing_template(exc, loaded) or name
            raise error(culprit, f"template {culprit}{via(culprit)} was stopped by the sandbox: "
                                 f"{exc}") from None
        except TemplateSyntaxError as exc:
            culprit = exc.name or name
            raise error(culprit, f"template {culprit}{via(culprit)} failed: {exc}") from None
        except TemplateError as exc:
            culprit = self._failing_template(exc, loaded) or name
            raise error(culprit, f"template {culprit}{via(culprit)} failed: {exc}") from None
        if ".html." in name:  # Jinja escapes a template by its own name, not its includer's
            unescaped = sorted(n for n in loaded if ".html." not in n)
            if unescaped:
                culprit = unescaped[0]
                raise error(culprit, (
                    f"template {culprit}{via(culprit)} is used in an HTML part but its name "
                    "has no .html., so the values it prints are not HTML-escaped; name it "
                    f"{culprit.removesuffix('.j2')}.html.j2"))
        return text.strip(), loaded

    def context(
        self, playbook: Playbook, stage: Stage, facts: FactSheet, locale: str, *, personal: bool
    ) -> dict[str, Any]:
        data = facts.localized(fallback_chain(locale, playbook.default_locale))
        if facts.recall is not None:
            data["recall"]["urgent"] = facts.recall.urgent
        ctx: dict[str, Any] = {
            "facts": data,
            "stage": {"id": stage.id, "title": stage.title, "status": str(stage.incident_status)},
            "playbook": {"name": playbook.name, "title": playbook.title},
            "locale": locale,
            "time_zone": playbook.time_zones.get(locale, facts.time_zone),
            "qa": [qa.model_dump() for qa in playbook.qa.get(locale, ())],
            # what support may grant without asking (``what``, ``limit``, ``when``, ``kind``):
            # the holding statement can list them, so the text an agent copies is complete
            "remedies": [r.model_dump(mode="json") for r in playbook.remedies.get(locale, ())],
            "personal_times": personal,
        }
        if personal:  # data is text, never a substitution key (see escaping)
            for key in ("facts", "stage", "playbook", "qa", "remedies"):
                ctx[key] = escape_data(ctx[key])
            ctx["recipient"] = {
                f: substitution_tag(f, html=False) for f in playbook.recipient_fields
            }
            ctx["recipient_html"] = {
                f: substitution_tag(f, html=True) for f in playbook.recipient_fields
            }
        return ctx

    def _part_context(self, playbook: Playbook, stage: Stage, facts: FactSheet, locale: str,
                      personal: bool, name: str) -> dict[str, Any]:
        ctx = self.context(playbook, stage, facts, locale, personal=personal)
        html_tags = ctx.pop("recipient_html", None)
        if ".html." in name:
            ctx["html_part"] = True
            if html_tags is not None:
                ctx["recipient"] = html_tags
        return ctx

    def part_names(self, playbook: str, stage: str, channel: str, locale: str) -> dict[str, str]:
        """Template of each part of a message: the channel's parts, then any thread parts."""
        cls = self.channels[channel]
        names = {part: template_name(playbook, stage, channel, part, locale)
                 for part in cls.parts}
        if "text" in cls.parts:
            for n in range(2, min(getattr(cls, "max_thread_parts", 1), MAX_THREAD_PARTS) + 1):
                name = template_name(playbook, stage, channel, thread_part(n), locale)
                if not self._exists(name):
                    break
                names[thread_part(n)] = name
        for part in getattr(cls, "optional_parts", ()):  # e.g. an image and its alt text
            name = template_name(playbook, stage, channel, part, locale)
            if self._exists(name):
                names[part] = name
        return names

    def render_message(
        self, playbook: Playbook, stage: Stage, facts: FactSheet, channel: str, locale: str
    ) -> tuple[RenderedMessage, dict[str, str]]:
        """One message and the hashes of the templates it came from: every template loaded
        to render the parts it has (each part's template and what it includes, imports or
        extends), which its content hash covers too."""
        cls = self.channels[channel]
        limits = playbook.limits_of(channel, cls.limits)
        where = Where(playbook.name, stage.id, channel, locale)
        names = self.part_names(playbook.name, stage.id, channel, locale)
        parts: dict[str, str] = {}
        hashes: dict[str, str] = {}
        for part, name in list(names.items()):
            ctx = self._part_context(playbook, stage, facts, locale, cls.personal, name)
            text, loaded = self.render_part_loaded(name, ctx, where, playbook.recipient_fields,
                                                   part=part)
            problems = part_problems(limits, part, limit_text(text))
            short_name = template_name(playbook.name, stage.id, channel, short_part(part), locale)
            if problems and self._exists(short_name):
                ctx = self._part_context(playbook, stage, facts, locale, cls.personal, short_name)
                text, loaded = self.render_part_loaded(short_name, ctx, where,
                                                       playbook.recipient_fields, part=part)
                names[part] = short_name
                problems = part_problems(limits, part, limit_text(text))
            if problems:
                reason = (f"{'; '.join(problems)} (approved text is never truncated; add a "
                          f"short variant {short_name})")
                raise LimitError(f"{where}, field {part}: {reason}",
                                 **where.fields(template=names[part], part=part), reason=reason)
            parts[part] = text
            hashes.update(loaded)
        found = message_problems(playbook, facts, channel, locale, parts)
        if found:
            raise RenderError(f"{where}: {'; '.join(map(str, found))}", **where.fields(),
                              problems=found)
        message = RenderedMessage(
            playbook=playbook.name,
            stage=stage.id,
            channel=channel,
            locale=locale,
            parts=parts,
            content_hash=content_hash(channel, locale, parts, hashes),
        )
        return message, hashes

    def render_stage(
        self, playbook: Playbook, stage: Stage, facts: FactSheet
    ) -> list[tuple[RenderedMessage, dict[str, str]]]:
        """Every channel of the stage in every locale of the playbook."""
        playbook.check_channels(self.channels)
        return [
            self.render_message(playbook, stage, facts, channel, locale)
            for channel in playbook.channels_of(stage, self.channels)
            for locale in playbook.locales
        ]
