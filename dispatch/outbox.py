"""Putting messages into the outbox. Sending them is the workers' job (see dispatch.worker).

``enqueue`` writes in the caller's transaction: a reply or a campaign row is committed together
with whatever caused it, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from dispatch.models import OutboxMessage, Priority
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
