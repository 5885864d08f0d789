"""confirm tokens hashed at rest

Revision ID: b7e4c2d91f03
Revises: a31dc4d559b8
Create Date: 2026-12-02 00:00:00

Data only. ``recipient.confirm_token`` now holds the SHA-256 (hex, 64 characters) of the
confirmation link's token, never the token (``audience/subscriptions.py``). Pending rows
written before kept the token itself (``secrets.token_urlsafe(24)``: 32 characters); this
replaces each with its hash, so the links already mailed keep working until they expire
(48 h after they were sent) and the database no longer holds a usable link.

Downgrade clears the hashes (the tokens cannot be recovered): those readers subscribe again
to get a new link.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e4c2d91f03"
down_revision: str | Sequence[str] | None = "a31dc4d559b8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HASHED = 64

recipient = sa.table("recipient", sa.column("id", sa.Integer()),
                     sa.column("confirm_token", sa.String(length=64)))


def upgrade() -> None:
    if op.get_context().as_sql:  # offline: no hashing in portable SQL; unusable links cleared
        op.execute(f"UPDATE recipient SET confirm_token = NULL WHERE confirm_token IS NOT NULL "
                   f"AND length(confirm_token) <> {HASHED}")
        return
    bind = op.get_bind()
    rows = bind.execute(sa.select(recipient.c.id, recipient.c.confirm_token).where(
        recipient.c.confirm_token.is_not(None),
        sa.func.length(recipient.c.confirm_token) != HASHED)).all()
    for rid, token in rows:
        bind.execute(recipient.update().where(recipient.c.id == rid).values(
            confirm_token=hashlib.sha256(token.encode("utf-8")).hexdigest()))


def downgrade() -> None:
    op.execute(f"UPDATE recipient SET confirm_token = NULL WHERE confirm_token IS NOT NULL "
               f"AND length(confirm_token) = {HASHED}")
