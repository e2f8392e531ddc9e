"""The adaptive in-flight limit: a semaphore that never leaks a slot, and a size that follows
the measured round trips (flat round trips: grow; round trips that grow with the load: settle)."""

from __future__ import annotations

import asyncio
import random

import pytest

from dispatch.inflight import InFlightLimit


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        InFlightLimit(initial=1, minimum=2, maximum=4)
    with pytest.raises(ValueError):
        InFlightLimit(initial=5, minimum=2, maximum=4)


def test_no_more_than_the_limit_in_flight_and_waiters_served_in_order() -> None:
    async def scenario() -> list[int]:
        limit = InFlightLimit(initial=2, minimum=1, maximum=8)
        started: list[int] = []
        gate = asyncio.Event()

        async def send(n: int) -> None:
            await limit.acquire()
            started.append(n)
            try:
                await gate.wait()
            finally:
                limit.release()

        tasks = [asyncio.create_task(send(n)) for n in range(5)]
        await asyncio.sleep(0)
        assert started == [0, 1] and limit.in_flight == 2
        gate.set()
        await asyncio.gather(*tasks)
        assert limit.in_flight == 0
        return started

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_waiter_cancelled_leaves_no_slot_behind() -> None:
    async def scenario() -> int:
        limit = InFlightLimit(initial=1, minimum=1, maximum=4)
        await limit.acquire()
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        limit.release()
        # The slot is free again: one more acquire goes through at once.
        await asyncio.wait_for(limit.acquire(), timeout=1)
        return limit.in_flight

    assert asyncio.run(scenario()) == 1


def test_a_waiter_cancelled_as_it_is_woken_hands_the_slot_on() -> None:
    async def scenario() -> tuple[int, bool]:
        limit = InFlightLimit(initial=1, minimum=1, maximum=4)
        await limit.acquire()
        first = asyncio.create_task(limit.acquire())
        second = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        limit.release()  # hands the slot to ``first``...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, timeout=1)
        return limit.in_flight, second.done()

    assert asyncio.run(scenario()) == (1, True)


def test_flat_round_trips_let_the_limit_grow_to_its_maximum() -> None:
    limit = InFlightLimit(initial=4, minimum=2, maximum=32)
    for _ in range(2000):
        limit.observe(0.120)  # a distant provider that is not busy: 120 ms whatever the load
    assert limit.limit == 32


class OneAtATime:
    """A provider that serves one request at a time, ``service`` seconds each: with ``n`` in
    flight every answer takes ``n × service`` (closed loop), so the no-queue round trip is only
    seen when the limit comes down to it."""

    def __init__(self, service: float) -> None:
        self.service = service

    def drive(self, limit: InFlightLimit, answers: int) -> list[int]:
        seen = []
        for _ in range(answers):
            limit.observe(self.service * limit.limit)
            seen.append(limit.limit)
        return seen


def test_round_trips_that_grow_with_the_load_settle_the_limit() -> None:
    limit = InFlightLimit(initial=16, minimum=2, maximum=64, probe_every=50)
    seen = OneAtATime(0.001).drive(limit, 20_000)
    # After a probe the baseline is 2 × service, so queue = limit − 2: kept between alpha (2)
    # and beta (4), the limit stays at 4 to 6, apart from the short probe rounds at 2.
    settled = [n for n in seen[-5000:] if n != limit.minimum]
    assert set(settled) <= {4, 5, 6}
    assert seen[-5000:].count(limit.minimum) < 500


def test_a_provider_that_becomes_busy_makes_the_limit_come_down() -> None:
    limit = InFlightLimit(initial=4, minimum=2, maximum=64, probe_every=50)
    for _ in range(2000):
        limit.observe(0.100)  # quiet at first: nothing queues, the limit climbs
    climbed = limit.limit
    seen = OneAtATime(0.010).drive(limit, 20_000)  # then it serves one request at a time
    assert climbed >= 48
    assert max(seen[-2000:]) <= 6


def test_the_limit_never_goes_below_its_minimum() -> None:
    limit = InFlightLimit(initial=8, minimum=3, maximum=8, probe_every=10)
    seen = OneAtATime(0.050).drive(limit, 5000)
    assert min(seen) == 3


def test_jitter_alone_does_not_hold_the_limit_down() -> None:
    """A distant provider whose round trips vary by ±20% whatever the load: no queue, so the
    limit climbs (the rate gate, not the limit, then sets the pace)."""
    limit = InFlightLimit(maximum=64)
    rng = random.Random(7)
    for _ in range(20_000):
        limit.observe(0.100 * rng.uniform(0.8, 1.2))
    assert limit.limit == 64
