"""help alerts with an owner and a climbing timer; per-authority timings; zone names per language

Revision ID: 0009
Revises: 0011
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import registry.db

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _enum(*values: str, name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=False, length=24)


def upgrade() -> None:
    # Alerts raised before this revision are open and have no timer: they stay on the lists as
    # they were and are never pushed.
    with op.batch_alter_table("officer_alert", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "state",
                _enum("open", "taken", "done", "failed", name="alertstate"),
                server_default="open",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("owner_staff_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("owner_person_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("taken_at", registry.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("climb", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("due_at", registry.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "need",
                _enum(
                    "medicine",
                    "food",
                    "transport",
                    "power",
                    "check_on_me",
                    "other",
                    name="helpneed",
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("detail", sa.String(length=500), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_officer_alert_owner_staff_id_staff"),
            "staff",
            ["owner_staff_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_officer_alert_owner_person_id_person"),
            "person",
            ["owner_person_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index("ix_officer_alert_due", ["state", "due_at"], unique=False)
    with op.batch_alter_table("authority", schema=None) as batch_op:
        for column, default in (
            ("reminder_after", "900"),
            ("visit_after", "2700"),
            ("unreached_after", "7200"),
            ("alert_climb_after", "600"),
        ):
            batch_op.add_column(
                sa.Column(column, sa.Integer(), server_default=default, nullable=False)
            )
    with op.batch_alter_table("zone", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "names",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                server_default="{}",
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("zone", schema=None) as batch_op:
        batch_op.drop_column("names")
    with op.batch_alter_table("authority", schema=None) as batch_op:
        for column in ("alert_climb_after", "unreached_after", "visit_after", "reminder_after"):
            batch_op.drop_column(column)
    with op.batch_alter_table("officer_alert", schema=None) as batch_op:
        batch_op.drop_index("ix_officer_alert_due")
        batch_op.drop_constraint(
            batch_op.f("fk_officer_alert_owner_person_id_person"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_officer_alert_owner_staff_id_staff"), type_="foreignkey"
        )
        for column in (
            "detail",
            "need",
            "due_at",
            "climb",
            "taken_at",
            "owner_person_id",
            "owner_staff_id",
            "state",
        ):
            batch_op.drop_column(column)
