"""recipient: unique indexes instead of unique constraints on email and unsubscribe_token

Revision ID: d14f3a6e9c20
Revises: 5a3c9e1d7b42
Create Date: 2026-12-02 03:20:00

The same uniqueness, held by named unique indexes (``ix_recipient_email``,
``ix_recipient_unsubscribe_token``) rather than table constraints. SQLite cannot drop the index
behind a table's ``UNIQUE`` constraint; it can drop a named index. A large recipient import on
SQLite drops these inside its transaction and builds them again, sorted, before it commits
(``audience/import_indexes.py``): a million random tokens put into a B-tree one by one cost
several times more than building it once. ``INSERT ... ON CONFLICT (email)`` works with either.
On SQLite the table is copied (batch mode); on PostgreSQL the constraints are dropped and the
indexes built.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d14f3a6e9c20"
down_revision: str | Sequence[str] | None = "5a3c9e1d7b42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("email", "unsubscribe_token")
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
"""Names for SQLite's unnamed ``UNIQUE`` constraints, so batch mode can drop them."""


def _constraint(column: str) -> str:
    """The name of the unique constraint on ``column``: PostgreSQL's for an unnamed one, the one
    an adopted pre-Alembic database was given (``core/database.py`` ``_adopt``), or on SQLite
    the naming convention's for an unnamed one."""
    postgres = op.get_bind().dialect.name == "postgresql"
    default = f"recipient_{column}_key" if postgres else f"uq_recipient_{column}"
    if op.get_context().as_sql:
        return default
    for found in sa.inspect(op.get_bind()).get_unique_constraints("recipient"):
        if found["column_names"] == [column]:
            return found["name"] or default
    return default


def upgrade() -> None:
    with op.batch_alter_table("recipient", naming_convention=SQLITE_NAMES) as batch_op:
        for column in COLUMNS:
            batch_op.drop_constraint(_constraint(column), type_="unique")
            batch_op.create_index(f"ix_recipient_{column}", [column], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("recipient", naming_convention=SQLITE_NAMES) as batch_op:
        for column in COLUMNS:
            batch_op.drop_index(f"ix_recipient_{column}")
            batch_op.create_unique_constraint(_constraint(column), [column])
