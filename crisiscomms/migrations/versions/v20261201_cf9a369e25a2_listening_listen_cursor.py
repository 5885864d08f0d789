"""listening: listen cursor

Revision ID: cf9a369e25a2
Revises: 183a819e85c2
Create Date: 2026-12-01 00:27:02

Listening (issue 11): ``listencursor`` holds where a polling source stopped (X mentions'
``since_id``, each conversation search's newest id), one row per (source, key), so a restarted
poller neither reads a post again nor misses what was posted while it was down.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cf9a369e25a2"
down_revision: str | Sequence[str] | None = "183a819e85c2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "listencursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "key", name="uq_listen_cursor_source_key"),
    )


def downgrade() -> None:
    op.drop_table("listencursor")
