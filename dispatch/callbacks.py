"""Provider callbacks applied once, whoever delivers them and however often.

Twilio retries a webhook that timed out, two webhook processes may both receive the same
callback, and a spool replay cut short repeats its batch. Every callback that changes something
(a key pressed in a call, a call's end, an SMS delivery receipt) is therefore claimed under the
provider's own id before it acts: one row in the inbox, whose key is unique, written with
``INSERT ... ON CONFLICT DO NOTHING`` in the caller's transaction. The transaction that inserts
the row applies the callback; any other finds it there and does nothing (on PostgreSQL a
concurrent one waits for the first to commit and then finds it). Telegram updates and inbound
SMS are stored in the inbox under ``tg:<update_id>`` / ``sms:<MessageSid>`` the same way.

A claimed row is not a message for the processor: it has no ``sender`` and, once applied, a
``processed_at``. Its ``payload`` may keep what the first delivery answered, so that a repeat is
answered the same (:func:`answer_of`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.gates import upsert
from dispatch.models import InboundMessage
from registry.models import Channel


def first_time(
    session: Session,
    *,
    key: str,
    channel: Channel,
    now: datetime,
    payload: dict[str, Any] | None = None,
    applied: bool = True,
) -> bool:
    """Claim the callback ``key``: True for its first delivery (the caller applies it), False
    when it was claimed before. ``applied=False`` keeps it waiting (``processed_at`` empty)."""
    statement = (
        upsert(session, InboundMessage)
        .values(
            provider_key=key[:80],
            channel=channel,
            payload=payload or {},
            received_at=now,
            processed_at=now if applied else None,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["provider_key"])
        .returning(InboundMessage.id)
    )
    return session.execute(statement).first() is not None


def remember_answer(session: Session, *, key: str, answer: dict[str, Any]) -> None:
    """Keep what the first delivery of ``key`` was answered (claimed in this transaction)."""
    row = session.scalars(select(InboundMessage).where(InboundMessage.provider_key == key[:80]))
    claimed = row.one()
    claimed.payload = {**claimed.payload, **answer}


def answer_of(session: Session, *, key: str) -> dict[str, Any]:
    """What the first delivery of ``key`` was answered (empty if nothing was kept)."""
    payload = session.scalar(
        select(InboundMessage.payload).where(InboundMessage.provider_key == key[:80])
    )
    return dict(payload or {})
