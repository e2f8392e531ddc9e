"""The SMS edge: Twilio's webhooks for inbound messages and delivery status.

``POST /sms/inbound`` and ``POST /sms/status`` are Starlette endpoints (mounted by
:mod:`hosen.app`). Every request's ``X-Twilio-Signature`` is checked with twilio's own
``RequestValidator`` against HOSEN_PUBLIC_URL + path; a forged or unsigned request gets 403 and
changes nothing. An inbound SMS becomes a :class:`~bots.inbound.Delivery` keyed
``sms:<MessageSid>`` (Twilio retries webhooks: a repeat is acknowledged, not processed again) and
goes to :func:`bots.inbound.receive`. The answer to Twilio is always an empty TwiML response:
replies go out through the outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from twilio.request_validator import RequestValidator

from bots.dialog import Dialog, Inbound
from bots.flood import DEFAULT_POLICY, FloodPolicy
from bots.inbound import Delivery, receive
from config.settings import Settings
from dispatch.delivery import record_sms_status
from registry.db import unit_of_work
from registry.errors import InvalidPhone
from registry.models import Channel
from registry.phones import normalise_phone

SIGNATURE_HEADER = "X-Twilio-Signature"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
Clock = Callable[[], datetime]


@dataclass
class SmsWebhooks:
    settings: Settings
    sessions: sessionmaker[Session]
    dialog: Dialog
    clock: Clock
    flood: FloodPolicy = DEFAULT_POLICY

    def signed(self, request: Request, params: dict[str, str]) -> bool:
        """Whether Twilio signed exactly this URL and these parameters with our auth token."""
        token = self.settings.twilio_auth_token
        signature = request.headers.get(SIGNATURE_HEADER)
        if not token or not signature or self.settings.public_url is None:
            return False
        url = str(self.settings.public_url).rstrip("/") + request.url.path
        if request.url.query:
            url = f"{url}?{request.url.query}"
        return bool(RequestValidator(token).validate(url, params, signature))

    async def inbound(self, request: Request) -> Response:
        """A text from a person: store it, answer it through the outbox, acknowledge Twilio."""
        params = await _form(request)
        if not self.signed(request, params):
            return Response(status_code=403)
        sid = params.get("MessageSid") or params.get("SmsSid")
        sender = params.get("From")
        if not sid or not sender:
            return Response(status_code=400)
        body = params.get("Body", "")
        media = params.get("NumMedia", "0")
        inbound = Inbound(
            channel=Channel.SMS,
            address=self._address(sender),
            text=body,
            unsupported=not body.strip() and media not in ("", "0"),
        )
        delivery = Delivery(provider_key=f"sms:{sid}", inbound=inbound, payload=params)
        await run_in_threadpool(
            receive,
            self.sessions,
            delivery=delivery,
            dialog=self.dialog,
            now=self.clock(),
            flood=self.flood,
        )
        return Response(EMPTY_TWIML, media_type="text/xml")

    async def status(self, request: Request) -> Response:
        """A delivery report for a message we sent: the dispatcher records it."""
        params = await _form(request)
        if not self.signed(request, params):
            return Response(status_code=403)
        sid = params.get("MessageSid") or params.get("SmsSid")
        state = params.get("MessageStatus") or params.get("SmsStatus")
        if not sid or not state:
            return Response(status_code=400)
        code = params.get("ErrorCode", "")
        error_code = int(code) if code.isdigit() else None
        await run_in_threadpool(self._record_status, sid, state, error_code)
        return Response(status_code=200)

    def _record_status(self, sid: str, state: str, error_code: int | None) -> None:
        with unit_of_work(self.sessions) as session:
            record_sms_status(
                session, message_sid=sid, status=state, error_code=error_code, now=self.clock()
            )

    def _address(self, sender: str) -> str:
        """The sender in E.164, so the same phone is the same conversation whatever the format."""
        try:
            return normalise_phone(sender, region=self.settings.default_region).e164
        except InvalidPhone:
            return sender[:40]


async def _form(request: Request) -> dict[str, str]:
    """Twilio posts ``application/x-www-form-urlencoded``; the standard library reads it (no
    multipart parser needed). Blank values are kept: the signature covers them."""
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return {}
    return dict(pairs)


def sms_endpoints(webhooks: SmsWebhooks) -> dict[str, Callable[[Request], Awaitable[Response]]]:
    return {"/sms/inbound": webhooks.inbound, "/sms/status": webhooks.status}
