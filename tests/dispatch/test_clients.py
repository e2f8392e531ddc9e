"""The production client factories talk to whatever HOSEN_*_API_URL names: here, the fakes."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from pydantic import SecretStr
from telegram import Bot

from config.settings import Settings, SettingsError
from dispatch.clients import (
    make_telegram_bot,
    make_twilio_sync_client,
    open_twilio_client,
    request_leaving,
    telegram_api_urls,
)
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from tests.loopback_server import serve

pytestmark = pytest.mark.e2e


def test_telegram_bot_uses_the_configured_api_url(
    fake_telegram: FakeTelegram, fake_settings: Settings, log_secrets: list[str]
) -> None:
    dana = fake_telegram.new_user()

    async def run() -> int:
        async with make_telegram_bot(fake_settings) as bot:
            assert isinstance(bot, Bot)
            message = await bot.send_message(dana.id, "שלום")
            return message.message_id

    assert asyncio.run(run()) == 1
    assert fake_telegram.last_sent(dana.id)["text"] == "שלום"


def test_telegram_urls_tolerate_a_trailing_slash(unit_settings: Settings) -> None:
    settings = unit_settings.model_copy(update={"telegram_api_url": "http://127.0.0.1:9/"})
    assert telegram_api_urls(settings) == ("http://127.0.0.1:9/bot", "http://127.0.0.1:9/file/bot")


def test_async_twilio_client_uses_the_configured_api_url(
    fake_twilio: FakeTwilio, fake_settings: Settings, log_secrets: list[str]
) -> None:
    async def run() -> str:
        async with open_twilio_client(fake_settings) as client:
            message = await client.messages.create_async(
                to="+972501234567", from_=fake_settings.twilio_from, body="hi"
            )
            return str(message.sid)

    sid = asyncio.run(run())
    assert fake_twilio.messages[sid]["to"] == "+972501234567"


def test_async_twilio_client_reports_when_a_request_leaves(
    fake_twilio: FakeTwilio, fake_settings: Settings
) -> None:
    """The voice pacer counts a call from when its request is written: the client reports that
    moment once per request, before the provider can have it, and nothing when nobody asks."""
    seen: list[int] = []

    async def run() -> None:
        async with open_twilio_client(fake_settings) as client:
            await client.messages.create_async(
                to="+972501234567", from_=fake_settings.twilio_from, body="unwatched"
            )
            request_leaving.set(lambda: seen.append(len(fake_twilio.messages)))
            await client.messages.create_async(
                to="+972501234568", from_=fake_settings.twilio_from, body="watched"
            )

    asyncio.run(run())
    assert seen == [1]  # once, for the second request, while the fake had only the first
    assert len(fake_twilio.messages) == 2


def test_telegram_bot_reports_when_a_request_leaves(
    fake_telegram: FakeTelegram, fake_settings: Settings
) -> None:
    """The pacer counts a message from when its request is written: python-telegram-bot's
    transport reports that moment once per request, before the provider can have it, and
    nothing when nobody asks (the bot's own ``getMe`` at start, an unwatched send)."""
    dana = fake_telegram.new_user()
    seen: list[int] = []

    def sent_messages() -> int:
        return sum(call.method == "sendMessage" for call in fake_telegram.sent)

    async def run() -> None:
        async with make_telegram_bot(fake_settings) as bot:
            await bot.send_message(dana.id, "unwatched")
            request_leaving.set(lambda: seen.append(sent_messages()))
            await bot.send_message(dana.id, "watched")

    asyncio.run(run())
    assert seen == [1]  # once, for the second request, while the fake had only the first
    assert sent_messages() == 2


def test_sync_twilio_client_uses_the_configured_api_url(
    fake_twilio: FakeTwilio, fake_settings: Settings
) -> None:
    client = make_twilio_sync_client(fake_settings)
    message = client.messages.create(to="+972501234567", from_=fake_settings.twilio_from, body="hi")
    assert message.sid in fake_twilio.messages


def test_async_twilio_timeout_is_applied(unit_settings: Settings) -> None:
    """twilio itself passes no timeout per request; the factory's timeout must still hold."""

    async def run() -> None:
        released = asyncio.Event()

        async def never_answers(request: web.Request) -> web.Response:
            await released.wait()
            return web.Response()

        runner, base = await serve(never_answers, "/{tail:.*}")
        settings = unit_settings.model_copy(
            update={
                "twilio_account_sid": "AC" + "0" * 32,
                "twilio_auth_token": SecretStr("f" * 32),
                "twilio_api_url": base,
            }
        )
        try:
            async with open_twilio_client(settings, timeout=0.2) as client:
                with pytest.raises(TimeoutError):
                    await client.messages.create_async(
                        to="+972501234567", from_="+972559000001", body="x"
                    )
        finally:
            released.set()
            await runner.cleanup()

    asyncio.run(run())


def test_missing_credentials_are_named(unit_settings: Settings) -> None:
    with pytest.raises(SettingsError, match="HOSEN_TELEGRAM_TOKEN"):
        make_telegram_bot(unit_settings)
    with pytest.raises(SettingsError, match="HOSEN_TWILIO_ACCOUNT_SID"):
        make_twilio_sync_client(unit_settings)


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    from datetime import UTC, datetime

    from dispatch.clients import retry_after_seconds

    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Sun, 22 Nov 2026 09:00:05 GMT", now=now) == 5.0
    assert retry_after_seconds("Sun, 22 Nov 2026 08:59:00 GMT", now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
