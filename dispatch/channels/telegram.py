"""The Telegram channel, outbound: ``Bot.send_message``, the inline or reply keyboard a message's
buttons become, and python-telegram-bot's exceptions classified for the worker. (Telegram's
inbound side, the bot's handlers and webhook, is :mod:`bots.telegram`.)

Buttons follow the bots' convention: inline buttons, or a one-time reply keyboard when a
"kb:contact"/"kb:location" button is present.
"""

from __future__ import annotations

import asyncio
import functools
import warnings
from datetime import timedelta

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from telegram import error as tg_error

from dispatch.channels.base import (
    ButtonRows,
    Outgoing,
    Permanent,
    RateLimited,
    SendResult,
    Sent,
    Transient,
    short_error,
)
from dispatch.models import BlockReason
from registry.models import Channel


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def classify_telegram_error(exc: BaseException) -> SendResult:
    """Map a python-telegram-bot exception to a result. Order matters: BadRequest is a NetworkError."""
    if isinstance(exc, tg_error.RetryAfter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PTB warns about its int→timedelta migration
            retry_after = exc.retry_after
        return RateLimited(retry_after=max(_seconds(retry_after), 0.0))
    if isinstance(exc, tg_error.Forbidden):
        # "bot was blocked by the user", "user is deactivated", "bot can't initiate conversation"
        return Permanent(error=short_error(exc), reason=BlockReason.BLOCKED)
    if isinstance(exc, tg_error.BadRequest):
        if "chat not found" in exc.message.lower() or "user not found" in exc.message.lower():
            return Permanent(error=short_error(exc), reason=BlockReason.CHAT_NOT_FOUND)
        return Permanent(error=short_error(exc), reason=None)
    if isinstance(exc, tg_error.ChatMigrated):
        return Permanent(error=short_error(exc), reason=BlockReason.CHAT_NOT_FOUND)
    if isinstance(exc, tg_error.TimedOut | tg_error.NetworkError | asyncio.TimeoutError | OSError):
        return Transient(error=short_error(exc))
    if isinstance(exc, tg_error.InvalidToken | tg_error.EndPointNotFound | tg_error.Conflict):
        # Our configuration is wrong, not the person's channel: keep the row and retry later.
        return Transient(error=short_error(exc))
    if isinstance(exc, tg_error.TelegramError):
        return Transient(error=short_error(exc))
    raise exc


def telegram_markup(
    buttons: ButtonRows | None, *, kind: str = "reply"
) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None:
    """Inline buttons; a reply keyboard when one asks for the contact or location ("kb:")."""
    rows = tuple(tuple((b["text"], b["data"]) for b in row) for row in buttons or ())
    return _markup(rows, kind == "reply")


@functools.lru_cache(maxsize=4096)
def _markup(
    rows: tuple[tuple[tuple[str, str], ...], ...], clears_keyboard: bool
) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None:
    # A campaign's messages share a handful of keyboards (one per language); the markup objects
    # are frozen, so one built object serves them all.
    if not rows:
        # A conversation reply without buttons also clears a reply keyboard left by the bot.
        return ReplyKeyboardRemove() if clears_keyboard else None
    if any(data.startswith("kb:") for row in rows for _, data in row):
        return ReplyKeyboardMarkup(
            [[_keyboard_button(text, data) for text, data in row] for row in rows],
            one_time_keyboard=True,
            resize_keyboard=True,
        )
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text, callback_data=data) for text, data in row] for row in rows]
    )


def _keyboard_button(text: str, data: str) -> KeyboardButton:
    if data == "kb:contact":
        return KeyboardButton(text, request_contact=True)
    if data == "kb:location":
        return KeyboardButton(text, request_location=True)
    return KeyboardButton(text)


class TelegramSender:
    """Sends with ``Bot.send_message``; buttons become an inline keyboard."""

    channel = Channel.TELEGRAM

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def start(self) -> None:
        await self.bot.initialize()

    async def close(self) -> None:
        await self.bot.shutdown()

    async def send(self, message: Outgoing) -> SendResult:
        try:
            sent = await self.bot.send_message(
                chat_id=int(message.address),
                text=message.text,
                reply_markup=telegram_markup(message.buttons, kind=message.kind),
            )
        except (TimeoutError, tg_error.TelegramError, OSError) as exc:
            return classify_telegram_error(exc)
        return Sent(provider_id=str(sent.message_id))
