"""Putting messages into the outbox. Sending them is the workers' job (see dispatch.worker).

``enqueue`` writes in the caller's transaction: a reply or a campaign row is committed together
with whatever caused it, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from dispatch.models import (
    CampaignRecipient,
    ChannelBlock,
    ChatGate,
    OutboxMessage,
    OutboxStatus,
    Priority,
)
from registry.db import utcnow
from registry.models import Channel, Person, PersonStatus

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
    now: datetime | None = None,
) -> OutboxMessage:
    """Add one outbound message; ``buttons`` rows of (label, callback data). ``now``: the
    caller's clock, for when the message was made (and is due, without ``due_at``); the reply
    window of campaign answers counts from it."""
    now = now or utcnow()
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
        due_at=due_at or now,
        created_at=now,
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


def forget_person(
    session: Session, *, person_id: int, addresses: Sequence[str], keep_queued: bool = True
) -> None:
    """Erasure: what the dispatcher keeps of a person. Sent texts (a registration summary holds
    their name and details) and the addresses they went to are emptied wherever they are (rows
    sent before the person was known carry only the address), free-text answers and the
    per-chat send times go. With ``keep_queued`` the rows still to be sent keep their text and
    address (the confirmation that the data were deleted is one of them); without it (erasure
    by staff) they are cancelled and emptied too."""
    theirs = or_(OutboxMessage.person_id == person_id, OutboxMessage.address.in_(addresses))
    if not keep_queued:
        session.execute(
            update(OutboxMessage)
            .where(theirs, OutboxMessage.status.not_in(FINISHED))
            .values(status=OutboxStatus.CANCELLED, last_error="erased")
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(OutboxMessage)
        .where(theirs, OutboxMessage.status.in_(FINISHED))
        # A provider's error text may quote the number it could not reach.
        .values(text="", buttons=None, address="", provider_id=None, last_error=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(ChannelBlock).where(ChannelBlock.person_id == person_id))
    session.execute(delete(ChatGate).where(ChatGate.address.in_(addresses)))
    session.execute(
        update(CampaignRecipient)
        .where(CampaignRecipient.person_id == person_id)
        .values(answer_text=None)
        .execution_options(synchronize_session=False)
    )


def purge_old_texts(session: Session, *, before: datetime) -> int:
    """Retention: empty the texts of messages that finished before ``before``, and every
    finished message to a person erased since; returns how many rows were emptied."""
    erased = select(Person.id).where(Person.status == PersonStatus.ERASED)
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status.in_(FINISHED),
            or_(OutboxMessage.text != "", OutboxMessage.address != ""),
            or_(
                and_(OutboxMessage.created_at < before, OutboxMessage.text != ""),
                OutboxMessage.person_id.in_(erased),
            ),
        )
        .values(
            text="",
            buttons=None,
            address=case((OutboxMessage.person_id.in_(erased), ""), else_=OutboxMessage.address),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


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
