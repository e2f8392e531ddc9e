"""Operator settings, read once from ``HOSEN_*`` environment variables and an optional ``.env``.

The variable names are a public contract for operators (see README, "Configuration").
A missing or malformed value fails at start with one line naming the setting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from config.profile import DEFAULT_PROFILE_PATH

DEFAULT_DATABASE_URL = "sqlite:///var/hosen.sqlite3"
# Values that look like a secret but are a placeholder or a provider's documented example (the
# bot token in Telegram's Bot API documentation and tutorials): refused at start.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "password",
        "secret",
        "xxx",
        "todo",
        "110201543:aahdqtcvch1vgwjxfseofsas0k5paldsaw",
        "123456:abc-def1234ghikl-zyx57w2v1u123ew11",
        "your_auth_token",
    }
)
# The rule every secret meets (a bot token: the part after the colon).
SECRET_MIN_LENGTH = 24
SECRET_MIN_CLASSES = 2  # of: lower case, upper case, digits, other characters
SECRET_MIN_DISTINCT = 10  # different characters: refuses "x" * 32 and "abababab..."
TELEGRAM_TOKEN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}")
# A tile server's host[:port] as the Content-Security-Policy names it: letters, digits, dots and
# hyphens (an IPv6 literal in brackets), no placeholder.
TILE_HOST = re.compile(r"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")
# Loggers that would print the bot token (a Bot API URL holds it) or message texts at INFO.
TOKEN_LEAKING_LOGGERS = ("httpx", "httpcore", "telegram.Bot")
SECRET_FIELDS = (
    "telegram_token",
    "twilio_auth_token",
    "telegram_webhook_secret",
    "hash_key",
    "console_secret",
)


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
    # The PostgreSQL password in a file of its own (a Docker or systemd secret), put into
    # database_url's password: a password is then never pasted, unescaped, into a URL.
    database_password_file: Path | None = None
    profile: Path = DEFAULT_PROFILE_PATH
    default_region: str = "IL"
    timezone: str = "Asia/Jerusalem"

    # Secrets are SecretStr: printed, logged or put in a traceback they show as "**********";
    # reveal() gives the value to the one call that needs it.
    telegram_token: SecretStr | None = None
    telegram_api_url: AnyHttpUrl = AnyHttpUrl("https://api.telegram.org")
    telegram_webhook_secret: SecretStr | None = None

    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_api_url: AnyHttpUrl = AnyHttpUrl("https://api.twilio.com")

    public_url: AnyHttpUrl | None = None

    # Outbound rate limits, shared by every worker on one database.
    telegram_rate_per_second: PositiveFloat = 30.0
    telegram_rate_per_chat_per_second: PositiveFloat = 1.0
    sms_rate_per_second: PositiveFloat = 10.0
    # Phone calls: new calls a second (Twilio's default for an account is 1) and how many may
    # be in progress at once.
    voice_rate_per_second: PositiveFloat = 1.0
    voice_max_calls: PositiveInt = 10
    # The fewest sends a worker keeps in flight per channel when it has messages waiting; above
    # it the worker adapts to the provider's round trips (dispatch.inflight). Twilio's client
    # (aiohttp) costs less per request the more requests share an event-loop turn, and Twilio
    # answers in a few hundred milliseconds, so even a 40-a-second account needs about 16;
    # python-telegram-bot's client (httpx) costs more per request the more connections its
    # pool holds, so Telegram starts from one.
    telegram_min_in_flight: PositiveInt = 1
    sms_min_in_flight: PositiveInt = 16

    # Days raw inbound messages and the texts of sent messages are kept (dispatch.retention).
    retention_days: PositiveInt = 30
    # The key of every digest of a phone or chat id (registry.digests); kept out of the database.
    hash_key: SecretStr | None = None

    # How long a staff PIN given by SMS stands for that member's further staff SMS.
    staff_pin_session_minutes: PositiveInt = 15

    # Where the webhooks keep inbound messages while the database is away (bots.spool): one
    # file per process, replayed into the inbox when the database answers. A full spool (or
    # one whose oldest message is older than the age limit) makes the webhooks answer 503.
    spool_dir: Path = Path("var/spool")
    spool_max_bytes: PositiveInt = 64 * 1024 * 1024
    spool_max_age_hours: PositiveFloat = 72.0
    # How long a webhook keeps trying the database before spooling: well within Twilio's
    # 15-second webhook timeout, with room for the fsync and the answer.
    spool_after_seconds: Annotated[float, Field(ge=0, le=10)] = 5.0

    # The officers' web console (hosen.console): the key that signs its session cookies (unset:
    # a random key per process, so a restart signs everyone out) and how long a sign-in lasts.
    console_secret: SecretStr | None = None
    console_session_hours: PositiveFloat = 12.0
    # The board's map: a tile server's URL template ({z}/{x}/{y}; one fixed host, which the
    # console's Content-Security-Policy then names), the attribution its terms require, and the
    # closest zoom it serves. Unset: no tiles (offline); the zones and shelters are drawn alike.
    map_tiles_url: str | None = None
    map_tiles_attribution: str | None = None
    map_tiles_max_zoom: Annotated[int, Field(ge=0, le=22)] = 18

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("map_tiles_url")
    @classmethod
    def _tile_template(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if "@" in parts.netloc or not TILE_HOST.fullmatch(parts.netloc):
            raise ValueError("must name one host (no {s} subdomains, no user name)")
        rest = value.split("://", 1)[1][len(parts.netloc) :]
        if sorted(re.findall(r"\{[^}]*\}", rest)) != ["{x}", "{y}", "{z}"]:
            raise ValueError("must hold {z}, {x} and {y} once each, and no other {...}")
        if any(c.isspace() or c in "'\";,<>" for c in value):
            raise ValueError("must not hold spaces, quotes, commas, semicolons or angle brackets")
        return value

    @model_validator(mode="after")
    def _tiles_attributed(self) -> Settings:
        if self.map_tiles_url and not (self.map_tiles_attribution or "").strip():
            raise ValueError(
                "HOSEN_MAP_TILES_ATTRIBUTION is needed with HOSEN_MAP_TILES_URL: tile servers "
                "require their attribution on the map (e.g. '© OpenStreetMap contributors')"
            )
        return self

    @field_validator("database_password_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no file {str(value)!r}")
        return value

    @model_validator(mode="after")
    def _password_from_file(self) -> Settings:
        if self.database_password_file is None:
            return self
        url = make_url(self.database_url)
        if url.get_backend_name() != "postgresql":
            raise ValueError("HOSEN_DATABASE_PASSWORD_FILE is for a postgresql:// URL")
        password = self.database_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        self.database_url = url.set(password=password).render_as_string(hide_password=False)
        return self

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

    @field_validator(*SECRET_FIELDS)
    @classmethod
    def _strong_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        problem = secret_problem(
            value.get_secret_value(), bot_token=info.field_name == "telegram_token"
        )
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("twilio_from")
    @classmethod
    def _e164_sender(cls, value: str | None) -> str | None:
        if value and not (value.startswith("+") or value.startswith("MG")):
            raise ValueError(
                "must be an E.164 number such as +972501234567 or a Messaging Service SID"
            )
        return value or None

    @property
    def map_tiles_origin(self) -> str | None:
        """The tile server's origin (scheme, host, port), the one the console's pages may load
        images from; None without tiles."""
        if not self.map_tiles_url:
            return None
        parts = urlsplit(self.map_tiles_url)
        return f"{parts.scheme}://{parts.netloc.lower()}"

    @property
    def zone_info(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_token is not None

    @property
    def sms_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from)

    @property
    def voice_enabled(self) -> bool:
        """Calls need Twilio, a calling number (not a Messaging Service) and a public URL at
        which Twilio fetches what the call says."""
        return bool(
            self.sms_enabled
            and self.twilio_from
            and self.twilio_from.startswith("+")
            and self.public_url is not None
        )

    def channel_summary(self) -> str:
        """One line saying which channels are on and, for the ones that are off, why."""
        parts = [
            "Telegram on" if self.telegram_enabled else "Telegram off (HOSEN_TELEGRAM_TOKEN unset)",
            "SMS on"
            if self.sms_enabled
            else "SMS off (HOSEN_TWILIO_ACCOUNT_SID / _AUTH_TOKEN / _FROM unset)",
            "calls on"
            if self.voice_enabled
            else "calls off (Twilio, a HOSEN_TWILIO_FROM number and HOSEN_PUBLIC_URL needed)",
        ]
        return "; ".join(parts)


def secret_problem(value: str, *, bot_token: bool = False) -> str | None:
    """Why a secret is refused (never quoting it), or None.

    The rule: not a placeholder or a documented example; at least SECRET_MIN_LENGTH characters
    of at least SECRET_MIN_CLASSES classes (lower case, upper case, digits, others) and
    SECRET_MIN_DISTINCT different characters. A bot token must look like one (digits, a colon,
    then the secret part, to which the rule applies).
    """
    if value.strip().lower() in PLACEHOLDER_SECRETS:
        return "is a placeholder or a documented example; set the real secret or leave it unset"
    if bot_token:
        if not TELEGRAM_TOKEN.fullmatch(value):
            return "is not a bot token as @BotFather gives it (digits, a colon, 30+ characters)"
        value = value.split(":", 1)[1]
    classes = sum(
        any(test(c) for c in value)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    if (
        len(value) < SECRET_MIN_LENGTH
        or classes < SECRET_MIN_CLASSES
        or len(set(value)) < SECRET_MIN_DISTINCT
    ):
        return (
            f"is too weak: use at least {SECRET_MIN_LENGTH} random characters of at least "
            f"{SECRET_MIN_CLASSES} kinds (letters, digits, symbols), e.g. `openssl rand -hex 32`"
        )
    return None


def reveal(secret: SecretStr | None) -> str | None:
    """The value of a secret setting, for the one call that hands it to a provider."""
    return secret.get_secret_value() if secret is not None else None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:  # a rule across settings names them itself
        return message
    return f"HOSEN_{str(first['loc'][0]).upper()}: {message}"


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation failure into a one-line :class:`SettingsError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
