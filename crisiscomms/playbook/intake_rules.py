"""A playbook's ``intake:`` section: which signals (alerts, incidents, recalls, our own events)
run this playbook on their own, and with which pre-approved words.

Written by an SRE, read by a PR lead: each rule says where a signal comes from (``sources``),
what its labels must look like (``match``), which stage it starts and which stage a resolution
proposes, how labels become status page components and a severity, and the facts the public
messages are made of. Those facts are the playbook's, reviewed in advance: the alert's own text
(an engineer's summary) is never published.

```yaml
intake:
  rules:
    - name: api-down
      sources: [alertmanager, grafana, pagerduty]       # source kinds or source names
      match: {alertname: "APIDown|DashboardDown"}       # whole-value regexes over labels
      stage: acknowledge                               # default: the first stage
      resolve_stage: resolve                           # proposed for approval, never sent
      group_by: [alertname]                            # default: the sender's group key
      components: {label: service, map: {api: API}, fallback: API}
      severity: {label: severity, map: {critical: critical, page: major}, default: major}
      next_update_minutes: 30
      facts: {title: ..., impact: ..., translations: {es: {title: ..., impact: ...}}}
```

The checks that need the rest of the playbook (stages and locales exist, fact names are facts)
are made by ``Playbook`` in :mod:`crisiscomms.playbook.loader`, which owns this section.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crisiscomms.incident.facts import Severity

SEVERITIES: tuple[str, ...] = get_args(Severity)

SIGNAL_FACTS = frozenset({"incident_ref", "started_at", "next_update_at", "resolved_at"})
"""Facts a rule may not set: the signal and the clock give them (``started_at`` from the alert,
``next_update_at`` from ``next_update_minutes``, ``resolved_at`` from its end), and the intake
service names the incident."""

LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]*$"


class ComponentMap(BaseModel):
    """Which status page component a label's value names (``service: api`` → ``API``). A value
    not in ``map`` takes ``fallback``, or no component: never an error at 3 a.m."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(pattern=LABEL_NAME)
    map: dict[str, str] = Field(default_factory=dict)
    fallback: str | None = None

    def component(self, labels: Mapping[str, str]) -> str | None:
        value = labels.get(self.label)
        if value is not None and value in self.map:
            return self.map[value]
        return self.fallback


class SeverityMap(BaseModel):
    """Which severity (``minor``/``major``/``critical``) a label's value means; ``default`` for
    any other value or no label."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, pattern=LABEL_NAME)
    map: dict[str, Severity] = Field(default_factory=dict)
    default: Severity = "major"

    def severity(self, labels: Mapping[str, str]) -> str:
        value = labels.get(self.label) if self.label else None
        if value is not None and value in self.map:
            return self.map[value]
        return self.default


class IntakeRule(BaseModel):
    """One rule: the signals it takes and what they run."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    sources: tuple[str, ...] = Field(min_length=1)
    """Source kinds (``alertmanager``, ``pagerduty``, ``grafana``, ``recall``, ``events``) or
    the names of sources in the sources file."""
    match: dict[str, str] = Field(default_factory=dict)
    """Label → regular expression, matched against the whole value (as Alertmanager matches);
    a missing label is the empty string. Every entry must match."""
    stage: str | None = None
    """The stage a firing group starts (default: the playbook's first stage)."""
    resolve_stage: str | None = None
    """The stage a resolved group proposes for approval (default: the playbook's only stage
    whose incident status is ``resolved``, if it has one; without one a resolution only closes
    the group)."""
    group_by: tuple[str, ...] = ()
    """Labels whose values make one incident (default: the sender's own group key)."""
    components: ComponentMap | None = None
    severity: SeverityMap = Field(default_factory=SeverityMap)
    next_update_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    """Sets ``next_update_at`` to this long after the signal arrives (the acknowledgement
    promises the next update)."""
    facts: dict[str, Any] = Field(default_factory=dict)
    """The pre-approved facts (``title``, ``impact``, ``contact_url``...; ``translations`` per
    locale). Never the alert's own text."""

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            if not re.match(LABEL_NAME, label):
                raise ValueError(f"label {label!r} is not a label name")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"label {label!r}: the regex {pattern!r} does not compile: "
                                 f"{exc}") from None
        return value

    @field_validator("group_by")
    @classmethod
    def _labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [label for label in value if not re.match(LABEL_NAME, label)]
        if bad:
            raise ValueError(f"{bad} are not label names")
        return value

    @field_validator("facts")
    @classmethod
    def _own_facts(cls, value: dict[str, Any]) -> dict[str, Any]:
        given = sorted(SIGNAL_FACTS & set(value))
        if given:
            raise ValueError(f"{given} come from the signal and the clock, not from the rule")
        translations = value.get("translations", {})
        if not isinstance(translations, dict) or not all(
                isinstance(v, dict) for v in translations.values()):
            raise ValueError("translations: per locale, a mapping of fact → text")
        return value

    def patterns(self) -> dict[str, re.Pattern[str]]:
        return _compiled(tuple(sorted(self.match.items())))

    def takes(self, kind: str, source: str, labels: Mapping[str, str]) -> bool:
        """Whether a signal of ``kind`` from ``source`` with ``labels`` is this rule's."""
        if kind not in self.sources and source not in self.sources:
            return False
        return all(p.fullmatch(str(labels.get(label, ""))) is not None
                   for label, p in self.patterns().items())


_PATTERNS: dict[tuple[tuple[str, str], ...], dict[str, re.Pattern[str]]] = {}


def _compiled(items: tuple[tuple[str, str], ...]) -> dict[str, re.Pattern[str]]:
    """Compiled once per distinct ``match`` (rules are frozen once loaded)."""
    found = _PATTERNS.get(items)
    if found is None:
        found = _PATTERNS[items] = {label: re.compile(p) for label, p in items}
    return found


class IntakeSection(BaseModel):
    """The playbook's rules, tried in order: the first that takes a signal routes it."""

    model_config = ConfigDict(extra="forbid")

    rules: tuple[IntakeRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> IntakeSection:
        names = [r.name for r in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"rule names {twice} are used twice")
        return self
