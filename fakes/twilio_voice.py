"""The voice half of the Twilio fake: the Calls API and the calls themselves, played out.

:class:`FakeCalls` (``fake_twilio.voice``) serves ``POST .../Calls.json`` and ``GET
.../Calls/{Sid}.json``, checked against Twilio's OpenAPI description of the Calls resource
(``fakes/specs/twilio_api_v2010_calls.json``) as Messages are. Each accepted call is then played
to a simulated callee (:class:`Callee`: answers and presses keys, does not answer, is busy, is an
answering machine, or the call fails): the fake fetches the call's TwiML from ``Url`` (signed,
with ``AnsweredBy`` when machine detection was asked for), checks it (known verbs and
attributes, a ``<Gather>`` has an absolute ``action``, nothing but Say/Play/Pause inside a
Gather), "hears" every ``<Say>`` and fetches every ``<Play>`` (a WAV file must come back), gives
each ``<Gather>`` the callee's next key, posts the digits to its action and plays the answer,
and ends with a signed status callback. Calls in progress at once are counted
(:attr:`FakeCalls.max_active`) and so are calls a second.

Deliberately NOT reproduced: speech input, ``<Record>``, ``<Dial>``, ``<Conference>``,
``<Enqueue>``, SIP, ``Twiml`` given inline beyond checking it, call update and delete,
asynchronous machine detection, recordings, queues, the fallback URL, prices.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import ClientError, web

from fakes.twilio_spec import ResourceSpec, load_resource_spec

if TYPE_CHECKING:
    from fakes.twilio import FakeTwilio

JSON = dict[str, Any]
CALLS_PATH = "/2010-04-01/Accounts/{AccountSid}/Calls.json"
Answer = Literal["human", "machine", "busy", "no-answer", "failed"]
STATUS_EVENTS = {"initiated", "ringing", "answered", "completed"}

# TwiML verbs Hosen may use, with the attributes Twilio documents for each.
VERBS: dict[str, set[str]] = {
    "Response": set(),
    "Say": {"voice", "language", "loop"},
    "Play": {"loop", "digits"},
    "Pause": {"length"},
    "Hangup": set(),
    "Redirect": {"method"},
    "Gather": {
        "action",
        "method",
        "input",
        "numDigits",
        "timeout",
        "finishOnKey",
        "language",
        "actionOnEmptyResult",
        "speechTimeout",
        "hints",
    },
}
IN_GATHER = {"Say", "Play", "Pause"}


@dataclass
class Callee:
    """Who answers a number: ``keys`` is the key pressed at each Gather heard, in order (None:
    nothing pressed, the Gather times out)."""

    answer: Answer = "human"
    keys: list[str | None] = field(default_factory=lambda: ["1"])
    # A test's hand on the call: the callee picks up only once ``answers_when`` is set, presses
    # each key only once ``presses_when`` is set; ``listening`` is set when a question is heard.
    answers_when: threading.Event | None = None
    presses_when: threading.Event | None = None
    listening: threading.Event = field(default_factory=threading.Event)


@dataclass
class Call:
    """One call the fake played: what was said and played, and what the callee pressed."""

    sid: str
    to: str
    from_: str
    inbound: bool
    status: str = "queued"
    answered_by: str | None = None
    heard: list[tuple[str, str]] = field(default_factory=list)  # ("say"|"play", text or URL)
    said_in: list[tuple[str | None, str | None]] = field(default_factory=list)  # voice, language
    played: list[bytes] = field(default_factory=list)  # the audio files fetched
    pressed: list[str] = field(default_factory=list)
    gathers: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def said(self) -> str:
        return " | ".join(text for kind, text in self.heard if kind == "say")


class FakeCalls:
    """The Calls API of one :class:`~fakes.twilio.FakeTwilio` account."""

    def __init__(self, twilio: FakeTwilio, spec: ResourceSpec | None = None) -> None:
        self.twilio = twilio
        self.spec = spec or load_resource_spec("calls")
        self.callees: dict[str, Callee] = {}
        self.default = Callee()
        self.calls: dict[str, Call] = {}
        self.placed: list[Call] = []
        self.active = 0
        self.max_active = 0
        self.ring_seconds = 0.0  # how long a call rings (real time) before it is answered
        self.talk_seconds = 0.0  # how long the callee takes before each key
        self.created_at: deque[float] = deque()  # the last second's creations
        self.created: list[float] = []  # every call's creation (time.monotonic)
        self.max_per_second = 0  # the most calls created within any one second
        self._tasks: set[asyncio.Task[None]] = set()

    def add_routes(self, app: web.Application, base: str) -> None:
        app.router.add_post(base + "/Calls.json", self._create)
        app.router.add_get(base + "/Calls/{sid}.json", self._fetch)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- REST --------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        from fakes.twilio import TwilioError, new_sid

        twilio = self.twilio
        twilio.traffic.count("request")
        arrived = time.monotonic()  # the rate is Twilio's count of arrivals
        try:
            twilio._authenticate(request)
            form = await request.post()
            params = {name: [str(v) for v in form.getall(name)] for name in form}
            self._check_create(params)
            single = {name: values[0] for name, values in params.items()}
            if not _E164(single["To"]):
                raise TwilioError(400, 13224, f"Invalid 'To' Phone Number: {single['To']}")
            if single["To"] in twilio.invalid_numbers:
                raise TwilioError(400, 21217, "Phone number is not valid")
        except TwilioError as error:
            twilio.traffic.count("refused")
            return twilio._error(error)
        call = Call(sid=new_sid("CA"), to=single["To"], from_=single["From"], inbound=False)
        now = arrived
        with twilio._lock:
            self.calls[call.sid] = call
            self.placed.append(call)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.created_at.append(now)
            self.created.append(now)
            while self.created_at and self.created_at[0] <= now - 1.0:
                self.created_at.popleft()
            self.max_per_second = max(self.max_per_second, len(self.created_at))
        twilio.traffic.count("accepted")
        self._spawn(self._play_outbound(call, single, params.get("StatusCallbackEvent", [])))
        return twilio._answer(self._resource(call), 201)

    def _check_create(self, params: Mapping[str, list[str]]) -> None:
        from fakes.twilio import TwilioError

        problems: list[str] = []
        for name, values in params.items():
            spec = self.spec.create_params.get(name)
            if spec is None:
                problems.append(f"calls.create: unknown parameter {name!r}")
                continue
            schema = self.spec.resolve(spec.schema)
            if schema.get("type") == "array":
                if name == "StatusCallbackEvent":
                    problems += [
                        f"calls.create: StatusCallbackEvent {v!r}"
                        for v in values
                        if v not in STATUS_EVENTS
                    ]
                continue
            if len(values) > 1:
                problems.append(f"calls.create: parameter {name!r} given {len(values)} times")
            problem = self.spec.check_value(name, values[0], schema)
            if problem is not None:
                problems.append(f"calls.create: {problem}")
        missing = [name for name in self.spec.create_required if name not in params]
        problems += [f"calls.create: missing required parameter {name!r}" for name in missing]
        if not any(name in params for name in ("Url", "Twiml", "ApplicationSid")):
            problems.append("calls.create: none of 'Url', 'Twiml', 'ApplicationSid'")
        sender = params.get("From", [""])[0]
        if sender and sender not in self.twilio.from_numbers:
            problems.append(f"calls.create: From {sender!r} is not a number of this account")
        if problems:
            for problem in problems:
                self.twilio._violation(problem)
            raise TwilioError(400, 20001, "; ".join(problems))

    async def _fetch(self, request: web.Request) -> web.Response:
        from fakes.twilio import TwilioError

        twilio = self.twilio
        twilio.traffic.count("request")
        try:
            twilio._authenticate(request)
            call = self.calls.get(request.match_info["sid"])
            if call is None:
                raise TwilioError(
                    404, 20404, f"The requested resource {request.path} was not found"
                )
        except TwilioError as error:
            return twilio._error(error)
        return twilio._answer(self._resource(call), 200)

    def _resource(self, call: Call) -> JSON:
        account = self.twilio.account_sid
        return {
            "sid": call.sid,
            "account_sid": account,
            "to": call.to,
            "from": call.from_,
            "status": call.status,
            "direction": "inbound" if call.inbound else "outbound-api",
            "answered_by": call.answered_by,
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{call.sid}.json",
        }

    # -- playing a call ---------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _form(self, call: Call, **extra: str | None) -> dict[str, str]:
        form = {
            "CallSid": call.sid,
            "AccountSid": self.twilio.account_sid,
            "From": call.from_,
            "To": call.to,
            "CallStatus": call.status,
            "Direction": "inbound" if call.inbound else "outbound-api",
            "ApiVersion": "2010-04-01",
        }
        form.update({name: value for name, value in extra.items() if value is not None})
        return form

    async def _play_outbound(
        self, call: Call, params: Mapping[str, str], events: list[str]
    ) -> None:
        callee = self.callees.get(call.to, self.default)
        callback = params.get("StatusCallback")
        try:
            if self.ring_seconds:
                await asyncio.sleep(self.ring_seconds)
            if callee.answers_when is not None:
                await asyncio.to_thread(callee.answers_when.wait, 60)
            if callee.answer in ("busy", "no-answer", "failed"):
                call.status = callee.answer
                return
            if callee.answer == "machine":
                call.answered_by = "machine_start" if "MachineDetection" in params else None
            elif "MachineDetection" in params:
                call.answered_by = "human"
            call.status = "in-progress"
            if callback and "answered" in events:
                await self._callback(callback, call)
            url = params.get("Url")
            if url:
                await self._run(call, url, self._form(call, AnsweredBy=call.answered_by), callee)
            call.status = "completed"
        except (ClientError, OSError, TimeoutError) as exc:
            self.twilio._violation(f"call {call.sid}: the application could not be reached: {exc}")
            call.status = "failed"
        finally:
            with self.twilio._lock:
                self.active -= 1
            if callback:
                await self._callback(
                    callback, call, CallDuration="0" if call.status != "completed" else "20"
                )
            call.ended.set()

    async def _callback(self, url: str, call: Call, **extra: str) -> None:
        # Twilio does not retry a status callback either.
        with contextlib.suppress(ClientError, OSError, TimeoutError):
            await self.twilio._post_form(
                url, self._form(call, AnsweredBy=call.answered_by, **extra), "valid", None
            )

    async def _fetch_twiml(self, call: Call, url: str, form: dict[str, str]) -> ET.Element | None:
        status, content_type, body = await self.twilio.post_for_answer(
            url, headers=self._signed_headers(url, form), data=form
        )
        if status != 200:
            self.twilio._violation(f"call {call.sid}: {url} answered {status}")
            return None
        if "xml" not in content_type:
            self.twilio._violation(f"call {call.sid}: {url} answered {content_type}, not XML")
        return self._parse(call, body)

    def _signed_headers(self, url: str, form: dict[str, str]) -> dict[str, str]:
        from fakes.twilio import SIGNATURE_HEADER, signature

        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            SIGNATURE_HEADER: signature(self.twilio.auth_token, url, form),
        }

    def _parse(self, call: Call, body: bytes) -> ET.Element | None:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            self.twilio._violation(f"call {call.sid}: TwiML is not XML: {exc}")
            return None
        problems = check_twiml(root)
        for problem in problems:
            self.twilio._violation(f"call {call.sid}: {problem}")
        return None if problems else root

    async def _run(self, call: Call, url: str, form: dict[str, str], callee: Callee) -> None:
        keys = deque(callee.keys)
        root = await self._fetch_twiml(call, url, form)
        for _ in range(10):  # a Redirect or a Gather's action leads on: at most this far
            if root is None:
                return
            following: tuple[str, dict[str, str]] | None = None
            for verb in root:
                if verb.tag == "Hangup":
                    return
                if verb.tag == "Redirect":
                    following = ((verb.text or "").strip(), self._form(call))
                    break
                if verb.tag == "Gather":
                    call.gathers += 1
                    for inner in verb:
                        await self._hear(call, inner)
                    callee.listening.set()
                    if callee.presses_when is not None:
                        await asyncio.to_thread(callee.presses_when.wait, 60)
                    key = keys.popleft() if keys else None
                    if self.talk_seconds:
                        await asyncio.sleep(self.talk_seconds)
                    if key is not None:
                        call.pressed.append(key)
                        following = (verb.attrib["action"], self._form(call, Digits=key))
                        break
                    continue
                await self._hear(call, verb)
            if following is None:
                return
            root = await self._fetch_twiml(call, following[0], following[1])

    async def _hear(self, call: Call, verb: ET.Element) -> None:
        if verb.tag == "Say":
            call.heard.append(("say", (verb.text or "").strip()))
            call.said_in.append((verb.attrib.get("voice"), verb.attrib.get("language")))
        elif verb.tag == "Play":
            url = (verb.text or "").strip()
            async with self.twilio.client.get(url) as response:
                body = await response.read()
                if response.status != 200 or not body.startswith(b"RIFF"):
                    self.twilio._violation(f"call {call.sid}: <Play> {url}: not a WAV file")
            call.heard.append(("play", url))
            call.played.append(body)

    # -- inbound -----------------------------------------------------------------------------

    async def call_in(self, url: str, *, from_: str, callee: Callee) -> Call:
        """Someone calls the account's number: Twilio asks ``url`` (the number's voice webhook)
        what to say, and the call is played to ``callee`` (the caller)."""
        from fakes.twilio import new_sid

        call = Call(
            sid=new_sid("CA"),
            to=self.twilio.phone_number,
            from_=from_,
            inbound=True,
            status="ringing",
        )
        self.calls[call.sid] = call
        await self._run(call, url, self._form(call), callee)
        call.status = "completed"
        call.ended.set()
        return call


def check_twiml(root: ET.Element) -> list[str]:
    """What is wrong with a TwiML document for a call (empty: nothing)."""
    problems: list[str] = []
    if root.tag != "Response":
        return [f"TwiML root is <{root.tag}>, not <Response>"]
    for verb in root:
        problems += _check_verb(verb, inside=None)
        if verb.tag == "Gather":
            for inner in verb:
                if inner.tag not in IN_GATHER:
                    problems.append(f"<{inner.tag}> inside <Gather>")
                problems += _check_verb(inner, inside="Gather")
            action = verb.attrib.get("action", "")
            if not action.startswith(("http://", "https://")):
                problems.append("<Gather> without an absolute action URL")
            if verb.attrib.get("input", "dtmf") not in ("dtmf", "speech", "dtmf speech"):
                problems.append(f"<Gather input={verb.attrib.get('input')!r}>")
    return problems


def _check_verb(verb: ET.Element, *, inside: str | None) -> list[str]:
    known = VERBS.get(verb.tag)
    if known is None or verb.tag == "Response":
        return [f"unknown TwiML verb <{verb.tag}>"]
    problems = [
        f"<{verb.tag}> has no attribute {name!r}" for name in verb.attrib if name not in known
    ]
    if verb.tag in ("Say", "Play") and not (verb.text or "").strip():
        problems.append(f"<{verb.tag}> is empty")
    return problems


def _E164(number: str) -> bool:
    return number.startswith("+") and number[1:].isdigit() and 7 <= len(number) <= 16
