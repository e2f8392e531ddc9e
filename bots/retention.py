"""The bots' part of retention: a conversation nobody finished (a sign-up left half way, a staff
flow dropped) keeps its answers in its draft (a name, needs, an emergency contact) with no person
to erase them for. One untouched for the retention period is forgotten; writing again starts
afresh. Run by the scheduler's sweep (``dispatch.retention``, wired in ``hosen.context``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from bots.models import Conversation


def forget_abandoned_conversations(session: Session, before: datetime) -> int:
    """Delete conversations of no registered person, untouched since ``before``."""
    result = session.execute(
        delete(Conversation)
        .where(Conversation.person_id.is_(None), Conversation.updated_at < before)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
