"""The conversation engine: sign-up and self-service, written once for Telegram and SMS alike.

The dialog is a small state machine over named steps. Each inbound message moves one
:class:`~bots.models.Conversation` row (step and draft answers) and yields the prompts to send;
channels only render those prompts (inline buttons or numbered SMS choices). Nothing here
touches the network, and nothing commits: the caller's unit of work does.

Registration order: language → who → name → phone (on Telegram, a typed number is confirmed with
a one-time code sent to it by SMS) → (authority) → zone → birth year →
volunteer: skills, languages, availability, vehicle, check-in capacity → resident: needs,
emergency contact → consent (registration; health data when needs were given; a guardian's
for a minor volunteer) → summary and confirm. "Back", "cancel" and "help" work at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from bots import enrolment
from bots.consent import CONSENT_VERSIONS, consent_text
from bots.enrolment import NEW_CONSENTS, PHONE_SOURCE
from bots.models import Conversation
from bots.prompts import Choice, Prompt, Request
from bots.words import (
    CARRIER_HELP,
    CARRIER_OPT_IN,
    CARRIER_OPT_IN_AFTER_STOP,
    CARRIER_OPT_OUT,
    Command,
    Word,
    clean,
    command_in,
    fold,
    is_word,
    language_of,
)
from config.i18n import t
from config.languages import ALL_LANGUAGES, DEFAULT_LANGUAGE, Language
from config.profile import AuthorityProfile, Profile
from config.settings import Settings
from registry import people
from registry.errors import InvalidPhone
from registry.models import (
    NEED_FLAGS,
    Authority,
    Channel,
    ConsentKind,
    Person,
    PersonStatus,
    PhoneSource,
)
from registry.phone_codes import Check, CodeRefused
from registry.phones import Phone, normalise_phone

MAX_NAME = 60
MAX_CAPACITY = 20
MIN_VOLUNTEER_AGE = 14
OLDEST = 110


class Step(StrEnum):
    NEW = ""
    LANGUAGE = "language"
    WHO = "who"
    NAME = "name"
    PHONE = "phone"
    PHONE_CODE = "phone_code"
    AUTHORITY = "authority"
    ZONE = "zone"
    BIRTH_YEAR = "birth"
    SKILLS = "skills"
    LANGUAGES = "langs"
    AVAILABILITY = "avail"
    VEHICLE = "vehicle"
    CAPACITY = "capacity"
    NEEDS = "needs"
    CONTACT_NAME = "ec_name"
    CONTACT_PHONE = "ec_phone"
    CONSENT = "consent"
    HEALTH_CONSENT = "health"
    GUARDIAN = "guardian"
    SUMMARY = "summary"
    MENU = "menu"
    UPDATE = "update"
    DELETE = "delete"
    STOPPED = "stopped"


REGISTRATION = (
    Step.LANGUAGE,
    Step.WHO,
    Step.NAME,
    Step.PHONE,
    Step.PHONE_CODE,
    Step.AUTHORITY,
    Step.ZONE,
    Step.BIRTH_YEAR,
    Step.SKILLS,
    Step.LANGUAGES,
    Step.AVAILABILITY,
    Step.VEHICLE,
    Step.CAPACITY,
    Step.NEEDS,
    Step.CONTACT_NAME,
    Step.CONTACT_PHONE,
    Step.CONSENT,
    Step.HEALTH_CONSENT,
    Step.GUARDIAN,
    Step.SUMMARY,
)
# Fields a registered person can change from the menu, in the order they are offered.
UPDATABLE = (
    Step.NAME,
    Step.WHO,
    Step.ZONE,
    Step.BIRTH_YEAR,
    Step.SKILLS,
    Step.LANGUAGES,
    Step.AVAILABILITY,
    Step.VEHICLE,
    Step.CAPACITY,
    Step.NEEDS,
    Step.CONTACT_NAME,
)
MULTI = (Step.SKILLS, Step.LANGUAGES, Step.NEEDS)
WHO_VALUES = ("volunteer", "resident", "both", "family")
AVAILABILITY_VALUES = ("both", "emergency", "routine")
CAPACITY_SHORTCUTS = ("1", "2", "3", "5")
# Draft keys starting with "_" are bookkeeping, not answers.
EDIT = "_edit"
# A typed number waiting for its one-time code, and whether it is a landline (no code possible).
CODE_PENDING = "_code_phone"
CODE_LANDLINE = "_code_landline"
RESEND, GO_ON = "resend", "go_on"


@dataclass(frozen=True)
class Inbound:
    """One thing a person sent, whatever the channel.

    ``button`` is a bot callback without its ``b:`` prefix (``step:value``). ``contact_phone`` is
    a shared contact's number and ``contact_is_sender`` says whether it is the sender's own.
    """

    channel: Channel
    address: str
    text: str | None = None
    button: str | None = None
    contact_phone: str | None = None
    contact_is_sender: bool = False
    location: tuple[float, float] | None = None
    unsupported: bool = False


@dataclass
class Turn:
    """Everything one answer needs; built per inbound message."""

    session: Session
    conversation: Conversation
    inbound: Inbound
    now: datetime
    person: Person | None
    replies: list[Prompt] = field(default_factory=list)

    @property
    def language(self) -> Language:
        return self.conversation.language or DEFAULT_LANGUAGE

    @property
    def draft(self) -> dict[str, Any]:
        return self.conversation.draft

    def say(self, key: str, /, **params: object) -> None:
        self.replies.append(Prompt(text=t(self.language, key, **params)))


class Invalid(Exception):
    """An answer the step cannot take; ``key`` is the catalog message that says why."""

    def __init__(self, key: str, /, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


class Stay(Exception):
    """The step took a partial answer (a toggled option) and asks again."""


class Dialog:
    """Sign-up and self-service for one municipality profile."""

    def __init__(self, *, profile: Profile, region: str, settings: Settings | None = None) -> None:
        self.profile = profile
        self.region = region
        # The service's settings (sending rates, time zone) for the officers' confirmations;
        # None in tests of the dialog alone: the defaults apply.
        self.settings = settings

    # ------------------------------------------------------------------ entry point
    def respond(
        self, session: Session, conversation: Conversation, inbound: Inbound, *, now: datetime
    ) -> list[Prompt]:
        """Take one inbound message, move the conversation, and return what to say."""
        turn = Turn(session, conversation, inbound, now, self._person(session, conversation))
        self._respond(turn)
        if conversation not in session.deleted and not inspect(conversation).deleted:
            # The draft is changed in place; a JSON column must be told.
            flag_modified(conversation, "draft")
            conversation.updated_at = now
        return turn.replies

    def _respond(self, turn: Turn) -> None:
        conv, inbound = turn.conversation, turn.inbound
        folded = fold(inbound.text)
        if conv.channel == Channel.SMS:
            if folded in CARRIER_OPT_OUT:
                return self._stop(turn, carrier=True)
            if folded in CARRIER_OPT_IN or (
                conv.step == Step.STOPPED and folded in CARRIER_OPT_IN_AFTER_STOP
            ):
                return self._join(turn, "")
            if folded in CARRIER_HELP:
                return self._help(turn)
        command = None if inbound.button else command_in(inbound.text, conv.language)
        if command is not None and conv.language is None:
            guessed = language_of(inbound.text)
            if guessed is not None:  # "הצטרפות" as a first message already says Hebrew
                conv.language = guessed
                turn.draft["language"] = guessed.value
        if conv.step == Step.STOPPED:
            if command and command[0] == Command.JOIN:
                return self._join(turn, command[1])
            if conv.channel == Channel.TELEGRAM:
                turn.say("bot.stopped.hint")
            return None  # after STOP an SMS number gets nothing more
        if inbound.unsupported:
            turn.say("bot.error.unsupported")
            return self._ask_current(turn)
        if inbound.button is not None:
            return self._button(turn, inbound.button)
        if command is not None:
            return self._command(turn, *command)
        if conv.step == Step.NEW and turn.person is None:
            return self._begin(turn)
        return self._answer(turn, inbound.text)

    # ------------------------------------------------------------------ commands
    def _command(self, turn: Turn, command: Command, argument: str) -> None:
        conv = turn.conversation
        registering = conv.step in REGISTRATION and EDIT not in turn.draft
        if command == Command.JOIN:
            return self._join(turn, argument)
        if command == Command.HELP:
            return self._help(turn)
        if command == Command.STOP:
            return self._stop(turn, carrier=False)
        if command == Command.BACK:
            return self._back(turn)
        if command == Command.CANCEL:
            return self._cancel(turn)
        if command == Command.LANGUAGE:
            turn.draft[EDIT] = True
            return self._ask(turn, Step.LANGUAGE)
        if turn.person is None:
            if registering:
                turn.say("bot.status.not_registered")
                return self._ask_current(turn)
            return self._begin(turn)
        if command == Command.STATUS:
            return self._menu(turn)
        if command == Command.UPDATE:
            return self._start_update(turn)
        if command == Command.DELETE:
            return self._ask(turn, Step.DELETE)
        raise AssertionError(command)  # pragma: no cover - every command is handled above

    def _join(self, turn: Turn, payload: str) -> None:
        group = enrolment.find_group(turn.session, payload) if payload else None
        person = turn.person
        if person is not None:
            if group is not None:
                enrolment.join_group(turn.session, person, group)
                turn.say("bot.group.joined", group=group.name)
            if people.opt_in(turn.session, person, actor=self._actor(turn), now=turn.now):
                turn.say("bot.stopped.resumed")
            return self._menu(turn)
        if group is not None:
            turn.draft["group"] = group.join_code
            authority = turn.session.get(Authority, group.authority_id)
            if authority is not None:
                turn.draft["authority"] = authority.code
        elif payload:
            turn.say("bot.group.unknown")
        resume = turn.draft.pop("_resume", None)
        if turn.conversation.step == Step.STOPPED:
            turn.conversation.step = resume or Step.NEW
        if turn.conversation.step in REGISTRATION:
            turn.say("bot.welcome.back")
            return self._ask_current(turn)
        return self._begin(turn)

    def _begin(self, turn: Turn) -> None:
        """A new conversation: ask the language first (in every language at once)."""
        if turn.conversation.language is None or "language" not in turn.draft:
            return self._ask(turn, Step.LANGUAGE)
        return self._advance(turn, Step.LANGUAGE)

    def _help(self, turn: Turn) -> None:
        key = f"bot.help.{turn.conversation.channel.value}"
        turn.say(key)
        if turn.conversation.step in (Step.NEW, Step.STOPPED):
            return None
        return self._ask_current(turn)

    def _stop(self, turn: Turn, *, carrier: bool) -> None:
        conv, person = turn.conversation, turn.person
        if person is not None:
            people.opt_out(turn.session, person, actor=self._actor(turn), now=turn.now)
            conv.draft = {}  # their details live in the registry; a draft may hold health data
        elif conv.step not in (Step.STOPPED, Step.NEW):
            turn.draft["_resume"] = conv.step
        conv.step = Step.STOPPED
        # Twilio answers the carrier words itself and refuses to send anything after them.
        if not (carrier and conv.channel == Channel.SMS):
            turn.say("bot.stopped.done")

    def _cancel(self, turn: Turn) -> None:
        if turn.person is not None:
            turn.conversation.draft = {}
            return self._menu(turn)
        language = turn.conversation.language
        turn.conversation.draft = {"language": language.value} if language else {}
        turn.conversation.step = Step.NEW
        turn.say("bot.cancelled")
        return None

    def _back(self, turn: Turn) -> None:
        step = turn.conversation.step
        if turn.person is not None and (step not in REGISTRATION or EDIT in turn.draft):
            # Registered: back from editing a field is the list of fields; else the menu.
            return self._ask(turn, Step.UPDATE) if step in REGISTRATION else self._menu(turn)
        if step not in REGISTRATION:
            return self._ask_current(turn)
        index = REGISTRATION.index(Step(step))
        for previous in reversed(REGISTRATION[:index]):
            if self._applies(turn, previous):
                return self._ask(turn, previous)
        return self._ask_current(turn)

    # ------------------------------------------------------------------ buttons and answers
    def _button(self, turn: Turn, data: str) -> None:
        step, _, value = data.partition(":")
        if step != turn.conversation.step:
            turn.say("bot.error.old_button")
            return self._ask_current(turn)
        if value == "_back":
            return self._back(turn)
        if value == "_cancel":
            return self._cancel(turn)
        if value == "_help":
            return self._help(turn)
        return self._answer(turn, None, value=value)

    def _answer(self, turn: Turn, text: str | None, *, value: str | None = None) -> None:
        step = Step(turn.conversation.step)
        if step == Step.NEW:
            return self._menu(turn)
        handler = self._handlers()[step]
        try:
            handler(turn, text, value)
        except Invalid as refusal:
            turn.say(refusal.key, **refusal.params)
            return self._ask_current(turn)
        except Stay:
            return self._ask_current(turn)
        return None

    def _handlers(self) -> dict[Step, Callable[[Turn, str | None, str | None], None]]:
        return {
            Step.LANGUAGE: self._on_language,
            Step.WHO: self._on_choice("who"),
            Step.NAME: self._on_name,
            Step.PHONE: self._on_phone,
            Step.PHONE_CODE: self._on_phone_code,
            Step.AUTHORITY: self._on_choice("authority"),
            Step.ZONE: self._on_zone,
            Step.BIRTH_YEAR: self._on_birth_year,
            Step.SKILLS: self._on_multi("skills"),
            Step.LANGUAGES: self._on_multi("langs"),
            Step.AVAILABILITY: self._on_choice("avail"),
            Step.VEHICLE: self._on_yes_no("vehicle"),
            Step.CAPACITY: self._on_capacity,
            Step.NEEDS: self._on_multi("needs"),
            Step.CONTACT_NAME: self._on_contact_name,
            Step.CONTACT_PHONE: self._on_contact_phone,
            Step.CONSENT: self._on_consent,
            Step.HEALTH_CONSENT: self._on_health_consent,
            Step.GUARDIAN: self._on_guardian,
            Step.SUMMARY: self._on_summary,
            Step.MENU: self._on_menu,
            Step.UPDATE: self._on_update,
            Step.DELETE: self._on_delete,
            Step.STOPPED: lambda turn, text, value: None,
        }

    def _pick(self, turn: Turn, step: Step, text: str | None, value: str | None) -> str:
        """The value of the one choice the answer names (button, number, word or keyword)."""
        choices = self._choices(turn, step)
        values = [choice.value for choice in choices]
        if value is not None:
            if value in values:
                return value
            raise Invalid("bot.error.choice")
        found = self._match(turn, step, choices, text)
        if found is None:
            raise Invalid("bot.error.choice")
        return found

    def _match(
        self, turn: Turn, step: Step, choices: tuple[Choice, ...], text: str | None
    ) -> str | None:
        folded = fold(text)
        if not folded:
            return None
        number = clean(text).rstrip(".)")
        if number.isdigit():
            index = int(number) - 1
            return choices[index].value if 0 <= index < len(choices) else None
        if folded.isdigit():
            return None  # "-1", "#2": not clearly one of the numbers offered
        english = {c.value: fold(c.label) for c in self._choices(turn, step, Language.EN)}
        for choice in choices:
            if folded in (fold(choice.label), fold(choice.value), english.get(choice.value)):
                return choice.value
            if choice.value in Word.__members__.values() and is_word(
                text, turn.conversation.language, Word(choice.value)
            ):
                return choice.value
        return None

    def _on_language(self, turn: Turn, text: str | None, value: str | None) -> None:
        chosen = Language(self._pick(turn, Step.LANGUAGE, text, value))
        turn.conversation.language = chosen
        turn.draft["language"] = chosen.value
        if turn.person is not None and turn.conversation.step == Step.LANGUAGE:
            turn.person.language = chosen
            turn.draft.pop(EDIT, None)
            turn.say("bot.language.changed")
            return self._menu(turn)
        turn.draft.pop(EDIT, None)  # a change of language mid-registration: carry on
        return self._advance(turn, Step.LANGUAGE)

    def _on_choice(self, key: str) -> Callable[[Turn, str | None, str | None], None]:
        def handle(turn: Turn, text: str | None, value: str | None) -> None:
            step = Step(turn.conversation.step)
            turn.draft[key] = self._pick(turn, step, text, value)
            if key == "authority":
                turn.draft.pop("zone", None)
            self._advance(turn, step)

        return handle

    def _on_yes_no(self, key: str) -> Callable[[Turn, str | None, str | None], None]:
        def handle(turn: Turn, text: str | None, value: str | None) -> None:
            step = Step(turn.conversation.step)
            turn.draft[key] = self._pick(turn, step, text, value) == Word.YES
            self._advance(turn, step)

        return handle

    def _on_multi(self, key: str) -> Callable[[Turn, str | None, str | None], None]:
        def handle(turn: Turn, text: str | None, value: str | None) -> None:
            step = Step(turn.conversation.step)
            choices = self._choices(turn, step)
            pending = f"_{key}"
            if value is not None:  # a Telegram button: toggle, or finish with "done"
                selected = set(turn.draft.get(pending, turn.draft.get(key, [])))
                if value == Word.DONE:
                    turn.draft[key] = sorted(selected)
                    turn.draft.pop(pending, None)
                    return self._advance(turn, step)
                if value == Word.NONE:
                    selected = set()
                elif value in {c.value for c in choices}:
                    selected ^= {value}
                else:
                    raise Invalid("bot.error.choice")
                turn.draft[pending] = sorted(selected)
                raise Stay
            turn.draft[key] = sorted(self._parse_many(turn, step, choices, text))
            turn.draft.pop(pending, None)
            return self._advance(turn, step)

        return handle

    def _parse_many(
        self, turn: Turn, step: Step, choices: tuple[Choice, ...], text: str | None
    ) -> set[str]:
        if not fold(text):
            raise Invalid("bot.error.choice")
        if is_word(text, turn.conversation.language, Word.NONE) or fold(text) == "0":
            return set()
        single = self._match(turn, step, choices, text)
        if single is not None:
            return set() if single == Word.NONE else {single}
        chosen: set[str] = set()
        for part in clean(text).replace("،", ",").replace(";", ",").split(","):
            if not fold(part):
                continue
            found = self._match(turn, step, choices, part)
            if found is not None:
                chosen.add(found)
                continue
            for token in clean(part).split():
                found = self._match(turn, step, choices, token)
                if found is None:
                    raise Invalid("bot.error.choice")
                chosen.add(found)
        chosen.discard(Word.NONE)
        return chosen

    def _on_name(self, turn: Turn, text: str | None, value: str | None) -> None:
        turn.draft["name"] = self._name(text)
        self._advance(turn, Step.NAME)

    @staticmethod
    def _name(text: str | None) -> str:
        name = clean(text)
        if not name:
            raise Invalid("bot.error.name_empty")
        if not any(ch.isalpha() for ch in name):
            raise Invalid("bot.error.name_letters")
        if len(name) > MAX_NAME:
            raise Invalid("bot.error.name_long", max=MAX_NAME)
        return name

    def _on_phone(self, turn: Turn, text: str | None, value: str | None) -> None:
        inbound = turn.inbound
        family = turn.draft.get("who") == "family"
        # A new answer to the phone question: a code awaited for an earlier number is not.
        turn.draft.pop(CODE_PENDING, None)
        turn.draft.pop(CODE_LANDLINE, None)
        if value == Word.SKIP and turn.conversation.channel == Channel.TELEGRAM and not family:
            turn.draft["phone"] = None
            return self._advance(turn, Step.PHONE)
        if inbound.contact_phone is not None:
            if not family and not inbound.contact_is_sender:
                raise Invalid("bot.phone.not_own")
            phone = self._phone(inbound.contact_phone)
            turn.draft["phone"] = phone
            turn.draft[PHONE_SOURCE] = PhoneSource.TYPED if family else PhoneSource.CONTACT
            if not family:
                return self._phone_proven(turn, phone, PhoneSource.CONTACT)
            return self._advance(turn, Step.PHONE)
        if is_word(text, turn.conversation.language, Word.SKIP) and not family:
            turn.draft["phone"] = None
            return self._advance(turn, Step.PHONE)
        typed = self._parsed_phone(text or "")
        if turn.conversation.channel == Channel.TELEGRAM and not family:
            # Their own number, typed: nothing is linked or shown until a code sent to it
            # comes back.
            self._send_code(turn, typed)
            return self._ask(turn, Step.PHONE_CODE)
        turn.draft["phone"] = typed.e164
        turn.draft[PHONE_SOURCE] = PhoneSource.TYPED
        return self._advance(turn, Step.PHONE)

    def _send_code(self, turn: Turn, phone: Phone) -> None:
        """Text a code to a typed number (a landline gets none: the next prompt says so)."""
        turn.draft.pop("phone", None)
        turn.draft.pop(PHONE_SOURCE, None)
        if not phone.can_receive_sms:
            turn.draft.update({CODE_PENDING: phone.e164, CODE_LANDLINE: True})
            return
        try:
            enrolment.send_phone_code(
                turn.session,
                phone=phone,
                channel=turn.conversation.channel,
                address=turn.conversation.address,
                language=turn.language,
                actor=self._actor(turn),
                now=turn.now,
            )
        except CodeRefused as refused:
            raise Invalid(refused.key, **refused.params) from None
        turn.draft[CODE_PENDING] = phone.e164
        turn.draft.pop(CODE_LANDLINE, None)

    def _on_phone_code(self, turn: Turn, text: str | None, value: str | None) -> None:
        """The one-time code for a typed number; or "send again", or (a landline) go on."""
        pending = turn.draft.get(CODE_PENDING)
        if turn.inbound.contact_phone is not None or pending is None:
            turn.conversation.step = Step.PHONE
            if turn.inbound.contact_phone is None:
                return self._ask(turn, Step.PHONE)
            return self._on_phone(turn, text, value)
        choices = self._choices(turn, Step.PHONE_CODE)
        choice = value if value is not None else self._match(turn, Step.PHONE_CODE, choices, text)
        if choice == RESEND:
            self._send_code(turn, self._parsed_phone(pending))
            turn.say("bot.phone_code.resent")
            return self._ask(turn, Step.PHONE_CODE)
        if choice == GO_ON:
            # A landline, unconfirmed: kept as typed, which links to and reveals nothing.
            turn.draft.update({"phone": pending, PHONE_SOURCE: PhoneSource.TYPED})
            turn.draft.pop(CODE_PENDING, None)
            turn.draft.pop(CODE_LANDLINE, None)
            turn.say("bot.phone_code.unverified")
            return self._advance(turn, Step.PHONE_CODE)
        if turn.draft.get(CODE_LANDLINE) or value is not None:
            raise Invalid("bot.error.choice")
        checked = enrolment.confirm_phone_code(
            turn.session,
            phone=pending,
            channel=turn.conversation.channel,
            address=turn.conversation.address,
            answer=text or "",
            actor=self._actor(turn),
            now=turn.now,
        )
        if checked.result == Check.WRONG:
            raise Invalid("bot.phone_code.wrong", left=checked.left)
        if checked.result == Check.EXPIRED:
            raise Invalid("bot.phone_code.expired")
        turn.draft.pop(CODE_PENDING, None)
        if checked.result != Check.CONFIRMED:
            turn.say("bot.phone_code.locked")
            return self._ask(turn, Step.PHONE)
        turn.draft.update({"phone": pending, PHONE_SOURCE: PhoneSource.CODE})
        turn.say("bot.phone_code.confirmed")
        return self._phone_proven(turn, pending, PhoneSource.CODE)

    def _phone_proven(self, turn: Turn, phone: str, proof: PhoneSource) -> None:
        """Their own number, proven: a registration of theirs is now this chat's too."""
        if self._link_known_person(turn, phone, proof):
            return None
        self._adopt_sms_draft(turn, phone)
        return self._advance(turn, Step.PHONE_CODE)

    def _phone(self, text: str) -> str:
        return self._parsed_phone(text).e164

    def _parsed_phone(self, text: str) -> Phone:
        try:
            return normalise_phone(text, region=self.region)
        except InvalidPhone:
            raise Invalid("phone.invalid") from None

    def _link_known_person(self, turn: Turn, phone: str, proof: PhoneSource) -> bool:
        """Their own, verified number is already registered (say by SMS): this chat is them."""
        person = enrolment.link_telegram(
            turn.session,
            phone=phone,
            chat_id=int(turn.conversation.address),
            region=self.region,
            proof=proof,
            actor=self._actor(turn),
            now=turn.now,
        )
        if person is None:
            return False
        turn.conversation.person_id = person.id
        turn.person = person
        turn.say("bot.phone.linked")
        self._menu(turn)
        return True

    def _adopt_sms_draft(self, turn: Turn, phone: str) -> None:
        """The person began by SMS and goes on in Telegram: keep what they already answered."""
        other = turn.session.scalar(
            select(Conversation).where(
                Conversation.channel == Channel.SMS, Conversation.address == phone
            )
        )
        if other is None or other.person_id is not None:
            return
        for key, answer in other.draft.items():
            if not key.startswith("_") and key not in turn.draft:
                turn.draft[key] = answer

    def _on_zone(self, turn: Turn, text: str | None, value: str | None) -> None:
        location = turn.inbound.location
        if location is not None:
            nearest = enrolment.nearest_zone(self.profile, *location)
            if nearest is None:
                raise Invalid("bot.error.choice")
            authority, zone = nearest
            turn.draft.update(authority=authority, zone=zone, lat=location[0], lon=location[1])
            return self._advance(turn, Step.ZONE)
        turn.draft["zone"] = self._pick(turn, Step.ZONE, text, value)
        return self._advance(turn, Step.ZONE)

    def _on_birth_year(self, turn: Turn, text: str | None, value: str | None) -> None:
        folded = fold(text)
        if not folded.isdigit() or len(folded) != 4:
            raise Invalid("bot.error.year")
        year = int(folded)
        if not turn.now.year - OLDEST <= year <= turn.now.year:
            raise Invalid("bot.error.year")
        volunteer = turn.draft.get("who") in ("volunteer", "both")
        if volunteer and turn.now.year - year < MIN_VOLUNTEER_AGE:
            raise Invalid("bot.error.too_young", age=MIN_VOLUNTEER_AGE)
        turn.draft["birth_year"] = year
        if turn.now.year - year >= people.ADULT_AGE:
            turn.draft.pop("guardian", None)
        self._advance(turn, Step.BIRTH_YEAR)

    def _on_capacity(self, turn: Turn, text: str | None, value: str | None) -> None:
        answer = value if value is not None else fold(text)
        if not answer.isdigit() or int(answer) > MAX_CAPACITY:
            raise Invalid("bot.error.number", max=MAX_CAPACITY)
        turn.draft["capacity"] = int(answer)
        self._advance(turn, Step.CAPACITY)

    def _on_contact_name(self, turn: Turn, text: str | None, value: str | None) -> None:
        if value == Word.SKIP or is_word(text, turn.conversation.language, Word.SKIP):
            turn.draft["ec_name"] = None
            turn.draft.pop("ec_phone", None)
        else:
            turn.draft["ec_name"] = self._name(text)
        self._advance(turn, Step.CONTACT_NAME)

    def _on_contact_phone(self, turn: Turn, text: str | None, value: str | None) -> None:
        if value == Word.SKIP or is_word(text, turn.conversation.language, Word.SKIP):
            turn.draft["ec_phone"] = None
        elif turn.inbound.contact_phone is not None:
            turn.draft["ec_phone"] = self._phone(turn.inbound.contact_phone)
        else:
            turn.draft["ec_phone"] = self._phone(text or "")
        self._advance(turn, Step.CONTACT_PHONE)

    def _on_consent(self, turn: Turn, text: str | None, value: str | None) -> None:
        if self._pick(turn, Step.CONSENT, text, value) != Word.YES:
            turn.say("bot.consent.declined")
            raise Stay
        turn.draft["consent"] = CONSENT_VERSIONS[ConsentKind.REGISTRATION]
        self._note_new_consent(turn, ConsentKind.REGISTRATION)
        self._advance(turn, Step.CONSENT)

    def _on_health_consent(self, turn: Turn, text: str | None, value: str | None) -> None:
        if self._pick(turn, Step.HEALTH_CONSENT, text, value) == Word.YES:
            turn.draft["health"] = CONSENT_VERSIONS[ConsentKind.HEALTH_DATA]
            self._note_new_consent(turn, ConsentKind.HEALTH_DATA)
        else:
            # Without this consent no health detail is kept: the needs go, the contact stays.
            turn.draft["health"] = None
            turn.draft["needs"] = []
            turn.say("bot.health.declined")
        self._advance(turn, Step.HEALTH_CONSENT)

    def _on_guardian(self, turn: Turn, text: str | None, value: str | None) -> None:
        if value == Word.NO or is_word(text, turn.conversation.language, Word.NO):
            turn.draft["guardian"] = None
            turn.say("bot.guardian.declined")
        else:
            turn.draft["guardian"] = self._name(text)
            self._note_new_consent(turn, ConsentKind.GUARDIAN)
        self._advance(turn, Step.GUARDIAN)

    @staticmethod
    def _note_new_consent(turn: Turn, kind: ConsentKind) -> None:
        given = set(turn.draft.get(NEW_CONSENTS, []))
        turn.draft[NEW_CONSENTS] = sorted(given | {kind.value})

    def _on_summary(self, turn: Turn, text: str | None, value: str | None) -> None:
        answer = self._pick(turn, Step.SUMMARY, text, value)
        if answer == "edit":
            turn.draft[EDIT] = True
            return self._ask(turn, Step.UPDATE)
        if answer == "cancel":
            return self._cancel(turn)
        refusal = self._register(turn)
        if refusal is not None:
            turn.say(refusal)
            phone_step = self._applies(turn, Step.PHONE)
            return self._ask(turn, Step.PHONE if phone_step else Step.SUMMARY)
        return None

    def _on_menu(self, turn: Turn, text: str | None, value: str | None) -> None:
        choices = self._choices(turn, Step.MENU)
        choice = value if value is not None else self._match(turn, Step.MENU, choices, text)
        if choice not in {c.value for c in choices}:
            return self._menu(turn)  # anything else: their status and the menu again
        person = turn.person
        assert person is not None
        if choice == "update":
            return self._start_update(turn)
        if choice == "language":
            turn.draft[EDIT] = True
            return self._ask(turn, Step.LANGUAGE)
        if choice == "pause":
            people.pause(turn.session, person, actor=self._actor(turn), now=turn.now)
            turn.say("bot.menu.paused")
            return self._menu(turn)
        if choice == "resume":
            people.opt_in(turn.session, person, actor=self._actor(turn), now=turn.now)
            turn.say("bot.stopped.resumed")
            return self._menu(turn)
        if choice == "stop":
            return self._stop(turn, carrier=False)
        return self._ask(turn, Step.DELETE)

    def _start_update(self, turn: Turn) -> None:
        person = turn.person
        assert person is not None
        turn.conversation.draft = enrolment.draft_from(
            turn.session, person, actor=self._actor(turn)
        )
        turn.draft[EDIT] = True
        self._ask(turn, Step.UPDATE)

    def _on_update(self, turn: Turn, text: str | None, value: str | None) -> None:
        chosen = Step(self._pick(turn, Step.UPDATE, text, value))
        if chosen == Step.ZONE and self._applies(turn, Step.AUTHORITY):
            turn.draft.pop("authority", None)
            chosen = Step.AUTHORITY
        self._ask(turn, chosen)

    def _on_delete(self, turn: Turn, text: str | None, value: str | None) -> None:
        if self._pick(turn, Step.DELETE, text, value) != Word.YES:
            return self._menu(turn)
        person = turn.person
        assert person is not None
        enrolment.erase(turn.session, person, actor=self._actor(turn), now=turn.now)
        # The conversation goes too (its address is their phone); the goodbye is still sent.
        turn.session.delete(turn.conversation)
        turn.person = None
        turn.say("bot.delete.done")
        return None

    # ------------------------------------------------------------------ moving between steps
    def _advance(self, turn: Turn, after: Step) -> None:
        """Go to the next step that applies and is not answered yet (the summary at the end)."""
        index = REGISTRATION.index(after) if after in REGISTRATION else -1
        for step in REGISTRATION[index + 1 :]:
            if self._applies(turn, step) and not self._answered(turn, step):
                return self._ask(turn, step)
        return self._ask(turn, Step.SUMMARY)

    def _applies(self, turn: Turn, step: Step) -> bool:
        draft, channel = turn.draft, turn.conversation.channel
        who = draft.get("who")
        volunteer = who in ("volunteer", "both")
        resident = who in ("resident", "both", "family")
        year = draft.get("birth_year")
        rules: dict[Step, bool] = {
            Step.PHONE: channel == Channel.TELEGRAM or who == "family",
            Step.PHONE_CODE: CODE_PENDING in draft,
            Step.AUTHORITY: len(self.profile.authorities) > 1,
            Step.SKILLS: volunteer,
            Step.LANGUAGES: volunteer,
            Step.AVAILABILITY: volunteer,
            Step.VEHICLE: volunteer,
            Step.CAPACITY: volunteer,
            Step.NEEDS: resident,
            Step.CONTACT_NAME: resident,
            Step.CONTACT_PHONE: resident and bool(draft.get("ec_name")),
            Step.HEALTH_CONSENT: resident and bool(draft.get("needs")),
            Step.GUARDIAN: volunteer
            and year is not None
            and turn.now.year - int(year) < people.ADULT_AGE,
        }
        return rules.get(step, True)

    @staticmethod
    def _answered(turn: Turn, step: Step) -> bool:
        keys = {
            Step.LANGUAGE: "language",
            Step.WHO: "who",
            Step.NAME: "name",
            Step.PHONE: "phone",
            Step.AUTHORITY: "authority",
            Step.ZONE: "zone",
            Step.BIRTH_YEAR: "birth_year",
            Step.SKILLS: "skills",
            Step.LANGUAGES: "langs",
            Step.AVAILABILITY: "avail",
            Step.VEHICLE: "vehicle",
            Step.CAPACITY: "capacity",
            Step.NEEDS: "needs",
            Step.CONTACT_NAME: "ec_name",
            Step.CONTACT_PHONE: "ec_phone",
            Step.CONSENT: "consent",
            Step.HEALTH_CONSENT: "health",
            Step.GUARDIAN: "guardian",
        }
        key = keys.get(step)
        return key is not None and key in turn.draft

    def _ask_current(self, turn: Turn) -> None:
        step = turn.conversation.step
        if step in (Step.NEW, Step.STOPPED):
            return self._begin(turn) if turn.person is None else self._menu(turn)
        return self._ask(turn, Step(step))

    def _ask(self, turn: Turn, step: Step) -> None:
        turn.conversation.step = step
        turn.replies.append(self.prompt(turn, step))

    def _menu(self, turn: Turn) -> None:
        person = turn.person
        if person is None:
            return self._begin(turn)
        turn.draft.clear()
        turn.replies.append(Prompt(text=self.status_text(turn.session, person, turn.language)))
        return self._ask(turn, Step.MENU)

    # ------------------------------------------------------------------ prompts
    def prompt(self, turn: Turn, step: Step) -> Prompt:
        """The question for ``step`` in the conversation's language, with its choices."""
        lang = turn.language
        choices = self._choices(turn, step)
        text = t(lang, f"bot.{step.value}.prompt")
        requests: tuple[Request, ...] = ()
        numbered = True
        if step == Step.LANGUAGE and "language" not in turn.draft:
            text = "\n".join(t(language, "bot.language.prompt") for language in ALL_LANGUAGES)
        elif step == Step.WHO and turn.draft.get("group"):
            text = t(lang, "bot.who.prompt")
        elif step == Step.NAME and turn.draft.get("who") == "family":
            text = t(lang, "bot.name.prompt_family")
        elif step == Step.PHONE:
            if turn.draft.get("who") == "family":
                text = t(lang, "bot.phone.prompt_family")
            else:
                requests = (Request.CONTACT,)
        elif step == Step.PHONE_CODE and turn.draft.get(CODE_LANDLINE):
            text = t(lang, "bot.phone_code.prompt_landline")
            requests = (Request.CONTACT,)
        elif step == Step.ZONE:
            requests = (Request.LOCATION,)
        elif step == Step.CAPACITY:
            numbered = False
        elif step == Step.CONSENT:
            text = t(lang, "bot.consent.prompt", text=consent_text(ConsentKind.REGISTRATION, lang))
        elif step == Step.HEALTH_CONSENT:
            text = t(lang, "bot.health.prompt", text=consent_text(ConsentKind.HEALTH_DATA, lang))
        elif step == Step.GUARDIAN:
            text = t(lang, "bot.guardian.prompt", text=consent_text(ConsentKind.GUARDIAN, lang))
        elif step == Step.SUMMARY:
            text = t(lang, "bot.summary.prompt", summary=self._summary(turn))
        selected: frozenset[str] = frozenset()
        if step in MULTI:
            key = {Step.SKILLS: "skills", Step.LANGUAGES: "langs", Step.NEEDS: "needs"}[step]
            selected = frozenset(turn.draft.get(f"_{key}", turn.draft.get(key, [])))
        return Prompt(
            text=text,
            step=step.value,
            choices=choices,
            multi=step in MULTI,
            selected=selected,
            numbered=numbered,
            requests=requests,
            navigation=step not in (Step.LANGUAGE, Step.MENU, Step.NEW),
        )

    def _choices(self, turn: Turn, step: Step, lang: Language | None = None) -> tuple[Choice, ...]:
        lang = lang or turn.language

        def words(*values: str, prefix: str) -> tuple[Choice, ...]:
            return tuple(Choice(v, t(lang, f"bot.{prefix}.{v}")) for v in values)

        yes_no = (
            Choice(Word.YES, t(lang, "bot.choice.yes")),
            Choice(Word.NO, t(lang, "bot.choice.no")),
        )
        if step in (Step.LANGUAGE, Step.LANGUAGES):
            return tuple(Choice(x.value, t(x, "bot.language.name")) for x in ALL_LANGUAGES)
        if step == Step.WHO:
            return words(*WHO_VALUES, prefix="who")
        if step == Step.AUTHORITY:
            return tuple(Choice(a.code, a.names.get(lang)) for a in self.profile.authorities)
        if step == Step.ZONE:
            authority = self._authority_profile(turn)
            return tuple(Choice(z.code, z.names.get(lang)) for z in authority.zones)
        if step == Step.SKILLS:
            return tuple(Choice(s.code, s.names.get(lang)) for s in self.profile.skills)
        if step == Step.AVAILABILITY:
            return words(*AVAILABILITY_VALUES, prefix="avail")
        if step in (Step.VEHICLE, Step.DELETE):
            return yes_no
        if step == Step.CAPACITY:
            return tuple(Choice(v, v) for v in CAPACITY_SHORTCUTS)
        if step == Step.NEEDS:
            return (
                *words(*NEED_FLAGS, prefix="needs"),
                Choice(Word.NONE, t(lang, "bot.choice.none")),
            )
        if step in (Step.CONTACT_NAME, Step.CONTACT_PHONE):
            return (Choice(Word.SKIP, t(lang, "bot.choice.skip")),)
        if step == Step.PHONE:
            if turn.draft.get("who") == "family" or turn.conversation.channel != Channel.TELEGRAM:
                return ()
            return (Choice(Word.SKIP, t(lang, "bot.choice.skip")),)
        if step == Step.PHONE_CODE:
            value = GO_ON if turn.draft.get(CODE_LANDLINE) else RESEND
            return (Choice(value, t(lang, f"bot.phone_code.{value}")),)
        if step in (Step.CONSENT, Step.HEALTH_CONSENT):
            return (
                Choice(Word.YES, t(lang, "bot.choice.agree")),
                Choice(Word.NO, t(lang, "bot.choice.decline")),
            )
        if step == Step.GUARDIAN:
            return (Choice(Word.NO, t(lang, "bot.choice.decline")),)
        if step == Step.SUMMARY:
            return words("confirm", "edit", "cancel", prefix="summary")
        if step == Step.MENU:
            person = turn.person
            paused = person is not None and person.status != PersonStatus.ACTIVE
            values = ("update", "language", "resume" if paused else "pause", "stop", "delete")
            return words(*values, prefix="menu")
        if step == Step.UPDATE:
            return tuple(
                Choice(s.value, t(lang, f"bot.update.{s.value}"))
                for s in UPDATABLE
                if self._applies(turn, s)
            )
        return ()

    def _authority_profile(self, turn: Turn) -> AuthorityProfile:
        code = turn.draft.get("authority")
        for authority in self.profile.authorities:
            if authority.code == code:
                return authority
        return self.profile.authorities[0]

    def _summary(self, turn: Turn) -> str:
        """The answers so far, short enough for an SMS; health details only as a count."""
        draft, lang = turn.draft, turn.language
        authority = self._authority_profile(turn)
        zones = {z.code: z.names.get(lang) for z in authority.zones}
        lines = [
            t(lang, "bot.summary.name", name=draft.get("name", "-")),
            t(lang, "bot.summary.who", who=t(lang, f"bot.who.{draft.get('who', 'volunteer')}")),
            t(lang, "bot.summary.zone", zone=zones.get(draft.get("zone", ""), "-")),
        ]
        if draft.get("phone"):
            lines.append(t(lang, "bot.summary.phone", phone=draft["phone"]))
        if draft.get("birth_year"):
            lines.append(t(lang, "bot.summary.birth_year", year=draft["birth_year"]))
        if self._applies(turn, Step.SKILLS):
            skills = {s.code: s.names.get(lang) for s in self.profile.skills}
            named = ", ".join(skills.get(code, code) for code in draft.get("skills", []))
            lines.append(t(lang, "bot.summary.skills", skills=named or "-"))
        if self._applies(turn, Step.NEEDS):
            lines.append(t(lang, "bot.summary.needs", count=len(draft.get("needs", []))))
        return "\n".join(lines)

    # ------------------------------------------------------------------ the registry
    def status_text(self, session: Session, person: Person, lang: Language) -> str:
        return enrolment.status_text(session, person, lang, self.profile)

    def _person(self, session: Session, conversation: Conversation) -> Person | None:
        """The registered person behind this conversation, found again by chat id or phone.

        Found anew (they registered on the other channel, or by staff), a conversation that was
        half-way through registering goes to their menu instead.
        """
        person = session.get(Person, conversation.person_id) if conversation.person_id else None
        if person is not None and person.status != PersonStatus.ERASED:
            return person
        person = enrolment.person_at(session, conversation.channel, conversation.address)
        conversation.person_id = person.id if person else None
        if person is not None and conversation.step in (Step.NEW, *REGISTRATION):
            if EDIT not in conversation.draft:
                conversation.step = Step.MENU
                conversation.draft = {}
            if conversation.language is None:
                conversation.language = person.language
        return person

    def _register(self, turn: Turn) -> str | None:
        """Write the confirmed answers to the registry. Returns a refusal key, or None when done."""
        try:
            enrolled = enrolment.enrol(
                turn.session,
                draft=turn.draft,
                channel=turn.conversation.channel,
                address=turn.conversation.address,
                language=turn.language,
                profile=self.profile,
                region=self.region,
                current=turn.person,
                actor=self._actor(turn),
                now=turn.now,
            )
        except enrolment.Refused as refusal:
            return refusal.key
        if enrolled.landline:
            turn.say("phone.landline")
        turn.conversation.person_id = enrolled.person.id
        turn.person = enrolled.person
        turn.say("bot.summary.done" if enrolled.created else "bot.summary.updated")
        self._menu(turn)
        return None

    @staticmethod
    def _actor(turn: Turn) -> str:
        return f"bot:{turn.conversation.channel.value}"
