"""voice: phone calls in the ladder (authority and campaign settings) and the voice_call table

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.db

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _call_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("calls", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("call_retry_after", sa.Integer(), nullable=False, server_default="600"),
        sa.Column("call_retries", sa.SmallInteger(), nullable=False, server_default="2"),
    ]


def upgrade() -> None:
    for table in ("authority", "campaign"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in _call_columns():
                batch_op.add_column(column)
    op.create_table(
        "voice_call",
        sa.Column("id", ID, primary_key=True),
        sa.Column("outbox_id", ID, nullable=True),
        sa.Column("call_sid", sa.String(length=64), nullable=True),
        sa.Column("inbound", sa.Boolean(), nullable=False),
        sa.Column(
            "campaign_id",
            sa.Integer(),
            sa.ForeignKey("campaign.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column(
            "person_id",
            sa.Integer(),
            sa.ForeignKey("person.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("zone_id", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("answered_by", sa.String(length=24), nullable=True),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("created_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("answered_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", registry.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_voice_call_sid", "voice_call", ["call_sid"])
    op.create_index("ux_voice_call_outbox", "voice_call", ["outbox_id"], unique=True)
    op.create_index("ix_voice_call_open", "voice_call", ["ended_at"])
    op.create_index("ix_voice_call_campaign", "voice_call", ["campaign_id", "person_id"])


def downgrade() -> None:
    op.drop_index("ix_voice_call_campaign", table_name="voice_call")
    op.drop_index("ix_voice_call_open", table_name="voice_call")
    op.drop_index("ux_voice_call_outbox", table_name="voice_call")
    op.drop_index("ix_voice_call_sid", table_name="voice_call")
    op.drop_table("voice_call")
    for table in ("campaign", "authority"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in ("call_retries", "call_retry_after", "calls"):
                batch_op.drop_column(name)
