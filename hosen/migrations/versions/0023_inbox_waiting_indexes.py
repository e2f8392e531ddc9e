"""inbox: partial indexes of the rows still waiting; person: an index on the phone

The inbox processor's claim reads the oldest waiting rows and, for their senders, the earlier
waiting rows; both now read indexes of the waiting rows alone instead of skipping every row
ever processed. A reply from an SMS number finds its person by phone, which only the unique
(authority, phone) index held, second.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = "processed_at IS NULL AND parked_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_inbox_waiting",
        "inbox",
        ["id"],
        sqlite_where=sa.text(f"{WAITING} AND sender IS NOT NULL"),
        postgresql_where=sa.text(f"{WAITING} AND sender IS NOT NULL"),
    )
    op.create_index(
        "ix_inbox_sender_waiting",
        "inbox",
        ["sender", "id"],
        sqlite_where=sa.text(WAITING),
        postgresql_where=sa.text(WAITING),
    )
    op.create_index("ix_person_phone", "person", ["phone"])


def downgrade() -> None:
    op.drop_index("ix_person_phone", table_name="person")
    op.drop_index("ix_inbox_sender_waiting", table_name="inbox")
    op.drop_index("ix_inbox_waiting", table_name="inbox")
