"""dispatcher

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-22 19:00:44.333965
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

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
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "checkin",
                "tasks",
                "announcement",
                name="campaignkind",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column(
            "mode",
            sa.Enum("drill", "emergency", name="campaignmode", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum("active", "closed", name="campaignstatus", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column(
            "audience",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("started_by", sa.String(length=80), nullable=False),
        sa.Column("started_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminder_after", sa.Integer(), nullable=False),
        sa.Column("visit_after", sa.Integer(), nullable=False),
        sa.Column("unreached_after", sa.Integer(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority_id"], ["authority.id"], name=op.f("fk_campaign_authority_id_authority")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
    )
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_authority_id"), ["authority_id"], unique=False
        )

    op.create_table(
        "drill_schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("cron", sa.String(length=80), nullable=False),
        sa.Column(
            "audience",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("pending_since", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_campaign_id", sa.Integer(), nullable=True),
        sa.Column("created_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["authority.id"],
            name=op.f("fk_drill_schedule_authority_id_authority"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drill_schedule")),
    )
    with op.batch_alter_table("drill_schedule", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drill_schedule_authority_id"), ["authority_id"], unique=False
        )

    op.create_table(
        "campaign_recipient",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=True),
        sa.Column(
            "channel",
            sa.Enum("telegram", "sms", "none", name="channel", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("risk_rank", sa.SmallInteger(), nullable=False),
        sa.Column(
            "answer",
            sa.Enum(
                "pending",
                "ok",
                "help",
                "free_text",
                "no_answer",
                name="answer",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("answered_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answer_text", sa.String(length=500), nullable=True),
        sa.Column("needs_human", sa.Boolean(), nullable=False),
        sa.Column("step", sa.SmallInteger(), nullable=False),
        sa.Column("next_step_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_campaign_recipient_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_campaign_recipient_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_recipient")),
        sa.UniqueConstraint(
            "campaign_id", "person_id", name=op.f("uq_campaign_recipient_campaign_id_person_id")
        ),
    )
    with op.batch_alter_table("campaign_recipient", schema=None) as batch_op:
        batch_op.create_index("ix_campaign_recipient_person", ["person_id"], unique=False)
        batch_op.create_index("ix_campaign_recipient_timer", ["next_step_at"], unique=False)

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
    op.create_table(
        "officer_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum(
                "help",
                "unreached",
                "free_text",
                "no_buddy",
                "not_reached",
                name="alertkind",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("created_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_officer_alert_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_officer_alert_person_id_person"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officer_alert")),
    )
    with op.batch_alter_table("officer_alert", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_officer_alert_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "visit_task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column(
            "reason",
            sa.Enum(
                "help",
                "no_answer",
                "no_channel",
                "assigned",
                name="taskreason",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "offered",
                "accepted",
                "done",
                "not_reached",
                "cancelled",
                name="taskstatus",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("created_at", registry.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", registry.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_visit_task_campaign_id_campaign"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["community_group.id"],
            name=op.f("fk_visit_task_group_id_community_group"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["person.id"],
            name=op.f("fk_visit_task_resident_id_person"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["volunteer_id"],
            ["person.id"],
            name=op.f("fk_visit_task_volunteer_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_task")),
    )
    with op.batch_alter_table("visit_task", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_visit_task_campaign_id"), ["campaign_id"], unique=False
        )
        batch_op.create_index("ix_visit_task_resident", ["resident_id"], unique=False)
        batch_op.create_index(
            "ix_visit_task_volunteer_status", ["volunteer_id", "status"], unique=False
        )

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("risk_rank", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.drop_index(batch_op.f("ix_outbox_due"))
        batch_op.create_index(
            "ix_outbox_due",
            ["status", "channel", "priority", "risk_rank", "due_at", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_due")
        batch_op.create_index(
            batch_op.f("ix_outbox_due"), ["status", "priority", "due_at"], unique=False
        )
        batch_op.drop_column("risk_rank")

    with op.batch_alter_table("visit_task", schema=None) as batch_op:
        batch_op.drop_index("ix_visit_task_volunteer_status")
        batch_op.drop_index("ix_visit_task_resident")
        batch_op.drop_index(batch_op.f("ix_visit_task_campaign_id"))

    op.drop_table("visit_task")
    with op.batch_alter_table("officer_alert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_officer_alert_campaign_id"))

    op.drop_table("officer_alert")
    op.drop_table("channel_block")
    with op.batch_alter_table("campaign_recipient", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_recipient_timer")
        batch_op.drop_index("ix_campaign_recipient_person")

    op.drop_table("campaign_recipient")
    with op.batch_alter_table("drill_schedule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drill_schedule_authority_id"))

    op.drop_table("drill_schedule")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_authority_id"))

    op.drop_table("campaign")
    op.drop_table("process_lease")
    with op.batch_alter_table("chat_gate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_gate_next_at"))

    op.drop_table("chat_gate")
    op.drop_table("channel_gate")
