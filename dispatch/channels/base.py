"""What every channel module shares: the outbox row a sender is given, the classified result it
returns (never an exception for a provider's answer: the worker decides from the class alone),
and the :class:`Sender` interface the worker speaks to.

* :class:`Sent` — the provider accepted it (with its message id / MessageSid / CallSid);
* :class:`Transient` — 5xx, timeout, connection error: retry later with backoff;
* :class:`RateLimited` — Telegram ``RetryAfter`` or Twilio 429: pause the whole channel;
* :class:`Permanent` — this channel can never reach this person (blocked, unsubscribed,
  invalid number, landline, chat not found), or the provider refused this message for good.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

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
