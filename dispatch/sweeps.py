"""Periodic repairs that only write rows: the worker and the scheduler both run them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from dispatch.models import OutboxMessage, OutboxStatus


def requeue_expired_leases(session: Session, *, now: datetime) -> int:
    """Rows whose worker died mid-send go back to the queue (they may be sent twice: at least once)."""
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.lease_until < now)
        .values(status=OutboxStatus.QUEUED, lease_until=None, leased_by=None, due_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
