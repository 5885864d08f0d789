"""recipient emails lower-cased

Revision ID: 3926654a7a0a
Revises: baseline
Create Date: 2026-11-29 16:10:02

Data only. Every writer now stores the whole address lower-cased (status page subscriptions
always did; CSV import did not), so a duplicate check is an exact match that uses the unique
index on ``recipient.email``. This lower-cases the addresses stored before. Where the
lower-cased address already exists (``Bob@x.com`` beside ``bob@x.com``) the row is left as it
is: merging two recipients is a human decision (deliveries name recipient ids), and the import
check still finds the lower-case twin. Candidates are chosen in SQL (``email <> lower(email)``:
ASCII on SQLite, Unicode on PostgreSQL) and folded in Python, like the writers.

Downgrade changes nothing: the original case is not kept, and lower-case addresses are valid.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3926654a7a0a"
down_revision: str | Sequence[str] | None = "baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

recipient = sa.table("recipient", sa.column("id", sa.Integer()),
                     sa.column("email", sa.String(length=254)))


def upgrade() -> None:
    if op.get_context().as_sql:  # offline: the same rule in SQL, collisions left as they are
        op.execute("UPDATE recipient SET email = lower(email) WHERE email <> lower(email) "
                   "AND NOT EXISTS (SELECT 1 FROM recipient AS r2 "
                   "WHERE r2.email = lower(recipient.email))")
        return
    bind = op.get_bind()
    rows = bind.execute(sa.select(recipient.c.id, recipient.c.email)
                        .where(recipient.c.email != sa.func.lower(recipient.c.email))).all()
    kept = 0
    for rid, email in rows:
        folded = email.lower()
        if folded == email:
            continue
        twin = bind.execute(sa.select(recipient.c.id).where(recipient.c.email == folded)).first()
        if twin is not None:
            kept += 1
            continue
        bind.execute(recipient.update().where(recipient.c.id == rid).values(email=folded))
    if kept:
        log.warning("%d recipient address(es) left in mixed case: a lower-case twin exists", kept)


def downgrade() -> None:
    pass
