"""A typed phone is confirmed with a one-time code before it links to, merges with or reveals any
record: the takeover through a later import, the code step in five languages, expiry, the lock
after five wrong codes, the resend limits, and the code kept out of logs (SQLite and PostgreSQL).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Step
from bots.enrolment import CODE_KIND
from config.i18n import t
from config.languages import ALL_LANGUAGES, Language
from config.profile import Profile
from dispatch.campaigns import Audience, start_campaign
from dispatch.models import CampaignKind, CampaignMode, OutboxMessage, OutboxStatus
from dispatch.segments import count_segments
from registry.importer import import_list
from registry.models import Authority, Person, PhoneSource
from registry.phone_codes import PhoneCode
from tests.bots.chat import Chat, finish_registration

RESIDENT_PHONE = "+972525551234"
WELFARE_HEADER = "מס' רשומה,שם פרטי,שם משפחה,טלפון,גר לבד,מרותק למיטה,מכשור רפואי"


def code_sms(sessions: sessionmaker[Session], phone: str = RESIDENT_PHONE) -> list[OutboxMessage]:
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.address == phone, OutboxMessage.kind == CODE_KIND)
                .order_by(OutboxMessage.id)
            )
        )


def latest_code(sessions: sessionmaker[Session], phone: str = RESIDENT_PHONE) -> str:
    found = re.search(r"\d{6}", code_sms(sessions, phone)[-1].text)
    assert found is not None
    return found.group()


def start_on_telegram(chat: Chat, language: Language = Language.EN, who: str = "resident") -> None:
    chat.send("/start")
    chat.send(button=f"language:{language.value}")
    chat.send(button=f"who:{who}")
    chat.send("Intruder")


def welfare_import(sessions: sessionmaker[Session], profile: Profile, rows: str) -> list[dict]:  # type: ignore[type-arg]
    with sessions() as session:
        authority = session.scalars(select(Authority).where(Authority.code == "kiryat-tamar")).one()
        report = import_list(
            session,
            data=f"{WELFARE_HEADER}\n{rows}\n".encode(),
            kind="residents",
            authority=authority,
            profile=profile,
            list_name="welfare",
            list_version="2026-12",
        )
        session.commit()
        return list(report.as_json()["rows"])


def test_a_typed_phone_cannot_take_over_a_resident_through_an_import(
    tg_chat: Chat, sessions: sessionmaker[Session], profile: Profile
) -> None:
    """The attack: type a resident's phone on Telegram, wait for the welfare list."""
    start_on_telegram(tg_chat)
    replies = tg_chat.send("052-555-1234")
    # A code went to the typed number (to the resident, not the impostor), saying nothing else.
    assert replies[-1] == t(Language.EN, "bot.phone_code.prompt")
    sent = code_sms(sessions)
    assert len(sent) == 1 and "Intruder" not in sent[0].text and sent[0].person_id is None
    code = latest_code(sessions)
    assert sent[0].text == t(Language.EN, "phone.code_sms", code=code)
    # The impostor does not have it: guesses fail, and the fifth locks the code.
    for attempt in range(5):
        guess = f"{(int(code) + attempt + 1) % 10**6:06d}"
        replies = tg_chat.send(guess)
    assert replies[0] == t(Language.EN, "bot.phone_code.locked")
    assert tg_chat.send(code)[0] == t(Language.EN, "phone.invalid")  # now the phone question
    finish_registration(tg_chat)
    with sessions() as session:
        impostor = session.scalars(select(Person).where(Person.telegram_chat_id == 777001)).one()
        assert impostor.phone is None
        impostor_id = impostor.id

    rows = welfare_import(sessions, profile, "17,אסתר,לוי,052-555-1234,כן,כן,כן")
    assert rows[0]["outcome"] == "created" and rows[0]["person_id"] != impostor_id
    with sessions() as session:
        resident = session.get(Person, rows[0]["person_id"])
        assert resident is not None and resident.phone == RESIDENT_PHONE
        assert resident.needs is not None and resident.needs.bedridden
        resident_id = resident.id

    # /update shows the impostor only what they gave themselves.
    tg_chat.send("/update")
    conversation = tg_chat.conversation()
    assert conversation is not None and conversation.step == Step.UPDATE
    assert conversation.draft["needs"] == ["lives_alone"] and conversation.draft["phone"] is None
    # A check-in of every resident: the resident's goes to her phone, none to the impostor's chat.
    with sessions() as session:
        authority = session.scalars(select(Authority).where(Authority.code == "kiryat-tamar")).one()
        start_campaign(
            session,
            authority=authority,
            kind=CampaignKind.CHECKIN,
            mode=CampaignMode.DRILL,
            audience=Audience(residents_only=True),
            started_by="test",
            now=tg_chat.clock.tick(),
        )
        session.commit()
        checkins = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "checkin")
        ).all()
        to_chat = {m.person_id for m in checkins if m.address == "777001"}
        assert to_chat == {impostor_id}
        assert {m.address for m in checkins if m.person_id == resident_id} == {RESIDENT_PHONE}


def test_a_typed_landline_goes_on_unconfirmed_and_a_list_takes_the_number_back(
    tg_chat: Chat, sessions: sessionmaker[Session], profile: Profile
) -> None:
    start_on_telegram(tg_chat)
    replies = tg_chat.send("08-6123456")
    assert replies[-1] == t(Language.EN, "bot.phone_code.prompt_landline")
    assert code_sms(sessions, "+97286123456") == []  # a landline gets no text
    replies = tg_chat.send(button="phone_code:go_on")
    assert replies[0] == t(Language.EN, "bot.phone_code.unverified")
    finish_registration(tg_chat)
    with sessions() as session:
        impostor = session.scalars(select(Person).where(Person.telegram_chat_id == 777001)).one()
        assert impostor.phone == "+97286123456"
        assert impostor.phone_source == PhoneSource.TYPED and impostor.phone_verified_at is None
        impostor_id = impostor.id

    rows = welfare_import(sessions, profile, "18,משה,כהן,08-6123456,כן,כן,כן")
    # The officer sees the conflict on the row; the impostor's record stays apart, flagged.
    assert rows[0]["outcome"] == "created"
    assert [(w["key"], w["person"]) for w in rows[0]["warnings"]] == [
        ("lists.phone_unverified_holder", impostor_id)
    ]
    assert f" {impostor_id} " in rows[0]["warnings"][0]["message"]
    with sessions() as session:
        impostor = session.get(Person, impostor_id)
        assert impostor is not None and impostor.phone is None
        assert impostor.phone_disputed_at is not None and impostor.needs is not None
        assert not impostor.needs.bedridden
        resident = session.get(Person, rows[0]["person_id"])
        assert resident is not None and resident.phone == "+97286123456"
        assert resident.telegram_chat_id is None


def test_the_confirmed_code_links_the_chat_to_the_own_registration(
    sms_chat: Chat, tg_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    from tests.bots.test_inbound import HEBREW_RESIDENT

    for text in HEBREW_RESIDENT:
        sms_chat.send(text)
    sms_chat.send("1")
    tg_chat.send("/start")
    tg_chat.send("1")  # Hebrew
    tg_chat.send("2")  # resident
    tg_chat.send("מרים אבוקסיס")
    tg_chat.send("052-555-1234")
    # Nothing linked or shown before the code: the chat is still registering.
    conversation = tg_chat.conversation()
    assert conversation is not None and conversation.person_id is None
    assert conversation.step == Step.PHONE_CODE
    with sessions() as session:  # the worker sent it
        session.execute(update(OutboxMessage).values(status=OutboxStatus.SENT))
        session.commit()
    replies = tg_chat.send(latest_code(sessions))
    assert replies[:2] == [
        t(Language.HE, "bot.phone_code.confirmed"),
        t(Language.HE, "bot.phone.linked"),
    ]
    with sessions() as session:
        person = session.scalars(select(Person)).one()
        assert person.telegram_chat_id == 777001 and person.phone == RESIDENT_PHONE
    # The text that carried the code keeps it no longer.
    assert [m.text for m in code_sms(sessions)] == [""]


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_the_code_step_in_every_language(
    tg_chat: Chat, sessions: sessionmaker[Session], language: Language
) -> None:
    start_on_telegram(tg_chat, language, who="volunteer")
    replies = tg_chat.send("052-555-1234")
    assert replies[-1] == t(language, "bot.phone_code.prompt")
    labels = [b["text"] for row in tg_chat.last_buttons() or [] for b in row]
    assert t(language, "bot.phone_code.resend") in labels
    assert t(language, "bot.nav.back") in labels
    code = latest_code(sessions)
    sms = code_sms(sessions)[-1].text
    # The SMS is in their language, one segment even in UCS-2, and says nothing but the code.
    assert sms == t(language, "phone.code_sms", code=code) and count_segments(sms) == 1
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert tg_chat.send(wrong)[0] == t(language, "bot.phone_code.wrong", left=4)
    assert tg_chat.send(button="phone_code:_back")[-1].startswith(t(language, "bot.phone.prompt"))
    tg_chat.clock.tick(60)
    tg_chat.send("052-555-1234")  # typed again, after a minute: a new code
    assert len(code_sms(sessions)) == 2
    replies = tg_chat.send(latest_code(sessions))
    assert replies[0] == t(language, "bot.phone_code.confirmed")
    conversation = tg_chat.conversation()
    assert conversation is not None and conversation.draft["phone"] == RESIDENT_PHONE
    assert conversation.draft["phone_source"] == "code" and conversation.step != Step.PHONE_CODE


def test_an_expired_code_is_refused_and_a_new_one_works(
    tg_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    start_on_telegram(tg_chat)
    tg_chat.send("052-555-1234")
    old = latest_code(sessions)
    tg_chat.clock.tick(10 * 60)
    assert tg_chat.send(old)[0] == t(Language.EN, "bot.phone_code.expired")
    assert tg_chat.conversation().step == Step.PHONE_CODE  # type: ignore[union-attr]
    assert tg_chat.send(button="phone_code:resend")[0] == t(Language.EN, "bot.phone_code.resent")
    assert tg_chat.send(latest_code(sessions))[0] == t(Language.EN, "bot.phone_code.confirmed")
    finish_registration(tg_chat)
    with sessions() as session:
        person = session.scalars(select(Person)).one()
        assert person.phone == RESIDENT_PHONE and person.phone_source == PhoneSource.CODE
        assert person.phone_verified_at is not None


def test_resending_is_limited_so_nobody_can_flood_a_number(
    tg_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    start_on_telegram(tg_chat)
    tg_chat.send("052-555-1234")
    replies = tg_chat.send(button="phone_code:resend")
    assert re.fullmatch(
        re.escape(t(Language.EN, "phone.code_wait", seconds=0)).replace("0", r"\d+"), replies[0]
    )
    for _ in range(2):
        tg_chat.clock.tick(60)
        assert tg_chat.send(button="phone_code:resend")[0] == t(
            Language.EN, "bot.phone_code.resent"
        )
    tg_chat.clock.tick(60)
    replies = tg_chat.send(button="phone_code:resend")
    assert replies[0] == t(Language.EN, "phone.code_too_many")
    assert len(code_sms(sessions)) == 3
    # Another chat typing the same number gets no more texts sent to it this hour.
    other = Chat(tg_chat.sessions, tg_chat.dialog, tg_chat.channel, "777002", tg_chat.clock)
    start_on_telegram(other)
    assert other.send("052-555-1234")[0] == t(Language.EN, "phone.code_too_many")
    assert len(code_sms(sessions)) == 3
    tg_chat.clock.tick(3600)
    assert tg_chat.send(button="phone_code:resend")[0] == t(Language.EN, "bot.phone_code.resent")


def test_the_code_never_reaches_the_logs(
    tg_chat: Chat, sessions: sessionmaker[Session], log_secrets: list[str]
) -> None:
    start_on_telegram(tg_chat)
    tg_chat.send("052-555-1234")
    code = latest_code(sessions)
    log_secrets.append(code)  # checked against every log record at teardown
    tg_chat.send(f"{(int(code) + 1) % 10**6:06d}")
    tg_chat.send(code)
    tg_chat.clock.tick(60)


def test_erasure_takes_the_codes_with_it(tg_chat: Chat, sessions: sessionmaker[Session]) -> None:
    start_on_telegram(tg_chat)
    tg_chat.send("052-555-1234")
    tg_chat.send(latest_code(sessions))
    finish_registration(tg_chat)
    tg_chat.send("/delete")
    assert tg_chat.send(button="delete:yes")[0] == t(Language.EN, "bot.delete.done")
    with sessions() as session:
        assert session.scalars(select(PhoneCode)).all() == []
