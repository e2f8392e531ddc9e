"""Telling the officers that a provider stopped answering, and that it is back.

The worker that brings a channel down or back (:func:`dispatch.gates.count_answers`: one,
however many workers share the database) queues one short notice to every officer on duty, in
their language, by another channel: a channel that is down cannot carry its own notice. The
"back" notice may go by the channel itself when the officer has no other.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy.orm import Session

from config.i18n import t
from dispatch.gates import Health
from dispatch.models import Priority
from dispatch.outbox import enqueue
from registry.models import Channel
from registry.staff import StaffMember, language_of, on_duty

CHANNEL_NAMES = {Channel.TELEGRAM: "Telegram", Channel.SMS: "SMS"}


def tell_officers(
    session: Session,
    *,
    channel: Channel,
    health: Health,
    ways: Collection[Channel],
    now: datetime,
) -> int:
    """Queue the notice that ``channel`` went down or came back; ``ways``: the channels the
    dispatcher sends on. Returns how many officers it goes to."""
    told = 0
    for member in on_duty(session):
        way = _way_to(member, avoid=channel, ways=ways, may_use_it=health == Health.BACK)
        if way is None:
            continue
        enqueue(
            session,
            channel=way,
            address=member.phone if way == Channel.SMS else str(member.telegram_chat_id),
            text=t(
                language_of(session, member),
                f"dispatch.channel.{health.value}",
                channel=CHANNEL_NAMES.get(channel, channel.value),
            ),
            priority=Priority.INTERACTIVE,
            kind="notice",
            due_at=now,
            now=now,
        )
        told += 1
    return told


def _way_to(
    member: StaffMember, *, avoid: Channel, ways: Collection[Channel], may_use_it: bool
) -> Channel | None:
    reachable = [
        channel
        for channel in (Channel.TELEGRAM, Channel.SMS)
        if channel in ways and (channel == Channel.SMS or member.telegram_chat_id is not None)
    ]
    others = [channel for channel in reachable if channel != avoid]
    if others:
        return others[0]
    return avoid if may_use_it and avoid in reachable else None
