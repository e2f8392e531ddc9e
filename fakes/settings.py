"""Settings that point Hosen's clients at running fakes (tests, the demo, the benchmarks)."""

from __future__ import annotations

from pydantic import AnyHttpUrl, SecretStr

from config.settings import Settings
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio


def settings_for_fakes(
    settings: Settings,
    *,
    telegram: FakeTelegram | None = None,
    twilio: FakeTwilio | None = None,
) -> Settings:
    """A copy of ``settings`` whose Telegram and/or Twilio settings name the given fakes."""
    update: dict[str, object] = {}
    if telegram is not None:
        update.update(
            telegram_token=SecretStr(telegram.token), telegram_api_url=AnyHttpUrl(telegram.url)
        )
    if twilio is not None:
        update.update(
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=SecretStr(twilio.auth_token),
            twilio_from=twilio.phone_number,
            twilio_api_url=AnyHttpUrl(twilio.url),
        )
    return settings.model_copy(update=update)
