"""What happens to a message after the provider answered: delivery receipts, dead channels and
the move to the next channel (Telegram → SMS → a home visit by the person's buddy).

Services here take ``*, session`` and never commit; the worker step or the webhook route does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models import BlockReason, ChannelBlock, OutboxMessage, OutboxStatus
from dispatch.senders import TWILIO_DELIVERY_PERMANENT
from registry.models import Channel, Person, PhoneKind

# Twilio MessageStatus values, in the order a message moves through them.
_TWILIO_PROGRESS = {"accepted", "scheduled", "queued", "sending", "sent"}
_TWILIO_DELIVERED = {"delivered", "read"}
_TWILIO_FAILED = {"failed", "undelivered", "canceled"}
# A status never moves backwards (a late "sent" callback must not undo "delivered").
_RANK = {
    OutboxStatus.QUEUED: 0,
    OutboxStatus.SENDING: 1,
    OutboxStatus.SENT: 2,
    OutboxStatus.DELIVERED: 3,
    OutboxStatus.READ: 4,
    OutboxStatus.FAILED: 5,
    OutboxStatus.CANCELLED: 5,
}
CHANNEL_ORDER = (Channel.TELEGRAM, Channel.SMS)


def blocked_people(session: Session, *, channel: Channel, person_ids: Iterable[int]) -> set[int]:
    """Which of these people a provider has declared unreachable on ``channel``."""
    wanted = sorted(set(person_ids))
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(ChannelBlock.person_id).where(
                ChannelBlock.channel == channel, ChannelBlock.person_id.in_(wanted)
            )
        )
    )


def block_channel(
    session: Session,
    *,
    person_id: int,
    channel: Channel,
    reason: BlockReason,
    address: str,
    now: datetime,
) -> None:
    """Stop ``channel`` for this person. A landline answer also fixes the registry's phone kind."""
    block = session.get(ChannelBlock, (person_id, channel))
    if block is None:
        session.add(
            ChannelBlock(
                person_id=person_id,
                channel=channel,
                reason=reason,
                address=address,
                blocked_at=now,
            )
        )
    if reason == BlockReason.LANDLINE:
        person = session.get(Person, person_id)
        if person is not None and person.phone == address:
            person.phone_kind = PhoneKind.LANDLINE


def next_channel(session: Session, *, person: Person, after: Channel) -> Channel | None:
    """The next channel that can still reach the person after ``after``, if any."""
    later = CHANNEL_ORDER[CHANNEL_ORDER.index(after) + 1 :] if after in CHANNEL_ORDER else ()
    for channel in later:
        if session.get(ChannelBlock, (person.id, channel)) is not None:
            continue
        if channel == Channel.SMS and person.can_receive_sms:
            return channel
        if channel == Channel.TELEGRAM and person.telegram_chat_id is not None:
            return channel
    return None


def move_on(
    session: Session,
    *,
    message: OutboxMessage,
    reason: BlockReason | None,
    error: str,
    now: datetime,
) -> OutboxMessage | None:
    """Fail ``message`` on its channel and carry it to the next one; returns the new row, if any.

    With no channel left, a message that matters for safety (a campaign's) becomes a home visit
    by the person's buddy and the person is on the officer's unreached list.
    """
    message.status = OutboxStatus.FAILED
    message.last_error = error[:200]
    message.lease_until = None
    message.leased_by = None
    if message.person_id is None:
        return None
    if reason is not None:
        block_channel(
            session,
            person_id=message.person_id,
            channel=message.channel,
            reason=reason,
            address=message.address,
            now=now,
        )
    person = session.get(Person, message.person_id)
    if person is None or not person.reachable:
        return None
    channel = next_channel(session, person=person, after=message.channel)
    if channel is None:
        from dispatch import escalation  # the ladder builds on delivery, not the other way

        escalation.no_channel_left(session, message=message, person=person, now=now)
        return None
    from dispatch import campaigns

    text, buttons = campaigns.text_for_channel(
        session, message=message, person=person, channel=channel
    )
    follow_up = OutboxMessage(
        person_id=message.person_id,
        channel=channel,
        address=person.phone if channel == Channel.SMS else str(person.telegram_chat_id),
        text=text,
        buttons=buttons,
        priority=message.priority,
        risk_rank=message.risk_rank,
        kind=message.kind,
        campaign_id=message.campaign_id,
        status=OutboxStatus.QUEUED,
        attempts=0,
        due_at=now,
        created_at=now,
    )
    session.add(follow_up)
    return follow_up


def record_sms_status(
    session: Session, *, message_sid: str, status: str, error_code: int | None, now: datetime
) -> bool:
    """Apply a Twilio status callback to the outbox row with that MessageSid.

    Returns ``False`` when no row has that sid (a callback for a message we did not send).
    "delivered" marks it delivered; "failed"/"undelivered" with a code that means the number is
    dead moves the message to the next channel, other failures are kept as the last error.
    """
    message = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.provider_id == message_sid, OutboxMessage.channel == Channel.SMS
        )
    ).first()
    if message is None:
        return False
    status = status.lower()
    if status in _TWILIO_DELIVERED:
        if _RANK[message.status] < _RANK[OutboxStatus.DELIVERED]:
            message.status = OutboxStatus.DELIVERED
            message.delivered_at = now
    elif status in _TWILIO_FAILED:
        if message.status in (OutboxStatus.READ, OutboxStatus.FAILED, OutboxStatus.CANCELLED):
            return True
        error = f"twilio {status} {error_code or ''}".strip()
        reason = TWILIO_DELIVERY_PERMANENT.get(error_code) if error_code is not None else None
        if reason is not None or message.campaign_id is not None:
            # An undelivered safety message must not end in a void: try the next way.
            move_on(session, message=message, reason=reason, error=error, now=now)
        else:
            message.status = OutboxStatus.FAILED
            message.last_error = error
    elif status not in _TWILIO_PROGRESS:
        message.last_error = f"twilio status {status[:40]}"
    return True
