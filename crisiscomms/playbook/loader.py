"""Load and validate playbooks (``playbooks/<name>.yaml``) into typed objects.

Which channels exist is the channel registry's to say, and the domain does not import the
channels: :func:`load_playbook` checks the playbook's own structure, and
:meth:`Playbook.check_channels` / :meth:`Playbook.channels_of` take the registry (a
``ChannelClasses`` mapping) from the caller, as ``trigger`` and ``lint`` do.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from crisiscomms.core.errors import PlaybookError
from crisiscomms.core.locales import fallback_chain
from crisiscomms.delivery.contract import ChannelClasses, ChannelLimits, Lane
from crisiscomms.incident.facts import LOCALIZABLE_FACTS, BreachFacts, FactSheet, RecallFacts
from crisiscomms.incident.models import IncidentStatus
from crisiscomms.playbook.intake_rules import IntakeRule, IntakeSection
from crisiscomms.playbook.listening import Listening

RECIPIENT_FIELDS = ("first_name", "name", "email", "plan", "product", "order_ref",
                    "unsubscribe_url", "csat_url")
"""Recipient fields a playbook may declare for personal wording (see Recipient)."""


class Invalid(ValueError):
    """A playbook rule broken, with where: pydantic keeps it as the error's ``ctx["error"]``,
    and :func:`load_playbook` copies its fields into the PlaybookError."""

    def __init__(self, reason: str, *, field: str, stage: str | None = None,
                 values: tuple[str, ...] = ()) -> None:
        super().__init__(f"stage {stage!r}: {reason}" if stage else reason)
        self.reason, self.field, self.stage, self.values = reason, field, stage, values


class QA(BaseModel):
    """One anticipated question and its approved answer (plain text, the same everywhere)."""

    model_config = ConfigDict(extra="forbid")
    q: str = Field(min_length=1)
    a: str = Field(min_length=1)


class Remedy(BaseModel):
    """A remedy a support agent may grant on their own, without asking anyone: what it is, up
    to what limit, and when it applies. The seeds insist agents be empowered to settle an
    ordinary complaint on the spot (waive a fee, credit a charge); this is the playbook's word
    on how far that goes, so every agent grants the same thing and nobody waits for a manager."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["credit", "fee_waiver", "refund", "replacement", "other"]
    what: str = Field(min_length=1)
    """The remedy, in the customer's words (``A service credit on the next invoice``)."""
    limit: str = Field(min_length=1)
    """Up to what an agent grants alone (``up to 10 % of the month's fee``); beyond it, the
    usual approval path."""
    when: str = Field(min_length=1)
    """When it applies (``the customer's account was affected for more than an hour``)."""


class Notice(BaseModel):
    """Rules of a regulated notice (recall, data breach) checked before anything renders."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["recall", "breach"]
    headline: dict[str, str] = Field(
        default_factory=dict,
        description="Per locale, the word the title and the email subject must carry "
                    "(en: Recall).")
    urgent: dict[str, str] = Field(
        default_factory=dict,
        description="Per locale, the word an urgent recall's email subject must carry "
                    "(en: URGENT; FDA 21 CFR 7.49(c)(2)).")
    min_channels: int = Field(default=2, ge=1)


class ApprovalPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    required: int = Field(default=1, ge=1, le=2, description="2: the two-person rule")


class RecipientField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fallback: str | dict[str, str] = Field(
        description="Used when the recipient has no value, e.g. 'there'; or one per locale "
                    "({en: there, fr: à vous}), since the words around it differ.")

    def fallback_for(self, locale: str, default: str = "en") -> str:
        if isinstance(self.fallback, str):
            return self.fallback
        for candidate in fallback_chain(locale, default):
            if candidate in self.fallback:
                return self.fallback[candidate]
        return next(iter(self.fallback.values()), "")


class LimitCap(BaseModel):
    """A playbook's own, lower, cap on a channel's limits (``limits: {sms: {max_segments: 2}}``):
    what its messages may cost on that channel, checked at render and by lint."""

    model_config = ConfigDict(extra="forbid")

    max_segments: int | None = Field(default=None, ge=1, le=10)
    """SMS segments a text may cost (GSM-7 153 / UCS-2 67 characters each when split)."""


class Stage(BaseModel):
    """One message of the playbook (acknowledge, update, resolve...), rendered for each channel."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    incident_status: IncidentStatus
    auto_send: bool = False
    channels: tuple[str, ...] | None = None
    """The channels this stage publishes on, as the playbook names them; None: every channel
    the registry enables by default (:meth:`Playbook.channels_of`)."""
    required_facts: tuple[str, ...] = ()
    urgent: StrictBool = False
    """Time-critical: its SMS go out at once, whatever the hour where the recipient lives;
    a stage that is not urgent waits out each recipient's quiet hours (the SMS channel's
    ``quiet_hours``), deferred in the ledger, never dropped."""
    status_page_first: StrictBool = True
    """The other channels start only once the status page (the first lane: every other
    message links to it) published this stage; ``false`` lets them go even when it failed.
    Only meaningful, and only allowed, on a stage that publishes on the status page."""


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    description: str = ""
    locales: tuple[str, ...] = ("en",)
    default_locale: str = "en"
    required_facts: tuple[str, ...] = ()
    recipient_fields: dict[str, RecipientField] = Field(default_factory=dict)
    time_zones: dict[str, str] = Field(
        default_factory=dict,
        description="Per locale, the time zone of public messages (status page, X, support); "
                    "personal email uses each recipient's own.")
    qa: dict[str, tuple[QA, ...]] = Field(default_factory=dict)
    remedies: dict[str, tuple[Remedy, ...]] = Field(
        default_factory=dict,
        description="Per locale, the remedies support agents may grant without asking "
                    "(the support page shows them beside the Q&A).")
    must_carry: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Per channel, the facts every rendered message must carry verbatim.")
    limits: dict[str, LimitCap] = Field(
        default_factory=dict,
        description="Per channel, caps on its limits lower than the provider's own (e.g. "
                    "sms: {max_segments: 2}).")
    notice: Notice | None = None
    approvals: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    stages: tuple[Stage, ...]
    drill_facts: dict[str, Any] = Field(default_factory=dict)
    listening: Listening = Field(default_factory=Listening)
    intake: IntakeSection | None = None
    """Which signals run this playbook on their own (``playbook/intake_rules.py``); None:
    only a person starts it."""

    @model_validator(mode="after")
    def _check(self) -> Playbook:
        if not self.stages:
            raise Invalid("a playbook needs at least one stage", field="stages")
        ids = [s.id for s in self.stages]
        if len(set(ids)) != len(ids):
            raise Invalid(f"duplicate stage ids: {ids}", field="stages")
        if self.default_locale not in self.locales:
            raise Invalid(f"default_locale {self.default_locale!r} is not in locales",
                          field="default_locale")
        musts = (f for fs in self.must_carry.values() for f in fs)
        for name in (*self.required_facts, *(f for s in self.stages for f in s.required_facts),
                     *musts):
            if not is_fact_path(name):
                raise Invalid(f"fact {name!r} is not a FactSheet field", field="facts",
                              values=(name,))
        stray = [loc for loc in (*self.qa, *self.time_zones, *self.remedies)
                 if loc not in self.locales]
        if stray:
            field = ("qa" if stray[0] in self.qa else
                     "time_zones" if stray[0] in self.time_zones else "remedies")
            raise Invalid(f"qa/time_zones/remedies name locales the playbook lacks: {stray}",
                          field=field, values=tuple(stray))
        if self.notice is not None:
            for kind, words in (("headline", self.notice.headline),
                                ("urgent", self.notice.urgent)):
                lacking = [loc for loc in self.locales if words and loc not in words]
                if lacking:
                    raise Invalid(f"notice.{kind} lacks locales {lacking}",
                                  field=f"notice.{kind}", values=tuple(lacking))
        bad = [f for f in self.recipient_fields if f not in RECIPIENT_FIELDS]
        if bad:
            raise Invalid(f"unknown recipient fields {bad}; known: {list(RECIPIENT_FIELDS)}",
                          field="recipient_fields", values=tuple(bad))
        for i, rule in enumerate(self.intake.rules if self.intake else ()):
            self._check_rule(i, rule, ids)
        return self

    def _check_rule(self, i: int, rule: IntakeRule, stage_ids: list[str]) -> None:
        """The parts of an intake rule that need the rest of the playbook: its stages, its
        facts' names, its translations' locales."""
        where = f"intake.rules.{i}"
        for key in ("stage", "resolve_stage"):
            named = getattr(rule, key)
            if named is not None and named not in stage_ids:
                raise Invalid(f"rule {rule.name!r}: {key} {named!r} is not a stage of the "
                              f"playbook ({', '.join(stage_ids)})", field=f"{where}.{key}",
                              values=(named,))
        for name in rule.facts:
            if name != "translations" and not is_fact_path(name):
                raise Invalid(f"rule {rule.name!r}: fact {name!r} is not a FactSheet field",
                              field=f"{where}.facts.{name}", values=(name,))
        for locale, entries in rule.facts.get("translations", {}).items():
            if locale not in self.locales:
                raise Invalid(f"rule {rule.name!r}: translations name locale {locale!r} the "
                              "playbook lacks", field=f"{where}.facts.translations.{locale}",
                              values=(locale,))
            odd = [p for p in entries if p not in LOCALIZABLE_FACTS and not p.startswith("extra.")]
            if odd:
                raise Invalid(f"rule {rule.name!r}: {odd} are not translatable facts",
                              field=f"{where}.facts.translations.{locale}", values=tuple(odd))

    def intake_stage(self, rule: IntakeRule) -> str:
        """The stage a firing signal of ``rule`` starts."""
        return rule.stage or self.stages[0].id

    def intake_resolve_stage(self, rule: IntakeRule) -> str | None:
        """The stage a resolved group of ``rule`` proposes: the rule's, else the playbook's
        only ``resolved`` stage, else None (the resolution only closes the group)."""
        if rule.resolve_stage is not None:
            return rule.resolve_stage
        resolved = [s.id for s in self.stages if s.incident_status == IncidentStatus.resolved]
        return resolved[0] if len(resolved) == 1 else None

    def stage(self, stage_id: str) -> Stage:
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        stages = ", ".join(s.id for s in self.stages)
        raise PlaybookError(
            f"playbook {self.name!r} has no stage {stage_id!r}; stages: {stages}",
            playbook=self.name, stage=stage_id, reason=f"no such stage; stages: {stages}")

    def channels_of(self, stage: Stage, channels: ChannelClasses) -> tuple[str, ...]:
        """The channels ``stage`` publishes on: those it names, else every channel of the
        registry ``channels`` that is ``default_enabled``, in publication order."""
        if stage.channels is not None:
            return stage.channels
        return tuple(name for name, cls in channels.items() if cls.default_enabled)

    def channel_problems(self, channels: ChannelClasses) -> list[PlaybookError]:
        """What is wrong with the playbook's channels against the registry ``channels``:
        unknown names (stages, ``must_carry``), a notice on too few channels."""
        problems: list[PlaybookError] = []
        known = ", ".join(channels)
        for stage in self.stages:
            unknown = [c for c in stage.channels or () if c not in channels]
            if unknown:
                reason = f"unknown channels {unknown} (channels: {known})"
                problems.append(PlaybookError(f"stage {stage.id!r}: {reason}", playbook=self.name,
                                              stage=stage.id, field="channels",
                                              values=tuple(unknown), reason=reason))
                continue
            if (self.notice is not None
                    and len(self.channels_of(stage, channels)) < self.notice.min_channels):
                reason = (f"a {self.notice.kind} notice goes out on at least "
                          f"{self.notice.min_channels} channels")
                problems.append(PlaybookError(f"stage {stage.id!r}: {reason}", playbook=self.name,
                                              stage=stage.id, field="channels", reason=reason))
            first = [c for c in self.channels_of(stage, channels)
                     if c in channels and channels[c].lane is Lane.first]
            if not stage.status_page_first and not first:
                reason = ("status_page_first: false, but the stage publishes nothing that goes "
                          "first (channels: "
                          f"{', '.join(self.channels_of(stage, channels))}); remove the key")
                problems.append(PlaybookError(f"stage {stage.id!r}: {reason}", playbook=self.name,
                                              stage=stage.id, field="status_page_first",
                                              reason=reason))
        for key, named in (("must_carry", self.must_carry), ("limits", self.limits)):
            unknown_channels = [c for c in named if c not in channels]
            if unknown_channels:
                reason = f"{key} names unknown channels {unknown_channels} (channels: {known})"
                problems.append(PlaybookError(reason, playbook=self.name, field=key,
                                              values=tuple(unknown_channels), reason=reason))
        for name, cap in self.limits.items():
            own = channels[name].limits.max_segments if name in channels else None
            if cap.max_segments is not None and (own is None or cap.max_segments > own):
                reason = (f"limits.{name}.max_segments {cap.max_segments} is not a cap under "
                          f"the channel's own ({own if own is not None else 'no segments'})")
                problems.append(PlaybookError(reason, playbook=self.name,
                                              field=f"limits.{name}.max_segments",
                                              reason=reason))
        return problems

    def check_channels(self, channels: ChannelClasses) -> None:
        """Raise a PlaybookError gathering every :meth:`channel_problems`."""
        problems = self.channel_problems(channels)
        if problems:
            raise PlaybookError(f"playbook {self.name!r} is invalid: "
                                f"{'; '.join(str(p) for p in problems)}",
                                playbook=self.name, problems=problems)

    def limits_of(self, channel: str, limits: ChannelLimits) -> ChannelLimits:
        """The channel's ``limits`` under this playbook's caps (``limits:``)."""
        cap = self.limits.get(channel)
        if cap is None or cap.max_segments is None or limits.max_segments is None:
            return limits
        return dataclasses.replace(limits,
                                   max_segments=min(cap.max_segments, limits.max_segments))

    def required_for(self, stage: Stage) -> list[str]:
        return list(dict.fromkeys((*self.required_facts, *stage.required_facts)))


def is_fact_path(name: str) -> bool:
    """``title``, ``extra.anything``, ``recall.hazard``: a name a playbook may require."""
    head, _, rest = name.partition(".")
    if head == "extra":
        return bool(rest)
    if head not in FactSheet.model_fields:
        return False
    if not rest:
        return True
    sections: dict[str, type[BaseModel]] = {"recall": RecallFacts, "breach": BreachFacts}
    section = sections.get(head)
    return section is not None and rest in section.model_fields


def available_playbooks(playbooks_dir: Path) -> list[str]:
    return sorted(p.stem for p in playbooks_dir.glob("*.yaml"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping: plain YAML keeps the last
    silently, so a second ``listening:`` (or ``qa:``) would throw the first away unseen."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def playbook_on_disk(name: str, playbooks_dir: Path) -> Playbook:
    """:func:`load_playbook`, parsed once per version of the file (its modification time and
    size): for read views that ask on every dashboard run (parsing and validating costs tens of
    milliseconds), an edited playbook is read again at the next call. Treat it as read-only;
    a broken or unknown playbook raises as ``load_playbook`` does, every time."""
    try:
        stat = (playbooks_dir / f"{name}.yaml").stat()
    except OSError:
        return load_playbook(name, playbooks_dir)  # the unknown-playbook error
    return _parsed_version(name, playbooks_dir, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _parsed_version(name: str, playbooks_dir: Path, mtime_ns: int, size: int) -> Playbook:
    return load_playbook(name, playbooks_dir)


def load_playbook(name: str, playbooks_dir: Path) -> Playbook:
    """Load ``<playbooks_dir>/<name>.yaml``; a clear PlaybookError names what is wrong."""
    path = playbooks_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_playbooks(playbooks_dir)) or "none"
        raise PlaybookError(f"unknown playbook {name!r} (available: {known})", playbook=name,
                            reason=f"unknown playbook (available: {known})")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise PlaybookError(f"playbook {name!r}: invalid YAML: {exc}", playbook=name,
                            reason=f"invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        reason = "expected a mapping at the top level"
        raise PlaybookError(f"playbook {name!r}: {reason}", playbook=name, reason=reason)
    try:
        playbook = Playbook.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or None
            rule = err.get("ctx", {}).get("error")
            if isinstance(rule, Invalid):
                problems.append(PlaybookError(
                    f"{loc or 'playbook'}: {err['msg']}", playbook=name, stage=rule.stage,
                    field=rule.field, values=rule.values, reason=rule.reason))
            else:
                problems.append(PlaybookError(f"{loc or 'playbook'}: {err['msg']}",
                                              playbook=name, field=loc, reason=err["msg"]))
        raise PlaybookError(f"playbook {name!r} is invalid: {'; '.join(map(str, problems))}",
                            playbook=name, problems=problems) from None
    if playbook.name != name:
        raise PlaybookError(f"playbook file {path.name} declares name {playbook.name!r}",
                            playbook=name, field="name",
                            reason=f"the file {path.name} declares name {playbook.name!r}")
    return playbook
