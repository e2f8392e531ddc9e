"""assignment_offer: each seat offered to its volunteer, their answer, and its timer

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.db

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "assignment_offer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("channel", sa.String(length=12), nullable=True),
        sa.Column("created_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("offered_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("due_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["volunteer_id"],
            ["person.id"],
            name=op.f("fk_assignment_offer_volunteer_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_offer")),
    )
    with op.batch_alter_table("assignment_offer", schema=None) as batch_op:
        batch_op.create_index("ix_assignment_offer_due", ["state", "due_at"], unique=False)
        batch_op.create_index(
            "ix_assignment_offer_volunteer", ["volunteer_id", "state"], unique=False
        )
        batch_op.create_index("ix_assignment_offer_seat", ["kind", "assignment_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assignment_offer", schema=None) as batch_op:
        batch_op.drop_index("ix_assignment_offer_seat")
        batch_op.drop_index("ix_assignment_offer_volunteer")
        batch_op.drop_index("ix_assignment_offer_due")
    op.drop_table("assignment_offer")
