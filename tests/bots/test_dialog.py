"""The conversation engine, step by step, in all five languages (in-memory SQLite, no network)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots import enrolment
from bots.consent import CONSENT_VERSIONS, consent_text, fingerprint
from bots.dialog import REGISTRATION, STEPS, Dialog, Inbound, Invalid, Step, Turn
from bots.enrolment import CODE_KIND
from bots.models import Conversation
from config.i18n import catalog, t
from config.languages import ALL_LANGUAGES, Language
from dispatch.channels import sms as sms_channel
from dispatch.channels.base import Prompt
from dispatch.models import OutboxMessage
from registry import rules
from registry.models import (
    AssignmentStatus,
    BuddyAssignment,
    Channel,
    Consent,
    ConsentKind,
    Person,
    RoleAssignment,
    Source,
)
from registry.phone_codes import PhoneCode
from registry.phones import normalise_phone

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
Answer = str | Callable[[Language], str]


@dataclass
class Desk:
    """One conversation driven straight through the engine."""

    session: Session
    dialog: Dialog
    conversation: Conversation

    def send(self, text: str | None = None, **inbound: Any) -> list[Prompt]:
        message = Inbound(
            channel=self.conversation.channel,
            address=self.conversation.address,
            text=text,
            **inbound,
        )
        prompts = self.dialog.respond(self.session, self.conversation, message, now=NOW)
        self.session.flush()
        return prompts

    @property
    def step(self) -> str:
        return self.conversation.step

    @property
    def draft(self) -> dict[str, Any]:
        return self.conversation.draft


@pytest.fixture
def open_desk(
    memory_sessions: sessionmaker[Session], dialog: Dialog
) -> Iterator[Callable[..., Desk]]:
    session = memory_sessions()

    def make(
        step: Step,
        draft: dict[str, Any],
        language: Language,
        channel: Channel = Channel.SMS,
        address: str = "+972525551234",
    ) -> Desk:
        conversation = Conversation(
            channel=channel,
            address=address,
            step=step.value,
            draft={"language": language.value, **draft},
            language=language,
            updated_at=NOW,
            allowance=0.0,
        )
        session.add(conversation)
        session.flush()
        return Desk(session, dialog, conversation)

    yield make
    session.close()


def word(key: str) -> Callable[[Language], str]:
    return lambda language: t(language, key)


RESIDENT = {"who": "resident", "name": "Sara", "authority": "kiryat-tamar", "zone": "kt-center"}
VOLUNTEER = {"who": "volunteer", "name": "Omar", "authority": "kiryat-tamar", "zone": "kt-center"}

# (step, draft before, answer, draft key, value expected, next step)
GOOD_ANSWERS: list[tuple[Step, dict[str, Any], Answer, str, Any, Step]] = [
    (Step.WHO, {}, "2", "who", "resident", Step.NAME),
    (Step.WHO, {}, word("bot.who.volunteer"), "who", "volunteer", Step.NAME),
    (Step.WHO, {}, word("bot.who.family"), "who", "family", Step.NAME),
    (
        Step.NAME,
        {"who": "resident"},
        " Sara \u202bכהן\u202c 🌸",
        "name",
        "Sara כהן 🌸",
        Step.AUTHORITY,
    ),
    (Step.AUTHORITY, {"who": "resident"}, "1", "authority", "kiryat-tamar", Step.ZONE),
    (
        Step.ZONE,
        {"who": "resident", "authority": "kiryat-tamar"},
        "3",
        "zone",
        "kt-rimonim",
        Step.BIRTH_YEAR,
    ),
    (
        Step.ZONE,
        {"who": "resident", "authority": "emek-tamar"},
        "2",
        "zone",
        "et-kfar-ela",
        Step.BIRTH_YEAR,
    ),
    (Step.BIRTH_YEAR, RESIDENT, "1940", "birth_year", 1940, Step.NEEDS),
    (
        Step.BIRTH_YEAR,
        VOLUNTEER,
        "١٩٨٠".translate(str.maketrans("١٩٨٠", "1980")),
        "birth_year",
        1980,
        Step.SKILLS,
    ),
    (Step.SKILLS, VOLUNTEER, "1 3", "skills", ["driving", "first_aid"], Step.LANGUAGES),
    (Step.SKILLS, VOLUNTEER, "1, 3", "skills", ["driving", "first_aid"], Step.LANGUAGES),
    (Step.LANGUAGES, VOLUNTEER, "2", "langs", ["ar"], Step.AVAILABILITY),
    (Step.AVAILABILITY, VOLUNTEER, "2", "avail", "emergency", Step.VEHICLE),
    (Step.VEHICLE, VOLUNTEER, word("bot.choice.yes"), "vehicle", True, Step.CAPACITY),
    (Step.VEHICLE, VOLUNTEER, "2", "vehicle", False, Step.CAPACITY),
    (Step.CAPACITY, VOLUNTEER, "4", "capacity", 4, Step.CONSENT),
    (Step.NEEDS, RESIDENT, "1 2", "needs", ["lives_alone", "mobility"], Step.CONTACT_NAME),
    (Step.NEEDS, RESIDENT, "0", "needs", [], Step.CONTACT_NAME),
    (Step.CONTACT_NAME, RESIDENT, "David", "ec_name", "David", Step.CONTACT_PHONE),
    (Step.CONTACT_NAME, RESIDENT, word("bot.choice.skip"), "ec_name", None, Step.CONSENT),
    (
        Step.CONTACT_PHONE,
        {**RESIDENT, "ec_name": "D"},
        "054-555-0101",
        "ec_phone",
        "+972545550101",
        Step.CONSENT,
    ),
    (
        Step.CONSENT,
        RESIDENT,
        "1",
        "consent",
        CONSENT_VERSIONS[ConsentKind.REGISTRATION],
        Step.SUMMARY,
    ),
    (
        Step.HEALTH_CONSENT,
        {**RESIDENT, "needs": ["mobility"], "consent": "v"},
        "1",
        "health",
        CONSENT_VERSIONS[ConsentKind.HEALTH_DATA],
        Step.SUMMARY,
    ),
    (
        Step.HEALTH_CONSENT,
        {**RESIDENT, "needs": ["mobility"], "consent": "v"},
        "2",
        "needs",
        [],
        Step.SUMMARY,
    ),
    (
        Step.GUARDIAN,
        {**VOLUNTEER, "birth_year": 2011, "consent": "v"},
        "Dana Levi",
        "guardian",
        "Dana Levi",
        Step.SUMMARY,
    ),
    (
        Step.GUARDIAN,
        {**VOLUNTEER, "birth_year": 2011, "consent": "v"},
        word("bot.choice.no"),
        "guardian",
        None,
        Step.SUMMARY,
    ),
]

# (step, draft before, answer, error message key)
BAD_ANSWERS: list[tuple[Step, dict[str, Any], str, str]] = [
    (Step.WHO, {}, "9", "bot.error.choice"),
    (Step.WHO, {}, "", "bot.error.choice"),
    (Step.NAME, RESIDENT, "🙂🙂", "bot.error.name_letters"),
    (Step.NAME, RESIDENT, "\u202b\u202c", "bot.error.name_empty"),
    (Step.NAME, RESIDENT, "א" * (rules.MAX_NAME + 1), "bot.error.name_long"),
    (Step.ZONE, RESIDENT, "99", "bot.error.choice"),
    (Step.BIRTH_YEAR, RESIDENT, "forty", "bot.error.year"),
    (Step.BIRTH_YEAR, RESIDENT, "1850", "bot.error.year"),
    (Step.BIRTH_YEAR, VOLUNTEER, "2020", "bot.error.too_young"),
    (Step.SKILLS, VOLUNTEER, "1 77", "bot.error.choice"),
    (Step.CAPACITY, VOLUNTEER, "50", "bot.error.number"),
    (Step.CAPACITY, VOLUNTEER, str(rules.MAX_CHECKIN_CAPACITY + 1), "bot.error.number"),
    (Step.CONTACT_PHONE, {**RESIDENT, "ec_name": "D"}, "12", "phone.invalid"),
    (Step.CONSENT, RESIDENT, "maybe", "bot.error.choice"),
]


def _answer(answer: Answer, language: Language) -> str:
    return answer if isinstance(answer, str) else answer(language)


@pytest.mark.parametrize("language", ALL_LANGUAGES)
@pytest.mark.parametrize(
    ("step", "before", "answer", "key", "value", "after"),
    GOOD_ANSWERS,
    ids=[f"{case[0].value}-{i}" for i, case in enumerate(GOOD_ANSWERS)],
)
def test_a_good_answer_is_kept_and_the_next_step_asked(
    open_desk: Callable[..., Desk],
    language: Language,
    step: Step,
    before: dict[str, Any],
    answer: Answer,
    key: str,
    value: Any,
    after: Step,
) -> None:
    desk = open_desk(step, before, language)
    prompts = desk.send(_answer(answer, language))
    assert desk.draft[key] == value
    assert desk.step == after
    assert prompts[-1].step == after.value
    for earlier, kept in before.items():
        if earlier != key and earlier != "needs":
            assert desk.draft[earlier] == kept


@pytest.mark.parametrize("language", ALL_LANGUAGES)
@pytest.mark.parametrize(
    ("step", "before", "answer", "error"),
    BAD_ANSWERS,
    ids=[f"{case[0].value}-{i}" for i, case in enumerate(BAD_ANSWERS)],
)
def test_a_bad_answer_is_explained_and_nothing_is_lost(
    open_desk: Callable[..., Desk],
    language: Language,
    step: Step,
    before: dict[str, Any],
    answer: str,
    error: str,
) -> None:
    desk = open_desk(step, before, language)
    prompts = desk.send(answer)
    assert desk.step == step
    assert {k: v for k, v in desk.draft.items() if k != "language"} == before
    params = {
        "max": rules.MAX_CHECKIN_CAPACITY if step == Step.CAPACITY else rules.MAX_NAME,
        "age": rules.MIN_VOLUNTEER_AGE,
    }
    assert prompts[0].text == t(language, error, **params)
    assert prompts[-1].step == step.value


def _applicable(draft: dict[str, Any]) -> list[Step]:
    return [
        s
        for s in REGISTRATION
        if s not in (Step.PHONE, Step.PHONE_CODE, Step.GUARDIAN, Step.HEALTH_CONSENT)
        and not (
            s in (Step.SKILLS, Step.LANGUAGES, Step.AVAILABILITY, Step.VEHICLE, Step.CAPACITY)
            and draft["who"] == "resident"
        )
        and not (
            s in (Step.NEEDS, Step.CONTACT_NAME, Step.CONTACT_PHONE) and draft["who"] == "volunteer"
        )
    ]


@pytest.mark.parametrize("language", ALL_LANGUAGES)
@pytest.mark.parametrize(
    "step", [s for s in _applicable({"who": "resident"}) if s != Step.LANGUAGE]
)
def test_back_goes_to_the_previous_question_and_keeps_answers(
    open_desk: Callable[..., Desk], language: Language, step: Step
) -> None:
    draft = {**RESIDENT, "ec_name": "D"}
    desk = open_desk(step, draft, language)
    desk.send(t(language, "bot.nav.back"))
    order = [s for s in _applicable({"who": "resident"})]
    assert desk.step == order[order.index(step) - 1]
    assert desk.draft["name"] == "Sara"


@pytest.mark.parametrize("language", ALL_LANGUAGES)
@pytest.mark.parametrize("step", [Step.WHO, Step.NAME, Step.ZONE, Step.NEEDS, Step.SUMMARY])
def test_help_answers_and_asks_the_same_question_again(
    open_desk: Callable[..., Desk], language: Language, step: Step
) -> None:
    desk = open_desk(step, dict(RESIDENT), language)
    prompts = desk.send(t(language, "bot.words.help").split(",")[0])
    assert prompts[0].text == t(language, "bot.help.sms")
    assert desk.step == step and prompts[-1].step == step.value


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_cancel_forgets_the_draft_but_not_the_language(
    open_desk: Callable[..., Desk], language: Language
) -> None:
    desk = open_desk(Step.ZONE, dict(RESIDENT), language)
    # On SMS the English "CANCEL" is a carrier opt-out word, so English speakers write RESET.
    prompts = desk.send("RESET" if language == Language.EN else t(language, "bot.nav.cancel"))
    assert prompts[0].text == t(language, "bot.cancelled")
    assert desk.step == Step.NEW and desk.draft == {"language": language.value}


def test_carrier_cancel_on_sms_is_an_opt_out(open_desk: Callable[..., Desk]) -> None:
    desk = open_desk(Step.ZONE, dict(RESIDENT), Language.EN)
    assert desk.send("CANCEL") == []  # Twilio itself confirms carrier opt-outs
    assert desk.step == Step.STOPPED
    assert desk.send("hello?") == []
    prompts = desk.send("YES")  # Twilio re-subscribes a stopped number that says YES
    assert desk.step == Step.ZONE and prompts[-1].step == "zone"
    assert desk.draft["name"] == "Sara"


def test_first_message_asks_the_language_in_every_language(
    open_desk: Callable[..., Desk],
) -> None:
    desk = open_desk(Step.NEW, {}, Language.HE)
    desk.conversation.language = None
    desk.conversation.draft = {}
    prompts = desk.send("hello")
    assert desk.step == Step.LANGUAGE
    for language in ALL_LANGUAGES:
        assert t(language, "bot.language.prompt") in prompts[0].text
        assert t(language, "bot.language.name") in [c.label for c in prompts[0].choices]


def test_a_keyword_in_a_language_skips_the_language_question(
    open_desk: Callable[..., Desk],
) -> None:
    desk = open_desk(Step.NEW, {}, Language.HE)
    desk.conversation.language = None
    desk.conversation.draft = {}
    prompts = desk.send("انضمام")
    assert desk.conversation.language == Language.AR
    assert desk.step == Step.WHO and prompts[-1].text == t(Language.AR, "bot.who.prompt")


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_telegram_contact_must_be_the_senders_own(
    open_desk: Callable[..., Desk], language: Language
) -> None:
    desk = open_desk(
        Step.PHONE, {"who": "volunteer", "name": "Omar"}, language, Channel.TELEGRAM, "5001"
    )
    prompts = desk.send(contact_phone="+972525550000", contact_is_sender=False)
    assert prompts[0].text == t(language, "bot.phone.not_own")
    assert desk.step == Step.PHONE and "phone" not in desk.draft
    desk.send(contact_phone="972525550000", contact_is_sender=True)
    assert desk.draft["phone"] == "+972525550000" and desk.draft["phone_source"] == "contact"
    assert desk.step == Step.AUTHORITY


def test_telegram_location_picks_the_nearest_zone(open_desk: Callable[..., Desk]) -> None:
    desk = open_desk(
        Step.ZONE,
        {"who": "volunteer", "authority": "kiryat-tamar"},
        Language.AR,
        Channel.TELEGRAM,
        "5002",
    )
    desk.send(location=(31.6243, 34.7695))
    assert desk.draft["zone"] == "kt-north" and desk.draft["lat"] == 31.6243
    desk2 = open_desk(
        Step.ZONE,
        {"who": "volunteer", "authority": "kiryat-tamar"},
        Language.AR,
        Channel.TELEGRAM,
        "5003",
    )
    desk2.send(location=(31.5655, 34.7905))
    assert desk2.draft["authority"] == "emek-tamar" and desk2.draft["zone"] == "et-kfar-ela"


def test_telegram_multi_select_toggles_until_done(open_desk: Callable[..., Desk]) -> None:
    desk = open_desk(Step.SKILLS, dict(VOLUNTEER), Language.RU, Channel.TELEGRAM, "5004")
    prompts = desk.send(button="skills:first_aid")
    assert desk.step == Step.SKILLS and prompts[-1].selected == {"first_aid"}
    desk.send(button="skills:driving")
    prompts = desk.send(button="skills:first_aid")
    assert prompts[-1].selected == {"driving"}
    desk.send(button="skills:done")
    assert desk.draft["skills"] == ["driving"] and desk.step == Step.LANGUAGES


def test_a_button_from_an_old_keyboard_gets_the_current_question(
    open_desk: Callable[..., Desk],
) -> None:
    desk = open_desk(Step.ZONE, dict(RESIDENT), Language.HE, Channel.TELEGRAM, "5005")
    prompts = desk.send(button="who:volunteer")
    assert prompts[0].text == t(Language.HE, "bot.error.old_button")
    assert desk.step == Step.ZONE and desk.draft["who"] == "resident"


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_stickers_and_photos_get_a_clear_answer(
    open_desk: Callable[..., Desk], language: Language
) -> None:
    desk = open_desk(Step.NAME, {"who": "resident"}, language, Channel.TELEGRAM, "5006")
    prompts = desk.send(unsupported=True)
    assert prompts[0].text == t(language, "bot.error.unsupported")
    assert desk.step == Step.NAME


def test_summary_never_lists_health_details(open_desk: Callable[..., Desk]) -> None:
    draft = {**RESIDENT, "needs": ["powered_medical_equipment"], "consent": "v", "health": "v"}
    desk = open_desk(Step.HEALTH_CONSENT, draft, Language.EN)
    prompts = desk.send("1")
    assert desk.step == Step.SUMMARY
    assert t(Language.EN, "bot.needs.powered_medical_equipment") not in prompts[-1].text
    assert t(Language.EN, "bot.summary.needs", count=1) in prompts[-1].text


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_a_complete_sms_registration_writes_person_and_consents(
    open_desk: Callable[..., Desk], language: Language
) -> None:
    desk = open_desk(Step.WHO, {}, language)
    for answer in [
        "3",
        "Miriam",
        "1",
        "2",
        "1950",
        "1 2",
        "1",
        "1",
        "1",
        "3",
        "1",
        "רות",
        "054-555-0101",
        "1",
        "1",
    ]:
        desk.send(answer)
    assert desk.step == Step.SUMMARY, desk.draft
    prompts = desk.send("1")
    assert prompts[0].text == t(language, "bot.summary.done")
    person = desk.session.scalar(select(Person).where(Person.phone == "+972525551234"))
    assert person is not None and person.is_volunteer and person.needs_help
    assert person.language == language and person.needs is not None
    assert person.needs.lives_alone and person.needs.emergency_contact_phone == "+972545550101"
    assert person.volunteer is not None and person.volunteer.skills == ["first_aid", "medical"]
    assert desk.step == Step.MENU and desk.conversation.person_id == person.id
    consents = desk.session.scalars(select(Consent).where(Consent.person_id == person.id)).all()
    assert {(c.kind, c.version, c.language) for c in consents} == {
        (ConsentKind.REGISTRATION, CONSENT_VERSIONS[ConsentKind.REGISTRATION], language),
        (ConsentKind.HEALTH_DATA, CONSENT_VERSIONS[ConsentKind.HEALTH_DATA], language),
    }
    assert all(c.text == consent_text(c.kind, language) for c in consents)


def test_consent_texts_are_pinned_to_their_versions() -> None:
    """A consent text is what people agreed to: changing any wording, in any language, means a
    new version in bots/consent.py and a new pin here (the old version stays in the records)."""
    pins = {
        ConsentKind.REGISTRATION: ("2026-11.1", "12ba3140c8573bc9"),
        ConsentKind.HEALTH_DATA: ("2026-11.1", "626d9057d959c2b4"),
        ConsentKind.GUARDIAN: ("2026-11.1", "326789b834e404ab"),
    }
    current = {kind: (CONSENT_VERSIONS[kind], fingerprint(kind)) for kind in pins}
    assert current == pins


NASTY = [
    "",
    " ",
    "\u202e\u2066\u200f",
    "🙂" * 50,
    "x" * 5000,
    "/",
    "/start " + "p" * 300,
    "'; DROP TABLE person; --",
    "-1",
    "1e9",
    "٣",
    "0 0 0",
    "\x00\x07",
    "1,,,,2",
    "שלום\nעולם",
]


@pytest.mark.parametrize("language", [Language.HE, Language.AM])
@pytest.mark.parametrize(
    "step", [s for s in REGISTRATION if s not in (Step.LANGUAGE, Step.SUMMARY)]
)
def test_nasty_input_never_crashes_and_loses_nothing(
    open_desk: Callable[..., Desk], language: Language, step: Step
) -> None:
    before = {**VOLUNTEER, "birth_year": 1980, "skills": ["driving"], "ec_name": "D"}
    own = {
        Step.WHO: "who",
        Step.NAME: "name",
        Step.AUTHORITY: "authority",
        Step.ZONE: "zone",
        Step.BIRTH_YEAR: "birth_year",
        Step.SKILLS: "skills",
        Step.CONTACT_NAME: "ec_name",
    }
    n = 0
    for channel, address in ((Channel.SMS, "+9725255512"), (Channel.TELEGRAM, "50")):
        for text in NASTY:
            n += 1
            desk = open_desk(step, dict(before), language, channel, f"{address}{n:02d}")
            prompts = desk.send(text)
            assert prompts, (step, text)
            for key in ("who", "name", "authority", "zone", "birth_year", "skills", "ec_name"):
                if key != own.get(step) and not (step == Step.AUTHORITY and key == "zone"):
                    assert desk.draft.get(key) == before[key], (step, text, key)


def test_a_role_and_buddies_show_in_the_status(
    open_desk: Callable[..., Desk], memory_sessions: sessionmaker[Session]
) -> None:
    desk = open_desk(
        Step.SUMMARY,
        {
            **VOLUNTEER,
            "birth_year": 1980,
            "skills": ["first_aid"],
            "langs": [],
            "avail": "both",
            "vehicle": False,
            "capacity": 3,
            "consent": "v",
            "_new_consents": ["registration"],
        },
        Language.RU,
    )
    desk.send("1")
    person = desk.session.scalar(select(Person))
    assert person is not None
    resident = Person(authority_id=person.authority_id, source=Source.STAFF, needs_help=True)
    desk.session.add(resident)
    desk.session.flush()
    desk.session.add(
        RoleAssignment(
            person_id=person.id,
            authority_id=person.authority_id,
            role_code="health",
            status=AssignmentStatus.CONFIRMED,
        )
    )
    desk.session.add(BuddyAssignment(resident_id=resident.id, volunteer_id=person.id, rank=1))
    desk.session.flush()
    status = desk.send("/status")[0].text
    assert t(Language.RU, "bot.status.role_confirmed", role="Здравоохранение") in status
    assert t(Language.RU, "bot.status.checks_on", count=1) in status


# Drafts that reach every step: a resident with an emergency contact and needs, a minor
# volunteer, a family member registering someone.
REACHING: list[dict[str, Any]] = [
    {**RESIDENT, "ec_name": "D", "needs": ["mobility"], "birth_year": 1940},
    {**VOLUNTEER, "birth_year": 2011},
    {**RESIDENT, "who": "family"},
]


_addresses = itertools.count(600_000)


def _turn(desk: Desk) -> Turn:
    conversation = desk.conversation
    inbound = Inbound(channel=conversation.channel, address=conversation.address)
    return Turn(desk.session, conversation, inbound, NOW, None)


def _offered(
    open_desk: Callable[..., Desk], kind: str
) -> list[tuple[Step, Channel, dict[str, Any]]]:
    """(step, channel, draft) for every row of the table that takes free text and offers
    choices (``kind="numbered"``), or offers them as shortcut buttons (``kind="shortcuts"``)."""
    found = []
    for step, row in STEPS.items():
        if row.text is None or not row.registration or row.shortcuts != (kind == "shortcuts"):
            continue
        for channel in (Channel.SMS, Channel.TELEGRAM):
            for draft in REACHING:
                desk = open_desk(step, dict(draft), Language.EN, channel, str(next(_addresses)))
                turn = _turn(desk)
                desk.session.delete(desk.conversation)
                desk.session.flush()
                if row.applies(desk.dialog, turn) and row.choices(desk.dialog, turn):
                    found.append((step, channel, draft))
                    break
    return found


def test_the_table_has_steps_with_free_text_and_choices(open_desk: Callable[..., Desk]) -> None:
    numbered = {(step, channel) for step, channel, _ in _offered(open_desk, "numbered")}
    assert {
        (Step.PHONE, Channel.TELEGRAM),
        (Step.CONTACT_NAME, Channel.SMS),
        (Step.CONTACT_PHONE, Channel.SMS),
        (Step.GUARDIAN, Channel.SMS),
    } <= numbered
    assert [s for s, _, _ in _offered(open_desk, "shortcuts")] == [Step.CAPACITY] * 2


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_every_numbered_choice_is_taken_by_its_number_even_where_free_text_is_taken(
    open_desk: Callable[..., Desk], language: Language
) -> None:
    n = 0
    for step, channel, before in _offered(open_desk, "numbered"):
        probe = open_desk(step, dict(before), language, channel, str(next(_addresses)))
        choices = probe.send("/help")[-1].choices  # the question asked again, with its choices
        for number in range(1, len(choices) + 1):
            n += 1
            desk = open_desk(step, dict(before), language, channel, str(next(_addresses)))
            prompts = desk.send(f"{number}")
            said = prompts[0].text
            assert desk.step != step, (step, channel, number, said)
            errors = [t(language, k, max=60, age=14) for k in catalog(language) if ".error." in k]
            assert said not in [*errors, t(language, "phone.invalid")], (step, number, said)
            stored = STEPS[step].stores[0]
            assert desk.draft[stored] is None, (step, number)  # skipped or declined
    assert n >= 4


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_a_numbered_choice_is_never_also_a_valid_free_text_answer(
    open_desk: Callable[..., Desk], language: Language
) -> None:
    """Where a step takes both, its choices' numbers must be answers its free text refuses;
    a step whose free text is a number offers its choices as shortcut buttons instead."""
    for step, channel, before in _offered(open_desk, "numbered"):
        desk = open_desk(step, dict(before), language, channel, str(next(_addresses)))
        turn = _turn(desk)
        row = STEPS[step]
        assert row.text is not None
        prompt = desk.dialog.prompt(turn, step)
        assert prompt.numbered
        for number in range(1, len(prompt.choices) + 1):
            with pytest.raises(Invalid):
                row.text(desk.dialog, turn, f"{number}")
        desk.session.delete(desk.conversation)
        desk.session.flush()
    for step, channel, before in _offered(open_desk, "shortcuts"):
        desk = open_desk(step, dict(before), language, channel, str(next(_addresses)))
        prompt = desk.dialog.prompt(_turn(desk), step)
        assert not prompt.numbered
        assert sms_channel.render_prompt(prompt, language)[0].text == prompt.text  # no list on SMS
        desk.session.delete(desk.conversation)
        desk.session.flush()


@pytest.mark.parametrize("language", ALL_LANGUAGES)
@pytest.mark.parametrize(
    ("step", "before", "typed", "key", "value"),
    [
        (Step.BIRTH_YEAR, RESIDENT, "١٩٤٠", "birth_year", 1940),
        (Step.BIRTH_YEAR, RESIDENT, "１９４０", "birth_year", 1940),
        (Step.BIRTH_YEAR, RESIDENT, "۱۹۴۰", "birth_year", 1940),
        (Step.CAPACITY, VOLUNTEER, "٤", "capacity", 4),
        (Step.CAPACITY, VOLUNTEER, "²", "capacity", 2),
        (Step.WHO, {}, "٢", "who", "resident"),
        (Step.WHO, {}, "２", "who", "resident"),
        (Step.SKILLS, VOLUNTEER, "١ ٣", "skills", ["driving", "first_aid"]),
    ],
)
def test_digits_of_every_script_are_read_as_digits(
    open_desk: Callable[..., Desk],
    language: Language,
    step: Step,
    before: dict[str, Any],
    typed: str,
    key: str,
    value: Any,
) -> None:
    desk = open_desk(step, dict(before), language)
    desk.send(typed)
    assert desk.draft[key] == value and desk.step != step


@pytest.mark.parametrize("location", [(0.0, 0.0), (48.8566, 2.3522), (95.0, 34.0)])
def test_a_location_of_no_place_here_is_not_stored_and_asked_again(
    open_desk: Callable[..., Desk], location: tuple[float, float]
) -> None:
    desk = open_desk(
        Step.ZONE,
        {"who": "volunteer", "authority": "kiryat-tamar"},
        Language.EN,
        Channel.TELEGRAM,
        "5009",
    )
    prompts = desk.send(location=location)
    assert prompts[0].text == t(Language.EN, "bot.error.location")
    assert desk.step == Step.ZONE
    assert "lat" not in desk.draft and "zone" not in desk.draft


def _awaiting_code(
    open_desk: Callable[..., Desk], language: Language, phone: str = "+972525550606"
) -> Desk:
    """A Telegram chat at the code step, the code sent to ``phone`` as the phone step sends it."""
    address = str(next(_addresses))
    desk = open_desk(
        Step.PHONE_CODE, {**VOLUNTEER, "_code_phone": phone}, language, Channel.TELEGRAM, address
    )
    enrolment.send_phone_code(
        desk.session,
        phone=normalise_phone(phone, region="IL"),
        channel=Channel.TELEGRAM,
        address=address,
        language=language,
        actor="test",
        now=NOW,
    )
    return desk


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_the_code_step_takes_its_choice_by_number_and_only_codes_as_codes(
    open_desk: Callable[..., Desk], language: Language
) -> None:
    desk = _awaiting_code(open_desk, language)
    turn, row = _turn(desk), STEPS[Step.PHONE_CODE]
    prompt = desk.dialog.prompt(turn, Step.PHONE_CODE)
    assert [c.value for c in prompt.choices] == ["resend"] and prompt.numbered
    for number in range(1, len(prompt.choices) + 1):  # the table's rule holds for this row too
        with pytest.raises(Invalid):
            row.text(desk.dialog, turn, f"{number}")
    # "1" is "send again" (too soon here), and "12" is no code: neither counts as a wrong code.
    assert desk.send("1")[0].text == t(language, "phone.code_wait", seconds=60)
    assert desk.send("12")[0].text == t(language, "bot.phone_code.digits", digits=6)
    assert desk.session.scalars(select(PhoneCode)).one().wrong == 0
    assert desk.step == Step.PHONE_CODE and desk.draft["_code_phone"] == "+972525550606"
    # Someone else's contact is refused and the code is still awaited.
    prompts = desk.send(contact_phone="972525550000", contact_is_sender=False)
    assert prompts[0].text == t(language, "bot.phone.not_own")
    assert desk.step == Step.PHONE_CODE and desk.draft["_code_phone"] == "+972525550606"
    # Their own contact answers the phone question there: no code is awaited any more.
    desk.send(contact_phone="972525550707", contact_is_sender=True)
    assert desk.draft["phone"] == "+972525550707" and desk.draft["phone_source"] == "contact"
    assert "_code_phone" not in desk.draft and desk.step == Step.BIRTH_YEAR


def test_a_code_in_arabic_indic_digits_is_the_code_sent(open_desk: Callable[..., Desk]) -> None:
    desk = _awaiting_code(open_desk, Language.AR)
    sms = desk.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == CODE_KIND)).one()
    found = re.search(r"\d{6}", sms.text)
    assert found is not None
    typed = found.group().translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    prompts = desk.send(f"{typed[:3]} {typed[3:]}")
    assert prompts[0].text == t(Language.AR, "bot.phone_code.confirmed")
    assert desk.draft["phone"] == "+972525550606" and desk.draft["phone_source"] == "code"
    assert desk.step == Step.BIRTH_YEAR


@pytest.mark.parametrize("language", ALL_LANGUAGES)
@pytest.mark.parametrize("channel", [Channel.SMS, Channel.TELEGRAM])
def test_a_registered_persons_numbered_choice_is_never_also_a_valid_free_text_answer(
    open_desk: Callable[..., Desk], language: Language, channel: Channel
) -> None:
    """The same rule for the steps of a registered person's menu that take words and choices
    (asking for help); the menu itself takes any text only to show itself again."""
    rows = [
        (step, row)
        for step, row in STEPS.items()
        if not row.registration and row.text is not None and step != Step.MENU
    ]
    assert {step for step, _ in rows} >= {Step.HELP_KIND, Step.HELP_DETAIL}
    for step, row in rows:
        desk = open_desk(step, {}, language, channel, str(next(_addresses)))
        turn = _turn(desk)
        assert row.text is not None and not row.shortcuts
        prompt = desk.dialog.prompt(turn, step)
        assert prompt.numbered and prompt.choices
        for number in range(1, len(prompt.choices) + 1):
            with pytest.raises(Invalid):
                row.text(desk.dialog, turn, f"{number}")
        desk.session.delete(desk.conversation)
        desk.session.flush()
