"""The Channel protocol and the value objects every channel speaks.

A channel sends one ``OutboundBatch`` (one ledger row: a rendered message and up to
``limits.batch_size`` recipients) and answers with one ``DeliveryResult``. Adapters receive their
configuration in the constructor and never read the environment; ``from_settings`` is the one
place that turns Settings into a constructor call.

Each channel class also declares, as class attributes, what the rest of the engine needs to know
about it (publication order, lane, audience, limits, whether playbooks use it by default). The
domain never imports the channels: it receives the registry (``crisiscomms.channels.registry``,
a ``ChannelClasses`` mapping) as a parameter and reads these attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Protocol, Self, runtime_checkable

from crisiscomms.incident.facts import FactSheet

if TYPE_CHECKING:
    from crisiscomms.core.settings import Settings

CUSTOMER_LIST = "customers"
"""The customer list: recipients on no list (``Recipient.lists`` empty) or on ``customers``."""


class Lane(StrEnum):
    """How the publishing flow schedules a channel's ledger rows."""

    first = "first"
    """Published alone and awaited before any other lane starts (the status page: every other
    message links to it)."""
    parallel = "parallel"
    """Its own lane (one task-runner slot), started once the first lane is done, for the
    stages whose first-lane rows were all sent (``delivery/first_lane.py``)."""
    fan_out = "fan_out"
    """Chunks of ``batches_per_task`` rows over the ``max_workers`` slots, or as flow runs of
    the batches deployment in scale-out mode (personal email to a large audience)."""


@dataclass(frozen=True)
class ChannelLimits:
    """What the provider accepts. ``None`` means no limit of that kind."""

    batch_size: int = 1
    max_weighted_length: int | None = None
    max_subject_chars: int | None = None
    max_body_bytes: int | None = None
    max_substitution_bytes: int | None = None
    rate_per_s: float | None = None


@dataclass(frozen=True)
class RenderedMessage:
    """One stage rendered for one channel and locale; ``content_hash`` is what gets approved."""

    playbook: str
    stage: str
    channel: str
    locale: str
    parts: Mapping[str, str]
    content_hash: str


@dataclass(frozen=True)
class OutboundRecipient:
    id: int
    address: str
    substitutions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundBatch:
    """Everything a channel needs to publish one ledger row."""

    key: str
    batch_no: int
    facts: FactSheet
    incident_status: str
    message: RenderedMessage
    recipients: Sequence[OutboundRecipient] = ()
    reply_to: str | None = None


class Outcome(StrEnum):
    sent = "sent"
    retryable = "retryable"
    permanent = "permanent"
    unknown = "unknown"
    """The request may or may not have been accepted and the provider cannot tell us: never
    resent automatically; the ledger marks the row ``unconfirmed`` for a human."""


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    provider_id: str | None = None
    reason: str | None = None
    retry_after_s: float | None = None
    ambiguous: bool = False
    """Retryable, but the request may have reached the provider (timeout, reset, garbage
    answer): before resending, the sender asks the provider (``reconcile``) whether it has it."""

    @classmethod
    def sent(cls, provider_id: str | None = None) -> DeliveryResult:
        return cls(Outcome.sent, provider_id=provider_id)

    @classmethod
    def retry(cls, reason: str, retry_after_s: float | None = None) -> DeliveryResult:
        return cls(Outcome.retryable, reason=reason, retry_after_s=retry_after_s)

    @classmethod
    def lost(cls, reason: str) -> DeliveryResult:
        """Retryable, but the provider may have accepted the request (no usable answer)."""
        return cls(Outcome.retryable, reason=reason, ambiguous=True)

    @classmethod
    def unknown(cls, reason: str) -> DeliveryResult:
        return cls(Outcome.unknown, reason=reason)

    @classmethod
    def permanent(cls, reason: str) -> DeliveryResult:
        return cls(Outcome.permanent, reason=reason)


@runtime_checkable
class Channel(Protocol):
    name: ClassVar[str]
    """The channel's name in playbooks, template file names and the ledger."""
    order: ClassVar[int]
    """Publication order, ascending and unique (the registry lists channels in this order)."""
    lane: ClassVar[Lane]
    """How the flow schedules it (see :class:`Lane`)."""
    recipients: ClassVar[str | None]
    """Who a message is addressed to: None for nobody (a broadcast: one message per language),
    :data:`CUSTOMER_LIST`, or the name of a recipient list (``Recipient.lists``), e.g. press."""
    personal: ClassVar[bool]
    """True when each recipient gets their own copy (personal fields and an unsubscribe link
    allowed); only for a channel with ``recipients``."""
    default_enabled: ClassVar[bool]
    """In a playbook stage that names no channels."""
    threaded: ClassVar[bool]
    """Later messages of an incident answer its first one in the same language (one thread
    per language)."""
    rate_setting: ClassVar[str | None]
    """The ``Settings`` field holding this channel's requests per second (overrides
    ``limits.rate_per_s``; the deployment's shared rate limit), or None."""
    parts: ClassVar[tuple[str, ...]]
    """The template parts a message of this channel has (email: subject, html, text)."""
    limits: ClassVar[ChannelLimits]

    @classmethod
    def from_settings(cls, settings: Settings) -> Self | None:
        """The channel as configured, or None when Settings lack what it needs (credentials)."""
        ...

    def validate(self, message: RenderedMessage) -> list[str]:
        """Limit problems of a rendered message, without I/O. Empty when it can be sent."""
        ...

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        """Publish one batch; never raises for provider failures, answers a DeliveryResult."""
        ...

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """Did the provider accept ``batch`` (its idempotency key) already? True, False, or
        None when the provider cannot tell (then nothing is resent; a human decides).
        Raises ``OSError``-like errors when the provider cannot be asked right now."""
        ...


ChannelClasses = Mapping[str, type[Channel]]
"""The registry as the domain receives it: channel classes by name, in publication order."""
