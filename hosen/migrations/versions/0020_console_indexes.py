"""console: the board's and the lists' indexes on campaign_recipient; outbox by campaign and person

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The board's counts (zone × answer), its answers curve (answered_at) and the lists' count
    # and page (answer, zone, risk, person) read this index alone, never the table's rows.
    op.create_index(
        "ix_campaign_recipient_board",
        "campaign_recipient",
        ["campaign_id", "answer", "zone_id", "risk_rank", "person_id", "answered_at"],
    )
    # The lists' "last message" of a page of people in one campaign; it replaces the index on
    # campaign_id alone (its first column), so the outbox keeps as many indexes to update.
    op.create_index("ix_outbox_campaign_person", "outbox", ["campaign_id", "person_id"])
    op.drop_index("ix_outbox_campaign_id", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_campaign_id", "outbox", ["campaign_id"])
    op.drop_index("ix_outbox_campaign_person", table_name="outbox")
    op.drop_index("ix_campaign_recipient_board", table_name="campaign_recipient")
