"""What every channel module shares: the outbox row a sender is given, the classified result it
returns (never an exception for a provider's answer: the worker decides from the class alone),
and the :class:`Sender` interface the worker speaks to; inbound, the neutral values a channel's
webhook decodes to (:class:`Arrival`, :class:`Delivery`, :class:`Inbound`) and the neutral
:class:`Prompt` each channel renders (buttons, numbered SMS lines, keys to press).

* :class:`Sent` — the provider accepted it (with its message id / MessageSid / CallSid);
* :class:`Transient` — 5xx, timeout, connection error: retry later with backoff;
* :class:`RateLimited` — Telegram ``RetryAfter`` or Twilio 429: pause the whole channel;
* :class:`Permanent` — this channel can never reach this person (blocked, unsubscribed,
  invalid number, landline, chat not found), or the provider refused this message for good.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from dispatch.models import BlockReason
from registry.models import Channel

ButtonRows = Sequence[Sequence[Mapping[str, str]]]
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


_BOT_TOKEN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{20,}")


def short_error(exc: BaseException) -> str:
    """An error line for ``last_error``: the exception's class and message, never a token."""
    return _BOT_TOKEN.sub("<token>", f"{type(exc).__name__}: {exc}")[:200]


# --- inbound: what every channel's webhook decodes to, and the prompts rendered for it --------


@dataclass(frozen=True)
class Inbound:
    """One thing a person sent, whatever the channel.

    ``button`` is a bot callback without its ``b:`` prefix (``step:value``). ``contact_phone`` is
    a shared contact's number and ``contact_is_sender`` says whether it is the sender's own.
    """

    channel: Channel
    address: str
    text: str | None = None
    button: str | None = None
    contact_phone: str | None = None
    contact_is_sender: bool = False
    location: tuple[float, float] | None = None
    unsupported: bool = False


@dataclass(frozen=True)
class Delivery:
    """One inbound update as the edge saw it. ``payload`` is stored in the inbox as it came."""

    provider_key: str
    inbound: Inbound
    payload: dict[str, Any] = field(default_factory=dict)
    group_chat: bool = False  # a Telegram group: the bot talks to people one to one only
    addressed_to_bot: bool = False  # in a group: a /command
    ignored: bool = False  # edited messages, channel posts, membership changes: kept, not acted on


@dataclass(frozen=True)
class Arrival:
    """What the webhook stores: the key, who sent it (for their order) and the payload as it came.

    Nothing more is parsed before the acknowledgement; the processor turns the payload into a
    :class:`Delivery` (each channel module's ``delivery_from_*``).
    """

    provider_key: str
    channel: Channel
    address: str
    payload: dict[str, Any]
    received_at: datetime | None = None  # when it came, if not now (a spooled message's)


class Request(StrEnum):
    """Something only Telegram can ask for with a button of its own."""

    CONTACT = "contact"
    LOCATION = "location"


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class Prompt:
    """One message to send, before a channel renders it. ``step`` names the dialog step its
    buttons answer.

    ``numbered`` choices are listed with numbers on SMS; otherwise SMS shows only the text (for
    example "write a number") while Telegram still offers the buttons as shortcuts. The dialog
    turns off numbering where the free text is itself a number, so the two never meet.
    """

    text: str
    step: str = ""
    choices: tuple[Choice, ...] = ()
    multi: bool = False
    selected: frozenset[str] = field(default_factory=frozenset)
    numbered: bool = True
    requests: tuple[Request, ...] = ()
    navigation: bool = False


@dataclass(frozen=True)
class Rendered:
    """A prompt in a channel's form: the text, and the rows of (label, data) buttons if any."""

    text: str
    buttons: list[list[tuple[str, str]]] | None = None
