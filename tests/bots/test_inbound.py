"""Inbound handling on SQLite and PostgreSQL: the whole path from a delivery to outbox rows."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from bots.dialog import Dialog, Inbound, Step
from bots.flood import FloodPolicy
from bots.inbound import Delivery, handle_inbound
from config.i18n import t
from config.languages import Language
from config.profile import Profile
from dispatch.models import InboundMessage, OutboxMessage, Priority
from registry.db import make_sessionmaker, unit_of_work
from registry.models import (
    Authority,
    Channel,
    Consent,
    ConsentKind,
    Group,
    GroupKind,
    GroupMember,
    Person,
    PersonStatus,
)
from registry.profile_sync import Directory
from tests.bots.chat import Chat, Clock, finish_registration

HEBREW_RESIDENT = [
    "הצטרפות",  # language guessed from the word
    "2",  # a resident who may need help
    "מרים אבוקסיס",
    "1",  # Kiryat Tamar
    "2",  # Old Quarter
    "1941",
    "1 2 4",  # lives alone, mobility, powered medical equipment
    "רות",  # emergency contact
    "054-555-0101",
    "1",  # consent
    "1",  # health-data consent
]


def _person(sessions: sessionmaker[Session], **where: object) -> Person | None:
    with sessions() as session:
        query = select(Person).options(selectinload(Person.volunteer), selectinload(Person.needs))
        for name, value in where.items():
            query = query.where(getattr(Person, name) == value)
        return session.scalar(query)


def test_an_elderly_resident_registers_in_hebrew_by_sms(
    sms_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    for text in HEBREW_RESIDENT:
        sms_chat.send(text)
    assert sms_chat.conversation().step == Step.SUMMARY  # type: ignore[union-attr]
    replies = sms_chat.send("אישור")
    assert replies[0] == t(Language.HE, "bot.summary.done")
    person = _person(sessions, phone="+972525551234")
    assert person is not None and person.needs_help and person.language == Language.HE
    assert person.channel == Channel.SMS and person.status == PersonStatus.ACTIVE
    with sessions() as session:
        kinds = set(session.scalars(select(Consent.kind).where(Consent.person_id == person.id)))
        assert kinds == {ConsentKind.REGISTRATION, ConsentKind.HEALTH_DATA}
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.address == "+972525551234")
        ).all()
        assert {(r.kind, r.priority, r.channel) for r in rows} == {
            ("reply", Priority.INTERACTIVE, Channel.SMS)
        }
        # No medical detail of hers in any SMS: the label appears only in the list of options.
        label = t(Language.HE, "bot.needs.powered_medical_equipment")
        every_option = t(Language.HE, "bot.needs.no_shelter_access")
        assert all(every_option in r.text for r in rows if label in r.text)


def test_a_redelivered_message_is_acknowledged_not_processed(
    sms_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    first = sms_chat.send("JOIN", key="sms:SM1")
    assert first and sms_chat.last is not None and sms_chat.last.processed
    again = sms_chat.send("JOIN", key="sms:SM1")
    assert again == [] and sms_chat.last.duplicate
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 1


def test_a_restart_mid_registration_loses_nothing(
    engine: Engine, directory: Directory, profile: Profile, clock: Clock
) -> None:
    before = Chat(
        make_sessionmaker(engine),
        Dialog(profile=profile, region="IL"),
        Channel.SMS,
        "+972525551234",
        clock,
    )
    for text in HEBREW_RESIDENT[:5]:
        before.send(text)
    # A new process: new engine, new session factory, new dialog; the same database.
    from registry.db import make_engine

    fresh_engine = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        after = Chat(
            make_sessionmaker(fresh_engine),
            Dialog(profile=profile, region="IL"),
            Channel.SMS,
            "+972525551234",
            clock,
        )
        replies = after.send("1941")
        assert any(r.startswith(t(Language.HE, "bot.needs.prompt")) for r in replies)
        conversation = after.conversation()
        assert conversation is not None and conversation.draft["name"] == "מרים אבוקסיס"
        for text in HEBREW_RESIDENT[6:]:
            after.send(text)
        after.send("1")
        assert _person(after.sessions, phone="+972525551234") is not None
    finally:
        fresh_engine.dispose()


def test_the_same_person_on_both_channels_is_one_person(
    sms_chat: Chat, tg_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    for text in HEBREW_RESIDENT:
        sms_chat.send(text)
    sms_chat.send("1")
    # Later, on Telegram, the same person shares their own contact: the chat is linked to her.
    tg_chat.send("/start")
    tg_chat.send("1")  # Hebrew
    tg_chat.send("2")  # resident
    tg_chat.send("מרים אבוקסיס")
    replies = tg_chat.send(contact="+972525551234", own_contact=True)
    assert replies[0] == t(Language.HE, "bot.phone.linked")
    assert tg_chat.conversation().step == Step.MENU  # type: ignore[union-attr]
    # She adds that she volunteers too, from Telegram.
    tg_chat.send(button="menu:update")
    tg_chat.send(button="update:who")
    tg_chat.send(button="who:both")
    for _ in ("skills", "langs"):
        tg_chat.send(button=f"{tg_chat.conversation().step}:done")  # type: ignore[union-attr]
    for answer in ["avail:both", "vehicle:no", "capacity:2"]:
        tg_chat.send(button=answer)
    assert tg_chat.conversation().step == Step.SUMMARY  # type: ignore[union-attr]
    tg_chat.send(button="summary:confirm")
    with sessions() as session:
        people = session.scalars(select(Person)).all()
        assert len(people) == 1
        person = people[0]
        assert person.telegram_chat_id == 777001 and person.phone == "+972525551234"
        assert person.is_volunteer and person.needs_help and person.channel == Channel.TELEGRAM
    # Either channel now sees the registered person's menu.
    assert sms_chat.send("מצב")[0].startswith("מרים אבוקסיס")


def test_a_draft_begun_by_sms_continues_on_telegram(sms_chat: Chat, tg_chat: Chat) -> None:
    for text in HEBREW_RESIDENT[:6]:
        sms_chat.send(text)
    tg_chat.send("/start")
    tg_chat.send("1")
    tg_chat.send("2")
    tg_chat.send("מרים")
    tg_chat.send(contact="+972525551234", own_contact=True)
    conversation = tg_chat.conversation()
    assert conversation is not None and conversation.draft["birth_year"] == 1941
    assert conversation.step == Step.NEEDS  # zone and birth year came from the SMS draft


def test_a_typed_number_cannot_take_over_a_registered_person(
    sms_chat: Chat, tg_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    for text in HEBREW_RESIDENT:
        sms_chat.send(text)
    sms_chat.send("1")
    for text in ["/start", "3", "2", "Intruder"]:
        tg_chat.send(text)
    # Nothing says the number is registered: the same code step as for any number.
    replies = tg_chat.send("052-555-1234")
    assert replies == [t(Language.EN, "bot.phone_code.prompt")]
    assert tg_chat.conversation().person_id is None  # type: ignore[union-attr]
    tg_chat.send(button="phone_code:_back")
    replies = finish_registration(tg_chat)  # without a phone
    assert replies[0] == t(Language.EN, "bot.summary.done")
    person = _person(sessions, phone="+972525551234")
    assert person is not None and person.telegram_chat_id is None and person.name == "מרים אבוקסיס"
    intruder = _person(sessions, telegram_chat_id=777001)
    assert intruder is not None and intruder.phone is None and intruder.id != person.id


def test_stop_start_and_delete_my_data_by_sms(
    sms_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    for text in HEBREW_RESIDENT:
        sms_chat.send(text)
    sms_chat.send("1")
    assert sms_chat.send("STOP") == []  # carrier word: Twilio confirms, we stay silent
    assert _person(sessions, phone="+972525551234").status == PersonStatus.OPTED_OUT  # type: ignore[union-attr]
    assert sms_chat.send("מה קורה?") == []
    replies = sms_chat.send("START")
    assert replies[0] == t(Language.HE, "bot.stopped.resumed")
    assert _person(sessions, phone="+972525551234").status == PersonStatus.ACTIVE  # type: ignore[union-attr]
    assert sms_chat.send("מחיקה")[-1].startswith(t(Language.HE, "bot.delete.prompt"))
    assert sms_chat.send("כן") == [t(Language.HE, "bot.delete.done")]
    with sessions() as session:
        person = session.scalars(select(Person)).one()
        assert person.status == PersonStatus.ERASED and person.phone is None and person.name is None
        assert person.needs is None
        payloads = session.scalars(
            select(InboundMessage.payload).where(InboundMessage.person_id == person.id)
        ).all()
        assert payloads and all(p == {} for p in payloads)
    # Writing again starts afresh: nothing of theirs is left.
    assert sms_chat.send("הצטרפות")[-1].startswith(t(Language.HE, "bot.who.prompt"))


def test_status_update_and_language_on_telegram(
    tg_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    for text in ["/start", "3", "1", "Yusuf", "Skip", "1", "4", "1985"]:
        tg_chat.send(text)
    for step_answer in [
        "skills:first_aid",
        "skills:done",
        "langs:ar",
        "langs:done",
        "avail:both",
        "vehicle:yes",
        "capacity:3",
        "consent:yes",
    ]:
        tg_chat.send(button=step_answer)
    assert tg_chat.conversation().step == Step.SUMMARY  # type: ignore[union-attr]
    tg_chat.send(button="summary:confirm")
    status = tg_chat.send("/status")
    assert status[0].startswith("Yusuf") and t(Language.EN, "bot.status.no_role") in status[0]
    tg_chat.send("/update")
    tg_chat.send(button="update:capacity")
    tg_chat.send(button="capacity:5")
    replies = tg_chat.send(button="summary:confirm")
    assert replies[0] == t(Language.EN, "bot.summary.updated")
    person = _person(sessions, telegram_chat_id=777001)
    assert (
        person is not None
        and person.volunteer is not None
        and person.volunteer.checkin_capacity == 5
    )
    tg_chat.send("/language")
    replies = tg_chat.send(button="language:ar")
    assert replies[0] == t(Language.AR, "bot.language.changed")
    assert _person(sessions, telegram_chat_id=777001).language == Language.AR  # type: ignore[union-attr]
    tg_chat.send(button="menu:pause")
    assert _person(sessions, telegram_chat_id=777001).status == PersonStatus.PAUSED  # type: ignore[union-attr]
    tg_chat.send(button="menu:resume")
    assert _person(sessions, telegram_chat_id=777001).status == PersonStatus.ACTIVE  # type: ignore[union-attr]


def test_a_youth_group_link_joins_the_group(
    tg_chat: Chat, sessions: sessionmaker[Session], authority: Authority
) -> None:
    with unit_of_work(sessions) as session:
        session.add(
            Group(
                authority_id=authority.id,
                kind=GroupKind.YOUTH_MOVEMENT,
                name="Bnei Akiva",
                join_code="ba-7f3k",
            )
        )
    tg_chat.send("/start ba-7f3k")
    for text in ["4", "1", "Noa", "Skip", "3", "2010"]:
        tg_chat.send(text)
    for answer in [
        "skills:done",
        "langs:done",
        "avail:both",
        "vehicle:no",
        "capacity:2",
        "consent:yes",
    ]:
        tg_chat.send(button=answer)
    assert tg_chat.conversation().step == Step.GUARDIAN  # type: ignore[union-attr]
    tg_chat.send("Dana Cohen")
    tg_chat.send(button="summary:confirm")
    with sessions() as session:
        person = session.scalars(select(Person)).one()
        assert (
            session.get(GroupMember, (session.scalars(select(Group.id)).one(), person.id))
            is not None
        )
        guardian = session.scalars(
            select(Consent).where(Consent.kind == ConsentKind.GUARDIAN)
        ).one()
        assert guardian.guardian_name == "Dana Cohen"


def test_one_flooding_sender_is_slowed_without_slowing_others(
    sms_chat: Chat, sessions: sessionmaker[Session], dialog: Dialog, clock: Clock
) -> None:
    policy = FloodPolicy(burst=5, per_second=0.5)
    replies: list[int] = []
    for i in range(12):
        with unit_of_work(sessions) as session:
            outcome = handle_inbound(
                session,
                delivery=Delivery(
                    provider_key=f"flood:{i}",
                    inbound=Inbound(channel=Channel.SMS, address="+972525550001", text="hi"),
                ),
                dialog=dialog,
                now=clock.now,  # all at once
                flood=policy,
            )
        replies.append(outcome.replies)
    assert sum(1 for r in replies[5:] if r) == 1  # one "slow down", then silence
    with sessions() as session:
        slowed = session.scalars(
            select(InboundMessage).where(InboundMessage.error.is_not(None))
        ).all()
        assert len(slowed) == 7 and all(m.processed_at is not None for m in slowed)
    # Someone else, at the same moment, is answered as usual.
    assert sms_chat.send("JOIN")
    # And the flooder, after a pause, is heard again.
    with unit_of_work(sessions) as session:
        outcome = handle_inbound(
            session,
            delivery=Delivery(
                provider_key="flood:late",
                inbound=Inbound(channel=Channel.SMS, address="+972525550001", text="1"),
            ),
            dialog=dialog,
            now=clock.tick(30),
            flood=policy,
        )
    assert outcome.processed


def test_group_chats_are_not_served(
    tg_chat: Chat, dialog: Dialog, sessions: sessionmaker[Session], clock: Clock
) -> None:
    with unit_of_work(sessions) as session:
        quiet = handle_inbound(
            session,
            delivery=Delivery(
                provider_key="g1",
                inbound=Inbound(channel=Channel.TELEGRAM, address="-100200", text="hello all"),
                group_chat=True,
            ),
            dialog=dialog,
            now=clock.now,
        )
        asked = handle_inbound(
            session,
            delivery=Delivery(
                provider_key="g2",
                inbound=Inbound(channel=Channel.TELEGRAM, address="-100200", text="/start"),
                group_chat=True,
                addressed_to_bot=True,
            ),
            dialog=dialog,
            now=clock.now,
        )
    assert quiet.replies == 0 and asked.replies == 1
    with sessions() as session:
        assert session.scalar(select(OutboxMessage.text)) == t(Language.HE, "bot.group.private")


def _start_checkin(sessions: sessionmaker[Session], authority: Authority, clock: Clock) -> int:
    from dispatch.campaigns import Audience, start_campaign
    from dispatch.models import CampaignKind, CampaignMode, OutboxStatus

    with unit_of_work(sessions) as session:
        campaign = start_campaign(
            session,
            authority=session.get(Authority, authority.id),  # type: ignore[arg-type]
            kind=CampaignKind.CHECKIN,
            mode=CampaignMode.DRILL,
            audience=Audience(residents_only=True),
            started_by="test",
            now=clock.tick(),
        )
        for row in session.scalars(select(OutboxMessage).where(OutboxMessage.kind != "reply")):
            row.status = OutboxStatus.SENT
        return campaign.id


def test_answers_to_a_check_in_go_to_the_dispatcher_and_the_rest_to_the_dialog(
    sms_chat: Chat, sessions: sessionmaker[Session], authority: Authority, clock: Clock
) -> None:
    from dispatch.models import Answer, CampaignRecipient

    for text in HEBREW_RESIDENT:
        sms_chat.send(text)
    sms_chat.send("1")
    _start_checkin(sessions, authority, clock)
    # "1" right after the check-in means "I'm OK": the dispatcher takes it and acknowledges.
    replies = sms_chat.send("1")
    with sessions() as session:
        recipient = session.scalars(select(CampaignRecipient)).one()
        assert recipient.answer == Answer.OK
        kinds = [
            k
            for k in session.scalars(
                select(OutboxMessage.kind).order_by(OutboxMessage.id.desc()).limit(len(replies))
            )
        ]
    assert "reply" not in kinds
    # A command still reaches the bot, and then "1" is the menu's first choice again (help).
    assert sms_chat.send("מצב")[0].startswith("מרים אבוקסיס")
    assert sms_chat.send("1")[-1].startswith(t(Language.HE, "bot.help_kind.prompt"))
    assert sms_chat.send("ביטול")[-1].startswith(t(Language.HE, "bot.menu.prompt"))
    # STOP always opts out, whatever was sent last.
    _start_checkin(sessions, authority, clock)
    assert sms_chat.send("STOP") == []
    assert _person(sessions, phone="+972525551234").status == PersonStatus.OPTED_OUT  # type: ignore[union-attr]


def test_campaign_buttons_never_reach_the_dialog(
    tg_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    assert tg_chat.send(button="c:99:ok") == []  # from someone unknown: acknowledged, dropped
    assert tg_chat.last is not None and tg_chat.last.processed
    assert tg_chat.conversation() is None


def test_a_daughter_registers_her_father_who_has_only_a_landline(
    sms_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    for text in ["ЯЗЫК", "4", "4", "Борис Левин", "08-6123456", "1", "1", "1938", "2 3"]:
        sms_chat.send(text)
    # She is his emergency contact.
    for text in ["Анна", "052-555-1234", "1", "1"]:
        sms_chat.send(text)
    assert sms_chat.conversation().step == Step.SUMMARY  # type: ignore[union-attr]
    replies = sms_chat.send("1")
    assert replies[0] == t(Language.RU, "phone.landline")
    father = _person(sessions, phone="+97286123456")
    assert father is not None and father.channel == Channel.NONE and father.language == Language.RU
    assert father.needs is not None and father.needs.mobility and father.needs.bedridden
    with sessions() as session:
        consents = session.scalars(select(Consent).where(Consent.person_id == father.id)).all()
        assert {c.given_by.value for c in consents} == {"family"}


def test_a_nul_character_is_stored_and_answered(
    sms_chat: Chat, sessions: sessionmaker[Session]
) -> None:
    """PostgreSQL's JSON cannot hold U+0000: the inbox keeps U+FFFD instead, and the person is
    answered as for any other text."""
    replies = sms_chat.send("\x00שלום\x00")
    assert replies and t(Language.HE, "bot.language.prompt") in replies[0]
    with sessions() as session:
        stored = session.scalars(select(InboundMessage.payload)).one()
    assert stored["text"] == "\ufffdשלום\ufffd"
