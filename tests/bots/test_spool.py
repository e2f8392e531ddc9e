"""A reply is never lost when the database blinks: the webhooks spool what the database cannot
take, answer as usual, and the replayer moves it into the inbox in arrival order, exactly once.

The database is made unavailable for real: an SQLite file made unwritable (immutable as root,
read-only otherwise), a private PostgreSQL server stopped with ``pg_ctl stop -m immediate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import AnyHttpUrl
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from bots.inbound import Arrival
from bots.spool import Spool, scan
from config.i18n import t
from config.languages import DEFAULT_LANGUAGE
from config.settings import Settings
from dispatch.models import InboundMessage, OutboxMessage
from fakes.telegram import FakeTelegram
from hosen import migrations
from hosen.app import Runtime, build_app
from hosen.cli import main
from hosen.context import Context
from registry.db import make_engine, make_sessionmaker, utcnow
from registry.models import Channel
from registry.phones import normalise_phone
from registry.profile_sync import sync_sample_profile
from registry.staff import StaffRole, add_staff
from tests.private_postgres import PrivatePostgres, postgres_bin

TOKEN = "twilio-auth-token-for-tests"
SECRET = "telegram-webhook-secret-for-tests"
PUBLIC = "https://hosen.example.org"
DANA = "+972525551234"
ROOT = Path(__file__).resolve().parents[2]


def outage_settings(database_url: str, spool: Path, **more: object) -> Settings:
    return Settings(  # type: ignore[call-arg]
        database_url=database_url,
        spool_dir=spool,
        spool_after_seconds=0,  # spool at the first failure: the tests wait for nothing
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token=TOKEN,
        twilio_from="+972500000000",
        telegram_token="7012345678:Hk3vQ9zLm2Xc7BtR5wNp8Jd4Fs6Ga1Ye0Ui",
        telegram_webhook_secret=SECRET,
        public_url=AnyHttpUrl(PUBLIC),
        _env_file=None,
        **more,
    )


OFFICER = "+972525550001"


def fresh_database(url: str) -> Engine:
    """A migrated database with the sample profile and one officer."""
    engine = make_engine(url)
    migrations.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        authority = sync_sample_profile(session)
        add_staff(
            session,
            name="Officer",
            phone=normalise_phone(OFFICER, region="IL"),
            authority=authority,
            role=StaffRole.OFFICER,
            actor="test",
        )
        session.commit()
    return engine


def officer_notices(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage.text)
                .where(OutboxMessage.address == OFFICER)
                .order_by(OutboxMessage.id)
            )
        )


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """A file and its directory (or a directory) cannot be written: immutable when running as
    root, whom file modes do not stop; read-only modes otherwise."""
    targets = [path] if path.is_dir() else [path, path.parent]
    if os.geteuid() == 0:
        for target in targets:
            if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode:
                pytest.skip("cannot make a file immutable here (chattr)")
        try:
            yield
        finally:
            for target in reversed(targets):
                subprocess.run(["chattr", "-i", str(target)], check=True)
        return
    modes = [target.stat().st_mode for target in targets]
    for target in targets:
        target.chmod(0o555 if target.is_dir() else 0o444)
    try:
        yield
    finally:
        for target, mode in zip(reversed(targets), reversed(modes), strict=True):
            target.chmod(mode)


def sms_form(sid: str, body: str, sender: str = DANA) -> tuple[dict[str, str], dict[str, str]]:
    params = {"MessageSid": sid, "From": sender, "To": "+972500000000", "Body": body}
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/sms/inbound", params)
    return params, {"X-Twilio-Signature": signature}


async def post_sms(client: httpx.AsyncClient, sid: str, body: str) -> int:
    params, headers = sms_form(sid, body)
    return (await client.post("/sms/inbound", data=params, headers=headers)).status_code


async def post_status(client: httpx.AsyncClient, sid: str, status: str) -> int:
    params = {"MessageSid": sid, "MessageStatus": status}
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/sms/status", params)
    answer = await client.post(
        "/sms/status", data=params, headers={"X-Twilio-Signature": signature}
    )
    return answer.status_code


async def post_telegram(client: httpx.AsyncClient, update: dict[str, object]) -> int:
    answer = await client.post(
        "/telegram/webhook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    return answer.status_code


def inbox_keys(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(select(InboundMessage.provider_key).order_by(InboundMessage.id))
        )


@contextlib.contextmanager
def served(settings: Settings) -> Iterator[tuple[httpx.AsyncClient, Runtime, Context]]:
    """The real app without its lifespan: the test drives the replayer and processor."""
    ctx = Context(settings=settings)
    app = build_app(ctx, run_worker=False, run_scheduler=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC)
    try:
        yield client, app.state.runtime, ctx
    finally:
        runtime: Runtime = app.state.runtime
        if runtime.intake is not None:
            runtime.intake.close()
            assert runtime.intake.spool is not None
            runtime.intake.spool.close()
        ctx.close()


def replay_until_drained(runtime: Runtime, deadline: float = 60.0) -> None:
    assert runtime.replayer is not None
    give_up = time.monotonic() + deadline
    while True:
        try:
            runtime.replayer.step()
            if not runtime.replayer.spool.active:
                return
        except Exception:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.2)


def replies_during_outage(
    settings: Settings,
    telegram: FakeTelegram,
    outage: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    """Dana answers by SMS before, during and after an outage (and a Telegram user writes during
    it); every message ends in the inbox once, in the order sent, and is processed."""
    user = telegram.new_user("Omer")
    updates = [telegram.text(user, text) for text in ("hello", "1")]
    with served(settings) as (client, runtime, ctx):
        sessions = ctx.sessions
        assert runtime.intake is not None
        clock = [0.0]  # the outage's length is moved, not waited for
        runtime.intake.database.monotonic = lambda: clock[0]

        async def before() -> list[int]:
            return [await post_sms(client, "SM1", "JOIN")]

        async def during() -> list[int]:
            codes = [await post_sms(client, f"SM{n}", f"answer {n}") for n in (2, 3, 4)]
            codes.append(await post_telegram(client, updates[0]))
            codes.append(await post_sms(client, "SM5", "answer 5"))
            codes.append(await post_telegram(client, updates[1]))
            codes.append(await post_status(client, "SMout1", "delivered"))
            return codes

        assert asyncio.run(before()) == [200]
        # A first connection to a freshly started server may fail and spool SM1: either way it
        # is in the database before the outage, and what the officer heard of it is set aside.
        replay_until_drained(runtime)
        assert inbox_keys(sessions) == ["sms:SM1"]
        heard_before = len(officer_notices(sessions))
        ctx.engine.dispose()  # every pooled connection goes: the next one meets the outage
        with outage():
            assert asyncio.run(during()) == [200] * 7  # each one durable, in the spool
            status = (
                runtime.intake.spool.status() if runtime.intake and runtime.intake.spool else None
            )
            # Each of the seven is durable in the spool (a record written twice is replayed
            # once: the inbox's key decides, as the order and count checks below show).
            assert status is not None and status.pending >= 7 and not status.full
            spooled = status.pending
            assert not runtime.intake.database.up
            clock[0] += 90  # down for a minute and a half
        ctx.engine.dispose()
        assert inbox_keys(sessions) == ["sms:SM1"]
        replay_until_drained(runtime)
        tg = [f"tg:{u['update_id']}" for u in updates]
        expected = ["sms:SM1", "sms:SM2", "sms:SM3", "sms:SM4", tg[0], "sms:SM5", tg[1]]
        keys = inbox_keys(sessions)
        assert [k for k in keys if not k.startswith("smsstatus:")] == expected
        assert any(k.startswith("smsstatus:SMout1") for k in keys)  # the receipt, kept early
        assert runtime.intake.database.up
        # The officer hears that the database was down, then that the spool has drained.
        assert officer_notices(sessions)[heard_before:] == [
            t(DEFAULT_LANGUAGE, "officer.outage.down", minutes=2),
            t(DEFAULT_LANGUAGE, "officer.outage.drained", count=spooled),
        ]
        assert scan(settings.spool_dir) == (0, 0)  # drained files are removed
        # After the outage the webhooks write to the database directly again.
        assert asyncio.run(post_sms(client, "SM6", "after")) == 200
        assert inbox_keys(sessions)[-1] == "sms:SM6"
        assert runtime.processor is not None
        runtime.processor.drain()
        with sessions() as session:
            unprocessed = session.scalars(
                select(InboundMessage.provider_key).where(
                    InboundMessage.processed_at.is_(None),
                    ~InboundMessage.provider_key.startswith("smsstatus:"),
                )
            ).all()
        assert unprocessed == []


def test_replies_during_an_sqlite_outage_are_spooled_and_replayed_once_in_order(
    tmp_path: Path, fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "db" / "hosen.sqlite3"
    fresh_database(f"sqlite:///{path}").dispose()
    settings = outage_settings(f"sqlite:///{path}", tmp_path / "spool")
    with caplog.at_level(logging.INFO):
        replies_during_outage(settings, fake_telegram, lambda: unwritable(path))
    # An outage is told in a line when it starts and one when it ends: no traceback per request.
    assert not [r for r in caplog.records if r.exc_info]
    assert any("database unavailable" in r.getMessage() for r in caplog.records)
    assert not any(DANA in r.getMessage() or TOKEN in r.getMessage() for r in caplog.records)


def test_an_unwritable_spool_answers_503(tmp_path: Path) -> None:
    path = tmp_path / "db" / "hosen.sqlite3"
    fresh_database(f"sqlite:///{path}").dispose()
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    settings = outage_settings(f"sqlite:///{path}", spool_dir)
    with served(settings) as (client, _, _), unwritable(path), unwritable(spool_dir):
        assert asyncio.run(post_sms(client, "SMu", "1")) == 503
        health = asyncio.run(client.get("/health"))
        assert health.status_code == 503 and health.json()["database"] == "down"


def test_a_full_spool_answers_503_and_keeps_nothing_half(tmp_path: Path) -> None:
    path = tmp_path / "db" / "hosen.sqlite3"
    fresh_database(f"sqlite:///{path}").dispose()
    settings = outage_settings(f"sqlite:///{path}", tmp_path / "spool", spool_max_bytes=400)
    with served(settings) as (client, runtime, ctx):

        async def burst() -> list[int]:
            return [await post_sms(client, f"SM{n}", "a reply of some length") for n in range(4)]

        with unwritable(path):
            codes = asyncio.run(burst())
            health = asyncio.run(client.get("/health"))
        assert codes[0] == 200 and codes[-1] == 503  # the spool filled up
        accepted = codes.count(200)
        assert codes == [200] * accepted + [503] * (len(codes) - accepted)
        assert health.status_code == 503 and health.json()["spool"]["full"] is True
        ctx.engine.dispose()
        replay_until_drained(runtime)
        assert inbox_keys(ctx.sessions) == [f"sms:SM{n}" for n in range(accepted)]
        assert asyncio.run(client.get("/health")).status_code == 200


@pytest.mark.slow
def test_a_replayer_killed_halfway_loses_and_doubles_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db" / "hosen.sqlite3"
    url = f"sqlite:///{path}"
    engine = fresh_database(url)
    sessions = make_sessionmaker(engine)
    spool_dir = tmp_path / "spool"
    count = 3000
    spool = Spool(spool_dir, max_bytes=10**8, max_age=timedelta(days=1), clock=utcnow)
    start = utcnow()
    for n in range(count):
        arrival = Arrival(
            provider_key=f"sms:SMk{n}",
            channel=Channel.SMS,
            address=f"+9725255{n % 50:05d}",
            payload={"MessageSid": f"SMk{n}", "From": f"+9725255{n % 50:05d}", "Body": str(n)},
        )
        spool.append_arrival(arrival, received_at=start + timedelta(milliseconds=n))
    spool.close()  # as if its process had died: the file is nobody's
    env = {**os.environ, "HOSEN_DATABASE_URL": url, "HOSEN_SPOOL_DIR": str(spool_dir)}
    command = [sys.executable, "-m", "hosen", "inbox", "--replay-spool", "--batch", "10"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(inbox_keys(sessions)) < count // 10:
            assert time.monotonic() < deadline, "the replayer never got going"
            assert first.poll() is None, "the replayer ended before it could be killed"
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    halfway = len(inbox_keys(sessions))
    assert halfway < count, "the replay ended before the kill: make it longer"
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr.decode()
    assert inbox_keys(sessions) == [f"sms:SMk{n}" for n in range(count)]
    assert scan(spool_dir) == (0, 0)
    engine.dispose()


@pytest.mark.slow
@pytest.mark.db
def test_replies_during_a_postgresql_crash_are_spooled_and_replayed_once_in_order(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    if postgres_bin() is None:
        pytest.skip("no PostgreSQL installation to run a private server")
    with PrivatePostgres(crash_safe_commits=True) as server:
        fresh_database(server.url).dispose()
        settings = outage_settings(server.url, tmp_path / "spool")

        @contextlib.contextmanager
        def crashed() -> Iterator[None]:
            server.crash()
            try:
                yield
            finally:
                server.start()

        replies_during_outage(settings, fake_telegram, crashed)


def test_inbox_status_shows_the_spool_and_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "db" / "hosen.sqlite3"
    fresh_database(f"sqlite:///{path}").dispose()
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, max_bytes=10**6, max_age=timedelta(days=1), clock=utcnow)
    arrival = Arrival(provider_key="sms:SMs", channel=Channel.SMS, address=DANA, payload={})
    spool.append_arrival(arrival, received_at=utcnow())
    spool.close()
    monkeypatch.setenv("HOSEN_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("HOSEN_SPOOL_DIR", str(spool_dir))
    assert main(["inbox", "--status"]) == 0
    shown = capsys.readouterr().out
    assert "1 messages waiting" in shown and "database: up" in shown
    monkeypatch.setenv("HOSEN_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert main(["inbox", "--status"]) == 1  # nothing listens on port 1
    assert "database: down (OperationalError)" in capsys.readouterr().out
    monkeypatch.setenv("HOSEN_DATABASE_URL", f"sqlite:///{path}")
    assert main(["inbox", "--replay-spool"]) == 0
    assert "1 replayed" in capsys.readouterr().out
    assert scan(spool_dir) == (0, 0)


def test_a_message_the_database_refuses_is_set_aside_not_holding_the_rest(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, max_bytes=10**6, max_age=timedelta(days=1), clock=utcnow)

    def arrival(sid: str, channel: Channel = Channel.SMS) -> Arrival:
        return Arrival(provider_key=f"sms:{sid}", channel=channel, address=DANA, payload={})

    spool.append_arrival(arrival("SMa"), received_at=utcnow())
    # A line no database can take (an unknown channel), between two good ones.
    spool._append("in", utcnow(), {"key": "sms:SMb", "channel": "pigeon", "address": DANA})
    spool.append_arrival(arrival("SMc"), received_at=utcnow())
    assert spool.replay(sessions) == 3
    assert inbox_keys(sessions) == ["sms:SMa", "sms:SMc"]
    assert not spool.active
    [kept] = (spool_dir / "rejected.jsonl").read_text().splitlines()
    assert '"sms:SMb"' in kept
    spool.close()
