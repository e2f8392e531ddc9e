"""The worker with the real python-telegram-bot and twilio clients against the loopback fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pydantic import AnyHttpUrl
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.languages import Language
from config.settings import Settings
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.delivery import record_sms_status
from dispatch.models import (
    BlockReason,
    ChannelBlock,
    OutboxMessage,
    OutboxStatus,
    Task,
)
from dispatch.senders import build_senders
from dispatch.worker import Worker, WorkerConfig
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry.db import utcnow
from registry.models import Authority, Channel
from tests.dispatch.conftest import MakePerson

pytestmark = [pytest.mark.db, pytest.mark.e2e]


def drain(worker: Worker, sessions: sessionmaker[Session], rounds: int = 20) -> None:
    async def go() -> None:
        async with worker:
            for _ in range(rounds):
                if await worker.run_once() == 0:
                    with sessions() as session:
                        left = session.scalars(
                            select(OutboxMessage.id).where(
                                OutboxMessage.status.in_(
                                    (OutboxStatus.QUEUED, OutboxStatus.SENDING)
                                )
                            )
                        ).first()
                    if left is None:
                        return

    asyncio.run(go())


def test_a_check_in_reaches_everyone_over_the_real_clients(
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
    log_secrets: list[str],
) -> None:
    wired = settings_for_fakes(settings, telegram=fake_telegram, twilio=fake_twilio).model_copy(
        update={
            "public_url": AnyHttpUrl("https://hosen.example.org"),
            "telegram_rate_per_second": 500.0,
            "sms_rate_per_second": 500.0,
        }
    )
    on_telegram = [make_person(needs=("lives_alone",), language=Language.EN) for _ in range(5)]
    by_sms = [
        make_person(telegram=False, needs=("mobility",), language=Language.HE) for _ in range(5)
    ]
    blocked = make_person(needs=("sight",), language=Language.EN)
    dead_end = make_person(telegram=False, needs=("sight",), name="Lea Gold", address="Oren 2")
    buddy = make_person(is_volunteer=True, language=Language.EN)
    make_buddy(dead_end, buddy)
    # Neither tokens (checked by the fixture) nor anyone's name, phone or address may be logged.
    for person in [*on_telegram, *by_sms, blocked, dead_end, buddy]:
        log_secrets.extend(v for v in (person.name, person.phone, person.address) if v)
    assert blocked.telegram_chat_id is not None and dead_end.phone is not None
    fake_telegram.blocked.add(blocked.telegram_chat_id)
    fake_twilio.unsubscribed.add(dead_end.phone)
    with sessions() as session:
        campaign = start_drill_checkin(
            session,
            authority=authority,
            audience=Audience(residents_only=True),
            started_by="test",
            now=utcnow(),
        )
        session.commit()
    worker = Worker(
        sessions=sessions, senders=build_senders(wired), settings=wired, config=WorkerConfig()
    )

    drain(worker, sessions)

    for person in on_telegram:
        assert person.telegram_chat_id is not None
        message = fake_telegram.last_sent(person.telegram_chat_id)
        assert message["text"].startswith("[DRILL] ")
        keyboard = message["reply_markup"]["inline_keyboard"]
        assert [b["callback_data"] for b in keyboard[0]] == [
            f"c:{campaign.id}:ok",
            f"c:{campaign.id}:help",
        ]
    for person in by_sms:
        assert person.phone is not None
        sms = fake_twilio.last_sent(person.phone)
        assert sms["body"].startswith("[תרגיל] ")
        assert "\n1 אני בסדר\n2 דרושה לי עזרה" in sms["body"]
    # Blocked the bot: the check-in went by SMS instead.
    assert blocked.phone is not None
    assert "1 I'm OK" in fake_twilio.last_sent(blocked.phone)["body"]
    # Unsubscribed and no Telegram: the buddy got a home visit (by Telegram).
    assert buddy.telegram_chat_id is not None
    assert fake_telegram.last_sent(buddy.telegram_chat_id)["text"] == (
        "[DRILL] Please check on Lea Gold at Oren 2."
    )
    with sessions() as session:
        assert session.scalars(select(Task.resident_id)).all() == [dead_end.id]
        reasons = dict(session.execute(select(ChannelBlock.person_id, ChannelBlock.reason)).all())
        assert reasons == {blocked.id: BlockReason.BLOCKED, dead_end.id: BlockReason.UNSUBSCRIBED}
        sms_rows = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.channel == Channel.SMS, OutboxMessage.status == OutboxStatus.SENT
            )
        ).all()
        assert len(sms_rows) == 6
        # Twilio's delivery receipt for one of them.
        sid = sms_rows[0].provider_id
        assert sid is not None and sid in fake_twilio.messages
        assert fake_twilio.messages[sid]["status"] in ("queued", "accepted")
        assert record_sms_status(
            session, message_sid=sid, status="delivered", error_code=None, now=utcnow()
        )
        session.commit()
        assert session.get(OutboxMessage, sms_rows[0].id).status == OutboxStatus.DELIVERED  # type: ignore[union-attr]
    # Every SMS asked Twilio for delivery receipts at our public URL.
    assert set(fake_twilio._status_urls.values()) == {"https://hosen.example.org/sms/status"}
