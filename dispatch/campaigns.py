"""Campaigns: check-ins, task assignments and announcements to many people at once."""

from __future__ import annotations

from sqlalchemy.orm import Session

from dispatch.models import OutboxMessage
from dispatch.senders import numbered_choices
from registry.models import Channel, Person


def text_for_channel(
    session: Session, *, message: OutboxMessage, person: Person, channel: Channel
) -> tuple[str, list[list[dict[str, str]]] | None]:
    """The text and buttons of ``message`` written for another channel."""
    if channel == Channel.SMS:
        return numbered_choices(message.text, message.buttons), message.buttons
    return message.text, message.buttons
