"""How fast the bots answer: inbound messages stored as the webhooks store them
(``bots.inbound.accept``) and processed by the inbox processor (route, dialog, outbox), one
message at a time, each in its own units of work. (For the webhooks' acknowledgement latency
under load, see ``bench/inbound_bench.py``.)

Each simulated person registers by SMS in Hebrew (12 messages) and then asks for their status.
Prints a table per database: messages, total seconds, messages per second, median and 95th
percentile milliseconds per message. Run from the repository root:

    python bench/bots_inbound.py --people 50 --db sqlite
    python bench/bots_inbound.py --people 50 --db all   # PostgreSQL at HOSEN_BENCH_POSTGRES_URL

The machine is shared while others work: repeat and read the medians.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bots.dialog import Dialog, Inbound
from bots.inbound import Delivery, accept
from bots.processor import InboxProcessor
from config.profile import DEFAULT_PROFILE_PATH, load_profile
from hosen import migrations
from registry.db import make_engine, make_sessionmaker, unit_of_work
from registry.models import Channel
from registry.profile_sync import sync_profile

CONVERSATION = ["הצטרפות", "2", "מרים אבוקסיס", "1", "2", "1941", "1 2", "רות",
                "054-555-0101", "1", "1", "1", "מצב"]  # fmt: skip
POSTGRES = os.environ.get(
    "HOSEN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def run(url: str, people: int) -> list[float]:
    engine = make_engine(url)
    migrations.upgrade(engine)
    sessions = make_sessionmaker(engine)
    profile = load_profile(DEFAULT_PROFILE_PATH)
    with unit_of_work(sessions) as session:
        sync_profile(session, profile)
    dialog = Dialog(profile=profile, region="IL")
    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    processor = InboxProcessor(sessions=sessions, dialog=dialog, clock=lambda: now)
    timings: list[float] = []
    for n in range(people):
        phone = f"+97252{5_000_000 + n:07d}"
        for i, body in enumerate(CONVERSATION):
            now += timedelta(seconds=3)
            delivery = Delivery(
                provider_key=f"sms:bench-{n}-{i}",
                inbound=Inbound(channel=Channel.SMS, address=phone, text=body),
                payload={"Body": body},
            )
            started = time.perf_counter()
            with unit_of_work(sessions) as session:
                accept(session, delivery=delivery, now=now)
            done = processor.drain()
            timings.append(time.perf_counter() - started)
            assert [d.processed for d in done] == [True], (n, i, body)
    engine.dispose()
    return timings


def scratch_postgres() -> tuple[str, object]:
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    name = f"hosen_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=50)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "all"), default="sqlite")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "all" else [args.db]
    print(
        f"{'database':12}{'messages':>10}{'seconds':>10}{'msg/s':>10}{'p50 ms':>10}{'p95 ms':>10}"
    )
    for kind in kinds:
        if kind == "sqlite":
            folder = tempfile.mkdtemp()
            timings = run(f"sqlite:///{folder}/bench.sqlite3", args.people)
        else:
            url, drop = scratch_postgres()
            try:
                timings = run(url, args.people)
            finally:
                drop()  # type: ignore[operator]
        total = sum(timings)
        p95 = statistics.quantiles(timings, n=20)[18]
        print(
            f"{kind:12}{len(timings):>10}{total:>10.2f}{len(timings) / total:>10.0f}"
            f"{statistics.median(timings) * 1000:>10.1f}{p95 * 1000:>10.1f}"
        )


if __name__ == "__main__":
    main()
