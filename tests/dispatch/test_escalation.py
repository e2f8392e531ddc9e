"""The escalation ladder with a moving clock, minors and coordinators, group task lists."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.languages import Language
from config.profile import Profile
from config.settings import Settings
from dispatch.campaigns import Audience
from dispatch.clock import ManualClock
from dispatch.escalation import run_escalations
from dispatch.models import (
    Alert,
    AlertKind,
    Answer,
    BlockReason,
    CampaignKind,
    CampaignRecipient,
    Task,
    TaskReason,
    TaskStatus,
)
from dispatch.senders import Permanent
from dispatch.worker import Worker, WorkerConfig
from registry.models import Authority, Channel, Group, GroupKind, GroupMember, Person
from tests.dispatch.conftest import MakePerson, ScriptedSender, begin, outbox_to

pytestmark = pytest.mark.db


def sweep(sessions: sessionmaker[Session], clock: ManualClock) -> int:
    with sessions() as session:
        moved = run_escalations(session, now=clock.now())
        session.commit()
        return moved


def test_silence_climbs_the_ladder_reminder_then_visit_then_unreached(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    resident = make_person(
        needs=("lives_alone",), language=Language.EN, name="Ruth Adler", address="Hagefen 3"
    )
    buddy = make_person(language=Language.EN, is_volunteer=True)
    make_buddy(resident, buddy)
    with sessions() as session:
        begin(session, authority, clock)
    assert sweep(sessions, clock) == 0  # nothing is due yet

    clock.advance(10 * 60)
    assert sweep(sessions, clock) == 1
    with sessions() as session:
        first, reminder = outbox_to(session, resident)
        assert first.channel == Channel.TELEGRAM
        # A missed Telegram message: the reminder tries SMS.
        assert reminder.channel == Channel.SMS and reminder.kind == "reminder"
        assert reminder.text.startswith("Ruth, we have not heard from you. Are you OK?\n1 ")
        assert outbox_to(session, buddy) == []

    clock.advance(20 * 60)
    assert sweep(sessions, clock) == 1
    with sessions() as session:
        task = session.scalars(select(Task)).one()
        assert (task.volunteer_id, task.reason) == (buddy.id, TaskReason.NO_ANSWER)
        (visit,) = outbox_to(session, buddy)
        assert visit.text == "Please check on Ruth Adler at Hagefen 3."
        assert session.scalars(select(Alert)).all() == []

    clock.advance(30 * 60)
    assert sweep(sessions, clock) == 1
    with sessions() as session:
        recipient = session.scalars(select(CampaignRecipient)).one()
        assert recipient.answer == Answer.NO_ANSWER and recipient.step == 3
        assert recipient.next_step_at is None
        assert [(a.kind, a.person_id) for a in session.scalars(select(Alert))] == [
            (AlertKind.UNREACHED, resident.id)
        ]
    clock.advance(3600)
    assert sweep(sessions, clock) == 0  # the ladder ends


def test_a_minor_buddy_never_visits_alone_the_coordinator_goes_with_them(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    resident = make_person(
        telegram=False,
        sms=False,
        landline=True,
        needs=("mobility",),
        name="Eli Ben",
        address="Rimon 1",
    )
    teen = make_person(is_volunteer=True, birth_year=clock.now().year - 15, name="Noa Sela")
    coordinator = make_person(is_volunteer=True, birth_year=1990, language=Language.EN)
    make_buddy(resident, teen)
    with sessions() as session:
        group = Group(
            authority_id=authority.id,
            kind=GroupKind.YOUTH_MOVEMENT,
            name="Scouts 7",
            join_code="SC7",
        )
        session.add(group)
        session.flush()
        session.add_all(
            [
                GroupMember(group_id=group.id, person_id=teen.id),
                GroupMember(group_id=group.id, person_id=coordinator.id, is_coordinator=True),
            ]
        )
        session.commit()
        begin(session, authority, clock)
    # A landline only: straight to a visit at the first sweep.
    assert sweep(sessions, clock) == 1
    with sessions() as session:
        task = session.scalars(select(Task)).one()
        assert task.volunteer_id == coordinator.id and task.group_id is not None
        assert task.reason == TaskReason.NO_CHANNEL
        assert outbox_to(session, teen) == []
        (visit,) = outbox_to(session, coordinator)
        assert visit.text == "Please check on Eli Ben at Rimon 1, together with Noa Sela."


def test_a_minor_with_no_adult_coordinator_means_an_alert_not_a_task(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    resident = make_person(telegram=False, sms=False, landline=True, needs=("mobility",))
    teen = make_person(is_volunteer=True, birth_year=clock.now().year - 16)
    make_buddy(resident, teen)
    with sessions() as session:
        begin(session, authority, clock)
    sweep(sessions, clock)
    with sessions() as session:
        assert session.scalars(select(Task)).all() == []
        assert session.scalars(select(Alert.kind)).all() == [AlertKind.NO_BUDDY]


def test_every_channel_failing_turns_the_check_in_into_a_visit(
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
    telegram: ScriptedSender,
    sms: ScriptedSender,
) -> None:
    resident = make_person(needs=("lives_alone",))
    buddy = make_person(is_volunteer=True, telegram=False)
    make_buddy(resident, buddy)
    telegram.answer(
        str(resident.telegram_chat_id), Permanent(error="blocked", reason=BlockReason.BLOCKED)
    )
    assert resident.phone is not None
    sms.answer(resident.phone, Permanent(error="twilio 21610", reason=BlockReason.UNSUBSCRIBED))
    with sessions() as session:
        begin(session, authority, clock)
    worker = Worker(
        sessions=sessions,
        senders={Channel.TELEGRAM: telegram, Channel.SMS: sms},
        settings=settings,
        clock=clock,
        config=WorkerConfig(),
    )

    async def go() -> None:
        async with worker:
            for _ in range(4):
                await worker.run_once()

    asyncio.run(go())
    with sessions() as session:
        task = session.scalars(select(Task)).one()
        assert (task.volunteer_id, task.reason) == (buddy.id, TaskReason.NO_CHANNEL)
        recipient = session.scalars(
            select(CampaignRecipient).where(CampaignRecipient.person_id == resident.id)
        ).one()
        assert recipient.step == 2
    assert sms.addresses() == [resident.phone, buddy.phone]  # the buddy's visit went out by SMS


def test_a_youth_groups_tasks_go_to_its_coordinator_as_one_list(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    coordinator = make_person(
        is_volunteer=True, birth_year=1985, language=Language.EN, telegram=False
    )
    adult = make_person(is_volunteer=True, birth_year=1970, language=Language.EN)
    teens = [
        make_person(is_volunteer=True, birth_year=clock.now().year - 14, name=f"Teen{n} X")
        for n in range(2)
    ]
    residents = [
        make_person(needs=("lives_alone",), name=f"Resident{n} Y", address=f"Street {n}")
        for n in range(3)
    ]
    make_buddy(residents[0], teens[0])
    make_buddy(residents[1], teens[1])
    make_buddy(residents[2], adult)
    with sessions() as session:
        group = Group(
            authority_id=authority.id,
            kind=GroupKind.YOUTH_MOVEMENT,
            name="Bnei Akiva",
            join_code="BA1",
        )
        session.add(group)
        session.flush()
        session.add_all([GroupMember(group_id=group.id, person_id=t.id) for t in teens])
        session.add(GroupMember(group_id=group.id, person_id=coordinator.id, is_coordinator=True))
        session.commit()
        campaign_id = begin(
            session,
            authority,
            clock,
            kind=CampaignKind.TASKS,
            audience=Audience(volunteers_only=True),
        )
        tasks = session.scalars(select(Task).order_by(Task.id)).all()
        assert len(tasks) == 3
        assert {t.volunteer_id for t in tasks} == {coordinator.id, adult.id}
        assert all(t.campaign_id == campaign_id for t in tasks)
        for teen in teens:
            assert outbox_to(session, teen) == []
        (task_list,) = outbox_to(session, coordinator)
        assert task_list.kind == "task_list" and task_list.channel == Channel.SMS
        assert task_list.text == (
            "Home visits for Bnei Akiva:\n"
            "1 Resident0 Y, Street 0 (Teen0 X): Done, all OK\n"
            "2 Resident0 Y: Could not reach\n"
            "3 Resident1 Y, Street 1 (Teen1 X): Done, all OK\n"
            "4 Resident1 Y: Could not reach"
        )
        (single,) = outbox_to(session, adult)
        assert single.text == "Please check on Resident2 Y at Street 2."

        # The coordinator answers "3" by SMS: the second visit is done; "2": the first one could
        # not reach its resident, and with nobody left on that resident's ladder the officers
        # are told.
        from dispatch.responses import take_campaign_reply

        fresh = session.get(Person, coordinator.id)
        assert fresh is not None
        assert take_campaign_reply(
            session, person=fresh, channel=Channel.SMS, text="3", now=clock.now()
        )
        session.commit()
        done = [t for t in session.scalars(select(Task).order_by(Task.id)) if t.status == "done"]
        assert [t.resident_id for t in done] == [residents[1].id]
        assert take_campaign_reply(
            session, person=fresh, channel=Channel.SMS, text="2", now=clock.now()
        )
        session.commit()
        failed = session.scalars(select(Task).where(Task.status == "not_reached")).all()
        assert [t.resident_id for t in failed] == [residents[0].id]
        kinds = set(session.scalars(select(Alert.kind).where(Alert.person_id == residents[0].id)))
        assert kinds == {AlertKind.NOT_REACHED, AlertKind.NO_BUDDY}


def test_a_reminder_wave_larger_than_one_batch_is_swept_in_one_go(
    sessions: sessionmaker[Session],
    authority: Authority,
    profile: Profile,
    settings: Settings,
    clock: ManualClock,
    make_person: MakePerson,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dispatch import escalation
    from dispatch.scheduler import sweep_all

    monkeypatch.setattr(escalation, "SWEEP_BATCH", 2)
    for _ in range(5):
        make_person(needs=("lives_alone",))
    with sessions() as session:
        begin(session, authority, clock)
    clock.advance(10 * 60)
    done = sweep_all(sessions, profile=profile, zone=settings.zone_info, now=clock.now())
    assert done["ladder"] == 5
    with sessions() as session:
        steps = session.scalars(select(CampaignRecipient.step)).all()
        assert steps == [1] * 5


def test_could_not_reach_moves_the_visit_to_the_next_person_on_the_ladder(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    from dispatch.responses import take_campaign_reply

    resident = make_person(needs=("lives_alone",), language=Language.EN)
    first = make_person(is_volunteer=True, name="Yossi Amar", birth_year=1980)
    backup = make_person(is_volunteer=True, name="Dina Bar", birth_year=1985)
    make_buddy(resident, first, rank=1)
    make_buddy(resident, backup, rank=2)
    with sessions() as session:
        campaign_id = begin(session, authority, clock)
        fresh = session.get_one(Person, resident.id)
        assert take_campaign_reply(
            session,
            person=fresh,
            channel=Channel.TELEGRAM,
            callback_data=f"c:{campaign_id}:help",
            now=clock.now(),
        )
        session.commit()
        (task,) = session.scalars(select(Task)).all()
        assert task.volunteer_id == first.id
        # Yossi went and could not reach her: Dina (the backup buddy) gets the visit at once.
        assert take_campaign_reply(
            session,
            person=session.get_one(Person, first.id),
            channel=Channel.TELEGRAM,
            callback_data=f"t:{task.id}:fail",
            now=clock.now(),
        )
        session.commit()
        tasks = session.scalars(select(Task).order_by(Task.id)).all()
        assert [(t.volunteer_id, t.status) for t in tasks] == [
            (first.id, TaskStatus.NOT_REACHED),
            (backup.id, TaskStatus.OFFERED),
        ]
        assert tasks[1].reason == TaskReason.HELP
        assert outbox_to(session, backup)[-1].kind == "task"
        # Dina cannot reach her either: nobody is left, and the officers are told.
        take_campaign_reply(
            session,
            person=session.get_one(Person, backup.id),
            channel=Channel.TELEGRAM,
            callback_data=f"t:{tasks[1].id}:fail",
            now=clock.now(),
        )
        session.commit()
        assert len(session.scalars(select(Task)).all()) == 2
        kinds = session.scalars(select(Alert.kind).where(Alert.person_id == resident.id)).all()
        assert AlertKind.NO_BUDDY in kinds and kinds.count(AlertKind.NOT_REACHED) == 2
