"""What happens to every inbound Telegram update and SMS: stored first, acted on after.

1. :func:`accept` (the webhook, or the poller) stores it in the inbox under its provider key
   (``tg:<update_id>`` / ``sms:<MessageSid>``) and commits; only then is the provider answered.
   A redelivery hits that key and is acknowledged without being stored again.
2. ``bots.processor`` claims the stored rows and runs :func:`process` on each, in a unit of work
   of its own, one sender's messages in the order they came:
3. messages the bots do not act on (edited messages, group chats) stop here;
4. :func:`route_offer_answer` may claim it: the answer to an offer of a role or a buddy pair
   (``dispatch.offers``); then :func:`route_to_dispatcher`: campaign answers belong to the dispatcher
   (``dispatch.responses.take_campaign_reply``); so does a request for help in words at any
   time (:func:`route_help_request`, ``dispatch.help.request_help``);
5. the sender's flood allowance is checked;
6. the conversation engine answers, and the replies go to the outbox in the same transaction
   (one outbound path: the dispatcher's workers send them).

:func:`handle_inbound` does both steps in one transaction, for tests and tools that need no
acknowledgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bots import officers, staff_pin
from bots.dialog import ASKING_FOR_HELP, Dialog, Step
from bots.enrolment import person_at
from bots.flood import DEFAULT_POLICY, FloodPolicy, admit
from bots.models import Conversation
from bots.words import (
    CARRIER_HELP,
    CARRIER_OPT_IN,
    CARRIER_OPT_OUT,
    Command,
    asks_for_help,
    checkin_answer,
    clean,
    command_in,
    fold,
    need_in,
)
from config.i18n import t
from config.languages import DEFAULT_LANGUAGE, Language
from config.settings import Settings
from dispatch.channels import sms, telegram
from dispatch.channels.base import Arrival, Delivery, Inbound, Prompt
from dispatch.help import request_help
from dispatch.models import Answer, HelpNeed, InboundMessage, OutboxMessage, Priority
from dispatch.offers import offer_choice, take_offer_answer
from dispatch.outbox import enqueue
from dispatch.responses import has_open_checkin, take_campaign_reply
from registry.bulk import table_of
from registry.digests import sender_key
from registry.errors import InvalidPhone
from registry.models import Channel, Person, PersonStatus
from registry.phones import normalise_phone
from registry.staff import find_staff, language_of, verify_telegram

CARRIER_WORDS = CARRIER_OPT_OUT | CARRIER_OPT_IN | CARRIER_HELP
# Conversation steps that ask nothing: a word for "yes" there can only answer a check-in.
AT_REST = frozenset({Step.NEW.value, Step.MENU.value})


@dataclass(frozen=True)
class Outcome:
    duplicate: bool = False
    processed: bool = False
    slowed: bool = False
    replies: int = 0


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
            "payload": storable(arrival.payload),
            "received_at": arrival.received_at or now,
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


def storable(value: Any) -> Any:
    """A payload as the inbox can keep it: PostgreSQL's JSON cannot hold U+0000, and a message
    must be stored before anything else happens to it, so a NUL becomes U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


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
    staff = _staff(session, stored=stored, delivery=delivery, dialog=dialog, now=now, flood=flood)
    if staff is not None:
        stored.processed_at = now
        return Outcome(processed=True, replies=staff)
    if (
        route_offer_answer(session, delivery=delivery, inbox=stored, dialog=dialog, now=now)
        or route_to_dispatcher(session, delivery=delivery, inbox=stored, now=now)
        or route_help_request(session, delivery=delivery, inbox=stored, now=now, dialog=dialog)
    ):
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
    session: Session,
    *,
    stored: InboundMessage,
    delivery: Delivery,
    dialog: Dialog,
    now: datetime,
    flood: FloodPolicy,
) -> int | None:
    """Officer and coordinator commands (bots.officers); the replies sent, or None if not one.

    A staff member sharing their OWN contact in a private Telegram chat verifies that chat for
    staff commands; unless the dialog is asking for that phone, that is all the message does.
    A staff member's SMS passes the PIN gate (bots.staff_pin) first.
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
        and inbound.address.lstrip("-").isdecimal()
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
        language = language_of(session, member)
        prompt = Prompt(text=t(language, "officer.verified"))
        return _send(session, inbound.channel, inbound.address, None, language, [prompt])
    text, button = inbound.text, inbound.button
    sms = inbound.channel == Channel.SMS
    if not (sms and staff_pin.waiting_for_pin(conversation, text)) and not officers.claims(
        session,
        conversation=conversation,
        channel=inbound.channel,
        address=inbound.address,
        text=text,
        button=button,
    ):
        return None
    if conversation is None:
        conversation = _conversation(session, inbound.channel, inbound.address, now)
    if not admit(conversation, now=now, policy=flood).admitted:
        return 0  # a flood of commands (or refusals to audit) is dropped, as any flood is
    language = officers.language_for(session, conversation, inbound.channel, inbound.address)
    settings = dialog.settings or Settings.model_construct()
    member = find_staff(session, channel=inbound.channel, address=inbound.address) if sms else None
    if member is not None:
        passed = staff_pin.gate(
            session,
            member=member,
            conversation=conversation,
            text=text,
            button=button,
            decisive=officers.decisive(conversation, text),
            language=language,
            session_minutes=settings.staff_pin_session_minutes,
            now=now,
        )
        if isinstance(passed, staff_pin.Held):
            if passed.pin_attempt:
                stored.payload = {}  # a PIN, right or wrong, is kept nowhere
            return _send(session, inbound.channel, inbound.address, None, language, passed.prompts)
        if passed.pin_attempt:
            stored.payload = {}  # this SMS was the PIN that released the kept message
        text, button = passed.text, passed.button
    prompts = officers.respond(
        session,
        conversation=conversation,
        channel=inbound.channel,
        address=inbound.address,
        text=text,
        button=button,
        profile=dialog.profile,
        settings=settings,
        now=now,
    )
    language = officers.language_for(session, conversation, inbound.channel, inbound.address)
    return _send(session, inbound.channel, inbound.address, None, language, prompts)


def erased(session: Session, conversation: Conversation) -> bool:
    """Whether this turn deleted the conversation (the person erased their data)."""
    return conversation in session.deleted or inspect(conversation).deleted


def route_to_dispatcher(
    session: Session, *, delivery: Delivery, inbox: InboundMessage, now: datetime
) -> bool:
    """Campaign answers go to the dispatcher before the conversation engine sees anything.

    Taken: Telegram buttons ``c:`` (check-ins) and ``t:`` (tasks), always (one from someone we
    do not know is acknowledged and dropped rather than misread as a dialog answer); a word for
    help in any language ("help", "עזרה", "مساعدة"...) while a check-in waits for the person's
    answer, even when it is also a command or the carriers' HELP (which then gets the carriers'
    answer too: help is never hidden behind a menu); a word for OK in any language while a
    check-in waits and the person is not in the middle of a dialog question; and other text from
    a registered person whose latest message from us was a campaign message (a check-in,
    reminder, task...), not a bot reply, so "1" after a check-in means "I'm OK" while "1" after
    the bot's menu means the menu's first choice. Stop and start words always stay with the
    bots: STOP must work whatever was sent last.
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
    text = clean(inbound.text)
    folded = fold(text)
    if person is None or not folded or person.status == PersonStatus.OPTED_OUT:
        return False  # an opted-out person's words (START, YES...) are for the bot
    command = command_in(text, person.language)
    if folded in CARRIER_OPT_OUT | CARRIER_OPT_IN or (
        command is not None and command[0] in (Command.STOP, Command.JOIN)
    ):
        return False
    answer = checkin_answer(text)
    waiting = answer is not None and has_open_checkin(session, person=person, now=now)
    if waiting and answer == Answer.HELP:
        inbox.person_id = person.id
        take_campaign_reply(
            session, person=person, channel=inbound.channel, text=text, answer=answer, now=now
        )
        if inbound.channel == Channel.SMS and folded in CARRIER_HELP:
            # The carriers require HELP to be answered with who we are and how to stop.
            language = person.language or DEFAULT_LANGUAGE
            prompt = Prompt(text=t(language, "bot.help.sms"))
            _send(session, inbound.channel, inbound.address, person.id, language, [prompt])
        return True
    if folded in CARRIER_WORDS or command is not None:
        return False
    latest = session.scalars(
        select(OutboxMessage.kind)
        .where(OutboxMessage.person_id == person.id)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
    talking = latest is None or latest == "reply"
    if waiting and answer == Answer.OK and (not talking or _at_rest(session, inbound)):
        inbox.person_id = person.id
        return take_campaign_reply(
            session, person=person, channel=inbound.channel, text=text, answer=answer, now=now
        )
    if talking:
        return False  # they are talking with the bot
    inbox.person_id = person.id
    return take_campaign_reply(
        session, person=person, channel=inbound.channel, text=text, answer=answer, now=now
    )


def route_offer_answer(
    session: Session, *, delivery: Delivery, inbox: InboundMessage, dialog: Dialog, now: datetime
) -> bool:
    """Answers to an offer of a role or a buddy pair go to ``dispatch.offers``.

    Taken: Telegram buttons ``o:`` always (a stale or forged one is told the offer is gone), and
    the offer's own numbers (``dispatch.offers.ACCEPT_NUMBER``/``DECLINE_NUMBER``, which no
    check-in, task or menu uses) after an offer (a second answer is told it has been had), unless
    the bot has just asked them something (then a number is the dialog's, as "1" is after its
    menu).
    """
    inbound = delivery.inbound
    button = inbound.button
    if button is not None and not button.startswith("o:"):
        return False
    person = _known_person(session, inbound.channel, inbound.address)
    if button is not None:
        if person is not None:
            inbox.person_id = person.id
            take_offer_answer(
                session, person=person, channel=inbound.channel, data=button,
                profile=dialog.profile, now=now,
            )  # fmt: skip
        return True
    text = clean(inbound.text)
    if person is None or not text.rstrip(".").isdecimal():
        return False
    if person.status not in (PersonStatus.ACTIVE, PersonStatus.PAUSED):
        return False
    data = offer_choice(session, person=person, text=text, now=now)
    if data is None:
        return False
    latest = session.scalars(
        select(OutboxMessage.kind)
        .where(OutboxMessage.person_id == person.id)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
    if latest == "reply" and not _at_rest(session, inbound):
        return False  # the bot asked them a question: the number answers it
    inbox.person_id = person.id
    return take_offer_answer(
        session, person=person, channel=inbound.channel, data=data, profile=dialog.profile, now=now
    )


def route_help_request(
    session: Session,
    *,
    delivery: Delivery,
    inbox: InboundMessage,
    now: datetime,
    dialog: Dialog | None = None,
) -> bool:
    """A registered resident asking for help in words outside any check-in ("צריך עזרה, נגמרו
    התרופות") is recorded as a help request before the dialog sees it, whatever step it is at:
    help is never answered with a menu. A command word alone ("help", "עזרה") stays the bot's, and
    so do words while the bot asks about a request for help from its menu (they answer it: one
    request per message). Words that name no kind ("צריך עזרה") are followed, once the request
    is pushed, by one question about its kind (:meth:`Dialog.ask_help_kind`), when the
    conversation asks nothing else at the time."""
    inbound = delivery.inbound
    if inbound.button is not None or not asks_for_help(inbound.text):
        return False
    if _step(session, inbound) in ASKING_FOR_HELP:
        return False
    person = _known_person(session, inbound.channel, inbound.address)
    text = clean(inbound.text)
    if person is None or person.status != PersonStatus.ACTIVE:
        return False
    if fold(text) in CARRIER_WORDS or command_in(text, person.language) is not None:
        return False
    inbox.person_id = person.id
    resting = _at_rest(session, inbound)
    request = request_help(
        session,
        resident=person,
        need=need_in(text) or HelpNeed.OTHER,
        detail=text,
        now=now,
        channel=inbound.channel,
    )
    if dialog is not None and resting and request.alert.need in (None, HelpNeed.OTHER):
        conversation = _conversation(session, inbound.channel, inbound.address, now)
        conversation.person_id = person.id
        conversation.language = conversation.language or person.language
        prompts = dialog.ask_help_kind(
            session, conversation, person=person, alert_id=request.alert.id, now=now
        )
        language = conversation.language or DEFAULT_LANGUAGE
        _send(session, inbound.channel, inbound.address, person.id, language, prompts)
    return True


def _at_rest(session: Session, inbound: Inbound) -> bool:
    """Whether the person's conversation asks nothing now (a "yes" then answers no question)."""
    step = _step(session, inbound)
    return step is None or step in AT_REST


def _step(session: Session, inbound: Inbound) -> str | None:
    return session.scalar(
        select(Conversation.step).where(
            Conversation.channel == inbound.channel, Conversation.address == inbound.address
        )
    )


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
        payload=storable(delivery.payload),
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
            rendered = [telegram.render_prompt(prompt, language)]
        else:
            rendered = sms.render_prompt(prompt, language)
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
