"""``hosen worker`` as an operator runs it: a process, its output, against the Twilio fake."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings, reveal
from dispatch.models import OutboxMessage, OutboxStatus
from dispatch.outbox import enqueue
from fakes.leaks import assert_no_secret_in
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry.models import Channel

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.db


def worker_once(**settings: str) -> subprocess.CompletedProcess[str]:
    """``hosen worker --once`` in its own process, with only the given ``HOSEN_*`` settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOSEN_")}
    return subprocess.run(
        [sys.executable, "-m", "hosen", "worker", "--once"],
        cwd=ROOT,
        env={**env, **settings},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_worker_says_what_happened_not_every_request(
    sessions: sessionmaker[Session], settings: Settings, fake_twilio: FakeTwilio
) -> None:
    """twilio's client logs ten lines a request at INFO: none of them reach the worker's output."""
    wired = settings_for_fakes(settings, twilio=fake_twilio)
    with sessions() as session:
        messages = [
            enqueue(
                session,
                channel=Channel.SMS,
                address=f"+97250555{n:04d}",
                text="drill: are you OK? 1 OK 2 help",
                person_id=None,
            )
            for n in range(3)
        ]
        session.commit()
        ids = [message.id for message in messages]

    done = worker_once(
        HOSEN_DATABASE_URL=wired.database_url,
        HOSEN_TWILIO_ACCOUNT_SID=wired.twilio_account_sid or "",
        HOSEN_TWILIO_AUTH_TOKEN=reveal(wired.twilio_auth_token) or "",
        HOSEN_TWILIO_FROM=wired.twilio_from or "",
        HOSEN_TWILIO_API_URL=str(wired.twilio_api_url),
    )

    assert done.returncode == 0, done.stderr
    assert "3 messages handled" in done.stdout
    assert all(fake_twilio.sent_to(f"+97250555{n:04d}") for n in range(3))
    assert "Twilio API" not in done.stderr and "Headers" not in done.stderr, done.stderr
    assert_no_secret_in(done.stdout + done.stderr, [fake_twilio.auth_token])
    with sessions() as session:
        assert {session.get_one(OutboxMessage, i).status for i in ids} == {OutboxStatus.SENT}


def test_the_worker_never_logs_the_bot_token(
    sessions: sessionmaker[Session], settings: Settings, fake_telegram: FakeTelegram
) -> None:
    """httpx logs every request URL at INFO, and a Bot API URL holds the token; the worker
    builds its bot before it sets up logging, which must not open httpx's log again."""
    wired = settings_for_fakes(settings, telegram=fake_telegram)
    with sessions() as session:
        enqueue(session, channel=Channel.TELEGRAM, address="4242", text="drill: are you OK?")
        session.commit()

    done = worker_once(
        HOSEN_DATABASE_URL=wired.database_url,
        HOSEN_TELEGRAM_TOKEN=reveal(wired.telegram_token) or "",
        HOSEN_TELEGRAM_API_URL=str(wired.telegram_api_url),
    )

    assert done.returncode == 0, done.stderr
    assert "1 messages handled" in done.stdout
    assert fake_telegram.sent_to(4242)
    assert_no_secret_in(done.stdout + done.stderr, [fake_telegram.token])


def test_a_rejected_bot_token_is_one_line_and_sms_still_goes(
    sessions: sessionmaker[Session],
    settings: Settings,
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
) -> None:
    """python-telegram-bot's InvalidToken quotes the token: it must not reach the output, and
    Telegram refusing the bot must not keep the SMS from going."""
    wrong = f"{fake_telegram.token.split(':')[0]}:{secrets.token_urlsafe(27)}"
    wired = settings_for_fakes(settings, telegram=fake_telegram, twilio=fake_twilio)
    with sessions() as session:
        enqueue(session, channel=Channel.TELEGRAM, address="4242", text="drill: are you OK?")
        enqueue(session, channel=Channel.SMS, address="+972525550044", text="drill: OK?")
        session.commit()

    done = worker_once(
        HOSEN_DATABASE_URL=wired.database_url,
        HOSEN_TELEGRAM_TOKEN=wrong,
        HOSEN_TELEGRAM_API_URL=str(wired.telegram_api_url),
        HOSEN_TWILIO_ACCOUNT_SID=wired.twilio_account_sid or "",
        HOSEN_TWILIO_AUTH_TOKEN=reveal(wired.twilio_auth_token) or "",
        HOSEN_TWILIO_FROM=wired.twilio_from or "",
        HOSEN_TWILIO_API_URL=str(wired.twilio_api_url),
    )

    assert done.returncode == 0, done.stderr
    assert "1 messages handled" in done.stdout
    assert fake_twilio.sent_to("+972525550044")
    lines = [line for line in done.stderr.splitlines() if "telegram" in line.lower()]
    assert len(lines) == 1 and "not started (InvalidToken)" in lines[0], done.stderr
    assert_no_secret_in(done.stdout + done.stderr, [wrong, reveal(wired.twilio_auth_token) or ""])
