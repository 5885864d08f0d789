"""Recipients: customers, subscribers and the press list (one table, ``lists`` tells them apart)."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Column, Index, String, Text, text
from sqlalchemy.types import TypeEngine
from sqlmodel import Field, SQLModel

from crisiscomms.core.clock import utcnow


def bytewise_string(length: int) -> TypeEngine[str]:
    """``VARCHAR(length)``, with ``COLLATE "C"`` on PostgreSQL: for columns only ever compared
    for equality (addresses stored lower-cased, random tokens). Equality and uniqueness are the
    same under any deterministic collation, but a B-tree built and kept without the locale's
    comparison costs 2-3x less to write (a bulk import); SQLite compares bytes already."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class RecipientBase(SQLModel):
    email: str = Field(max_length=254, unique=True, index=True, sa_type=bytewise_string(254))
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
    phone: str | None = Field(default=None, max_length=16)
    """Mobile number in E.164 (``+14155550100``), validated at import (``phonenumbers``); the
    SMS channel's address. NULL: no SMS."""


def new_token() -> str:
    """An unguessable URL-safe token (unsubscribe and confirmation links)."""
    return secrets.token_urlsafe(24)


NOT_NULL = {column: text(f"{column} IS NOT NULL") for column in ("phone", "confirm_token")}


class Recipient(RecipientBase, table=True):
    __table_args__ = (
        # Partial: most recipients have no number and no pending confirmation, and a NULL never
        # matches ``= :x`` (nor clashes), so only the rows that hold one are indexed: a bulk
        # import of addresses writes no entry into either (``phone = :x`` / ``confirm_token =
        # :x`` imply IS NOT NULL: both backends' planners use these indexes for such lookups).
        Index("ix_recipient_phone", "phone", sqlite_where=NOT_NULL["phone"],
              postgresql_where=NOT_NULL["phone"]),
        Index("ix_recipient_confirm_token", "confirm_token", unique=True,
              sqlite_where=NOT_NULL["confirm_token"],
              postgresql_where=NOT_NULL["confirm_token"]),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    # Status page subscriptions (crisiscomms.audience.subscriptions). Nullable, added only.
    components: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Comma-separated status page components followed; empty or NULL: every component."""
    confirmed_at: datetime | None = None
    """When the double opt-in was confirmed (NULL for imported recipients and pending ones)."""
    unsubscribe_token: str | None = Field(
        default_factory=new_token, max_length=64, unique=True, index=True,
        sa_type=bytewise_string(64),
        sa_column_kwargs={"default": new_token})  # the column default covers bulk inserts
    confirm_token: str | None = Field(default=None, max_length=64)
    """SHA-256 (hex) of a pending confirmation link's token; unique among the non-NULL ones
    (``ix_recipient_confirm_token``)."""
    confirm_sent_at: datetime | None = None
    # Listening (crisiscomms.reactions): why consent was withdrawn by a provider's word.
    suppression: str | None = Field(default=None, max_length=32)
    """``bounce``, ``dropped``, ``spamreport`` or ``unsubscribe`` when a provider event set
    ``consent`` to false; NULL otherwise."""
    sms_opted_out_at: datetime | None = None
    """When the number replied STOP (or a synonym) to our SMS sender: no more SMS until it
    replies START; email is unaffected (``api/sms.py``)."""
