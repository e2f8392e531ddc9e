"""The voice channel (Twilio Calls): placing a call, classifying Twilio's answers for the worker,
and what a call says, as TwiML built with twilio's own ``VoiceResponse`` (never hand-written XML).

A check-in call: the drill marker (a drill), a short message, then "press 1 if you are well, 2 if
you need help" in a ``<Gather input="dtmf">``, asked twice, then a goodbye that says what happens
next. Keys are a call's "buttons": 1 and 2 stand for the check-in's two answers. Each language is
said by the text-to-speech voice the profile names (``<Say voice= language=>``) or played from a
recording a volunteer made (``<Play>``, files served by Hosen at ``/voice/prompts/...``): Twilio
has no Amharic voice, so Amharic is recorded. The webhooks that fetch these answers are
:mod:`bots.voice`; what a call's outcome does to the ladder is :mod:`dispatch.calls`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from twilio.twiml.voice_response import Gather, VoiceResponse

from config.i18n import t
from config.languages import Language
from config.profile import VoiceLanguage, VoiceProfile
from dispatch.channels.base import Outgoing, Permanent, SendResult, Sent, Transient, short_error
from dispatch.channels.sms import classify_twilio_error
from dispatch.models import BlockReason
from registry.models import Channel

# Every prompt a call can say; a recorded language has one ``<prompt>.wav`` for each.
PROMPTS = (
    "drill",  # "This is a drill."
    "checkin",  # who is calling and why
    "question",  # press 1 if you are well, 2 if you need help
    "bye_well",
    "bye_help",  # the team has your request: what happens next
    "bye_no_key",  # no key: someone will come by (only when a buddy would go)
    "no_buddy.bye_no_key",  # no key and nobody to send: the emergency team's list
    "welcome",  # an inbound caller we do not know
    "menu",  # press 2 to ask for help, 1 to hear how to register
    "register",  # how to register
    "outage.call",  # the database is away when a call starts: we will call again; 101/100/102
    "outage.help",  # 2 pressed while the database is away: the request is kept; 101/100/102
    "outage.numbers",  # even the spool is full: nothing was kept; 101/100/102
)
# Twilio error codes of a call that will never reach the number.
TWILIO_CALL_PERMANENT: dict[int, BlockReason] = {
    13223: BlockReason.INVALID_NUMBER,  # not a valid phone number format
    13224: BlockReason.INVALID_NUMBER,  # not a valid phone number
    21211: BlockReason.INVALID_NUMBER,
    21217: BlockReason.INVALID_NUMBER,  # phone number is not valid
}
GATHER_SECONDS = 6  # how long a Gather waits for a key
RING_SECONDS = 30  # how long a call rings before it counts as not answered


def prompt_text(language: Language | str, prompt: str) -> str:
    """A prompt's words from the message catalogs (what a recording says, too)."""
    return t(language, f"voice.prompt.{prompt}")


@dataclass(frozen=True)
class Voices:
    """The profile's voices and recordings, and where Hosen serves the recordings."""

    profile: VoiceProfile | None
    public_url: str  # HOSEN_PUBLIC_URL, without the trailing slash

    def of(self, language: Language) -> VoiceLanguage | None:
        return self.profile.languages.get(language) if self.profile else None

    def recording(self, language: Language, prompt: str) -> Path | None:
        """The recorded file of ``prompt`` in ``language``, if the profile records it and the
        file exists."""
        spoken = self.of(language)
        if self.profile is None or spoken is None or spoken.recordings is None:
            return None
        path = Path(self.profile.prompts_dir) / spoken.recordings / f"{prompt}.wav"
        return path if path.is_file() else None

    def recording_url(self, language: Language, prompt: str) -> str:
        spoken = self.of(language)
        assert spoken is not None and spoken.recordings is not None
        return f"{self.public_url}/voice/prompts/{spoken.recordings}/{prompt}.wav"

    def speak(self, verb: VoiceResponse | Gather, language: Language, prompt: str) -> None:
        """Add ``prompt`` to ``verb``: played from its recording, else said by the language's
        voice. A language with neither (a recording missing) is said in English, so that the
        call still asks its question."""
        if self.recording(language, prompt) is not None:
            verb.play(self.recording_url(language, prompt))
            return
        spoken = self.of(language)
        if spoken is None or spoken.voice is None:
            language = Language.EN
            spoken = self.of(language)
        if spoken is not None and spoken.voice is not None:
            verb.say(prompt_text(language, prompt), voice=spoken.voice, language=spoken.language)
        else:
            verb.say(prompt_text(language, prompt), language="en-US")


def checkin_twiml(
    voices: Voices,
    *,
    language: Language,
    drill: bool,
    keys_url: str,
    message: bool = True,
    no_key: str = "bye_no_key",
) -> str:
    """A check-in: the message, then the question in a Gather, asked twice; no key at all ends
    with the goodbye ``no_key`` (:func:`dispatch.calls.no_key_prompt`: what is true for this
    resident). ``keys_url`` receives the key (``&round=1|2`` added)."""
    response = VoiceResponse()
    if message:
        if drill:
            voices.speak(response, language, "drill")
        voices.speak(response, language, "checkin")
    for round_ in (1, 2):
        gather = Gather(
            input="dtmf",
            num_digits=1,
            timeout=GATHER_SECONDS,
            action=_with(keys_url, round=round_),
            method="POST",
        )
        voices.speak(gather, language, "question")
        response.append(gather)
    voices.speak(response, language, no_key)
    response.hangup()
    return str(response)


def goodbye_twiml(voices: Voices, *, language: Language, prompt: str) -> str:
    response = VoiceResponse()
    voices.speak(response, language, prompt)
    response.hangup()
    return str(response)


def again_twiml(
    voices: Voices, *, language: Language, keys_url: str, no_key: str = "bye_no_key"
) -> str:
    """A key that is neither 1 nor 2: the question once more."""
    return checkin_twiml(
        voices, language=language, drill=False, keys_url=keys_url, message=False, no_key=no_key
    )


def hangup_twiml() -> str:
    """An answering machine: nothing is left on it (a message could be heard by anyone)."""
    response = VoiceResponse()
    response.hangup()
    return str(response)


def menu_twiml(voices: Voices, *, language: Language, keys_url: str) -> str:
    """A caller without an open check-in: who we are, then "2 for help, 1 to hear how to register"."""
    response = VoiceResponse()
    voices.speak(response, language, "welcome")
    for round_ in (1, 2):
        gather = Gather(
            input="dtmf",
            num_digits=1,
            timeout=GATHER_SECONDS,
            action=_with(keys_url, round=round_),
            method="POST",
        )
        voices.speak(gather, language, "menu")
        response.append(gather)
    response.hangup()
    return str(response)


def _with(url: str, **params: object) -> str:
    joined = "&".join(f"{name}={value}" for name, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{joined}"


# --- sending -----------------------------------------------------------------------------------


def classify_call_error(
    status: int, code: int | None, error: str, *, retry_after: float | None = None
) -> SendResult:
    """A Twilio Calls error: a number that can never be called, else as for Messages."""
    if code is not None and code in TWILIO_CALL_PERMANENT:
        return Permanent(error=f"twilio {code}", reason=TWILIO_CALL_PERMANENT[code])
    return classify_twilio_error(status, code, error, retry_after=retry_after)


class VoiceSender:
    """Places calls with the async twilio client: ``calls.create`` with the URL Twilio fetches the
    call's TwiML from (``/voice/call/<outbox id>``), a status callback and answering-machine
    detection. The worker paces calls (calls a second) and caps how many are in progress."""

    channel = Channel.VOICE

    def __init__(self, make_client: Callable[[], Any], *, from_: str, public_url: str) -> None:
        self.make_client = make_client
        self.client: Any = None
        self.from_ = from_
        self.public_url = public_url.rstrip("/")

    async def start(self) -> None:
        if self.client is None:
            self.client = self.make_client()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.http_client.close()
            self.client = None

    async def send(self, message: Outgoing) -> SendResult:
        from twilio.base.exceptions import TwilioRestException

        from dispatch.clients import twilio_retry_after

        twilio_retry_after.set(None)
        try:
            created = await self.client.calls.create_async(
                to=message.address,
                from_=self.from_,
                url=f"{self.public_url}/voice/call/{message.id}",
                method="POST",
                status_callback=f"{self.public_url}/voice/call/{message.id}/status",
                status_callback_method="POST",
                status_callback_event=["answered", "completed"],
                machine_detection="Enable",
                timeout=RING_SECONDS,
            )
        except TwilioRestException as exc:
            return classify_call_error(
                int(exc.status), exc.code, str(exc.msg), retry_after=twilio_retry_after.get()
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Transient(error=short_error(exc))
        return Sent(provider_id=str(created.sid))
