"""The SMS channel (Twilio Messages): outbound, sending with the async twilio client and Twilio's
error codes classified for the worker; inbound, a webhook's signature checked with twilio's own
``RequestValidator`` (every Twilio webhook, voice too), an inbound SMS and a delivery receipt
decoded; and the SMS form of choices, both ways.

SMS has no buttons: whoever enqueues an SMS writes the choices into its text
(:func:`numbered_choices` for a message's buttons, :func:`render_prompt` for a dialog prompt:
"1 ...", "2 ...") and :func:`choice_from_reply` maps an answer back to the button's data; the
sender sends the text as it is. (The webhook routes that store what arrives are :mod:`bots.sms`.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from twilio.request_validator import RequestValidator

from config.i18n import t
from config.languages import Language
from config.settings import Settings, reveal
from dispatch.channels.base import (
    DEFAULT_RATE_LIMIT_PAUSE,
    Arrival,
    ButtonRows,
    Delivery,
    Inbound,
    Outgoing,
    Permanent,
    Prompt,
    RateLimited,
    Rendered,
    SendResult,
    Sent,
    Transient,
    short_error,
)
from dispatch.models import BlockReason
from dispatch.segments import count_segments
from registry.errors import InvalidPhone
from registry.models import Channel
from registry.phones import normalise_phone

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


# --- inbound: Twilio's signed webhooks, an SMS and a receipt decoded, prompts rendered ---------

SIGNATURE_HEADER = "X-Twilio-Signature"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_SMS_SEGMENTS = 3  # a prompt longer than this with its list goes as two SMS


@dataclass(frozen=True)
class Receipt:
    """A delivery report (status callback) for a message we sent."""

    message_sid: str
    status: str
    error_code: int | None


def twilio_form(body: bytes) -> dict[str, str]:
    """Twilio posts ``application/x-www-form-urlencoded``; the standard library reads it (no
    multipart parser needed). Blank values are kept: the signature covers them."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return {}
    return dict(pairs)


def signed_by_twilio(
    settings: Settings, *, path: str, query: str, params: Mapping[str, str], signature: str | None
) -> bool:
    """Whether Twilio signed exactly this URL (HOSEN_PUBLIC_URL + path and query) and these
    parameters with our auth token: every Twilio webhook, SMS or voice."""
    token = reveal(settings.twilio_auth_token)
    if not token or not signature or settings.public_url is None:
        return False
    url = str(settings.public_url).rstrip("/") + path
    if query:
        url = f"{url}?{query}"
    return bool(RequestValidator(token).validate(url, dict(params), signature))


def twilio_callback(
    settings: Settings,
    *,
    body: bytes,
    path: str,
    query: str,
    signature: str | None,
    required: Sequence[str] = (),
) -> dict[str, str] | int:
    """A webhook's parameters when Twilio signed them and they hold every ``required`` field;
    else the HTTP status to refuse it with (403 unsigned or forged, 400 incomplete)."""
    params = twilio_form(body)
    if not signed_by_twilio(settings, path=path, query=query, params=params, signature=signature):
        return 403
    if not all(params.get(name) for name in required):
        return 400
    return params


def arrival_from_form(params: Mapping[str, str]) -> Arrival | None:
    """What the inbox stores for an inbound SMS (None without a sid or a sender), keyed by its
    MessageSid: Twilio's retry of the same message meets that key."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    sender = params.get("From")
    if not sid or not sender:
        return None
    # Twilio writes From in E.164 every time: the ordering key needs no phone parsing here.
    return Arrival(
        provider_key=f"sms:{sid}", channel=Channel.SMS, address=sender, payload=dict(params)
    )


def receipt_from_form(params: Mapping[str, str]) -> Receipt | None:
    """A status callback's receipt (None without a sid or a status)."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    state = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid or not state:
        return None
    code = params.get("ErrorCode", "")
    return Receipt(
        message_sid=sid, status=state, error_code=int(code) if code.isdecimal() else None
    )


def delivery_from_params(params: dict[str, str], *, region: str) -> Delivery | None:
    """The delivery for Twilio's inbound-message parameters (None without a sid or a sender)."""
    arrival = arrival_from_form(params)
    if arrival is None:
        return None
    body = params.get("Body", "")
    media = params.get("NumMedia", "0")
    inbound = Inbound(
        channel=Channel.SMS,
        address=_address(arrival.address, region),
        text=body,
        unsupported=not body.strip() and media not in ("", "0"),
    )
    return Delivery(provider_key=arrival.provider_key, inbound=inbound, payload=params)


def _address(sender: str, region: str) -> str:
    """The sender in E.164, so the same phone is the same conversation whatever the format."""
    try:
        return normalise_phone(sender, region=region).e164
    except InvalidPhone:
        return sender[:40]


def render_prompt(prompt: Prompt, language: Language) -> list[Rendered]:
    """A prompt as an SMS: its choices numbered "1 ...", "2 ..." under the text (an answer "2"
    is the second); two SMS when the question and its list together would pass three segments."""
    lines = []
    if prompt.numbered:
        lines = [f"{number} {choice.label}" for number, choice in enumerate(prompt.choices, 1)]
    text = prompt.text
    if prompt.multi:
        text = f"{text}\n{t(language, 'bot.sms.multi_hint')}"
    if not lines:
        return [Rendered(text=text)]
    whole = "\n".join([text, *lines])
    if count_segments(whole) <= MAX_SMS_SEGMENTS:
        return [Rendered(text=whole)]
    return [Rendered(text=text), Rendered(text="\n".join(lines))]
