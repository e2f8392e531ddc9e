"""Reliability: a killed worker, a misbehaving provider, a database that drops its connections.

These run real workers against the loopback fakes in real time, so they are marked ``slow``;
each is bounded (a deadline, not a sleep) and typically takes a few seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings, reveal
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.models import (
    Alert,
    AlertKind,
    ChannelBlock,
    OutboxMessage,
    OutboxStatus,
    Task,
)
from dispatch.outbox import count_unsent
from dispatch.senders import build_senders
from dispatch.worker import Worker, WorkerConfig
from fakes.faults import Faults
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from fakes.town import insert_reachable_residents
from fakes.twilio import FakeTwilio
from hosen import migrations
from registry.db import make_engine, make_sessionmaker, utcnow
from registry.models import Authority, Person
from registry.profile_sync import sync_sample_profile
from tests.private_postgres import PrivatePostgres, postgres_bin

pytestmark = [pytest.mark.db, pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def add_people(
    sessions: sessionmaker[Session], authority: Authority, count: int, *, sms_share: float = 0.0
) -> list[int]:
    sms_every = int(1 / sms_share) if sms_share else 0
    with sessions() as session:
        insert_reachable_residents(
            session,
            authority_id=authority.id,
            count=count,
            on_telegram=lambda n: not (sms_every and n % sms_every == 0),
            chat_base=500_000,
            phone_prefix="+97252",
        )
        session.commit()
        return list(session.scalars(select(Person.id).order_by(Person.id)))


def begin(sessions: sessionmaker[Session], authority: Authority) -> int:
    with sessions() as session:
        campaign = start_drill_checkin(
            session,
            authority=authority,
            audience=Audience(),
            started_by="test",
            now=utcnow(),
        )
        session.commit()
        return campaign.id


def telegram_worker(
    sessions: sessionmaker[Session],
    settings: Settings,
    fake_telegram: FakeTelegram,
    *,
    rate: float,
    lease: float,
) -> Worker:
    """An in-process worker sending on the fake Telegram at ``rate`` with a short lease."""
    wired = settings_for_fakes(settings, telegram=fake_telegram).model_copy(
        update={"telegram_rate_per_second": rate}
    )
    return Worker(
        sessions=sessions,
        senders=build_senders(wired),
        settings=wired,
        config=WorkerConfig(lease_seconds=lease, sweep_every=0.3),
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def worker_process(settings: Settings, lease: float, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HOSEN_DATABASE_URL": settings.database_url,
        "HOSEN_TELEGRAM_TOKEN": reveal(settings.telegram_token) or "",
        "HOSEN_TELEGRAM_API_URL": str(settings.telegram_api_url),
        "HOSEN_TELEGRAM_RATE_PER_SECOND": str(settings.telegram_rate_per_second),
    }
    with log.open("wb") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "hosen", "worker", "--lease", str(lease)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def finish_with_another_worker(
    settings: Settings, fake_telegram: FakeTelegram, chats: list[int], *, lease: float, logs: Path
) -> dict[int, int]:
    """A second worker process sends the rest; how many check-ins each chat got in all."""
    second = worker_process(settings, lease=lease, log=logs / "second.log")
    try:
        wait_for(lambda: all(fake_telegram.sent_to(chat) for chat in chats), 60, "every check-in")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0, (logs / "second.log").read_text()
    counts: dict[int, int] = {}
    for call in fake_telegram.calls("sendMessage"):
        counts[int(call["chat_id"])] = counts.get(int(call["chat_id"]), 0) + 1
    assert set(counts) == set(chats)
    return counts


def test_a_worker_killed_mid_campaign_loses_nothing(
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    fake_telegram: FakeTelegram,
    tmp_path: Path,
) -> None:
    wired = settings_for_fakes(settings, telegram=fake_telegram).model_copy(
        update={"telegram_rate_per_second": 150.0}
    )
    count = 400
    add_people(sessions, authority, count)
    begin(sessions, authority)
    chats = [500_000 + n for n in range(count)]

    first = worker_process(wired, lease=2.0, log=tmp_path / "first.log")
    try:
        wait_for(lambda: len(fake_telegram.calls("sendMessage")) >= 100, 30, "the first sends")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    with sessions() as session:
        in_flight = set(
            session.scalars(
                select(OutboxMessage.address).where(OutboxMessage.status == OutboxStatus.SENDING)
            )
        )
        unsent = session.scalar(
            select(func.count()).where(OutboxMessage.status != OutboxStatus.SENT)
        )
    assert unsent, "the campaign ended before the kill: make it longer"

    counts = finish_with_another_worker(wired, fake_telegram, chats, lease=2.0, logs=tmp_path)
    duplicated = {str(chat) for chat, n in counts.items() if n > 1}
    # At least once: only what the killed worker had in flight may have gone twice.
    assert duplicated <= in_flight
    with sessions() as session:
        statuses = set(session.scalars(select(OutboxMessage.status)))
    assert statuses == {OutboxStatus.SENT}


def test_a_hung_send_holds_back_no_other_record_so_a_kill_resends_only_it(
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    fake_telegram: FakeTelegram,
    tmp_path: Path,
) -> None:
    """One provider call hangs (held past the client's timeout) while the rest of its batch
    goes out; the worker is killed then. Every other send is already recorded, so only the one
    in flight is sent again."""
    wired = settings_for_fakes(settings, telegram=fake_telegram).model_copy(
        update={"telegram_rate_per_second": 150.0}
    )
    count = 200
    add_people(sessions, authority, count)
    begin(sessions, authority)
    chats = [500_000 + n for n in range(count)]
    hung = chats[5]
    fake_telegram.hung.add(hung)
    fake_telegram.faults = Faults(hold_seconds=120.0)

    def recorded() -> int:
        with sessions() as session:
            return int(
                session.scalar(
                    select(func.count()).where(OutboxMessage.status == OutboxStatus.SENT)
                )
                or 0
            )

    first = worker_process(wired, lease=12.0, log=tmp_path / "first.log")
    try:
        # The hung call stays in flight until the worker's own backstop (send_timeout, 20 s).
        wait_for(lambda: recorded() == count - 1, 40, "every other send recorded")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    with sessions() as session:
        unrecorded = {
            (address, status)
            for address, status in session.execute(
                select(OutboxMessage.address, OutboxMessage.status).where(
                    OutboxMessage.status != OutboxStatus.SENT
                )
            )
        }
        # The killed worker's leases run out now (time moved in the database, not waited).
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.SENDING)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    assert unrecorded == {(str(hung), OutboxStatus.SENDING)}  # in flight at the kill
    fake_telegram.hung.clear()
    counts = finish_with_another_worker(wired, fake_telegram, chats, lease=12.0, logs=tmp_path)
    assert {chat for chat, n in counts.items() if n > 1} <= {hung}


def test_a_faulty_provider_still_reaches_everyone_reachable(
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
) -> None:
    """10% 5xx, 5% timeouts, 429 bursts, blocked users and dead numbers on both channels."""
    count = 300
    ids = add_people(sessions, authority, count, sms_share=0.2)
    faults = {
        "seed": 7,
        "server_error_rate": 0.10,
        "timeout_rate": 0.05,
        "throttle_burst_rate": 0.01,
        "throttle_burst_length": 5,
        "hold_seconds": 2.0,
    }
    fake_telegram.faults = Faults(**faults, blocked_rate=0.05, missing_chat_rate=0.02)  # type: ignore[arg-type]
    fake_twilio.faults = Faults(**faults, unsubscribed_rate=0.05, invalid_number_rate=0.03)  # type: ignore[arg-type]
    wired = settings_for_fakes(settings, telegram=fake_telegram, twilio=fake_twilio).model_copy(
        update={"telegram_rate_per_second": 400.0, "sms_rate_per_second": 400.0}
    )
    begin(sessions, authority)
    worker = Worker(
        sessions=sessions,
        senders=build_senders(wired),
        settings=wired,
        config=WorkerConfig(
            send_timeout=1.0, backoff_base=0.05, backoff_cap=0.4, max_attempts=12, sweep_every=0.5
        ),
    )

    async def go() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            with sessions() as session:
                open_rows = session.scalar(
                    select(OutboxMessage.id)
                    .where(OutboxMessage.status.in_((OutboxStatus.QUEUED, OutboxStatus.SENDING)))
                    .limit(1)
                )
            if open_rows is None:
                break
        stop.set()
        await runner

    asyncio.run(go())
    with sessions() as session:
        people = {p.id: p for p in session.scalars(select(Person))}
        left = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.status.in_((OutboxStatus.QUEUED, OutboxStatus.SENDING))
            )
        ).all()
        assert left == [], "the worker did not finish in time"
        blocks: dict[int, set[str]] = {}
        for person_id, channel in session.execute(
            select(ChannelBlock.person_id, ChannelBlock.channel)
        ):
            blocks.setdefault(person_id, set()).add(str(channel))
        unreached = {
            a.person_id
            for a in session.scalars(select(Alert).where(Alert.kind == AlertKind.NO_BUDDY))
        } | set(session.scalars(select(Task.resident_id)))
    reached = 0
    for person_id in ids:
        person = people[person_id]
        got = bool(
            person.telegram_chat_id and fake_telegram.sent_to(person.telegram_chat_id)
        ) or bool(person.phone and fake_twilio.sent_to(person.phone))
        if got:
            reached += 1
            continue
        # Not reached: every channel the person has was declared dead, and the officer knows.
        channels = {"sms"} | ({"telegram"} if person.telegram_chat_id else set())
        assert blocks.get(person_id, set()) >= channels, (person_id, blocks.get(person_id))
        assert person_id in unreached
    assert reached >= count * 0.9
    assert fake_telegram.violations == [] and fake_twilio.violations == []


def test_workers_recover_when_the_database_drops_their_connections(
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    engine: Engine,
    db_kind: str,
    fake_telegram: FakeTelegram,
) -> None:
    """PostgreSQL only. Restarting the shared server would disturb other suites, so the restart
    is simulated by terminating every backend of this scratch database mid-campaign."""
    if db_kind != "postgresql":
        pytest.skip("a PostgreSQL server restart has no SQLite equivalent")
    count = 300
    add_people(sessions, authority, count)
    begin(sessions, authority)
    worker = telegram_worker(sessions, settings, fake_telegram, rate=200.0, lease=1.0)
    database = engine.url.database
    terminated = 0

    async def terminate_every_connection() -> None:
        nonlocal terminated
        with engine.connect() as admin:
            terminated = admin.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            ).scalar_one()

    def everyone_reached() -> bool:
        return len({c["chat_id"] for c in fake_telegram.calls("sendMessage")}) >= count

    asyncio.run(
        disrupt_mid_campaign(worker, fake_telegram, terminate_every_connection, everyone_reached)
    )
    assert terminated >= 1
    chats = {int(c["chat_id"]) for c in fake_telegram.calls("sendMessage")}
    assert chats == {500_000 + n for n in range(count)}


def test_workers_recover_when_postgresql_restarts(
    settings: Settings, db_kind: str, fake_telegram: FakeTelegram
) -> None:
    """A real restart, of a PostgreSQL server of the test's own (the shared one serves other
    suites): every connection is cut mid-campaign and the server is gone for a moment; the
    worker waits it out, reaches everyone, and sends nobody a message twice (what it sent
    while the database was away is recorded when it is back)."""
    if db_kind != "postgresql":
        pytest.skip("a PostgreSQL server restart has no SQLite equivalent")
    if postgres_bin() is None:
        pytest.skip("no PostgreSQL installation to run a private server")
    count = 300
    with PrivatePostgres() as server:
        engine = make_engine(server.url)
        migrations.upgrade(engine)
        sessions = make_sessionmaker(engine)
        with sessions() as session:
            authority = sync_sample_profile(session)
            session.commit()
        add_people(sessions, authority, count)
        begin(sessions, authority)
        worker = telegram_worker(sessions, settings, fake_telegram, rate=100.0, lease=10.0)
        sent_before_restart = 0

        async def restart() -> None:
            nonlocal sent_before_restart
            await asyncio.to_thread(server.stop)
            sent_before_restart = len(fake_telegram.calls("sendMessage"))
            await asyncio.sleep(1.0)  # the server is down: the worker must wait, not die
            await asyncio.to_thread(server.start)

        asyncio.run(
            disrupt_mid_campaign(worker, fake_telegram, restart, lambda: open_rows(sessions) == 0)
        )
        left = open_rows(sessions)
        engine.dispose()
    assert sent_before_restart < count  # the restart did come mid-campaign
    chats = [int(c["chat_id"]) for c in fake_telegram.calls("sendMessage")]
    assert sorted(chats) == [500_000 + n for n in range(count)]
    assert left == 0


async def disrupt_mid_campaign(
    worker: Worker,
    fake_telegram: FakeTelegram,
    disruption: Callable[[], Awaitable[None]],
    done: Callable[[], bool],
) -> None:
    """Run ``worker``; once 80 messages are out, ``disruption``; then wait (a minute at most)
    until ``done``, and stop the worker."""
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    while len(fake_telegram.calls("sendMessage")) < 80:
        await asyncio.sleep(0.02)
    await disruption()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not await asyncio.to_thread(done):
        await asyncio.sleep(0.1)
    stop.set()
    await runner


def open_rows(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return count_unsent(session)
