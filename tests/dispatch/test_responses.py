"""Answers to check-ins and tasks through ``take_campaign_reply``, on both databases."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.i18n import t
from config.languages import Language
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.clock import ManualClock
from dispatch.models import (
    Alert,
    AlertKind,
    Answer,
    CampaignRecipient,
    OutboxMessage,
    OutboxStatus,
    Task,
    TaskReason,
    TaskStatus,
)
from dispatch.outbox import enqueue
from dispatch.reports import close_campaign
from dispatch.responses import take_campaign_reply
from registry.models import Authority, Channel, Person
from tests.dispatch.conftest import MakePerson, outbox_to

pytestmark = pytest.mark.db


def begin(session: Session, authority: Authority, clock: ManualClock) -> int:
    campaign = start_drill_checkin(
        session,
        authority=authority,
        audience=Audience(residents_only=True),
        started_by="test",
        now=clock.now(),
    )
    # What the worker would have done: the check-ins went out.
    for row in session.scalars(select(OutboxMessage)):
        row.status = OutboxStatus.SENT
    session.commit()
    return campaign.id


def reply(
    session: Session, person: Person, clock: ManualClock, channel: Channel, **kwargs: str
) -> bool:
    fresh = session.get(Person, person.id)
    assert fresh is not None
    handled = take_campaign_reply(session, person=fresh, channel=channel, now=clock.now(), **kwargs)
    session.commit()
    return handled


def answer_of(session: Session, person: Person) -> CampaignRecipient:
    return session.scalars(
        select(CampaignRecipient).where(CampaignRecipient.person_id == person.id)
    ).one()


def test_the_ok_button_answers_stops_the_ladder_and_acknowledges(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    resident = make_person(needs=("lives_alone",), language=Language.EN)
    with sessions() as session:
        campaign_id = begin(session, authority, clock)
        clock.advance(90)
        assert reply(
            session, resident, clock, Channel.TELEGRAM, callback_data=f"c:{campaign_id}:ok"
        )
        recipient = answer_of(session, resident)
        assert recipient.answer == Answer.OK
        assert recipient.next_step_at is None
        assert recipient.answered_at == clock.now()
        checkin, ack = outbox_to(session, resident)
        assert checkin.status == OutboxStatus.READ
        assert ack.kind == "ack" and ack.text == "[DRILL] Thank you. We are glad you are OK."
        assert ack.channel == Channel.TELEGRAM


def test_an_ok_read_from_words_answers_the_check_in(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    """bots/ reads the words (tests/bots/test_checkin_words.py); the dispatcher records them."""
    resident = make_person(telegram=False, needs=("mobility",))
    with sessions() as session:
        begin(session, authority, clock)
        assert reply(session, resident, clock, Channel.SMS, text="כן", answer=Answer.OK)
        assert answer_of(session, resident).answer == Answer.OK


def test_sms_2_is_a_call_for_help_the_buddy_gets_a_visit_and_the_loop_closes(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    resident = make_person(
        telegram=False,
        needs=("mobility",),
        name="Miriam Katz",
        address="Herzl 5",
        language=Language.EN,
    )
    buddy = make_person(name="Yossi Amar", language=Language.EN, is_volunteer=True)
    make_buddy(resident, buddy)
    with sessions() as session:
        campaign_id = begin(session, authority, clock)
        assert reply(session, resident, clock, Channel.SMS, text="2")
        assert answer_of(session, resident).answer == Answer.HELP
        alerts = session.scalars(select(Alert)).all()
        assert [(a.kind, a.person_id) for a in alerts] == [(AlertKind.HELP, resident.id)]
        task = session.scalars(select(Task)).one()
        assert (task.volunteer_id, task.reason, task.status) == (
            buddy.id,
            TaskReason.HELP,
            TaskStatus.OFFERED,
        )
        visit = outbox_to(session, buddy)[-1]
        assert visit.text == "[DRILL] Please check on Miriam Katz at Herzl 5."
        assert [b["data"] for b in visit.buttons[0]] == [  # type: ignore[index]
            f"t:{task.id}:accept",
            f"t:{task.id}:done",
            f"t:{task.id}:fail",
        ]
        ack = outbox_to(session, resident)[-1]
        assert ack.text == "[DRILL] " + t(Language.EN, "dispatch.ack.help")
        assert "coming" not in ack.text  # nobody has accepted yet: no promise of a visit

        # The buddy takes it: the resident hears who is coming.
        assert reply(session, buddy, clock, Channel.TELEGRAM, callback_data=f"t:{task.id}:accept")
        session.refresh(task)
        assert task.status == TaskStatus.ACCEPTED
        told = outbox_to(session, resident)[-1]
        assert told.text == "[DRILL] Yossi is on the way to you."
        assert told.channel == Channel.SMS

        # Done reaches the officer's status at once.
        assert reply(session, buddy, clock, Channel.TELEGRAM, callback_data=f"t:{task.id}:done")
        session.refresh(task)
        assert task.status == TaskStatus.DONE and task.closed_at == clock.now()
        assert campaign_id


def test_someone_elses_task_is_not_theirs_to_close(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    resident = make_person(needs=("mobility",))
    buddy = make_person(is_volunteer=True)
    stranger = make_person(is_volunteer=True, language=Language.EN)
    make_buddy(resident, buddy)
    with sessions() as session:
        campaign_id = begin(session, authority, clock)
        reply(session, resident, clock, Channel.TELEGRAM, callback_data=f"c:{campaign_id}:help")
        task = session.scalars(select(Task)).one()
        assert reply(session, stranger, clock, Channel.TELEGRAM, callback_data=f"t:{task.id}:done")
        session.refresh(task)
        assert task.status == TaskStatus.OFFERED
        assert outbox_to(session, stranger)[-1].text == "[DRILL] This task is no longer open."


def test_free_text_after_a_check_in_is_kept_for_a_human(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    resident = make_person(telegram=False, needs=("sight",))
    with sessions() as session:
        begin(session, authority, clock)
        assert reply(
            session, resident, clock, Channel.SMS, text="the lift is broken, I am on floor 4"
        )
        recipient = answer_of(session, resident)
        assert recipient.answer == Answer.FREE_TEXT
        assert recipient.needs_human
        assert recipient.answer_text == "the lift is broken, I am on floor 4"
        assert session.scalars(select(Alert.kind)).all() == [AlertKind.FREE_TEXT]


def test_free_text_in_a_bot_conversation_is_left_to_the_bot(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    resident = make_person(telegram=False, needs=("sight",))
    with sessions() as session:
        begin(session, authority, clock)
        assert resident.phone is not None
        enqueue(
            session,
            channel=Channel.SMS,
            address=resident.phone,
            text="What is your address?",
            person_id=resident.id,
        )
        session.commit()
        assert not reply(session, resident, clock, Channel.SMS, text="Herzl 5")
        assert not reply(session, resident, clock, Channel.TELEGRAM, callback_data="b:lang:he")
        assert answer_of(session, resident).answer == Answer.PENDING


def test_a_late_reply_still_counts_and_leaves_the_unreached_list(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    resident = make_person(needs=("lives_alone",))
    with sessions() as session:
        campaign_id = begin(session, authority, clock)
        from dispatch.campaigns import get_campaign

        close_campaign(session, campaign=get_campaign(session, campaign_id), now=clock.now())
        session.commit()
        assert answer_of(session, resident).answer == Answer.NO_ANSWER
        clock.advance(3600)
        assert reply(
            session, resident, clock, Channel.TELEGRAM, callback_data=f"c:{campaign_id}:ok"
        )
        assert answer_of(session, resident).answer == Answer.OK
        alert = session.scalars(select(Alert)).one()
        assert alert.kind == AlertKind.UNREACHED and alert.resolved_at == clock.now()


def test_a_later_ok_never_erases_a_call_for_help(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    resident = make_person(needs=("lives_alone",))
    with sessions() as session:
        campaign_id = begin(session, authority, clock)
        reply(session, resident, clock, Channel.TELEGRAM, callback_data=f"c:{campaign_id}:help")
        reply(session, resident, clock, Channel.TELEGRAM, callback_data=f"c:{campaign_id}:ok")
        assert answer_of(session, resident).answer == Answer.HELP
        # No buddy registered: the officer is told nobody could be sent.
        kinds = sorted(str(k) for k in session.scalars(select(Alert.kind)))
        assert kinds == ["help", "no_buddy"]
