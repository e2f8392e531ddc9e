"""What the database-backed parts of the dispatcher cost: the shared rate gate (one slot
reservation per batch), a worker's claim of a batch, and matching one reply to its campaign.

No provider, no network: every number here is database work on SQLite and PostgreSQL.
Run: ``python bench/dispatch_overhead.py [--db sqlite,postgresql]``. Prints a table (medians and
99th percentiles in milliseconds; the machine is shared, so noisy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from bench.dispatch_e2e import database, populate, write_campaign
from config.settings import Settings
from dispatch import gates
from dispatch.models import OutboxMessage, OutboxStatus
from dispatch.responses import take_campaign_reply
from dispatch.worker import Worker
from registry.db import make_engine, make_sessionmaker, utcnow
from registry.models import Channel, Person


class _NoSender:
    channel = Channel.TELEGRAM


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.99 * (len(ordered) - 1))] * 1000


def run(kind: str, people: int, rounds: int) -> list[tuple[str, str, float, float, str]]:
    rows = []
    with database(kind) as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        authority = populate(sessions, people, "telegram")
        campaign_id, _ = write_campaign(sessions, authority)

        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            with sessions() as session:
                gates.reserve_slots(
                    session, channel=Channel.TELEGRAM, count=60, rate=30.0, now=utcnow()
                )
                session.commit()
            samples.append(time.perf_counter() - started)
        p50, p99 = _ms(samples)
        rows.append(
            (
                kind,
                "reserve slots (1 transaction)",
                p50,
                p99,
                f"{p50 / 60 * 1000:.0f} µs/msg at 60/batch",
            )
        )

        settings = Settings(database_url=url, _env_file=None).model_copy(
            update={"telegram_rate_per_second": 1e6}
        )
        senders: dict[Channel, Any] = {Channel.TELEGRAM: _NoSender()}  # claims only, no sends
        worker = Worker(sessions=sessions, senders=senders, settings=settings)
        samples = []
        for _ in range(max(3, min(rounds // 20, people // 500))):
            started = time.perf_counter()
            claimed = worker._claim(Channel.TELEGRAM)
            samples.append(time.perf_counter() - started)
            assert len(claimed) == 500
        p50, p99 = _ms(samples)
        rows.append(
            (
                kind,
                "claim a batch of 500 (+ chat gates)",
                p50,
                p99,
                f"{p50 / 500 * 1000:.0f} µs/msg",
            )
        )

        with sessions() as session:
            session.query(OutboxMessage).update({"status": OutboxStatus.SENT})
            session.commit()
            ids = list(session.scalars(select(Person.id).limit(rounds)))
        samples = []
        for index, person_id in enumerate(ids):
            started = time.perf_counter()
            with sessions() as session:
                person = session.get(Person, person_id)
                assert person is not None
                handled = take_campaign_reply(
                    session,
                    person=person,
                    channel=Channel.TELEGRAM,
                    callback_data=f"c:{campaign_id}:{'ok' if index % 10 else 'help'}",
                    now=utcnow(),
                )
                session.commit()
            samples.append(time.perf_counter() - started)
            assert handled
        p50, p99 = _ms(samples)
        rows.append((kind, "take_campaign_reply + commit", p50, p99, f"{people} recipients"))
        engine.dispose()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    rows = [row for kind in args.db.split(",") for row in run(kind, args.people, args.rounds)]
    print(
        f"dispatcher database overhead; load average {os.getloadavg()[0]:.1f} (shared machine: noisy)"
    )
    print(f"{'db':<11} {'operation':<38} {'p50 ms':>7} {'p99 ms':>7}  note")
    for kind, name, p50, p99, note in rows:
        print(f"{kind:<11} {name:<38} {p50:>7.2f} {p99:>7.2f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
