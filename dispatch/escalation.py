"""The escalation ladder: reminders, a buddy's home visit, the officer's unreached list."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from dispatch.models import OutboxMessage
from registry.models import Person


def no_channel_left(
    session: Session, *, message: OutboxMessage, person: Person, now: datetime
) -> None:
    """Every channel to ``person`` failed for ``message``."""
    return None
