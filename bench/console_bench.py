"""Benchmark: the officers' console pages at 50,000 people and a 50,000-recipient check-in.

Run from the repository root::

    python bench/console_bench.py                      # 50,000 people, SQLite
    python bench/console_bench.py --db postgresql      # the same on a scratch PostgreSQL database
    python bench/console_bench.py --people 20000 --repeat 5

A synthetic town (``fakes.town``) gets a drill check-in to everyone; then, written
straight into the database as the dispatcher would leave them, 60% have answered OK over the
first half hour, 3% need help (with open help alerts), 10% are on the unreached list and the
rest are still waiting. An officer signs in through the console's own sign-in (the code read
from the outbox), and each page is requested through the real ASGI app (httpx's ASGI
transport, no network) ``--repeat`` times; the table gives the median and the slowest wall
time, in milliseconds (the target: under 300 ms), and the median CPU time of this process,
which a machine shared with other work disturbs less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
AUTHORITY = "kiryat-tamar"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
OFFICER = "+972525551000"


def build(url: str, people: int) -> dict[str, Any]:
    from sqlalchemy import update

    from config.profile import DEFAULT_PROFILE_PATH, load_profile
    from dispatch.campaigns import Audience, start_drill_checkin
    from dispatch.models import Alert, AlertKind, AlertState, Answer, CampaignRecipient
    from fakes.town import generate_town, load_town
    from hosen import migrations
    from registry.db import make_engine, make_sessionmaker, unit_of_work
    from registry.phones import normalise_phone
    from registry.profile_sync import sync_profile
    from registry.staff import StaffRole, add_staff

    profile = load_profile(DEFAULT_PROFILE_PATH)
    engine = make_engine(url)
    migrations.upgrade(engine)
    sessions = make_sessionmaker(engine)
    with unit_of_work(sessions) as session:
        directory = sync_profile(session, profile)
        town = generate_town(profile, size=people, seed=11, authorities=[AUTHORITY])
        load_town(session, town, directory)
        authority = directory.authorities[AUTHORITY]
        add_staff(
            session,
            name="Bench officer",
            phone=normalise_phone(OFFICER, region="IL"),
            authority=authority,
            role=StaffRole.OFFICER,
            actor="bench",
        )
    with unit_of_work(sessions) as session:
        campaign = start_drill_checkin(
            session,
            authority=session.merge(authority),
            audience=Audience(),
            started_by="bench",
            now=START,
        )
        campaign_id, recipients = campaign.id, campaign.recipients
    with unit_of_work(sessions) as session:
        table = CampaignRecipient.__table__
        for share, answer in (
            (range(0, 60), Answer.OK),
            (range(60, 63), Answer.HELP),
            (range(63, 73), Answer.NO_ANSWER),
        ):
            session.execute(
                update(CampaignRecipient)
                .where(
                    CampaignRecipient.campaign_id == campaign_id,
                    (CampaignRecipient.person_id % 100).between(share.start, share.stop - 1),
                )
                .values(
                    answer=answer,
                    answered_at=START + timedelta(minutes=12)
                    if answer != Answer.NO_ANSWER
                    else None,
                    next_step_at=None,
                    step=3 if answer == Answer.NO_ANSWER else 0,
                )
                .execution_options(synchronize_session=False)
            )
        helpers = (
            session.execute(
                table.select()
                .with_only_columns(table.c.person_id)
                .where(table.c.campaign_id == campaign_id, table.c.answer == Answer.HELP.value)
            )
            .scalars()
            .all()
        )
        session.add_all(
            Alert(
                campaign_id=campaign_id,
                person_id=pid,
                kind=AlertKind.HELP,
                state=AlertState.OPEN,
                created_at=START + timedelta(minutes=12),
                climb=0,
            )
            for pid in helpers[:300]
        )
    # Statistics as autovacuum would have them by now (a check-in has been running for 40
    # minutes); a scratch server may run without autovacuum.
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    engine.dispose()
    return {"campaign": campaign_id, "recipients": recipients}


class Browser:
    def __init__(self, app: Any) -> None:
        import httpx

        self.app = app
        self.cookies = httpx.Cookies()

    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        import httpx

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://bench",
            cookies=self.cookies,
        ) as client:
            answer = await client.request(method, url, **kwargs)
            self.cookies = httpx.Cookies(client.cookies)
            return answer


async def measure(
    url: str, campaign: int, repeat: int
) -> list[tuple[str, float, float, float, float, int]]:
    from sqlalchemy import create_engine, delete, select

    from config.settings import Settings
    from dispatch.models import OutboxMessage
    from hosen.app import build_app
    from hosen.context import Context
    from registry.phone_codes import PhoneCode

    settings = Settings(database_url=url, _env_file=None)  # type: ignore[call-arg]
    ctx = Context(settings=settings)
    app = build_app(ctx, run_worker=False, run_bot=False, run_scheduler=False, run_processor=False)
    with ctx.sessions() as session:
        # A database measured again: earlier sign-ins' codes would make this one wait.
        session.execute(delete(PhoneCode))
        session.commit()
    browser = Browser(app)
    token = re.compile(r'name="csrf" value="([0-9a-f]+)"')
    page = await browser.request("GET", "/console/sign-in")
    await browser.request(
        "POST", "/console/sign-in", data={"csrf": token.search(page.text)[1], "phone": OFFICER}
    )
    with ctx.sessions() as session:
        sent = session.scalars(
            select(OutboxMessage.text)
            .where(OutboxMessage.kind == "console_code")
            .order_by(OutboxMessage.id)
        ).all()[-1]
    page = await browser.request("GET", "/console/sign-in/code")
    done = await browser.request(
        "POST",
        "/console/sign-in/code",
        data={"csrf": token.search(page.text)[1], "code": re.search(r"\d{6}", sent)[0]},  # type: ignore[index]
    )
    assert done.status_code == 303, done.text
    zone = await first_zone(ctx, campaign)
    pages = [
        ("board", f"/console/board?campaign={campaign}"),
        ("board, live update", f"/console/board/live?campaign={campaign}"),
        ("help queue", "/console/queue"),
        ("help queue, live rows", "/console/queue/rows"),
        ("unreached list, page 1", f"/console/lists?campaign={campaign}&kind=unreached"),
        ("need-help list, page 1", f"/console/lists?campaign={campaign}&kind=help"),
        (
            "call-down sheet, one zone",
            f"/console/sheet?campaign={campaign}&kind=unreached&zone={zone}",
        ),
        ("CSV, one zone", f"/console/lists.csv?campaign={campaign}&kind=unreached&zone={zone}"),
    ]
    rows = []
    # A connection of its own (one backend, never the app's) reads the app's backends' CPU.
    server = create_engine(url, pool_size=1) if url.startswith("postgresql") else None
    for name, path in pages:
        times, cpu, db_cpu = [], [], []
        size = 0
        for _ in range(repeat):
            before = _backend_cpu(server)
            began, began_cpu = time.perf_counter(), time.process_time()
            answer = await browser.request("GET", path)
            times.append((time.perf_counter() - began) * 1000)
            cpu.append((time.process_time() - began_cpu) * 1000)
            after = _backend_cpu(server)
            db_cpu.append(sum(after[pid] - before.get(pid, 0.0) for pid in after) * 1000)
            assert answer.status_code == 200, (path, answer.status_code)
            size = len(answer.content)
        rows.append(
            (
                name,
                statistics.median(times),
                max(times),
                statistics.median(cpu),
                statistics.median(db_cpu) if server is not None else float("nan"),
                size,
            )
        )
    ctx.close()
    if server is not None:
        server.dispose()
    return rows


def _backend_cpu(engine: Any) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving this database (the server runs on this
    machine: its processes' /proc entries are readable); nothing for SQLite."""
    if engine is None:
        return {}
    from sqlalchemy import text

    with engine.connect() as conn:
        pids = conn.scalars(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ).all()
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(pid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


async def first_zone(ctx: Any, campaign: int) -> int:
    from sqlalchemy import func, select

    from dispatch.models import CampaignRecipient

    with ctx.sessions() as session:
        zone_id, _ = session.execute(
            select(CampaignRecipient.zone_id, func.count())
            .where(
                CampaignRecipient.campaign_id == campaign, CampaignRecipient.zone_id.is_not(None)
            )
            .group_by(CampaignRecipient.zone_id)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
    return int(zone_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--url", help="measure an existing database built by an earlier --keep run (no build)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the database and print its URL, to measure again"
    )
    args = parser.parse_args()

    if args.url:
        campaign = latest_campaign(args.url)
        print(f"{args.url}: campaign {campaign}; {args.repeat} requests a page")
        print_table(asyncio.run(measure(args.url, campaign, args.repeat)))
        return 0

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = None
    with tempfile.TemporaryDirectory() as folder:
        if args.db == "sqlite":
            place = Path(tempfile.mkdtemp(prefix="hosen-console-")) if args.keep else Path(folder)
            url = f"sqlite:///{place / 'bench.sqlite3'}"
        else:
            name = f"hosen_console_bench_{secrets.token_hex(4)}"
            admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)
        try:
            began = time.perf_counter()
            built = build(url, args.people)
            print(
                f"{args.db}: {args.people:,} people, campaign of {built['recipients']:,} "
                f"recipients, built in {time.perf_counter() - began:.0f} s; {args.repeat} requests a page"
            )
            rows = asyncio.run(measure(url, built["campaign"], args.repeat))
        finally:
            if args.keep:
                print(f"kept: --url {url}")
            elif admin is not None:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if admin is not None:
                admin.dispose()
    print_table(rows)
    return 0


def latest_campaign(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        campaign = int(conn.execute(text("SELECT max(id) FROM campaign")).scalar_one())
    engine.dispose()
    return campaign


def print_table(rows: list[tuple[str, float, float, float, float, int]]) -> None:
    print(
        "\n| page | median ms | slowest ms | median CPU ms | median DB server CPU ms | bytes "
        "| under 300 ms |\n|---|---:|---:|---:|---:|---:|---|"
    )
    for name, median, slowest, cpu, db_cpu, size in rows:
        verdict = "yes" if median < 300 else "NO"
        server = f"{db_cpu:.0f}" if db_cpu == db_cpu else "(in CPU)"
        print(
            f"| {name} | {median:.0f} | {slowest:.0f} | {cpu:.0f} | {server} | {size:,} "
            f"| {verdict} |"
        )


if __name__ == "__main__":
    sys.exit(main())
