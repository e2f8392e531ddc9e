"""The PIN gate in front of every staff message that arrives by SMS.

A sender number is not an identity: Twilio's signature proves only that Twilio delivered the SMS.
So a staff member's SMS is honoured only after their PIN (``registry.staff``): the first staff
SMS of a session is kept aside while the PIN is asked for, and carried out once the PIN is given;
the session then lasts ``HOSEN_STAFF_PIN_SESSION_MINUTES``. Starting or closing a campaign asks
for the PIN every time, even inside a session (:func:`bots.officers.decisive`). Telegram needs no
PIN: a Telegram chat is verified by its own user sharing the staff member's contact.

The gate sits where a staff SMS is recognised (``bots.inbound``), so every staff command,
present and future, passes it without knowing about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from bots.models import Conversation
from bots.words import CARRIER_HELP, CARRIER_OPT_IN, CARRIER_OPT_OUT, fold
from config.i18n import t
from config.languages import Language
from dispatch.channels.base import Prompt
from dispatch.models import Priority
from dispatch.outbox import enqueue
from registry.models import Channel
from registry.staff import PIN_ATTEMPTS, PinCheck, StaffMember, check_pin

PENDING = "_pin"  # the conversation draft key of the staff message waiting for the PIN
CARRIER_WORDS = CARRIER_OPT_OUT | CARRIER_OPT_IN | CARRIER_HELP


@dataclass(frozen=True)
class Proceed:
    """The gate let a staff message through: this one, or the one kept while the PIN was asked."""

    text: str | None
    button: str | None
    pin_attempt: bool = False  # this SMS was the PIN that released the kept message


@dataclass(frozen=True)
class Held:
    """The gate answered the message itself (asked for the PIN, refused it...)."""

    prompts: list[Prompt]
    pin_attempt: bool  # the message was a PIN try: its text must not be kept anywhere


def pending(conversation: Conversation | None) -> dict[str, Any] | None:
    """The staff message kept while the PIN is asked for, if any."""
    if conversation is None:
        return None
    kept = conversation.draft.get(PENDING)
    return kept if isinstance(kept, dict) else None


def waiting_for_pin(conversation: Conversation | None, text: str | None) -> bool:
    """Whether this SMS answers the gate's PIN question (STOP and HELP never do)."""
    return pending(conversation) is not None and not (text and fold(text) in CARRIER_WORDS)


def gate(
    session: Session,
    *,
    member: StaffMember,
    conversation: Conversation,
    text: str | None,
    button: str | None,
    decisive: bool,
    language: Language,
    session_minutes: int,
    now: datetime,
) -> Proceed | Held:
    """Let a staff SMS through, or ask for (or check) the PIN. The caller commits."""
    actor = f"sms:staff:{member.id}"
    kept = pending(conversation)
    if kept is not None and _stale(kept, now, session_minutes):
        _keep(conversation, None, now)  # an old "yes" is never carried out on a late PIN
        kept = None
    if kept is not None and not _is_command(text):
        result = check_pin(session, member=member, pin=text or "", actor=actor, now=now)
        if result == PinCheck.OK:
            _keep(conversation, None, now)
            member.sms_session_until = now + timedelta(minutes=session_minutes)
            return Proceed(text=kept.get("text"), button=kept.get("button"), pin_attempt=True)
        if result == PinCheck.WRONG:
            left = PIN_ATTEMPTS - member.pin_failures
            return Held([Prompt(text=t(language, "staff.pin.wrong", left=left))], True)
        _keep(conversation, None, now)
        if result == PinCheck.LOCKED:
            _tell_elsewhere(session, member, language)
        return Held([_refusal(language, result)], True)
    if member.pin_hash is None or member.pin_locked_at is not None:
        result = PinCheck.UNSET if member.pin_hash is None else PinCheck.LOCKED
        return Held([_refusal(language, result)], False)
    in_session = member.sms_session_until is not None and member.sms_session_until > now
    if in_session and not decisive:
        return Proceed(text=text, button=button)
    # Kept as the inbox keeps a payload: PostgreSQL's JSON cannot hold U+0000.
    held = text.replace("\x00", "\ufffd") if text else text
    _keep(conversation, {"text": held, "button": button, "at": now.isoformat()}, now)
    return Held([Prompt(text=t(language, "staff.pin.ask"))], False)


def _stale(kept: dict[str, Any], now: datetime, minutes: int) -> bool:
    try:
        at = datetime.fromisoformat(str(kept.get("at")))
    except ValueError:
        return True
    return now - at > timedelta(minutes=minutes)


def _is_command(text: str | None) -> bool:
    return (text or "").strip().startswith("/")


def _keep(conversation: Conversation, kept: dict[str, Any] | None, now: datetime) -> None:
    if kept is None:
        conversation.draft.pop(PENDING, None)
    else:
        conversation.draft[PENDING] = kept
    flag_modified(conversation, "draft")
    conversation.updated_at = now


def _refusal(language: Language, result: PinCheck) -> Prompt:
    key = "staff.pin.unset" if result == PinCheck.UNSET else "staff.pin.locked"
    return Prompt(text=t(language, key))


def _tell_elsewhere(session: Session, member: StaffMember, language: Language) -> None:
    """A locked PIN may be someone else trying: tell the member on Telegram, if they have it."""
    if member.telegram_chat_id is None:
        return
    enqueue(
        session,
        channel=Channel.TELEGRAM,
        address=str(member.telegram_chat_id),
        text=t(language, "staff.pin.locked_elsewhere"),
        priority=Priority.INTERACTIVE,
        kind="reply",
    )
