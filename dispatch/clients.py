"""Provider clients built from settings (temporary stand-in until the ``fakes`` branch's version
is merged; same names): python-telegram-bot's ``Bot`` and the async twilio ``Client``, both
pointed at HOSEN_TELEGRAM_API_URL / HOSEN_TWILIO_API_URL so tests and the demo use the fakes."""

from __future__ import annotations

from typing import Any

from telegram import Bot

from config.settings import Settings


def make_telegram_bot(settings: Settings) -> Bot:
    if settings.telegram_token is None:
        raise ValueError("HOSEN_TELEGRAM_TOKEN is not set")
    base = str(settings.telegram_api_url).rstrip("/")
    return Bot(settings.telegram_token, base_url=f"{base}/bot")


def make_twilio_client(settings: Settings) -> Any:
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    client = Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        http_client=AsyncTwilioHttpClient(),
    )
    client.api.base_url = str(settings.twilio_api_url).rstrip("/")
    return client
