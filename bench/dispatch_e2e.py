"""The dispatcher end to end against the loopback fakes: campaign write time, messages a second
against the bare-client ceiling and a one-by-one loop, a limited Telegram (30/s) with the count of
429s, and a worker's peak memory with a large campaign in flight.

The fakes run in a child process (``fakes.remote.spawn_fakes``) so they do not share the
benchmark's interpreter lock; the worker runs in this process for the throughput runs and as
``python -m hosen worker`` child processes for the memory runs (Telegram; and one SMS run per
database), which also give those processes' rate (messages sent over the run, from their
start-up to the end of the campaign or the window).

This machine's speed wanders by more than the effects measured (the same bare client varies by
a quarter between runs a minute apart), so the end-to-end rate is measured in alternating
slices: the bare client sends the campaign's own message, then the worker sends from the
campaign for a few seconds, then the bare client again, and so on. Each worker slice is compared
with the mean of the two ceiling slices around it; the table gives the median ratio and the
range, and the ratio of all the worker's sends to all the ceiling's. A slice counts the worker's
steady rate, from one second after it starts: a running ``hosen worker`` pays its start-up
(connections, the first claim, the in-flight limit finding its level) once in its life, while
each slice would pay it again; the first second's rate against the ceiling is shown apart
("1st s"). Databases: a SQLite file under
``var/`` and a scratch PostgreSQL database (``HOSEN_BENCH_POSTGRES_URL``, default the local
server), dropped at the end.

Run: ``python bench/dispatch_e2e.py [-n 50000] [--db sqlite,postgresql] [--skip-memory]``.
Prints tables; the machine is shared, so numbers are noisy: compare ratios taken in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import AnyHttpUrl
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from telegram import InlineKeyboardMarkup

from bench.fakes_ceiling import telegram_concurrent, telegram_naive, twilio_concurrent
from config.settings import Settings
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.models import OutboxMessage, OutboxStatus
from dispatch.outbox import count_unsent
from dispatch.senders import build_senders, telegram_markup
from dispatch.worker import Worker
from fakes.remote import RemoteFakes, configure, spawn_fakes, traffic
from fakes.town import insert_reachable_residents
from hosen import migrations
from hosen.heap import freeze_startup_heap
from registry.db import make_engine, make_sessionmaker, utcnow
from registry.models import Authority
from registry.profile_sync import sync_sample_profile

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "HOSEN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
UNLIMITED = 1_000_000.0
MIN_SLICE = 3.0  # seconds, measured
WARMUP = 1.0  # seconds before each measured slice, reported apart


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, migrated database URL for one run."""
    if kind == "sqlite":
        path = ROOT / "var" / f"bench-{secrets.token_hex(3)}.sqlite3"
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        migrations.upgrade(engine)
        engine.dispose()
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"hosen_bench_{secrets.token_hex(3)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def populate(sessions: sessionmaker[Session], count: int, channel: str) -> Authority:
    """``count`` residents reachable on ``channel`` only, inserted in bulk."""
    with sessions() as session:
        authority = sync_sample_profile(session)
        session.commit()
        insert_reachable_residents(
            session,
            authority_id=authority.id,
            count=count,
            on_telegram=lambda n: channel == "telegram",
            chat_base=1_000_000,
            languages=("he", "ar", "ru", "en", "am"),
        )
        session.commit()
        return authority


def write_campaign(sessions: sessionmaker[Session], authority: Authority) -> tuple[int, float]:
    started = time.perf_counter()
    with sessions() as session:
        campaign = start_drill_checkin(
            session,
            authority=authority,
            audience=Audience(),
            started_by="bench",
            now=utcnow(),
        )
        session.commit()
        return campaign.id, time.perf_counter() - started


def anything_open(sessions: sessionmaker[Session]) -> bool:
    """Whether a row is still queued or being sent (an index probe, not a count)."""
    with sessions() as session:
        return (
            session.scalar(
                select(OutboxMessage.id)
                .where(OutboxMessage.status.in_((OutboxStatus.QUEUED, OutboxStatus.SENDING)))
                .limit(1)
            )
            is not None
        )


def sample_message(sessions: sessionmaker[Session]) -> tuple[str, Any]:
    """The text and buttons of one queued campaign message: the ceiling sends the same."""
    with sessions() as session:
        row = session.execute(
            select(OutboxMessage.text, OutboxMessage.buttons)
            .where(OutboxMessage.status == OutboxStatus.QUEUED)
            .limit(1)
        ).one()
        return row.text, row.buttons


def open_rows(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return count_unsent(session)


def settings_for(url: str, fakes: RemoteFakes, **rates: float) -> Settings:
    return Settings(
        database_url=url,
        telegram_token=fakes.telegram_token,
        telegram_api_url=AnyHttpUrl(fakes.telegram_url),
        twilio_account_sid=fakes.twilio_account_sid,
        twilio_auth_token=fakes.twilio_auth_token,
        twilio_from=fakes.twilio_phone_number,
        twilio_api_url=AnyHttpUrl(fakes.twilio_url),
        _env_file=None,
    ).model_copy(update=rates)


async def drain(worker: Worker, sessions: sessionmaker[Session], deadline: float) -> float:
    """Run the worker until the outbox is empty; returns the seconds it took."""
    stop = asyncio.Event()
    started = time.perf_counter()
    runner = asyncio.create_task(worker.run(stop))
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
        if not await asyncio.to_thread(anything_open, sessions):
            break
    elapsed = time.perf_counter() - started
    stop.set()
    await runner
    return elapsed


async def worker_slice(
    worker: Worker, fake_url: str, warmup: float, seconds: float
) -> tuple[float, float]:
    """Messages a second the provider accepted from the worker: in its first ``warmup``
    seconds (start-up: connections, the first claim, the in-flight limit finding its level),
    then in the ``seconds`` after them, its steady rate. A running ``hosen worker`` pays the
    start-up once in its life, not once a campaign. What it finishes after being told to stop
    is not counted."""
    stop = asyncio.Event()
    # As ``hosen worker`` does: start, freeze what start-up built (hosen.heap), then run.
    await worker.start()
    freeze_startup_heap()
    before: int = (await asyncio.to_thread(traffic, fake_url))["accepted"]
    started = time.perf_counter()
    runner = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(warmup)
    warm: int = (await asyncio.to_thread(traffic, fake_url))["accepted"]
    warmed = time.perf_counter()
    await asyncio.sleep(seconds)
    accepted: int = (await asyncio.to_thread(traffic, fake_url))["accepted"]
    ended = time.perf_counter()
    stop.set()
    await runner
    return (warm - before) / (warmed - started), (accepted - warm) / (ended - warmed)


def ceiling_once(
    fakes: RemoteFakes, channel: str, sample: tuple[str, Any], total: int, level: int
) -> float:
    """The bare client sending the campaign's own message (its text, and its keyboard built
    once) ``total`` times, ``level`` at a time: the same work without Hosen around it."""
    text, buttons = sample
    if channel == "telegram":
        return asyncio.run(
            telegram_concurrent(fakes, total, level, text=text, reply_markup=_markup(buttons))
        )
    return asyncio.run(twilio_concurrent(fakes, total, level, body=text))


def one_by_one(fakes: RemoteFakes, channel: str, sample: tuple[str, Any], total: int) -> float:
    """The campaign's own message sent one after another by the client with its defaults, the
    way a user's script would: ``await bot.send_message(...)`` or ``await
    client.messages.create_async(...)`` in a loop."""
    text, buttons = sample
    if channel == "telegram":
        return asyncio.run(telegram_naive(fakes, total, text=text, reply_markup=_markup(buttons)))
    return asyncio.run(twilio_concurrent(fakes, total, 1, body=text))


def _markup(buttons: Any) -> InlineKeyboardMarkup | None:
    markup = telegram_markup(buttons, kind="checkin")
    assert markup is None or isinstance(markup, InlineKeyboardMarkup)
    return markup


def throughput_run(
    kind: str,
    fakes: RemoteFakes,
    count: int,
    channel: str,
    *,
    slices: int,
    slice_seconds: float,
    ceiling_n: int,
    levels: list[int],
    naive_n: int,
) -> dict[str, Any]:
    """Write a ``count``-recipient check-in, then alternate ceiling and worker slices."""
    with database(kind) as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        authority = populate(sessions, count, channel)
        _, write_seconds = write_campaign(sessions, authority)
        sample = sample_message(sessions)
        settings = settings_for(
            url, fakes, telegram_rate_per_second=UNLIMITED, sms_rate_per_second=UNLIMITED
        )
        fake_url = fakes.telegram_url if channel == "telegram" else fakes.twilio_url
        # The bare client's best concurrency for this message, then its rate around each slice.
        level = max(levels, key=lambda lv: ceiling_once(fakes, channel, sample, ceiling_n, lv))
        ceilings = [ceiling_once(fakes, channel, sample, ceiling_n, level)]
        naive = one_by_one(fakes, channel, sample, naive_n)
        # Slices short enough that the campaign lasts them all (the worker sends a little
        # faster or slower than the bare client: a fifth to spare), but no shorter than
        # MIN_SLICE after a WARMUP of their own.
        lasts = 0.8 * count / ceilings[0]  # seconds of sending the campaign holds
        slices = max(2, min(slices, int(lasts / (WARMUP + MIN_SLICE))))
        seconds = max(1.0, min(slice_seconds, lasts / slices - WARMUP))
        rates: list[float] = []
        warmups: list[float] = []
        for _ in range(slices):
            senders = {k: v for k, v in build_senders(settings).items() if k.value == channel}
            worker = Worker(sessions=sessions, senders=senders, settings=settings)
            warm, rate = asyncio.run(worker_slice(worker, fake_url, WARMUP, seconds))
            warmups.append(warm)
            rates.append(rate)
            ceilings.append(ceiling_once(fakes, channel, sample, ceiling_n, level))
        engine.dispose()
    ratios = [rate / ((ceilings[i] + ceilings[i + 1]) / 2) for i, rate in enumerate(rates)]
    return {
        "db": kind,
        "channel": channel,
        "n": count,
        "write_s": write_seconds,
        "slices": len(rates),
        "slice_s": seconds,
        "level": level,
        "rate": statistics.median(rates),
        "ceiling": statistics.median(ceilings),
        "ratio": statistics.median(ratios),
        "low": min(ratios),
        "high": max(ratios),
        "overall": statistics.mean(rates) / statistics.mean(ceilings),
        "warmup": statistics.mean(warmups) / statistics.mean(ceilings),
        "naive": naive,
    }


def limited_run(kind: str, fakes: RemoteFakes, count: int) -> dict[str, Any]:
    configure(
        fakes.telegram_url, reset_traffic=True, limits={"per_sender": 30.0, "per_recipient": 1.0}
    )
    try:
        with database(kind) as url:
            engine = make_engine(url)
            sessions = make_sessionmaker(engine)
            authority = populate(sessions, count, "telegram")
            write_campaign(sessions, authority)
            settings = settings_for(url, fakes, telegram_rate_per_second=30.0)
            senders = {k: v for k, v in build_senders(settings).items() if k.value == "telegram"}
            worker = Worker(sessions=sessions, senders=senders, settings=settings)
            seconds = asyncio.run(drain(worker, sessions, time.perf_counter() + 600))
            left = open_rows(sessions)
            engine.dispose()
    finally:
        seen = traffic(fakes.telegram_url)
        configure(fakes.telegram_url, limits=None)
    return {
        "db": kind,
        "n": count,
        "seconds": seconds,
        "rate": (count - left) / seconds,
        "throttled": seen["throttled_429"],
    }


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def memory_run(
    kind: str,
    fakes: RemoteFakes,
    count: int,
    workers: int,
    seconds: float,
    channel: str = "telegram",
) -> dict[str, Any]:
    """Peak RSS of ``workers`` worker processes while a ``count``-recipient campaign drains
    (its recipients reachable on ``channel`` only), and their rate."""
    with database(kind) as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        authority = populate(sessions, count, channel)
        write_campaign(sessions, authority)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HOSEN_")},
            "HOSEN_DATABASE_URL": url,
        }
        if channel == "telegram":
            env.update(
                HOSEN_TELEGRAM_TOKEN=fakes.telegram_token,
                HOSEN_TELEGRAM_API_URL=fakes.telegram_url,
                HOSEN_TELEGRAM_RATE_PER_SECOND=str(UNLIMITED),
            )
        else:
            env.update(
                HOSEN_TWILIO_ACCOUNT_SID=fakes.twilio_account_sid,
                HOSEN_TWILIO_AUTH_TOKEN=fakes.twilio_auth_token,
                HOSEN_TWILIO_FROM=fakes.twilio_phone_number,
                HOSEN_TWILIO_API_URL=fakes.twilio_url,
                HOSEN_SMS_RATE_PER_SECOND=str(UNLIMITED),
            )
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "hosen", "worker"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        peaks = [0.0] * workers
        started = time.perf_counter()
        deadline = started + seconds
        try:
            while time.perf_counter() < deadline:
                time.sleep(0.5)
                for i, process in enumerate(processes):
                    peaks[i] = max(peaks[i], _rss_mb(process.pid)[1])
                if open_rows(sessions) == 0:
                    break
            elapsed = time.perf_counter() - started
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
        sent = count - open_rows(sessions)
        engine.dispose()
    return {
        "db": kind,
        "channel": channel,
        "n": count,
        "workers": workers,
        "peak_mb": max(peaks),
        "sent": sent,
        "rate": sent / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--slices", type=int, default=6, help="worker slices per throughput run")
    parser.add_argument(
        "--slice-seconds",
        type=float,
        default=6.0,
        help="longest worker slice (shorter if the campaign would not last them all)",
    )
    parser.add_argument("--ceiling-n", type=int, default=5000)
    parser.add_argument("--ceiling-levels", default="2,4,16")
    parser.add_argument("--naive-n", type=int, default=1000, help="messages for the 1-by-1 loop")
    parser.add_argument("--limited-n", type=int, default=900)
    parser.add_argument("--memory-n", default="10000,100000")
    parser.add_argument("--memory-seconds", type=float, default=40.0)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-sms", action="store_true")
    args = parser.parse_args()
    kinds = args.db.split(",")

    def say(line: str = "") -> None:
        print(line, flush=True)  # row by row: a long run shows what it has so far

    levels = [int(v) for v in args.ceiling_levels.split(",")]
    with spawn_fakes("--no-history") as fakes:
        # The ceiling is the bare client at its best concurrency on this machine.
        ceiling_tg = max(
            statistics.median(
                asyncio.run(telegram_concurrent(fakes, args.ceiling_n, level)) for _ in range(3)
            )
            for level in levels
        )
        ceiling_sms = max(
            statistics.median(
                asyncio.run(twilio_concurrent(fakes, args.ceiling_n, level)) for _ in range(3)
            )
            for level in levels
        )
        say(
            f"dispatcher end to end, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} at the start (shared machine: noisy)"
        )
        say(
            f"bare-client ceiling, short plain text (best of concurrency {args.ceiling_levels}, "
            f"median of 3): telegram {ceiling_tg:.0f}/s, twilio {ceiling_sms:.0f}/s"
        )
        say(
            "the worker in alternating slices with the bare client sending the campaign's own "
            "message (text and keyboard); ratio: each slice's steady rate (after a "
            f"{WARMUP:.0f} s warm-up) against the two ceiling slices around it; 1st s: the "
            "warm-ups' rate against the ceiling; 1-by-1: the same message sent one after "
            "another by the client with its defaults (a user's script), and the worker's rate "
            "against it"
        )
        say()
        say(
            f"{'db':<11} {'channel':<9} {'recipients':>10} {'write s':>8} {'slices':>9} "
            f"{'msg/s':>7} {'ceiling':>7} {'ratio':>6} {'range':>9} {'overall':>7} {'1st s':>6} {'1-by-1':>7} {'vs it':>6}"
        )
        channels = ["telegram"] + ([] if args.skip_sms else ["sms"])
        for channel in channels:
            for kind in kinds:
                run = throughput_run(
                    kind,
                    fakes,
                    args.n,
                    channel,
                    slices=args.slices,
                    slice_seconds=args.slice_seconds,
                    ceiling_n=args.ceiling_n,
                    levels=levels,
                    naive_n=args.naive_n,
                )
                say(
                    f"{run['db']:<11} {run['channel']:<9} {run['n']:>10} {run['write_s']:>8.2f} "
                    f"{run['slices']:>3} x {run['slice_s']:>3.1f}s {run['rate']:>7.0f} "
                    f"{run['ceiling']:>7.0f} {run['ratio']:>6.0%} "
                    f"{run['low']:>4.0%}-{run['high']:<4.0%} {run['overall']:>7.0%} {run['warmup']:>6.0%} "
                    f"{run['naive']:>7.0f} {run['rate'] / run['naive']:>5.1f}x"
                )
        ceiling_after = max(
            statistics.median(
                asyncio.run(telegram_concurrent(fakes, args.ceiling_n, level)) for _ in range(3)
            )
            for level in levels
        )
        say(f"telegram ceiling again after the runs: {ceiling_after:.0f}/s")
        say()
        say(
            f"{'db':<11} {'limit/s':>7} {'messages':>8} {'seconds':>8} {'achieved/s':>10} "
            f"{'of limit':>8} {'429s':>5}"
        )
        for kind in kinds:
            run = limited_run(kind, fakes, args.limited_n)
            say(
                f"{run['db']:<11} {30:>7} {run['n']:>8} {run['seconds']:>8.1f} "
                f"{run['rate']:>10.1f} {run['rate'] / 30:>8.0%} {run['throttled']:>5}"
            )
        if not args.skip_memory:
            say()
            say(
                f"{'db':<11} {'channel':<9} {'workers':>7} {'campaign':>9} {'peak RSS MB':>11} "
                f"{'sent in window':>14} {'msg/s':>6}"
            )
            # The campaign's size and one or two workers, on Telegram; then one worker on SMS,
            # whose rate is the hosen worker process's own (logging and all) on that channel.
            plan = [
                (kind, "telegram", workers, int(n))
                for kind in kinds
                for workers in ((1, 2) if kind == "postgresql" else (1,))
                for n in args.memory_n.split(",")
            ]
            if not args.skip_sms:
                largest = max(int(n) for n in args.memory_n.split(","))
                plan += [(kind, "sms", 1, largest) for kind in kinds]
            for kind, channel, workers, n in plan:
                run = memory_run(kind, fakes, n, workers, args.memory_seconds, channel)
                say(
                    f"{run['db']:<11} {run['channel']:<9} {run['workers']:>7} {run['n']:>9} "
                    f"{run['peak_mb']:>11.0f} {run['sent']:>14} {run['rate']:>6.0f}"
                )
    say(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
