"""Closing a campaign: no home visit is left looking live, a visit under way keeps counting, and
help (its alert, its owner, its visit) is not the campaign's to end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.i18n import t
from config.languages import Language
from dispatch.campaigns import Audience
from dispatch.clock import ManualClock
from dispatch.escalation import run_escalations, send_visit
from dispatch.help import run_alert_climbs
from dispatch.models import (
    Alert,
    AlertKind,
    AlertState,
    Campaign,
    CampaignKind,
    CampaignMode,
    OutboxMessage,
    OutboxStatus,
    Task,
    TaskReason,
    TaskStatus,
)
from dispatch.reports import close_campaign, drill_report
from dispatch.responses import take_campaign_reply
from registry.models import Authority, Channel, Person
from registry.phones import normalise_phone
from registry.staff import StaffRole, add_staff, verify_telegram
from tests.dispatch.conftest import MakePerson, begin

pytestmark = pytest.mark.db

EN = Language.EN
DRILL = t(EN, "dispatch.drill_marker")


def begin_drill(
    sessions: sessionmaker[Session], authority: Authority, clock: ManualClock, **options: Any
) -> int:
    with sessions() as session:
        return begin(session, authority, clock, mode=CampaignMode.DRILL, **options)


def visit(sessions: sessionmaker[Session], campaign_id: int, resident: Person, now: object) -> int:
    """The ladder's home visit for a silent resident (as the sweep sends it)."""
    with sessions() as session:
        task = send_visit(
            session,
            campaign=session.get_one(Campaign, campaign_id),
            resident=session.get_one(Person, resident.id),
            reason=TaskReason.NO_ANSWER,
            now=now,  # type: ignore[arg-type]
        )
        assert task is not None
        # The worker's part: the offer went out.
        for message in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "task")):
            message.status = OutboxStatus.SENT
        session.commit()
        return task.id


def press(
    sessions: sessionmaker[Session], person: Person, data: str, clock: ManualClock
) -> list[str]:
    """The person presses a button; returns the texts queued for them in answer."""
    with sessions() as session:
        before = session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1))
        assert take_campaign_reply(
            session,
            person=session.get_one(Person, person.id),
            channel=Channel.TELEGRAM,
            callback_data=data,
            now=clock.now(),
        )
        session.commit()
        return list(
            session.scalars(
                select(OutboxMessage.text)
                .where(OutboxMessage.person_id == person.id, OutboxMessage.id > (before or 0))
                .order_by(OutboxMessage.id)
            )
        )


def close(sessions: sessionmaker[Session], campaign_id: int, clock: ManualClock) -> None:
    with sessions() as session:
        close_campaign(session, campaign=session.get_one(Campaign, campaign_id), now=clock.now())
        session.commit()


def told_after(session: Session, person: Person, after: int) -> list[OutboxMessage]:
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.person_id == person.id, OutboxMessage.id > after)
            .order_by(OutboxMessage.id)
        )
    )


def last_id(session: Session) -> int:
    return session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1)) or 0


def test_close_withdraws_offered_visits_and_keeps_one_under_way(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    ruth = make_person(needs=("lives_alone",), language=EN, name="Ruth Adler", address="Hagefen 3")
    moshe = make_person(needs=("lives_alone",), language=EN, name="Moshe Bar", address="Oren 7")
    rachel = make_person(needs=("lives_alone",), language=EN, name="Rachel Dan", address="Tamar 1")
    buddy = make_person(language=EN, is_volunteer=True, name="Yossi Amar")
    other = make_person(language=EN, is_volunteer=True, name="Eli Gal")
    make_buddy(ruth, buddy)
    make_buddy(moshe, buddy)
    make_buddy(rachel, other)
    campaign_id = begin_drill(sessions, authority, clock)
    clock.advance(30 * 60)
    ruth_task = visit(sessions, campaign_id, ruth, clock.now())
    moshe_task = visit(sessions, campaign_id, moshe, clock.now())
    rachel_task = visit(sessions, campaign_id, rachel, clock.now())
    press(sessions, buddy, f"t:{ruth_task}:accept", clock)
    press(sessions, other, f"t:{rachel_task}:accept", clock)
    # Rachel answers after all: her visitor's visit is no longer needed.
    assert press(sessions, rachel, f"c:{campaign_id}:ok", clock)
    with sessions() as session:
        before = last_id(session)

    clock.advance(60)
    close(sessions, campaign_id, clock)
    with sessions() as session:
        tasks = {task.id: task for task in session.scalars(select(Task))}
        # Ruth is unaccounted for and Yossi is on his way: the visit stays his.
        assert tasks[ruth_task].status == TaskStatus.ACCEPTED
        assert tasks[moshe_task].status == TaskStatus.CANCELLED
        assert tasks[moshe_task].closed_at == clock.now()
        assert tasks[rachel_task].status == TaskStatus.CANCELLED
        to_buddy = told_after(session, buddy, before)
        assert [m.text for m in to_buddy] == [
            f"{DRILL} {t(EN, 'dispatch.close.under_way', name='Ruth Adler')}",
            f"{DRILL} {t(EN, 'dispatch.close.withdrawn_unreached', name='Moshe Bar')}",
        ]
        # The visit under way can still be reported, and only reported.
        assert to_buddy[0].buttons == [
            [
                {"text": t(EN, "dispatch.task.done"), "data": f"t:{ruth_task}:done"},
                {"text": t(EN, "dispatch.task.not_reached"), "data": f"t:{ruth_task}:fail"},
            ]
        ]
        assert to_buddy[1].buttons is None
        assert [m.text for m in told_after(session, other, before)] == [
            f"{DRILL} {t(EN, 'dispatch.close.withdrawn_answered', name='Rachel Dan')}"
        ]
        report = drill_report(session, campaign=session.get_one(Campaign, campaign_id))
        steps = {p["name"]: (p["visit"], p["next_step"]) for p in report.unreached}
        assert steps == {
            "Ruth Adler": ("accepted", "wait_buddy"),
            "Moshe Bar": ("cancelled", "call"),
        }

    # A late press on the withdrawn offer: the truth, and nothing moves.
    clock.advance(60)
    assert press(sessions, buddy, f"t:{moshe_task}:accept", clock) == [
        f"{DRILL} {t(EN, 'dispatch.close.gone')}"
    ]
    # The visit under way is reported done: Ruth is accounted for.
    assert press(sessions, buddy, f"t:{ruth_task}:done", clock) == [
        f"{DRILL} {t(EN, 'dispatch.task.ack_done')}"
    ]
    with sessions() as session:
        assert session.get_one(Task, moshe_task).status == TaskStatus.CANCELLED
        report = drill_report(session, campaign=session.get_one(Campaign, campaign_id))
        assert [p["name"] for p in report.unreached] == ["Moshe Bar"]
        assert report.status["total"]["visited"] == 1
        open_unreached = session.scalars(
            select(Alert.person_id).where(
                Alert.kind == AlertKind.UNREACHED, Alert.resolved_at.is_(None)
            )
        ).all()
        assert open_unreached == [moshe.id]


def test_could_not_reach_after_close_sends_nobody_new(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    ruth = make_person(needs=("lives_alone",), language=EN, name="Ruth Adler")
    buddy = make_person(language=EN, is_volunteer=True)
    backup = make_person(language=EN, is_volunteer=True)
    make_buddy(ruth, buddy)
    make_buddy(ruth, backup, rank=2)
    campaign_id = begin_drill(sessions, authority, clock)
    task_id = visit(sessions, campaign_id, ruth, clock.now())
    press(sessions, buddy, f"t:{task_id}:accept", clock)
    close(sessions, campaign_id, clock)
    press(sessions, buddy, f"t:{task_id}:fail", clock)
    with sessions() as session:
        # No backup is sent for a closed check-in; the officers hear the visitor could not.
        assert [task.volunteer_id for task in session.scalars(select(Task))] == [buddy.id]
        assert (
            session.scalars(select(OutboxMessage).where(OutboxMessage.person_id == backup.id)).all()
            == []
        )
        kinds = set(session.scalars(select(Alert.kind).where(Alert.person_id == ruth.id)))
        assert kinds == {AlertKind.UNREACHED, AlertKind.NOT_REACHED}


def test_an_offer_still_queued_is_cancelled_and_nobody_is_told(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    ruth = make_person(needs=("lives_alone",), language=EN)
    buddy = make_person(language=EN, is_volunteer=True)
    make_buddy(ruth, buddy)
    campaign_id = begin_drill(sessions, authority, clock)
    clock.advance(30 * 60)
    with sessions() as session:
        assert run_escalations(session, now=clock.now()) == 1  # the reminder
        clock.advance(20 * 60)
        assert run_escalations(session, now=clock.now()) == 1  # the visit, not yet sent
        session.commit()
    close(sessions, campaign_id, clock)
    with sessions() as session:
        (offer,) = session.scalars(
            select(OutboxMessage).where(OutboxMessage.person_id == buddy.id)
        ).all()
        assert (offer.kind, offer.status) == ("task", OutboxStatus.CANCELLED)
        assert session.scalars(select(Task.status)).all() == [TaskStatus.CANCELLED]


def test_help_outlives_the_close_with_its_owner_and_its_visit(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    ruth = make_person(needs=("lives_alone",), language=EN, name="Ruth Adler")
    moshe = make_person(needs=("lives_alone",), language=EN, name="Moshe Bar")
    buddy = make_person(language=EN, is_volunteer=True)
    make_buddy(ruth, buddy)
    make_buddy(moshe, buddy)
    with sessions() as session:
        for n in (1, 2):
            phone = normalise_phone(f"+97252555030{n}", region="IL")
            add_staff(
                session,
                name=f"Officer {n}",
                phone=phone,
                authority=session.get_one(Authority, authority.id),
                role=StaffRole.OFFICER,
                actor="test",
            )
            verify_telegram(session, phone=phone, chat_id=900 + n)
        session.commit()
    campaign_id = begin_drill(sessions, authority, clock)
    clock.advance(60)
    press(sessions, ruth, f"c:{campaign_id}:help", clock)
    press(sessions, moshe, f"c:{campaign_id}:help", clock)
    with sessions() as session:
        ruth_alert, moshe_alert = session.scalars(
            select(Alert).where(Alert.kind == AlertKind.HELP).order_by(Alert.person_id)
        ).all()
        ruth_task = session.scalars(select(Task).where(Task.resident_id == ruth.id)).one()
        assert ruth_task.reason == TaskReason.HELP
    press(sessions, buddy, f"t:{ruth_task.id}:accept", clock)
    close(sessions, campaign_id, clock)
    with sessions() as session:
        ruth_alert = session.get_one(Alert, ruth_alert.id)
        assert (ruth_alert.state, ruth_alert.owner_person_id) == (AlertState.TAKEN, buddy.id)
        moshe_alert = session.get_one(Alert, moshe_alert.id)
        assert moshe_alert.state == AlertState.OPEN and moshe_alert.due_at is not None
        # Both help visits are still live, and nobody was told otherwise.
        assert sorted(session.scalars(select(Task.status))) == [
            TaskStatus.ACCEPTED,
            TaskStatus.OFFERED,
        ]
        assert not any(
            "close" in (m.text or "") or m.kind == "notice"
            for m in session.scalars(
                select(OutboxMessage).where(OutboxMessage.person_id == buddy.id)
            )
        )
    # Nobody took Moshe's help: it climbs after the close as before it.
    clock.advance(60 * 60)
    with sessions() as session:
        assert run_alert_climbs(session, now=clock.now()) == 1
        session.commit()
        assert session.get_one(Alert, moshe_alert.id).climb == 2
    # The buddy's report on Ruth still closes her alert.
    press(sessions, buddy, f"t:{ruth_task.id}:done", clock)
    with sessions() as session:
        assert session.get_one(Alert, ruth_alert.id).state == AlertState.DONE


def test_a_task_list_round_closes_with_one_notice(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    residents = [make_person(needs=("lives_alone",), language=EN) for _ in range(3)]
    buddy = make_person(language=EN, is_volunteer=True)
    for resident in residents:
        make_buddy(resident, buddy)
    campaign_id = begin_drill(
        sessions, authority, clock, kind=CampaignKind.TASKS, audience=Audience(volunteers_only=True)
    )
    with sessions() as session:
        for message in session.scalars(select(OutboxMessage)):
            message.status = OutboxStatus.SENT
        session.commit()
        first = session.scalars(select(Task.id).order_by(Task.id)).first()
    press(sessions, buddy, f"t:{first}:done", clock)
    with sessions() as session:
        before = last_id(session)
    close(sessions, campaign_id, clock)
    with sessions() as session:
        assert sorted(session.scalars(select(Task.status))) == [
            TaskStatus.CANCELLED,
            TaskStatus.CANCELLED,
            TaskStatus.DONE,
        ]
        assert [m.text for m in told_after(session, buddy, before)] == [
            f"{DRILL} {t(EN, 'dispatch.close.withdrawn_list')}"
        ]
