"""A process's own spacing of sends on one channel (``dispatch.worker.Pacer``), on a manual clock."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from dispatch.clock import ManualClock
from dispatch.worker import Pacer
from tests.dispatch.conftest import START

# 30 a second configured, paced a small margin under it.
STEP = timedelta(seconds=1 / (30 * (1 - Pacer.MARGIN)))


class _LateTimers(ManualClock):
    """A clock whose timers fire two milliseconds late, as a busy event loop's do."""

    async def sleep_until(self, when: datetime) -> None:
        await super().sleep_until(when + LATENESS)


LATENESS = timedelta(milliseconds=2)


def _times(
    slots: list[tuple[str, datetime]], *, clock: ManualClock | None = None
) -> dict[str, datetime]:
    """When each named send was let go, all of them arriving at one pacer at 30 a second, in
    the order given (the manual clock moves once all of them are waiting)."""
    clock = clock or ManualClock(START)
    pacer = Pacer(clock, rate=30.0)
    went: dict[str, datetime] = {}

    async def send(name: str, slot: datetime) -> None:
        pacer.leaving(await pacer.wait(slot))  # its request leaves at once
        went[name] = clock.now()

    async def go() -> None:
        await asyncio.gather(*(send(name, slot) for name, slot in slots))

    asyncio.run(go())
    return went


def test_a_send_waiting_for_a_later_slot_holds_up_no_earlier_one() -> None:
    """Two lanes share the pacer: the next batch's first send, two seconds ahead, waits first;
    this batch's sends still go at their own slots."""
    went = _times([("next batch", START + timedelta(seconds=2)), ("a", START), ("b", START + STEP)])
    assert went == {"a": START, "b": START + STEP, "next batch": START + timedelta(seconds=2)}


def test_sends_behind_their_slots_catch_up_one_step_apart() -> None:
    """A lane that fell behind does not burst: its overdue sends go one step apart."""
    late = START - timedelta(seconds=1)
    went = _times([("a", late), ("b", late), ("c", late)])
    assert sorted(went.values()) == [START, START + STEP, START + 2 * STEP]


def test_late_timers_do_not_add_up_from_send_to_send() -> None:
    """One courier sends thirty messages one after another, each at its slot: a timer's
    lateness delays that send, not every send after it."""
    clock = _LateTimers(START)
    pacer = Pacer(clock, rate=30.0)
    went: list[datetime] = []

    async def courier() -> None:
        for n in range(30):
            pacer.leaving(await pacer.wait(START + n * STEP))
            went.append(clock.now())

    asyncio.run(courier())
    assert went[-1] - (START + 29 * STEP) <= LATENESS


def test_the_pace_keeps_a_margin_under_the_configured_rate() -> None:
    """Thirty-one sends at "30 a second" span more than a second: a provider counting a strict
    one-second window never sees the 31st inside it."""
    went = _times([(str(n), START) for n in range(31)])
    times = sorted(went.values())
    assert times[30] - times[0] > timedelta(seconds=1)
    assert times[30] - times[0] < timedelta(seconds=1.05)  # a margin, not a slowdown


def test_a_429_lowers_the_rate_a_little_and_accepted_sends_bring_it_back_slowly() -> None:
    pacer = Pacer(ManualClock(START), rate=30.0)
    ceiling = pacer.rate
    pacer.slow_down()
    assert pacer.rate == ceiling * Pacer.DECREASE  # a tenth off, not half
    assert pacer.step == timedelta(seconds=1 / pacer.rate)
    climbed = 0
    while pacer.rate < ceiling:
        pacer.accepted()
        climbed += 1
    assert pacer.rate == ceiling  # never above the ceiling
    assert 50 <= climbed <= 120  # two to four seconds of sends at 30 a second
    for _ in range(100):
        pacer.slow_down()
    assert pacer.rate == ceiling * Pacer.FLOOR


class _LateOnce(ManualClock):
    """A clock whose first timer fires 30 ms late, as a busy machine's may, and then on time."""

    late = True

    async def sleep_until(self, when: datetime) -> None:
        lateness = timedelta(milliseconds=30) if self.late else timedelta(0)
        self.late = False
        await super().sleep_until(when + lateness)


def test_a_send_let_go_late_does_not_let_the_31st_into_its_second() -> None:
    """The first send goes 30 ms late; the next thirty keep their slots, yet the 31st waits
    until a second (and the margin) after the first actually went."""
    clock = _LateOnce(START)
    pacer = Pacer(clock, rate=30.0)
    went: list[datetime] = []

    async def courier() -> None:
        for n in range(31):
            pacer.leaving(await pacer.wait(START + timedelta(milliseconds=10) + n * STEP))
            went.append(clock.now())

    asyncio.run(courier())
    assert went[1] - went[0] < STEP  # the slots were kept after the late one ...
    assert went[30] - went[0] >= Pacer.WINDOW  # ... but not at the cost of the window


def test_with_departures_the_next_send_counts_from_when_the_last_one_left() -> None:
    """One call a second: the first call is let go at its slot but waits half a second (the
    event loop busy, a connection to open) before its request leaves. The second call's slot
    comes a second after the first's, yet it is let go only a window after the first actually
    left; and not at all while the first has not left."""
    clock = ManualClock(START)
    pacer = Pacer(clock, rate=1.0, margin=0.04)
    left: list[datetime] = []

    async def call(slot: datetime, delay: float) -> None:
        send = await pacer.wait(slot)
        await clock.sleep(delay)  # a slow await before the request is written
        pacer.leaving(send)
        left.append(clock.now())
        await clock.sleep(0.05)  # the provider's answer
        pacer.done(send)

    async def go() -> None:
        first = asyncio.create_task(call(START, 0.5))
        await asyncio.sleep(0)
        await call(START + pacer.step, 0.0)
        await first

    asyncio.run(go())
    assert left[0] == START + timedelta(seconds=0.5)
    assert left[1] - left[0] == pacer.WINDOW  # not the 0.54 s its slot alone would leave


def test_with_departures_a_send_that_never_reports_counts_from_its_return() -> None:
    """A request that failed before it left (or a client that cannot tell) counts from when
    the send came back; a report about an older send does not let the next one go early."""
    clock = ManualClock(START)
    pacer = Pacer(clock, rate=1.0, margin=0.04)
    went: list[datetime] = []

    async def go() -> None:
        first = await pacer.wait(START)
        went.append(clock.now())
        second_waiting = asyncio.create_task(pacer.wait(START))
        await clock.sleep(2.0)  # the first send takes two seconds and never reports leaving
        assert not second_waiting.done()  # not let go while the first is unaccounted for
        pacer.done(first)
        second = await second_waiting
        went.append(clock.now())
        pacer.done(first)  # late news of the first: nothing to do with the second
        third = asyncio.create_task(pacer.wait(START))
        await clock.sleep(5.0)
        assert not third.done()
        pacer.done(second)
        await third

    asyncio.run(go())
    assert went[1] - went[0] == timedelta(seconds=2) + pacer.WINDOW
