"""The delivery ledger (outbox).

The ledger (``Delivery``) is batch-grain: one row per (message, channel, batch of recipients)
with a deterministic idempotency key. A SendGrid request carries a whole batch and is accepted
or refused whole, so exactly-once holds per batch at a thousandth of the per-recipient row cost.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from crisiscomms.core.clock import utcnow
from crisiscomms.incident import models as _incident_tables  # noqa: F401  (foreign key targets)


class DeliveryState(StrEnum):
    planned = "planned"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    deferred = "deferred"
    """Held back on purpose until ``not_before`` (an SMS in the recipient's quiet hours, for a
    stage that is not urgent); ``ledger.release_deferred`` makes it ``planned`` again then.
    Never dropped, never counted as failed."""
    unconfirmed = "unconfirmed"
    """Left ``sending`` by a crash or a lost answer, and the provider cannot say whether it has
    the batch: never resent automatically (``crisiscomms retry --unconfirmed`` after checking)."""


class Delivery(SQLModel, table=True):
    """The outbox: one row per (message, channel, batch). States planned→sending→sent|failed."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    channel: str = Field(max_length=32)
    locale: str = Field(max_length=16)
    batch_no: int
    recipient_ids: str = Field(default="", sa_column=Column(Text, nullable=False))
    recipient_count: int
    state: DeliveryState = Field(default=DeliveryState.planned, index=True)
    attempts: int = 0
    provider_id: str | None = None
    error: str | None = None
    not_before: datetime | None = None
    """A ``deferred`` row: the earliest moment (UTC) it may be sent."""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DeliveryEvent(SQLModel, table=True):
    """What a provider later says about one recipient of a batch (SendGrid Event Webhook:
    processed, delivered, open, click, bounce, dropped, deferred, spamreport, unsubscribe).

    Stored once per provider event id; reach per channel (delivered, opened, bounced...) is a
    GROUP BY over this table, and a ``processed``/``delivered`` event also settles a batch left
    ``sending`` (``ledger.confirm_by_key``)."""

    __table_args__ = (Index("ix_delivery_event_delivery_event", "delivery_id", "event"),)

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=128, unique=True)
    """The provider's event id (``sg_event_id``): a replayed event is a no-op."""
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id")
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    recipient_id: int | None = None
    channel: str = Field(max_length=32)
    event: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=500)
    occurred_at: datetime
    created_at: datetime = Field(default_factory=utcnow)


class DeliveryEventRollup(SQLModel, table=True):
    """Provider events counted per (incident, channel, event, minute): reach over time without
    reading the per-recipient ``DeliveryEvent`` table (millions of rows in a large incident).

    Maintained where events are stored (``reactions/sources/sendgrid_events.record_events``
    adds the events it newly inserted, in the same transaction: a replayed event is not
    inserted, so it is not counted twice); the migration that created it backfilled it from
    the events already stored. Events not linked to an incident are not rolled up (no page
    shows them). ``count`` counts events, not distinct recipients (two opens by one person
    are two)."""

    __table_args__ = (
        UniqueConstraint("incident_id", "channel", "event", "minute",
                         name="uq_delivery_event_rollup"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id")
    channel: str = Field(max_length=32)
    event: str = Field(max_length=32)
    minute: datetime
    """The events' ``occurred_at`` truncated to the minute (UTC)."""
    count: int = 0
