"""A channel whose provider cannot be reached (or rejects the token) at start stays down alone:
the other channel sends, the failure is one line without the token, and the channel comes up
by itself once its provider answers. Real clients against the loopback fakes."""

from __future__ import annotations

import asyncio
import logging
import secrets

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from dispatch.models import OutboxMessage, OutboxStatus
from dispatch.outbox import enqueue
from dispatch.senders import build_senders
from dispatch.worker import Worker, WorkerConfig
from fakes.faults import Faults
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry.models import Channel

pytestmark = [pytest.mark.db, pytest.mark.e2e]


def _queue(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        enqueue(session, channel=Channel.TELEGRAM, address="4242", text="drill: are you OK?")
        enqueue(session, channel=Channel.SMS, address="+972525550042", text="drill: OK?")
        session.commit()


def _status(sessions: sessionmaker[Session], channel: Channel) -> OutboxStatus:
    with sessions() as session:
        return session.scalars(
            select(OutboxMessage.status).where(OutboxMessage.channel == channel)
        ).one()


def test_a_rejected_telegram_token_leaves_sms_working_and_is_never_printed(
    sessions: sessionmaker[Session],
    settings: Settings,
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
    log_secrets: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = f"{fake_telegram.token.split(':')[0]}:{secrets.token_urlsafe(27)}"
    log_secrets.append(wrong)
    wired = settings_for_fakes(settings, telegram=fake_telegram, twilio=fake_twilio).model_copy(
        update={"telegram_token": SecretStr(wrong)}
    )
    _queue(sessions)
    worker = Worker(sessions=sessions, senders=build_senders(wired), settings=wired)

    async def once() -> int:
        async with worker:
            return await worker.run_once()

    assert asyncio.run(once()) == 1
    assert _status(sessions, Channel.SMS) == OutboxStatus.SENT
    assert _status(sessions, Channel.TELEGRAM) == OutboxStatus.QUEUED  # waits, is not lost
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("telegram not started (InvalidToken)" in line for line in said), said


def test_an_unreachable_telegram_comes_up_in_the_background(
    sessions: sessionmaker[Session],
    settings: Settings,
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
    log_secrets: list[str],
) -> None:
    wired = settings_for_fakes(settings, telegram=fake_telegram, twilio=fake_twilio)
    fake_telegram.faults = Faults(server_error_rate=1.0, methods=frozenset({"getMe"}))
    _queue(sessions)
    worker = Worker(
        sessions=sessions,
        senders=build_senders(wired),
        settings=wired,
        config=WorkerConfig(restart_sender_after=0.05, idle_sleep=0.02),
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            for _ in range(3000):  # bounded (a minute at most), however busy the machine
                if _status(sessions, Channel.SMS) == OutboxStatus.SENT:
                    break
                await asyncio.sleep(0.02)
            assert _status(sessions, Channel.SMS) == OutboxStatus.SENT
            assert _status(sessions, Channel.TELEGRAM) == OutboxStatus.QUEUED
            fake_telegram.faults = Faults()  # Telegram answers again
            for _ in range(3000):
                if _status(sessions, Channel.TELEGRAM) == OutboxStatus.SENT:
                    break
                await asyncio.sleep(0.02)
            assert _status(sessions, Channel.TELEGRAM) == OutboxStatus.SENT
        finally:
            stop.set()
            await running

    asyncio.run(scenario())
