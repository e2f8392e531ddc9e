"""An idle outbox worker: its lanes back off instead of claiming every poll interval, and
still send a new campaign's first message within one poll interval (the due watch), or at once
when the campaign was queued in the worker's own process (``wake_on_enqueue``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.clock import ManualClock, SystemClock
from dispatch.worker import Worker, WorkerConfig
from registry.models import Authority, Channel
from tests.dispatch.conftest import MakePerson, ScriptedSender

pytestmark = pytest.mark.db

POLL = 0.25
IDLE_MAX = 4.0


async def sent_then_stop(
    sent: Sequence[object],
    count: int,
    stop: asyncio.Event,
    running: asyncio.Task[None],
    pause: Callable[[float], Awaitable[None]],
    tries: int,
) -> None:
    """Wait (``tries`` pauses of 10 ms on ``pause``'s clock) until ``count`` messages are sent,
    then stop the worker and wait for it to end."""
    for _ in range(tries):
        if len(sent) >= count:
            break
        await pause(0.01)
    stop.set()
    await asyncio.wait_for(running, timeout=20)


def make_worker(
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: ManualClock | SystemClock,
    *senders: ScriptedSender,
    **config: object,
) -> Worker:
    return Worker(
        sessions=sessions,
        senders={sender.channel: sender for sender in senders},
        settings=settings,
        clock=clock,
        config=WorkerConfig(**config),  # type: ignore[arg-type]
    )


def start_campaign(sessions: sessionmaker[Session], authority: Authority, clock: object) -> None:
    """A drill check-in, committed by a session of its own (as another process would)."""
    with sessions() as session:
        start_drill_checkin(
            session,
            authority=authority,
            audience=Audience(),
            started_by="t",
            now=clock.now(),  # type: ignore[attr-defined]
        )
        session.commit()


def test_idle_lanes_back_off_and_a_new_campaign_still_goes_within_a_poll_interval(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    authority: Authority,
    make_person: MakePerson,
    telegram: ScriptedSender,
    sms: ScriptedSender,
) -> None:
    """Two channels, two lanes each, nothing to send for 60 s of the test's clock: claiming
    every poll interval would be 4 × 240 claims; backing off to 4 s, it is a few dozen, and one
    read-only look a poll interval. Then a campaign started by another session (no wake in
    this process) is sent no later than one poll interval after it was committed."""
    make_person(needs=("lives_alone",))
    lanes = 2 * 2
    worker = make_worker(
        sessions, fast_settings, clock, telegram, sms, idle_sleep=POLL, idle_max=IDLE_MAX
    )

    async def go() -> float:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await clock.sleep(60.0)
        idle_claims = worker.claims_made
        looks = worker.looks_made
        # Claiming every poll interval: lanes × 240. Backing off: the first 3.75 s take four
        # claims a lane, then one every 4 s.
        assert idle_claims <= lanes * (4 + 60 / IDLE_MAX + 1), idle_claims
        assert idle_claims * 10 < lanes * 60 / POLL
        assert looks >= 60 / POLL * 0.9  # the watch looked every poll interval meanwhile
        assert telegram.sent == [] and sms.sent == []
        await clock.sleep(1.3)  # somewhere inside the lanes' 4-second rest
        started = clock.now()
        await asyncio.to_thread(start_campaign, sessions, authority, clock)
        await sent_then_stop(telegram.sent, 1, stop, running, clock.sleep, tries=400)
        assert telegram.sent, "the campaign was never sent"
        return (telegram.sent[0][0] - started).total_seconds()

    delay = asyncio.run(go())
    assert delay <= POLL + 0.02, delay


def test_a_lane_that_found_work_claims_again_at_once(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    authority: Authority,
    make_person: MakePerson,
    telegram: ScriptedSender,
) -> None:
    """The back-off is for idle lanes only: after a long rest, a campaign of several people is
    sent at the channel's rate, not one claim per rest."""
    for _ in range(5):
        make_person(needs=("lives_alone",))
    worker = make_worker(
        sessions, fast_settings, clock, telegram, idle_sleep=POLL, idle_max=IDLE_MAX
    )

    async def go() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await clock.sleep(20.0)
        await asyncio.to_thread(start_campaign, sessions, authority, clock)
        started = clock.now()
        await sent_then_stop(telegram.sent, 5, stop, running, clock.sleep, tries=300)
        assert len(telegram.sent) == 5
        last = max(at for at, _ in telegram.sent)
        rate = fast_settings.telegram_rate_per_second
        assert last - started <= timedelta(seconds=POLL + 5 / rate + 0.05)

    asyncio.run(go())


def test_a_campaign_queued_in_this_process_wakes_a_resting_lane_at_once(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    authority: Authority,
    make_person: MakePerson,
) -> None:
    """With a poll interval and a rest of an hour, only the wake of a commit that queued
    outbox rows can send the campaign: the wait below is a guard, not a measure."""
    make_person(needs=("lives_alone",))
    clock = SystemClock()
    telegram = ScriptedSender(Channel.TELEGRAM, clock)  # type: ignore[arg-type]
    worker = make_worker(
        sessions, fast_settings, clock, telegram, idle_sleep=3600.0, idle_max=3600.0
    )

    async def go() -> None:
        stop = asyncio.Event()
        with worker.wake_on_enqueue():
            running = asyncio.create_task(worker.run(stop))
            while worker.claims_made < 2:  # both lanes have claimed once and rest
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            claims = worker.claims_made
            await asyncio.to_thread(start_campaign, sessions, authority, clock)
            await sent_then_stop(telegram.sent, 1, stop, running, asyncio.sleep, tries=2000)
        assert telegram.sent, "the resting lanes were not woken"
        assert worker.claims_made > claims
        assert worker.looks_made == 0  # no poll interval went by: the wake did it

    asyncio.run(go())


def test_the_workers_writes_wait_for_the_write_turn_it_is_given(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    authority: Authority,
    make_person: MakePerson,
    telegram: ScriptedSender,
) -> None:
    """On SQLite ``hosen serve`` hands the worker the webhooks' write turns: while another
    writer holds the turn, the worker claims nothing (so sends nothing), and it goes on once the
    turn is free."""
    make_person(needs=("lives_alone",))
    start_campaign(sessions, authority, clock)
    turn = threading.Lock()  # stands in for bots.intake.WriteTurns.background
    worker = Worker(
        sessions=sessions,
        senders={Channel.TELEGRAM: telegram},
        settings=fast_settings,
        clock=clock,
        write_turn=lambda: turn,
    )

    async def go() -> tuple[int, int]:
        async with worker:
            turn.acquire()  # a webhook's insert under way
            try:
                round_ = asyncio.create_task(worker.run_once())
                for _ in range(30):
                    await asyncio.sleep(0.01)  # the loop's turn: not the test's clock
                claimed_meanwhile = worker.claims_made
                sent_meanwhile = len(telegram.sent)
            finally:
                turn.release()
            await asyncio.wait_for(round_, timeout=20)
        return claimed_meanwhile + sent_meanwhile, len(telegram.sent)

    while_held, after = asyncio.run(go())
    assert while_held == 0
    assert after == 1
