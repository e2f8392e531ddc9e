"""A loopback fake of Twilio's Messages and Calls APIs (REST API 2010-04-01) and of Twilio's
webhooks. The Calls API and the calls it plays to simulated callees are
:mod:`fakes.twilio_voice` (``fake.voice``); this module is the account and its messages.

:class:`FakeTwilio` serves ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (send),
``GET .../Messages/{Sid}.json`` (fetch) and ``GET .../Messages.json`` (list, one page), with
HTTP Basic auth (account SID and auth token; 401 code 20003 otherwise). Every request is
checked against Twilio's official OpenAPI description (``fakes/specs/
twilio_api_v2010_messages.json``): unknown parameters, a missing ``To``, neither ``From`` nor
``MessagingServiceSid``, none of ``Body`` / ``MediaUrl`` / ``ContentSid``, or a value of the
wrong type, pattern or enum are answered with Twilio's error JSON (``{"code", "message",
"more_info", "status"}``) and recorded in :attr:`FakeTwilio.violations`, which the
``fake_twilio`` pytest fixture turns into a failed test.

Answers are full message resources (``SM`` + 32 hex SID, status ``queued``, ``num_segments``
counted as carriers do: GSM-7 160/153, UCS-2 70/67). Permanent failures Hosen must handle are
configurable per number: 21610 (the recipient replied STOP), 21211 (invalid number), 21614
(not a mobile number: a landline). Status callbacks (``sent``, ``delivered``, ``failed`` /
``undelivered`` with ``ErrorCode``) and inbound SMS are POSTed to the application signed with
``X-Twilio-Signature`` computed by twilio's own ``RequestValidator``; unsigned and forged posts
are available for the forged-webhook tests.

Deliberately NOT reproduced: MMS media and the Media subresource, Messaging Services' sender
pools, scheduled messages, message update (redaction, cancel) and delete, the Content API,
WhatsApp, API-key authentication, prices, carrier lookups (any E.164 number not configured
otherwise is a deliverable mobile), Twilio's own retries of failed webhooks, and Twilio's
habit of ignoring unknown parameters (the fake refuses them, code 20001, because a misspelt
parameter is a bug in Hosen).

Faults and limits, off by default, switch on at runtime: ``fake.faults = Faults(...)`` (5xx,
held requests, lost replies, 429 bursts with code 20429, a stable fraction of numbers that are
unsubscribed, invalid, landlines or undeliverable; see ``fakes.faults``) and ``fake.limits =
RateLimits.twilio(mps)`` (the account's messages per second, 429 / 20429 beyond it).
``fake.traffic`` counts requests, accepted messages, 429s and per-second rates.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from aiohttp import ClientError, web
from twilio.request_validator import RequestValidator

from dispatch.segments import count_segments
from fakes.faults import Outcome
from fakes.load import LatencyReport, open_loop
from fakes.loopback import LoopbackServer
from fakes.twilio_spec import ResourceSpec
from fakes.twilio_voice import FakeCalls

JSON = dict[str, Any]
SPEC_PATH = Path(__file__).parent / "specs" / "twilio_api_v2010_messages.json"
API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "X-Twilio-Signature"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
MAX_BODY = 1600

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SID_HEX = "0123456789abcdef"

Signing = Literal["valid", "none", "forged"]


class TwilioError(Exception):
    """An error answer, shaped like Twilio's."""

    def __init__(
        self, status: int, code: int, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, sent as the Retry-After header (a 429)

    def body(self) -> JSON:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def new_sid(prefix: str) -> str:
    """A Twilio SID: two letters and 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


MessagesSpec = ResourceSpec


@cache
def load_spec(path: Path = SPEC_PATH) -> MessagesSpec:
    with path.open(encoding="utf-8") as handle:
        return MessagesSpec(json.load(handle))


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """``X-Twilio-Signature`` for a form POST to ``url``, by twilio's own RequestValidator."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


class FakeTwilio(LoopbackServer):
    """Twilio's Messages API on 127.0.0.1. See the module docstring for what it does and not.

    Point the twilio client at it with ``HOSEN_TWILIO_API_URL=fake.url`` (see
    ``dispatch.clients.make_twilio_client``) and the fake's ``account_sid`` / ``auth_token``.
    """

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        phone_number: str = "+972559000001",
        from_numbers: Iterable[str] = (),
        messaging_service_sids: Iterable[str] = (),
        auto_status: Sequence[str] = (),
        status_delay: float = 0.0,
        keep_history: bool = True,
        clock: Callable[[], float] = time.time,
        spec: MessagesSpec | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.account_sid = account_sid or new_sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.phone_number = phone_number
        # The account's own senders; any other From is refused with 21606.
        self.from_numbers = {phone_number, *from_numbers}
        self.messaging_service_sids = set(messaging_service_sids)
        self.auto_status = tuple(auto_status)
        self.status_delay = status_delay
        self.keep_history = keep_history
        self.clock = clock
        self.spec = spec or load_spec()

        self.violations: list[str] = []
        self.messages: dict[str, JSON] = {}
        self.sent: list[JSON] = []
        # Called on the fake's loop with each message accepted (simulated people listen).
        self.on_message: list[Callable[[JSON], None]] = []
        self.created = 0
        self.status_codes: Counter[int] = Counter()
        # Status callbacks posted: (url, form, HTTP status; 0 when the URL could not be reached).
        self.callbacks: list[tuple[str, JSON, int]] = []
        self.inbound: list[JSON] = []

        # Numbers that fail permanently, as Twilio answers them.
        self.unsubscribed: set[str] = set()
        self.invalid_numbers: set[str] = set()
        self.landlines: set[str] = set()
        # Numbers that are accepted but never delivered: number -> ErrorCode (30003, 30005...).
        self.undeliverable: dict[str, int] = {}

        self._status_urls: dict[str, str] = {}
        self._status_tasks: set[asyncio.Task[None]] = set()
        # The Calls API and the calls it plays (fakes.twilio_voice).
        self.voice = FakeCalls(self)

    # -- server ------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        base = "/2010-04-01/Accounts/{account_sid}"
        self.add_control_routes(app)
        app.router.add_post(base + "/Messages.json", self._create)
        app.router.add_get(base + "/Messages.json", self._list)
        app.router.add_get(base + "/Messages/{sid}.json", self._fetch)
        app.router.add_route("*", base + "/Messages/{sid}.json", self._not_reproduced)
        self.voice.add_routes(app, base)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    async def on_shutdown(self) -> None:
        await self.voice.close()
        for task in list(self._status_tasks):
            task.cancel()
        if self._status_tasks:
            await asyncio.gather(*self._status_tasks, return_exceptions=True)

    def _answer(
        self, body: JSON, status: int, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        self.status_codes[status] += 1
        return web.Response(
            body=json.dumps(body).encode(),
            status=status,
            content_type="application/json",
            headers=headers,
        )

    def _error(self, error: TwilioError) -> web.Response:
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
        return self._answer(error.body(), error.status, headers)

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        error = TwilioError(401, 20003, "Authentication Error - invalid username")
        if not header.startswith("Basic "):
            raise error
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise error from None
        if user != self.account_sid or not secrets.compare_digest(password, self.auth_token):
            raise error
        if request.match_info["account_sid"] != self.account_sid:
            raise TwilioError(404, 20404, f"The requested resource {request.path} was not found")

    @property
    def requests(self) -> int:
        """HTTP requests received so far (any endpoint, any answer)."""
        return self.traffic.requests

    async def _fault_answer(self, outcome: Outcome) -> web.Response | None:
        """The answer an injected fault gives instead of the real one, if any."""
        if outcome == "server_error":
            self.traffic.count(outcome)
            if self.traffic.server_errors % 2:
                return self._error(TwilioError(503, 20503, "Service Unavailable"))
            return self._error(TwilioError(500, 20500, "Internal Server Error"))
        if outcome == "timeout":
            self.traffic.count(outcome)
            await self.hold(self.faults.hold_seconds)
            return self._error(TwilioError(504, 20504, "Gateway Timeout"))
        if outcome == "throttled":
            self.traffic.count(outcome)
            return self._error(
                TwilioError(429, 20429, "Too Many Requests", retry_after=self.faults.retry_after)
            )
        return None

    async def _not_reproduced(self, request: web.Request) -> web.Response:
        self.traffic.count("request")
        self._violation(
            f"{request.method} Messages/{{Sid}}.json: valid, not reproduced by FakeTwilio"
        )
        return self._error(TwilioError(405, 20004, "Method not allowed by the fake"))

    async def _unknown(self, request: web.Request) -> web.Response:
        self.traffic.count("request")
        self._violation(f"{request.method} {request.path}: not a Messages API endpoint")
        return self._error(
            TwilioError(404, 20404, f"The requested resource {request.path} was not found")
        )

    async def _create(self, request: web.Request) -> web.Response:
        self.traffic.count("request")
        lose_reply = False
        try:
            self._authenticate(request)
            if request.content_type != "application/x-www-form-urlencoded":
                self._violation(f"create: content type {request.content_type!r}, not a form")
                raise TwilioError(400, 20001, "Expected a form-encoded body")
            form = await request.post()
            params: dict[str, list[str]] = {}
            for name in form:
                params[name] = [str(v) for v in form.getall(name)]
            self._check_create(params)
            single = {name: values[0] for name, values in params.items()}
            outcome = self.faults.decide("create")
            fault = await self._fault_answer(outcome)
            if fault is not None:
                return fault
            refused = await self.before_create(single)
            if refused is not None:
                raise refused
            self._check_recipient(single)
            message = self._accept(single, params.get("MediaUrl", []))
            lose_reply = outcome == "lost_reply"
        except TwilioError as error:
            self.traffic.count("throttled" if error.status == 429 else "refused")
            return self._error(error)
        self.traffic.count("lost_reply" if lose_reply else "accepted")
        for listener in list(self.on_message):
            listener(message)
        if lose_reply:
            await self.hold(self.faults.hold_seconds)
        return self._answer(message, 201)

    async def before_create(self, params: JSON) -> TwilioError | None:
        """The account's messages-per-second limit, when :attr:`limits` is set."""
        retry_after = self.limits.admit(params.get("To")) if self.limits is not None else 0
        if retry_after:
            return TwilioError(429, 20429, "Too Many Requests", retry_after=retry_after)
        return None

    def _check_create(self, params: Mapping[str, list[str]]) -> None:
        problems: list[str] = []
        for name, values in params.items():
            spec = self.spec.create_params.get(name)
            if spec is None:
                problems.append(f"create: unknown parameter {name!r}")
                continue
            schema = self.spec.resolve(spec.schema)
            if schema.get("type") == "array":
                item_schema = schema.get("items", {})
                problems += [
                    f"create: {p}"
                    for v in values
                    if (p := self.spec.check_value(name, v, item_schema)) is not None
                ]
                continue
            if len(values) > 1:
                problems.append(f"create: parameter {name!r} given {len(values)} times")
            if name == "To":
                continue  # judged by _check_recipient, with Twilio's own error codes
            problem = self.spec.check_value(name, values[0], schema)
            if problem is not None:
                problems.append(f"create: {problem}")
        if problems:
            for problem in problems:
                self._violation(problem)
            raise TwilioError(400, 20001, "; ".join(problems))
        missing = [name for name in self.spec.create_required if name not in params]
        if missing:
            self._violation("create: missing required parameter 'To'")
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        if "From" not in params and "MessagingServiceSid" not in params:
            self._violation("create: neither 'From' nor 'MessagingServiceSid'")
            raise TwilioError(400, 21603, "A 'From' phone number is required.")
        if not any(params.get(name, [""])[0] for name in ("Body", "MediaUrl", "ContentSid")):
            self._violation("create: none of 'Body', 'MediaUrl', 'ContentSid'")
            raise TwilioError(400, 21602, "Message body is required.")
        body = params.get("Body", [""])[0]
        if len(body) > MAX_BODY:
            self._violation(f"create: Body of {len(body)} characters (limit {MAX_BODY})")
            raise TwilioError(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        sender = params.get("From", [None])[0]
        if sender is not None and sender not in self.from_numbers:
            self._violation(f"create: From {sender!r} is not a number of this account")
            raise TwilioError(
                400,
                21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone "
                "number or short code for your account.",
            )
        service = params.get("MessagingServiceSid", [None])[0]
        if service is not None and service not in self.messaging_service_sids:
            self._violation(f"create: unknown MessagingServiceSid {service!r}")
            raise TwilioError(400, 21701, "The Messaging Service Sid is invalid.")

    def _check_recipient(self, params: Mapping[str, str]) -> None:
        to = params["To"]
        faults = self.faults
        if not _E164.match(to):
            # Hosen normalises every number to E.164 first: anything else is a bug upstream.
            self._violation(f"create: To {to!r} is not an E.164 number")
            raise TwilioError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if to in self.invalid_numbers or faults.picks("invalid", to, faults.invalid_number_rate):
            raise TwilioError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if to in self.landlines or faults.picks("landline", to, faults.landline_rate):
            raise TwilioError(400, 21614, f"'To' number {to} is not a valid mobile number")
        if to in self.unsubscribed or faults.picks("unsubscribed", to, faults.unsubscribed_rate):
            raise TwilioError(400, 21610, "Attempt to send to unsubscribed recipient")

    def _accept(self, params: Mapping[str, str], media: list[str]) -> JSON:
        sid = new_sid("SM")
        now = _rfc2822(self.clock())
        body = params.get("Body", "")
        service = params.get("MessagingServiceSid")
        message: JSON = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": params.get("From"),
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": str(count_segments(body)) if body else "0",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if "From" in params else "accepted",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": params["To"],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        with self._lock:
            self.created += 1
            if self.keep_history:
                self.messages[sid] = message
                self.sent.append(message)
        callback = params.get("StatusCallback")
        if callback and (self.auto_status or self._undeliverable(params["To"]) is not None):
            task = asyncio.get_running_loop().create_task(
                self._auto_callbacks(sid, message, callback)
            )
            self._status_tasks.add(task)
            task.add_done_callback(self._status_tasks.discard)
        if callback:
            with self._lock:
                self._status_urls[sid] = callback
        return dict(message)

    async def _auto_callbacks(self, sid: str, message: JSON, url: str) -> None:
        error = self._undeliverable(message["to"])
        statuses: Sequence[str] = ("sent", "undelivered") if error is not None else self.auto_status
        for status in statuses:
            if self.status_delay:
                await asyncio.sleep(self.status_delay)
            await self._post_status(
                url, message, status, error if status in ("undelivered", "failed") else None
            )

    def _undeliverable(self, number: str) -> int | None:
        """The ErrorCode with which messages to ``number`` end undelivered, or None."""
        if number in self.undeliverable:
            return self.undeliverable[number]
        if self.faults.picks("undeliverable", number, self.faults.undeliverable_rate):
            return 30003  # Unreachable destination handset
        return None

    async def _fetch(self, request: web.Request) -> web.Response:
        self.traffic.count("request")
        try:
            self._authenticate(request)
            fault = await self._fault_answer(self.faults.decide("fetch"))
            if fault is not None:
                return fault
            message = self.messages.get(request.match_info["sid"])
            if message is None:
                raise TwilioError(
                    404, 20404, f"The requested resource {request.path} was not found"
                )
        except TwilioError as error:
            return self._error(error)
        return self._answer(message, 200)

    async def _list(self, request: web.Request) -> web.Response:
        self.traffic.count("request")
        try:
            self._authenticate(request)
            fault = await self._fault_answer(self.faults.decide("list"))
            if fault is not None:
                return fault
            for name, value in request.query.items():
                spec = self.spec.list_params.get(name)
                problem = (
                    f"list: unknown parameter {name!r}"
                    if spec is None
                    else self.spec.check_value(name, value, spec.schema)
                )
                if problem is not None:
                    self._violation(problem)
                    raise TwilioError(400, 20001, problem)
        except TwilioError as error:
            return self._error(error)
        with self._lock:
            found = [
                m
                for m in reversed(self.sent)
                if m["to"] == request.query.get("To", m["to"])
                and m["from"] == request.query.get("From", m["from"])
            ]
        size = int(request.query.get("PageSize", "50"))
        uri = request.path_qs
        page = {
            "messages": found[:size],
            "end": max(0, min(size, len(found)) - 1),
            "first_page_uri": uri,
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "start": 0,
            "uri": uri,
        }
        return self._answer(page, 200)

    # -- what was sent -----------------------------------------------------------------------

    def sent_to(self, number: str) -> list[JSON]:
        """Messages accepted for ``number`` (E.164), oldest first."""
        with self._lock:
            return [m for m in self.sent if m["to"] == number]

    def last_sent(self, number: str) -> JSON:
        messages = self.sent_to(number)
        assert messages, f"no SMS was sent to {number}"
        return messages[-1]

    # -- status callbacks --------------------------------------------------------------------

    def send_status(
        self, sid: str, status: str, *, error_code: int | None = None, url: str | None = None
    ) -> int:
        """POST a status callback for message ``sid`` (to its StatusCallback unless ``url``)."""
        return self.run(self._status_for(sid, status, error_code, url))

    async def send_status_async(
        self, sid: str, status: str, *, error_code: int | None = None, url: str | None = None
    ) -> int:
        return await self.run_async(self._status_for(sid, status, error_code, url))

    async def _status_for(
        self, sid: str, status: str, error_code: int | None, url: str | None
    ) -> int:
        message = self.messages[sid]
        target = url or self._status_urls.get(sid)
        if target is None:
            raise ValueError(f"message {sid} was sent without a StatusCallback; pass url=")
        return await self._post_status(target, message, status, error_code)

    async def _post_status(
        self, url: str, message: JSON, status: str, error_code: int | None
    ) -> int:
        with self._lock:
            message["status"] = status
            message["date_updated"] = _rfc2822(self.clock())
            if status in ("sent", "delivered"):
                message["date_sent"] = message["date_sent"] or message["date_updated"]
            if error_code is not None:
                message["error_code"] = error_code
        params = {
            "SmsSid": message["sid"],
            "SmsStatus": status,
            "MessageStatus": status,
            "To": message["to"],
            "MessageSid": message["sid"],
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
        }
        if message["from"]:
            params["From"] = message["from"]
        if message["messaging_service_sid"]:
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        try:
            code = await self._post_form(url, params, "valid", None)
        except (ClientError, OSError, TimeoutError):
            code = 0  # unreachable: Twilio gives up on a callback too, and nothing else changes
        with self._lock:
            self.callbacks.append((url, params, code))
        return code

    # -- inbound SMS -------------------------------------------------------------------------

    def inbound_params(
        self,
        *,
        from_: str,
        body: str,
        to: str | None = None,
        message_sid: str | None = None,
    ) -> dict[str, str]:
        """The form Twilio POSTs for an incoming SMS (what the fields look like for Israel)."""
        sid = message_sid or new_sid("SM")
        return {
            "ToCountry": "IL",
            "ToState": "",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": body,
            "FromCountry": "IL",
            "To": to or self.phone_number,
            "ToZip": "",
            "NumSegments": str(count_segments(body)),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }

    def send_inbound(
        self,
        url: str,
        *,
        from_: str,
        body: str,
        to: str | None = None,
        message_sid: str | None = None,
        signing: Signing = "valid",
        signature_url: str | None = None,
    ) -> int:
        """POST an inbound SMS to the application's webhook at ``url``; returns the status.

        ``signature_url`` is the URL the signature covers, when the application validates
        against its public URL rather than the loopback address it is reached on.
        ``signing="none"`` omits ``X-Twilio-Signature``; ``"forged"`` signs with a wrong token.
        Blocks the calling thread: from async code use :meth:`send_inbound_async`.
        """
        params = self.inbound_params(from_=from_, body=body, to=to, message_sid=message_sid)
        return self.run(self._post_inbound(url, params, signing, signature_url))

    async def send_inbound_async(
        self,
        url: str,
        *,
        from_: str,
        body: str,
        to: str | None = None,
        message_sid: str | None = None,
        signing: Signing = "valid",
        signature_url: str | None = None,
    ) -> int:
        params = self.inbound_params(from_=from_, body=body, to=to, message_sid=message_sid)
        return await self.run_async(self._post_inbound(url, params, signing, signature_url))

    def inbound_load(
        self,
        url: str,
        messages: Sequence[tuple[str, str]],
        *,
        rate: float,
        signature_url: str | None = None,
    ) -> LatencyReport:
        """POST signed inbound SMS ``(from, body)`` at ``rate`` a second (open loop)."""
        return self.run(self._inbound_load(url, messages, rate, signature_url), timeout=None)

    async def inbound_load_async(
        self,
        url: str,
        messages: Sequence[tuple[str, str]],
        *,
        rate: float,
        signature_url: str | None = None,
    ) -> LatencyReport:
        return await self.run_async(self._inbound_load(url, messages, rate, signature_url))

    async def _inbound_load(
        self, url: str, messages: Sequence[tuple[str, str]], rate: float, signature_url: str | None
    ) -> LatencyReport:
        forms = [self.inbound_params(from_=sender, body=body) for sender, body in messages]
        return await open_loop(
            lambda i: self._post_form(url, forms[i], "valid", signature_url),
            rate=rate,
            total=len(forms),
        )

    def post_form(
        self,
        url: str,
        params: Mapping[str, str],
        *,
        signing: Signing = "valid",
        signature_url: str | None = None,
    ) -> int:
        """POST any form to the application, signed (or not) as Twilio signs its webhooks."""
        return self.run(self._post_form(url, dict(params), signing, signature_url))

    async def _post_inbound(
        self, url: str, params: dict[str, str], signing: Signing, signature_url: str | None
    ) -> int:
        code = await self._post_form(url, params, signing, signature_url)
        with self._lock:
            self.inbound.append(params)
        return code

    async def _post_form(
        self, url: str, params: dict[str, str], signing: Signing, signature_url: str | None
    ) -> int:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        if signing == "valid":
            headers[SIGNATURE_HEADER] = signature(self.auth_token, signature_url or url, params)
        elif signing == "forged":
            headers[SIGNATURE_HEADER] = signature(
                secrets.token_hex(16), signature_url or url, params
            )
        return await self.post(url, headers=headers, data=params)


def _rfc2822(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(timestamp, UTC).replace(microsecond=0))
