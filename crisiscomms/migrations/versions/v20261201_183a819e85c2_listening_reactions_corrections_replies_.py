"""listening: reactions, corrections, replies, spikes, delivery events, recipient suppression

Revision ID: 183a819e85c2
Revises: 5d1c0e7a9b21
Create Date: 2026-12-01 00:25:00

Listening (issue 11): ``reaction`` (stored once per source id, linked to the message it
answers), ``reactioncorrection`` (our people's labels), ``reactionreply`` (one automatic reply
per author per incident), ``spike`` (alerted once per window), ``deliveryevent`` (a provider's
per-recipient word, once per event id) and ``recipient.suppression`` (why a provider event
withdrew consent). Sources and sentiments are plain strings, not database enums, so a new source
needs no ``ALTER TYPE``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "183a819e85c2"
down_revision: str | Sequence[str] | None = "5d1c0e7a9b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spike",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("volume", sa.Integer(), nullable=False),
        sa.Column("negative_share", sa.Float(), nullable=False),
        sa.Column("baseline_volume", sa.Float(), nullable=False),
        sa.Column("baseline_negative_share", sa.Float(), nullable=False),
        sa.Column("examples_json", sa.Text(), nullable=False),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "incident_id", "channel", "locale", "window_start", name="uq_spike_window"
        ),
    )
    with op.batch_alter_table("spike", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_spike_incident_id"), ["incident_id"], unique=False)

    op.create_table(
        "deliveryevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=128), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("recipient_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key"),
    )
    with op.batch_alter_table("deliveryevent", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_event_delivery_event", ["delivery_id", "event"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_deliveryevent_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "reaction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("recipient_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("author", sa.String(length=320), nullable=False),
        sa.Column("author_name", sa.String(length=200), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("sentiment", sa.String(length=16), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("needs_human", sa.Boolean(), nullable=False),
        sa.Column("reasons_json", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["message.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "source_id", name="uq_reaction_source_id"),
    )
    with op.batch_alter_table("reaction", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reaction_incident_received", ["incident_id", "received_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_reaction_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reaction_needs_human"), ["needs_human"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_reaction_recipient_id"), ["recipient_id"], unique=False
        )

    op.create_table(
        "reactioncorrection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reaction_id", sa.Integer(), nullable=False),
        sa.Column("sentiment", sa.String(length=16), nullable=False),
        sa.Column("needs_human", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reaction_id"],
            ["reaction.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reactioncorrection", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reactioncorrection_reaction_id"), ["reaction_id"], unique=False
        )

    op.create_table(
        "reactionreply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("author", sa.String(length=320), nullable=False),
        sa.Column("reaction_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
        ),
        sa.ForeignKeyConstraint(
            ["reaction_id"],
            ["reaction.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "source", "author", name="uq_reaction_reply_author"),
        sa.UniqueConstraint("reaction_id"),
    )
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suppression", sa.String(length=32), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.drop_column("suppression")

    op.drop_table("reactionreply")
    with op.batch_alter_table("reactioncorrection", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reactioncorrection_reaction_id"))

    op.drop_table("reactioncorrection")
    with op.batch_alter_table("reaction", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reaction_recipient_id"))
        batch_op.drop_index(batch_op.f("ix_reaction_needs_human"))
        batch_op.drop_index(batch_op.f("ix_reaction_message_id"))
        batch_op.drop_index("ix_reaction_incident_received")

    op.drop_table("reaction")
    with op.batch_alter_table("deliveryevent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveryevent_incident_id"))
        batch_op.drop_index("ix_delivery_event_delivery_event")

    op.drop_table("deliveryevent")
    with op.batch_alter_table("spike", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spike_incident_id"))

    op.drop_table("spike")
