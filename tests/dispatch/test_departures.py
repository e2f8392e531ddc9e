"""Every channel is paced by when its requests leave, not by when the worker let them go.

A provider counts a message when its request arrives. Between the pacer letting a send go and
its request leaving, the event loop may run other work (other sends, webhooks, a database step,
a connection to open): a burst whose requests were let go on time but left late must still
never put more than the limit's number of departures in one second. Here the provider answers
on the manual clock, holds some requests back before they leave (the delay a busy process
adds), reports each departure as the real clients do (``request_leaving``), and counts the
limit at that moment in a strict sliding window (:mod:`fakes.faults`).
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from dispatch.clients import request_leaving
from dispatch.clock import ManualClock
from dispatch.outbox import count_unsent, enqueue
from dispatch.senders import Outgoing, RateLimited, SendResult, Sent
from dispatch.worker import SENDER_TTL, Pacer, Worker, WorkerConfig
from fakes.faults import RateLimits
from registry.models import Channel
from tests.dispatch.conftest import START

pytestmark = pytest.mark.db

# The configured rate of each channel in these tests, and how many messages a burst has.
RATES = {Channel.TELEGRAM: 30.0, Channel.SMS: 30.0, Channel.VOICE: 3.0}
BURSTS = {Channel.TELEGRAM: 240, Channel.SMS: 240, Channel.VOICE: 30}


def most_within_a_second(times: list[datetime]) -> int:
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - timedelta(seconds=1):
            first += 1
        most = max(most, last - first + 1)
    return most


class LateProvider:
    """One channel's provider on the manual clock. Every third request is held up to 0.4 s
    (a seeded draw) between the pacer letting it go and its leaving; each request then reports
    its departure, is counted by a strict one-second window at that moment, and is answered
    50 ms later."""

    def __init__(self, clock: ManualClock, channel: Channel, limit: float) -> None:
        self.channel = channel
        self.clock = clock
        self.limits = RateLimits(per_sender=limit, strict=True, clock=self.seconds)
        self.left: list[datetime] = []
        self.throttled = 0
        self.rng = random.Random(19)
        self.requests = 0

    def seconds(self) -> float:
        return self.clock.now().timestamp()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, message: Outgoing) -> SendResult:
        self.requests += 1
        if self.requests % 3 == 0:
            await self.clock.sleep(self.rng.uniform(0.0, 0.4))
        leaving = request_leaving.get()
        if leaving is not None:
            leaving()
        self.left.append(self.clock.now())
        retry_after = self.limits.admit(message.address)
        await self.clock.sleep(0.05)
        if retry_after:
            self.throttled += 1
            return RateLimited(retry_after=float(retry_after))
        return Sent(provider_id=f"P{message.id}")


def burst(sessions: sessionmaker[Session], clock: ManualClock, channel: Channel) -> None:
    with sessions() as session:
        for n in range(BURSTS[channel]):
            enqueue(
                session,
                channel=channel,
                address=str(7_000_000 + n) if channel == Channel.TELEGRAM else f"+9725{n:08d}",
                text="checkin",
                kind="call" if channel == Channel.VOICE else "checkin",
                due_at=clock.now(),
            )
        session.commit()


def unsent(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return count_unsent(session)


def rated(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "telegram_rate_per_second": RATES[Channel.TELEGRAM],
            "sms_rate_per_second": RATES[Channel.SMS],
            "voice_rate_per_second": RATES[Channel.VOICE],
            "voice_max_calls": 1000,
        }
    )


@pytest.mark.parametrize("channel", [Channel.TELEGRAM, Channel.SMS, Channel.VOICE])
def test_a_burst_delayed_on_its_way_out_never_overruns_the_window(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, channel: Channel
) -> None:
    """Each channel's burst, every third request held back before it leaves: the provider
    never counts more than the limit within any second, so never answers 429."""
    provider = LateProvider(clock, channel, RATES[channel])
    burst(sessions, clock, channel)

    async def go() -> None:
        stop = asyncio.Event()
        worker = Worker(
            sessions=sessions,
            senders={channel: provider},
            settings=rated(settings),
            clock=clock,
            config=WorkerConfig(idle_sleep=0.5),
            worker_id="only",
        )
        running = asyncio.create_task(worker.run(stop))
        try:
            for _ in range(3000):  # a bound, should the worker never finish
                if not await asyncio.to_thread(unsent, sessions):
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=60)

    asyncio.run(go())

    assert unsent(sessions) == 0
    assert len(provider.left) == BURSTS[channel]
    assert provider.throttled == 0
    assert most_within_a_second(provider.left) <= RATES[channel]


def test_sends_on_their_way_count_in_the_window() -> None:
    """Thirty sends let go at 30 a second that all leave at once, late (a stalled event loop),
    and thirty more waiting behind them: however they leave, no second holds more than thirty
    departures, and none is let go while thirty are on their way."""
    clock = ManualClock(START)
    pacer = Pacer(clock, rate=30.0)
    left: list[datetime] = []
    on_the_way: list[int] = []

    async def go() -> None:
        async def let_go(n: int) -> None:
            on_the_way.append(await pacer.wait(START + n * pacer.step))

        first = [asyncio.create_task(let_go(n)) for n in range(30)]
        await asyncio.gather(*first)
        later = [asyncio.create_task(let_go(n)) for n in range(30, 60)]
        await clock.sleep(2.0)  # the thirty let go have not left yet
        assert not any(task.done() for task in later)
        for send in on_the_way[:30]:
            pacer.leaving(send)
            left.append(clock.now())
        while not all(task.done() for task in later):
            await clock.sleep(0.01)
            for send in on_the_way[len(left) :]:
                pacer.leaving(send)
                left.append(clock.now())
        for send in on_the_way[len(left) :]:
            pacer.leaving(send)
            left.append(clock.now())

    asyncio.run(go())
    assert len(left) == 60
    assert most_within_a_second(left) <= 30
    assert left[30] - left[29] >= pacer.WINDOW  # the second thirty waited out the window


@pytest.mark.parametrize("channel", [Channel.TELEGRAM, Channel.SMS])
def test_one_worker_at_a_time_sends_on_a_channel(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, channel: Channel
) -> None:
    """Departures are known only to the process that sends: a second worker claims nothing on
    the channel while the first holds its sender lease, and takes over once the first has
    stopped claiming for the lease's time (as for calls)."""
    burst(sessions, clock, channel)
    provider = LateProvider(clock, channel, RATES[channel])

    def worker(name: str) -> Worker:
        return Worker(
            sessions=sessions,
            senders={channel: provider},
            settings=rated(settings),
            clock=clock,
            worker_id=name,
        )

    first, second = worker("first"), worker("second")
    if not first.on_postgresql:
        pytest.skip("SQLite has one worker (its own lease)")
    assert first._claim(channel)
    assert second._claim(channel) == []
    clock.advance(SENDER_TTL.total_seconds() + 1)
    assert second._claim(channel)
    assert first._claim(channel) == []
