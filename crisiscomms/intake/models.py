"""Tables of events coming in: the outbox of accepted signals, alert-storm groups, replay memory."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from crisiscomms.core.clock import utcnow


class IntakeEvent(SQLModel, table=True):
    """One accepted signal and what it did (``contract.Outcome``). Rows with outcome ``start``
    or ``propose`` are the outbox: ``flow_run_id`` is set once the dispatcher started the flow
    (``dispatched_at``); the flow reads ``playbook``, ``stage``, ``facts_json`` and
    ``proposal`` from here and records ``finished_at`` and ``error``."""

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)
    delivery_id: str | None = Field(default=None, max_length=128)
    """The request's id (``webhook-id``, PagerDuty's event id...), when the scheme has one."""
    dedup_key: str = Field(max_length=256, index=True)
    group_key: str = Field(max_length=256)
    status: str = Field(max_length=16)  # firing | resolved
    summary: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    outcome: str = Field(max_length=16, index=True)
    playbook: str | None = Field(default=None, max_length=64)
    stage: str | None = Field(default=None, max_length=64)
    incident_ref: str | None = Field(default=None, max_length=64, index=True)
    facts_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    proposal: bool = False
    received_at: datetime = Field(default_factory=utcnow, index=True)
    flow_run_id: str | None = Field(default=None, max_length=64)
    dispatched_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None


class IntakeGroup(SQLModel, table=True):
    """An alert group's one incident: every firing signal of ``group_key`` for ``playbook``
    joins ``incident_ref`` until the group resolves (``resolved_at``)."""

    __table_args__ = (
        UniqueConstraint("playbook", "group_key", "incident_ref"),
        # one open group per (playbook, group key): two API processes seeing a group's first
        # alerts at the same moment open one incident (the second insert conflicts)
        Index("ux_intakegroup_open", "playbook", "group_key", unique=True,
              sqlite_where=text("resolved_at IS NULL"),
              postgresql_where=text("resolved_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    playbook: str = Field(max_length=64)
    group_key: str = Field(max_length=256, index=True)
    incident_ref: str = Field(max_length=64, index=True)
    opened_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
    components_json: str = Field(default="[]", sa_column=Column(Text, nullable=False,
                                                                   default="[]"))


class IntakeGroupAlert(SQLModel, table=True):
    """One alert of a group and whether it still fires: the group resolves (its resolution
    stage is proposed) once none of its alerts fires. ``alert_key`` is ``Signal.alert``
    (Alertmanager: fingerprint + startsAt, the same in its firing and resolved notices)."""

    __table_args__ = (UniqueConstraint("group_id", "alert_key"),)

    id: int | None = Field(default=None, primary_key=True)
    group_id: int = Field(foreign_key="intakegroup.id")
    alert_key: str = Field(max_length=256)
    firing: bool = True
    updated_at: datetime = Field(default_factory=utcnow)


class SeenDelivery(SQLModel, table=True):
    """Replay memory: a signed request's id, per source, kept past the replay window."""

    __table_args__ = (UniqueConstraint("source", "delivery_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    delivery_id: str = Field(max_length=128)
    seen_at: datetime = Field(default_factory=utcnow, index=True)
