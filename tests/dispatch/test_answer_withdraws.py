"""The inbox's batch of "I'm OK" answers and the per-message path withdraw the same things, on
SQLite and PostgreSQL: two residents in the same state answer OK, one through
:func:`take_campaign_reply` and one through :func:`take_checkin_answers`; every message, visit,
alert and word to a buddy or an officer comes out the same, and is what an OK must withdraw."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from config.i18n import t
from config.languages import Language
from dispatch.calls import place_call
from dispatch.campaigns import Audience, Ladder, marked, start_campaign
from dispatch.clock import ManualClock
from dispatch.escalation import send_visit
from dispatch.help import raise_help
from dispatch.models import (
    Alert,
    AlertKind,
    Campaign,
    CampaignKind,
    CampaignMode,
    OutboxMessage,
    OutboxStatus,
    Task,
    TaskReason,
    TaskStatus,
)
from dispatch.responses import (
    REPLY_WINDOW,
    CheckinAnswer,
    open_checkins,
    take_campaign_reply,
    take_checkin_answers,
)
from registry.models import Authority, Channel, Person
from registry.phones import normalise_phone
from registry.staff import StaffMember, StaffRole, add_staff, language_of
from tests.dispatch.conftest import MakePerson

pytestmark = pytest.mark.db
EN, AR = Language.EN, Language.AR
LADDER = Ladder(
    reminder_after=timedelta(minutes=10),
    visit_after=timedelta(minutes=30),
    unreached_after=timedelta(minutes=60),
)


def _prepare(session: Session, *, situation: str, campaign: Campaign, resident: Person) -> None:
    now = campaign.started_at + timedelta(minutes=40)
    if situation == "call_waiting":
        place_call(
            session, campaign=campaign, person=resident, now=now, due_at=now + timedelta(minutes=10)
        )
    elif situation in ("visit_offered", "visit_accepted"):
        task = send_visit(
            session, campaign=campaign, resident=resident, reason=TaskReason.NO_ANSWER, now=now
        )
        assert task is not None
        if situation == "visit_accepted":
            task.status, task.accepted_at = TaskStatus.ACCEPTED, now
    else:
        raise_help(session, resident=resident, campaign=None, kind=AlertKind.HELP_REQUEST, now=now)


def _outcome(session: Session, *, resident: Person, buddy: Person, after: int) -> dict[str, Any]:
    alerts = session.scalars(select(Alert).where(Alert.person_id == resident.id)).all()
    return {
        "messages": sorted(
            (m.kind, m.status.value, m.text)
            for m in session.scalars(
                select(OutboxMessage).where(OutboxMessage.person_id == resident.id)
            )
        ),
        "tasks": [
            task.status
            for task in session.scalars(select(Task).where(Task.resident_id == resident.id))
        ],
        "buddy_told": list(
            session.scalars(
                select(OutboxMessage.text)
                .where(OutboxMessage.person_id == buddy.id, OutboxMessage.id > after)
                .order_by(OutboxMessage.id)
            )
        ),
        "alerts": [(a.kind, a.state, a.later_ok_at is not None) for a in alerts],
        "officers_told": [
            (m.text.replace(str(a.id), "N"), m.kind)
            for a in alerts
            for m in session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.person_id.is_(None),
                    OutboxMessage.kind == "alert",
                    OutboxMessage.id > after,
                )
                .order_by(OutboxMessage.id)
            )
            if str(a.id) in m.text
        ],
    }


@pytest.mark.parametrize(
    "situation", ["call_waiting", "visit_offered", "visit_accepted", "help_open"]
)
def test_the_batch_and_one_message_withdraw_the_same_on_an_ok(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
    situation: str,
) -> None:
    alone = make_person(language=EN, name="Ruth Adler", needs=("lives_alone",), address="Oren 7")
    batched = make_person(language=EN, name="Ruth Adler", needs=("lives_alone",), address="Oren 7")
    buddies = [
        make_person(language=AR, is_volunteer=True, birth_year=1980, name="Salma Khoury")
        for _ in range(2)
    ]
    make_buddy(alone, buddies[0])
    make_buddy(batched, buddies[1])
    with sessions() as session:
        add_staff(
            session,
            name="Dana Levi",
            phone=normalise_phone("+972525550301", region="IL"),
            authority=session.get_one(Authority, authority.id),
            role=StaffRole.OFFICER,
            actor="test",
        )
        campaign = start_campaign(
            session,
            authority=session.get_one(Authority, authority.id),
            kind=CampaignKind.CHECKIN,
            mode=CampaignMode.DRILL,
            audience=Audience(residents_only=True),
            started_by="test",
            now=clock.now(),
            ladder=LADDER,
        )
        campaign_id = campaign.id
        for resident in (alone, batched):
            _prepare(
                session,
                situation=situation,
                campaign=campaign,
                resident=session.get_one(Person, resident.id),
            )
        # The worker's part: everything queued so far went out, but the call waiting its time.
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.kind != "call")
            .values(status=OutboxStatus.SENT, attempts=1)
        )
        session.commit()
        after = session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())) or 0

    clock.advance(45 * 60)
    now = clock.now()
    with sessions() as session:
        assert take_campaign_reply(
            session,
            person=session.get_one(Person, alone.id),
            channel=Channel.TELEGRAM,
            callback_data=f"c:{campaign_id}:ok",
            now=now,
        )
        person = session.get_one(Person, batched.id)
        checkins = open_checkins(session, person_ids=[person.id], since=now - REPLY_WINDOW)
        take_checkin_answers(
            session,
            answers=[
                CheckinAnswer(
                    person=person,
                    channel=Channel.TELEGRAM,
                    address=str(person.telegram_chat_id),
                    answered=checkins[person.id],
                    now=now,
                )
            ],
        )
        session.commit()

    with sessions() as session:
        one = _outcome(session, resident=alone, buddy=buddies[0], after=after)
        many = _outcome(session, resident=batched, buddy=buddies[1], after=after)
    assert many == one
    drill = t(EN, "dispatch.drill_marker")
    if situation == "call_waiting":
        calls = [status for kind, status, _ in one["messages"] if kind == "call"]
        assert calls == [OutboxStatus.CANCELLED.value]
    elif situation == "visit_offered":
        assert one["tasks"] == [TaskStatus.CANCELLED]
        assert one["buddy_told"] == [
            marked(AR, CampaignMode.DRILL, t(AR, "dispatch.answered.withdrawn", name="Ruth Adler"))
        ]
    elif situation == "visit_accepted":
        assert one["tasks"] == [TaskStatus.ACCEPTED]
        assert one["buddy_told"] == [
            marked(AR, CampaignMode.DRILL, t(AR, "dispatch.answered.under_way", name="Ruth Adler"))
        ]
    else:
        assert one["alerts"] == [(AlertKind.HELP_REQUEST, "open", True)]
        with sessions() as session:
            dana = session.scalars(select(StaffMember)).one()
            language = language_of(session, dana)
        assert one["officers_told"] == [
            (t(language, "dispatch.answered.officer", alert="N", name="Ruth Adler"), "alert")
        ]
        acks = [text for kind, _, text in one["messages"] if kind == "ack" and drill in text]
        assert acks == [f"{drill} {t(EN, 'dispatch.answered.help_open')}"]


def _start(sessions: sessionmaker[Session], authority: Authority, clock: ManualClock) -> int:
    with sessions() as session:
        campaign = start_campaign(
            session,
            authority=session.get_one(Authority, authority.id),
            kind=CampaignKind.CHECKIN,
            mode=CampaignMode.DRILL,
            audience=Audience(residents_only=True),
            started_by="test",
            now=clock.now(),
            ladder=LADDER,
        )
        session.commit()
        return campaign.id


def _accepted_visit(
    sessions: sessionmaker[Session], campaign_id: int, resident: Person, clock: ManualClock
) -> int:
    """The ladder's visit for a silent resident, accepted by their buddy."""
    clock.advance(40 * 60)
    with sessions() as session:
        task = send_visit(
            session,
            campaign=session.get_one(Campaign, campaign_id),
            resident=session.get_one(Person, resident.id),
            reason=TaskReason.NO_ANSWER,
            now=clock.now(),
        )
        assert task is not None
        task_id = task.id
        session.commit()
    _press(sessions, task_volunteer(sessions, task_id), f"t:{task_id}:accept", clock)
    return task_id


def task_volunteer(sessions: sessionmaker[Session], task_id: int) -> int:
    with sessions() as session:
        return session.get_one(Task, task_id).volunteer_id


def _press(sessions: sessionmaker[Session], person_id: int, data: str, clock: ManualClock) -> None:
    clock.advance(60)
    with sessions() as session:
        assert take_campaign_reply(
            session,
            person=session.get_one(Person, person_id),
            channel=Channel.TELEGRAM,
            callback_data=data,
            now=clock.now(),
        )
        session.commit()


def test_could_not_reach_after_the_resident_answered_ok_sends_nobody_else(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    resident = make_person(language=EN, name="Ruth Adler", needs=("lives_alone",))
    first = make_person(language=EN, is_volunteer=True, birth_year=1980, name="Yossi Amar")
    backup = make_person(language=EN, is_volunteer=True, birth_year=1980, name="Eli Gal")
    make_buddy(resident, first)
    make_buddy(resident, backup, rank=2)
    campaign_id = _start(sessions, authority, clock)
    task_id = _accepted_visit(sessions, campaign_id, resident, clock)
    _press(sessions, resident.id, f"c:{campaign_id}:ok", clock)
    # Yossi knocks anyway and finds nobody home: she said she is OK, nobody else is sent.
    _press(sessions, first.id, f"t:{task_id}:fail", clock)
    with sessions() as session:
        tasks = [(task.volunteer_id, task.status) for task in session.scalars(select(Task))]
        assert tasks == [(first.id, TaskStatus.NOT_REACHED)]
        assert (
            session.scalars(select(OutboxMessage).where(OutboxMessage.person_id == backup.id)).all()
            == []
        )


def test_a_buddys_done_cancels_the_call_waiting_to_ring(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    resident = make_person(language=EN, name="Ruth Adler", needs=("lives_alone",))
    buddy = make_person(language=EN, is_volunteer=True, birth_year=1980, name="Yossi Amar")
    make_buddy(resident, buddy)
    campaign_id = _start(sessions, authority, clock)
    task_id = _accepted_visit(sessions, campaign_id, resident, clock)
    with sessions() as session:
        call = place_call(
            session,
            campaign=session.get_one(Campaign, campaign_id),
            person=session.get_one(Person, resident.id),
            now=clock.now(),
            due_at=clock.now() + timedelta(minutes=10),
        )
        session.commit()
        call_id = call.id
    _press(sessions, buddy.id, f"t:{task_id}:done", clock)
    with sessions() as session:
        assert session.get_one(OutboxMessage, call_id).status == OutboxStatus.CANCELLED
