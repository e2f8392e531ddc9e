"""Retention: raw inbound payloads and the texts of finished outbound messages are kept for
``HOSEN_RETENTION_DAYS`` (30 by default), long enough to answer "what did they write, what did we
send" about a drill or an incident, then emptied by the scheduler's sweep. Rows stay (their times,
statuses and keys feed the reports); only the words and, for erased people, the addresses go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, cast, func, or_, update
from sqlalchemy.orm import Session

from dispatch.models import InboundMessage
from dispatch.outbox import purge_old_texts

DEFAULT_RETENTION_DAYS = 30

# A step of a layer above (the bots' abandoned conversations): forget what changed last before
# the given time; returns the rows it forgot.
RetentionStep = Callable[[Session, datetime], int]


@dataclass(frozen=True)
class Retention:
    """How long words are kept, and what else the sweep forgets when they go."""

    days: int = DEFAULT_RETENTION_DAYS
    steps: tuple[RetentionStep, ...] = ()


DEFAULT_RETENTION = Retention()


def purge(session: Session, *, now: datetime, retention: Retention = DEFAULT_RETENTION) -> int:
    """Empty what is past retention; returns the rows emptied (the caller commits)."""
    before = now - timedelta(days=retention.days)
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
    emptied += purge_old_texts(session, before=before)
    return emptied + sum(step(session, before) for step in retention.steps)
