"""The voice edge: Twilio's webhooks for calls, mounted by :mod:`hosen.app`.

* ``POST /voice/call/{outbox}``: Twilio fetches what an answered outbound call says (with
  ``AnsweredBy`` from answering-machine detection): the check-in, or a hang-up for a machine;
* ``POST /voice/call/{outbox}/keys``: the key pressed in the check-in's Gather, answered with
  the goodbye (or the question again);
* ``POST /voice/call/{outbox}/status``: the call's status callback (answered, completed, busy, no-answer...);
* ``POST /voice/inbound`` and ``/voice/inbound/keys``: someone calls the Hosen number;
* ``GET /voice/prompts/{recordings}/{prompt}.wav``: the recorded prompts (Amharic) Twilio plays.

Every POST's ``X-Twilio-Signature`` is checked with twilio's ``RequestValidator`` (as for SMS);
a forged or unsigned request gets 403 and changes nothing. Unlike an SMS, a call waits for its
answer: these routes act in the database at once (the caller's transaction) and answer with
the TwiML of :mod:`dispatch.channels.voice`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from bots.sms import signed_by_twilio, twilio_form
from config.languages import DEFAULT_LANGUAGE, Language
from config.settings import Settings
from dispatch import calls
from dispatch.channels import voice
from dispatch.channels.voice import Voices
from dispatch.models import CallOutcome
from registry.db import unit_of_work
from registry.models import Authority

Clock = Callable[[], datetime]
TWIML = "text/xml"


@dataclass
class VoiceWebhooks:
    settings: Settings
    sessions: sessionmaker[Session]
    clock: Clock
    voices: Voices

    def _twiml(self, body: str) -> Response:
        return Response(body, media_type=TWIML)

    async def _signed_form(self, request: Request) -> dict[str, str] | None:
        params = await twilio_form(request)
        return params if signed_by_twilio(self.settings, request, params) else None

    async def call(self, request: Request) -> Response:
        """What an answered outbound call says."""
        params = await self._signed_form(request)
        if params is None:
            return Response(status_code=403)
        outbox_id = int(request.path_params["outbox"])
        sid = params.get("CallSid", "")
        if not sid:
            return Response(status_code=400)
        script = await run_in_threadpool(
            self._in_db,
            calls.call_answered,
            outbox_id=outbox_id,
            call_sid=sid,
            answered_by=params.get("AnsweredBy"),
        )
        if script is None or not script.ask:
            return self._twiml(voice.hangup_twiml())
        return self._twiml(
            voice.checkin_twiml(
                self.voices,
                language=script.language,
                drill=script.drill,
                keys_url=f"{self.voices.public_url}/voice/call/{outbox_id}/keys",
            )
        )

    async def keys(self, request: Request) -> Response:
        """A key pressed in a check-in call."""
        params = await self._signed_form(request)
        if params is None:
            return Response(status_code=403)
        outbox_id = int(request.path_params["outbox"])
        pressed = await run_in_threadpool(
            self._in_db,
            calls.keys_pressed,
            outbox_id=outbox_id,
            call_sid=params.get("CallSid", ""),
            digits=params.get("Digits", ""),
        )
        if pressed is None:
            return self._twiml(voice.hangup_twiml())
        language, outcome = pressed
        if outcome is None:
            if request.query_params.get("round") == "2":
                return self._twiml(
                    voice.goodbye_twiml(self.voices, language=language, prompt="bye_no_key")
                )
            return self._twiml(
                voice.again_twiml(
                    self.voices,
                    language=language,
                    keys_url=f"{self.voices.public_url}/voice/call/{outbox_id}/keys",
                )
            )
        prompt = "bye_well" if outcome == CallOutcome.WELL else "bye_help"
        return self._twiml(voice.goodbye_twiml(self.voices, language=language, prompt=prompt))

    async def status(self, request: Request) -> Response:
        """A call's status callback."""
        params = await self._signed_form(request)
        if params is None:
            return Response(status_code=403)
        sid, state = params.get("CallSid", ""), params.get("CallStatus", "")
        if not sid or not state:
            return Response(status_code=400)
        await run_in_threadpool(
            self._in_db,
            calls.call_ended,
            outbox_id=int(request.path_params["outbox"]),
            call_sid=sid,
            status=state,
            answered_by=params.get("AnsweredBy"),
        )
        return Response(status_code=204)

    async def inbound(self, request: Request) -> Response:
        """Someone calls the Hosen number: their open check-in, or the menu."""
        params = await self._signed_form(request)
        if params is None:
            return Response(status_code=403)
        sid, phone = params.get("CallSid", ""), params.get("From", "")
        if not sid or not phone:
            return Response(status_code=400)
        caller = await run_in_threadpool(
            self._in_db, calls.inbound_call, call_sid=sid, phone=phone, default=DEFAULT_LANGUAGE
        )
        keys_url = f"{self.voices.public_url}/voice/inbound/keys"
        if caller.campaign_id is not None:
            return self._twiml(
                voice.checkin_twiml(
                    self.voices, language=caller.language, drill=caller.drill, keys_url=keys_url
                )
            )
        return self._twiml(
            voice.menu_twiml(self.voices, language=caller.language, keys_url=keys_url)
        )

    async def inbound_keys(self, request: Request) -> Response:
        params = await self._signed_form(request)
        if params is None:
            return Response(status_code=403)
        sid, phone = params.get("CallSid", ""), params.get("From", "")
        if not sid or not phone:
            return Response(status_code=400)
        language, prompt = await run_in_threadpool(
            self._in_db,
            calls.inbound_keys,
            call_sid=sid,
            phone=phone,
            digits=params.get("Digits", ""),
            default=DEFAULT_LANGUAGE,
            authority_id=await run_in_threadpool(self._authority_id),
        )
        return self._twiml(voice.goodbye_twiml(self.voices, language=language, prompt=prompt))

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

    def _in_db(self, action: Callable[..., Any], **params: Any) -> Any:
        with unit_of_work(self.sessions) as session:
            return action(session, now=self.clock(), **params)

    def _authority_id(self) -> int | None:
        """Where a help request from an unknown caller is filed: the first authority (a caller's
        number tells no town; the officers on duty there take it on)."""
        with self.sessions() as session:
            return session.scalar(select(Authority.id).order_by(Authority.id).limit(1))
