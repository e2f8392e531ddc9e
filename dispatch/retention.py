"""Retention: raw inbound payloads and the texts of finished outbound messages are kept for
``HOSEN_RETENTION_DAYS`` (30 by default), long enough to answer "what did they write, what did we
send" about a drill or an incident, then emptied by the scheduler's sweep. Rows stay (their times,
statuses and keys feed the reports); only the words and, for erased people, the addresses go.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, cast, func, or_, update
from sqlalchemy.orm import Session

from dispatch.models import InboundMessage
from dispatch.outbox import purge_old_texts

DEFAULT_RETENTION_DAYS = 30


def purge(session: Session, *, now: datetime, days: int = DEFAULT_RETENTION_DAYS) -> int:
    """Empty what is past retention; returns the rows emptied (the caller commits)."""
    before = now - timedelta(days=days)
    inbox = session.execute(
        update(InboundMessage)
        .where(
            InboundMessage.received_at < before,
            # Not one still waiting for the processor; receipts (no sender) are never processed.
            or_(
                InboundMessage.processed_at.is_not(None),
                InboundMessage.parked_at.is_not(None),
                InboundMessage.sender.is_(None),
            ),
            func.length(cast(InboundMessage.payload, String)) > 2,  # not "{}" already
        )
        .values(payload={}, sender=None)
        .execution_options(synchronize_session=False)
    )
    emptied = int(getattr(inbox, "rowcount", 0) or 0)
    return emptied + purge_old_texts(session, before=before)
