"""drop the unused component and reaction tables

Revision ID: 5d1c0e7a9b21
Revises: 3926654a7a0a
Create Date: 2026-11-30 22:30:00

Nothing ever wrote to either table: the status page keeps its components in its own state file
(``crisiscomms/statuspage``), and reactions arrive with the listening work, which defines the
table it needs (source ids, links to the message answered). Downgrade recreates both, empty,
as the baseline made them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1c0e7a9b21"
down_revision: str | Sequence[str] | None = "3926654a7a0a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reaction") as batch:
        batch.drop_index("ix_reaction_incident_id")
    op.drop_table("reaction")
    op.drop_table("component")


def downgrade() -> None:
    op.create_table(
        "component",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "reaction",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incident.id"), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("author", sa.String(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("sentiment", sa.Float(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), sa.ForeignKey("delivery.id"), nullable=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("message.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_reaction_incident_id", "reaction", ["incident_id"])
