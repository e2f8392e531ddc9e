"""A request for help in words that name no kind ("צריך עזרה") is recorded and pushed at once,
then the resident is asked its kind once (numbered on SMS, buttons in Telegram, skippable), and
the answer updates the request the officers see. Through the inbound pipeline, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog, Step
from config.i18n import t
from config.languages import Language
from dispatch.models import Alert, HelpNeed
from registry.models import Channel
from registry.profile_sync import Directory
from tests.bots.chat import Chat, Clock
from tests.bots.test_help_loop import DANA_CHAT, RESIDENT_PHONE, _to
from tests.bots.test_help_menu import RESIDENT_CHAT, _ordinary_day

ASK = {Language.HE: "צריך עזרה", Language.AR: "أحتاج مساعدة"}
KINDS = [n for n in HelpNeed if n != HelpNeed.OTHER]


def _alert(sessions: sessionmaker[Session]) -> Alert:
    with sessions() as session:
        return session.scalars(select(Alert)).one()


def _question(language: Language) -> str:
    lines = [t(language, "bot.help_what.prompt")]
    lines += [f"{n} {t(language, f'dispatch.need.{k.value}')}" for n, k in enumerate(KINDS, 1)]
    lines.append(f"{len(KINDS) + 1} {t(language, 'bot.choice.skip')}")
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("language", "answer", "need"),
    [(Language.HE, "1", HelpNeed.MEDICINE), (Language.AR, "٢", HelpNeed.FOOD)],
)
def test_by_sms_the_kind_is_asked_after_the_alert_and_updates_it(
    sessions: sessionmaker[Session],
    directory: Directory,
    dialog: Dialog,
    language: Language,
    answer: str,
    need: HelpNeed,
) -> None:
    clock = Clock()
    _ordinary_day(sessions, directory, language, clock)
    resident = Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock)
    replies = resident.send(ASK[language])
    assert replies == [t(language, "dispatch.ack.help"), _question(language)]
    # The officer has it already, before any answer: the question delays nothing.
    alert = _alert(sessions)
    assert alert.need == HelpNeed.OTHER
    assert [m.kind for m in _to(sessions, DANA_CHAT)] == ["alert"]

    assert resident.send(answer) == [t(language, "bot.help_what.thanks")]
    assert _alert(sessions).need == need
    conversation = resident.conversation()
    assert conversation is not None and conversation.step == Step.MENU
    # Asked once: the next message is the bot's as usual, and nobody is pushed again.
    resident.send(answer)
    assert _alert(sessions).need == need
    assert len(_to(sessions, DANA_CHAT)) == 1


def test_in_telegram_the_kind_is_asked_with_buttons_and_may_be_skipped(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog
) -> None:
    clock = Clock()
    _ordinary_day(sessions, directory, Language.HE, clock)
    resident = Chat(sessions, dialog, Channel.TELEGRAM, RESIDENT_CHAT, clock)
    replies = resident.send("צריך עזרה")
    assert replies == [t(Language.HE, "dispatch.ack.help"), t(Language.HE, "bot.help_what.prompt")]
    data = [button["data"] for row in resident.last_buttons() or [] for button in row]
    assert data == [f"b:help_what:{k.value}" for k in KINDS] + ["b:help_what:skip"]
    assert resident.send(button="help_what:skip") == [t(Language.HE, "bot.help_what.skipped")]
    assert _alert(sessions).need == HelpNeed.OTHER


def test_words_at_the_question_are_added_to_the_request(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog
) -> None:
    clock = Clock()
    _ordinary_day(sessions, directory, Language.HE, clock)
    resident = Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock)
    resident.send("צריך עזרה")
    assert resident.send("נגמרו התרופות") == [t(Language.HE, "bot.help_what.thanks")]
    alert = _alert(sessions)
    assert alert.need == HelpNeed.MEDICINE and alert.detail == "צריך עזרה | נגמרו התרופות"


def test_words_that_name_the_kind_are_not_asked_again(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog
) -> None:
    clock = Clock()
    _ordinary_day(sessions, directory, Language.AR, clock)
    resident = Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock)
    assert resident.send("نحتاج مساعدة، ما في أكل") == [t(Language.AR, "dispatch.ack.help")]
    assert _alert(sessions).need == HelpNeed.FOOD
