"""Recipients: customers, subscribers and the press list (one table, ``lists`` tells them apart)."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from crisiscomms.core.clock import utcnow


class RecipientBase(SQLModel):
    email: str = Field(max_length=254, unique=True, index=True)
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
    phone: str | None = Field(default=None, max_length=16, index=True)
    """Mobile number in E.164 (``+14155550100``), validated at import (``phonenumbers``); the
    SMS channel's address. NULL: no SMS."""


def new_token() -> str:
    """An unguessable URL-safe token (unsubscribe and confirmation links)."""
    return secrets.token_urlsafe(24)


class Recipient(RecipientBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    # Status page subscriptions (crisiscomms.audience.subscriptions). Nullable, added only.
    components: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Comma-separated status page components followed; empty or NULL: every component."""
    confirmed_at: datetime | None = None
    """When the double opt-in was confirmed (NULL for imported recipients and pending ones)."""
    unsubscribe_token: str | None = Field(
        default_factory=new_token, max_length=64, unique=True, index=True,
        sa_column_kwargs={"default": new_token})  # the column default covers bulk inserts
    confirm_token: str | None = Field(default=None, max_length=64, unique=True)
    confirm_sent_at: datetime | None = None
    # Listening (crisiscomms.reactions): why consent was withdrawn by a provider's word.
    suppression: str | None = Field(default=None, max_length=32)
    """``bounce``, ``dropped``, ``spamreport`` or ``unsubscribe`` when a provider event set
    ``consent`` to false; NULL otherwise."""
    sms_opted_out_at: datetime | None = None
    """When the number replied STOP (or a synonym) to our SMS sender: no more SMS until it
    replies START; email is unaffected (``api/sms.py``)."""
