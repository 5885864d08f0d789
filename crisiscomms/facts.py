"""FactSheet: the validated facts of one incident, the single source every message renders from."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crisiscomms.errors import FactsError

Severity = Literal["minor", "major", "critical"]


class FactSheet(BaseModel):
    """What is true about the incident right now. Every field a template may use is declared."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    incident_ref: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    organization: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=200)
    severity: Severity
    components: tuple[str, ...] = ()
    impact: str | None = None
    cause: str | None = None
    remedy: str | None = None
    workaround: str | None = None
    started_at: datetime
    next_update_at: datetime | None = None
    resolved_at: datetime | None = None
    contact_url: str | None = None
    contact_phone: str | None = None
    status_page_url: str | None = None
    time_zone: str = "UTC"
    extra: dict[str, str] = Field(default_factory=dict)

    @field_validator("started_at", "next_update_at", "resolved_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone offset, e.g. 2026-11-23T09:40:00+00:00")
        return value

    @field_validator("contact_url", "status_page_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    def content_hash(self) -> str:
        """SHA-256 over the canonical JSON of the facts."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def missing(self, required: list[str]) -> list[str]:
        """The required facts that are absent or empty."""
        out = []
        for name in required:
            if name.startswith("extra."):
                if not self.extra.get(name.removeprefix("extra.")):
                    out.append(name)
            elif getattr(self, name, None) in (None, "", ()):
                out.append(name)
        return out


def build_fact_sheet(data: dict[str, Any], *, base: FactSheet | None = None) -> FactSheet:
    """Validate raw facts (merged over ``base`` for an update) into a FactSheet."""
    merged: dict[str, Any] = base.model_dump() if base is not None else {}
    merged.update({k: v for k, v in data.items() if v is not None})
    try:
        return FactSheet.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'facts'}: {err['msg']}"
            for err in exc.errors()
        )
        raise FactsError(f"invalid facts: {problems}") from None
