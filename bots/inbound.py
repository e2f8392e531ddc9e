"""What happens to every inbound Telegram update and SMS: stored first, acted on after.

1. :func:`accept` (the webhook, or the poller) stores it in the inbox under its provider key
   (``tg:<update_id>`` / ``sms:<MessageSid>``) and commits; only then is the provider answered.
   A redelivery hits that key and is acknowledged without being stored again.
2. ``bots.processor`` claims the stored rows and runs :func:`process` on each, in a unit of work
   of its own, one sender's messages in the order they came:
3. messages the bots do not act on (edited messages, group chats) stop here;
4. :func:`route_to_dispatcher` may claim it: campaign answers belong to the dispatcher
   (``dispatch.responses.take_campaign_reply``);
5. the sender's flood allowance is checked;
6. the conversation engine answers, and the replies go to the outbox in the same transaction
   (one outbound path: the dispatcher's workers send them).

:func:`handle_inbound` does both steps in one transaction, for tests and tools that need no
acknowledgement.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bots import officers, render
from bots.dialog import Dialog, Inbound
from bots.enrolment import person_at
from bots.flood import DEFAULT_POLICY, FloodPolicy, admit
from bots.models import Conversation
from bots.prompts import Prompt
from bots.words import CARRIER_HELP, CARRIER_OPT_IN, CARRIER_OPT_OUT, command_in, fold
from config.i18n import t
from config.languages import DEFAULT_LANGUAGE, Language
from config.settings import Settings
from dispatch.models import InboundMessage, OutboxMessage, Priority
from dispatch.outbox import enqueue
from dispatch.responses import take_campaign_reply
from registry.bulk import table_of
from registry.errors import InvalidPhone
from registry.models import Channel, Person, PersonStatus
from registry.phones import normalise_phone
from registry.staff import verify_telegram

CARRIER_WORDS = CARRIER_OPT_OUT | CARRIER_OPT_IN | CARRIER_HELP


@dataclass(frozen=True)
class Delivery:
    """One inbound update as the edge saw it. ``payload`` is stored in the inbox as it came."""

    provider_key: str
    inbound: Inbound
    payload: dict[str, Any] = field(default_factory=dict)
    group_chat: bool = False  # a Telegram group: the bot talks to people one to one only
    addressed_to_bot: bool = False  # in a group: a /command
    ignored: bool = False  # edited messages, channel posts, membership changes: kept, not acted on


@dataclass(frozen=True)
class Outcome:
    duplicate: bool = False
    processed: bool = False
    slowed: bool = False
    replies: int = 0


def sender_key(channel: Channel, address: str) -> str:
    """The inbox's ordering key for one sender: a digest, not another copy of their phone."""
    return hashlib.sha256(f"{channel.value}:{address}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Arrival:
    """What the webhook stores: the key, who sent it (for their order) and the payload as it came.

    Nothing more is parsed before the acknowledgement; the processor turns the payload into a
    :class:`Delivery` (``bots.processor.decoders``).
    """

    provider_key: str
    channel: Channel
    address: str
    payload: dict[str, Any]


def arrival_of(delivery: Delivery) -> Arrival:
    return Arrival(
        provider_key=delivery.provider_key,
        channel=delivery.inbound.channel,
        address=delivery.inbound.address,
        payload=delivery.payload,
    )


def accept(session: Session, *, delivery: Delivery, now: datetime) -> bool:
    """Store one delivery in the inbox, unprocessed; False if its key was already there."""
    return delivery.provider_key in accept_many(session, arrivals=[arrival_of(delivery)], now=now)


def accept_many(session: Session, *, arrivals: list[Arrival], now: datetime) -> set[str]:
    """Store arrivals in the inbox, unprocessed; returns the keys that were new.

    One ``INSERT ... ON CONFLICT DO NOTHING``: a delivery racing in on two connections is stored
    once, without an error for the loser. The caller commits, then acknowledges.
    """
    if not arrivals:
        return set()
    values = [
        {
            "provider_key": arrival.provider_key,
            "channel": arrival.channel,
            "payload": arrival.payload,
            "received_at": now,
            "sender": sender_key(arrival.channel, arrival.address),
            "attempts": 0,
        }
        for arrival in arrivals
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = table_of(InboundMessage)
    # One statement for any number of rows (executemany with "insertmanyvalues"), so it is
    # compiled once and cached: rendering a fresh multi-row VALUES for every batch cost more
    # than the database's work.
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["provider_key"])
        .returning(table.c.provider_key)
    )
    return set(session.execute(statement, values).scalars())


def handle_inbound(
    session: Session,
    *,
    delivery: Delivery,
    dialog: Dialog,
    now: datetime,
    flood: FloodPolicy = DEFAULT_POLICY,
) -> Outcome:
    """Store, de-duplicate and process one inbound message at once (the caller commits)."""
    stored = _store(session, delivery, now)
    if stored is None:
        return Outcome(duplicate=True)
    return process(session, stored=stored, delivery=delivery, dialog=dialog, now=now, flood=flood)


def process(
    session: Session,
    *,
    stored: InboundMessage,
    delivery: Delivery,
    dialog: Dialog,
    now: datetime,
    flood: FloodPolicy = DEFAULT_POLICY,
) -> Outcome:
    """Route and answer one stored message (the caller commits). ``now`` is when it came."""
    inbound = delivery.inbound
    if delivery.ignored or delivery.group_chat:
        stored.processed_at = now
        if delivery.group_chat and delivery.addressed_to_bot:
            _send(
                session,
                inbound.channel,
                inbound.address,
                None,
                DEFAULT_LANGUAGE,
                [Prompt(text=t(DEFAULT_LANGUAGE, "bot.group.private"))],
            )
            return Outcome(processed=True, replies=1)
        return Outcome(processed=True)
    staff = _staff(session, delivery=delivery, dialog=dialog, now=now, flood=flood)
    if staff is not None:
        stored.processed_at = now
        return Outcome(processed=True, replies=staff)
    if route_to_dispatcher(session, delivery=delivery, inbox=stored, now=now):
        stored.processed_at = now
        return Outcome(processed=True)

    conversation = _conversation(session, inbound.channel, inbound.address, now)
    admission = admit(conversation, now=now, policy=flood)
    language = conversation.language or DEFAULT_LANGUAGE
    if not admission.admitted:
        stored.processed_at, stored.error = now, "slowed down: not processed"
        stored.person_id = conversation.person_id
        conversation.updated_at = now
        if admission.warn:
            prompt = Prompt(text=t(language, "bot.error.slow_down"))
            _send(
                session,
                inbound.channel,
                inbound.address,
                conversation.person_id,
                language,
                [prompt],
            )
        return Outcome(processed=False, slowed=True, replies=int(admission.warn))

    prompts = dialog.respond(session, conversation, inbound, now=now)
    language = conversation.language or DEFAULT_LANGUAGE
    sent = _send(
        session, inbound.channel, inbound.address, conversation.person_id, language, prompts
    )
    stored.processed_at = now
    if erased(session, conversation):
        stored.payload = {}  # they erased their data just now: keep no text of theirs
    else:
        stored.person_id = conversation.person_id
    return Outcome(processed=True, replies=sent)


def _staff(
    session: Session, *, delivery: Delivery, dialog: Dialog, now: datetime, flood: FloodPolicy
) -> int | None:
    """Officer and coordinator commands (bots.officers); the replies sent, or None if not one.

    A staff member sharing their OWN contact in a private Telegram chat verifies that chat for
    staff commands; unless the dialog is asking for that phone, that is all the message does.
    """
    inbound = delivery.inbound
    conversation = session.scalar(
        select(Conversation).where(
            Conversation.channel == inbound.channel, Conversation.address == inbound.address
        )
    )
    if (
        inbound.channel == Channel.TELEGRAM
        and inbound.contact_phone is not None
        and inbound.contact_is_sender
        and inbound.address.lstrip("-").isdigit()
    ):
        try:
            phone = normalise_phone(inbound.contact_phone, region=dialog.region)
        except InvalidPhone:
            return None
        member = verify_telegram(session, phone=phone, chat_id=int(inbound.address), now=now)
        if member is None or (
            conversation is not None and conversation.step in ("phone", "phone_code")
        ):
            return None
        language = (conversation.language if conversation else None) or DEFAULT_LANGUAGE
        prompt = Prompt(text=t(language, "officer.verified"))
        return _send(session, inbound.channel, inbound.address, None, language, [prompt])
    if not officers.claims(
        session,
        conversation=conversation,
        channel=inbound.channel,
        address=inbound.address,
        text=inbound.text,
        button=inbound.button,
    ):
        return None
    if conversation is None:
        conversation = _conversation(session, inbound.channel, inbound.address, now)
    if not admit(conversation, now=now, policy=flood).admitted:
        return 0  # a flood of commands (or refusals to audit) is dropped, as any flood is
    prompts = officers.respond(
        session,
        conversation=conversation,
        channel=inbound.channel,
        address=inbound.address,
        text=inbound.text,
        button=inbound.button,
        profile=dialog.profile,
        settings=dialog.settings or Settings.model_construct(),
        now=now,
    )
    language = conversation.language or DEFAULT_LANGUAGE
    return _send(session, inbound.channel, inbound.address, None, language, prompts)


def erased(session: Session, conversation: Conversation) -> bool:
    """Whether this turn deleted the conversation (the person erased their data)."""
    return conversation in session.deleted or inspect(conversation).deleted


def route_to_dispatcher(
    session: Session, *, delivery: Delivery, inbox: InboundMessage, now: datetime
) -> bool:
    """Campaign answers go to the dispatcher before the conversation engine sees anything.

    Taken: Telegram buttons ``c:`` (check-ins) and ``t:`` (tasks), always (one from someone we
    do not know is acknowledged and dropped rather than misread as a dialog answer); and text
    from a registered person whose latest message from us was a campaign message (a check-in,
    reminder, task...), not a bot reply, so "1" after a check-in means "I'm OK" while "1" after
    the bot's menu means the menu's first choice. Carrier keywords and bot commands always stay
    with the bots: STOP must work whatever was sent last.
    """
    inbound = delivery.inbound
    button = inbound.button
    if button is not None and not button.startswith(("c:", "t:")):
        return False
    person = _known_person(session, inbound.channel, inbound.address)
    if button is not None:
        if person is not None:
            take_campaign_reply(
                session, person=person, channel=inbound.channel, callback_data=button, now=now
            )
        return True
    text = inbound.text
    if person is None or not text or not fold(text) or person.status == PersonStatus.OPTED_OUT:
        return False  # an opted-out person's words (START, YES...) are for the bot
    if fold(text) in CARRIER_WORDS or command_in(text, person.language) is not None:
        return False
    latest = session.scalars(
        select(OutboxMessage.kind)
        .where(OutboxMessage.person_id == person.id)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
    if latest is None or latest == "reply":
        return False  # they are talking with the bot
    inbox.person_id = person.id
    return take_campaign_reply(session, person=person, channel=inbound.channel, text=text, now=now)


def _known_person(session: Session, channel: Channel, address: str) -> Person | None:
    conversation = session.scalar(
        select(Conversation).where(Conversation.channel == channel, Conversation.address == address)
    )
    if conversation is not None and conversation.person_id is not None:
        person = session.get(Person, conversation.person_id)
        if person is not None and person.status != PersonStatus.ERASED:
            return person
    return person_at(session, channel, address)


def tell_to_try_again(session: Session, *, delivery: Delivery) -> None:
    """After processing failed for good: ask the sender to write again (groups get nothing)."""
    if delivery.group_chat or delivery.ignored:
        return
    conversation = session.scalar(
        select(Conversation).where(
            Conversation.channel == delivery.inbound.channel,
            Conversation.address == delivery.inbound.address,
        )
    )
    language = (conversation.language if conversation else None) or DEFAULT_LANGUAGE
    person_id = conversation.person_id if conversation else None
    _send(
        session,
        delivery.inbound.channel,
        delivery.inbound.address,
        person_id,
        language,
        [Prompt(text=t(language, "bot.error.internal"))],
    )


def _store(session: Session, delivery: Delivery, now: datetime) -> InboundMessage | None:
    exists = session.scalar(
        select(InboundMessage.id).where(InboundMessage.provider_key == delivery.provider_key)
    )
    if exists is not None:
        return None
    message = InboundMessage(
        provider_key=delivery.provider_key,
        channel=delivery.inbound.channel,
        payload=delivery.payload,
        received_at=now,
        sender=sender_key(delivery.inbound.channel, delivery.inbound.address),
        attempts=0,
    )
    session.add(message)
    session.flush()
    return message


def _conversation(session: Session, channel: Channel, address: str, now: datetime) -> Conversation:
    conversation = session.scalar(
        select(Conversation).where(Conversation.channel == channel, Conversation.address == address)
    )
    if conversation is None:
        conversation = Conversation(
            channel=channel, address=address, step="", draft={}, updated_at=now, allowance=0.0
        )
        session.add(conversation)
        session.flush()
    return conversation


def _send(
    session: Session,
    channel: Channel,
    address: str,
    person_id: int | None,
    language: Language,
    prompts: list[Prompt],
) -> int:
    count = 0
    for prompt in prompts:
        if channel == Channel.TELEGRAM:
            rendered = [render.for_telegram(prompt, language)]
        else:
            rendered = render.for_sms(prompt, language)
        for message in rendered:
            enqueue(
                session,
                channel=channel,
                address=address,
                text=message.text,
                person_id=person_id,
                buttons=message.buttons,
                priority=Priority.INTERACTIVE,
                kind="reply",
            )
            count += 1
    return count
