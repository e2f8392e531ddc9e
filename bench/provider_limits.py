"""The dispatcher against a provider's rate limit: the achieved rate and the 429s it drew.

Each fake (in a child process, ``fakes.remote``) limits the whole bot or account to 30 messages
a second, counted two ways: a token bucket (which forgives a message that arrives a hair early)
and a strict sliding window (the 31st message inside any one second is refused with 429 and a
Retry-After / retry_after). One worker sends a check-in campaign on one channel (configured at
30 a second) until the outbox is empty.

Columns: ``achieved/s`` is the messages the fake accepted a second, between its first and its
last (the fake's own counters and clock); ``of limit`` is that against 30; ``wall/s`` is the
messages sent over the whole run, start-up included; ``429s`` is what the fake refused.

Run: ``python bench/provider_limits.py [-n 900] [--db sqlite,postgresql]``. The machine is
shared: a busy moment shows as a lower rate, never as a 429 (the pacing is the worker's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dispatch_e2e import database, drain, open_rows, populate, settings_for, write_campaign
from dispatch.senders import build_senders
from dispatch.worker import Worker
from fakes.remote import RemoteFakes, configure, spawn_fakes, traffic
from registry.db import make_engine, make_sessionmaker

LIMIT = 30.0
# The fake's limits per channel, as ``fakes.faults.RateLimits`` fields.
LIMITS: dict[str, dict[str, Any]] = {
    "telegram": {"per_sender": LIMIT, "per_recipient": 1.0},
    "sms": {"per_sender": LIMIT, "sender_burst": LIMIT},
}


def limited_run(
    kind: str, fakes: RemoteFakes, count: int, channel: str, *, strict: bool
) -> dict[str, Any]:
    url_of_fake = fakes.telegram_url if channel == "telegram" else fakes.twilio_url
    configure(url_of_fake, reset_traffic=True, limits={**LIMITS[channel], "strict": strict})
    try:
        with database(kind) as url:
            engine = make_engine(url)
            sessions = make_sessionmaker(engine)
            authority = populate(sessions, count, channel)
            write_campaign(sessions, authority)
            settings = settings_for(
                url, fakes, telegram_rate_per_second=LIMIT, sms_rate_per_second=LIMIT
            )
            senders = {k: v for k, v in build_senders(settings).items() if k.value == channel}
            worker = Worker(sessions=sessions, senders=senders, settings=settings)
            seconds = asyncio.run(drain(worker, sessions, time.perf_counter() + 600))
            left = open_rows(sessions)
            engine.dispose()
    finally:
        seen = traffic(url_of_fake)
        configure(url_of_fake, limits=None)
    return {
        "db": kind,
        "channel": channel,
        "mode": "strict" if strict else "bucket",
        "n": count,
        "seconds": seconds,
        "wall": (count - left) / seconds,
        "achieved": seen["rate_per_second"],
        "peak": seen["peak_per_second"],
        "throttled": seen["throttled_429"],
        "left": left,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=900)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--channels", default="telegram,sms")
    args = parser.parse_args()
    print(
        f"one worker at {LIMIT:.0f}/s against a fake limited to {LIMIT:.0f}/s; {os.cpu_count()} "
        f"CPUs, load average {os.getloadavg()[0]:.1f} at the start (shared machine: noisy)",
        flush=True,
    )
    print(
        f"{'db':<11} {'channel':<9} {'limit':<7} {'messages':>8} {'seconds':>8} "
        f"{'achieved/s':>10} {'of limit':>8} {'peak 1 s':>8} {'wall/s':>7} {'429s':>5}",
        flush=True,
    )
    with spawn_fakes("--no-history") as fakes:
        for channel in args.channels.split(","):
            for kind in args.db.split(","):
                for strict in (False, True):
                    run = limited_run(kind, fakes, args.n, channel, strict=strict)
                    print(
                        f"{run['db']:<11} {run['channel']:<9} {run['mode']:<7} {run['n']:>8} "
                        f"{run['seconds']:>8.1f} {run['achieved']:>10.1f} "
                        f"{run['achieved'] / LIMIT:>8.0%} {run['peak']:>8} {run['wall']:>7.1f} "
                        f"{run['throttled']:>5}"
                        + (f"  ({run['left']} left)" if run["left"] else ""),
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
