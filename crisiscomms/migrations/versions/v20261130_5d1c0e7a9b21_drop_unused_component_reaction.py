"""drop the unused component and reaction tables

Revision ID: 5d1c0e7a9b21
Revises: 3926654a7a0a
Create Date: 2026-11-30 22:30:00

Nothing ever wrote to either table: the status page keeps its components in its own state file
(``crisiscomms/statuspage``), and reactions arrive with the listening work, which defines the
table it needs (source ids, links to the message answered). Downgrade recreates both, empty,
from the baseline's frozen schema.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from alembic.operations import ops

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
    from crisiscomms.core.database import baseline_schema

    baseline = baseline_schema()
    for name in ("component", "reaction"):
        op.invoke(ops.CreateTableOp.from_table(baseline.tables[name]))
        for index in sorted(baseline.tables[name].indexes, key=lambda i: str(i.name)):
            op.invoke(ops.CreateIndexOp.from_index(index))
