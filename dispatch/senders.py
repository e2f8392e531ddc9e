"""The channel senders: one module per channel in :mod:`dispatch.channels` (Telegram, SMS,
voice), each with its sending, its provider's errors classified and its rendering; this module
gathers them for the worker (:func:`build_senders`) and keeps the names the rest of the code
imports from here.

A sender takes one outbox row (as an :class:`Outgoing`) and returns a classified result, never
raises for a provider answer: the worker decides what happens next from the class alone (see
:mod:`dispatch.channels.base`).
"""

from __future__ import annotations

from config.settings import Settings
from dispatch.channels.base import (
    DEFAULT_RATE_LIMIT_PAUSE,
    ButtonRows,
    Outgoing,
    Permanent,
    RateLimited,
    Sender,
    SendResult,
    Sent,
    Transient,
    short_error,
)
from dispatch.channels.sms import (
    TWILIO_DELIVERY_PERMANENT,
    TWILIO_PERMANENT,
    SmsSender,
    choice_from_reply,
    classify_twilio_error,
    numbered_choices,
)
from dispatch.channels.telegram import TelegramSender, classify_telegram_error, telegram_markup
from dispatch.channels.voice import VoiceSender
from registry.models import Channel

__all__ = [
    "DEFAULT_RATE_LIMIT_PAUSE",
    "TWILIO_DELIVERY_PERMANENT",
    "TWILIO_PERMANENT",
    "ButtonRows",
    "Outgoing",
    "Permanent",
    "RateLimited",
    "SendResult",
    "Sender",
    "Sent",
    "SmsSender",
    "TelegramSender",
    "Transient",
    "VoiceSender",
    "build_senders",
    "choice_from_reply",
    "classify_telegram_error",
    "classify_twilio_error",
    "numbered_choices",
    "short_error",
    "telegram_markup",
]


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
    if settings.voice_enabled:
        assert settings.twilio_from is not None and settings.public_url is not None
        senders[Channel.VOICE] = VoiceSender(
            lambda: make_twilio_client(settings),
            from_=settings.twilio_from,
            public_url=str(settings.public_url),
        )
    return senders
