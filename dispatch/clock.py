"""Time as an object the dispatcher is given, so tests move time instead of sleeping."""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from registry.db import utcnow


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, to measure how long something took (a
        provider's round trip); only differences between two readings mean anything."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, when: datetime) -> None: ...

    def hold(self) -> Callable[[], None]:
        """Database work under way in a thread: a manual clock does not jump ahead until the
        returned function is called. The real clock ignores it. Never hold the clock over work
        that sleeps on it."""
        ...


def _nothing() -> None:
    return None


class SystemClock:
    """The real time."""

    def hold(self) -> Callable[[], None]:
        return _nothing

    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.perf_counter()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def sleep_until(self, when: datetime) -> None:
        await self.sleep((when - utcnow()).total_seconds())


class ManualClock:
    """A clock that only moves when told to, or when every sleeper is waiting.

    Sleepers wake one at a time in the order of their wake-up times, and the clock jumps to
    each one's time as it wakes, so concurrent senders observe the same timeline as with the
    real clock, without the wait. While work is held (:meth:`hold`: a database step in a
    thread) it does not jump: that work takes no time on this clock, whatever it takes on the
    machine, so a busy machine cannot change what a test sees.
    """

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._now = start
        self.slept = 0.0
        self._waiters: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._sequence = 0
        self._releasing = False
        self._holds = 0

    def hold(self) -> Callable[[], None]:
        self._holds += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._holds -= 1
            if self._holds == 0 and self._waiters and not self._releasing:
                self._releasing = True
                asyncio.get_running_loop().call_soon(self._release_next)

        return release

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._start).total_seconds()

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + timedelta(seconds=max(seconds, 0.0)))

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._sequence += 1
        heapq.heappush(self._waiters, (when, self._sequence, future))
        if not self._releasing:
            self._releasing = True
            loop.call_soon(self._release_next)
        await future

    def _release_next(self) -> None:
        # Runs from the event loop after every task already started has had its turn.
        if not self._waiters or self._holds:
            self._releasing = False
            return
        when, _, future = heapq.heappop(self._waiters)
        if when > self._now:
            self.slept += (when - self._now).total_seconds()
            self._now = when
        if not future.done():
            future.set_result(None)
        asyncio.get_running_loop().call_soon(self._release_next)


class DrillClock(SystemClock):
    """The real time, except that it can be made to stand still: a rehearsed drill's clock that
    waits for the service (the demo pauses it while the service is behind and resumes it when
    the service has caught up, so a slow machine slows the drill down instead of letting the
    ladder climb past answers that were on their way).

    :meth:`now` never goes back: paused, it stays where it was; resumed, it goes on from there
    at the real pace (behind the real time by every pause so far, :attr:`held`). Sleeping and
    :meth:`monotonic` are the system clock's (inherited): rates and round trips are measured in real seconds. Safe to
    read from threads.
    """

    def __init__(self, real: Callable[[], datetime] = utcnow) -> None:
        self._real = real
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._paused_at: datetime | None = None

    def now(self) -> datetime:
        with self._lock:
            if self._paused_at is not None:
                return self._paused_at
            return self._real() - self._offset

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    @property
    def held(self) -> float:
        """Seconds this clock is behind the real time (every pause so far, and this one)."""
        with self._lock:
            end = self._paused_at if self._paused_at is not None else self._real() - self._offset
            return (self._real() - end).total_seconds()

    def pause(self) -> None:
        with self._lock:
            if self._paused_at is None:
                self._paused_at = self._real() - self._offset

    def resume(self) -> None:
        with self._lock:
            if self._paused_at is not None:
                self._offset = max(self._offset, self._real() - self._paused_at)
                self._paused_at = None

    async def sleep_until(self, when: datetime) -> None:
        """Sleeps in real seconds until ``when`` on this clock would be reached at the real
        pace (a pause meanwhile makes the sleeper early, never late)."""
        await self.sleep((when - self.now()).total_seconds())
