"""Which replies of a claimed batch are plain "I'm OK" answers to open check-ins.

During a check-in almost every reply is one: a press of "I'm OK", a "1", "ok", "כן". Those are
decided here for the whole batch from a few statements (the senders' conversations, the people
behind them, the staff among them, the open check-ins, the latest messages sent), by the rules
of :func:`bots.inbound.route_to_dispatcher` and :func:`dispatch.responses.take_campaign_reply`
for an OK, and then written in bulk by :func:`dispatch.responses.take_checkin_answers`.

Everything else keeps the per-message path, in the order it came: help, tasks, staff, stop and
start words, dialog steps, late answers, words we cannot read, and any reply whose sender or
person already had an earlier reply in the batch (so a sender's second message sees the state
the first one left).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from bots.inbound import AT_REST, CARRIER_WORDS
from bots.models import Conversation
from bots.officers import STATE as OFFICER_STATE
from bots.officers import command_of
from bots.staff_pin import PENDING as PIN_PENDING
from bots.words import checkin_answer, clean, command_in, fold
from dispatch.channels.base import Delivery
from dispatch.models import Answer
from dispatch.responses import (
    REPLY_WINDOW,
    CheckinAnswer,
    OpenCheckin,
    latest_campaign_buttons,
    latest_kinds,
    open_checkins,
)
from dispatch.senders import choice_from_reply
from registry.bulk import among
from registry.models import Channel, Person, PersonStatus
from registry.staff import StaffMember


@dataclass(frozen=True)
class Stored:
    """A claimed inbox row, decoded."""

    inbox_id: int
    delivery: Delivery | None  # None: it did not decode, or it is to be parked
    received_at: datetime
    sender: str | None = None  # the inbox's sender key: one sender's rows keep their order


@dataclass(frozen=True)
class Quick:
    """A reply the batch path takes: its answer, and whether the inbox row names the person (as
    the per-message path sets it for typed answers, not for button presses)."""

    inbox_id: int
    answer: CheckinAnswer
    names_person: bool


@dataclass(frozen=True)
class _Candidate:
    row: Stored
    channel: Channel
    address: str
    text: str  # cleaned ("" for a button)
    campaign_id: int | None  # a button c:<campaign>:ok
    word: bool = False  # a word for OK (else a number, or a button)


def split(session: Session, rows: Sequence[Stored]) -> tuple[list[Quick], list[int]]:
    """The batch's plain check-in answers, and the ids left for the per-message path (in order)."""
    candidates: dict[int, _Candidate] = {}
    for row in rows:
        candidate = _candidate(row)
        if candidate is not None:
            candidates[row.inbox_id] = candidate
    if not candidates:
        return [], [row.inbox_id for row in rows]
    keys = {(c.channel, c.address) for c in candidates.values()}
    conversations = _conversations(session, keys)
    staff = _staff(session, keys)
    people = _people(session, keys, conversations)
    person_ids = {person.id for person in people.values()}
    since = min(c.row.received_at for c in candidates.values()) - REPLY_WINDOW
    checkins = open_checkins(session, person_ids=person_ids, since=since)
    typed = {
        people[(c.channel, c.address)].id
        for c in candidates.values()
        if c.campaign_id is None and (c.channel, c.address) in people
    }
    kinds = latest_kinds(session, person_ids=typed)
    numbered = {
        people[(c.channel, c.address)].id
        for c in candidates.values()
        if c.campaign_id is None and not c.word and (c.channel, c.address) in people
    }
    buttons = latest_campaign_buttons(session, person_ids=numbered, since=since)

    quick: list[Quick] = []
    slow: list[int] = []
    seen_senders: set[object] = set()
    seen_people: set[int] = set()
    for row in rows:
        candidate = candidates.get(row.inbox_id)
        key = (candidate.channel, candidate.address) if candidate else _sender(row)
        person = people.get(key) if key is not None else None
        senders = {key, row.sender} - {None}
        first = not senders & seen_senders and (person is None or person.id not in seen_people)
        seen_senders |= senders
        if person is not None:
            seen_people.add(person.id)
        answered = None
        if first and candidate is not None and person is not None and key not in staff:
            answered = _answered(
                candidate,
                person=person,
                conversation=conversations.get(key) if key else None,
                open_now=[
                    c
                    for c in checkins.get(person.id, [])
                    if c.campaign.started_at >= row.received_at - REPLY_WINDOW
                ],
                latest_kind=kinds.get(person.id),
                latest_buttons=_within(buttons.get(person.id), row.received_at - REPLY_WINDOW),
            )
        if answered is None or candidate is None or person is None:
            slow.append(row.inbox_id)
            continue
        quick.append(
            Quick(
                inbox_id=row.inbox_id,
                answer=CheckinAnswer(
                    person=person,
                    channel=candidate.channel,
                    address=_address(person, candidate.channel),
                    answered=answered,
                    now=row.received_at,
                ),
                names_person=candidate.campaign_id is None,
            )
        )
    return quick, slow


def _within(
    latest: tuple[list[list[dict[str, str]]] | None, datetime] | None, since: datetime
) -> list[list[dict[str, str]]] | None:
    """The latest campaign message's buttons if it was created inside this reply's window."""
    if latest is None or latest[1] < since:
        return None
    return latest[0]


def _address(person: Person, channel: Channel) -> str:
    """Where the acknowledgement goes, as ``dispatch.escalation.send_to`` addresses it."""
    return (person.phone if channel == Channel.SMS else str(person.telegram_chat_id)) or ""


def _sender(row: Stored) -> tuple[Channel, str] | None:
    if row.delivery is None:
        return None
    return row.delivery.inbound.channel, row.delivery.inbound.address


def _candidate(row: Stored) -> _Candidate | None:
    """A reply that may be a plain OK, judged from its words alone (no database yet)."""
    delivery = row.delivery
    if delivery is None or delivery.ignored or delivery.group_chat:
        return None
    inbound = delivery.inbound
    if inbound.channel not in (Channel.TELEGRAM, Channel.SMS) or inbound.contact_phone:
        return None
    if inbound.button is not None:
        parts = inbound.button.split(":")
        if len(parts) == 3 and parts[0] == "c" and parts[1].isdecimal() and parts[2] == "ok":
            return _Candidate(row, inbound.channel, inbound.address, "", int(parts[1]))
        return None
    text = clean(inbound.text)
    folded = fold(text)
    if not folded or folded in CARRIER_WORDS or command_of(text) is not None:
        return None
    word = checkin_answer(text) == Answer.OK
    if not word and not text.strip().rstrip(".").isdecimal():
        return None  # only a word for OK or a number ("1": the check-in's first button)
    return _Candidate(row, inbound.channel, inbound.address, text, None, word)


def _answered(
    candidate: _Candidate,
    *,
    person: Person,
    conversation: Conversation | None,
    open_now: list[OpenCheckin],
    latest_kind: str | None,
    latest_buttons: list[list[dict[str, str]]] | None,
) -> list[OpenCheckin] | None:
    """The check-ins this reply answers "OK" as the per-message path would, or None when that
    path must decide (anything but an OK to open check-ins)."""
    if not open_now:
        return None  # a late answer, or no check-in at all: the per-message path words it
    if conversation is not None and (
        isinstance(conversation.draft.get(OFFICER_STATE), dict)
        or isinstance(conversation.draft.get(PIN_PENDING), dict)
    ):
        return None
    if candidate.channel == Channel.SMS and not person.phone:
        return None
    if candidate.channel == Channel.TELEGRAM and person.telegram_chat_id is None:
        return None
    if candidate.campaign_id is not None:
        chosen = [c for c in open_now if c.campaign.id == candidate.campaign_id]
        if not chosen:
            return None  # that check-in is closed or answered: a late answer
        return [chosen[0], *(c for c in open_now if c is not chosen[0])]
    if person.status != PersonStatus.ACTIVE:
        return None  # opted out: their words are for the bot
    if command_in(candidate.text, person.language) is not None:
        return None
    talking = latest_kind is None or latest_kind == "reply"
    step = conversation.step if conversation is not None else None
    if talking and not (candidate.word and (step is None or step in AT_REST)):
        return None  # they are answering the bot's question
    data = choice_from_reply(candidate.text, latest_buttons) if latest_buttons else None
    if data is not None:
        parts = data.split(":")
        if len(parts) != 3 or parts[0] != "c" or parts[2] != "ok":
            return None  # "1" accepts a task, or means help: the per-message path
        chosen = [c for c in open_now if str(c.campaign.id) == parts[1]]
        if not chosen:
            return None
        return [chosen[0], *(c for c in open_now if c is not chosen[0])]
    return open_now if candidate.word else None


def _conversations(
    session: Session, keys: set[tuple[Channel, str]]
) -> dict[tuple[Channel, str], Conversation]:
    found: dict[tuple[Channel, str], Conversation] = {}
    for channel in (Channel.TELEGRAM, Channel.SMS):
        addresses = sorted(address for c, address in keys if c == channel)
        for start in range(0, len(addresses), 2000):
            for conversation in session.scalars(
                select(Conversation).where(
                    Conversation.channel == channel,
                    among(session, Conversation.address, addresses[start : start + 2000]),
                )
            ):
                found[(channel, conversation.address)] = conversation
    return found


def _staff(session: Session, keys: set[tuple[Channel, str]]) -> set[tuple[Channel, str]]:
    """The senders who are active staff: their messages go through the officers' path."""
    chats = [int(a) for c, a in keys if c == Channel.TELEGRAM and a.lstrip("-").isdecimal()]
    phones = [a for c, a in keys if c == Channel.SMS]
    found: set[tuple[Channel, str]] = set()
    for chat, phone in session.execute(
        select(StaffMember.telegram_chat_id, StaffMember.phone).where(
            StaffMember.active.is_(True),
            or_(
                among(session, StaffMember.telegram_chat_id, chats),
                among(session, StaffMember.phone, phones),
            ),
        )
    ):
        if chat is not None:
            found.add((Channel.TELEGRAM, str(chat)))
        if phone is not None:
            found.add((Channel.SMS, phone))
    return found & keys


def _people(
    session: Session,
    keys: set[tuple[Channel, str]],
    conversations: dict[tuple[Channel, str], Conversation],
) -> dict[tuple[Channel, str], Person]:
    """Who each sender is, as ``bots.inbound._known_person`` finds them: the conversation's
    person unless erased, else the live person holding that chat id or phone (lowest id)."""
    people: dict[tuple[Channel, str], Person] = {}
    by_id = {
        key: conversation.person_id
        for key, conversation in conversations.items()
        if conversation.person_id is not None
    }
    if by_id:
        ids = sorted(set(by_id.values()))
        loaded = {
            person.id: person
            for start in range(0, len(ids), 2000)
            for person in session.scalars(
                select(Person).where(
                    among(session, Person.id, ids[start : start + 2000]),
                    Person.status != PersonStatus.ERASED,
                )
            )
        }
        for key, person_id in by_id.items():
            if person_id in loaded:
                people[key] = loaded[person_id]
    rest = keys - people.keys()
    chats = sorted(int(a) for c, a in rest if c == Channel.TELEGRAM and a.lstrip("-").isdecimal())
    phones = sorted(a for c, a in rest if c != Channel.TELEGRAM or not a.lstrip("-").isdecimal())
    for start in range(0, max(len(chats), len(phones)), 2000):
        chunk_chats = set(chats[start : start + 2000])
        chunk_phones = phones[start : start + 2000]
        for person in session.scalars(
            select(Person)
            .where(
                Person.status != PersonStatus.ERASED,
                or_(
                    and_(
                        Person.telegram_chat_id.is_not(None),
                        among(session, Person.telegram_chat_id, sorted(chunk_chats)),
                    ),
                    among(session, Person.phone, chunk_phones),
                ),
            )
            .order_by(Person.id.desc())  # the lowest id is written last and wins
        ):
            if person.telegram_chat_id is not None and person.telegram_chat_id in chunk_chats:
                key = (Channel.TELEGRAM, str(person.telegram_chat_id))
                if key in rest:
                    people[key] = person
            if person.phone is not None:
                for channel in (Channel.SMS, Channel.TELEGRAM):
                    key = (channel, person.phone)
                    if key in rest:
                        people[key] = person
    return people
