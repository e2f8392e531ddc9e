"""voice: one voice_call row per CallSid (a repeated inbound-call webhook records its call once)

Revision ID: 0022
Revises: 0020
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A call recorded twice before this (two webhooks racing) keeps its first row's sid.
    op.execute(
        sa.text(
            "UPDATE voice_call SET call_sid = NULL WHERE call_sid IS NOT NULL AND id NOT IN "
            "(SELECT MIN(id) FROM voice_call WHERE call_sid IS NOT NULL GROUP BY call_sid)"
        )
    )
    op.drop_index("ix_voice_call_sid", table_name="voice_call")
    op.create_index("ux_voice_call_sid", "voice_call", ["call_sid"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_voice_call_sid", table_name="voice_call")
    op.create_index("ix_voice_call_sid", "voice_call", ["call_sid"])
