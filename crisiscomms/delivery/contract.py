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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
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
    """Chunks of ``batches_per_task`` rows (``single_rows_per_task`` for a channel whose row is
    one recipient: SMS) over the ``max_workers`` slots, or as flow runs of
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
    max_graphemes: int | None = None
    """Longest ``text`` (and each thread part) in grapheme clusters (Bluesky 300, Mastodon
    500; ``render/text_length.py``)."""
    url_length: int | None = None
    """With ``max_graphemes``: what every link counts (Mastodon: 23); None: as written."""
    max_alt_chars: int | None = None
    """A channel that attaches an image: the optional parts ``image`` (its http(s) URL) and
    ``alt`` (its description for screen readers), ``alt`` at most this many graphemes
    (Mastodon 1,500)."""
    max_paragraph_chars: int | None = None
    """Longest paragraph of ``text`` (blank-line separated), in characters: one Block Kit
    section of Slack (3,000) or one Adaptive Card TextBlock."""
    max_segments: int | None = None
    """SMS: the most segments (GSM-7 or UCS-2, ``render/sms_segments.py``) a text may cost; a
    playbook may lower it for its own messages (``limits:`` in the playbook)."""


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
    time_zone: str = "UTC"
    """The recipient's IANA time zone (quiet hours of an SMS are theirs)."""


def substitutions_size(substitutions: Mapping[str, str]) -> int:
    """Bytes of one recipient's substitutions as providers count them against
    ``ChannelLimits.max_substitution_bytes``: every tag and value, UTF-8 encoded."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in substitutions.items())


def substitution_problems(limits: ChannelLimits, recipient: OutboundRecipient) -> list[str]:
    """Why ``recipient`` cannot be in a batch under ``limits`` (its substitutions are over
    ``max_substitution_bytes``); empty when it can."""
    limit = limits.max_substitution_bytes
    if limit is None:
        return []
    subs = recipient.substitutions
    # hot path (1,000 recipients per request): UTF-8 takes at most 4 bytes per character, so
    # a small personalization needs no encoding to be known within the limit
    if 4 * (sum(map(len, subs)) + sum(map(len, subs.values()))) <= limit:
        return []
    size = substitutions_size(subs)
    if size > limit:
        return [f"substitutions are {size:,} bytes, over the limit of {limit:,}"]
    return []


RECONCILED = "reconciled"
"""The ``provider_id`` of a row the provider confirmed by its idempotency key without telling
its message id."""


SaveProgress = Callable[[Sequence[str]], None]
"""Persists the provider ids of the parts published so far (the ledger row's
``provider_id``), called after each part succeeds."""


@dataclass
class PartProgress:
    """The parts of a multi-part message (an X thread: ``text``, ``text_2``...) already
    published, as the provider's ids in order. The sender fills ``ids`` from the ledger row (a
    thread cut off by a crash or a failure continues where it stopped, never reposting a part
    it has an id for) and gives ``save``; the channel calls :meth:`add` as each part succeeds,
    and reconciliation adds the id of a part found at the provider."""

    ids: list[str] = field(default_factory=list)
    save: SaveProgress | None = None

    @classmethod
    def parse(cls, provider_id: str | None, save: SaveProgress | None = None) -> PartProgress:
        """From a ledger row's ``provider_id`` (comma-separated part ids; ``reconciled`` or
        nothing: no part known by id)."""
        ids = [i for i in (provider_id or "").split(",") if i and i != RECONCILED]
        return cls(ids, save)

    def add(self, provider_id: str) -> None:
        self.ids.append(provider_id)
        if self.save is not None:
            self.save(tuple(self.ids))

    @property
    def joined(self) -> str | None:
        """The ids as the ledger stores them (None when there are none)."""
        return ",".join(self.ids) or None


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
    progress: PartProgress = field(default_factory=PartProgress)
    """Parts of a multi-part message already published (their ids), shared with the sender
    so each part's id reaches the ledger as soon as the provider gives it."""


class Outcome(StrEnum):
    sent = "sent"
    retryable = "retryable"
    permanent = "permanent"
    deferred = "deferred"
    """Not sent yet on purpose (the recipient's quiet hours): the row waits, ``deferred``,
    until ``DeliveryResult.not_before`` and is sent then; nothing was requested."""
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
    not_before: datetime | None = None
    """A deferred row: when it may be sent (UTC)."""

    @classmethod
    def defer(cls, reason: str, not_before: datetime) -> DeliveryResult:
        return cls(Outcome.deferred, reason=reason, not_before=not_before)

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
    address: ClassVar[str]
    """The recipient column a channel with ``recipients`` sends to: ``email``, or ``phone``
    (SMS: recipients with a number that has not replied STOP)."""
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

    def recipient_problems(self, recipient: OutboundRecipient) -> list[str]:
        """Why the provider would refuse a request holding ``recipient`` (e.g. SendGrid's
        10,000 bytes of substitutions per personalization), without I/O; empty when it can be
        sent. The sender leaves such a recipient out of its batch and records it on its own,
        failed with this reason, so one bad value never sinks the other recipients."""
        ...

    def send(self, batch: OutboundBatch) -> DeliveryResult:
        """Publish one batch; never raises for provider failures, answers a DeliveryResult."""
        ...

    def reconcile(self, batch: OutboundBatch) -> bool | None:
        """Did the provider accept ``batch`` (its idempotency key) already? True, False, or
        None when the provider cannot tell (then nothing is resent; a human decides).
        A multi-part message is accepted when every part is: the ids of parts found at the
        provider are added to ``batch.progress`` (so False may still have recorded some, and
        the resend continues after them). Raises ``OSError``-like errors when the provider
        cannot be asked right now."""
        ...


ChannelClasses = Mapping[str, type[Channel]]
"""The registry as the domain receives it: channel classes by name, in publication order."""
