"""intake: one open group per key, the alerts of a group

Revision ID: a31dc4d559b8
Revises: 6680873c33e3
Create Date: 2026-12-01 07:04:02.782938

``ux_intakegroup_open``: a partial unique index, so two API processes that see a group's first
alerts at the same moment open one incident; ``intakegroupalert``: which alerts of a group
still fire, so the resolution is proposed once the last one resolves.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a31dc4d559b8'
down_revision: str | Sequence[str] | None = '6680873c33e3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text('resolved_at IS NULL')


def upgrade() -> None:
    op.create_table('intakegroupalert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('alert_key', sa.String(length=256), nullable=False),
    sa.Column('firing', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['intakegroup.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('group_id', 'alert_key')
    )
    with op.batch_alter_table('intakegroup', schema=None) as batch_op:
        batch_op.create_index('ux_intakegroup_open', ['playbook', 'group_key'], unique=True,
                              sqlite_where=OPEN, postgresql_where=OPEN)


def downgrade() -> None:
    with op.batch_alter_table('intakegroup', schema=None) as batch_op:
        batch_op.drop_index('ux_intakegroup_open', sqlite_where=OPEN, postgresql_where=OPEN)

    op.drop_table('intakegroupalert')
