"""What the provider says about its rate, honoured: a Retry-After pauses every worker for exactly
that long, and a strict one-second window is never overrun.

The provider here is in-process and answers on the manual clock (the fakes' own rate limiter
and counters, :mod:`fakes.faults`), so rates are measured on that clock, never on the machine's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from dispatch.clock import ManualClock
from dispatch.models import ChannelGate, OutboxMessage, OutboxStatus
from dispatch.outbox import count_unsent, enqueue
from dispatch.senders import Outgoing, RateLimited, SendResult, Sent
from dispatch.worker import Worker, WorkerConfig
from fakes.faults import RateLimits, Traffic
from registry.models import Channel

pytestmark = pytest.mark.db


class Provider:
    """One SMS account shared by every worker: its limits, its counters, the sends it saw."""

    def __init__(self, clock: ManualClock, limits: RateLimits | None = None) -> None:
        self.clock = clock
        self.limits = limits
        self.traffic = Traffic(clock=self.seconds)
        self.seen: list[tuple[datetime, str, str]] = []  # when, which worker, to whom
        self.refuse_at: dict[int, int] = {}  # the nth request -> Retry-After seconds

    def seconds(self) -> float:
        return self.clock.now().timestamp()

    def answer(self, worker: str, message: Outgoing) -> SendResult:
        self.traffic.count("request")
        self.seen.append((self.clock.now(), worker, message.address))
        retry_after = self.refuse_at.pop(len(self.seen), 0)
        if not retry_after and self.limits is not None:
            retry_after = self.limits.admit(message.address)
        if retry_after:
            self.traffic.count("throttled")
            return RateLimited(retry_after=float(retry_after))
        self.traffic.count("accepted")
        return Sent(provider_id=f"SM{message.id}-{len(self.seen)}")


class Account:
    """One worker's SMS channel into the shared :class:`Provider`."""

    channel = Channel.SMS

    def __init__(self, provider: Provider, name: str) -> None:
        self.provider = provider
        self.name = name

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, message: Outgoing) -> SendResult:
        return self.provider.answer(self.name, message)


def queue(sessions: sessionmaker[Session], clock: ManualClock, count: int) -> None:
    with sessions() as session:
        for n in range(count):
            enqueue(
                session,
                channel=Channel.SMS,
                address=f"+9725{n:08d}",
                text="hello",
                due_at=clock.now(),
            )
        session.commit()


def send_everything(
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: ManualClock,
    provider: Provider,
    names: Sequence[str],
    **config: int,
) -> None:
    """Run a worker per name until the outbox is empty."""

    async def go() -> None:
        stop = asyncio.Event()
        workers = [
            Worker(
                sessions=sessions,
                senders={Channel.SMS: Account(provider, name)},
                settings=settings,
                clock=clock,
                config=WorkerConfig(idle_sleep=0.5, **config),  # type: ignore[arg-type]
                worker_id=name,
            )
            for name in names
        ]
        running = [asyncio.create_task(worker.run(stop)) for worker in workers]
        try:
            for _ in range(3000):  # a bound, should the workers never finish
                if not await asyncio.to_thread(unsent, sessions):
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*running), timeout=60)
        assert await asyncio.to_thread(unsent, sessions) == 0, "the workers did not finish"

    asyncio.run(go())


def unsent(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return count_unsent(session)


def test_a_retry_after_of_three_seconds_is_honoured_by_every_worker(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, db_kind: str
) -> None:
    """The 20th send is refused with Retry-After: 3. Nobody, in either worker, sends again
    before three seconds have passed; then all go out. SQLite allows one worker (two lanes);
    on PostgreSQL the second worker waits while the first holds the channel's sender lease."""
    names = ["first", "second"] if db_kind == "postgresql" else ["only"]
    rated = settings.model_copy(update={"sms_rate_per_second": 30.0})
    provider = Provider(clock)
    provider.refuse_at[20] = 3
    queue(sessions, clock, 120)

    # Small batches, so that both workers hold some when the pause comes.
    send_everything(sessions, rated, clock, provider, names, max_batch=6)

    refused_at, _, _ = provider.seen[19]
    after = [(at, worker) for at, worker, _ in provider.seen[20:]]
    assert after and min(at for at, _ in after) >= refused_at + timedelta(seconds=3)
    assert min(at for at, _ in after) < refused_at + timedelta(seconds=3.1)  # not longer
    # One worker sends on a channel at a time (its sender lease: only the sending process
    # knows when each request left), before the pause and after it.
    assert len({w for _, w, _ in provider.seen}) == 1
    assert provider.traffic.accepted == 120 and provider.traffic.throttled == 1
    with sessions() as session:
        gate = session.get_one(ChannelGate, Channel.SMS)
        assert gate.pauses == 1
        assert gate.paused_until == refused_at + timedelta(seconds=3)
        statuses = set(session.scalars(select(OutboxMessage.status)))
    assert statuses == {OutboxStatus.SENT}


def test_a_strict_one_second_window_is_never_overrun(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock
) -> None:
    """1,000 messages against a provider counting 30 in any one second exactly: not one 429,
    and at least 95% of the limit, on the provider's clock."""
    rated = settings.model_copy(update={"sms_rate_per_second": 30.0})
    provider = Provider(clock, RateLimits.twilio(30, clock=lambda: provider.seconds(), strict=True))
    queue(sessions, clock, 1000)

    send_everything(sessions, rated, clock, provider, ["only"])

    assert provider.traffic.throttled == 0
    assert provider.traffic.accepted == 1000
    assert provider.traffic.rate() >= 0.95 * 30, provider.traffic.summary()
    assert provider.traffic.peak_per_second() <= 30
