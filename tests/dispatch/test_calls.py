"""The voice gate: calls a second and calls in progress at once, held by the worker against a
provider that answers on the manual clock (each call lasts a while, then its status callback
ends it), and the drill report's count of calls per outcome per zone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from dispatch import calls
from dispatch.campaigns import Audience, Ladder, start_campaign
from dispatch.clients import request_leaving
from dispatch.clock import ManualClock
from dispatch.escalation import run_escalations
from dispatch.models import (
    Answer,
    CallOutcome,
    Campaign,
    CampaignKind,
    CampaignMode,
    CampaignRecipient,
    OutboxMessage,
    OutboxStatus,
    Task,
    TaskReason,
    VoiceCall,
)
from dispatch.outbox import count_unsent, enqueue
from dispatch.senders import Outgoing, SendResult, Sent
from dispatch.worker import VOICE_SENDER_TTL, Worker, WorkerConfig
from fakes.faults import Traffic
from registry.db import unit_of_work
from registry.models import Authority, Channel, Person, Zone
from tests.dispatch.conftest import MakePerson

pytestmark = pytest.mark.db


class Lines:
    """A Twilio account's calls on the manual clock: a call is in progress from the moment it
    is placed until ``duration`` later, when its status callback ends it in the database."""

    channel = Channel.VOICE

    def __init__(
        self, sessions: sessionmaker[Session], clock: ManualClock, duration: float
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.duration = duration
        self.traffic = Traffic(clock=lambda: clock.now().timestamp())
        self.active = 0
        self.max_active = 0
        self.ending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, message: Outgoing) -> SendResult:
        self.traffic.count("request")
        self.traffic.count("accepted")
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        sid = f"CA{message.id:032x}"
        task = asyncio.create_task(self._end(message.id, sid))
        self.ending.add(task)
        task.add_done_callback(self.ending.discard)
        return Sent(provider_id=sid)

    async def _end(self, outbox_id: int, sid: str) -> None:
        await self.clock.sleep(self.duration)
        self.active -= 1  # ended at the provider before Hosen hears of it
        await asyncio.to_thread(self._callback, outbox_id, sid)

    def _callback(self, outbox_id: int, sid: str) -> None:
        with unit_of_work(self.sessions) as session:
            calls.call_ended(
                session,
                outbox_id=outbox_id,
                call_sid=sid,
                status="completed",
                answered_by="human",
                now=self.clock.now(),
            )


def _place(sessions: sessionmaker[Session], clock: ManualClock, count: int) -> None:
    with sessions() as session:
        for n in range(count):
            enqueue(
                session,
                channel=Channel.VOICE,
                address=f"+9728{n:07d}",
                text="checkin",
                kind="call",
                due_at=clock.now(),
            )
        session.commit()


def _call_everyone(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, lines: Lines
) -> None:
    async def go() -> None:
        stop = asyncio.Event()
        worker = Worker(
            sessions=sessions,
            senders={Channel.VOICE: lines},
            settings=settings,
            clock=clock,
            config=WorkerConfig(idle_sleep=0.2),
            worker_id="only",
        )
        running = asyncio.create_task(worker.run(stop))
        try:
            for _ in range(3000):
                if not await asyncio.to_thread(_unsent, sessions) and not lines.ending:
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=60)

    asyncio.run(go())


def _unsent(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return count_unsent(session)


def test_no_more_calls_at_once_than_the_cap(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock
) -> None:
    """20 calls of 4 seconds, 3 lines: never a fourth call in progress, and every call made."""
    capped = settings.model_copy(update={"voice_rate_per_second": 10.0, "voice_max_calls": 3})
    lines = Lines(sessions, clock, duration=4.0)
    _place(sessions, clock, 20)

    _call_everyone(sessions, capped, clock, lines)

    assert lines.traffic.accepted == 20
    assert lines.max_active == 3  # the cap is used, and never passed
    with sessions() as session:
        ended = session.query(VoiceCall).filter(VoiceCall.ended_at.is_not(None)).count()
    assert ended == 20


def test_calls_a_second_hold_the_rate(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock
) -> None:
    """60 short calls at 2 a second: never 3 within a second, and at least 95% of the rate."""
    rated = settings.model_copy(update={"voice_rate_per_second": 2.0, "voice_max_calls": 50})
    lines = Lines(sessions, clock, duration=0.5)
    _place(sessions, clock, 60)

    _call_everyone(sessions, rated, clock, lines)

    assert lines.traffic.accepted == 60
    assert lines.traffic.peak_per_second() <= 2
    assert lines.traffic.rate() >= 0.95 * 2, lines.traffic.summary()


class SlowLines(Lines):
    """Lines whose every fifth call waits before its request leaves (the event loop busy with
    the calls' webhooks, a connection to open): the provider counts each call at its arrival,
    which it reports as the real twilio client does (``request_leaving``, at the write)."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: ManualClock, duration: float
    ) -> None:
        super().__init__(sessions, clock, duration)
        self.arrivals: list[datetime] = []

    async def send(self, message: Outgoing) -> SendResult:
        if len(self.arrivals) % 5 == 0:
            await self.clock.sleep(0.6)
        leaving = request_leaving.get()
        if leaving is not None:
            leaving()
        self.arrivals.append(self.clock.now())
        return await super().send(message)


def _most_within_a_second(arrivals: list[datetime]) -> int:
    return max(
        sum(1 for other in arrivals if at <= other < at + timedelta(seconds=1)) for at in arrivals
    )


@pytest.mark.parametrize("rate", [1.0, 3.0])
def test_a_call_delayed_before_it_leaves_does_not_let_the_next_go_early(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, rate: float
) -> None:
    """Every fifth call waits 0.6 s between the pacer letting it go and its request leaving.
    The provider still never sees more than the limit within any second (at one a second: no
    two calls closer than a second), counted at the requests' arrival."""
    rated = settings.model_copy(update={"voice_rate_per_second": rate, "voice_max_calls": 50})
    lines = SlowLines(sessions, clock, duration=0.5)
    _place(sessions, clock, 12)

    _call_everyone(sessions, rated, clock, lines)

    assert len(lines.arrivals) == 12
    assert _most_within_a_second(lines.arrivals) <= rate
    if rate == 1.0:
        gaps = [b - a for a, b in zip(lines.arrivals, lines.arrivals[1:], strict=False)]
        assert min(gaps) >= timedelta(seconds=1)


def test_one_worker_at_a_time_places_calls(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock
) -> None:
    """Calls are counted when their requests leave, which only the sending process knows: a
    second worker claims no call while the first holds the voice lease, and takes over once the
    first has stopped claiming for the lease's time."""
    _place(sessions, clock, 6)
    lines = Lines(sessions, clock, duration=0.5)

    def worker(name: str) -> Worker:
        return Worker(
            sessions=sessions,
            senders={Channel.VOICE: lines},
            settings=settings,
            clock=clock,
            worker_id=name,
        )

    first, second = worker("first"), worker("second")
    if not first.on_postgresql:
        pytest.skip("SQLite has one worker (its own lease)")
    assert first._claim(Channel.VOICE)
    assert second._claim(Channel.VOICE) == []
    clock.advance(VOICE_SENDER_TTL.total_seconds() + 1)
    assert second._claim(Channel.VOICE)
    assert first._claim(Channel.VOICE) == []


def test_free_lines_counts_calls_in_progress(
    sessions: sessionmaker[Session], clock: ManualClock, authority: Authority
) -> None:
    now = clock.now()
    with unit_of_work(sessions) as session:
        zone = session.query(Zone).filter(Zone.authority_id == authority.id).first()
        assert zone is not None
        for outcome, ended in (
            (CallOutcome.PENDING, None),
            (CallOutcome.PENDING, None),
            (CallOutcome.WELL, now),
            (CallOutcome.BUSY, now),
            (CallOutcome.BUSY, now),
        ):
            session.add(
                VoiceCall(
                    inbound=False,
                    zone_id=zone.id,
                    attempt=1,
                    status="completed",
                    outcome=outcome,
                    created_at=now,
                    ended_at=ended,
                )
            )
        # A call whose callback was lost an hour ago no longer holds a line.
        session.add(
            VoiceCall(
                inbound=False,
                attempt=1,
                status="ringing",
                outcome=CallOutcome.PENDING,
                created_at=now - calls.CALL_LOST_AFTER - timedelta(minutes=1),
            )
        )
    with unit_of_work(sessions) as session:
        assert calls.free_lines(session, cap=5, now=now) == 3
        assert calls.free_lines(session, cap=1, now=now) == 0


# --- calls in the ladder ----------------------------------------------------------------------

CALLING = Ladder(
    reminder_after=timedelta(minutes=10),
    visit_after=timedelta(minutes=30),
    unreached_after=timedelta(minutes=120),
    calls=True,
    call_retry_after=timedelta(minutes=10),
    call_retries=2,
)


def _begin(sessions: sessionmaker[Session], authority: Authority, clock: ManualClock) -> int:
    with unit_of_work(sessions) as session:
        return start_campaign(
            session,
            authority=authority,
            kind=CampaignKind.CHECKIN,
            mode=CampaignMode.DRILL,
            audience=Audience(residents_only=True),
            started_by="test",
            now=clock.now(),
            ladder=CALLING,
        ).id


def _calls_to(session: Session, person: Person) -> list[OutboxMessage]:
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.person_id == person.id, OutboxMessage.channel == Channel.VOICE)
            .order_by(OutboxMessage.id)
        )
    )


def _ends(
    sessions: sessionmaker[Session], clock: ManualClock, message: OutboxMessage, status: str
) -> None:
    """Twilio placed the call and, later, its status callback says how it ended."""
    sid = f"CA{message.id:032x}"
    with unit_of_work(sessions) as session:
        placed = session.get_one(OutboxMessage, message.id)
        placed.status, placed.provider_id = OutboxStatus.SENT, sid  # as the worker records it
        calls.calls_placed(session, placed=[(message.id, sid)], now=clock.now())
    with unit_of_work(sessions) as session:
        calls.call_ended(
            session,
            outbox_id=message.id,
            call_sid=sid,
            status=status,
            answered_by=None,
            now=clock.now(),
        )


def test_a_mobile_resident_who_did_not_answer_is_called_before_the_visit(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    resident = make_person(telegram=True, sms=True, needs=("mobility",))
    make_buddy(resident, make_person(telegram=True, name="Buddy"))
    _begin(sessions, authority, clock)
    with sessions() as session:
        assert _calls_to(session, resident) == []  # Telegram first, no call yet

    clock.advance(600)
    with unit_of_work(sessions) as session:
        run_escalations(session, now=clock.now())  # the reminder, by SMS
    clock.advance(1200)
    with unit_of_work(sessions) as session:
        run_escalations(session, now=clock.now())  # visit time: a call first
    with sessions() as session:
        assert len(_calls_to(session, resident)) == 1
        assert session.scalars(select(Task)).first() is None

    # No answer, busy, a machine: called again each time, ten minutes later, then the visit.
    for status, answered_by in (
        ("no-answer", None),
        ("busy", None),
        ("completed", "machine_start"),
    ):
        with sessions() as session:
            call = _calls_to(session, resident)[-1]
        assert call.due_at <= clock.now()
        sid = f"CA{call.id:032x}"
        with unit_of_work(sessions) as session:
            calls.calls_placed(session, placed=[(call.id, sid)], now=clock.now())
            if answered_by:
                calls.call_answered(
                    session,
                    outbox_id=call.id,
                    call_sid=sid,
                    answered_by=answered_by,
                    now=clock.now(),
                )
        with unit_of_work(sessions) as session:
            calls.call_ended(
                session,
                outbox_id=call.id,
                call_sid=sid,
                status=status,
                answered_by=answered_by,
                now=clock.now(),
            )
        with sessions() as session:
            later = _calls_to(session, resident)[-1]
        if status != "completed":
            assert later.due_at == clock.now() + timedelta(minutes=10)
        clock.advance(600)
    with sessions() as session:
        assert len(_calls_to(session, resident)) == 3
        outcomes = list(session.scalars(select(VoiceCall.outcome).order_by(VoiceCall.id)))
        assert outcomes == [CallOutcome.NO_ANSWER, CallOutcome.BUSY, CallOutcome.MACHINE]
        task = session.scalars(select(Task).where(Task.resident_id == resident.id)).one()
        assert task.reason == TaskReason.NO_ANSWER
        recipient = session.scalars(select(CampaignRecipient)).one()
        assert recipient.step == 2 and recipient.answer == Answer.PENDING


def test_a_landline_resident_is_called_at_the_start_and_no_key_is_not_silence(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    resident = make_person(telegram=False, sms=False, landline=True, needs=("mobility",))
    make_buddy(resident, make_person(telegram=True, name="Buddy"))
    _begin(sessions, authority, clock)
    with sessions() as session:
        (call,) = _calls_to(session, resident)
        assert call.due_at == clock.now()
        assert session.scalars(select(CampaignRecipient)).one().channel == Channel.VOICE
    _ends(sessions, clock, call, "completed")  # answered, no key pressed
    with sessions() as session:
        assert session.scalars(select(VoiceCall.outcome)).one() == CallOutcome.NO_KEY
        assert len(_calls_to(session, resident)) == 1  # not tried again: someone picked up
        assert session.scalars(select(Task).where(Task.resident_id == resident.id)).one()


def test_without_calls_a_landline_resident_goes_straight_to_the_visit(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    """The ladder as before when the authority does not call."""
    resident = make_person(telegram=False, sms=False, landline=True, needs=("mobility",))
    with unit_of_work(sessions) as session:
        start_campaign(
            session,
            authority=authority,
            kind=CampaignKind.CHECKIN,
            mode=CampaignMode.DRILL,
            audience=Audience(residents_only=True),
            started_by="test",
            now=clock.now(),
            ladder=replace(CALLING, calls=False),
        )
    with sessions() as session:
        assert _calls_to(session, resident) == []
        assert session.scalars(select(CampaignRecipient)).one().channel == Channel.NONE


def test_an_answer_by_sms_cancels_the_call_waiting_to_be_tried_again(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    from dispatch.responses import take_campaign_reply

    resident = make_person(telegram=False, sms=True, needs=("mobility",))
    campaign_id = _begin(sessions, authority, clock)
    clock.advance(1800)
    with unit_of_work(sessions) as session:
        run_escalations(session, now=clock.now())  # the reminder
        run_escalations(session, now=clock.now())  # visit time: the call
    with sessions() as session:
        (call,) = _calls_to(session, resident)
    _ends(sessions, clock, call, "no-answer")
    with unit_of_work(sessions) as session:
        person = session.get_one(Person, resident.id)
        take_campaign_reply(
            session,
            person=person,
            channel=Channel.SMS,
            callback_data=f"c:{campaign_id}:ok",
            now=clock.now(),
        )
    with sessions() as session:
        statuses = [message.status for message in _calls_to(session, resident)]
    assert statuses == [OutboxStatus.SENT, OutboxStatus.CANCELLED]


def test_a_closed_check_in_calls_nobody_after_the_close(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    """Closing cancels the calls still waiting, first calls and calls to be tried again alike."""
    from dispatch.reports import close_campaign

    waiting = make_person(telegram=False, sms=False, landline=True, needs=("mobility",))
    busy = make_person(telegram=False, sms=False, landline=True, needs=("mobility",))
    campaign_id = _begin(sessions, authority, clock)
    with sessions() as session:
        (first,) = _calls_to(session, busy)
    _ends(sessions, clock, first, "busy")  # tried again after call_retry_after
    with sessions() as session:
        assert [m.status for m in _calls_to(session, busy)] == [
            OutboxStatus.SENT,
            OutboxStatus.QUEUED,
        ]
    with unit_of_work(sessions) as session:
        close_campaign(session, campaign=session.get_one(Campaign, campaign_id), now=clock.now())
    with sessions() as session:
        assert [m.status for m in _calls_to(session, waiting)] == [OutboxStatus.CANCELLED]
        assert [m.status for m in _calls_to(session, busy)] == [
            OutboxStatus.SENT,
            OutboxStatus.CANCELLED,
        ]
