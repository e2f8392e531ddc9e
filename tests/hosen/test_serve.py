"""``hosen serve`` as an operator starts it: with no channel configured it still starts and says so."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from dispatch.outbox import enqueue
from fakes.leaks import assert_no_secret_in
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from hosen.commands.serve import run_serve
from hosen.context import CommandError, Context
from registry.models import Channel

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_serve_starts_without_channels_and_says_which_are_off(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSEN_")}
    env["HOSEN_DATABASE_URL"] = f"sqlite:///{tmp_path / 'hosen.sqlite3'}"
    # serve refuses a database that was never created (a mistyped path); upgrade creates it.
    subprocess.run(
        [sys.executable, "-m", "hosen", "db", "upgrade"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "hosen", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "Telegram off" in first and "SMS off" in first, first
        for _ in range(600):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["database"] == "up"
        assert answer.json()["spool"]["pending"] == 0
        # Without Twilio settings the SMS webhook refuses everything rather than trusting it.
        refused = httpx.post(f"http://127.0.0.1:{port}/sms/inbound", data={"From": "+972525551234"})
        assert refused.status_code == 403
    finally:
        process.terminate()
        process.communicate(timeout=10)  # also closes the pipes


def test_webhook_mode_needs_a_secret(unit_settings: Settings) -> None:
    settings = unit_settings.model_copy(
        update={
            "telegram_token": SecretStr("123:" + "x" * 35),
            "public_url": AnyHttpUrl("https://hosen.example.org"),
        }
    )
    with pytest.raises(CommandError, match="HOSEN_TELEGRAM_WEBHOOK_SECRET"):
        run_serve(
            Context(settings=settings),
            argparse.Namespace(host="127.0.0.1", port=8000, no_worker=True),
        )


def test_serve_runs_one_scheduler(database_url: str, engine: object, sessions: object) -> None:
    """The serving process offers the scheduler; it takes the lock and runs the sweeps."""
    import asyncio

    from hosen.app import build_app

    settings = Settings(database_url=database_url, _env_file=None)  # type: ignore[call-arg]
    ctx = Context(settings=settings)
    app = build_app(ctx, run_worker=False, run_bot=False)
    runtime = app.state.runtime

    async def serve_briefly() -> set[str]:
        async with app.router.lifespan_context(app):
            for _ in range(1200):
                if runtime.scheduler is not None and runtime.scheduler.active:
                    break
                await asyncio.sleep(0.05)
            assert runtime.scheduler.active, "the only serving process holds the scheduler lock"
            return {job.id for job in runtime.scheduler.scheduler.get_jobs()}

    try:
        jobs = asyncio.run(serve_briefly())
        assert {"sweep", "reload"} <= jobs
        assert not runtime.scheduler.active, "stopped with the server"
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.db
def test_serve_with_a_rejected_telegram_token_keeps_sms_and_never_prints_it(
    database_url: str,
    sessions: sessionmaker[Session],
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
) -> None:
    wrong = f"{fake_telegram.token.split(':')[0]}:{secrets.token_urlsafe(27)}"
    with sessions() as session:
        enqueue(session, channel=Channel.SMS, address="+972525550043", text="drill: OK?")
        session.commit()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSEN_")}
    env.update(
        HOSEN_DATABASE_URL=database_url,
        HOSEN_TELEGRAM_TOKEN=wrong,
        HOSEN_TELEGRAM_API_URL=fake_telegram.url,
        HOSEN_TWILIO_ACCOUNT_SID=fake_twilio.account_sid,
        HOSEN_TWILIO_AUTH_TOKEN=fake_twilio.auth_token,
        HOSEN_TWILIO_FROM=fake_twilio.phone_number,
        HOSEN_TWILIO_API_URL=fake_twilio.url,
        PYTHONPATH=str(ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "hosen", "serve", "--port", str(port), "--no-scheduler"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(300):  # bounded wait for the SMS, however busy the machine
            if fake_twilio.sent_to("+972525550043"):
                break
            time.sleep(0.1)
        sent = bool(fake_twilio.sent_to("+972525550043"))
        healthy = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
    assert sent and healthy, out + err
    assert process.returncode in (0, -15), err
    assert "telegram not started (InvalidToken)" in err, err
    assert "Traceback" not in err, err
    assert_no_secret_in(out + err, [wrong, fake_twilio.auth_token], where="serve's output")
