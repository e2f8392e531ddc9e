"""The help loop through the inbound pipeline, on both databases: a resident's "help" becomes an
alert pushed to the officers on duty, an officer takes it (button or SMS number), the buddy
accepts, and the resident is told who is coming only once a named person has accepted; an alert
nobody takes climbs to the next officer and then to all of them, on the injected clock."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog
from config.i18n import t
from config.languages import Language
from config.profile import Profile
from dispatch.campaigns import Audience, start_campaign
from dispatch.help import open_help
from dispatch.models import (
    Alert,
    AlertKind,
    AlertState,
    Campaign,
    CampaignKind,
    CampaignMode,
    HelpNeed,
    OutboxMessage,
    OutboxStatus,
    Task,
)
from dispatch.scheduler import sweep_all
from registry.db import unit_of_work
from registry.models import (
    AssignmentStatus,
    AuditEntry,
    Authority,
    BuddyAssignment,
    Channel,
    Person,
    PhoneKind,
    Source,
)
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import StaffMember, StaffRole, add_staff, set_pin, verify_telegram
from tests.bots.chat import Chat, Clock

RESIDENT_PHONE = "+972525550201"
BUDDY_CHAT = "600001"
DANA_PHONE, DANA_CHAT = "+972525550301", "700001"  # officer on Telegram, first on duty
AVI_PHONE = "+972525550302"  # officer by SMS, next
RINA_PHONE = "+972525550303"  # officer by SMS, third
ZONE = ZoneInfo("Asia/Jerusalem")


OFFICER_PIN = "582039"  # staff actions by SMS need the member's PIN (bots.staff_pin)
PIN_ASKED = {t(language, "staff.pin.ask") for language in Language}


def as_staff(chat: Chat, text: str) -> list[str]:
    """An officer's SMS, with the PIN given when the gate asks for it (a new SMS session)."""
    replies = chat.send(text)
    if len(replies) == 1 and replies[0] in PIN_ASKED:
        replies = chat.send(OFFICER_PIN)
    return replies


def _town(
    sessions: sessionmaker[Session], directory: Directory, language: Language, clock: Clock
) -> dict[str, int]:
    with unit_of_work(sessions) as session:
        kt = session.merge(directory.authorities["kiryat-tamar"])
        zone = directory.zone(kt, "kt-center")
        assert zone is not None
        resident = Person(
            authority_id=kt.id,
            name="Miriam Cohen",
            phone=RESIDENT_PHONE,
            phone_kind=PhoneKind.MOBILE,
            language=language,
            channel=Channel.SMS,
            source=Source.STAFF,
            zone_id=zone.id,
            needs_help=True,
        )
        buddy = Person(
            authority_id=kt.id,
            name="Yossi Amar",
            phone="+972525550202",
            phone_kind=PhoneKind.MOBILE,
            telegram_chat_id=int(BUDDY_CHAT),
            language=Language.HE,
            channel=Channel.TELEGRAM,
            source=Source.STAFF,
            is_volunteer=True,
            birth_year=1980,
        )
        session.add_all([resident, buddy])
        session.flush()
        session.add(
            BuddyAssignment(
                resident_id=resident.id,
                volunteer_id=buddy.id,
                rank=1,
                status=AssignmentStatus.CONFIRMED,
            )
        )
        for name, phone in (
            ("Dana Levi", DANA_PHONE),
            ("Avi Peretz", AVI_PHONE),
            ("Rina Katz", RINA_PHONE),
        ):
            member = add_staff(
                session,
                name=name,
                phone=normalise_phone(phone, region="IL"),
                authority=kt,
                role=StaffRole.OFFICER,
                actor="test",
            )
            set_pin(session, member=member, pin=OFFICER_PIN, actor="test")
        verify_telegram(
            session, phone=normalise_phone(DANA_PHONE, region="IL"), chat_id=int(DANA_CHAT)
        )
        campaign = start_campaign(
            session,
            authority=kt,
            kind=CampaignKind.CHECKIN,
            mode=CampaignMode.DRILL,
            audience=Audience(residents_only=True),
            started_by="test",
            now=clock.now,
        )
        for row in session.scalars(select(OutboxMessage)):
            row.status = OutboxStatus.SENT
        return {"resident": resident.id, "buddy": buddy.id, "campaign": campaign.id}


def _to(sessions: sessionmaker[Session], address: str, after: int = 0) -> list[OutboxMessage]:
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.address == address, OutboxMessage.id > after)
                .order_by(OutboxMessage.id)
            )
        )


def _alert(sessions: sessionmaker[Session]) -> Alert:
    with sessions() as session:
        return session.scalars(select(Alert).where(Alert.kind == AlertKind.HELP)).one()


def _audited(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.action.in_(("help.take", "help.done", "help.failed")))
                .order_by(AuditEntry.id)
            )
        )


@pytest.mark.parametrize("language", [Language.HE, Language.AR])
def test_help_is_pushed_taken_by_button_and_the_resident_hears_names_only_of_people_who_accepted(
    sessions: sessionmaker[Session],
    directory: Directory,
    dialog: Dialog,
    language: Language,
) -> None:
    clock = Clock()
    ids = _town(sessions, directory, language, clock)
    resident = Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock)
    dana = Chat(sessions, dialog, Channel.TELEGRAM, DANA_CHAT, clock)
    buddy = Chat(sessions, dialog, Channel.TELEGRAM, BUDDY_CHAT, clock)

    drill = t(language, "dispatch.drill_marker")
    told = resident.send({Language.HE: "עזרה", Language.AR: "مساعدة"}[language])
    assert told == [f"{drill} {t(language, 'dispatch.ack.help')}"]
    alert = _alert(sessions)
    assert alert.state == AlertState.OPEN and alert.owner_staff_id is None
    # Pushed at once to the first officer on duty only, with one button to take it.
    pushed = _to(sessions, DANA_CHAT)
    assert [m.kind for m in pushed] == ["alert"]
    assert pushed[0].buttons == [
        [{"text": t("he", "dispatch.alert.take"), "data": f"officer.alert:{alert.id}:take"}]
    ]
    assert "Miriam Cohen" in pushed[0].text
    assert _to(sessions, AVI_PHONE) == [] and _to(sessions, RINA_PHONE) == []

    # Dana takes it: audited, she owns it, the resident hears her first name.
    mine = dana.send(button=f"officer.alert:{alert.id}:take")
    assert "Miriam Cohen" in mine[0] and RESIDENT_PHONE in mine[0]
    assert dana.last_buttons() == [
        [{"text": t("he", "dispatch.alert.done"), "data": f"b:officer.alert:{alert.id}:done"}],
        [{"text": t("he", "dispatch.alert.fail"), "data": f"b:officer.alert:{alert.id}:fail"}],
    ]
    alert = _alert(sessions)
    assert alert.state == AlertState.TAKEN and alert.taken_at is not None
    with sessions() as session:
        owner = session.get(StaffMember, alert.owner_staff_id)
        assert owner is not None and owner.name == "Dana Levi"
    on_the_way = [m.text for m in _to(sessions, RESIDENT_PHONE) if m.kind == "ack"]
    assert on_the_way[-1] == f"{drill} {t(language, 'dispatch.ack.help_taken', volunteer='Dana')}"

    # The buddy accepts the visit: the resident hears the buddy's first name too.
    with sessions() as session:
        task = session.scalars(select(Task).where(Task.resident_id == ids["resident"])).one()
    buddy.send(button=f"t:{task.id}:accept")
    on_the_way = [m.text for m in _to(sessions, RESIDENT_PHONE) if m.kind == "ack"]
    assert on_the_way[-1] == f"{drill} {t(language, 'dispatch.ack.help_taken', volunteer='Yossi')}"
    assert _alert(sessions).owner_staff_id == owner.id  # Dana's, still

    # A second officer cannot take it from her; Dana closes it.
    dana.send(button=f"officer.alert:{alert.id}:done")
    assert _alert(sessions).state == AlertState.DONE
    assert _audited(sessions) == ["help.take", "help.done"]
    # Never a word about a visit before somebody accepted: only these acknowledgements.
    acks = [m.text for m in _to(sessions, RESIDENT_PHONE) if m.kind == "ack"]
    assert acks == [
        f"{drill} {t(language, 'dispatch.ack.help')}",
        f"{drill} {t(language, 'dispatch.ack.help_taken', volunteer='Dana')}",
        f"{drill} {t(language, 'dispatch.ack.help_taken', volunteer='Yossi')}",
    ]


def test_an_alert_nobody_takes_climbs_to_the_next_officer_then_to_all_and_sms_1_takes_it(
    sessions: sessionmaker[Session],
    directory: Directory,
    dialog: Dialog,
    profile: Profile,
) -> None:
    clock = Clock()
    _town(sessions, directory, Language.AR, clock)
    resident = Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock)
    resident.send("help")
    alert = _alert(sessions)
    with sessions() as session:
        authority = session.get(Authority, session.get(Person, alert.person_id).authority_id)  # type: ignore[union-attr]
        climb = timedelta(seconds=authority.alert_climb_after)  # type: ignore[union-attr]
    assert climb == timedelta(minutes=profile.authorities[0].timings.alert_climb)
    assert len(_to(sessions, DANA_CHAT)) == 1

    # Not yet due: nothing moves.
    clock.now += climb - timedelta(seconds=1)
    sweep_all(sessions, profile=profile, zone=ZONE, now=clock.now)
    assert _to(sessions, AVI_PHONE) == []
    # Due: the next officer (by SMS: a number to take it, no medical detail).
    clock.now += timedelta(seconds=1)
    assert sweep_all(sessions, profile=profile, zone=ZONE, now=clock.now)["alerts"] == 1
    to_avi = _to(sessions, AVI_PHONE)
    assert [m.kind for m in to_avi] == ["alert"]
    assert "\n1 " in to_avi[0].text and "help" not in to_avi[0].text.casefold().split("\n")[-1]
    assert _to(sessions, RINA_PHONE) == []
    # Still nobody: all of them.
    clock.now += climb
    sweep_all(sessions, profile=profile, zone=ZONE, now=clock.now)
    assert len(_to(sessions, RINA_PHONE)) == 1
    assert len(_to(sessions, AVI_PHONE)) == 2 and len(_to(sessions, DANA_CHAT)) == 2
    assert _alert(sessions).due_at is None  # the top of the climb: no timer left
    with sessions() as session:
        listed = open_help(session, authority_id=None, now=clock.now, language=Language.EN)
    assert [(row.alert_id, row.owner) for row in listed] == [(alert.id, "")]
    assert (
        listed[0].age_seconds
        == (clock.now - alert.created_at).total_seconds()
        > 2 * climb.total_seconds() - 1
    )

    # Avi answers the SMS by its number: he takes it, and the resident hears his name in Arabic.
    avi = Chat(sessions, dialog, Channel.SMS, AVI_PHONE, clock)
    as_staff(avi, "1")
    alert = _alert(sessions)
    assert alert.state == AlertState.TAKEN
    acks = [m.text for m in _to(sessions, RESIDENT_PHONE) if m.kind == "ack"]
    assert acks[-1].endswith(t(Language.AR, "dispatch.ack.help_taken", volunteer="Avi"))
    # Rina is too late: told who has it; the climb is over.
    rina = Chat(sessions, dialog, Channel.SMS, RINA_PHONE, clock)
    assert as_staff(rina, "1") == [
        t("he", "dispatch.alert.taken_by", alert=alert.id, owner="Avi Peretz")
    ]
    clock.now += climb
    assert sweep_all(sessions, profile=profile, zone=ZONE, now=clock.now)["alerts"] == 0
    # "Could not help" by the SMS number of the "yours" reply.
    as_staff(avi, "2")
    assert _alert(sessions).state == AlertState.FAILED
    assert _audited(sessions) == ["help.take", "help.failed"]


def test_only_officers_of_the_residents_authority_may_take_it(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog
) -> None:
    clock = Clock()
    _town(sessions, directory, Language.HE, clock)
    Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock).send("עזרה")
    alert = _alert(sessions)
    stranger = Chat(sessions, dialog, Channel.SMS, "+972525559999", clock)
    assert stranger.send(f"/take {alert.id}") == [t("he", "staff.not_authorized")]
    assert _alert(sessions).state == AlertState.OPEN
    dana = Chat(sessions, dialog, Channel.SMS, DANA_PHONE, clock)
    as_staff(dana, f"/take {alert.id}")
    assert _alert(sessions).state == AlertState.TAKEN
    assert as_staff(dana, "/status")[-1].startswith(t("he", "dispatch.alert.list_head", count=1))


def test_help_on_an_ordinary_day_goes_to_the_buddy_and_the_officers_and_is_owned(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog
) -> None:
    clock = Clock()
    ids = _town(sessions, directory, Language.HE, clock)
    with unit_of_work(sessions) as session:  # no check-in open: an ordinary day
        for campaign in session.scalars(select(Campaign)):
            session.delete(campaign)
    resident = Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock)
    assert resident.send("צריך עזרה, נגמרו התרופות") == [t(Language.HE, "dispatch.ack.help")]
    with sessions() as session:
        alert = session.scalars(select(Alert)).one()
        task = session.scalars(select(Task)).one()
    assert (alert.kind, alert.need, alert.task_id) == (
        AlertKind.HELP_REQUEST,
        HelpNeed.MEDICINE,
        task.id,
    )
    assert (task.volunteer_id, task.campaign_id) == (ids["buddy"], None)
    # The officer's push by Telegram names the need and the words; the buddy's task does not.
    push = _to(sessions, DANA_CHAT)[-1].text
    assert t("he", "dispatch.need.medicine") in push and "נגמרו התרופות" in push
    visit = _to(sessions, BUDDY_CHAT)[-1]
    assert "תרופות" not in visit.text and visit.kind == "task"
    Chat(sessions, dialog, Channel.TELEGRAM, BUDDY_CHAT, clock).send(button=f"t:{task.id}:accept")
    alert = _alert_of(sessions, alert.id)
    assert (alert.state, alert.owner_person_id) == (AlertState.TAKEN, ids["buddy"])
    acks = [m.text for m in _to(sessions, RESIDENT_PHONE) if m.kind == "ack"]
    assert acks[-1] == t(Language.HE, "dispatch.ack.help_taken", volunteer="Yossi")
    # The buddy could not reach her: the alert is the officers' again, at once.
    Chat(sessions, dialog, Channel.TELEGRAM, BUDDY_CHAT, clock).send(button=f"t:{task.id}:fail")
    alert = _alert_of(sessions, alert.id)
    assert (alert.state, alert.owner_person_id, alert.due_at) == (AlertState.OPEN, None, clock.now)


def _alert_of(sessions: sessionmaker[Session], alert_id: int) -> Alert:
    with sessions() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        return alert
