"""Who did what: the append-only audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from crisiscomms.core.clock import utcnow


class AuditEvent(SQLModel, table=True):
    """Append-only: who did what, when."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str
    action: str = Field(max_length=64)
    incident_id: int | None = Field(default=None, index=True)
    detail_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
