"""Prometheus Alertmanager's webhook receiver (payload version 4), bearer token.

Alertmanager posts one notification per alert group: every alert of the group, firing and
resolved, each time the group changes or ``repeat_interval`` passes. Each alert is one signal:
its labels are the group's common labels under the alert's own, its dedup key is
``fingerprint:startsAt`` (the same alert firing again later is a new occurrence; the same
occurrence notified again is a duplicate), its group key Alertmanager's ``groupKey`` (an
alert storm is one incident).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, Field

from crisiscomms.intake.adapters.base import (
    Labels,
    Line,
    Payload,
    ended,
    examples,
    parse_json,
    summary_of,
)
from crisiscomms.intake.contract import Signal, Source, SourceKind
from crisiscomms.intake.signatures import verify_bearer

EXAMPLE: dict[str, Any] = {
    "version": "4",
    "groupKey": "{}/{severity=\"page\"}:{alertname=\"CheckoutErrorRate\"}",
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "crisiscomms",
    "groupLabels": {"alertname": "CheckoutErrorRate"},
    "commonLabels": {"alertname": "CheckoutErrorRate", "service": "checkout",
                     "severity": "page"},
    "commonAnnotations": {"summary": "Checkout 5xx ratio above 20%"},
    "externalURL": "https://alertmanager.example.com",
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "CheckoutErrorRate", "service": "checkout",
                   "severity": "page", "instance": "checkout-7d9f:8080"},
        "annotations": {"summary": "Checkout 5xx ratio is 38% on checkout-7d9f:8080"},
        "startsAt": "2026-12-01T06:58:10.123Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "https://prometheus.example.com/graph?g0.expr=job%3Acheckout",
        "fingerprint": "a1b2c3d4e5f60718",
    }],
}


class AlertmanagerAlert(Payload):
    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    startsAt: AwareDatetime
    endsAt: AwareDatetime | None = None
    generatorURL: Line = ""
    fingerprint: Line = Field(min_length=1, max_length=64)


class AlertmanagerPayload(Payload):
    """Alertmanager's webhook body (``version`` 4; another version is refused)."""

    model_config = examples(EXAMPLE)

    version: Literal["4"]
    groupKey: Line = Field(min_length=1, max_length=200)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: Line = ""
    groupLabels: Labels = Field(default_factory=dict)
    commonLabels: Labels = Field(default_factory=dict)
    commonAnnotations: Labels = Field(default_factory=dict)
    externalURL: Line = ""
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=1000)


def alert_signals(source: Source, kind: SourceKind, group_key: str,
                  common_labels: Mapping[str, str], common_annotations: Mapping[str, str],
                  alerts: Sequence[AlertmanagerAlert | Any]) -> list[Signal]:
    """One signal per alert (shared with Grafana, whose body is Alertmanager's plus a few)."""
    signals = []
    for alert in alerts:
        labels = {**common_labels, **alert.labels}
        annotations: Mapping[str, str] = {**common_annotations, **alert.annotations}
        starts = alert.startsAt
        signals.append(Signal(
            source=source.name, kind=kind,
            dedup_key=f"{alert.fingerprint}:{starts.isoformat()}"[:256],
            group_key=group_key, status=alert.status, labels=labels, started_at=starts,
            ended_at=ended(alert.endsAt) if alert.status == "resolved" else None,
            summary=summary_of(annotations.get("summary"), annotations.get("description"),
                               labels.get("alertname"))))
    return signals


class AlertmanagerAdapter:
    """``POST /v1/events/alertmanager/{source}``: Alertmanager's webhook, bearer token."""

    kind: ClassVar[SourceKind] = SourceKind.alertmanager
    auth_headers: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Authorization", "Bearer <the source's token> (http_config.authorization)"),)
    path: ClassVar[str] = "/v1/events/alertmanager/{source}"
    payload_model: ClassVar[type[BaseModel]] = AlertmanagerPayload

    def verify(self, source: Source, headers: Mapping[str, str], body: bytes, *,
               now: float, window_s: int) -> str | None:
        verify_bearer(headers, source.secrets)
        return None  # a bearer token has no delivery id: duplicates are caught by dedup keys

    def parse(self, source: Source, body: bytes, *, received_at: datetime) -> Sequence[Signal]:
        payload = parse_json(AlertmanagerPayload, body)
        return alert_signals(source, self.kind, payload.groupKey, payload.commonLabels,
                             payload.commonAnnotations, payload.alerts)

