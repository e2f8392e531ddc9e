"""The SMS channel (Twilio Messages), outbound: sending with the async twilio client, Twilio's
error codes classified for the worker, and the SMS form of a message's choices.

SMS has no buttons: whoever enqueues an SMS writes the choices into its text
(:func:`numbered_choices`: "1 ...", "2 ...") and :func:`choice_from_reply` maps an answer back to
the button's data; the sender sends the text as it is. (The inbound webhooks are
:mod:`bots.sms`.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from dispatch.channels.base import (
    DEFAULT_RATE_LIMIT_PAUSE,
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
            return Transient(error=short_error(exc))
        return Sent(provider_id=str(created.sid))
