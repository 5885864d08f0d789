"""The seams of the intake package: what verification, adapters, rules, the outbox and the
dispatcher hand each other. Nothing here does work; each part implements its side.

Flow of one request (``api/intake.py`` drives it)::

    headers + raw body ──Adapter.verify──► delivery id (replay memory)   401 IntakeError
                        ──Adapter.parse───► [Signal, ...]                 400/422 naming the field
    Signal ──rules.route (playbook intake: section)──► StageRequest | None (nothing matches)
    StageRequest ──service.accept──► IntakeEvent rows (outcome: start / duplicate / grouped /
                                     propose / ignored), committed before the answer
    outbox ──Dispatcher.start──► a flow run of handle-event (``flows/handle_event.py``)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel


class SourceKind(StrEnum):
    """What kind of system sends; each has one adapter (``adapters/<kind>.py``)."""

    events = "events"
    """Our own event shape (``POST /v1/events``), Standard Webhooks signed."""
    alertmanager = "alertmanager"
    """Prometheus Alertmanager webhook (payload version 4), bearer token."""
    pagerduty = "pagerduty"
    """PagerDuty v3 webhook subscription, ``X-PagerDuty-Signature`` v1 HMAC-SHA256."""
    grafana = "grafana"
    """Grafana alerting webhook contact point: bearer token and/or its HMAC signature."""
    recall = "recall"
    """A recall feed in JSON (our documented shape), Standard Webhooks signed."""


class Outcome(StrEnum):
    """What accepting a signal did (``IntakeEvent.outcome``)."""

    start = "start"
    """A new incident (or a stage of ours naming one): a flow run is (to be) started."""
    propose = "propose"
    """A resolved alert group: the resolution stage is proposed for approval, never sent alone."""
    grouped = "grouped"
    """Part of an alert storm whose incident is already open: recorded, nothing started."""
    duplicate = "duplicate"
    """The same dedup key seen before: nothing started."""
    ignored = "ignored"
    """No playbook rule matches it (or a resolved alert of no open incident): recorded only."""


@dataclass(frozen=True)
class Source:
    """One sending system: its name (in the URL, the audit trail and the events), its kind and
    its keys (``secrets[0]`` the newest; older ones still valid until their expiry during a
    rotation). ``rate_per_s``: requests per second it may send (429 beyond)."""

    name: str
    kind: SourceKind
    secrets: tuple[str, ...]
    rate_per_s: float

    def __repr__(self) -> str:  # never a secret in a log line or a traceback
        return f"Source(name={self.name!r}, kind={self.kind.value!r}, keys={len(self.secrets)})"


@dataclass(frozen=True)
class Signal:
    """One thing a verified request says: an alert, a PagerDuty incident, a recall, an event of
    ours. Adapters make them; the playbook rules route them."""

    source: str
    kind: SourceKind
    dedup_key: str
    """Same key twice: the same thing, nothing new is started (Alertmanager: fingerprint +
    startsAt; PagerDuty: incident id + event type; ours: ``dedup_key``; recall: recall id)."""
    group_key: str
    """Signals with one group key belong to one incident (an alert storm: Alertmanager's
    ``groupKey``, Grafana's ``groupKey``, PagerDuty's incident id, ours: ``group_key`` or the
    dedup key)."""
    status: Literal["firing", "resolved"]
    labels: Mapping[str, str]
    """What the playbook rules match on: alert labels (plus ``alertname``), PagerDuty
    ``service``/``urgency``/``priority``, our ``type``, the recall's ``product``..."""
    started_at: datetime
    ended_at: datetime | None = None
    summary: str = ""
    """The sender's own words (an engineer's alert summary): shown to the PR lead, never
    published (the published words are the playbook's)."""
    playbook: str | None = None
    """Our shape names its playbook; the others get one from the rules."""
    stage: str | None = None
    incident_ref: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    """Facts the sender knows (ours and recalls); the rules add the playbook's own."""
    alert_key: str | None = None
    """One alert across its firing and resolved notices (a group resolves once each of its
    alerts has); None: :attr:`alert`'s default for the kind."""

    @property
    def alert(self) -> str:
        """The alert this signal is a notice of: ``alert_key``, else the dedup key where a
        sender's firing and resolved notices share it (Alertmanager, Grafana: fingerprint +
        startsAt), else the group key (a PagerDuty incident, a recall, an event of ours: one
        alert per group, its notices keyed apart by event type)."""
        if self.alert_key is not None:
            return self.alert_key
        if self.kind in (SourceKind.alertmanager, SourceKind.grafana):
            return self.dedup_key
        return self.group_key


@dataclass(frozen=True)
class StageRequest:
    """What the rules make of a signal: run this playbook stage with these facts."""

    playbook: str
    stage: str
    facts: Mapping[str, Any]
    """Complete enough for ``incident.service.trigger`` (the rule's pre-approved wording,
    components, severity, times, translations); ``incident_ref`` is filled by
    ``service.accept`` (a new one for a new group, the open incident's otherwise)."""
    proposal: bool = False
    """True: render and store the stage for approval, never auto-send it (a resolved alert)."""
    group_key: str | None = None
    """The incident this signal belongs to, when the rule groups by labels (``group_by``);
    None: the signal's own ``group_key``."""
    rule: str | None = None
    """The name of the playbook rule that matched (shown to the PR lead, kept on the event)."""


class Adapter(Protocol):
    """One kind of sender (``adapters/<kind>.py``; the registry lists them)."""

    kind: ClassVar[SourceKind]
    path: ClassVar[str]
    """The route, e.g. ``/v1/events`` or ``/v1/events/alertmanager/{source}``."""
    payload_model: ClassVar[type[BaseModel]]
    """The body's pydantic model: the OpenAPI schema and its example."""
    auth_headers: ClassVar[tuple[tuple[str, str], ...]]
    """The headers that carry its credentials, each with what it holds (the OpenAPI)."""

    def verify(self, source: Source, headers: Mapping[str, str], body: bytes, *,
               now: float, window_s: int) -> str | None:
        """Check the request is from ``source``: the delivery id to remember (replays are
        refused), or None when the scheme has none (bearer tokens). Raises
        :class:`~crisiscomms.core.errors.IntakeError` with status 401."""
        ...

    def parse(self, source: Source, body: bytes, *, received_at: datetime) -> Sequence[Signal]:
        """The signals of a verified body; IntakeError 400 (not JSON) or 422 (naming the
        field) for a malformed one."""
        ...


class Dispatcher(Protocol):
    """Starts the flow that runs one accepted event (``flows/dispatch.py``: a Prefect
    deployment run, or a thread of this process for the embedded default)."""

    def start(self, event_id: int, *, incident_ref: str, stage: str) -> str:
        """Start handle-event for ``IntakeEvent`` ``event_id``; returns the flow run id."""
        ...


@dataclass(frozen=True)
class Routed:
    """A signal and what the playbook rules made of it (None: no rule matches)."""

    signal: Signal
    request: StageRequest | None


@dataclass(frozen=True)
class IntakeRequest:
    """One verified HTTP request, ready to store: its source, its delivery id (replay memory;
    None for schemes without one) and its routed signals."""

    source: str
    delivery_id: str | None
    routed: Sequence[Routed]


@dataclass(frozen=True)
class Accepted:
    """One stored signal: its ``IntakeEvent`` id and what it did."""

    event_id: int
    outcome: Outcome
    incident_ref: str | None
    stage: str | None


@dataclass(frozen=True)
class AcceptResult:
    """What storing one request did: ``replayed`` (its delivery id was seen: nothing stored,
    the API answers 401), else one :class:`Accepted` per signal."""

    replayed: bool
    events: tuple[Accepted, ...] = ()
