"""recipient: partial indexes on phone and confirm_token; email and unsubscribe_token bytewise

Revision ID: b6ef20440830
Revises: d14f3a6e9c20
Create Date: 2026-12-03 09:00:00

Less index work for a bulk recipient import (``audience/models.py``), the same rules:

* ``confirm_token``: the table ``UNIQUE`` constraint (an entry for every row, though nearly every
  row holds NULL) becomes the partial unique index ``ix_recipient_confirm_token ... WHERE
  confirm_token IS NOT NULL``. Non-NULL tokens stay unique; NULLs never clashed. The
  confirmation lookup (``confirm_token = :x``) implies the predicate, so both backends use it.
* ``ix_recipient_phone`` (same name) becomes partial: ``WHERE phone IS NOT NULL``.
* PostgreSQL only: ``email`` and ``unsubscribe_token`` get ``COLLATE "C"``. Both are compared for
  equality only, and equality is bytewise under any deterministic collation, so uniqueness and
  lookups are unchanged; their unique indexes are built again (by ``ALTER COLUMN ... TYPE``)
  and then cost 2-3x less to maintain without the locale's comparison. SQLite compares bytes
  already: nothing changes there.

On SQLite the constraint is dropped by copying the table (batch mode: rows, ids, the other
indexes and the foreign keys that point at ``recipient`` are kept; ``core/database.py`` runs
it with foreign keys off and checks them before committing). The indexes are created outside
the copy, with plain ``CREATE INDEX``. The constraint's name is looked up as in
``d14f3a6e9c20`` (PostgreSQL's ``recipient_confirm_token_key``, an adopted database's, or the
one SQLite's batch copy gave it); the downgrade gives it the name a database made from empty
had (an adopted database's own name is not kept).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b6ef20440830"
down_revision: str | Sequence[str] | None = "d14f3a6e9c20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
"""Names for SQLite's unnamed ``UNIQUE`` constraints, so batch mode can drop them."""
CONFIRM_INDEX = "ix_recipient_confirm_token"
PHONE_INDEX = "ix_recipient_phone"
BYTEWISE = {"email": 254, "unsubscribe_token": 64}
"""PostgreSQL: the columns that get ``COLLATE "C"``, with their lengths."""
TOKEN_SET = sa.text("confirm_token IS NOT NULL")
PHONE_SET = sa.text("phone IS NOT NULL")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _confirm_constraint() -> str:
    """The unique constraint on ``confirm_token``: found by its column, else the name a
    database made from empty has (PostgreSQL's default, SQLite's naming convention)."""
    default = "recipient_confirm_token_key" if _postgres() else "uq_recipient_confirm_token"
    if op.get_context().as_sql:
        return default
    for found in sa.inspect(op.get_bind()).get_unique_constraints("recipient"):
        if found["column_names"] == ["confirm_token"]:
            return found["name"] or default
    return default


def upgrade() -> None:
    with op.batch_alter_table("recipient", naming_convention=SQLITE_NAMES) as batch_op:
        batch_op.drop_constraint(_confirm_constraint(), type_="unique")
    op.create_index(CONFIRM_INDEX, "recipient", ["confirm_token"], unique=True,
                    sqlite_where=TOKEN_SET, postgresql_where=TOKEN_SET)
    op.drop_index(PHONE_INDEX, table_name="recipient")
    op.create_index(PHONE_INDEX, "recipient", ["phone"], unique=False,
                    sqlite_where=PHONE_SET, postgresql_where=PHONE_SET)
    if _postgres():
        for column, length in BYTEWISE.items():
            op.alter_column("recipient", column, existing_type=sa.String(length=length),
                            type_=sa.String(length=length, collation="C"))


def downgrade() -> None:
    if _postgres():
        for column, length in BYTEWISE.items():  # no COLLATE: the database's default again
            op.alter_column("recipient", column,
                            existing_type=sa.String(length=length, collation="C"),
                            type_=sa.String(length=length))
    op.drop_index(PHONE_INDEX, table_name="recipient")
    op.create_index(PHONE_INDEX, "recipient", ["phone"], unique=False)
    op.drop_index(CONFIRM_INDEX, table_name="recipient")
    with op.batch_alter_table("recipient", naming_convention=SQLITE_NAMES) as batch_op:
        batch_op.create_unique_constraint(_confirm_constraint(), ["confirm_token"])
