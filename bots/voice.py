"""The voice edge: Twilio's webhooks for calls, mounted by :mod:`hosen.app`.

* ``POST /voice/call/{outbox}``: Twilio fetches what an answered outbound call says (with
  ``AnsweredBy`` from answering-machine detection): the check-in, or a hang-up for a machine;
* ``POST /voice/call/{outbox}/keys``: the key pressed in the check-in's Gather, answered with
  the goodbye (or the question again);
* ``POST /voice/call/{outbox}/status``: the call's status callback (answered, completed, busy, no-answer...);
* ``POST /voice/inbound`` and ``/voice/inbound/keys``: someone calls the Hosen number;
* ``GET /voice/prompts/{recordings}/{prompt}.wav``: the recorded prompts (Amharic) Twilio plays.

Every POST's ``X-Twilio-Signature`` is checked with twilio's ``RequestValidator`` (as for SMS:
:func:`bots.sms.signed_form`); a forged or unsigned request gets 403 and changes nothing,
database or not. Unlike an SMS, a call waits for its answer: these routes act in the database at
once (the caller's transaction) and answer with the TwiML the voice channel renders
(:mod:`dispatch.channels.voice`). A callback Twilio repeats is answered the same and acts once
(:mod:`dispatch.callbacks`).

While the database is away (or while anything waits in the spool before this callback), a key
1 or 2, an inbound caller's 2 and every status callback are kept in the webhooks' spool
(:mod:`bots.spool`) and applied once when it returns. What the caller hears then needs no
database: the language rides in the signed ``keys`` URL (``?lang=``, with ``heard=`` for an
inbound caller), and pressing 2 hears that the request is kept and will reach the municipality's
team, with the emergency numbers, never that someone is coming. A call answered while the
database is away hears "we will call you again" (in the default language: nothing tells the
callee's) and is called again by the ladder (outcome UNSERVED); only when the spool refuses even
that record (calls have room kept for them there) does it hear the emergency numbers instead,
and the ladder's deadline sends the buddy. An inbound caller then hears the menu in the default
language.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from bots.sms import signed_form
from bots.spool import DatabaseState, Spool, SpoolFull, database_unavailable
from config.languages import DEFAULT_LANGUAGE, Language
from config.settings import Settings
from dispatch import calls
from dispatch.channels import voice
from dispatch.channels.voice import Voices
from dispatch.models import CallOutcome
from registry.db import unit_of_work

Clock = Callable[[], datetime]
TWIML = "text/xml"


class DatabaseAway(Exception):
    """The database cannot take this callback now (or something waits in the spool before it)."""


Route = Callable[["VoiceWebhooks", Request], Awaitable[Response]]
SignedRoute = Callable[["VoiceWebhooks", Request, dict[str, str]], Awaitable[Response]]


def _signed(*required: str) -> Callable[[SignedRoute], Route]:
    """A Twilio route: the handler gets the signed form's parameters (``required`` among them);
    an unsigned or forged request, or one without them, is refused before it is called."""

    def wrap(handler: SignedRoute) -> Route:
        @functools.wraps(handler)
        async def route(self: VoiceWebhooks, request: Request) -> Response:
            params = await signed_form(self.settings, request, *required)
            if isinstance(params, Response):
                return params
            return await handler(self, request, params)

        return route

    return wrap


@dataclass
class VoiceWebhooks:
    settings: Settings
    sessions: sessionmaker[Session]
    clock: Clock
    voices: Voices
    spool: Spool | None = None  # the webhooks' spool (shared with SMS and Telegram)
    database: DatabaseState = field(default_factory=DatabaseState)

    def _twiml(self, body: str) -> Response:
        return Response(body, media_type=TWIML)

    def _goodbye(self, language: Language, prompt: str) -> Response:
        return self._twiml(voice.goodbye_twiml(self.voices, language=language, prompt=prompt))

    async def _kept_key(
        self, language: Language, event: str, call_sid: str, prompt: str, /, **data: str
    ) -> Response:
        """A key kept in the spool while the database is away: the goodbye ``prompt`` if it is
        kept, else the emergency numbers (nothing is promised that was not kept)."""
        if not await self._keep(event, call_sid, **data):
            return self._goodbye(language, "outage.numbers")
        return self._goodbye(language, prompt)

    def _url(self, path: str, **query: str) -> str:
        return f"{self.voices.public_url}{path}?{urlencode(query)}"

    @_signed("CallSid")
    async def call(self, request: Request, params: dict[str, str]) -> Response:
        """What an answered outbound call says."""
        outbox_id = int(request.path_params["outbox"])
        sid = params["CallSid"]
        answered_by = params.get("AnsweredBy")
        try:
            script = await self._db(
                calls.call_answered,
                ordered=False,
                outbox_id=outbox_id,
                call_sid=sid,
                answered_by=answered_by,
            )
        except DatabaseAway:
            if calls.is_machine(answered_by):  # its status callback records the machine
                return self._twiml(voice.hangup_twiml())
            # "We will call you again" only once that is kept (the spool keeps room for it);
            # if even that is refused, the callee hears the emergency numbers and nothing
            # promised, and the ladder's deadline for the call climbs to the buddy's visit
            # (dispatch.calls.call_deadline).
            if not await self._keep("unserved", sid, outbox=str(outbox_id)):
                return self._goodbye(DEFAULT_LANGUAGE, "outage.numbers")
            return self._goodbye(DEFAULT_LANGUAGE, "outage.call")
        if script is None or not script.ask:
            return self._twiml(voice.hangup_twiml())
        # Whether a volunteer would come rides in the signed keys URL, like the language: the
        # goodbye after a wrong key in the second round says the same as after no key at all.
        visit = "1" if script.visit else "0"
        keys_url = self._url(
            f"/voice/call/{outbox_id}/keys", lang=script.language.value, visit=visit
        )
        return self._twiml(
            voice.checkin_twiml(
                self.voices,
                language=script.language,
                drill=script.drill,
                keys_url=keys_url,
                no_key=calls.no_key_prompt(script.visit),
            )
        )

    @_signed()
    async def keys(self, request: Request, params: dict[str, str]) -> Response:
        """A key pressed in a check-in call."""
        outbox_id = int(request.path_params["outbox"])
        sid, digits = params.get("CallSid", ""), params.get("Digits", "")
        heard_in = _language(request.query_params.get("lang"))
        visit = request.query_params.get("visit") != "0"
        no_key = calls.no_key_prompt(visit)
        keys_url = self._url(
            f"/voice/call/{outbox_id}/keys", lang=heard_in.value, visit="1" if visit else "0"
        )
        try:
            pressed = await self._db(
                calls.keys_pressed,
                ordered=True,
                outbox_id=outbox_id,
                call_sid=sid,
                digits=digits,
            )
        except DatabaseAway:
            key = digits.strip()[:1]
            if key in calls.KEYS and sid:
                said = "bye_well" if key == "1" else "outage.help"
                return await self._kept_key(
                    heard_in, "keys", sid, said, outbox=str(outbox_id), digits=key
                )
            pressed = (heard_in, None)  # asked again, or the goodbye for no key
        if pressed is None:
            return self._twiml(voice.hangup_twiml())
        language, outcome = pressed
        if outcome is None:
            if request.query_params.get("round") == "2":
                return self._goodbye(language, no_key)
            return self._twiml(
                voice.again_twiml(self.voices, language=language, keys_url=keys_url, no_key=no_key)
            )
        return self._goodbye(language, "bye_well" if outcome == CallOutcome.WELL else "bye_help")

    @_signed("CallSid", "CallStatus")
    async def status(self, request: Request, params: dict[str, str]) -> Response:
        """A call's status callback."""
        sid, state = params["CallSid"], params["CallStatus"]
        outbox_id = int(request.path_params["outbox"])
        answered_by = params.get("AnsweredBy")
        try:
            await self._db(
                calls.call_ended,
                ordered=True,
                outbox_id=outbox_id,
                call_sid=sid,
                status=state,
                answered_by=answered_by,
            )
        except DatabaseAway:
            kept = await self._keep(
                "status", sid, outbox=str(outbox_id), status=state, answered_by=answered_by or ""
            )
            if not kept:
                return Response(status_code=503)
        return Response(status_code=204)

    @_signed("CallSid", "From")
    async def inbound(self, request: Request, params: dict[str, str]) -> Response:
        """Someone calls the Hosen number: their open check-in, or the menu."""
        sid, phone = params["CallSid"], params["From"]
        try:
            caller = await self._db(
                calls.inbound_call,
                ordered=False,
                call_sid=sid,
                phone=phone,
                default=DEFAULT_LANGUAGE,
            )
        except DatabaseAway:  # nobody known: the menu, in the default language
            caller = calls.Caller(person=None, campaign_id=None, language=DEFAULT_LANGUAGE)
        heard = "checkin" if caller.campaign_id is not None else "menu"
        keys_url = self._url("/voice/inbound/keys", lang=caller.language.value, heard=heard)
        if caller.campaign_id is not None:
            return self._twiml(
                voice.checkin_twiml(
                    self.voices,
                    language=caller.language,
                    drill=caller.drill,
                    keys_url=keys_url,
                    no_key=calls.no_key_prompt(caller.visit),
                )
            )
        return self._twiml(
            voice.menu_twiml(self.voices, language=caller.language, keys_url=keys_url)
        )

    @_signed("CallSid", "From")
    async def inbound_keys(self, request: Request, params: dict[str, str]) -> Response:
        """A key pressed by someone who called in, after their check-in or the menu."""
        sid, phone = params["CallSid"], params["From"]
        digits = params.get("Digits", "")
        heard_in = _language(request.query_params.get("lang"))
        try:
            language, prompt = await self._db(
                _inbound_keys,
                ordered=True,
                call_sid=sid,
                phone=phone,
                digits=digits,
                default=DEFAULT_LANGUAGE,
            )
        except DatabaseAway:
            key = digits.strip()[:1]
            # 2 asks for help (or answers the check-in heard so); 1 answers a check-in, but
            # after the menu it only asked how to register: nothing to keep.
            if key == "2" or (key == "1" and request.query_params.get("heard") == "checkin"):
                said = "outage.help" if key == "2" else "bye_well"
                data = {"phone": phone, "digits": key, "language": heard_in.value}
                return await self._kept_key(heard_in, "inbound_keys", sid, said, **data)
            language, prompt = heard_in, "register"
        return self._goodbye(language, prompt)

    async def prompt(self, request: Request) -> Response:
        """A recorded prompt, for Twilio's ``<Play>`` (only files the profile names)."""
        folder, name = request.path_params["recordings"], request.path_params["prompt"]
        if name not in voice.PROMPTS or self.voices.profile is None:
            return Response(status_code=404)
        for language, spoken in self.voices.profile.languages.items():
            if spoken.recordings == folder:
                path = self.voices.recording(Language(language), name)
                if path is not None:
                    return FileResponse(path, media_type="audio/wav")
        return Response(status_code=404)

    async def _db(self, action: Callable[..., Any], *, ordered: bool, **params: Any) -> Any:
        """:meth:`_in_db` on a worker thread, the event loop serving on meanwhile."""
        return await run_in_threadpool(self._in_db, action, ordered=ordered, **params)

    def _in_db(self, action: Callable[..., Any], *, ordered: bool, **params: Any) -> Any:
        """``action`` in a transaction of its own; :class:`DatabaseAway` when the database is
        known away, fails for being away, or (``ordered``: a callback that must come after what
        the spool holds) while anything is spooled."""
        spool = self.spool
        if spool is not None and (not self.database.up or (ordered and spool.active)):
            raise DatabaseAway
        try:
            with unit_of_work(self.sessions) as session:
                result = action(session, now=self.clock(), **params)
        except Exception as exc:
            if spool is None or not database_unavailable(exc):
                raise
            self.database.failed(exc)
            raise DatabaseAway from exc
        self.database.answered()
        return result

    async def _keep(self, event: str, call_sid: str, **data: str) -> bool:
        """Keep a callback in the spool; False when even the spool refuses it (said loudly by
        the spool). A callback Twilio repeats is kept once."""
        if self.spool is None:
            return False
        with contextlib.suppress(SpoolFull):
            await run_in_threadpool(
                self.spool.append_voice,
                event=event,
                call_sid=call_sid,
                data=data,
                received_at=self.clock(),
            )
            return True
        return False


def _inbound_keys(session: Session, **params: Any) -> tuple[Language, str]:
    return calls.inbound_keys(session, authority_id=calls.help_authority(session), **params)


def _language(value: str | None) -> Language:
    """The language named in a callback's (signed) query; the default one if none."""
    try:
        return Language(value) if value else DEFAULT_LANGUAGE
    except ValueError:
        return DEFAULT_LANGUAGE
