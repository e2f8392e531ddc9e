"""Operator settings, read once from ``HOSEN_*`` environment variables and an optional ``.env``.

The variable names are a public contract for operators (see README, "Configuration").
A missing or malformed value fails at start with one line naming the setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import AnyHttpUrl, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.profile import DEFAULT_PROFILE_PATH

DEFAULT_DATABASE_URL = "sqlite:///var/hosen.sqlite3"
# Values that look like a secret but are a documentation placeholder: refused at start.
PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "changethis", "secret", "xxx", "todo"})


class SettingsError(Exception):
    """A setting is missing or malformed; ``str()`` is one line that names it."""


PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class Settings(BaseSettings):
    """Everything an operator can set. Built once per process by :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="HOSEN_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL
    profile: Path = DEFAULT_PROFILE_PATH
    default_region: str = "IL"
    timezone: str = "Asia/Jerusalem"

    telegram_token: str | None = None
    telegram_api_url: AnyHttpUrl = AnyHttpUrl("https://api.telegram.org")
    telegram_webhook_secret: str | None = None

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_api_url: AnyHttpUrl = AnyHttpUrl("https://api.twilio.com")

    public_url: AnyHttpUrl | None = None

    # Outbound rate limits, shared by every worker on one database.
    telegram_rate_per_second: PositiveFloat = 30.0
    telegram_rate_per_chat_per_second: PositiveFloat = 1.0
    sms_rate_per_second: PositiveFloat = 10.0
    # The fewest sends a worker keeps in flight per channel when it has messages waiting; above
    # it the worker adapts to the provider's round trips (dispatch.inflight). Twilio's client
    # (aiohttp) costs less per request the more requests share an event-loop turn, and Twilio
    # answers in a few hundred milliseconds, so even a 40-a-second account needs about 16;
    # python-telegram-bot's client (httpx) costs more per request the more connections its
    # pool holds, so Telegram starts from one.
    telegram_min_in_flight: PositiveInt = 1
    sms_min_in_flight: PositiveInt = 16

    # Where the webhooks keep inbound messages while the database is away (bots.spool): one
    # file per process, replayed into the inbox when the database answers. A full spool (or
    # one whose oldest message is older than the age limit) makes the webhooks answer 503.
    spool_dir: Path = Path("var/spool")
    spool_max_bytes: PositiveInt = 64 * 1024 * 1024
    spool_max_age_hours: PositiveFloat = 72.0
    # How long a webhook keeps trying the database before spooling: well within Twilio's
    # 15-second webhook timeout, with room for the fsync and the answer.
    spool_after_seconds: Annotated[float, Field(ge=0, le=10)] = 5.0

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}; use an ISO 3166 code such as IL")
        return region

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("telegram_token", "twilio_auth_token", "telegram_webhook_secret")
    @classmethod
    def _not_placeholder(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; set the real secret or leave it unset")
        return value or None

    @field_validator("twilio_from")
    @classmethod
    def _e164_sender(cls, value: str | None) -> str | None:
        if value and not (value.startswith("+") or value.startswith("MG")):
            raise ValueError(
                "must be an E.164 number such as +972501234567 or a Messaging Service SID"
            )
        return value or None

    @property
    def zone_info(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_token is not None

    @property
    def sms_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from)

    def channel_summary(self) -> str:
        """One line saying which channels are on and, for the ones that are off, why."""
        parts = [
            "Telegram on" if self.telegram_enabled else "Telegram off (HOSEN_TELEGRAM_TOKEN unset)",
            "SMS on"
            if self.sms_enabled
            else "SMS off (HOSEN_TWILIO_ACCOUNT_SID / _AUTH_TOKEN / _FROM unset)",
        ]
        return "; ".join(parts)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "?"
    return f"HOSEN_{name.upper()}: {first['msg'].removeprefix('Value error, ')}"


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation failure into a one-line :class:`SettingsError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
