"""SQLModel tables: incidents, fact sheets, rendered messages, approvals, the delivery ledger.

The ledger (``Delivery``) is batch-grain: one row per (message, channel, batch of recipients)
with a deterministic idempotency key. A SendGrid request carries a whole batch and is accepted
or refused whole, so exactly-once holds per batch at a thousandth of the per-recipient row cost.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class IncidentStatus(StrEnum):
    investigating = "investigating"
    identified = "identified"
    monitoring = "monitoring"
    resolved = "resolved"
    postmortem = "postmortem"


class DeliveryState(StrEnum):
    planned = "planned"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    unconfirmed = "unconfirmed"
    """Left ``sending`` by a crash or a lost answer, and the provider cannot say whether it has
    the batch: never resent automatically (``crisiscomms retry --unconfirmed`` after checking)."""


class IncidentBase(SQLModel):
    ref: str = Field(index=True, unique=True, max_length=64)
    playbook: str = Field(max_length=64)
    title: str
    severity: str = Field(max_length=16)
    status: IncidentStatus = IncidentStatus.investigating
    drill: bool = False


class Incident(IncidentBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None


class IncidentPublic(IncidentBase):
    id: int
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


class FactSheetVersion(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("incident_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    version: int
    facts_json: str = Field(sa_column=Column(Text, nullable=False))
    facts_hash: str = Field(max_length=64, index=True)
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    """One rendered message: a stage of the playbook for one channel and locale."""

    __table_args__ = (
        UniqueConstraint("incident_id", "stage", "facts_version", "channel", "locale"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    stage: str = Field(max_length=64)
    facts_version: int
    channel: str = Field(max_length=32)
    locale: str = Field(max_length=16)
    parts_json: str = Field(sa_column=Column(Text, nullable=False))
    content_hash: str = Field(max_length=64)
    template_hashes_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Approval(SQLModel, table=True):
    """An approval of one stage's rendered bundle; ``bundle_hash`` covers every message in it."""

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    stage: str = Field(max_length=64)
    facts_version: int
    bundle_hash: str = Field(max_length=64, index=True)
    approver: str
    kind: str = Field(max_length=16)  # human | auto_send | drill
    created_at: datetime = Field(default_factory=utcnow)


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
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class RecipientBase(SQLModel):
    email: str = Field(max_length=254, unique=True)
    name: str | None = Field(default=None, max_length=200)
    locale: str = Field(default="en", max_length=16)
    time_zone: str = Field(default="UTC", max_length=64)
    plan: str | None = Field(default=None, max_length=64)
    product: str | None = Field(default=None, max_length=200)
    """The product (or component) this recipient has, for personal wording."""
    order_ref: str | None = Field(default=None, max_length=64)
    lists: str | None = Field(default=None, max_length=200)
    """Comma-separated lists the recipient is on (``press``); none: the customer list."""
    consent: bool = True


def new_token() -> str:
    """An unguessable URL-safe token (unsubscribe and confirmation links)."""
    return secrets.token_urlsafe(24)


class Recipient(RecipientBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    # Status page subscriptions (crisiscomms.statuspage.subscriptions). Nullable, added only.
    components: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Comma-separated status page components followed; empty or NULL: every component."""
    confirmed_at: datetime | None = None
    """When the double opt-in was confirmed (NULL for imported recipients and pending ones)."""
    unsubscribe_token: str | None = Field(
        default_factory=new_token, max_length=64, unique=True,
        sa_column_kwargs={"default": new_token})  # the column default covers bulk inserts
    confirm_token: str | None = Field(default=None, max_length=64, unique=True)
    confirm_sent_at: datetime | None = None


class Component(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    status: str = Field(default="operational", max_length=32)
    position: int = 0
    description: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class Reaction(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    source: str = Field(max_length=32)
    author: str | None = None
    text: str = Field(sa_column=Column(Text, nullable=False))
    language: str | None = Field(default=None, max_length=16)
    sentiment: float | None = None
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id")
    message_id: int | None = Field(default=None, foreign_key="message.id")
    created_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Append-only: who did what, when."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str
    action: str = Field(max_length=64)
    incident_id: int | None = Field(default=None, index=True)
    detail_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
