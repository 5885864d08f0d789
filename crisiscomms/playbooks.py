"""Load and validate playbooks (``playbooks/<name>.yaml``) into typed objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crisiscomms.errors import PlaybookError
from crisiscomms.facts import FactSheet
from crisiscomms.models import IncidentStatus

KNOWN_CHANNELS = ("status_page", "x", "email", "support")
"""Publishing order: the status page first (every other message links to it), then social,
then email; the support holding statement goes out with them."""

RECIPIENT_FIELDS = ("first_name", "name", "email", "plan")
"""Recipient fields a playbook may declare for personal wording (see Recipient)."""


class RecipientField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fallback: str = Field(description="Used when the recipient has no value, e.g. 'there'.")


class Stage(BaseModel):
    """One message of the playbook (acknowledge, update, resolve...), rendered for each channel."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    incident_status: IncidentStatus
    auto_send: bool = False
    channels: tuple[str, ...] = KNOWN_CHANNELS
    required_facts: tuple[str, ...] = ()


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    description: str = ""
    locales: tuple[str, ...] = ("en",)
    default_locale: str = "en"
    required_facts: tuple[str, ...] = ()
    recipient_fields: dict[str, RecipientField] = Field(default_factory=dict)
    stages: tuple[Stage, ...]
    drill_facts: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Playbook:
        if not self.stages:
            raise ValueError("a playbook needs at least one stage")
        ids = [s.id for s in self.stages]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate stage ids: {ids}")
        if self.default_locale not in self.locales:
            raise ValueError(f"default_locale {self.default_locale!r} is not in locales")
        fact_names = set(FactSheet.model_fields)
        for stage in self.stages:
            unknown = [c for c in stage.channels if c not in KNOWN_CHANNELS]
            if unknown:
                raise ValueError(f"stage {stage.id!r}: unknown channels {unknown}")
        for name in (*self.required_facts, *(f for s in self.stages for f in s.required_facts)):
            if name not in fact_names and not name.startswith("extra."):
                raise ValueError(f"required fact {name!r} is not a FactSheet field")
        bad = [f for f in self.recipient_fields if f not in RECIPIENT_FIELDS]
        if bad:
            raise ValueError(f"unknown recipient fields {bad}; known: {list(RECIPIENT_FIELDS)}")
        return self

    def stage(self, stage_id: str) -> Stage:
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        raise PlaybookError(
            f"playbook {self.name!r} has no stage {stage_id!r}; "
            f"stages: {', '.join(s.id for s in self.stages)}"
        )

    def required_for(self, stage: Stage) -> list[str]:
        return list(dict.fromkeys((*self.required_facts, *stage.required_facts)))


def available_playbooks(playbooks_dir: Path) -> list[str]:
    return sorted(p.stem for p in playbooks_dir.glob("*.yaml"))


def load_playbook(name: str, playbooks_dir: Path) -> Playbook:
    """Load ``<playbooks_dir>/<name>.yaml``; a clear PlaybookError names what is wrong."""
    path = playbooks_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_playbooks(playbooks_dir)) or "none"
        raise PlaybookError(f"unknown playbook {name!r} (available: {known})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PlaybookError(f"playbook {name!r}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PlaybookError(f"playbook {name!r}: expected a mapping at the top level")
    try:
        playbook = Playbook.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'playbook'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PlaybookError(f"playbook {name!r} is invalid: {problems}") from None
    if playbook.name != name:
        raise PlaybookError(f"playbook file {path.name} declares name {playbook.name!r}")
    return playbook
