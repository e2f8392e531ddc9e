"""The SMS edge: Twilio's webhooks for inbound messages and delivery status.

``POST /sms/inbound`` and ``POST /sms/status`` are Starlette endpoints (mounted by
:mod:`hosen.app`). Every request's ``X-Twilio-Signature`` is checked with twilio's own
``RequestValidator`` against HOSEN_PUBLIC_URL + path; a forged or unsigned request gets 403 and
changes nothing. An inbound SMS is stored in the inbox keyed ``sms:<MessageSid>`` (Twilio retries
webhooks: a repeat is acknowledged, not stored again) and acknowledged as soon as it is committed;
``bots.processor`` acts on it after (:func:`delivery_from_params` turns the stored parameters
back into a :class:`~bots.inbound.Delivery`). The answer to Twilio is always an empty TwiML
response: replies go out through the outbox. Delivery receipts are applied at once: one indexed
update, as cheap as storing them.

While the database is away both are kept in the local spool (:mod:`bots.spool`) and
acknowledged: Twilio never retries an inbound message (it tries the fallback URL, if one is
set, and then gives up), so an error answer would lose the resident's reply; and it does not
retry a status callback either. Only when the spool too is full is the answer 503.
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

from bots.dialog import Inbound
from bots.inbound import Arrival, Delivery
from bots.intake import DatabaseUnavailable, Intake
from bots.spool import SpoolFull, database_unavailable
from config.settings import Settings, reveal
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
    clock: Clock
    intake: Intake  # stores inbound messages (group commit)

    def signed(self, request: Request, params: dict[str, str]) -> bool:
        """Whether Twilio signed exactly this URL and these parameters with our auth token."""
        return signed_by_twilio(self.settings, request, params)

    async def inbound(self, request: Request) -> Response:
        """A text from a person: store it and acknowledge Twilio; it is answered after."""
        params = await twilio_form(request)
        if not self.signed(request, params):
            return Response(status_code=403)
        sid = params.get("MessageSid") or params.get("SmsSid")
        sender = params.get("From")
        if not sid or not sender:
            return Response(status_code=400)
        # Twilio writes From in E.164 every time: the ordering key needs no phone parsing here.
        arrival = Arrival(
            provider_key=f"sms:{sid}", channel=Channel.SMS, address=sender, payload=params
        )
        try:
            await self.intake.store(arrival)  # a repeat is acknowledged all the same
        except (SpoolFull, DatabaseUnavailable):
            return Response(status_code=503)  # said loudly by the spool, once a minute
        return Response(EMPTY_TWIML, media_type="text/xml")

    async def status(self, request: Request) -> Response:
        """A delivery report for a message we sent: the dispatcher records it."""
        params = await twilio_form(request)
        if not self.signed(request, params):
            return Response(status_code=403)
        sid = params.get("MessageSid") or params.get("SmsSid")
        state = params.get("MessageStatus") or params.get("SmsStatus")
        if not sid or not state:
            return Response(status_code=400)
        code = params.get("ErrorCode", "")
        error_code = int(code) if code.isdecimal() else None
        try:
            await run_in_threadpool(self._record_status, sid, state, error_code)
        except SpoolFull:
            return Response(status_code=503)
        return Response(status_code=200)

    def _record_status(self, sid: str, state: str, error_code: int | None) -> None:
        now = self.clock()
        spool, database = self.intake.spool, self.intake.database
        if spool is None or not spool.active:
            try:
                with unit_of_work(self.sessions) as session:
                    record_sms_status(
                        session, message_sid=sid, status=state, error_code=error_code, now=now
                    )
                database.answered()
                return
            except Exception as exc:
                if spool is None or not database_unavailable(exc):
                    raise
                database.failed(exc)
        spool.append_status(message_sid=sid, status=state, error_code=error_code, received_at=now)


def signed_by_twilio(settings: Settings, request: Request, params: dict[str, str]) -> bool:
    """Whether Twilio signed exactly this URL (HOSEN_PUBLIC_URL + path and query) and these
    parameters with our auth token: every Twilio webhook, SMS or voice."""
    token = reveal(settings.twilio_auth_token)
    signature = request.headers.get(SIGNATURE_HEADER)
    if not token or not signature or settings.public_url is None:
        return False
    url = str(settings.public_url).rstrip("/") + request.url.path
    if request.url.query:
        url = f"{url}?{request.url.query}"
    return bool(RequestValidator(token).validate(url, params, signature))


def delivery_from_params(params: dict[str, str], *, region: str) -> Delivery | None:
    """The delivery for Twilio's inbound-message parameters (None without a sid or a sender)."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    sender = params.get("From")
    if not sid or not sender:
        return None
    body = params.get("Body", "")
    media = params.get("NumMedia", "0")
    inbound = Inbound(
        channel=Channel.SMS,
        address=_address(sender, region),
        text=body,
        unsupported=not body.strip() and media not in ("", "0"),
    )
    return Delivery(provider_key=f"sms:{sid}", inbound=inbound, payload=params)


def _address(sender: str, region: str) -> str:
    """The sender in E.164, so the same phone is the same conversation whatever the format."""
    try:
        return normalise_phone(sender, region=region).e164
    except InvalidPhone:
        return sender[:40]


async def twilio_form(request: Request) -> dict[str, str]:
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
