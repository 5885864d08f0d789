"""dashboard: delivery event rollup

Revision ID: eeb3a9b08eac
Revises: cf9a369e25a2
Create Date: 2026-12-01 03:31:47

The dashboard (issue 12): ``deliveryeventrollup`` counts provider events per (incident,
channel, event, minute), so the executive page"s reach over time reads a few thousand rows
instead of the per-recipient ``deliveryevent`` table. Backfilled here from the events already
stored (one INSERT … SELECT … GROUP BY); from then on ``record_events`` maintains it. And
``ix_reaction_incident_trend`` (incident, received at, sentiment, needs-a-human): the page's
reaction trend reads the index alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "eeb3a9b08eac"
down_revision: str | Sequence[str] | None = "cf9a369e25a2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("deliveryeventrollup",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("incident_id", sa.Integer(), nullable=False),
    sa.Column("channel", sa.String(length=32), nullable=False),
    sa.Column("event", sa.String(length=32), nullable=False),
    sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(["incident_id"], ["incident.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("incident_id", "channel", "event", "minute",
                        name="uq_delivery_event_rollup")
    )
    # the executive page's reaction trend reads the index alone
    op.create_index("ix_reaction_incident_trend", "reaction",
                    ["incident_id", "received_at", "sentiment", "needs_human"], unique=False)
    minute = ("strftime('%Y-%m-%d %H:%M:00.000000', occurred_at)"
              if op.get_bind().dialect.name == "sqlite" else "date_trunc('minute', occurred_at)")
    op.execute(
        "INSERT INTO deliveryeventrollup (incident_id, channel, event, minute, count) "
        f"SELECT incident_id, channel, event, {minute}, count(*) FROM deliveryevent "
        f"WHERE incident_id IS NOT NULL GROUP BY incident_id, channel, event, {minute}")


def downgrade() -> None:
    op.drop_index("ix_reaction_incident_trend", table_name="reaction")
    op.drop_table("deliveryeventrollup")
