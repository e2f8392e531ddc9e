"""The channel senders: the only place outbound python-telegram-bot and twilio calls are made.

A sender takes one outbox row (as an :class:`Outgoing`) and returns a classified result, never
raises for a provider answer: the worker decides what happens next from the class alone.

* :class:`Sent` — the provider accepted it (with its message id / MessageSid);
* :class:`Transient` — 5xx, timeout, connection error: retry later with backoff;
* :class:`RateLimited` — Telegram ``RetryAfter`` or Twilio 429: pause the whole channel;
* :class:`Permanent` — this channel can never reach this person (blocked, unsubscribed,
  invalid number, landline, chat not found), or the provider refused this message for good.

SMS has no buttons: whoever enqueues an SMS writes the choices into its text
(:func:`numbered_choices`: "1 ...", "2 ...") and :func:`choice_from_reply` maps an answer back to
the button's data; the SMS sender sends the text as it is. Telegram buttons follow the bots'
convention: inline buttons, or a one-time reply keyboard when a "kb:contact"/"kb:location"
button is present.
"""

from __future__ import annotations

import asyncio
import functools
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import aiohttp
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from telegram import error as tg_error

from config.settings import Settings
from dispatch.models import BlockReason
from registry.models import Channel

ButtonRows = Sequence[Sequence[Mapping[str, str]]]

# Twilio error codes that mean "this number will never get an SMS from us".
TWILIO_PERMANENT: dict[int, BlockReason] = {
    21610: BlockReason.UNSUBSCRIBED,
    21211: BlockReason.INVALID_NUMBER,
    21614: BlockReason.LANDLINE,
    21612: BlockReason.UNDELIVERABLE,  # the From/To pair cannot be routed
    21408: BlockReason.UNDELIVERABLE,  # region not enabled for this account
}
# Delivery-receipt error codes (StatusCallback ErrorCode) that mean the same.
TWILIO_DELIVERY_PERMANENT: dict[int, BlockReason] = {
    21610: BlockReason.UNSUBSCRIBED,
    30003: BlockReason.UNDELIVERABLE,  # unreachable handset
    30005: BlockReason.INVALID_NUMBER,  # unknown destination
    30006: BlockReason.LANDLINE,  # landline or unreachable carrier
}
DEFAULT_RATE_LIMIT_PAUSE = 1.0  # seconds, when a 429 names no Retry-After


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a sender needs from an outbox row (a plain value: no session crosses an await)."""

    id: int
    channel: Channel
    address: str
    text: str
    buttons: list[list[dict[str, str]]] | None = None
    kind: str = "reply"


@dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str


@dataclass(frozen=True, slots=True)
class Transient:
    error: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class RateLimited:
    retry_after: float


@dataclass(frozen=True, slots=True)
class Permanent:
    """``reason`` set: the channel is dead for this person; ``None``: only this message failed."""

    error: str
    reason: BlockReason | None


SendResult = Sent | Transient | RateLimited | Permanent


class Sender(Protocol):
    """One outbound channel."""

    channel: Channel

    async def start(self) -> None: ...

    async def send(self, message: Outgoing) -> SendResult: ...

    async def close(self) -> None: ...


# --- SMS rendering of choices, shared with bots/ ---------------------------------------------


def numbered_choices(text: str, buttons: ButtonRows | None) -> str:
    """The SMS form of a message with buttons: the text, then one "N label" line per button.

    Reply-keyboard buttons ("kb:" contact/location requests) have no SMS form and are left out.
    A button may carry its own number (``"n"``): an assignment offer's answers are numbered apart
    from a check-in's "1"/"2", so that the two never meet (see ``dispatch.offers``).
    """
    numbered = _numbered(buttons)
    if not numbered:
        return text
    return "\n".join([text, *(f"{number} {b['text']}" for number, b in numbered)])


def choice_from_reply(reply: str, buttons: ButtonRows | None) -> str | None:
    """The button data an SMS answer "1", "2" ... stands for, or ``None``."""
    stripped = reply.strip().rstrip(".")
    if not stripped.isdecimal():
        return None
    for number, b in _numbered(buttons):
        if number == stripped:
            return b["data"]
    return None


def _numbered(buttons: ButtonRows | None) -> list[tuple[str, Mapping[str, str]]]:
    flat = [b for row in buttons or () for b in row if not b["data"].startswith("kb:")]
    return [(b.get("n") or str(i), b) for i, b in enumerate(flat, start=1)]


# --- Telegram -------------------------------------------------------------------------------


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
        return Permanent(error=_short(exc), reason=BlockReason.BLOCKED)
    if isinstance(exc, tg_error.BadRequest):
        if "chat not found" in exc.message.lower() or "user not found" in exc.message.lower():
            return Permanent(error=_short(exc), reason=BlockReason.CHAT_NOT_FOUND)
        return Permanent(error=_short(exc), reason=None)
    if isinstance(exc, tg_error.ChatMigrated):
        return Permanent(error=_short(exc), reason=BlockReason.CHAT_NOT_FOUND)
    if isinstance(exc, tg_error.TimedOut | tg_error.NetworkError | asyncio.TimeoutError | OSError):
        return Transient(error=_short(exc))
    if isinstance(exc, tg_error.InvalidToken | tg_error.EndPointNotFound | tg_error.Conflict):
        # Our configuration is wrong, not the person's channel: keep the row and retry later.
        return Transient(error=_short(exc))
    if isinstance(exc, tg_error.TelegramError):
        return Transient(error=_short(exc))
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


# --- SMS (Twilio) ---------------------------------------------------------------------------


def classify_twilio_error(
    status: int, code: int | None, error: str, *, retry_after: float | None = None
) -> SendResult:
    """Map a Twilio REST error (HTTP status, Twilio error code, the response's ``Retry-After``
    in seconds) to a result."""
    if code is not None and code in TWILIO_PERMANENT:
        return Permanent(error=f"twilio {code}", reason=TWILIO_PERMANENT[code])
    if status == 429 or code == 20429:
        return RateLimited(
            retry_after=DEFAULT_RATE_LIMIT_PAUSE if retry_after is None else retry_after
        )
    if status >= 500:
        return Transient(error=f"twilio HTTP {status}")
    if status in (401, 403, 404):
        # Account credentials or the sender number are wrong: nothing to do with the person.
        return Transient(error=f"twilio HTTP {status} {code or ''}".strip())
    return Permanent(error=f"twilio HTTP {status} {code or ''} {error}"[:200].strip(), reason=None)


class SmsSender:
    """Sends with the async twilio client. Buttons are ignored: an SMS row's text already carries
    its numbered choices (see :func:`numbered_choices`)."""

    channel = Channel.SMS

    def __init__(
        self, make_client: Callable[[], Any], *, from_: str, status_callback: str | None
    ) -> None:
        # The async twilio client binds to the running event loop: it is built in ``start``.
        self.make_client = make_client
        self.client: Any = None
        self.from_ = from_
        self.status_callback = status_callback

    async def start(self) -> None:
        if self.client is None:
            self.client = self.make_client()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.http_client.close()
            self.client = None

    async def send(self, message: Outgoing) -> SendResult:
        from twilio.base.exceptions import TwilioRestException

        params: dict[str, Any] = {
            "to": message.address,
            # The text already holds any numbered choices: whoever enqueued an SMS wrote them.
            "body": message.text,
        }
        if self.from_.startswith("MG"):
            params["messaging_service_sid"] = self.from_
        else:
            params["from_"] = self.from_
        if self.status_callback:
            params["status_callback"] = self.status_callback
        from dispatch.clients import twilio_retry_after

        twilio_retry_after.set(None)
        try:
            created = await self.client.messages.create_async(**params)
        except TwilioRestException as exc:
            return classify_twilio_error(
                int(exc.status), exc.code, str(exc.msg), retry_after=twilio_retry_after.get()
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Transient(error=_short(exc))
        return Sent(provider_id=str(created.sid))


_BOT_TOKEN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{20,}")


def _short(exc: BaseException) -> str:
    """An error line for ``last_error``: the exception's class and message, never a token."""
    return _BOT_TOKEN.sub("<token>", f"{type(exc).__name__}: {exc}")[:200]


def build_senders(settings: Settings) -> dict[Channel, Sender]:
    """A sender for every channel the settings switch on (see ``Settings.channel_summary``)."""
    from dispatch.clients import make_telegram_bot, make_twilio_client

    senders: dict[Channel, Sender] = {}
    if settings.telegram_enabled:
        senders[Channel.TELEGRAM] = TelegramSender(make_telegram_bot(settings))
    if settings.sms_enabled:
        assert settings.twilio_from is not None
        callback = (
            str(settings.public_url).rstrip("/") + "/sms/status" if settings.public_url else None
        )
        senders[Channel.SMS] = SmsSender(
            lambda: make_twilio_client(settings),
            from_=settings.twilio_from,
            status_callback=callback,
        )
    return senders
