"""Tables of an incident: the incident, its fact sheet versions, rendered messages, approvals."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from crisiscomms.core.clock import utcnow


class IncidentStatus(StrEnum):
    investigating = "investigating"
    identified = "identified"
    monitoring = "monitoring"
    resolved = "resolved"
    postmortem = "postmortem"


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


class FlowWait(SQLModel, table=True):
    """A flow run paused until a stage's bundle is approved (``flows/handle_event.py``):
    ``crisiscomms approve`` and the dashboard resume ``flow_run_id`` with the bundle hash once
    the approval is complete; ``ended_at`` is set when it resumed (or gave up)."""

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    stage: str = Field(max_length=64)
    bundle_hash: str = Field(max_length=64)
    flow_run_id: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    reminded_at: datetime | None = None
    reminders: int = 0
    ended_at: datetime | None = None
    ended_how: str | None = Field(default=None, max_length=32)  # resumed | published | ...
