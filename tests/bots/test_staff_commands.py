"""Officer and coordinator commands through the inbound pipeline, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog
from config.i18n import t, tn
from config.languages import Language
from config.settings import Settings
from dispatch.models import (
    Answer,
    Campaign,
    CampaignMode,
    CampaignRecipient,
    CampaignStatus,
    OutboxMessage,
    Task,
    TaskReason,
    TaskStatus,
)
from dispatch.reports import OUTCOMES, drill_report, live_status
from dispatch.segments import count_segments
from fakes.telegram import FakeTelegram
from registry.digests import sender_key
from registry.models import (
    AuditEntry,
    Authority,
    Channel,
    Group,
    GroupKind,
    GroupMember,
    Person,
    PhoneKind,
    Source,
    Zone,
)
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import StaffMember, StaffRole, add_staff, set_pin, verify_telegram
from tests.bots.chat import Chat, Clock
from tests.bots.test_e2e import _free_port, run, service_settings, start_service, tg

OFFICER_PHONE = "+972525550001"
OFFICER_CHAT = "900001"
COORDINATOR_PHONE = "+972525550002"
ELSEWHERE_PHONE = "+972525550003"
STRANGER_PHONE = "+972525559999"
PIN = "482913"  # every SMS staff member's PIN in these tests
REFUSAL = t("he", "staff.not_authorized")
PIN_ASK = t("he", "staff.pin.ask")
PIN_ASKS = frozenset(t(language, "staff.pin.ask") for language in Language)
STATUS_HEAD = dict.fromkeys(
    ("campaign", "what", "state", "people", "delivered", *OUTCOMES), 1
) | dict.fromkeys(("open", "done", "failed"), 0)


@pytest.fixture
def town(sessions: sessionmaker[Session], directory: Directory) -> dict[str, int]:
    """Three residents who may need help, one volunteer, a youth group with a minor and an adult
    coordinator, an officer (SMS + verified Telegram), a coordinator, an officer elsewhere."""
    ids: dict[str, int] = {}
    with sessions() as session:
        kt = session.merge(directory.authorities["kiryat-tamar"])
        emek = session.merge(directory.authorities["emek-tamar"])
        center = directory.zone(kt, "kt-center")
        assert center is not None

        def person(key: str, n: int, **fields: object) -> Person:
            row = Person(
                authority_id=kt.id,
                name=key.title(),
                phone=f"+97250{n:07d}",
                phone_kind=PhoneKind.MOBILE,
                telegram_chat_id=500_000 + n,
                language=Language.EN,
                channel=Channel.TELEGRAM,
                source=Source.STAFF,
                zone_id=center.id,
                **fields,
            )
            session.add(row)
            session.flush()
            ids[key] = row.id
            return row

        for n in (1, 2, 3):
            person(f"resident {n}", n, needs_help=True)
        person("volunteer", 10, is_volunteer=True, birth_year=1980)
        minor = person("minor", 11, is_volunteer=True, birth_year=2012)
        adult = person("leader", 12, is_volunteer=True, birth_year=1990)
        group = Group(
            authority_id=kt.id, kind=GroupKind.YOUTH_MOVEMENT, name="Scouts", join_code="SC1"
        )
        session.add(group)
        session.flush()
        ids["group"] = group.id
        session.add(GroupMember(group_id=group.id, person_id=minor.id))
        session.add(GroupMember(group_id=group.id, person_id=adult.id, is_coordinator=True))
        add_staff(
            session,
            name="Officer",
            phone=normalise_phone(OFFICER_PHONE, region="IL"),
            authority=kt,
            role=StaffRole.OFFICER,
            actor="test",
        )
        verify_telegram(
            session, phone=normalise_phone(OFFICER_PHONE, region="IL"), chat_id=int(OFFICER_CHAT)
        )
        add_staff(
            session,
            name="Coordinator",
            phone=normalise_phone(COORDINATOR_PHONE, region="IL"),
            authority=kt,
            role=StaffRole.COORDINATOR,
            groups=[group],
            actor="test",
        )
        add_staff(
            session,
            name="Elsewhere",
            phone=normalise_phone(ELSEWHERE_PHONE, region="IL"),
            authority=emek,
            role=StaffRole.OFFICER,
            actor="test",
        )
        for member in session.scalars(select(StaffMember)):
            set_pin(session, member=member, pin=PIN, actor="test")
        session.commit()
    return ids


class StaffChat(Chat):
    """A staff member who knows their PIN and gives it whenever the SMS gate asks for it
    (tests/bots/test_staff_pin.py tests the gate itself)."""

    def send(self, text: str | None = None, **kwargs: Any) -> list[str]:
        replies = super().send(text, **kwargs)
        if self.channel == Channel.SMS and len(replies) == 1 and replies[0] in PIN_ASKS:
            return super().send(PIN)
        return replies


ChatFor = Callable[[Channel, str], Chat]


@pytest.fixture
def chat_for(sessions: sessionmaker[Session], dialog: Dialog, clock: Clock) -> ChatFor:
    def make(channel: Channel, address: str) -> Chat:
        return StaffChat(sessions, dialog, channel, address, clock)

    return make


@pytest.mark.parametrize(
    ("channel", "address", "command", "allowed"),
    [
        (Channel.SMS, OFFICER_PHONE, "/drill", True),
        (Channel.TELEGRAM, OFFICER_CHAT, "/drill", True),
        (Channel.TELEGRAM, OFFICER_CHAT, "/emergency", True),
        (Channel.SMS, COORDINATOR_PHONE, "/drill", False),  # a coordinator runs no drills
        (Channel.SMS, COORDINATOR_PHONE, "/status", False),
        (Channel.SMS, STRANGER_PHONE, "/drill", False),
        (Channel.SMS, STRANGER_PHONE, "/close", False),
        (Channel.TELEGRAM, "900999", "/drill", False),  # a chat nobody verified
        (Channel.SMS, OFFICER_PHONE, "/tasks", True),  # officers see every group's tasks
        (Channel.SMS, STRANGER_PHONE, "/tasks", False),
    ],
)
def test_who_may_do_what(
    town: dict[str, int],
    chat_for: ChatFor,
    sessions: sessionmaker[Session],
    channel: Channel,
    address: str,
    command: str,
    allowed: bool,
) -> None:
    replies = chat_for(channel, address).send(command)
    assert replies
    assert (REFUSAL not in replies[0]) == allowed
    with sessions() as session:
        assert session.scalar(select(Campaign.id)) is None  # nothing happened
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id.desc())).all()
    assert ("staff.refused" in actions[:1]) != allowed


def test_a_residents_own_status_command_stays_with_the_bot(
    town: dict[str, int], chat_for: ChatFor
) -> None:
    replies = chat_for(Channel.SMS, STRANGER_PHONE).send("/status")
    assert replies and REFUSAL not in replies[0]


def test_an_unverified_chat_is_verified_by_sharing_the_own_contact(
    town: dict[str, int], chat_for: ChatFor
) -> None:
    chat = chat_for(Channel.TELEGRAM, "900777")
    chat.send("/status")
    with chat.sessions() as session:
        from registry.staff import StaffMember

        member = session.scalar(select(StaffMember).where(StaffMember.phone == COORDINATOR_PHONE))
        assert member is not None and member.telegram_chat_id is None
    assert chat.send(contact=COORDINATOR_PHONE, own_contact=False) != [t("en", "officer.verified")]
    assert chat.send(contact=COORDINATOR_PHONE) == [t("he", "officer.verified")]
    assert REFUSAL not in chat.send("/tasks")[0]


def test_a_stranger_writing_a_command_mid_sign_up_is_refused_and_keeps_the_sign_up(
    town: dict[str, int], chat_for: ChatFor
) -> None:
    chat = chat_for(Channel.SMS, STRANGER_PHONE)
    chat.send("hi")
    before = chat.conversation()
    assert before is not None
    assert chat.send("/drill") == [t(before.language or "he", "staff.not_authorized")]
    after = chat.conversation()
    assert after is not None and after.step == before.step


def _drill(chat: Chat, *, emergency: bool = False) -> list[str]:
    chat.send("/emergency" if emergency else "/drill")
    chat.send("1")  # everyone who may need help
    return chat.send("1")  # the standard check-in


def test_drill_by_sms_end_to_end(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    officer = chat_for(Channel.SMS, OFFICER_PHONE)
    confirmation = _drill(officer)
    text = "\n".join(confirmation)
    assert "3" in confirmation[0]  # three people
    assert "Telegram 3" in text or "טלגרם 3" in text
    for reply in confirmation:
        assert count_segments(reply) <= 3
    with sessions() as session:
        assert session.scalar(select(Campaign.id)) is None  # not before the confirmation
    started = officer.send("1")
    with sessions() as session:
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.mode == CampaignMode.DRILL
        assert campaign.recipients == 3
        assert campaign.started_by.startswith("staff:")
        assert f"{campaign.id}" in started[0]

        # Two answered; one is silent.
        rows = session.scalars(select(CampaignRecipient).order_by(CampaignRecipient.id)).all()
        rows[0].answer = Answer.OK
        rows[1].answer = Answer.HELP
        session.commit()

    status = officer.send("/status")
    assert len(status) == 1 and count_segments(status[0]) <= 3
    unreached = officer.send("/unreached")
    assert "Resident 3" in unreached[0] and "Resident 1" not in unreached[0]
    closed = officer.send("/close")
    with sessions() as session:
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.status == CampaignStatus.CLOSED
    assert f"{campaign.id}" in closed[0]
    assert officer.send("/close") == [t("he", "officer.no_campaign")]


def test_cancelling_sends_nothing(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    officer = chat_for(Channel.TELEGRAM, OFFICER_CHAT)
    _drill(officer)
    officer.send(button="officer.confirm:no")
    with sessions() as session:
        assert session.scalar(select(Campaign.id)) is None


def test_an_emergency_needs_the_second_confirmation(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    officer = chat_for(Channel.TELEGRAM, OFFICER_CHAT)
    _drill(officer, emergency=True)
    again = officer.send(button="officer.confirm:yes")
    assert t("he", "officer.confirm.word") in again[0]
    with sessions() as session:
        assert session.scalar(select(Campaign.id)) is None
    officer.send(button="officer.again:send")
    with sessions() as session:
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.mode == CampaignMode.EMERGENCY


def test_a_wrong_second_word_cancels_the_emergency(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    officer = chat_for(Channel.SMS, OFFICER_PHONE)
    _drill(officer, emergency=True)
    officer.send("1")
    assert officer.send("yes") == [t("he", "officer.cancelled")]
    with sessions() as session:
        assert session.scalar(select(Campaign.id)) is None


def test_a_drill_in_quiet_hours_warns(town: dict[str, int], chat_for: ChatFor) -> None:
    officer = chat_for(Channel.TELEGRAM, OFFICER_CHAT)
    officer.clock.now = officer.clock.now.replace(hour=21, minute=0)  # 23:00 in Israel
    confirmation = _drill(officer)
    assert any("22:00" in reply for reply in confirmation)


def test_a_drill_for_an_unconfigured_channel_warns_who_waits_and_what_follows(
    town: dict[str, int], chat_for: ChatFor, dialog: Dialog
) -> None:
    # The three residents are first tried on Telegram; no bot token is configured.
    warning = tn("he", "campaign.unconfigured.telegram", 3)
    confirmation = _drill(chat_for(Channel.TELEGRAM, OFFICER_CHAT))
    said = [reply for reply in confirmation if reply.startswith(warning)]
    assert len(said) == 1 and "45" in said[0] and "HOSEN_" not in said[0]
    assert count_segments(said[0]) <= 3
    dialog.settings = Settings.model_construct(telegram_token=SecretStr("123:abc"))
    confirmation = _drill(chat_for(Channel.SMS, OFFICER_PHONE))
    assert not [reply for reply in confirmation if reply.startswith(warning)]


def test_an_announcement_takes_its_text(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    officer = chat_for(Channel.TELEGRAM, OFFICER_CHAT)
    officer.send("/drill")
    officer.send(button="officer.audience:everyone")
    officer.send(button="officer.template:announcement")
    confirmation = officer.send("Shelters are open.")
    assert "6" in confirmation[0]  # everyone registered
    officer.send(button="officer.confirm:yes")
    with sessions() as session:
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.text == "Shelters are open."


def test_chosen_zones_on_telegram_and_by_sms(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    officer = chat_for(Channel.TELEGRAM, OFFICER_CHAT)
    officer.send("/drill")
    officer.send(button="officer.audience:zones")
    officer.send(button="officer.zones:kt-north")
    officer.send(button="officer.zones:kt-center")
    officer.send(button="officer.zones:kt-north")  # a second tap takes it back
    assert officer.send(button="officer.zones:done") == [t("he", "officer.template.ask")]
    confirmation = officer.send(button="officer.template:checkin")
    assert confirmation[0] == t(
        "he", "officer.confirm.summary", what=t("he", "officer.what.drill_checkin"), people=3
    )
    conversation = officer.conversation()
    assert conversation is not None and conversation.draft["_officer"]["zones"] == ["kt-center"]

    sms = chat_for(Channel.SMS, OFFICER_PHONE)
    sms.send("/drill")
    listed = sms.send("3")
    assert all(count_segments(reply) <= 3 for reply in listed)
    with sessions() as session:
        codes = sorted(
            session.scalars(
                select(Zone.code).join(Authority).where(Authority.code == "kiryat-tamar")
            )
        )
    north = codes.index("kt-north") + 1
    assert sms.send(f"{north}")[0].startswith(t("he", "officer.template.ask"))
    confirmation = sms.send("1")
    what = t("he", "officer.what.drill_checkin")
    assert confirmation[0] == t("he", "officer.confirm.summary", what=what, people=0)


def test_an_officer_elsewhere_sees_none_of_this_authority(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    _drill(chat_for(Channel.TELEGRAM, OFFICER_CHAT))
    chat_for(Channel.TELEGRAM, OFFICER_CHAT).send(button="officer.confirm:yes")
    elsewhere = chat_for(Channel.SMS, ELSEWHERE_PHONE)
    assert elsewhere.send("/status") == [t("he", "officer.no_campaign")]
    assert elsewhere.send("/close") == [t("he", "officer.no_campaign")]
    with sessions() as session:
        assert session.scalars(select(Campaign.status)).one() == CampaignStatus.ACTIVE


def test_the_bots_status_and_unreached_agree_with_the_report(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:  # a fourth resident, who stays silent
        first = session.get_one(Person, town["resident 1"])
        session.add(
            Person(
                authority_id=first.authority_id,
                name="Resident 4",
                phone="+972500000004",
                phone_kind=PhoneKind.MOBILE,
                telegram_chat_id=500_004,
                language=Language.EN,
                channel=Channel.TELEGRAM,
                source=Source.STAFF,
                zone_id=first.zone_id,
                needs_help=True,
            )
        )
        session.commit()
    officer = chat_for(Channel.TELEGRAM, OFFICER_CHAT)
    _drill(officer)
    officer.send(button="officer.confirm:yes")
    with sessions() as session:
        campaign_id = session.scalars(select(Campaign.id)).one()
    # Resident 1 is OK, resident 2 needs help, each by the check-in's button.
    chat_for(Channel.TELEGRAM, "500001").send(button=f"c:{campaign_id}:ok")
    chat_for(Channel.TELEGRAM, "500002").send(button=f"c:{campaign_id}:help")
    # Resident 3 is silent, and a buddy goes and finds them.
    with sessions() as session:
        task = Task(
            campaign_id=campaign_id,
            resident_id=town["resident 3"],
            volunteer_id=town["volunteer"],
            reason=TaskReason.NO_ANSWER,
            status=TaskStatus.OFFERED,
            created_at=officer.clock.now,
        )
        session.add(task)
        session.commit()
        task_id = task.id
    buddy = chat_for(Channel.TELEGRAM, "500010")
    buddy.send(button=f"t:{task_id}:accept")
    buddy.send(button=f"t:{task_id}:done")

    status = officer.send("/status")[0]
    unreached = officer.send("/unreached")[0]
    with sessions() as session:
        campaign = session.get_one(Campaign, campaign_id)
        report = drill_report(session, campaign=campaign)
        tasks = report.tasks
        total = report.status["total"]
        what = t("he", f"officer.what.{campaign.mode.value}_{campaign.kind.value}")
        state = t("he", f"officer.state.{campaign.status.value}")
    outcomes = {o: total[o] for o in OUTCOMES}
    assert outcomes == {
        "ok": 1,
        "help": 1,
        "free_text": 0,
        "visited": 1,
        "waiting": 1,
        "unreached": 0,
    }
    assert status == t(
        "he",
        "officer.accounted.status",
        campaign=campaign_id,
        what=what,
        state=state,
        people=report.recipients,
        delivered=total["delivered"],
        **outcomes,
        open=tasks.get("offered", 0) + tasks.get("accepted", 0),
        done=tasks.get("done", 0),
        failed=tasks.get("not_reached", 0),
    )
    # The unreached list is the report's: the visited resident is not on it.
    assert [p["name"] for p in report.unreached] == ["Resident 4"]
    head, *lines = unreached.splitlines()
    assert head == t("he", "officer.unreached.head", campaign=campaign_id, count=1)
    assert len(lines) == 1 and lines[0].startswith("Resident 4 – ")
    assert "Resident 3" not in unreached


def test_coordinator_hands_a_task_and_the_officer_sees_it_done(
    town: dict[str, int],
    chat_for: ChatFor,
    sessions: sessionmaker[Session],
    authority: Authority,
) -> None:
    officer = chat_for(Channel.TELEGRAM, OFFICER_CHAT)
    _drill(officer)
    officer.send(button="officer.confirm:yes")
    with sessions() as session:
        campaign = session.scalars(select(Campaign)).one()
        task = Task(
            campaign_id=campaign.id,
            resident_id=town["resident 3"],
            volunteer_id=town["leader"],
            group_id=town["group"],
            reason=TaskReason.NO_ANSWER,
            status=TaskStatus.OFFERED,
            created_at=officer.clock.now,
        )
        session.add(task)
        session.commit()
        task_id = task.id
    coordinator = chat_for(Channel.SMS, COORDINATOR_PHONE)
    listed = coordinator.send("/tasks")
    assert "Resident 3" in "\n".join(listed)
    coordinator.send("/tasks")
    picked = coordinator.send(button=f"officer.task:{task_id}")
    assert "Minor" in "\n".join(picked)
    # The minor never goes alone: the group's adult coordinator gets the task, with the minor.
    given = coordinator.send(button=f"officer.give:{task_id}-{town['minor']}")
    assert "Leader" in given[0]
    with sessions() as session:
        task = session.get(Task, task_id)
        assert task is not None and task.volunteer_id == town["leader"]
        sent = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "task").order_by(OutboxMessage.id)
        ).all()
        assert "Minor" in sent[-1].text
    # The member marks it done with the existing task button; the officer sees it at once.
    leader = chat_for(Channel.TELEGRAM, str(500_012))
    leader.send(button=f"t:{task_id}:done")
    with sessions() as session:
        campaign = session.scalars(select(Campaign)).one()
        assert live_status(session, campaign=campaign).tasks == {"done": 1}
    assert "1" in officer.send("/status")[0]


def test_a_coordinator_hands_a_task_to_an_adult_member_directly(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        session.add(GroupMember(group_id=town["group"], person_id=town["volunteer"]))
        task = Task(
            resident_id=town["resident 1"],
            volunteer_id=town["leader"],
            group_id=town["group"],
            reason=TaskReason.NO_ANSWER,
            status=TaskStatus.OFFERED,
            created_at=Clock().now,
        )
        session.add(task)
        session.commit()
        task_id = task.id
    coordinator = chat_for(Channel.SMS, COORDINATOR_PHONE)
    coordinator.send(button=f"officer.give:{task_id}-{town['volunteer']}")
    with sessions() as session:
        task = session.get(Task, task_id)
        assert task is not None and task.volunteer_id == town["volunteer"]


@pytest.mark.e2e
def test_an_officer_runs_a_drill_on_the_real_telegram_application(
    settings: Settings,
    directory: Directory,
    fake_telegram: FakeTelegram,
    sessions: sessionmaker[Session],
) -> None:
    """``hosen serve`` with the real python-telegram-bot Application against the fake Telegram:
    refused, verified by sharing the own contact, then /drill → buttons → a check-in delivered."""
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=None, port=port)
    officer = fake_telegram.new_user("Noa", language_code="he")
    resident = fake_telegram.new_user("Avi", language_code="he")
    he = Language.HE
    with sessions() as session:
        kt = session.merge(directory.authorities["kiryat-tamar"])
        session.add(
            Person(
                authority_id=kt.id,
                name="Avi Cohen",
                telegram_chat_id=resident.id,
                language=he,
                channel=Channel.TELEGRAM,
                source=Source.STAFF,
                needs_help=True,
            )
        )
        add_staff(
            session,
            name="Noa",
            phone=normalise_phone(OFFICER_PHONE, region="IL"),
            authority=kt,
            role=StaffRole.OFFICER,
            actor="test",
        )
        session.commit()

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            chat = officer.id

            async def press(label: str) -> list[dict[str, Any]]:
                message = fake_telegram.last_sent(chat)
                return await tg(
                    service, fake_telegram, chat, fake_telegram.press(officer, message, label)
                )

            sent = await tg(service, fake_telegram, chat, fake_telegram.command(officer, "drill"))
            assert sent[0]["text"].startswith(t(he, "staff.not_authorized"))
            sent = await tg(
                service, fake_telegram, chat, fake_telegram.contact(officer, OFFICER_PHONE)
            )
            assert sent[0]["text"] == t(he, "officer.verified")
            sent = await tg(service, fake_telegram, chat, fake_telegram.command(officer, "drill"))
            assert sent[0]["text"] == t(he, "officer.audience.ask")
            await press(t(he, "officer.audience.residents"))
            sent = await press(t(he, "officer.template.checkin"))
            assert "1" in sent[0]["text"]
            sent = await press(t(he, "officer.confirm.yes"))
            assert t(he, "officer.started", campaign=1, people=1) in {m["text"] for m in sent}
            await service.flush()
            checkin = fake_telegram.last_sent(resident.id)
            assert checkin["text"].startswith(t(he, "dispatch.drill_marker"))
            sent = await tg(service, fake_telegram, chat, fake_telegram.command(officer, "status"))
            assert sent[0]["text"].startswith(t(he, "officer.accounted.status", **STATUS_HEAD)[:7])
        finally:
            await service.stop()

    run(scenario)


@pytest.mark.parametrize("language", list(Language))
def test_every_sms_to_staff_fits_three_segments(
    town: dict[str, int],
    chat_for: ChatFor,
    sessions: sessionmaker[Session],
    language: Language,
) -> None:
    with sessions() as session:
        # Staff are written to in their own language, whatever their conversation's.
        for member in session.scalars(select(StaffMember)):
            member.language = language
        session.commit()
    officer = chat_for(Channel.SMS, OFFICER_PHONE)
    replies = _drill(officer, emergency=True)
    replies += officer.send("1") + officer.send(t(language, "officer.confirm.word"))
    for command in ("/status", "/unreached", "/close", "/tasks", "/drill", "/nonsense"):
        replies += officer.send(command)
    replies += chat_for(Channel.SMS, COORDINATOR_PHONE).send("/drill")
    assert t(language, "officer.started", campaign=1, people=3) in replies
    for reply in replies:
        assert count_segments(reply) <= 3, reply


def test_a_coordinator_hands_a_task_by_sms_with_numbers(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        task = Task(
            resident_id=town["resident 2"],
            volunteer_id=town["leader"],
            group_id=town["group"],
            reason=TaskReason.NO_ANSWER,
            status=TaskStatus.OFFERED,
            created_at=Clock().now,
        )
        session.add(task)
        session.commit()
        task_id = task.id
    coordinator = chat_for(Channel.SMS, COORDINATOR_PHONE)
    listed = coordinator.send("/tasks")
    assert "1 Resident 2" in "\n".join(listed)
    members = "\n".join(coordinator.send("1"))
    assert "1 Leader" in members and "2 Minor" in members
    given = coordinator.send("2")  # the minor: the adult coordinator goes along
    assert given == [t("he", "officer.tasks.given", name="Leader")]
    assert coordinator.send("2") != given  # the list is used up: no second hand-over
    with sessions() as session:
        task = session.get(Task, task_id)
        assert task is not None and task.volunteer_id == town["leader"]
        assert task.status == TaskStatus.OFFERED


def test_a_forged_button_for_another_groups_task_is_refused_and_audited_so(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        other = Group(
            authority_id=session.scalars(select(Group.authority_id)).first(),
            kind=GroupKind.YOUTH_MOVEMENT,
            name="Guides",
            join_code="GD1",
        )
        session.add(other)
        session.flush()
        task = Task(
            resident_id=town["resident 2"],
            volunteer_id=town["volunteer"],
            group_id=other.id,
            reason=TaskReason.ASSIGNED,
            status=TaskStatus.OFFERED,
            created_at=Clock().now,
        )
        session.add(task)
        session.commit()
        task_id = task.id
        last = session.scalars(select(AuditEntry.id).order_by(AuditEntry.id.desc())).first()
    coordinator = chat_for(Channel.SMS, COORDINATOR_PHONE)
    for forged in (f"officer.task:{task_id}", f"officer.give:{task_id}-{town['volunteer']}"):
        assert REFUSAL in coordinator.send(button=forged)[0]
    with sessions() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.id > (last or 0)).order_by(AuditEntry.id)
        ).all()
        task = session.get_one(Task, task_id)
        assert task.volunteer_id == town["volunteer"] and task.status == TaskStatus.OFFERED
    refused = [e for e in entries if e.action == "staff.refused"]
    assert [e.detail["task_id"] for e in refused] == [task_id, task_id]
    assert all(e.detail["reason"] == "group" for e in refused)


def test_a_refusal_names_an_unknown_sender_by_a_keyed_digest(
    town: dict[str, int], chat_for: ChatFor, sessions: sessionmaker[Session]
) -> None:
    chat_for(Channel.SMS, STRANGER_PHONE).send("/drill")
    chat_for(Channel.TELEGRAM, "900555").send("/drill")
    with sessions() as session:
        refused = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "staff.refused").order_by(AuditEntry.id)
        ).all()
    assert [e.detail["sender"] for e in refused] == [
        sender_key(Channel.SMS, STRANGER_PHONE),
        sender_key(Channel.TELEGRAM, "900555"),
    ]
    assert not any(STRANGER_PHONE in str(e.detail) or "900555" in str(e.detail) for e in refused)
