"""The Channel protocol and the value objects every channel speaks.

A channel sends one ``OutboundBatch`` (one ledger row: a rendered message and up to
``limits.batch_size`` recipients) and answers with one ``DeliveryResult``. Adapters receive their
configuration in the constructor and never read the environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol, runtime_checkable

from crisiscomms.incident.facts import FactSheet


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
    parts: ClassVar[tuple[str, ...]]
    """The template parts a message of this channel has (email: subject, html, text)."""
    personal: ClassVar[bool]
    """True when the channel addresses recipients one by one (personal fields allowed)."""
    limits: ClassVar[ChannelLimits]

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
