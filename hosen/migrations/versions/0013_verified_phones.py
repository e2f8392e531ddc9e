"""verified phones: where each phone came from, when it was proven, one-time codes

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.db

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCES = ("contact", "sms", "code", "staff", "import", "typed")


def upgrade() -> None:
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "phone_source",
                sa.Enum(*_SOURCES, name="phonesource", native_enum=False, length=24),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("phone_verified_at", registry.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("phone_disputed_at", registry.db.UTCDateTime(timezone=True), nullable=True)
        )
    # Backfill what can be known: a list's or staff's phone came from there; a person who
    # registered by SMS for themselves texted from it. Telegram registrations (shared contact or
    # typed, nobody can tell now) and family registrations keep no source: not trusted.
    op.execute(
        "UPDATE person SET phone_source = 'import' "
        "WHERE phone IS NOT NULL AND source IN ('import', 'synthetic')"
    )
    op.execute(
        "UPDATE person SET phone_source = 'staff', phone_verified_at = created_at "
        "WHERE phone IS NOT NULL AND source = 'staff'"
    )
    op.execute(
        "UPDATE person SET phone_source = 'sms', phone_verified_at = created_at "
        "WHERE phone IS NOT NULL AND source = 'sms' AND NOT EXISTS ("
        "SELECT 1 FROM consent WHERE consent.person_id = person.id "
        "AND consent.given_by = 'family')"
    )
    op.create_table(
        "phone_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("requester", sa.String(length=60), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("code_hash", sa.String(length=120), nullable=False),
        sa.Column("sent_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("wrong", sa.SmallInteger(), nullable=False),
        sa.Column("confirmed_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("locked_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("replaced_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_phone_code_person_id_person"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_code")),
    )
    op.create_index("ix_phone_code_phone_sent", "phone_code", ["phone", "sent_at"], unique=False)
    op.create_index(
        "ix_phone_code_requester_sent", "phone_code", ["requester", "sent_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_phone_code_requester_sent", table_name="phone_code")
    op.drop_index("ix_phone_code_phone_sent", table_name="phone_code")
    op.drop_table("phone_code")
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.drop_column("phone_disputed_at")
        batch_op.drop_column("phone_verified_at")
        batch_op.drop_column("phone_source")
