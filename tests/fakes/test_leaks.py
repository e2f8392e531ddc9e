"""The secret-in-logs guard finds a secret in its plain and encoded forms, and only then."""

from __future__ import annotations

import asyncio
import base64
import logging
from urllib.parse import quote

import pytest
from telegram import Bot

from dispatch.clients import quiet_token_leaking_loggers
from fakes.leaks import assert_no_secret_in, find_secrets
from fakes.telegram import FakeTelegram

TOKEN = "7012345678:AAH-secret_token/with+chars"


@pytest.mark.parametrize(
    "text",
    [
        f"GET https://api.telegram.org/bot{TOKEN}/getMe",
        f"url=/bot{quote(TOKEN, safe='')}",
        f"Authorization: Basic {base64.b64encode(TOKEN.encode()).decode()}",
    ],
    ids=["plain", "url-quoted", "base64"],
)
def test_a_leaked_secret_is_found(text: str) -> None:
    assert find_secrets(text, [TOKEN]) == [TOKEN]
    with pytest.raises(AssertionError, match="1 secret") as caught:
        assert_no_secret_in(text, [TOKEN])
    assert TOKEN not in str(caught.value)  # the failure message itself must not leak it


def test_clean_text_and_short_strings_pass() -> None:
    assert_no_secret_in("POST /bot<redacted>/sendMessage", [TOKEN, "ab"])


def test_the_fixture_sees_records_at_debug(
    log_secrets: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    logging.getLogger("hosen.test").debug("a debug line with no secret")
    assert "a debug line" in caplog.text
    log_secrets.append("never-logged-secret-123")


@pytest.mark.e2e
def test_the_guard_catches_httpx_logging_the_bot_token(
    fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    """Why dispatch.clients quiets httpx and telegram.Bot: they log URLs, token included."""
    loggers = [logging.getLogger(name) for name in ("httpx", "telegram.Bot")]
    previous = [logger.level for logger in loggers]

    def restore() -> None:
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)

    for logger in loggers:
        logger.setLevel(logging.NOTSET)
    caplog.set_level(logging.DEBUG)

    async def call() -> None:
        async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as bot:
            await bot.get_me()

    try:
        asyncio.run(call())
    finally:
        restore()
    assert find_secrets(caplog.text, [fake_telegram.token]) == [fake_telegram.token]

    caplog.clear()
    quiet_token_leaking_loggers()
    try:
        asyncio.run(call())
    finally:
        restore()
    assert find_secrets(caplog.text, [fake_telegram.token]) == []


def test_the_fake_fixtures_fail_a_test_with_violations() -> None:
    from tests.fakes_fixtures import _fail_on_violations

    _fail_on_violations("FakeTelegram", [])
    with pytest.raises(pytest.fail.Exception, match="1 spec violation"):
        _fail_on_violations("FakeTelegram", ["sendMessage: unknown field 'x'"])
