"""Sandboxed rendering of a playbook stage for every channel and locale from one fact sheet.

Templates live at ``templates/<playbook>/<stage>/<channel>.<part>.<locale>.j2``. Fact and
recipient values are data, never template code. Personal fields in email render as substitution
tags (``%first_name%``; ``%first_name.html%`` in HTML parts) so one approved text serves a
1,000-recipient request; the values are filled per recipient by the provider.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_time
from babel.lists import format_list
from jinja2 import StrictUndefined, TemplateNotFound, pass_context
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from crisiscomms.approvals import ApprovalLock
from crisiscomms.channels.base import Channel, RenderedMessage
from crisiscomms.errors import LimitError, RenderError
from crisiscomms.facts import FactSheet
from crisiscomms.limits import limit_problems
from crisiscomms.playbooks import Playbook, Stage

SHORT_PART = "short"


def template_name(playbook: str, stage: str, channel: str, part: str, locale: str) -> str:
    return f"{playbook}/{stage}/{channel}.{part}.{locale}.j2"


def content_hash(channel: str, locale: str, parts: Mapping[str, str]) -> str:
    canonical = json.dumps(
        {"channel": channel, "locale": locale, "parts": dict(parts)},
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


@pass_context
def _datetime_filter(ctx: Context, value: datetime, fmt: str = "medium") -> str:
    return format_datetime(value, fmt, tzinfo=_tz(ctx), locale=ctx["locale"])


@pass_context
def _time_filter(ctx: Context, value: datetime, fmt: str | None = None) -> str:
    """``15:00 CET``: the locale's time with the zone's own abbreviation (Babel's ``z`` gives
    ``+0100`` for most locales); pass a Babel pattern to choose another form."""
    tz = _tz(ctx)
    if fmt is not None:
        return format_time(value, fmt, tzinfo=tz, locale=ctx["locale"])
    local = value.astimezone(tz)
    return f"{format_time(local, 'HH:mm', tzinfo=tz, locale=ctx['locale'])} {local.tzname()}"


@pass_context
def _date_filter(ctx: Context, value: datetime, fmt: str = "long") -> str:
    return format_date(value.astimezone(_tz(ctx)), fmt, locale=ctx["locale"])


@pass_context
def _join_and(ctx: Context, values: list[str] | tuple[str, ...]) -> str:
    return format_list(list(values), locale=ctx["locale"]) if values else ""


def make_environment(templates_dir: Path) -> ImmutableSandboxedEnvironment:
    from jinja2 import FileSystemLoader

    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(templates_dir)),
        undefined=StrictUndefined,
        autoescape=lambda name: name is not None and ".html." in name,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.filters.update(
        datetime=_datetime_filter, time=_time_filter, date=_date_filter, join_and=_join_and
    )
    return env


class StageRenderer:
    """Renders stages of playbooks; refuses unapproved templates when given an approval lock."""

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
        self.env = make_environment(templates_dir)
        self._checked: dict[str, str] = {}

    def _source_hash(self, name: str) -> str:
        """Load (and, if required, approval-check) a template once per renderer."""
        if name not in self._checked:
            assert self.env.loader is not None
            source, _, _ = self.env.loader.get_source(self.env, name)
            if self.approvals is not None:
                self._checked[name] = self.approvals.check(name, source)
            else:
                self._checked[name] = hashlib.sha256(source.encode()).hexdigest()
        return self._checked[name]

    def _exists(self, name: str) -> bool:
        return (self.templates_dir / name).is_file()

    def render_part(self, name: str, context: Mapping[str, Any], where: str) -> str:
        try:
            self._source_hash(name)
            text = self.env.get_template(name).render(context)
        except TemplateNotFound:
            raise RenderError(f"{where}: template {name} is missing") from None
        except UndefinedError as exc:
            raise RenderError(f"{where}: template {name} uses an undefined value: {exc}") from None
        except SecurityError as exc:
            raise RenderError(
                f"{where}: template {name} was stopped by the sandbox: {exc}") from None
        except TemplateError as exc:
            raise RenderError(f"{where}: template {name} failed: {exc}") from None
        return text.strip()

    def context(
        self, playbook: Playbook, stage: Stage, facts: FactSheet, locale: str, *, personal: bool
    ) -> dict[str, Any]:
        ctx: dict[str, Any] = {
            "facts": facts.model_dump(),
            "stage": {"id": stage.id, "title": stage.title, "status": str(stage.incident_status)},
            "playbook": {"name": playbook.name, "title": playbook.title},
            "locale": locale,
            "time_zone": facts.time_zone,
        }
        if personal:
            ctx["recipient"] = {
                f: substitution_tag(f, html=False) for f in playbook.recipient_fields
            }
            ctx["recipient_html"] = {
                f: substitution_tag(f, html=True) for f in playbook.recipient_fields
            }
        return ctx

    def render_message(
        self, playbook: Playbook, stage: Stage, facts: FactSheet, channel: str, locale: str
    ) -> tuple[RenderedMessage, dict[str, str]]:
        """One message and the hashes of the templates it came from."""
        cls = self.channels[channel]
        where = f"playbook {playbook.name}, stage {stage.id}, channel {channel}, locale {locale}"
        names = {part: template_name(playbook.name, stage.id, channel, part, locale)
                 for part in cls.parts}
        parts: dict[str, str] = {}
        for part, name in names.items():
            ctx = self.context(playbook, stage, facts, locale, personal=cls.personal)
            html_tags = ctx.pop("recipient_html", None)
            if html_tags is not None and ".html." in name:
                ctx["recipient"] = html_tags
            parts[part] = self.render_part(name, ctx, where)
        problems = limit_problems(cls.limits, parts)
        short_name = template_name(playbook.name, stage.id, channel, SHORT_PART, locale)
        if problems and "text" in parts and self._exists(short_name):
            ctx = self.context(playbook, stage, facts, locale, personal=cls.personal)
            parts["text"] = self.render_part(short_name, ctx, where)
            names["text"] = short_name
            problems = limit_problems(cls.limits, parts)
        if problems:
            raise LimitError(f"{where}: {'; '.join(problems)} (approved text is never truncated; "
                             f"add a short variant {short_name})")
        hashes = {name: self._source_hash(name) for name in names.values()}
        message = RenderedMessage(
            playbook=playbook.name,
            stage=stage.id,
            channel=channel,
            locale=locale,
            parts=parts,
            content_hash=content_hash(channel, locale, parts),
        )
        return message, hashes

    def render_stage(
        self, playbook: Playbook, stage: Stage, facts: FactSheet
    ) -> list[tuple[RenderedMessage, dict[str, str]]]:
        """Every channel of the stage in every locale of the playbook."""
        return [
            self.render_message(playbook, stage, facts, channel, locale)
            for channel in stage.channels
            for locale in playbook.locales
        ]
