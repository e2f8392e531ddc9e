"""Help at any time from the registered person's menu, through the inbound pipeline on both
databases: the kind (a numbered SMS question or Telegram buttons, or their own words), an optional
word about it, then one help request pushed to the officer on duty, and the truthful
acknowledgement in the resident's language; back and cancel on the way."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog, Step
from config.i18n import t
from config.languages import Language
from dispatch.models import Alert, AlertKind, AlertState, Campaign, HelpNeed, Task
from registry.db import unit_of_work
from registry.models import Channel, Person
from registry.profile_sync import Directory
from tests.bots.chat import Chat, Clock
from tests.bots.test_help_loop import BUDDY_CHAT, DANA_CHAT, RESIDENT_PHONE, _to, _town

RESIDENT_CHAT = "600777"
STATUS = {Language.HE: "מצב", Language.AR: "حالة"}
BACK = {Language.HE: "חזרה", Language.AR: "رجوع"}
CANCEL = {Language.HE: "ביטול", Language.AR: "إلغاء"}


def _ordinary_day(
    sessions: sessionmaker[Session], directory: Directory, language: Language, clock: Clock
) -> dict[str, int]:
    """The help loop's town with no check-in open, the resident also on Telegram."""
    ids = _town(sessions, directory, language, clock)
    with unit_of_work(sessions) as session:
        for campaign in session.scalars(select(Campaign)):
            session.delete(campaign)
        resident = session.get(Person, ids["resident"])
        assert resident is not None
        resident.telegram_chat_id = int(RESIDENT_CHAT)
    return ids


def _chats(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, language: Language
) -> tuple[Chat, Chat]:
    """The resident by SMS and in Telegram, on an ordinary day."""
    clock = Clock()
    _ordinary_day(sessions, directory, language, clock)
    sms = Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock)
    return sms, Chat(sessions, dialog, Channel.TELEGRAM, RESIDENT_CHAT, clock)


def _alerts(sessions: sessionmaker[Session]) -> list[Alert]:
    with sessions() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def _step(chat: Chat) -> str:
    conversation = chat.conversation()
    assert conversation is not None
    return conversation.step


def _menu_line(language: Language, number: int, key: str) -> str:
    return f"\n{number} {t(language, key)}"


@pytest.mark.parametrize("language", [Language.HE, Language.AR])
def test_sms_menu_help_kind_and_detail_make_one_request_pushed_to_the_officer(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, language: Language
) -> None:
    clock = Clock()
    ids = _ordinary_day(sessions, directory, language, clock)
    resident = Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock)

    menu = resident.send(STATUS[language])[-1]
    assert _menu_line(language, 1, "bot.menu.help") in menu
    asked = resident.send("1")
    kinds = [t(language, f"dispatch.need.{need.value}") for need in HelpNeed]
    assert asked == [
        "\n".join(
            [t(language, "bot.help_kind.prompt"), *(f"{n} {k}" for n, k in enumerate(kinds, 1))]
        )
    ]
    detail = resident.send("2")  # food
    assert detail == [
        f"{t(language, 'bot.help_detail.prompt')}\n1 {t(language, 'bot.choice.skip')}"
    ]
    words = {Language.HE: "אין לנו מה לאכול", Language.AR: "لا يوجد طعام في البيت"}[language]
    told = resident.send(words)
    assert told == [t(language, "dispatch.ack.help")]
    print("\n---\n".join([menu, *asked, *detail, *told]))  # with -s: what they saw

    alerts = _alerts(sessions)
    assert [(a.kind, a.need, a.detail, a.state) for a in alerts] == [
        (AlertKind.HELP_REQUEST, HelpNeed.FOOD, words, AlertState.OPEN)
    ]
    assert alerts[0].person_id == ids["resident"]
    # Pushed at once to the officer on duty, naming the need and the words (Telegram).
    pushed = _to(sessions, DANA_CHAT)
    assert [m.kind for m in pushed] == ["alert"]
    assert t("he", "dispatch.need.food") in pushed[0].text and words in pushed[0].text
    # The buddy gets the visit, without the words.
    with sessions() as session:
        task = session.scalars(select(Task)).one()
    assert alerts[0].task_id == task.id and task.volunteer_id == ids["buddy"]
    assert words not in _to(sessions, BUDDY_CHAT)[-1].text
    # The conversation is at rest again, and keeps no word of the request.
    conversation = resident.conversation()
    assert conversation is not None
    assert conversation.step == Step.MENU and conversation.draft == {}


@pytest.mark.parametrize("language", [Language.HE, Language.AR])
def test_telegram_buttons_menu_help_kind_skip(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, language: Language
) -> None:
    _, resident = _chats(sessions, directory, dialog, language)

    resident.send("/status")
    menu = resident.last_buttons()
    assert menu is not None
    assert menu[0][0] == {"text": t(language, "bot.menu.help"), "data": "b:menu:help"}
    assert resident.send(button="menu:help") == [t(language, "bot.help_kind.prompt")]
    buttons = resident.last_buttons()
    assert buttons is not None
    offered = [button["data"] for row in buttons for button in row]
    assert offered == [
        *(f"b:help_kind:{need.value}" for need in HelpNeed),
        "b:help_kind:_back",
        "b:help_kind:_cancel",
    ]
    assert resident.send(button="help_kind:power") == [t(language, "bot.help_detail.prompt")]
    assert resident.send(button="help_detail:skip") == [t(language, "dispatch.ack.help")]
    alerts = _alerts(sessions)
    assert [(a.kind, a.need, a.detail) for a in alerts] == [
        (AlertKind.HELP_REQUEST, HelpNeed.POWER, None)
    ]
    assert [m.kind for m in _to(sessions, DANA_CHAT)] == ["alert"]
    assert t("he", "dispatch.need.power") in _to(sessions, DANA_CHAT)[0].text
    assert _step(resident) == Step.MENU


@pytest.mark.parametrize("language", [Language.HE, Language.AR])
def test_back_and_cancel_on_the_help_steps_make_no_request(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, language: Language
) -> None:
    sms, telegram = _chats(sessions, directory, dialog, language)
    sms.send(STATUS[language])
    sms.send("1")
    sms.send("3")  # transport
    assert _step(sms) == Step.HELP_DETAIL
    # Back from the detail is the kind again; back from the kind is the menu.
    assert sms.send(BACK[language])[0].startswith(t(language, "bot.help_kind.prompt"))
    assert _step(sms) == Step.HELP_KIND
    assert sms.send(BACK[language])[-1].startswith(t(language, "bot.menu.prompt"))
    assert _step(sms) == Step.MENU
    sms.send("1")
    sms.send("1")
    assert sms.send(CANCEL[language])[-1].startswith(t(language, "bot.menu.prompt"))
    conversation = sms.conversation()
    assert conversation is not None
    assert (conversation.step, conversation.draft) == (Step.MENU, {})

    telegram.send("/status")
    telegram.send(button="menu:help")
    assert telegram.send(button="help_kind:_cancel")[-1] == t(language, "bot.menu.prompt")
    telegram.send(button="menu:help")
    telegram.send(button="help_kind:food")
    assert telegram.send(button="help_detail:_back") == [t(language, "bot.help_kind.prompt")]
    assert telegram.send(button="help_kind:_back")[-1] == t(language, "bot.menu.prompt")
    assert _alerts(sessions) == []
    assert _to(sessions, DANA_CHAT) == []


@pytest.mark.parametrize("language", [Language.HE, Language.AR])
def test_words_asking_for_help_on_the_help_steps_make_one_request(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, language: Language
) -> None:
    """Asked the kind, their own words are the request (the kind they name); asked the detail,
    words with "help" in them are the detail: never a second request from the inbox."""
    sms, telegram = _chats(sessions, directory, dialog, language)
    sms.send(STATUS[language])
    sms.send("1")
    words = {Language.HE: "צריך עזרה, נגמרו התרופות", Language.AR: "أحتاج مساعدة، نفد الدواء"}
    assert sms.send(words[language]) == [t(language, "dispatch.ack.help")]
    assert [(a.need, a.detail) for a in _alerts(sessions)] == [(HelpNeed.MEDICINE, words[language])]
    assert _step(sms) == Step.MENU

    telegram.send("/status")
    telegram.send(button="menu:help")
    telegram.send(button="help_kind:check_on_me")
    assert telegram.send(words[language]) == [t(language, "dispatch.ack.help")]
    # Still one request (one stands while open), one push: the words joined it.
    alerts = _alerts(sessions)
    assert len(alerts) == 1 and alerts[0].detail == words[language]
    assert [m.kind for m in _to(sessions, DANA_CHAT)] == ["alert"]
    # A number or a sign is no kind and no detail: explained, the question asked again.
    telegram.send(button="menu:help")
    assert telegram.send("9") == [
        t(language, "bot.error.choice"),
        t(language, "bot.help_kind.prompt"),
    ]
    telegram.send(button="help_kind:other")
    assert telegram.send("42") == [
        t(language, "bot.error.words"),
        t(language, "bot.help_detail.prompt"),
    ]
    assert _step(telegram) == Step.HELP_DETAIL


def test_a_paused_person_asks_for_help_from_the_menu_and_is_answered(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog
) -> None:
    """Paused, their words go to the bot, whose menu offers help; the dispatcher sends a paused
    person nothing, so the dialog gives the acknowledgement itself, once."""
    sms, _ = _chats(sessions, directory, dialog, Language.HE)
    sms.send(STATUS[Language.HE])
    assert sms.send("4")[0] == t(Language.HE, "bot.menu.paused")  # pause
    menu = sms.send("צריך עזרה")[-1]  # not a request from the inbox while paused: the menu
    assert _menu_line(Language.HE, 1, "bot.menu.help") in menu and _alerts(sessions) == []
    sms.send("1")
    sms.send("6")  # other
    assert sms.send("דלג") == [t(Language.HE, "dispatch.ack.help")]
    assert [(a.need, a.detail) for a in _alerts(sessions)] == [(HelpNeed.OTHER, None)]
    assert [m.kind for m in _to(sessions, DANA_CHAT)] == ["alert"]
