"""assignment runs and changes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 18:06:15.413032
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import registry.db

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "assignment_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("trigger", sa.String(length=24), nullable=False),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["authority.id"],
            name=op.f("fk_assignment_run_authority_id_authority"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_run")),
    )
    with op.batch_alter_table("assignment_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_assignment_run_authority_id"), ["authority_id"], unique=False
        )

    op.create_table(
        "assignment_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("notified_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["assignment_run.id"],
            name=op.f("fk_assignment_change_run_id_assignment_run"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["volunteer_id"],
            ["person.id"],
            name=op.f("fk_assignment_change_volunteer_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_change")),
    )
    with op.batch_alter_table("assignment_change", schema=None) as batch_op:
        batch_op.create_index(
            "ix_assignment_change_pending", ["notified_at", "volunteer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_assignment_change_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assignment_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assignment_change_run_id"))
        batch_op.drop_index("ix_assignment_change_pending")

    op.drop_table("assignment_change")
    with op.batch_alter_table("assignment_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assignment_run_authority_id"))

    op.drop_table("assignment_run")
