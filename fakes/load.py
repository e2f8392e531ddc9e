"""Open-loop load: webhook posts at a fixed rate, with each one's acknowledgement latency.

For the inbound benchmark (replies arriving as Telegram webhook updates and signed Twilio
posts): requests start on a fixed schedule whether or not earlier ones were answered, as real
traffic does, so a slow application shows up as growing latency instead of a politely lower
rate. Run it on a fake's loop (``await fake.run_async(open_loop(...))``) or, better for
measurement, in a process of its own.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyReport:
    """What an open-loop run saw."""

    sent: int
    statuses: Counter[int]
    errors: int  # requests that raised (connection refused, timeout)
    duration: float  # seconds from the first start to the last answer
    latencies_ms: tuple[float, ...]  # sorted

    def percentile(self, share: float) -> float:
        """The latency below which ``share`` (0..1) of the answered requests fell, in ms."""
        if not self.latencies_ms:
            return float("nan")
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        cuts = statistics.quantiles(self.latencies_ms, n=1000, method="inclusive")
        return cuts[min(len(cuts) - 1, max(0, round(share * 1000) - 1))]

    @property
    def rate(self) -> float:
        """Requests answered a second."""
        return len(self.latencies_ms) / self.duration if self.duration > 0 else 0.0

    def row(self) -> str:
        ok = sum(n for code, n in self.statuses.items() if 200 <= code < 300)
        return (
            f"sent {self.sent}, 2xx {ok}, other {self.sent - ok - self.errors}, errors "
            f"{self.errors}, {self.rate:.0f}/s, p50 {self.percentile(0.5):.1f} ms, "
            f"p99 {self.percentile(0.99):.1f} ms, max {max(self.latencies_ms, default=0):.1f} ms"
        )


async def open_loop(
    send: Callable[[int], Awaitable[int]],
    *,
    rate: float,
    total: int,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyReport:
    """Start ``send(i)`` for i in range(total) at ``rate`` a second; ``send`` returns a status."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    began = clock()

    async def one(i: int) -> None:
        nonlocal errors
        started = clock()
        try:
            status = await send(i)
        except (OSError, TimeoutError):
            errors += 1
            return
        latencies.append((clock() - started) * 1000)
        statuses[status] += 1

    tasks = []
    for i in range(total):
        delay = began + i / rate - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(i)))
    await asyncio.gather(*tasks)
    return LatencyReport(
        sent=total,
        statuses=statuses,
        errors=errors,
        duration=clock() - began,
        latencies_ms=tuple(sorted(latencies)),
    )
