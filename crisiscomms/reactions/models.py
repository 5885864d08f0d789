"""Tables of listening: reactions, our people's corrections, automatic replies, spikes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from crisiscomms.core.clock import utcnow
from crisiscomms.delivery import models as _delivery_tables  # noqa: F401  (foreign key targets)
from crisiscomms.incident import models as _incident_tables  # noqa: F401  (foreign key targets)


class ReactionSource(StrEnum):
    """Where a reaction came from (one receiver each)."""

    email_reply = "email_reply"
    """A reply to one of our emails (SendGrid Inbound Parse)."""
    x_mention = "x_mention"
    """A post mentioning our account."""
    x_reply = "x_reply"
    """A reply in the conversation of one of our posts."""
    ticket = "ticket"
    """A support ticket (Zendesk- or Freshdesk-shaped webhook)."""
    csat = "csat"
    """A satisfaction rating (1–5) from the resolution message's one-click link."""


class Sentiment(StrEnum):
    negative = "negative"
    neutral = "neutral"
    positive = "positive"


class Reaction(SQLModel, table=True):
    """One reaction, stored once per (source, source_id); text stored exactly as sent."""

    __table_args__ = (
        UniqueConstraint("source", "source_id", name="uq_reaction_source_id"),
        Index("ix_reaction_incident_received", "incident_id", "received_at"),
        # covers the executive page's trend (bucket × sentiment × needs-a-human per incident)
        Index("ix_reaction_incident_trend", "incident_id", "received_at", "sentiment",
              "needs_human"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: ReactionSource = Field(sa_type=String(32))  # a string column, not a DB enum
    source_id: str = Field(max_length=255)
    """The provider's id (tweet id, Message-ID, ticket id, ...): what makes a replay a no-op."""
    incident_id: int | None = Field(default=None, foreign_key="incident.id")
    message_id: int | None = Field(default=None, foreign_key="message.id", index=True)
    """The message this answers, where the thread tells (In-Reply-To, conversation id...)."""
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id")
    recipient_id: int | None = Field(default=None, index=True)
    channel: str | None = Field(default=None, max_length=32)
    """The channel of the message answered (or the source's own channel)."""
    locale: str | None = Field(default=None, max_length=16)
    """The locale of the message answered."""
    author: str = Field(max_length=320)
    """Address, handle or requester id, as the source gives it."""
    author_name: str | None = Field(default=None, max_length=200)
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    rating: int | None = None
    """CSAT rating 1–5 (source ``csat`` only)."""
    language: str | None = Field(default=None, max_length=16)
    sentiment: Sentiment | None = Field(default=None, sa_type=String(16))
    score: float | None = None
    """Sentiment score in [-1, 1] (negative to positive)."""
    needs_human: bool = Field(default=False, index=True)
    reasons_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    """Why triage flagged it (``["safety: burn", "legal: lawyer"]``), JSON list."""
    received_at: datetime = Field(default_factory=utcnow)
    """When the reaction happened at its source."""
    created_at: datetime = Field(default_factory=utcnow)


class ReactionCorrection(SQLModel, table=True):
    """A person's correction of triage: a labelled example of our own (``reactions train``)."""

    id: int | None = Field(default=None, primary_key=True)
    reaction_id: int = Field(foreign_key="reaction.id", index=True)
    sentiment: Sentiment = Field(sa_type=String(16))
    needs_human: bool
    actor: str
    at: datetime = Field(default_factory=utcnow)


class ReactionReply(SQLModel, table=True):
    """A pre-approved automatic reply: at most one per author per incident (and per source)."""

    __table_args__ = (
        UniqueConstraint("incident_id", "source", "author", name="uq_reaction_reply_author"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id")
    source: ReactionSource = Field(sa_type=String(32))  # a string column, not a DB enum
    author: str = Field(max_length=320)
    reaction_id: int = Field(foreign_key="reaction.id", unique=True)
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id")
    """The ledger row that carries the reply (sent exactly once like every send)."""
    created_at: datetime = Field(default_factory=utcnow)


class Spike(SQLModel, table=True):
    """A window whose volume or negative share broke from the rolling baseline: alerted once."""

    __table_args__ = (
        UniqueConstraint("incident_id", "channel", "locale", "window_start",
                         name="uq_spike_window"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    channel: str = Field(max_length=32)
    locale: str = Field(max_length=16)
    window_start: datetime
    volume: int
    negative_share: float
    baseline_volume: float
    baseline_negative_share: float
    examples_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    alerted_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ListenCursor(SQLModel, table=True):
    """Where a polling source stopped (X mentions' ``since_id``, a conversation search's newest
    id): persisted so a restarted poller neither reads again nor misses what came meanwhile.

    One row per (source, key); ``value`` is the source's own cursor, opaque here."""

    __table_args__ = (UniqueConstraint("source", "key", name="uq_listen_cursor_source_key"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    """The polling source (``x``)."""
    key: str = Field(max_length=128)
    """What is polled (``mentions:<user id>``, ``conversation:<tweet id>``)."""
    value: str = Field(max_length=255)
    updated_at: datetime = Field(default_factory=utcnow)
