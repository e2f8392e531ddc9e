"""The SMS edge: Twilio's webhooks for inbound messages and delivery status.

``POST /sms/inbound`` and ``POST /sms/status`` are Starlette endpoints (mounted by
:mod:`hosen.app`). What a Twilio webhook is (its ``X-Twilio-Signature``, checked with twilio's
own ``RequestValidator`` against HOSEN_PUBLIC_URL + path; its fields) is the SMS channel's
(:mod:`dispatch.channels.sms`); a forged or unsigned request gets 403 and changes nothing. An
inbound SMS is stored in the inbox keyed ``sms:<MessageSid>`` (Twilio retries webhooks: a repeat
is acknowledged, not stored again) and acknowledged as soon as it is committed;
``bots.processor`` acts on it after. The answer to Twilio is always an empty TwiML response:
replies go out through the outbox. Delivery receipts are applied at once: one indexed update,
as cheap as storing them, claimed under (MessageSid, status) so a repeat changes nothing.

While the database is away both are kept in the local spool (:mod:`bots.spool`) and
acknowledged: Twilio never retries an inbound message (it tries the fallback URL, if one is
set, and then gives up), so an error answer would lose the resident's reply; and it does not
retry a status callback either. Only when the spool too is full is the answer 503.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from bots.intake import DatabaseUnavailable, Intake
from bots.spool import SpoolFull, database_unavailable
from config.settings import Settings
from dispatch.channels.sms import (
    EMPTY_TWIML,
    SIGNATURE_HEADER,
    Receipt,
    arrival_from_form,
    receipt_from_form,
    twilio_callback,
)
from dispatch.delivery import record_sms_status
from registry.db import unit_of_work

Clock = Callable[[], datetime]


async def signed_form(
    settings: Settings, request: Request, *required: str
) -> dict[str, str] | Response:
    """A Twilio webhook's parameters, or the response that refuses it (403 unsigned or forged,
    400 without a ``required`` field): every Twilio route, SMS or voice, starts here."""
    verdict = twilio_callback(
        settings,
        body=await request.body(),
        path=request.url.path,
        query=request.url.query,
        signature=request.headers.get(SIGNATURE_HEADER),
        required=required,
    )
    return verdict if isinstance(verdict, dict) else Response(status_code=verdict)


@dataclass
class SmsWebhooks:
    settings: Settings
    sessions: sessionmaker[Session]
    clock: Clock
    intake: Intake  # stores inbound messages (group commit)

    async def inbound(self, request: Request) -> Response:
        """A text from a person: store it and acknowledge Twilio; it is answered after."""
        params = await signed_form(self.settings, request)
        if isinstance(params, Response):
            return params
        arrival = arrival_from_form(params)
        if arrival is None:
            return Response(status_code=400)
        try:
            await self.intake.store(arrival)  # a repeat is acknowledged all the same
        except (SpoolFull, DatabaseUnavailable):
            return Response(status_code=503)  # said loudly by the spool, once a minute
        return Response(EMPTY_TWIML, media_type="text/xml")

    async def status(self, request: Request) -> Response:
        """A delivery report for a message we sent: the dispatcher records it."""
        params = await signed_form(self.settings, request)
        if isinstance(params, Response):
            return params
        receipt = receipt_from_form(params)
        if receipt is None:
            return Response(status_code=400)
        try:
            await run_in_threadpool(self._record_status, receipt)
        except SpoolFull:
            return Response(status_code=503)
        return Response(status_code=200)

    def _record_status(self, receipt: Receipt) -> None:
        now = self.clock()
        spool, database = self.intake.spool, self.intake.database
        sid, state, error_code = receipt.message_sid, receipt.status, receipt.error_code
        turns = self.intake.turns
        if spool is None or not spool.active:
            try:
                with (
                    # SQLite: in the webhooks' turn, not in the busy handler behind the
                    # processor's or the worker's transaction.
                    turns.urgent() if turns is not None else contextlib.nullcontext(),
                    unit_of_work(self.sessions) as session,
                ):
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
