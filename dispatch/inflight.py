"""How many sends of one channel may be in flight at once, adapted to the provider's latency.

Too few concurrent requests and a distant provider's round trip caps the rate (at 150 ms, four
requests in flight make at most 27 messages a second). Too many and the time goes into queues:
the HTTP client's connection pool walks every connection on every request, and a provider that
is already busy only answers each request later. The right number depends on the network and
the provider, so it is measured, the way TCP Vegas sizes its window: ``queue = limit × (1 −
min_rtt / rtt)`` estimates how many requests are waiting rather than being served. Fewer than
``alpha`` waiting: there is room, allow one more; more than ``beta``: back off by one.

Against Telegram itself (round trips of about 100 ms that do not grow with load) the limit climbs
to its maximum and the shared rate gate sets the pace; against a loopback fake that competes for
the same two cores it settles at the few requests that keep the client busiest.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque


class InFlightLimit:
    """An asyncio semaphore whose size follows the measured round-trip times."""

    def __init__(
        self,
        *,
        initial: int = 4,
        minimum: int = 2,
        maximum: int = 64,
        alpha: float = 2.0,
        beta: float = 4.0,
        probe_every: int = 200,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        self.limit = initial
        self.minimum = minimum
        self.maximum = maximum
        self.alpha = alpha
        self.beta = beta
        # Under steady load every request waits behind the others, so the round trip without a
        # queue is never seen; every ``probe_every`` decisions one round runs at ``minimum`` to
        # measure it afresh (routes and load change too).
        self.probe_every = probe_every
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._min_rtt = math.inf
        self._round_min = math.inf
        self._round_sum = 0.0
        self._round_count = 0
        self._decisions = 0
        self._resume_at: int | None = None  # while probing: the limit to return to

    async def acquire(self) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # the slot was handed over just as we were cancelled
                self._wake()
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.in_flight += 1
            waiter.set_result(None)

    def observe(self, rtt: float) -> None:
        """A provider answered after ``rtt`` seconds; the limit is reconsidered every round."""
        rtt = max(rtt, 1e-6)
        self._round_min = min(self._round_min, rtt)
        self._round_sum += rtt
        self._round_count += 1
        if self._resume_at is not None:
            # A probe round: the answers still in flight from before come first, then
            # ``minimum`` answers at low load; the lowest of them is the new baseline.
            if self._round_count < self._resume_at + self.minimum:
                return
            self._min_rtt = self._round_min
            self.limit, self._resume_at = self._resume_at, None
            self._next_round()
            return
        self._min_rtt = min(self._min_rtt, rtt)
        if self._round_count < self.limit:
            return  # one decision per round of ``limit`` answers, on their average
        average = self._round_sum / self._round_count
        queue = self.limit * (1.0 - self._min_rtt / average)
        if queue < self.alpha:
            self.limit = min(self.maximum, self.limit + 1)
        elif queue > self.beta:
            self.limit = max(self.minimum, self.limit - 1)
        self._decisions += 1
        if self._decisions % self.probe_every == 0 and self.limit > self.minimum:
            self._resume_at, self.limit = self.limit, self.minimum
        self._next_round()

    def _next_round(self) -> None:
        self._round_min = math.inf
        self._round_sum = 0.0
        self._round_count = 0
