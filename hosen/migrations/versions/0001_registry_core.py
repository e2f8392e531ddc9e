"""registry core

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import registry.db

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "authority",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authority")),
        sa.UniqueConstraint("code", name=op.f("uq_authority_code")),
    )
    op.create_table(
        "zone",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["authority_id"], ["authority.id"], name=op.f("fk_zone_authority_id_authority")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zone")),
        sa.UniqueConstraint("authority_id", "code", name=op.f("uq_zone_authority_id_code")),
    )
    with op.batch_alter_table("zone", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_zone_authority_id"), ["authority_id"], unique=False)

    op.create_table(
        "community_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum(
                "youth_movement",
                "building_committee",
                "school_committee",
                "kindergarten_committee",
                "national_service",
                "community",
                name="groupkind",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("join_code", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["authority.id"],
            name=op.f("fk_community_group_authority_id_authority"),
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zone.id"], name=op.f("fk_community_group_zone_id_zone")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_group")),
        sa.UniqueConstraint("join_code", name=op.f("uq_community_group_join_code")),
    )
    with op.batch_alter_table("community_group", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_community_group_authority_id"), ["authority_id"], unique=False
        )

    op.create_table(
        "person",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=120), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column(
            "phone_kind",
            sa.Enum(
                "mobile", "landline", "unknown", name="phonekind", native_enum=False, length=24
            ),
            nullable=False,
        ),
        sa.Column("telegram_chat_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "language",
            sa.Enum("he", "ar", "en", "ru", "am", name="language", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column(
            "channel",
            sa.Enum("telegram", "sms", "none", name="channel", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("birth_year", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=200), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "paused",
                "opted_out",
                "erased",
                name="personstatus",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("is_volunteer", sa.Boolean(), nullable=False),
        sa.Column("needs_help", sa.Boolean(), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "telegram",
                "sms",
                "import",
                "staff",
                "synthetic",
                name="source",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("external_ref", sa.String(length=80), nullable=True),
        sa.Column("created_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("opted_out_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("erased_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["authority_id"], ["authority.id"], name=op.f("fk_person_authority_id_authority")
        ),
        sa.ForeignKeyConstraint(["zone_id"], ["zone.id"], name=op.f("fk_person_zone_id_zone")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person")),
        sa.UniqueConstraint(
            "authority_id", "external_ref", name=op.f("uq_person_authority_id_external_ref")
        ),
        sa.UniqueConstraint("authority_id", "phone", name=op.f("uq_person_authority_id_phone")),
        sa.UniqueConstraint("telegram_chat_id", name=op.f("uq_person_telegram_chat_id")),
    )
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.create_index(
            "ix_person_authority_status", ["authority_id", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_person_zone_id"), ["zone_id"], unique=False)

    op.create_table(
        "shelter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority_id"], ["authority.id"], name=op.f("fk_shelter_authority_id_authority")
        ),
        sa.ForeignKeyConstraint(["zone_id"], ["zone.id"], name=op.f("fk_shelter_zone_id_zone")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shelter")),
        sa.UniqueConstraint("authority_id", "code", name=op.f("uq_shelter_authority_id_code")),
    )
    with op.batch_alter_table("shelter", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shelter_authority_id"), ["authority_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_shelter_zone_id"), ["zone_id"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_audit_log_person_id_person"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_log_person", ["person_id"], unique=False)

    op.create_table(
        "buddy_assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "proposed",
                "confirmed",
                "declined",
                "released",
                name="assignmentstatus",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("distance_m", sa.Integer(), nullable=True),
        sa.Column("created_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["person.id"],
            name=op.f("fk_buddy_assignment_resident_id_person"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["volunteer_id"],
            ["person.id"],
            name=op.f("fk_buddy_assignment_volunteer_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buddy_assignment")),
    )
    with op.batch_alter_table("buddy_assignment", schema=None) as batch_op:
        batch_op.create_index("ix_buddy_assignment_volunteer", ["volunteer_id"], unique=False)
        batch_op.create_index(
            "uq_buddy_assignment_active_rank",
            ["resident_id", "rank"],
            unique=True,
            sqlite_where=sa.text("status IN ('proposed', 'confirmed')"),
            postgresql_where=sa.text("status IN ('proposed', 'confirmed')"),
        )

    op.create_table(
        "consent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "registration",
                "health_data",
                "guardian",
                name="consentkind",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.String(length=20), nullable=False),
        sa.Column(
            "language",
            sa.Enum("he", "ar", "en", "ru", "am", name="language", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "telegram",
                "sms",
                "import",
                "staff",
                "synthetic",
                name="source",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column(
            "given_by",
            sa.Enum(
                "self",
                "family",
                "guardian",
                "staff",
                name="consentgiver",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("guardian_name", sa.String(length=120), nullable=True),
        sa.Column("given_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_consent_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent")),
    )
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.create_index("ix_consent_person_kind", ["person_id", "kind"], unique=False)

    op.create_table(
        "group_member",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("is_coordinator", sa.Boolean(), nullable=False),
        sa.Column("joined_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["community_group.id"],
            name=op.f("fk_group_member_group_id_community_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_group_member_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "person_id", name=op.f("pk_group_member")),
    )
    with op.batch_alter_table("group_member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_group_member_person_id"), ["person_id"], unique=False)

    op.create_table(
        "resident_needs",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("lives_alone", sa.Boolean(), nullable=False),
        sa.Column("mobility", sa.Boolean(), nullable=False),
        sa.Column("bedridden", sa.Boolean(), nullable=False),
        sa.Column("powered_medical_equipment", sa.Boolean(), nullable=False),
        sa.Column("sight", sa.Boolean(), nullable=False),
        sa.Column("hearing", sa.Boolean(), nullable=False),
        sa.Column("cognitive", sa.Boolean(), nullable=False),
        sa.Column("regular_medication", sa.Boolean(), nullable=False),
        sa.Column("young_children", sa.Boolean(), nullable=False),
        sa.Column("no_shelter_access", sa.Boolean(), nullable=False),
        sa.Column("emergency_contact_name", sa.String(length=120), nullable=True),
        sa.Column("emergency_contact_phone", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_resident_needs_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_resident_needs")),
    )
    op.create_table(
        "role_assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("role_code", sa.String(length=40), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=True),
        sa.Column("shelter_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "proposed",
                "confirmed",
                "declined",
                "released",
                name="assignmentstatus",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("created_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["authority.id"],
            name=op.f("fk_role_assignment_authority_id_authority"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_role_assignment_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shelter_id"], ["shelter.id"], name=op.f("fk_role_assignment_shelter_id_shelter")
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zone.id"], name=op.f("fk_role_assignment_zone_id_zone")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_assignment")),
    )
    with op.batch_alter_table("role_assignment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_role_assignment_authority_id"), ["authority_id"], unique=False
        )
        batch_op.create_index(
            "uq_role_assignment_active_person",
            ["person_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('proposed', 'confirmed')"),
            postgresql_where=sa.text("status IN ('proposed', 'confirmed')"),
        )

    op.create_table(
        "volunteer_profile",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column(
            "skills",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "languages",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("available_routine", sa.Boolean(), nullable=False),
        sa.Column("available_emergency", sa.Boolean(), nullable=False),
        sa.Column("has_vehicle", sa.Boolean(), nullable=False),
        sa.Column("checkin_capacity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_volunteer_profile_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_volunteer_profile")),
    )


def downgrade() -> None:
    op.drop_table("volunteer_profile")
    with op.batch_alter_table("role_assignment", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_role_assignment_active_person",
            sqlite_where=sa.text("status IN ('proposed', 'confirmed')"),
            postgresql_where=sa.text("status IN ('proposed', 'confirmed')"),
        )
        batch_op.drop_index(batch_op.f("ix_role_assignment_authority_id"))

    op.drop_table("role_assignment")
    op.drop_table("resident_needs")
    with op.batch_alter_table("group_member", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_member_person_id"))

    op.drop_table("group_member")
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_person_kind")

    op.drop_table("consent")
    with op.batch_alter_table("buddy_assignment", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_buddy_assignment_active_rank",
            sqlite_where=sa.text("status IN ('proposed', 'confirmed')"),
            postgresql_where=sa.text("status IN ('proposed', 'confirmed')"),
        )
        batch_op.drop_index("ix_buddy_assignment_volunteer")

    op.drop_table("buddy_assignment")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_person")
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
    with op.batch_alter_table("shelter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shelter_zone_id"))
        batch_op.drop_index(batch_op.f("ix_shelter_authority_id"))

    op.drop_table("shelter")
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_person_zone_id"))
        batch_op.drop_index("ix_person_authority_status")

    op.drop_table("person")
    with op.batch_alter_table("community_group", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_community_group_authority_id"))

    op.drop_table("community_group")
    with op.batch_alter_table("zone", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_zone_authority_id"))

    op.drop_table("zone")
    op.drop_table("authority")
