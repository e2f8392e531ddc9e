"""dispatcher

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-22 18:00:50.003086
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.db

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_gate",
        sa.Column(
            "channel",
            sa.Enum("telegram", "sms", "none", name="channel", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("next_slot_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("paused_until", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pauses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_channel_gate")),
    )
    op.create_table(
        "chat_gate",
        sa.Column(
            "channel",
            sa.Enum("telegram", "sms", "none", name="channel", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("address", sa.String(length=40), nullable=False),
        sa.Column("next_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "address", name=op.f("pk_chat_gate")),
    )
    with op.batch_alter_table("chat_gate", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_gate_next_at"), ["next_at"], unique=False)

    op.create_table(
        "process_lease",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=80), nullable=False),
        sa.Column("expires_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_process_lease")),
    )
    op.create_table(
        "channel_block",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column(
            "channel",
            sa.Enum("telegram", "sms", "none", name="channel", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column(
            "reason",
            sa.Enum(
                "blocked",
                "chat_not_found",
                "unsubscribed",
                "invalid_number",
                "landline",
                "undeliverable",
                name="blockreason",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("address", sa.String(length=40), nullable=False),
        sa.Column("blocked_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_channel_block_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", "channel", name=op.f("pk_channel_block")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("risk_rank", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.drop_index(batch_op.f("ix_outbox_due"))
        batch_op.create_index(
            "ix_outbox_due", ["status", "priority", "risk_rank", "due_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_due")
        batch_op.create_index(
            batch_op.f("ix_outbox_due"), ["status", "priority", "due_at"], unique=False
        )
        batch_op.drop_column("risk_rank")

    op.drop_table("channel_block")
    op.drop_table("process_lease")
    with op.batch_alter_table("chat_gate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_gate_next_at"))

    op.drop_table("chat_gate")
    op.drop_table("channel_gate")
