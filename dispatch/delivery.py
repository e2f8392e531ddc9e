"""What happens to a message after the provider answered: delivery receipts, dead channels and
the move to the next channel (Telegram → SMS → a home visit by the person's buddy).

Services here take ``*, session`` and never commit; the worker step or the webhook route does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from dispatch.callbacks import first_time
from dispatch.models import (
    Answer,
    BlockReason,
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    ChannelBlock,
    InboundMessage,
    OutboxMessage,
    OutboxStatus,
)
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
# Inbox key prefix of a Twilio receipt that arrived before its message's sid was recorded.
EARLY_RECEIPT = "smsstatus:"


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


# A check-in's own messages: wanted while their recipient has not answered.
_CHECKIN_KINDS = ("checkin", "reminder")


def still_wanted(session: Session, *, message_ids: Iterable[int]) -> set[int]:
    """Which of these messages a campaign still waits on: its campaign is active and, for a
    check-in or its reminder, the recipient has not answered yet (nor been put on the unreached
    list). Such a message is worth retrying through a provider's outage for as long as that
    lasts; the ladder's next steps run beside it meanwhile."""
    wanted = sorted(set(message_ids))
    if not wanted:
        return set()
    recipient = and_(
        CampaignRecipient.campaign_id == OutboxMessage.campaign_id,
        CampaignRecipient.person_id == OutboxMessage.person_id,
    )
    return set(
        session.scalars(
            select(OutboxMessage.id)
            .join(Campaign, Campaign.id == OutboxMessage.campaign_id)
            .outerjoin(CampaignRecipient, recipient)
            .where(
                OutboxMessage.id.in_(wanted),
                Campaign.status == CampaignStatus.ACTIVE,
                or_(
                    OutboxMessage.kind.not_in(_CHECKIN_KINDS),
                    CampaignRecipient.answer == Answer.PENDING,
                ),
            )
        )
    )


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

    Returns ``False`` when no row has that sid yet. Twilio may call back before the worker has
    committed the sid it got from the create call; such a receipt is kept in the inbox and applied
    by :func:`apply_early_receipts` when the worker records the sid (a receipt for a message we
    never sent just stays there, unprocessed).
    "delivered" marks it delivered; "failed"/"undelivered" with a code that means the number is
    dead moves the message to the next channel, other failures are kept as the last error.
    """
    message = _sent_with(session, message_sid)
    # Claimed under (MessageSid, status) first: Twilio sending the same receipt twice, or two
    # webhook processes receiving it, changes the message once (dispatch.callbacks). Without
    # its message yet, the claim is the receipt kept for later (not applied).
    first = first_time(
        session,
        key=f"{EARLY_RECEIPT}{message_sid[:40]}:{status.lower()[:20]}",
        channel=Channel.SMS,
        now=now,
        payload={"sid": message_sid, "status": status, "error_code": error_code},
        applied=message is not None,
    )
    if first and message is not None:
        _apply_receipt(session, message=message, status=status, error_code=error_code, now=now)
    return message is not None


def _sent_with(session: Session, message_sid: str) -> OutboxMessage | None:
    return session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.provider_id == message_sid, OutboxMessage.channel == Channel.SMS
        )
    ).first()


def apply_early_receipts(session: Session, *, message_sids: Iterable[str], now: datetime) -> int:
    """Apply the receipts that arrived before these sids were recorded; returns how many."""
    wanted = set(message_sids)
    if not wanted:
        return 0
    waiting = session.scalars(
        select(InboundMessage)
        .where(
            InboundMessage.provider_key.startswith(EARLY_RECEIPT),
            InboundMessage.processed_at.is_(None),
        )
        .order_by(InboundMessage.id)
    ).all()
    applied = 0
    for receipt in waiting:
        sid = str(receipt.payload.get("sid", ""))
        if sid not in wanted:
            continue
        code = receipt.payload.get("error_code")
        message = _sent_with(session, sid)
        if message is not None:
            _apply_receipt(
                session,
                message=message,
                status=str(receipt.payload.get("status", "")),
                error_code=int(code) if code is not None else None,
                now=now,
            )
            receipt.processed_at = now
            applied += 1
    return applied


def _apply_receipt(
    session: Session, *, message: OutboxMessage, status: str, error_code: int | None, now: datetime
) -> None:
    status = status.lower()
    if status in _TWILIO_DELIVERED:
        if _RANK[message.status] < _RANK[OutboxStatus.DELIVERED]:
            message.status = OutboxStatus.DELIVERED
            message.delivered_at = now
    elif status in _TWILIO_FAILED:
        if message.status in (OutboxStatus.READ, OutboxStatus.FAILED, OutboxStatus.CANCELLED):
            return
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
