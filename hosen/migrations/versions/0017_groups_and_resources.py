"""group_zone: the zones a group serves; community_resource: generators, vehicles, shelters...

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.db

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "group_zone",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["community_group.id"],
            name=op.f("fk_group_zone_group_id_community_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zone.id"], name=op.f("fk_group_zone_zone_id_zone"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("group_id", "zone_id", name=op.f("pk_group_zone")),
    )
    with op.batch_alter_table("group_zone", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_group_zone_zone_id"), ["zone_id"], unique=False)
    # Expand: every group's one zone becomes its first listed zone; "community" groups were
    # community centres.
    op.execute(
        "INSERT INTO group_zone (group_id, zone_id) "
        "SELECT id, zone_id FROM community_group WHERE zone_id IS NOT NULL"
    )
    op.execute("UPDATE community_group SET kind = 'community_centre' WHERE kind = 'community'")

    op.create_table(
        "community_resource",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "generator",
                "vehicle",
                "accessible_vehicle",
                "accessible_shelter",
                "community_centre",
                "water",
                "other",
                name="resourcekind",
                native_enum=False,
                create_constraint=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("contact_name", sa.String(length=120), nullable=True),
        sa.Column("contact_phone", sa.String(length=20), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "available",
                "in_use",
                "out_of_service",
                name="resourcestate",
                native_enum=False,
                create_constraint=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("state_changed_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state_changed_by", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["authority.id"],
            name=op.f("fk_community_resource_authority_id_authority"),
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zone.id"], name=op.f("fk_community_resource_zone_id_zone")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_resource")),
        sa.UniqueConstraint(
            "authority_id", "code", name=op.f("uq_community_resource_authority_id_code")
        ),
    )
    with op.batch_alter_table("community_resource", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_community_resource_authority_id"), ["authority_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_community_resource_zone_id"), ["zone_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("community_resource")
    op.execute("UPDATE community_group SET kind = 'community' WHERE kind = 'community_centre'")
    op.drop_table("group_zone")
