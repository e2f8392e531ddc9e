"""The one logging configuration of every ``hosen`` command (``logging.config.dictConfig``).

Long-running commands (``serve``, ``worker``, ``inbox``, ``scheduler``) log at INFO: a line for
what an operator needs to know, not a line per request. The others log warnings only, so their
output stays what they print.

twilio's clients log every request and answer at INFO, ten lines per SMS (URL and headers): at a
few thousand SMS a second that is tens of thousands of lines, and writing them would cost the
worker most of its time. APScheduler announces every run of every job. httpx logs every request
URL, and a Bot API URL holds the bot token. All of them are held at WARNING.

Every line also passes :class:`RedactingFormatter`, which replaces the configured secrets (the
tokens, the webhook secret, the hash key, the database password) wherever they appear, tracebacks included: a secret
that slips into an exception's text (python-telegram-bot's ``InvalidToken`` quotes the token)
still never reaches the log.
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import make_url

from config.settings import SECRET_FIELDS, TOKEN_LEAKING_LOGGERS, Settings, reveal

# Loggers that speak at INFO for every request or job run; their warnings still come through.
PER_REQUEST_LOGGERS = (
    "twilio.http_client",
    "twilio.async_http_client",
    "apscheduler",
    "uvicorn.access",
)
LONG_RUNNING = frozenset({"serve", "worker", "inbox", "scheduler"})
MASK = "[secret]"

_SECRETS: set[str] = set()


class RedactingFormatter(logging.Formatter):
    """A formatter that masks every registered secret in the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def keep_secret(values: Iterable[str | None]) -> None:
    """Register values never to be written (at least 8 characters: shorter would mask words)."""
    _SECRETS.update(value for value in values if value and len(value) >= 8)


def logging_config(level: str) -> dict[str, Any]:
    quiet = {name: {"level": "WARNING"} for name in (*PER_REQUEST_LOGGERS, *TOKEN_LEAKING_LOGGERS)}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "line": {
                "()": RedactingFormatter,
                "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": quiet,
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure_logging(settings: Settings | None = None, *, command: str | None = None) -> None:
    """Configure logging for one ``hosen`` command (INFO for the long-running ones)."""
    if settings is not None:
        keep_secret(reveal(getattr(settings, name)) for name in SECRET_FIELDS)
        keep_secret([make_url(settings.database_url).password])  # postgresql://user:PASSWORD@
    level = "INFO" if command is None or command in LONG_RUNNING else "WARNING"
    logging.config.dictConfig(logging_config(level))
