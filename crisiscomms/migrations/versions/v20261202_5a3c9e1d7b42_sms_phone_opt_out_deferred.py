"""sms: recipient phone and STOP, deferred deliveries

Revision ID: 5a3c9e1d7b42
Revises: b7e4c2d91f03
Create Date: 2026-12-01 23:40:00

The SMS channel (issue 15): ``recipient.phone`` (E.164, indexed: a STOP reply finds its
recipients by number) and ``recipient.sms_opted_out_at`` (the STOP); ``delivery.not_before``
and the ledger state ``deferred`` (an SMS waiting out the recipient's quiet hours). All
nullable and added only; PostgreSQL's ``deliverystate`` enum gains ``deferred``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5a3c9e1d7b42"
down_revision: str | Sequence[str] | None = "b7e4c2d91f03"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = ("planned", "sending", "sent", "failed", "unconfirmed")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TYPE deliverystate ADD VALUE IF NOT EXISTS 'deferred' AFTER 'failed'")
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("sms_opted_out_at", sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index(batch_op.f("ix_recipient_phone"), ["phone"], unique=False)
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # a deferred row goes back to planned: the older code sends it at once
    op.execute("UPDATE delivery SET state = 'planned' WHERE state = 'deferred'")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("not_before")
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recipient_phone"))
        batch_op.drop_column("sms_opted_out_at")
        batch_op.drop_column("phone")
    if op.get_bind().dialect.name == "postgresql":
        values = ", ".join(f"'{v}'" for v in OLD_STATES)
        op.execute("ALTER TYPE deliverystate RENAME TO deliverystate_old")
        op.execute(f"CREATE TYPE deliverystate AS ENUM ({values})")
        op.execute("ALTER TABLE delivery ALTER COLUMN state TYPE deliverystate "
                   "USING state::text::deliverystate")
        op.execute("DROP TYPE deliverystate_old")
