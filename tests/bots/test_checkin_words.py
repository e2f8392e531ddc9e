"""What residents type in answer to a check-in, and to stop or start messages: a table per language.

The words come from the catalogs (``bot.words.ok``, ``bot.words.need_help``, ``bot.words.stop``,
``bot.words.join``); the unit tables prove every spelling is read, and the database tests walk a
resident registered in one language who writes in it, in another, or in another script's digits.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog
from bots.words import (
    Command,
    all_words,
    ascii_digits,
    asks_for_help,
    checkin_answer,
    command_in,
    need_in,
    number_in,
)
from config.i18n import t
from config.languages import ALL_LANGUAGES, Language
from dispatch.models import (
    Alert,
    AlertKind,
    Answer,
    CampaignRecipient,
    HelpNeed,
)
from registry.db import unit_of_work
from registry.models import (
    Authority,
    Channel,
    Person,
    PersonStatus,
    PhoneKind,
    ResidentNeeds,
    Source,
)
from tests.bots.chat import Chat, Clock
from tests.bots.test_inbound import _start_checkin

# The single word for help in each language must count on its own (not only in a phrase).
HELP_WORD = {
    Language.HE: "עזרה",
    Language.AR: "مساعدة",
    Language.EN: "help",
    Language.RU: "помощь",
    Language.AM: "እርዳታ",
}
# A sentence that asks for help among other words.
HELP_SENTENCE = {
    Language.HE: "צריך עזרה, נגמרו התרופות",
    Language.AR: "أحتاج مساعدة، الدواء خلص",
    Language.EN: "I need help, my medicine ran out",
    Language.RU: "Нужна помощь, кончились лекарства",
    Language.AM: "እርዳታ እፈልጋለሁ፣ መድኃኒቴ አልቋል",
}
OK_WORD = {
    Language.HE: "בסדר",
    Language.AR: "بخير",
    Language.EN: "fine",
    Language.RU: "нормально",
    Language.AM: "ደህና",
}


def _catalog(language: Language, key: str) -> list[str]:
    return [w.strip() for w in t(language, f"bot.words.{key}").split(",") if w.strip()]


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_every_ok_and_help_spelling_of_a_language_is_read(language: Language) -> None:
    for word in _catalog(language, "ok"):
        assert checkin_answer(word) == Answer.OK, (language, word)
        assert checkin_answer(f"  {word.upper()}! ") == Answer.OK, (language, word)
    for word in _catalog(language, "need_help"):
        assert checkin_answer(word) == Answer.HELP, (language, word)
    assert checkin_answer(HELP_WORD[language]) == Answer.HELP
    assert checkin_answer(HELP_SENTENCE[language]) == Answer.HELP
    assert checkin_answer(OK_WORD[language]) == Answer.OK
    assert checkin_answer("what time is it") is None


@pytest.mark.parametrize("language", ALL_LANGUAGES)
@pytest.mark.parametrize("registered", [Language.HE, Language.AR, Language.EN])
def test_stop_and_start_words_of_every_language_work_for_everyone(
    language: Language, registered: Language
) -> None:
    for word in _catalog(language, "stop"):
        assert command_in(word, registered) == (Command.STOP, ""), (language, word)
    for word in _catalog(language, "join"):
        assert command_in(word, registered) == (Command.JOIN, ""), (language, word)


def test_the_carriers_opt_out_and_opt_in_words_are_commands_everywhere() -> None:
    for word in ("STOP", "STOPALL", "UNSUBSCRIBE"):
        assert command_in(word, Language.HE) == (Command.STOP, "")
    for word in ("START", "UNSTOP"):
        assert command_in(word, Language.AR) == (Command.JOIN, "")
    # Each language's own stop words are in every language's reach, not only its own.
    assert "стоп" in all_words("stop") and "توقف" in all_words("stop")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("3", 3),
        ("٣", 3),  # Arabic-Indic
        ("۳", 3),  # Extended Arabic-Indic (Persian)
        ("３", 3),  # full width
        ("²", 2),  # superscript
        ("①", 1),  # circled
        ("፫", 3),  # Ethiopic
        ("१२", 12),  # Devanagari
        ("2.", 2),
        ("٢٠٢٦", 2026),
        ("-1", None),
        ("two", None),
        ("", None),
    ],
)
def test_digits_of_every_script_are_read_as_numbers(typed: str, expected: int | None) -> None:
    assert number_in(typed) == expected
    if expected is not None:
        assert ascii_digits(typed).rstrip(".") == str(expected)


# --- the whole path, on both databases ----------------------------------------------------------


def _resident(
    sessions: sessionmaker[Session], authority: Authority, language: Language, phone: str
) -> int:
    with unit_of_work(sessions) as session:
        person = Person(
            authority_id=authority.id,
            name="Miriam Cohen",
            phone=phone,
            phone_kind=PhoneKind.MOBILE,
            language=language,
            channel=Channel.SMS,
            source=Source.STAFF,
            needs_help=True,
            needs=ResidentNeeds(mobility=True),
        )
        session.add(person)
        session.flush()
        return person.id


def _answers(sessions: sessionmaker[Session], person_id: int) -> list[Answer]:
    with sessions() as session:
        return list(
            session.scalars(
                select(CampaignRecipient.answer)
                .where(CampaignRecipient.person_id == person_id)
                .order_by(CampaignRecipient.campaign_id)
            )
        )


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_a_single_help_word_answers_an_open_check_in_in_every_language(
    sessions: sessionmaker[Session],
    authority: Authority,
    dialog: Dialog,
    clock: Clock,
    language: Language,
) -> None:
    phone = "+972525550101"
    person_id = _resident(sessions, authority, language, phone)
    chat = Chat(sessions, dialog, Channel.SMS, phone, clock)
    _start_checkin(sessions, authority, clock)
    replies = chat.send(HELP_WORD[language])
    drill = t(language, "dispatch.drill_marker")
    assert replies[0] == f"{drill} {t(language, 'dispatch.ack.help')}"
    if language == Language.EN:
        # The carriers' HELP still gets the carriers' answer, after the help is recorded.
        assert replies[1:] == [t(language, "bot.help.sms")]
    else:
        assert len(replies) == 1
    assert _answers(sessions, person_id) == [Answer.HELP]
    with sessions() as session:
        kinds = session.scalars(select(Alert.kind).where(Alert.person_id == person_id)).all()
    assert AlertKind.HELP in kinds
    # A later OK does not erase a request for help: the visit stands, the officer decides.
    chat.send(OK_WORD[language])
    assert _answers(sessions, person_id) == [Answer.HELP]


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_ok_in_any_language_and_any_script_of_digits_answers_every_open_check_in(
    sessions: sessionmaker[Session],
    authority: Authority,
    dialog: Dialog,
    clock: Clock,
    language: Language,
) -> None:
    phone = "+972525550102"
    person_id = _resident(sessions, authority, Language.HE, phone)
    chat = Chat(sessions, dialog, Channel.SMS, phone, clock)
    _start_checkin(sessions, authority, clock)
    _start_checkin(sessions, authority, clock)
    # Registered in Hebrew, answering in another language: both open check-ins are answered.
    replies = chat.send(OK_WORD[language])
    assert replies == [
        f"{t(Language.HE, 'dispatch.drill_marker')} {t(Language.HE, 'dispatch.ack.ok')}"
    ]
    assert _answers(sessions, person_id) == [Answer.OK, Answer.OK]
    _start_checkin(sessions, authority, clock)
    assert chat.last is not None
    for typed in ("٢", "²"):  # "help" by its number, in another script's digits
        chat.send(typed)
        assert chat.last.processed
    assert _answers(sessions, person_id) == [Answer.OK, Answer.OK, Answer.HELP]


@pytest.mark.parametrize(
    ("registered", "word"),
    [
        (Language.HE, "СТОП"),
        (Language.HE, "توقف"),
        (Language.AR, "עצור"),
        (Language.RU, "STOPALL"),
        (Language.AM, "стоп"),
    ],
)
def test_a_stop_word_of_another_language_stops_and_start_resumes(
    sessions: sessionmaker[Session],
    authority: Authority,
    dialog: Dialog,
    clock: Clock,
    registered: Language,
    word: str,
) -> None:
    phone = "+972525550103"
    person_id = _resident(sessions, authority, registered, phone)
    chat = Chat(sessions, dialog, Channel.TELEGRAM, "555001", clock)
    with unit_of_work(sessions) as session:
        person = session.get(Person, person_id)
        assert person is not None
        person.telegram_chat_id = 555001
    _start_checkin(sessions, authority, clock)  # stop words win even inside a check-in
    assert chat.send(word) == [t(registered, "bot.stopped.done")]
    with sessions() as session:
        assert session.get(Person, person_id).status == PersonStatus.OPTED_OUT  # type: ignore[union-attr]
    replies = chat.send("START")
    assert replies[0] == t(registered, "bot.stopped.resumed")
    with sessions() as session:
        assert session.get(Person, person_id).status == PersonStatus.ACTIVE  # type: ignore[union-attr]


def test_a_stop_word_of_another_language_stops_an_sms_resident_too(
    sessions: sessionmaker[Session], authority: Authority, dialog: Dialog, clock: Clock
) -> None:
    phone = "+972525550104"
    person_id = _resident(sessions, authority, Language.HE, phone)
    chat = Chat(sessions, dialog, Channel.SMS, phone, clock)
    assert chat.send("توقف") == [t(Language.HE, "bot.stopped.done")]
    with sessions() as session:
        assert session.get(Person, person_id).status == PersonStatus.OPTED_OUT  # type: ignore[union-attr]


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_help_asked_on_an_ordinary_day_is_recorded_in_every_language(
    sessions: sessionmaker[Session],
    authority: Authority,
    dialog: Dialog,
    clock: Clock,
    language: Language,
) -> None:
    """No check-in open: "need help, my medicine ran out" is a help request, not the menu."""
    phone = "+972525550105"
    person_id = _resident(sessions, authority, language, phone)
    chat = Chat(sessions, dialog, Channel.SMS, phone, clock)
    replies = chat.send(HELP_SENTENCE[language])
    assert replies == [t(language, "dispatch.ack.help")]
    with sessions() as session:
        alert = session.scalars(select(Alert).where(Alert.person_id == person_id)).one()
    assert (alert.kind, alert.need, alert.detail) == (
        AlertKind.HELP_REQUEST,
        HelpNeed.MEDICINE,
        HELP_SENTENCE[language],
    )
    # The single command word outside a check-in is still the bot's help text.
    assert chat.send(HELP_WORD[language])[0] == t(language, "bot.help.sms")


@pytest.mark.parametrize(
    ("text", "need"),
    [
        ("צריכה עזרה, אין חשמל למכשיר החמצן", HelpNeed.POWER),
        ("نحتاج مساعدة، ما في أكل", HelpNeed.FOOD),
        ("help me, I need a ride to the clinic", HelpNeed.TRANSPORT),
        ("помогите, я совсем одна, проведайте", HelpNeed.CHECK_ON_ME),
        ("צריך עזרה", HelpNeed.OTHER),  # no kind named: "other", with the words kept
    ],
)
def test_the_kind_of_help_is_read_from_the_words(text: str, need: HelpNeed) -> None:
    assert asks_for_help(text)
    assert (need_in(text) or HelpNeed.OTHER) == need


@pytest.mark.parametrize("language", [Language.HE, Language.AR])
def test_help_answers_every_open_check_in_once_and_a_closed_one_is_answered_honestly(
    sessions: sessionmaker[Session],
    authority: Authority,
    dialog: Dialog,
    clock: Clock,
    language: Language,
) -> None:
    from dispatch.models import Task
    from dispatch.reports import close_campaign
    from registry.models import AssignmentStatus, BuddyAssignment

    phone = "+972525550106"
    person_id = _resident(sessions, authority, language, phone)
    with unit_of_work(sessions) as session:
        buddy = Person(
            authority_id=authority.id,
            name="Yossi Amar",
            phone="+972525550107",
            phone_kind=PhoneKind.MOBILE,
            language=Language.HE,
            channel=Channel.SMS,
            source=Source.STAFF,
            is_volunteer=True,
            birth_year=1980,
        )
        session.add(buddy)
        session.flush()
        session.add(
            BuddyAssignment(
                resident_id=person_id,
                volunteer_id=buddy.id,
                rank=1,
                status=AssignmentStatus.CONFIRMED,
            )
        )
    chat = Chat(sessions, dialog, Channel.SMS, phone, clock)
    _start_checkin(sessions, authority, clock)
    _start_checkin(sessions, authority, clock)
    assert len(chat.send(HELP_WORD[language])) == 1  # one acknowledgement
    assert _answers(sessions, person_id) == [Answer.HELP, Answer.HELP]
    with sessions() as session:
        # One call for help: one alert, one visit, however many check-ins it answered.
        assert len(session.scalars(select(Alert).where(Alert.kind == AlertKind.HELP)).all()) == 1
        assert len(session.scalars(select(Task)).all()) == 1
    # A new check-in, closed before she answers: her OK still counts. Her call for help is still
    # open with the team, so that is what she is told (not only that the check-in ended).
    campaign_id = _start_checkin(sessions, authority, clock)
    with unit_of_work(sessions) as session:
        from dispatch.models import Campaign

        close_campaign(session, campaign=session.get_one(Campaign, campaign_id), now=clock.tick())
    replies = chat.send("1")
    drill = t(language, "dispatch.drill_marker")
    assert replies == [f"{drill} {t(language, 'dispatch.answered.help_open')}"]
    assert _answers(sessions, person_id)[-1] == Answer.OK
