"""The Telegram channel: outbound, ``Bot.send_message``, the inline or reply keyboard a message's
buttons become, and python-telegram-bot's exceptions classified for the worker; inbound, the
webhook's secret token checked, an update decoded into the inbox's :class:`Arrival` and the
processor's :class:`Delivery`, and a dialog :class:`Prompt` rendered as buttons. (The polling
loop and the webhook route that store updates are :mod:`bots.telegram`.)

Buttons follow one convention: inline buttons whose data is ``b:<step>:<value>``, or a one-time
reply keyboard when a "kb:contact"/"kb:location" button is present.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import warnings
from datetime import timedelta
from typing import Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram import error as tg_error

from config.i18n import t
from config.languages import Language
from dispatch.channels.base import (
    Arrival,
    ButtonRows,
    Delivery,
    Inbound,
    Outgoing,
    Permanent,
    Prompt,
    RateLimited,
    Rendered,
    Request,
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


# --- inbound: the webhook's secret, updates decoded, prompts rendered ------------------------

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# A bot button's callback data is ``b:<step>:<value>``, so that a tap on an old keyboard is
# recognised as old (its step is not the current one) and answered with the current question.
CALLBACK_PREFIX = "b:"
# Buttons that ask for a contact or a location: rendered as a one-time reply keyboard.
CONTACT_BUTTON = "kb:contact"
LOCATION_BUTTON = "kb:location"
_SHORT_LABEL = 14  # labels up to this length sit two to a row


def from_telegram(given: bytes, secret: str | None) -> bool:
    """Whether a webhook call carries our secret (the ``SECRET_HEADER`` Telegram sends):
    compared in constant time; with none configured, never."""
    expected = (secret or "").encode()
    return bool(expected) and hmac.compare_digest(given, expected)


def delivery_from_payload(payload: dict[str, Any]) -> Delivery | None:
    """The delivery for an update as stored in the inbox (``Update.to_dict()``)."""
    plain = _plain_delivery(payload)
    if plain is not None:
        return plain
    return delivery_from_update(Update.de_json(payload), payload=payload)


def _plain_delivery(payload: dict[str, Any]) -> Delivery | None:
    """What :func:`delivery_from_update` makes of the two updates a check-in brings by the
    thousand, a button press and a typed text, read from the stored dict itself; None for any
    other shape, which python-telegram-bot decodes. Building its objects cost more than the
    rest of processing such a reply."""
    update_id = payload.get("update_id")
    if not isinstance(update_id, int) or len(payload) != 2:
        return None
    key = f"tg:{update_id}"
    query = payload.get("callback_query")
    if query is not None:
        if not _has(query, str, "id", "chat_instance") or not _is_user(query.get("from")):
            return None
        data = query.get("data", "")
        message = query.get("message")
        chat = message.get("chat") if isinstance(message, dict) else None
        if not isinstance(data, str) or (message is not None and not _is_message(message)):
            return None
        assert chat is None or isinstance(chat, dict)
        private = chat is None or chat["type"] == "private"
        address = str(chat["id"] if chat is not None else query["from"]["id"])
        inbound = Inbound(
            channel=Channel.TELEGRAM, address=address, button=data.removeprefix(CALLBACK_PREFIX)
        )
        return Delivery(provider_key=key, inbound=inbound, payload=payload, group_chat=not private)
    said: Any = payload.get("message")
    if not _is_message(said) or ("from" in said and not _is_user(said["from"])):
        return None
    text = said.get("text")
    if not isinstance(text, str) or "contact" in said or "location" in said:
        return None
    chat = said["chat"]
    private = chat["type"] == "private"
    inbound = Inbound(channel=Channel.TELEGRAM, address=str(chat["id"]), text=text)
    return Delivery(
        provider_key=key,
        inbound=inbound,
        payload=payload,
        group_chat=not private,
        addressed_to_bot=not private and text.startswith("/"),
    )


def _has(holder: Any, kind: type, *names: str) -> bool:
    return isinstance(holder, dict) and all(isinstance(holder.get(n), kind) for n in names)


def _is_message(message: Any) -> bool:
    """The fields python-telegram-bot requires of a message, and of its chat."""
    if not _has(message, int, "message_id", "date"):
        return False
    chat = message.get("chat")
    return _has(chat, int, "id") and isinstance(chat.get("type"), str)


def _is_user(user: Any) -> bool:
    return (
        _has(user, int, "id")
        and isinstance(user.get("is_bot"), bool)
        and isinstance(user.get("first_name"), str)
    )


def delivery_from_update(
    update: Update, *, payload: dict[str, Any] | None = None
) -> Delivery | None:
    """The inbound delivery for an update (``None`` for an update without a chat, e.g. a poll);
    ``payload``: the update as a dict when the caller has it already (the stored one)."""
    key = f"tg:{update.update_id}"
    if payload is None:
        payload = update.to_dict()
    query = update.callback_query
    if query is not None:
        chat = query.message.chat if query.message is not None else None
        address = str(chat.id if chat is not None else query.from_user.id)
        data = query.data or ""
        button = data.removeprefix(CALLBACK_PREFIX)
        private = chat is None or chat.type == "private"
        return Delivery(
            provider_key=key,
            inbound=Inbound(channel=Channel.TELEGRAM, address=address, button=button),
            payload=payload,
            group_chat=not private,
        )
    message = update.message
    if message is None:
        chat = update.effective_chat
        if chat is None:
            return None
        # Edited messages, channel posts, membership changes: stored, not acted on.
        inbound = Inbound(channel=Channel.TELEGRAM, address=str(chat.id))
        return Delivery(provider_key=key, inbound=inbound, payload=payload, ignored=True)
    chat = message.chat
    text = message.text
    contact_phone = None
    own = False
    if message.contact is not None:
        contact_phone = message.contact.phone_number
        sender = message.from_user.id if message.from_user else None
        own = sender is not None and message.contact.user_id == sender
    location = (message.location.latitude, message.location.longitude) if message.location else None
    unsupported = text is None and contact_phone is None and location is None
    inbound = Inbound(
        channel=Channel.TELEGRAM,
        address=str(chat.id),
        text=text,
        contact_phone=contact_phone,
        contact_is_sender=own,
        location=location,
        unsupported=unsupported,
    )
    private = chat.type == "private"
    return Delivery(
        provider_key=key,
        inbound=inbound,
        payload=payload,
        group_chat=not private,
        addressed_to_bot=not private and (text or "").startswith("/"),
    )


# Where an update's chat is, for the kinds of update the bot asks for (and a few more).
_CHAT_HOLDERS = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
)


def arrival_from_json(data: Any) -> Arrival | None:
    """What the inbox stores for an update as Telegram sent it (None without an ``update_id``).

    Only the key and the chat are read here (the chat orders one person's messages); the
    processor parses the rest later (:func:`delivery_from_payload`).
    """
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        return None
    chat: Any = None
    query = data.get("callback_query")
    if isinstance(query, dict):
        message = query.get("message")
        holder = message.get("chat") if isinstance(message, dict) else None
        chat = holder.get("id") if isinstance(holder, dict) else None
        if chat is None and isinstance(query.get("from"), dict):
            chat = query["from"].get("id")
    else:
        for name in _CHAT_HOLDERS:
            holder = data.get(name)
            if isinstance(holder, dict) and isinstance(holder.get("chat"), dict):
                chat = holder["chat"].get("id")
                break
    return Arrival(
        provider_key=f"tg:{data['update_id']}",
        channel=Channel.TELEGRAM,
        address=str(chat) if chat is not None else "",
        payload=data,
    )


def button_press_id(data: Any) -> str | None:
    """The callback query id of an update that is a button press, else None."""
    query = data.get("callback_query") if isinstance(data, dict) else None
    if isinstance(query, dict) and query.get("id"):
        return str(query["id"])
    return None


def render_prompt(prompt: Prompt, language: Language) -> Rendered:
    """A prompt as Telegram shows it: inline buttons (two short ones to a row), a reply keyboard
    button for a contact or a location, a done row for a multiple choice, back and cancel."""
    rows: list[list[tuple[str, str]]] = []
    for request in prompt.requests:
        if request == Request.CONTACT:
            rows.append([(t(language, "bot.telegram.share_contact"), CONTACT_BUTTON)])
        else:
            rows.append([(t(language, "bot.telegram.share_location"), LOCATION_BUTTON)])
    row: list[tuple[str, str]] = []
    for choice in prompt.choices:
        label = f"✅ {choice.label}" if choice.value in prompt.selected else choice.label
        button = (label, f"{CALLBACK_PREFIX}{prompt.step}:{choice.value}")
        if len(choice.label) > _SHORT_LABEL:
            if row:
                rows.append(row)
                row = []
            rows.append([button])
            continue
        row.append(button)
        if len(row) == 2:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    text = prompt.text
    if prompt.multi:
        rows.append([(t(language, "bot.nav.done"), f"{CALLBACK_PREFIX}{prompt.step}:done")])
        text = f"{text}\n{t(language, 'bot.telegram.multi_hint')}"
    if prompt.navigation:
        rows.append(
            [
                (t(language, "bot.nav.back"), f"{CALLBACK_PREFIX}{prompt.step}:_back"),
                (t(language, "bot.nav.cancel"), f"{CALLBACK_PREFIX}{prompt.step}:_cancel"),
            ]
        )
    return Rendered(text=text, buttons=rows or None)
