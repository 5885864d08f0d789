"""Our own event shape (``POST /v1/events``), Standard Webhooks signed.

A monitoring script, a product-safety system or another team's service says which playbook to
run and what it knows; the playbook's rules still decide what is published. No source name is
in the URL: the source is the one whose key verifies the signature (a handful of HMACs over the
events sources' keys costs microseconds), so a sender cannot claim to be another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from crisiscomms.core.errors import IntakeError
from crisiscomms.incident.facts import FactSheet
from crisiscomms.intake.adapters.base import (
    Labels,
    Line,
    Payload,
    Text,
    examples,
    facts_text_rule,
    parse_json,
    partial_model,
)
from crisiscomms.intake.contract import Signal, Source, SourceKind
from crisiscomms.intake.signatures import (
    WEBHOOK_SIGNATURE,
    refuse,
    standard_headers,
    verify_standard,
)

NAME = r"^[a-z][a-z0-9_]*$"
REF = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

EventFacts = partial_model(
    FactSheet, "EventFacts", exclude=frozenset({"incident_ref", "organization"}),
    doc="What the sender knows, as fact sheet fields (each optional, the fact sheet's types "
        "and limits): the playbook's rules add their own and the whole is checked when the "
        "stage is triggered.")

EXAMPLE: dict[str, Any] = {
    "playbook": "outage",
    "dedup_key": "checkout-api-5xx-2026-12-01T06:58",
    "group_key": "checkout-api",
    "status": "firing",
    "occurred_at": "2026-12-01T06:58:00Z",
    "summary": "Checkout API 5xx rate 38% for 5 minutes (synthetic probe eu-west)",
    "labels": {"type": "outage", "service": "checkout", "region": "eu-west"},
    "facts": {"title": "Checkout is failing for some customers", "severity": "major",
              "components": ["checkout"]},
}


class EventIn(Payload):
    """One event of ours. ``incident_ref`` names an open incident to run ``stage`` of (an
    update with its cause); without it the playbook's rules group it by ``group_key``."""

    model_config = examples(EXAMPLE)

    playbook: str = Field(pattern=NAME, max_length=64, description="The playbook to run.")
    stage: str | None = Field(default=None, pattern=NAME, max_length=64,
                              description="The stage (default: the playbook's first).")
    dedup_key: Line = Field(min_length=1, max_length=200,
                            description="The same key twice is the same event: nothing new "
                                        "starts.")
    group_key: Line | None = Field(default=None, min_length=1, max_length=200,
                                   description="Events of one group are one incident "
                                               "(default: the dedup key).")
    status: Literal["firing", "resolved"] = "firing"
    incident_ref: str | None = Field(default=None, pattern=REF, max_length=64)
    occurred_at: AwareDatetime
    summary: Text = Field(default="", max_length=2000,
                          description="The sender's words: shown to the PR lead, never "
                                      "published.")
    labels: Labels = Field(default_factory=dict)
    facts: EventFacts = Field(default_factory=EventFacts)  # type: ignore[valid-type]

    @field_validator("facts", mode="before")
    @classmethod
    def _text_rule(cls, value: Any) -> Any:
        return facts_text_rule(value)


class EventsAdapter:
    """``POST /v1/events``: our shape, any events source whose key verifies."""

    kind: ClassVar[SourceKind] = SourceKind.events
    auth_headers: ClassVar[tuple[tuple[str, str], ...]] = (
        ("webhook-id", "Standard Webhooks: this delivery's id (a replay is refused)"),
        ("webhook-timestamp", "Standard Webhooks: Unix seconds (5-minute window)"),
        ("webhook-signature", "Standard Webhooks: v1,<base64 HMAC-SHA256 of "
                              "id.timestamp.body>; space-separated during a rotation"))
    path: ClassVar[str] = "/v1/events"
    payload_model: ClassVar[type[BaseModel]] = EventIn

    def verify(self, source: Source, headers: Mapping[str, str], body: bytes, *,
               now: float, window_s: int) -> str | None:
        return verify_standard(headers, body, source.secrets, now=now, window_s=window_s)

    def identify(self, sources: Sequence[Source], headers: Mapping[str, str], body: bytes, *,
                 now: float, window_s: int) -> tuple[Source, str]:
        """The source whose key signed the request and its ``webhook-id``; 401 when none."""
        parsed = standard_headers(headers, now=now, window_s=window_s)
        for source in sources:
            if parsed.signed_by(body, source.secrets):
                return source, parsed.msg_id
        raise refuse(WEBHOOK_SIGNATURE, "no key matched: no events source signed this "
                                        "request (wrong key, or the body changed)")

    def parse(self, source: Source, body: bytes, *, received_at: datetime) -> Sequence[Signal]:
        event = parse_json(EventIn, body)
        if event.status == "resolved" and event.stage is None and event.incident_ref is None \
                and event.group_key is None:
            raise IntakeError("group_key: a resolved event needs the group_key (or the "
                              "incident_ref) of what it resolves", status=422,
                              field="group_key")
        if event.incident_ref is not None and event.stage is None:
            raise IntakeError("stage: an event for an open incident (incident_ref) names the "
                              "stage to run", status=422, field="stage")
        facts: BaseModel = event.facts
        return [Signal(
            source=source.name, kind=self.kind, dedup_key=event.dedup_key,
            group_key=event.group_key or event.dedup_key, status=event.status,
            labels=dict(event.labels), started_at=event.occurred_at,
            ended_at=event.occurred_at if event.status == "resolved" else None,
            summary=event.summary, playbook=event.playbook, stage=event.stage,
            incident_ref=event.incident_ref,
            facts=facts.model_dump(mode="json", exclude_unset=True))]
