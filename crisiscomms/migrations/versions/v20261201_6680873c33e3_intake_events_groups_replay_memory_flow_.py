"""intake: events, groups, replay memory, flow waits

Revision ID: 6680873c33e3
Revises: eeb3a9b08eac
Create Date: 2026-12-01 06:58:08.944885

Events in (issue 13): ``intakeevent`` (every accepted signal, its outcome, the flow run it
started: the outbox), ``intakegroup`` (an alert storm's one incident), ``seendelivery`` (replay
memory of signed requests) and ``flowwait`` (flow runs paused until a stage is approved).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '6680873c33e3'
down_revision: str | Sequence[str] | None = 'eeb3a9b08eac'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('intakeevent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('delivery_id', sa.String(length=128), nullable=True),
    sa.Column('dedup_key', sa.String(length=256), nullable=False),
    sa.Column('group_key', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('playbook', sa.String(length=64), nullable=True),
    sa.Column('stage', sa.String(length=64), nullable=True),
    sa.Column('incident_ref', sa.String(length=64), nullable=True),
    sa.Column('facts_json', sa.Text(), nullable=False),
    sa.Column('proposal', sa.Boolean(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('intakeevent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_intakeevent_dedup_key'), ['dedup_key'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_intakeevent_incident_ref'), ['incident_ref'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_intakeevent_outcome'), ['outcome'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_intakeevent_received_at'), ['received_at'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_intakeevent_source'), ['source'],
                              unique=False)

    op.create_table('intakegroup',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('playbook', sa.String(length=64), nullable=False),
    sa.Column('group_key', sa.String(length=256), nullable=False),
    sa.Column('incident_ref', sa.String(length=64), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('components_json', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('playbook', 'group_key', 'incident_ref')
    )
    with op.batch_alter_table('intakegroup', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_intakegroup_group_key'), ['group_key'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_intakegroup_incident_ref'), ['incident_ref'],
                              unique=False)

    op.create_table('seendelivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('delivery_id', sa.String(length=128), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'delivery_id')
    )
    with op.batch_alter_table('seendelivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seendelivery_seen_at'), ['seen_at'],
                              unique=False)

    op.create_table('flowwait',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=False),
    sa.Column('bundle_hash', sa.String(length=64), nullable=False),
    sa.Column('flow_run_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminders', sa.Integer(), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_how', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('flowwait', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flowwait_incident_id'), ['incident_id'],
                              unique=False)




def downgrade() -> None:

    with op.batch_alter_table('flowwait', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flowwait_incident_id'))

    op.drop_table('flowwait')
    with op.batch_alter_table('seendelivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seendelivery_seen_at'))

    op.drop_table('seendelivery')
    with op.batch_alter_table('intakegroup', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_intakegroup_incident_ref'))
        batch_op.drop_index(batch_op.f('ix_intakegroup_group_key'))

    op.drop_table('intakegroup')
    with op.batch_alter_table('intakeevent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_intakeevent_source'))
        batch_op.drop_index(batch_op.f('ix_intakeevent_received_at'))
        batch_op.drop_index(batch_op.f('ix_intakeevent_outcome'))
        batch_op.drop_index(batch_op.f('ix_intakeevent_incident_ref'))
        batch_op.drop_index(batch_op.f('ix_intakeevent_dedup_key'))

    op.drop_table('intakeevent')

