"""A process's own spacing of sends on one channel (``dispatch.worker.Pacer``), on a manual clock."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from dispatch.clock import ManualClock
from dispatch.worker import Pacer
from tests.dispatch.conftest import START

STEP = timedelta(seconds=1 / 30)


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
        await pacer.wait(slot)
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
            await pacer.wait(START + n * STEP)
            went.append(clock.now())

    asyncio.run(courier())
    assert went[-1] - (START + 29 * STEP) <= LATENESS
