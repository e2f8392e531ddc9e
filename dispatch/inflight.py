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
        initial: int = 2,
        minimum: int = 1,
        maximum: int = 64,
        alpha: float = 1.0,
        beta: float = 2.0,  # both times log10(limit), from a limit of 10 on
        probe_every: int = 200,
        probe_answers: int = 8,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        self.limit = initial
        self.minimum = minimum
        self.maximum = maximum
        self.alpha = alpha
        self.beta = beta
        # Under steady load every request waits behind the others, so the round trip without a
        # queue is never seen; every ``probe_every`` decisions the limit drops to ``minimum``
        # for ``probe_answers`` answers to measure it afresh (routes and load change too).
        # The baseline is an average, not the quickest answer: a network's jitter alone would
        # otherwise look like a queue and hold the limit down.
        self.probe_every = probe_every
        self.probe_answers = probe_answers
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._base_rtt = math.inf
        self._round_sum = 0.0
        self._round_count = 0
        self._probe_sum = 0.0
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
        self._round_sum += rtt
        self._round_count += 1
        if self._resume_at is not None:
            # A probe: the answers still in flight from before come first, then
            # ``probe_answers`` at low load, whose average is the new baseline.
            if self._round_count > self._resume_at:
                self._probe_sum += rtt
            if self._round_count < self._resume_at + self.probe_answers:
                return
            self._base_rtt = self._probe_sum / self.probe_answers
            self.limit, self._resume_at = self._resume_at, None
            self._next_round()
            return
        if self._round_count < self.limit:
            return  # one decision per round of ``limit`` answers, on their average
        average = self._round_sum / self._round_count
        # A round quicker on average than the baseline: less load than when it was measured.
        self._base_rtt = min(self._base_rtt, average)
        queue = self.limit * (1.0 - self._base_rtt / average)
        # The thresholds grow with the limit (as in Netflix's concurrency-limits Vegas): a
        # network's jitter makes a queue estimate in proportion to the limit, which fixed
        # thresholds would read as queueing and stop the climb at a dozen or so.
        scale = math.log10(max(self.limit, 10))
        if queue < self.alpha * scale:
            self.limit = min(self.maximum, self.limit + 1)
        elif queue > self.beta * scale:
            self.limit = max(self.minimum, self.limit - 1)
        self._decisions += 1
        if self._decisions % self.probe_every == 0 and self.limit > self.minimum:
            self._resume_at, self.limit = self.limit, self.minimum
            self._probe_sum = 0.0
        self._next_round()

    def _next_round(self) -> None:
        self._round_sum = 0.0
        self._round_count = 0
