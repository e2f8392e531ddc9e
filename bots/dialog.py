"""The conversation engine: sign-up and self-service, written once for Telegram and SMS alike.

The dialog is one table of steps, :data:`STEPS`: each row says what its step asks, the choices
it offers, the free text it takes (and how that is checked), what it stores in the typed
:class:`~bots.steps.Draft`, when it applies and where it goes next. Each inbound message moves one
:class:`~bots.models.Conversation` row (step and draft) and yields the prompts to send; channels
only render those prompts (inline buttons, or numbered SMS choices). Nothing here touches the
network, and nothing commits: the caller's unit of work does.

Rules that hold for every step live once, in :class:`Dialog`: "back", "cancel" and "help" work
at every step; a choice offered is taken by its button, its number, its label or its keyword, in
the person's language or English, before any free text ("1" is "skip", never a name). A step
whose free text is itself a number (a year of birth, a capacity) offers its choices only as
shortcut buttons with the number as their value, never as numbers on SMS, so the two cannot meet
(a test checks every row).

Registration order is the table's: language → who → name → phone (on Telegram, a typed number
is confirmed with a one-time code sent to it by SMS) → (authority) → zone → birth year →
volunteer: skills, languages, availability, vehicle, check-in capacity → resident: needs,
emergency contact → consent (registration; health data when needs were given; a guardian's for a
minor volunteer) → summary and confirm.

A registered person's menu also asks for help at any time: the kind of help (one numbered
question, or their own words), an optional word about it, and the request goes to
:func:`dispatch.help.request_help`, which answers them. While those two questions are asked, the
words "I need help" are theirs to answer, not the inbox's (:data:`ASKING_FOR_HELP`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from bots import enrolment
from bots.consent import CONSENT_VERSIONS, consent_text
from bots.models import Conversation
from bots.steps import (
    Answer,
    Availability,
    Draft,
    Go,
    Invalid,
    Step,
    Who,
    choice_named,
    choices_named,
)
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
    need_in,
)
from config.i18n import t
from config.languages import ALL_LANGUAGES, DEFAULT_LANGUAGE, Language
from config.profile import AuthorityProfile, Profile
from config.settings import Settings
from dispatch.channels.base import Choice, Inbound, Prompt, Request
from dispatch.help import describe_request, request_help
from dispatch.models import HelpNeed
from registry import people, phone_codes, rules
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

__all__ = [
    "ASKING_FOR_HELP",
    "REGISTRATION",
    "STEPS",
    "Dialog",
    "Inbound",
    "Invalid",
    "Row",
    "Step",
    "Turn",
]

CAPACITY_SHORTCUTS = ("1", "2", "3", "5")
# The code step's choices: another code, or (a landline, which gets none) go on unconfirmed.
RESEND, GO_ON = "resend", "go_on"


@dataclass
class Turn:
    """Everything one answer needs; built per inbound message. ``draft`` is written back to the
    conversation when the turn ends."""

    session: Session
    conversation: Conversation
    inbound: Inbound
    now: datetime
    person: Person | None
    replies: list[Prompt] = field(default_factory=list)
    draft: Draft = field(init=False)
    speaking: Language | None = field(default=None, init=False)  # another language, for a moment

    def __post_init__(self) -> None:
        self.draft = Draft.load(self.conversation.draft)

    @property
    def language(self) -> Language:
        return self.speaking or self.conversation.language or DEFAULT_LANGUAGE

    @property
    def channel(self) -> Channel:
        return self.conversation.channel

    def say(self, key: str, /, **params: object) -> None:
        self.replies.append(Prompt(text=t(self.language, key, **params)))


Choices = Callable[["Dialog", Turn], tuple[Choice, ...]]
FreeText = Callable[["Dialog", Turn, str], Answer]
Take = Callable[["Dialog", Turn, Answer], "Go | Step"]
Condition = Callable[["Dialog", Turn], bool]
Asks = Callable[["Dialog", Turn], str]


def _no_choices(dialog: Dialog, turn: Turn) -> tuple[Choice, ...]:
    return ()


def _always(dialog: Dialog, turn: Turn) -> bool:
    return True


def _no_requests(turn: Turn) -> tuple[Request, ...]:
    return ()


@dataclass(frozen=True)
class Row:
    """One step of the dialog, all of it.

    ``stores`` names the draft fields the step answers (the first says whether it is answered).
    ``choices`` are offered as buttons and numbered on SMS; with ``shortcuts`` they are only
    buttons whose value is free text ("3" people), for steps whose free text is a number.
    ``text`` takes free text (checks it, or raises :class:`Invalid`); None: choices only.
    ``take`` stores the answer and says where to go (:class:`Go`, or a step). ``applies`` says
    whether the step is asked at all; ``asks`` the question when it is not ``bot.<step>.prompt``.
    """

    take: Take
    stores: tuple[str, ...] = ()
    choices: Choices = _no_choices
    text: FreeText | None = None
    applies: Condition = _always
    asks: Asks | None = None
    multi: bool = False
    shortcuts: bool = False
    contact: bool = False  # a shared Telegram contact answers it
    location: bool = False  # a shared location answers it
    requests: Callable[[Turn], tuple[Request, ...]] = _no_requests
    navigation: bool = True  # "back" and "cancel" buttons under the question
    registration: bool = True  # part of sign-up, in table order (else a registered person's)
    back: Step | None = None  # where "back" goes from a registered person's step (else the menu)


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
        if conversation.step not in _STEP_VALUES:
            conversation.step = Step.NEW  # a row from an older or damaged build: start again
        turn = Turn(session, conversation, inbound, now, self._person(session, conversation))
        self._respond(turn)
        if conversation not in session.deleted and not inspect(conversation).deleted:
            conversation.draft = turn.draft.dump()
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
                turn.draft.language = guessed
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
        registering = conv.step in REGISTRATION and not turn.draft.editing
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
            turn.draft.editing = True
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
            if group is not None and enrolment.join_group(turn.session, person, group):
                turn.say("bot.group.joined", group=group.name)
            if people.opt_in(turn.session, person, actor=self._actor(turn), now=turn.now):
                turn.say("bot.stopped.resumed")
            return self._menu(turn)
        if group is not None:
            turn.draft.group = group.join_code
            authority = turn.session.get(Authority, group.authority_id)
            if authority is not None:
                turn.draft.authority = authority.code
        elif payload:
            turn.say("bot.group.unknown")
        resume = turn.draft.resume
        turn.draft.forget("resume")
        if turn.conversation.step == Step.STOPPED:
            turn.conversation.step = resume or Step.NEW
        if turn.conversation.step in REGISTRATION:
            turn.say("bot.welcome.back")
            return self._ask_current(turn)
        return self._begin(turn)

    def _begin(self, turn: Turn) -> None:
        """A new conversation: ask the language first (in every language at once)."""
        if turn.conversation.language is None or not turn.draft.has("language"):
            return self._ask(turn, Step.LANGUAGE)
        return self._advance(turn, Step.LANGUAGE)

    def _help(self, turn: Turn) -> None:
        turn.say(f"bot.help.{turn.channel.value}")
        if turn.conversation.step in (Step.NEW, Step.STOPPED):
            return None
        return self._ask_current(turn)

    def _stop(self, turn: Turn, *, carrier: bool) -> None:
        conv = turn.conversation
        if turn.person is not None:
            people.opt_out(turn.session, turn.person, actor=self._actor(turn), now=turn.now)
            turn.draft = Draft()  # their details live in the registry; a draft may hold health data
        elif conv.step not in (Step.STOPPED, Step.NEW):
            turn.draft.resume = Step(conv.step)
        conv.step = Step.STOPPED
        # Twilio answers the carrier words itself and refuses to send anything after them.
        if not (carrier and conv.channel == Channel.SMS):
            turn.say("bot.stopped.done")

    def _cancel(self, turn: Turn) -> None:
        if turn.person is not None:
            turn.draft = Draft()
            return self._menu(turn)
        language = turn.conversation.language
        turn.draft = Draft(language=language) if language else Draft()
        turn.conversation.step = Step.NEW
        turn.say("bot.cancelled")
        return None

    def _back(self, turn: Turn) -> None:
        step = turn.conversation.step
        if turn.person is not None and (step not in REGISTRATION or turn.draft.editing):
            # Registered: back from editing a field is the list of fields; else the step the
            # row names, or the menu.
            row = STEPS.get(Step(step))
            if row is not None and row.back is not None:
                return self._ask(turn, row.back)
            return self._ask(turn, Step.UPDATE) if step in REGISTRATION else self._menu(turn)
        if step not in REGISTRATION:
            return self._ask_current(turn)
        index = REGISTRATION.index(Step(step))
        for previous in reversed(REGISTRATION[:index]):
            if self._applies(turn, previous):
                return self._ask(turn, previous)
        return self._ask_current(turn)

    # ------------------------------------------------------------------ answers, for every step
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
        if step == Step.STOPPED:
            return None
        row = STEPS[step]
        if not row.registration and turn.person is None:
            return self._begin(turn)  # a registered person's step, and they are gone
        try:
            go = row.take(self, turn, self._understand(turn, step, row, text, value))
        except Invalid as refusal:
            turn.say(refusal.key, **refusal.params)
            return self._ask(turn, step)
        if go is Go.NEXT:
            return self._advance(turn, step)
        if go is Go.AGAIN:
            return self._ask(turn, step)
        if isinstance(go, Step):
            return self._ask(turn, go)
        return None

    def _understand(
        self, turn: Turn, step: Step, row: Row, text: str | None, value: str | None
    ) -> Answer:
        """What the message says to this step: the one rule every step follows."""
        inbound = turn.inbound
        if value is not None:  # a button's value, as it came (it may be forged)
            if row.shortcuts and row.text is not None:
                return row.text(self, turn, value)
            offered = {choice.value for choice in row.choices(self, turn)}
            if value in offered or (row.multi and value in (Word.DONE, Word.NONE)):
                return Answer(choice=value)
            raise Invalid("bot.error.choice")
        if row.contact and inbound.contact_phone is not None:
            return Answer(contact=inbound.contact_phone)
        if row.location and inbound.location is not None:
            return Answer(location=inbound.location)
        choices = () if row.shortcuts else row.choices(self, turn)
        if row.multi:
            return Answer(many=frozenset(self._parse_many(turn, step, choices, text)))
        # A choice offered wins over free text: its number is never a name or a phone.
        picked = self._match(turn, step, choices, text)
        if picked is not None:
            return Answer(choice=picked)
        if row.text is not None:
            return row.text(self, turn, text or "")
        raise Invalid("bot.error.choice")

    def _match(
        self, turn: Turn, step: Step, choices: tuple[Choice, ...], text: str | None
    ) -> str | None:
        """The choice a text names: its number, its label or value, or its keyword."""
        return choice_named(
            text,
            choices,
            language=turn.conversation.language,
            english=lambda: self._choices(turn, step, Language.EN),
        )

    def _parse_many(
        self, turn: Turn, step: Step, choices: tuple[Choice, ...], text: str | None
    ) -> set[str]:
        if not fold(text):
            raise Invalid("bot.error.choice")
        if is_word(text, turn.conversation.language, Word.NONE) or fold(text) == "0":
            return set()
        chosen = choices_named(text, lambda part: self._match(turn, step, choices, part))
        if chosen == {Word.NONE}:
            return set()
        chosen.discard(Word.NONE)
        return chosen

    # ------------------------------------------------------------------ free text, checked
    def _name_text(self, turn: Turn, text: str) -> Answer:
        name = clean(text)
        if not name:
            raise Invalid("bot.error.name_empty")
        if not any(ch.isalpha() for ch in name):
            raise Invalid("bot.error.name_letters")
        if len(name) > rules.MAX_NAME:
            raise Invalid("bot.error.name_long", max=rules.MAX_NAME)
        return Answer(text=name)

    def _phone_text(self, turn: Turn, text: str) -> Answer:
        return Answer(text=self._phone(text))

    def _phone(self, text: str) -> str:
        return self._parsed_phone(text).e164

    def _parsed_phone(self, text: str) -> Phone:
        try:
            return normalise_phone(text, region=self.region)
        except InvalidPhone:
            raise Invalid("phone.invalid") from None

    def _code_text(self, turn: Turn, text: str) -> Answer:
        """Something shaped like a code: its digits (of any script: ٤٢ are the 42 the SMS showed),
        spaces and dashes left out. Whether it is the code is the registry's to say; only that
        counts towards the lock, and "1" (a choice's number) is never a code."""
        if turn.draft.code_landline:
            raise Invalid("bot.error.choice")  # no code was sent: a choice, or the contact
        kept = "".join(ch for ch in clean(text) if not ch.isspace() and ch != "-")
        if not kept.isdecimal() or len(kept) != phone_codes.DIGITS:
            raise Invalid("bot.phone_code.digits", digits=phone_codes.DIGITS)
        return Answer(text="".join(str(unicodedata.decimal(ch)) for ch in kept))

    def _year_text(self, turn: Turn, text: str) -> Answer:
        folded = fold(text)
        if not folded.isdigit() or len(folded) != 4:
            raise Invalid("bot.error.year")
        year = int(folded)
        if not rules.plausible_birth_year(year, turn.now.year):
            raise Invalid("bot.error.year")
        if turn.draft.volunteer and turn.now.year - year < rules.MIN_VOLUNTEER_AGE:
            raise Invalid("bot.error.too_young", age=rules.MIN_VOLUNTEER_AGE)
        return Answer(number=year)

    def _capacity_text(self, turn: Turn, text: str) -> Answer:
        answer = fold(text)
        if not answer.isdigit() or len(answer) > 3 or not rules.valid_checkin_capacity(int(answer)):
            raise Invalid("bot.error.number", max=rules.MAX_CHECKIN_CAPACITY)
        return Answer(number=int(answer))

    def _anything(self, turn: Turn, text: str) -> Answer:
        return Answer()

    def _help_words(self, turn: Turn, text: str) -> Answer:
        """Their own words for the help they need; a number or a sign is no kind offered."""
        return self._words_only(text, "bot.error.choice")

    def _help_detail_text(self, turn: Turn, text: str) -> Answer:
        return self._words_only(text, "bot.error.words")

    @staticmethod
    def _words_only(text: str, refusal: str) -> Answer:
        # Words need letters: a number is a choice's (on SMS), never a few words about help.
        words = clean(text)
        if not any(ch.isalpha() for ch in words):
            raise Invalid(refusal)
        return Answer(text=words)

    # ------------------------------------------------------------------ what each step stores
    def _take_language(self, turn: Turn, answer: Answer) -> Go | Step:
        chosen = Language(answer.picked)
        turn.conversation.language = chosen
        turn.draft.language = chosen
        turn.draft.forget("editing")  # a change of language mid-registration: carry on
        if turn.person is not None:
            turn.person.language = chosen
            turn.say("bot.language.changed")
            self._menu(turn)
            return Go.DONE
        return Go.NEXT

    def _take_who(self, turn: Turn, answer: Answer) -> Go | Step:
        turn.draft.who = Who(answer.picked)
        return Go.NEXT

    def _take_name(self, turn: Turn, answer: Answer) -> Go | Step:
        turn.draft.name = answer.text
        return Go.NEXT

    def _take_phone(self, turn: Turn, answer: Answer) -> Go | Step:
        draft = turn.draft
        shared = None
        if answer.contact is not None:
            if not draft.family and not turn.inbound.contact_is_sender:
                raise Invalid("bot.phone.not_own")
            shared = self._phone(answer.contact)
        # A new answer to the phone question: a code awaited for an earlier number is not.
        draft.forget("code_phone", "code_landline")
        if answer.choice == Word.SKIP:
            draft.phone = None
            draft.forget("phone_source")
            return Go.NEXT
        if shared is not None:
            draft.phone = shared
            draft.phone_source = PhoneSource.TYPED if draft.family else PhoneSource.CONTACT
            if draft.family:
                return Go.NEXT
            return self._phone_proven(turn, shared, PhoneSource.CONTACT)
        typed = self._parsed_phone(answer.text or "")
        if turn.channel == Channel.TELEGRAM and not draft.family:
            # Their own number, typed: nothing is linked or shown until a code sent to it
            # comes back.
            self._send_code(turn, typed)
            return Step.PHONE_CODE
        draft.phone, draft.phone_source = typed.e164, PhoneSource.TYPED
        return Go.NEXT

    def _send_code(self, turn: Turn, phone: Phone) -> None:
        """Text a code to a typed number (a landline gets none: the code step says so)."""
        draft = turn.draft
        draft.forget("phone", "phone_source")
        if not phone.can_receive_sms:
            draft.code_phone, draft.code_landline = phone.e164, True
            return
        try:
            enrolment.send_phone_code(
                turn.session,
                phone=phone,
                channel=turn.channel,
                address=turn.conversation.address,
                language=turn.language,
                actor=self._actor(turn),
                now=turn.now,
            )
        except CodeRefused as refused:
            raise Invalid(refused.key, **refused.params) from None
        draft.code_phone = phone.e164
        draft.forget("code_landline")

    def _take_phone_code(self, turn: Turn, answer: Answer) -> Go | Step:
        """The one-time code for a typed number; or "send again", or (a landline) go on.

        A shared contact answers the phone question here too; with no code awaited (an old
        row), the phone question is asked again.
        """
        draft = turn.draft
        pending = draft.code_phone
        if answer.contact is not None:
            return self._take_phone(turn, answer)
        if pending is None:
            return Step.PHONE
        if answer.choice == RESEND:
            self._send_code(turn, self._parsed_phone(pending))
            turn.say("bot.phone_code.resent")
            return Go.AGAIN
        if answer.choice == GO_ON:
            # A landline, unconfirmed: kept as typed, which links to and reveals nothing.
            draft.phone, draft.phone_source = pending, PhoneSource.TYPED
            draft.forget("code_phone", "code_landline")
            turn.say("bot.phone_code.unverified")
            return Go.NEXT
        if answer.text is None:
            raise Invalid("bot.error.choice")
        checked = enrolment.confirm_phone_code(
            turn.session,
            phone=pending,
            channel=turn.channel,
            address=turn.conversation.address,
            answer=answer.text,
            actor=self._actor(turn),
            now=turn.now,
        )
        if checked.result == Check.WRONG:
            raise Invalid("bot.phone_code.wrong", left=checked.left)
        if checked.result == Check.EXPIRED:
            raise Invalid("bot.phone_code.expired")
        draft.forget("code_phone")
        if checked.result != Check.CONFIRMED:
            turn.say("bot.phone_code.locked")
            return Step.PHONE
        draft.phone, draft.phone_source = pending, PhoneSource.CODE
        turn.say("bot.phone_code.confirmed")
        return self._phone_proven(turn, pending, PhoneSource.CODE)

    def _phone_proven(self, turn: Turn, phone: str, proof: PhoneSource) -> Go:
        """Their own number, proven: a registration of theirs is now this chat's too."""
        if self._link_known_person(turn, phone, proof):
            return Go.DONE
        self._adopt_sms_draft(turn, phone)
        return Go.NEXT

    def _link_known_person(self, turn: Turn, phone: str, proof: PhoneSource) -> bool:
        """Their own, proven number is already registered (say by SMS): this chat is them."""
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
        begun = Draft.load(other.draft)
        for name in begun.answered() - turn.draft.answered():
            setattr(turn.draft, name, getattr(begun, name))

    def _take_authority(self, turn: Turn, answer: Answer) -> Go | Step:
        turn.draft.authority = answer.choice
        turn.draft.forget("zone")
        return Go.NEXT

    def _take_zone(self, turn: Turn, answer: Answer) -> Go | Step:
        if answer.location is None:
            turn.draft.zone = answer.choice
            return Go.NEXT
        nearest = enrolment.nearest_zone(self.profile, *answer.location)
        if nearest is None:
            raise Invalid("bot.error.location")
        draft = turn.draft
        draft.authority, draft.zone = nearest
        draft.lat, draft.lon = answer.location
        return Go.NEXT

    def _take_birth_year(self, turn: Turn, answer: Answer) -> Go | Step:
        year = answer.number
        assert year is not None
        turn.draft.birth_year = year
        if rules.is_adult(year, turn.now.year):
            turn.draft.forget("guardian")
        return Go.NEXT

    def _take_many(self, turn: Turn, answer: Answer) -> Go | Step:
        """Several choices: all at once by text, or toggled one button at a time until "done"."""
        name = STEPS[Step(turn.conversation.step)].stores[0]
        if answer.many is not None:
            setattr(turn.draft, name, sorted(answer.many))
            turn.draft.forget(f"picked_{name}")
            return Go.NEXT
        selected = set(self._picked(turn, name))
        if answer.choice == Word.DONE:
            setattr(turn.draft, name, sorted(selected))
            turn.draft.forget(f"picked_{name}")
            return Go.NEXT
        selected = set() if answer.choice == Word.NONE else selected ^ {answer.choice or ""}
        setattr(turn.draft, f"picked_{name}", sorted(selected))
        return Go.AGAIN

    @staticmethod
    def _picked(turn: Turn, name: str) -> list[str]:
        picked: list[str] | None = getattr(turn.draft, f"picked_{name}")
        answered: list[str] = getattr(turn.draft, name)
        return picked if picked is not None else answered

    def _take_avail(self, turn: Turn, answer: Answer) -> Go | Step:
        turn.draft.avail = Availability(answer.picked)
        return Go.NEXT

    def _take_vehicle(self, turn: Turn, answer: Answer) -> Go | Step:
        turn.draft.vehicle = answer.choice == Word.YES
        return Go.NEXT

    def _take_capacity(self, turn: Turn, answer: Answer) -> Go | Step:
        turn.draft.capacity = answer.number
        return Go.NEXT

    def _take_contact_name(self, turn: Turn, answer: Answer) -> Go | Step:
        if answer.choice == Word.SKIP:
            turn.draft.ec_name = None
            turn.draft.forget("ec_phone")
        else:
            turn.draft.ec_name = answer.text
        return Go.NEXT

    def _take_contact_phone(self, turn: Turn, answer: Answer) -> Go | Step:
        if answer.choice == Word.SKIP:
            turn.draft.ec_phone = None
        elif answer.contact is not None:
            turn.draft.ec_phone = self._phone(answer.contact)
        else:
            turn.draft.ec_phone = answer.text
        return Go.NEXT

    def _take_consent(self, turn: Turn, answer: Answer) -> Go | Step:
        if answer.choice != Word.YES:
            turn.say("bot.consent.declined")
            return Go.AGAIN
        turn.draft.consent = CONSENT_VERSIONS[ConsentKind.REGISTRATION]
        self._note_new_consent(turn, ConsentKind.REGISTRATION)
        return Go.NEXT

    def _take_health_consent(self, turn: Turn, answer: Answer) -> Go | Step:
        if answer.choice == Word.YES:
            turn.draft.health = CONSENT_VERSIONS[ConsentKind.HEALTH_DATA]
            self._note_new_consent(turn, ConsentKind.HEALTH_DATA)
        else:
            # Without this consent no health detail is kept: the needs go, the contact stays.
            turn.draft.health = None
            turn.draft.needs = []
            turn.say("bot.health.declined")
        return Go.NEXT

    def _take_guardian(self, turn: Turn, answer: Answer) -> Go | Step:
        if answer.choice == Word.NO:
            turn.draft.guardian = None
            turn.say("bot.guardian.declined")
        else:
            turn.draft.guardian = answer.text
            self._note_new_consent(turn, ConsentKind.GUARDIAN)
        return Go.NEXT

    @staticmethod
    def _note_new_consent(turn: Turn, kind: ConsentKind) -> None:
        turn.draft.new_consents = sorted({*turn.draft.new_consents, kind.value})

    def _take_summary(self, turn: Turn, answer: Answer) -> Go | Step:
        if answer.choice == "edit":
            turn.draft.editing = True
            return Step.UPDATE
        if answer.choice == "cancel":
            self._cancel(turn)
            return Go.DONE
        refusal = self._register(turn)
        if refusal is None:
            return Go.DONE
        turn.say(refusal)
        return Step.PHONE if self._applies(turn, Step.PHONE) else Step.SUMMARY

    def _take_menu(self, turn: Turn, answer: Answer) -> Go | Step:
        person = turn.person
        assert person is not None
        if answer.choice == "update":
            self._start_update(turn)
        elif answer.choice == "language":
            turn.draft.editing = True
            return Step.LANGUAGE
        elif answer.choice == "pause":
            people.pause(turn.session, person, actor=self._actor(turn), now=turn.now)
            turn.say("bot.menu.paused")
            self._menu(turn)
        elif answer.choice == "resume":
            people.opt_in(turn.session, person, actor=self._actor(turn), now=turn.now)
            turn.say("bot.stopped.resumed")
            self._menu(turn)
        elif answer.choice == "stop":
            self._stop(turn, carrier=False)
        elif answer.choice == "delete":
            return Step.DELETE
        elif answer.choice == "help":
            return Step.HELP_KIND
        else:
            self._menu(turn)  # anything else: their status and the menu again
        return Go.DONE

    def _take_help_kind(self, turn: Turn, answer: Answer) -> Go | Step:
        if answer.text is not None:  # their own words: the request, with the kind they name
            return self._ask_for_help(turn, need_in(answer.text) or HelpNeed.OTHER, answer.text)
        turn.draft.help_need = HelpNeed(answer.picked)
        return Step.HELP_DETAIL

    def _take_help_detail(self, turn: Turn, answer: Answer) -> Go | Step:
        detail = None if answer.choice == Word.SKIP else answer.text
        return self._ask_for_help(turn, turn.draft.help_need or HelpNeed.OTHER, detail)

    def _ask_for_help(self, turn: Turn, need: HelpNeed, detail: str | None) -> Go:
        """The request, recorded and pushed; request_help tells them the truth about it."""
        person = turn.person
        assert person is not None  # a registered person's step (checked before any answer)
        request_help(
            turn.session,
            resident=person,
            need=need,
            detail=detail,
            now=turn.now,
            channel=turn.channel,
        )
        if not person.reachable:
            # Paused: the dispatcher sends them nothing, so the answer to their request is ours.
            turn.say("dispatch.ack.help")
        turn.draft = Draft()
        turn.conversation.step = Step.MENU  # at rest: their acknowledgement is all they get
        return Go.DONE

    def ask_help_kind(
        self,
        session: Session,
        conversation: Conversation,
        *,
        person: Person,
        alert_id: int,
        now: datetime,
    ) -> list[Prompt]:
        """After a request in words that named no kind (already recorded and pushed): ask its
        kind once, a numbered question they may skip."""
        inbound = Inbound(channel=conversation.channel, address=conversation.address)
        turn = Turn(session, conversation, inbound, now, person)
        turn.draft = Draft(help_alert=alert_id)
        self._ask(turn, Step.HELP_WHAT)
        conversation.draft = turn.draft.dump()
        flag_modified(conversation, "draft")
        conversation.updated_at = now
        return turn.replies

    def _take_help_what(self, turn: Turn, answer: Answer) -> Go | Step:
        """The kind of a request already made (or their words about it); skipping is an answer."""
        alert_id = turn.draft.help_alert
        if answer.choice == Word.SKIP or alert_id is None:
            turn.say("bot.help_what.skipped")
        else:
            need = HelpNeed(answer.choice) if answer.choice else need_in(answer.text)
            describe_request(turn.session, alert_id=alert_id, need=need, detail=answer.text)
            turn.say("bot.help_what.thanks")
        turn.draft = Draft()
        turn.conversation.step = Step.MENU  # at rest again
        return Go.DONE

    def _start_update(self, turn: Turn) -> None:
        person = turn.person
        assert person is not None
        turn.draft = Draft.load(enrolment.draft_from(turn.session, person, actor=self._actor(turn)))
        turn.draft.editing = True
        self._ask(turn, Step.UPDATE)

    def _take_update(self, turn: Turn, answer: Answer) -> Go | Step:
        chosen = Step(answer.picked)
        if chosen == Step.ZONE and self._applies(turn, Step.AUTHORITY):
            turn.draft.forget("authority")
            return Step.AUTHORITY
        return chosen

    def _take_delete(self, turn: Turn, answer: Answer) -> Go | Step:
        person = turn.person
        if answer.choice != Word.YES or person is None:
            self._menu(turn)
            return Go.DONE
        enrolment.erase(turn.session, person, actor=self._actor(turn), now=turn.now)
        # The conversation goes too (its address is their phone); the goodbye is still sent.
        turn.session.delete(turn.conversation)
        turn.person = None
        turn.say("bot.delete.done")
        return Go.DONE

    # ------------------------------------------------------------------ moving between steps
    def _advance(self, turn: Turn, after: Step) -> None:
        """Go to the next step that applies and is not answered yet (the summary at the end)."""
        index = REGISTRATION.index(after) if after in REGISTRATION else -1
        for step in REGISTRATION[index + 1 :]:
            if self._applies(turn, step) and not self._answered(turn, step):
                return self._ask(turn, step)
        return self._ask(turn, Step.SUMMARY)

    def _applies(self, turn: Turn, step: Step) -> bool:
        row = STEPS.get(step)
        return row is None or row.applies(self, turn)

    @staticmethod
    def _answered(turn: Turn, step: Step) -> bool:
        row = STEPS.get(step)
        return row is not None and bool(row.stores) and turn.draft.has(row.stores[0])

    def _ask_current(self, turn: Turn) -> None:
        step = turn.conversation.step
        if step in (Step.NEW, Step.STOPPED):
            return self._begin(turn) if turn.person is None else self._menu(turn)
        return self._ask(turn, Step(step))

    def _ask(self, turn: Turn, step: Step) -> None:
        if not STEPS[step].registration and turn.person is None:
            return self._begin(turn)  # a registered person's step, and they are gone
        turn.conversation.step = step
        turn.replies.append(self.prompt(turn, step))
        return None

    def _menu(self, turn: Turn) -> None:
        if turn.person is None:
            return self._begin(turn)
        turn.draft = Draft()
        turn.replies.append(Prompt(text=self.status_text(turn.session, turn.person, turn.language)))
        return self._ask(turn, Step.MENU)

    # ------------------------------------------------------------------ prompts
    def prompt(self, turn: Turn, step: Step) -> Prompt:
        """The question for ``step`` in the conversation's language, with its choices."""
        row = STEPS[step]
        text = row.asks(self, turn) if row.asks else t(turn.language, f"bot.{step.value}.prompt")
        selected = frozenset(self._picked(turn, row.stores[0])) if row.multi else frozenset()
        return Prompt(
            text=text,
            step=step.value,
            choices=row.choices(self, turn),
            multi=row.multi,
            selected=selected,
            numbered=not row.shortcuts,
            requests=row.requests(turn),
            navigation=row.navigation,
        )

    def _choices(self, turn: Turn, step: Step, lang: Language) -> tuple[Choice, ...]:
        """A step's choices in another language (English words are understood everywhere)."""
        saved, turn.speaking = turn.speaking, lang
        try:
            return STEPS[step].choices(self, turn)
        finally:
            turn.speaking = saved

    def _ask_language(self, turn: Turn) -> str:
        if turn.draft.has("language"):
            return t(turn.language, "bot.language.prompt")
        return "\n".join(t(language, "bot.language.prompt") for language in ALL_LANGUAGES)

    def _ask_name(self, turn: Turn) -> str:
        key = "bot.name.prompt_family" if turn.draft.family else "bot.name.prompt"
        return t(turn.language, key)

    def _ask_phone(self, turn: Turn) -> str:
        key = "bot.phone.prompt_family" if turn.draft.family else "bot.phone.prompt"
        return t(turn.language, key)

    def _ask_code(self, turn: Turn) -> str:
        key = (
            "bot.phone_code.prompt_landline"
            if turn.draft.code_landline
            else "bot.phone_code.prompt"
        )
        return t(turn.language, key)

    def _ask_consent(self, turn: Turn) -> str:
        text = consent_text(ConsentKind.REGISTRATION, turn.language)
        return t(turn.language, "bot.consent.prompt", text=text)

    def _ask_health(self, turn: Turn) -> str:
        text = consent_text(ConsentKind.HEALTH_DATA, turn.language)
        return t(turn.language, "bot.health.prompt", text=text)

    def _ask_guardian(self, turn: Turn) -> str:
        text = consent_text(ConsentKind.GUARDIAN, turn.language)
        return t(turn.language, "bot.guardian.prompt", text=text)

    def _ask_summary(self, turn: Turn) -> str:
        return t(turn.language, "bot.summary.prompt", summary=self._summary(turn))

    def _authority_profile(self, turn: Turn) -> AuthorityProfile:
        code = turn.draft.authority
        for authority in self.profile.authorities:
            if authority.code == code:
                return authority
        return self.profile.authorities[0]

    def _summary(self, turn: Turn) -> str:
        """The answers so far, short enough for an SMS; health details only as a count."""
        draft, lang = turn.draft, turn.language
        authority = self._authority_profile(turn)
        zones = {z.code: z.names.get(lang) for z in authority.zones}
        who = draft.who or Who.VOLUNTEER
        lines = [
            t(lang, "bot.summary.name", name=draft.name or "-"),
            t(lang, "bot.summary.who", who=t(lang, f"bot.who.{who.value}")),
            t(lang, "bot.summary.zone", zone=zones.get(draft.zone or "", "-")),
        ]
        if draft.phone:
            lines.append(t(lang, "bot.summary.phone", phone=draft.phone))
        if draft.birth_year:
            lines.append(t(lang, "bot.summary.birth_year", year=draft.birth_year))
        if self._applies(turn, Step.SKILLS):
            skills = {s.code: s.names.get(lang) for s in self.profile.skills}
            named = ", ".join(skills.get(code, code) for code in draft.skills)
            lines.append(t(lang, "bot.summary.skills", skills=named or "-"))
        if self._applies(turn, Step.NEEDS):
            lines.append(t(lang, "bot.summary.needs", count=len(draft.needs)))
        return "\n".join(lines)

    # ------------------------------------------------------------------ choices
    def _words(self, turn: Turn, prefix: str, values: tuple[str, ...]) -> tuple[Choice, ...]:
        return tuple(Choice(v, t(turn.language, f"bot.{prefix}.{v}")) for v in values)

    def _yes_no(self, turn: Turn) -> tuple[Choice, ...]:
        return (
            Choice(Word.YES, t(turn.language, "bot.choice.yes")),
            Choice(Word.NO, t(turn.language, "bot.choice.no")),
        )

    def _agree(self, turn: Turn) -> tuple[Choice, ...]:
        return (
            Choice(Word.YES, t(turn.language, "bot.choice.agree")),
            Choice(Word.NO, t(turn.language, "bot.choice.decline")),
        )

    def _skip(self, turn: Turn) -> tuple[Choice, ...]:
        return (Choice(Word.SKIP, t(turn.language, "bot.choice.skip")),)

    def _languages(self, turn: Turn) -> tuple[Choice, ...]:
        return tuple(Choice(x.value, t(x, "bot.language.name")) for x in ALL_LANGUAGES)

    def _who_choices(self, turn: Turn) -> tuple[Choice, ...]:
        return self._words(turn, "who", tuple(Who))

    def _phone_choices(self, turn: Turn) -> tuple[Choice, ...]:
        # Skipping is for one's own number on Telegram (the chat reaches them), not a family's.
        if turn.draft.family or turn.channel != Channel.TELEGRAM:
            return ()
        return self._skip(turn)

    def _code_choices(self, turn: Turn) -> tuple[Choice, ...]:
        value = GO_ON if turn.draft.code_landline else RESEND
        return (Choice(value, t(turn.language, f"bot.phone_code.{value}")),)

    def _authorities(self, turn: Turn) -> tuple[Choice, ...]:
        lang = turn.language
        return tuple(Choice(a.code, a.names.get(lang)) for a in self.profile.authorities)

    def _zones(self, turn: Turn) -> tuple[Choice, ...]:
        lang = turn.language
        return tuple(Choice(z.code, z.names.get(lang)) for z in self._authority_profile(turn).zones)

    def _skills(self, turn: Turn) -> tuple[Choice, ...]:
        lang = turn.language
        return tuple(Choice(s.code, s.names.get(lang)) for s in self.profile.skills)

    def _avail_choices(self, turn: Turn) -> tuple[Choice, ...]:
        return self._words(turn, "avail", tuple(Availability))

    def _capacities(self, turn: Turn) -> tuple[Choice, ...]:
        return tuple(Choice(v, v) for v in CAPACITY_SHORTCUTS)

    def _needs(self, turn: Turn) -> tuple[Choice, ...]:
        none = Choice(Word.NONE, t(turn.language, "bot.choice.none"))
        return (*self._words(turn, "needs", NEED_FLAGS), none)

    def _guardian_choices(self, turn: Turn) -> tuple[Choice, ...]:
        return (Choice(Word.NO, t(turn.language, "bot.choice.decline")),)

    def _summary_choices(self, turn: Turn) -> tuple[Choice, ...]:
        return self._words(turn, "summary", ("confirm", "edit", "cancel"))

    def _menu_choices(self, turn: Turn) -> tuple[Choice, ...]:
        person = turn.person
        paused = person is not None and person.status != PersonStatus.ACTIVE
        values = ("help", "update", "language", "resume" if paused else "pause", "stop", "delete")
        return self._words(turn, "menu", values)

    def _help_needs(self, turn: Turn) -> tuple[Choice, ...]:
        # The officers' words for the kinds, short enough for a numbered SMS list.
        return tuple(
            Choice(n.value, t(turn.language, f"dispatch.need.{n.value}")) for n in HelpNeed
        )

    def _help_what_choices(self, turn: Turn) -> tuple[Choice, ...]:
        kinds = tuple(n for n in HelpNeed if n != HelpNeed.OTHER)
        named = tuple(Choice(n.value, t(turn.language, f"dispatch.need.{n.value}")) for n in kinds)
        return (*named, *self._skip(turn))

    def _fields(self, turn: Turn) -> tuple[Choice, ...]:
        return tuple(
            Choice(s.value, t(turn.language, f"bot.update.{s.value}"))
            for s in UPDATABLE
            if self._applies(turn, s)
        )

    # ------------------------------------------------------------------ when a step applies
    def _asks_phone(self, turn: Turn) -> bool:
        # A Telegram chat has no number of its own; an SMS has one, unless it is a family's.
        return turn.channel == Channel.TELEGRAM or turn.draft.family

    def _code_pending(self, turn: Turn) -> bool:
        return turn.draft.code_phone is not None

    def _many_authorities(self, turn: Turn) -> bool:
        return len(self.profile.authorities) > 1

    def _volunteer(self, turn: Turn) -> bool:
        return turn.draft.volunteer

    def _resident(self, turn: Turn) -> bool:
        return turn.draft.resident

    def _has_contact(self, turn: Turn) -> bool:
        return turn.draft.resident and bool(turn.draft.ec_name)

    def _has_needs(self, turn: Turn) -> bool:
        return turn.draft.resident and bool(turn.draft.needs)

    def _minor_volunteer(self, turn: Turn) -> bool:
        year = turn.draft.birth_year
        return turn.draft.volunteer and year is not None and rules.is_minor(year, turn.now.year)

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
            if not Draft.load(conversation.draft).editing:
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
                draft=turn.draft.dump(),
                channel=turn.channel,
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
        return f"bot:{turn.channel.value}"


# The dialog, one row a step. Registration asks the rows marked so, in this order.
STEPS: dict[Step, Row] = {
    Step.LANGUAGE: Row(
        stores=("language",),
        choices=Dialog._languages,
        take=Dialog._take_language,
        asks=Dialog._ask_language,
        navigation=False,
    ),
    Step.WHO: Row(stores=("who",), choices=Dialog._who_choices, take=Dialog._take_who),
    Step.NAME: Row(
        stores=("name",), text=Dialog._name_text, take=Dialog._take_name, asks=Dialog._ask_name
    ),
    Step.PHONE: Row(
        stores=("phone", "phone_source"),
        applies=Dialog._asks_phone,
        choices=Dialog._phone_choices,
        text=Dialog._phone_text,
        contact=True,
        requests=lambda turn: () if turn.draft.family else (Request.CONTACT,),
        take=Dialog._take_phone,
        asks=Dialog._ask_phone,
    ),
    Step.PHONE_CODE: Row(
        stores=("phone", "phone_source"),
        applies=Dialog._code_pending,
        choices=Dialog._code_choices,
        text=Dialog._code_text,
        contact=True,  # their own contact, shared now, still answers the phone question
        requests=lambda turn: (Request.CONTACT,) if turn.draft.code_landline else (),
        take=Dialog._take_phone_code,
        asks=Dialog._ask_code,
    ),
    Step.AUTHORITY: Row(
        stores=("authority",),
        applies=Dialog._many_authorities,
        choices=Dialog._authorities,
        take=Dialog._take_authority,
    ),
    Step.ZONE: Row(
        stores=("zone",),
        choices=Dialog._zones,
        location=True,
        requests=lambda turn: (Request.LOCATION,),
        take=Dialog._take_zone,
    ),
    Step.BIRTH_YEAR: Row(
        stores=("birth_year",), text=Dialog._year_text, take=Dialog._take_birth_year
    ),
    Step.SKILLS: Row(
        stores=("skills",),
        applies=Dialog._volunteer,
        choices=Dialog._skills,
        multi=True,
        take=Dialog._take_many,
    ),
    Step.LANGUAGES: Row(
        stores=("langs",),
        applies=Dialog._volunteer,
        choices=Dialog._languages,
        multi=True,
        take=Dialog._take_many,
    ),
    Step.AVAILABILITY: Row(
        stores=("avail",),
        applies=Dialog._volunteer,
        choices=Dialog._avail_choices,
        take=Dialog._take_avail,
    ),
    Step.VEHICLE: Row(
        stores=("vehicle",),
        applies=Dialog._volunteer,
        choices=Dialog._yes_no,
        take=Dialog._take_vehicle,
    ),
    Step.CAPACITY: Row(
        stores=("capacity",),
        applies=Dialog._volunteer,
        choices=Dialog._capacities,
        shortcuts=True,
        text=Dialog._capacity_text,
        take=Dialog._take_capacity,
    ),
    Step.NEEDS: Row(
        stores=("needs",),
        applies=Dialog._resident,
        choices=Dialog._needs,
        multi=True,
        take=Dialog._take_many,
    ),
    Step.CONTACT_NAME: Row(
        stores=("ec_name",),
        applies=Dialog._resident,
        choices=Dialog._skip,
        text=Dialog._name_text,
        take=Dialog._take_contact_name,
    ),
    Step.CONTACT_PHONE: Row(
        stores=("ec_phone",),
        applies=Dialog._has_contact,
        choices=Dialog._skip,
        text=Dialog._phone_text,
        contact=True,
        take=Dialog._take_contact_phone,
    ),
    Step.CONSENT: Row(
        stores=("consent",),
        choices=Dialog._agree,
        take=Dialog._take_consent,
        asks=Dialog._ask_consent,
    ),
    Step.HEALTH_CONSENT: Row(
        stores=("health",),
        applies=Dialog._has_needs,
        choices=Dialog._agree,
        take=Dialog._take_health_consent,
        asks=Dialog._ask_health,
    ),
    Step.GUARDIAN: Row(
        stores=("guardian",),
        applies=Dialog._minor_volunteer,
        choices=Dialog._guardian_choices,
        text=Dialog._name_text,
        take=Dialog._take_guardian,
        asks=Dialog._ask_guardian,
    ),
    Step.SUMMARY: Row(
        choices=Dialog._summary_choices, take=Dialog._take_summary, asks=Dialog._ask_summary
    ),
    Step.MENU: Row(
        choices=Dialog._menu_choices,
        text=Dialog._anything,
        take=Dialog._take_menu,
        navigation=False,
        registration=False,
    ),
    Step.UPDATE: Row(choices=Dialog._fields, take=Dialog._take_update, registration=False),
    Step.DELETE: Row(choices=Dialog._yes_no, take=Dialog._take_delete, registration=False),
    Step.HELP_KIND: Row(
        choices=Dialog._help_needs,
        text=Dialog._help_words,
        take=Dialog._take_help_kind,
        registration=False,
    ),
    Step.HELP_DETAIL: Row(
        choices=Dialog._skip,
        text=Dialog._help_detail_text,
        take=Dialog._take_help_detail,
        registration=False,
        back=Step.HELP_KIND,
    ),
    Step.HELP_WHAT: Row(
        choices=Dialog._help_what_choices,
        text=Dialog._help_detail_text,
        take=Dialog._take_help_what,
        registration=False,
        navigation=False,
    ),
}
REGISTRATION = tuple(step for step, row in STEPS.items() if row.registration)
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
_STEP_VALUES = frozenset(step.value for step in Step)
# The steps that ask about a request for help: words asking for help answer them.
ASKING_FOR_HELP = frozenset({Step.HELP_KIND.value, Step.HELP_DETAIL.value, Step.HELP_WHAT.value})
