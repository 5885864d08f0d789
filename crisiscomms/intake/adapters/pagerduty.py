"""PagerDuty v3 webhook subscriptions, ``X-PagerDuty-Signature`` v1 HMAC-SHA256.

Each delivery carries one event. ``incident.triggered`` and ``incident.resolved`` are signals
(firing, resolved); every other event (acknowledged, annotated, ``pagey.ping``...) is accepted
and gives none. Labels: ``service`` (the service's name), ``service_id``, ``urgency``,
``priority`` (its name, empty when unset) and ``event_type``; dedup key
``<incident id>:<event type>``; group key the incident id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, Field

from crisiscomms.intake.adapters.base import Line, Payload, Text, examples, parse_json, validate
from crisiscomms.intake.contract import Signal, Source, SourceKind
from crisiscomms.intake.signatures import (
    MAX_DELIVERY_ID,
    PAGERDUTY_WEBHOOK_ID,
    header_value,
    verify_pagerduty,
)

SIGNALLED = {"incident.triggered": "firing", "incident.resolved": "resolved"}

EXAMPLE: dict[str, Any] = {
    "event": {
        "id": "01DFA7NQ4HCYUOP1K1VSW41PG8",
        "event_type": "incident.triggered",
        "resource_type": "incident",
        "occurred_at": "2026-12-01T06:59:02.481Z",
        "agent": {"html_url": "https://acme.pagerduty.com/services/PF9KMXH",
                  "id": "PF9KMXH", "self": "https://api.pagerduty.com/services/PF9KMXH",
                  "summary": "Checkout API", "type": "service_reference"},
        "client": {"name": "Prometheus"},
        "data": {
            "id": "Q2K8ZLD4M0R7TX", "type": "incident",
            "self": "https://api.pagerduty.com/incidents/Q2K8ZLD4M0R7TX",
            "html_url": "https://acme.pagerduty.com/incidents/Q2K8ZLD4M0R7TX",
            "number": 4211, "status": "triggered",
            "incident_key": "c0ffee4b1e3d4f7a9e2b6c8d0a1f3e5b",
            "created_at": "2026-12-01T06:59:01Z",
            "title": "Checkout 5xx ratio above 20%",
            "service": {"html_url": "https://acme.pagerduty.com/services/PF9KMXH",
                        "id": "PF9KMXH", "self": "https://api.pagerduty.com/services/PF9KMXH",
                        "summary": "Checkout API", "type": "service_reference"},
            "assignees": [], "escalation_policy": {"id": "PUS0KTE", "summary": "Payments",
                                                   "type": "escalation_policy_reference"},
            "teams": [], "priority": {"id": "PSO75BM", "summary": "P1",
                                      "type": "priority_reference"},
            "urgency": "high", "conference_bridge": None, "resolve_reason": None,
        },
    },
}


class PagerDutyReference(Payload):
    id: Line = Field(min_length=1, max_length=64)
    summary: Line = ""


class PagerDutyIncident(Payload):
    """``event.data`` of an incident event (only what the signal needs is checked)."""

    id: Line = Field(min_length=1, max_length=64)
    title: Text = ""
    status: Line = ""
    urgency: Line = ""
    created_at: AwareDatetime | None = None
    html_url: Line = ""
    service: PagerDutyReference
    priority: PagerDutyReference | None = None


class PagerDutyEvent(Payload):
    id: Line = Field(min_length=1, max_length=128)
    event_type: Line = Field(min_length=1, max_length=80)
    resource_type: Line = Field(min_length=1, max_length=80)
    occurred_at: AwareDatetime
    data: dict[str, Any]


class PagerDutyPayload(Payload):
    """A PagerDuty v3 webhook body: one event."""

    model_config = examples(EXAMPLE)

    event: PagerDutyEvent


class PagerDutyAdapter:
    """``POST /v1/events/pagerduty/{source}``: a PagerDuty v3 webhook subscription."""

    kind: ClassVar[SourceKind] = SourceKind.pagerduty
    auth_headers: ClassVar[tuple[tuple[str, str], ...]] = (
        ("X-PagerDuty-Signature", "v1=<hex HMAC-SHA256 of the body> (comma-separated "
                                  "during a rotation)"),)
    path: ClassVar[str] = "/v1/events/pagerduty/{source}"
    payload_model: ClassVar[type[BaseModel]] = PagerDutyPayload

    def verify(self, source: Source, headers: Mapping[str, str], body: bytes, *,
               now: float, window_s: int) -> str | None:
        """The signature, then the delivery id: the signed ``event.id`` of the body
        (``X-Webhook-Id`` names the same delivery but is not signed, so it is the fallback
        only for a body without one, which parse refuses anyway)."""
        verify_pagerduty(headers, body, source.secrets)
        try:
            event = json.loads(body).get("event") or {}
            event_id = event.get("id") if isinstance(event, dict) else None
        except (ValueError, AttributeError):
            event_id = None
        if isinstance(event_id, str) and 0 < len(event_id) <= MAX_DELIVERY_ID:
            return event_id
        fallback = header_value(headers, PAGERDUTY_WEBHOOK_ID)
        return fallback[:MAX_DELIVERY_ID] if fallback else None

    def parse(self, source: Source, body: bytes, *, received_at: datetime) -> Sequence[Signal]:
        event = parse_json(PagerDutyPayload, body).event
        status = SIGNALLED.get(event.event_type)
        if status is None or event.resource_type != "incident":
            return []
        incident = validate(PagerDutyIncident, event.data, at=("event", "data"))
        labels = {"service": incident.service.summary, "service_id": incident.service.id,
                  "urgency": incident.urgency,
                  "priority": incident.priority.summary if incident.priority else "",
                  "event_type": event.event_type}
        return [Signal(
            source=source.name, kind=self.kind,
            dedup_key=f"{incident.id}:{event.event_type}", group_key=incident.id,
            status="firing" if status == "firing" else "resolved", labels=labels,
            started_at=incident.created_at or event.occurred_at,
            ended_at=event.occurred_at if status == "resolved" else None,
            summary=incident.title)]
