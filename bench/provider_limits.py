"""The dispatcher against a provider's rate limit and through a provider's outage.

Each fake (in a child process, ``fakes.remote``) limits the whole bot or account to 30 messages
a second, counted two ways: a token bucket (which forgives a message that arrives a hair early)
and a strict sliding window (the 31st message inside any one second is refused with 429 and a
Retry-After / retry_after). One worker sends a check-in campaign on one channel (configured at
30 a second) until the outbox is empty.

Columns: ``achieved/s`` is the messages the fake accepted a second, between its first and its
last (the fake's own counters and clock); ``of limit`` is that against 30; ``wall/s`` is the
messages sent over the whole run, start-up included; ``429s`` is what the fake refused;
``sent over`` the requests that left the worker while 30 others had left within the second
before (each request's departure as the channel's HTTP client reports it, on the worker's
monotonic clock): the pacer's own guarantee. A 429 with ``sent over`` at 0 was counted late on
the fake's side (its process waiting for a core before it counted the arrival); ``sent over``
above 0 means the worker let too many go. ``to leave ms`` is how long a send took from the
sender's call to its request leaving (median, 90th percentile): a send on its way counts in the
pacer's window, so on a starved process this time costs throughput (about rate × its length).

Outage (``--outage 75``): Twilio answers 500 to every SMS for that many seconds, then recovers;
one worker sends an SMS check-in campaign (30 a second) and an officer on Telegram is told.
The table gives how many residents were reached, how long after the recovery the last one
was, the 5xx answers, and the notices the officer got (down, back).

Run: ``python bench/provider_limits.py [-n 1000] [--db sqlite,postgresql] [--outage 75]``. The
machine is shared: a busy moment shows as a lower rate, and against the strict window as a
429 now and then (a send delayed between the worker's pacing and the fake's count).
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

from sqlalchemy import func, select

from bench.dispatch_e2e import (
    anything_open,
    database,
    drain,
    open_rows,
    populate,
    settings_for,
    write_campaign,
)
from bench.voice_gate import over_limit
from dispatch.channels.base import Outgoing, Sender, SendResult
from dispatch.clients import request_leaving
from dispatch.models import OutboxMessage, OutboxStatus
from dispatch.senders import build_senders
from dispatch.worker import Worker
from fakes.remote import RemoteFakes, configure, spawn_fakes, traffic
from registry.db import make_engine, make_sessionmaker
from registry.staff import StaffMember, StaffRole

LIMIT = 30.0
# The fake's limits per channel, as ``fakes.faults.RateLimits`` fields.
LIMITS: dict[str, dict[str, Any]] = {
    "telegram": {"per_sender": LIMIT, "per_recipient": 1.0},
    "sms": {"per_sender": LIMIT, "sender_burst": LIMIT},
}


class Watched:
    """A channel's real sender, noting when each request left (``time.monotonic``, from the
    channel's HTTP client, as the worker's pacer is told)."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.channel = sender.channel
        self.left: list[float] = []
        self.on_the_way: list[float] = []  # seconds from the send's start to its departure

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        await self.sender.close()

    async def send(self, message: Outgoing) -> SendResult:
        pacer = request_leaving.get()
        started = time.monotonic()

        def leaving() -> None:
            self.left.append(time.monotonic())
            self.on_the_way.append(self.left[-1] - started)
            if pacer is not None:
                pacer()

        request_leaving.set(leaving)
        try:
            return await self.sender.send(message)
        finally:
            request_leaving.set(pacer)


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
            watched = {
                k: Watched(v) for k, v in build_senders(settings).items() if k.value == channel
            }
            worker = Worker(sessions=sessions, senders=dict(watched), settings=settings)
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
        "departures": sum(len(w.left) for w in watched.values()),
        "sent_over": sum(over_limit(sorted(w.left), LIMIT) for w in watched.values()),
        "on_the_way": sorted(s for w in watched.values() for s in w.on_the_way),
    }


def outage_run(kind: str, fakes: RemoteFakes, count: int, outage: float) -> dict[str, Any]:
    configure(fakes.twilio_url, reset_traffic=True, faults={"server_error_rate": 1.0})
    configure(fakes.telegram_url, reset_traffic=True)
    officer_chat = 4242
    try:
        with database(kind) as url:
            engine = make_engine(url)
            sessions = make_sessionmaker(engine)
            authority = populate(sessions, count, "sms")
            with sessions() as session:
                session.add(
                    StaffMember(
                        name="Officer",
                        phone="+972541230000",
                        telegram_chat_id=officer_chat,
                        authority_id=authority.id,
                        role=StaffRole.OFFICER,
                    )
                )
                session.commit()
            write_campaign(sessions, authority)
            settings = settings_for(url, fakes, sms_rate_per_second=LIMIT)
            worker = Worker(sessions=sessions, senders=build_senders(settings), settings=settings)

            async def go() -> float:
                stop = asyncio.Event()
                runner = asyncio.create_task(worker.run(stop))
                await asyncio.sleep(outage)
                configure(fakes.twilio_url, faults=None)
                recovered = time.perf_counter()
                deadline = recovered + 600
                while time.perf_counter() < deadline:
                    await asyncio.sleep(0.25)
                    if not await asyncio.to_thread(anything_open, sessions):
                        break
                after = time.perf_counter() - recovered
                stop.set()
                await runner
                return after

            after = asyncio.run(go())
            with sessions() as session:
                reached = session.scalar(
                    select(func.count(func.distinct(OutboxMessage.person_id))).where(
                        OutboxMessage.kind == "checkin",
                        OutboxMessage.status == OutboxStatus.SENT,
                    )
                )
            engine.dispose()
    finally:
        sms = traffic(fakes.twilio_url)
        telegram = traffic(fakes.telegram_url)
        configure(fakes.twilio_url, faults=None)
    return {
        "db": kind,
        "n": count,
        "outage": outage,
        "reached": reached,
        "after": after,
        "server_errors": sms["server_errors_5xx"],
        "notices": telegram["accepted"],
    }


def _ms(ordered: list[float], share: float) -> float:
    return 1000 * ordered[int(share * (len(ordered) - 1))] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--channels", default="telegram,sms")
    parser.add_argument("--outage", type=float, default=0.0, help="seconds of Twilio 500s")
    args = parser.parse_args()
    print(
        f"one worker at {LIMIT:.0f}/s against a fake limited to {LIMIT:.0f}/s; {os.cpu_count()} "
        f"CPUs, load average {os.getloadavg()[0]:.1f} at the start (shared machine: noisy)",
        flush=True,
    )
    print(
        f"{'db':<11} {'channel':<9} {'limit':<7} {'messages':>8} {'seconds':>8} "
        f"{'achieved/s':>10} {'of limit':>8} {'peak 1 s':>8} {'wall/s':>7} {'429s':>5} "
        f"{'sent over':>9} {'to leave ms p50/p90':>19}",
        flush=True,
    )
    with spawn_fakes("--no-history") as fakes:
        for channel in [c for c in args.channels.split(",") if c]:
            for kind in args.db.split(","):
                for strict in (False, True):
                    run = limited_run(kind, fakes, args.n, channel, strict=strict)
                    print(
                        f"{run['db']:<11} {run['channel']:<9} {run['mode']:<7} {run['n']:>8} "
                        f"{run['seconds']:>8.1f} {run['achieved']:>10.1f} "
                        f"{run['achieved'] / LIMIT:>8.0%} {run['peak']:>8} {run['wall']:>7.1f} "
                        f"{run['throttled']:>5} {run['sent_over']:>9} "
                        f"{_ms(run['on_the_way'], 0.5):>9.1f}/{_ms(run['on_the_way'], 0.9):<9.1f}"
                        + (f"  ({run['left']} left)" if run["left"] else "")
                        + (
                            f"  ({run['departures']} departures reported)"
                            if run["departures"] < run["n"]
                            else ""
                        ),
                        flush=True,
                    )
        if args.outage:
            print()
            print(
                f"{'db':<11} {'residents':>9} {'outage s':>8} {'reached':>7} "
                f"{'last after recovery s':>21} {'5xx':>5} {'notices':>7}",
                flush=True,
            )
            for kind in args.db.split(","):
                run = outage_run(kind, fakes, args.n, args.outage)
                print(
                    f"{run['db']:<11} {run['n']:>9} {run['outage']:>8.0f} {run['reached']:>7} "
                    f"{run['after']:>21.1f} {run['server_errors']:>5} {run['notices']:>7}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
