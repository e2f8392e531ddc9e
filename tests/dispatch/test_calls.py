"""The voice gate: calls a second and calls in progress at once, held by the worker against a
provider that answers on the manual clock (each call lasts a while, then its status callback
ends it), and the drill report's count of calls per outcome per zone."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from dispatch import calls
from dispatch.clock import ManualClock
from dispatch.models import CallOutcome, VoiceCall
from dispatch.outbox import count_unsent, enqueue
from dispatch.senders import Outgoing, SendResult, Sent
from dispatch.worker import Worker, WorkerConfig
from fakes.faults import Traffic
from registry.db import unit_of_work
from registry.models import Authority, Channel, Zone

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
