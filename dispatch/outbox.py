"""Putting messages into the outbox. Sending them is the workers' job (see dispatch.worker).

``enqueue`` writes in the caller's transaction: a reply or a campaign row is committed together
with whatever caused it, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from dispatch.models import ChannelBlock, OutboxMessage, OutboxStatus, Priority
from registry.db import utcnow
from registry.models import Channel, Person

Buttons = Sequence[Sequence[tuple[str, str]]]


class Unreachable(Exception):
    """The person has no address on the requested channel."""


def address_for(person: Person, channel: Channel) -> str:
    if channel == Channel.TELEGRAM and person.telegram_chat_id is not None:
        return str(person.telegram_chat_id)
    if channel == Channel.SMS and person.phone and person.can_receive_sms:
        return person.phone
    raise Unreachable(f"person {person.id} has no {channel.value} address")


def enqueue(
    session: Session,
    *,
    channel: Channel,
    address: str,
    text: str,
    person_id: int | None = None,
    buttons: Buttons | None = None,
    priority: Priority = Priority.INTERACTIVE,
    kind: str = "reply",
    campaign_id: int | None = None,
    due_at: datetime | None = None,
) -> OutboxMessage:
    """Add one outbound message; ``buttons`` rows of (label, callback data)."""
    message = OutboxMessage(
        person_id=person_id,
        channel=channel,
        address=address,
        text=text,
        buttons=[[{"text": label, "data": data} for label, data in row] for row in buttons]
        if buttons
        else None,
        priority=int(priority),
        kind=kind,
        campaign_id=campaign_id,
        due_at=due_at or utcnow(),
    )
    session.add(message)
    return message


# Rows whose text nobody needs any more: sent, or ended without being sent.
FINISHED = (
    OutboxStatus.SENT,
    OutboxStatus.DELIVERED,
    OutboxStatus.READ,
    OutboxStatus.FAILED,
    OutboxStatus.CANCELLED,
)


def forget_person(session: Session, *, person_id: int) -> None:
    """Erasure: empty the texts already sent to the person (a registration summary holds their
    name and details) and drop the dead-channel records that keep their phone. Rows still to be
    sent keep their text: the confirmation that the data were deleted is one of them."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.person_id == person_id, OutboxMessage.status.in_(FINISHED))
        .values(text="", buttons=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(ChannelBlock).where(ChannelBlock.person_id == person_id))


def count_unsent(session: Session) -> int:
    """Messages still queued or being sent, on every channel."""
    return int(
        session.scalar(
            select(func.count()).where(
                OutboxMessage.status.in_((OutboxStatus.QUEUED, OutboxStatus.SENDING))
            )
        )
        or 0
    )
