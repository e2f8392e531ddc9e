"""security: staff SMS PIN (salted scrypt hash, failures, lock, SMS session); keyed digests

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.db

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Staff who had none must be given a PIN (hosen staff pin) before their SMS commands work.
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pin_hash", sa.String(length=160), nullable=True))
        batch_op.add_column(
            sa.Column("pin_failures", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("pin_locked_at", registry.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("sms_session_until", registry.db.UTCDateTime(timezone=True), nullable=True)
        )

    # Inbox sender digests were unkeyed SHA-256 of the phone (reversible by trying every number).
    # Processed rows need no ordering key any more: drop theirs. Rows still waiting keep theirs
    # (a sender's backlog at upgrade time may be taken apart from their newer, keyed rows) and
    # the retention sweep empties them; new rows get keyed digests (HOSEN_HASH_KEY).
    op.execute("UPDATE inbox SET sender = NULL WHERE processed_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.drop_column("sms_session_until")
        batch_op.drop_column("pin_locked_at")
        batch_op.drop_column("pin_failures")
        batch_op.drop_column("pin_hash")
