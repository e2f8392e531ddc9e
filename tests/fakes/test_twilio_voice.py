"""The Twilio fake's Calls API: requests checked against the Calls spec, the TwiML it is given
checked verb by verb (Hosen's own TwiML passes), and a call played to a callee who does not
answer ends with a signed status callback."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from config.languages import Language
from config.profile import DEFAULT_PROFILE_PATH, load_profile
from config.settings import Settings
from dispatch.channels.voice import Voices, checkin_twiml, menu_twiml
from dispatch.clients import make_twilio_sync_client
from fakes.twilio import FakeTwilio
from fakes.twilio_voice import Callee, check_twiml


def test_hosens_twiml_passes_the_fakes_check() -> None:
    voices = Voices(load_profile(DEFAULT_PROFILE_PATH).voice, "https://hosen.example")
    for language in Language:
        for twiml in (
            checkin_twiml(voices, language=language, drill=True, keys_url="https://h.example/k"),
            menu_twiml(voices, language=language, keys_url="https://h.example/k"),
        ):
            root = ET.fromstring(twiml)
            assert check_twiml(root) == []
            gathers = root.findall("Gather")
            assert len(gathers) == 2  # asked twice
            assert all(g.attrib["input"] == "dtmf" for g in gathers)


def test_recordings_are_played_where_they_exist(tmp_path: Path) -> None:
    profile = load_profile(DEFAULT_PROFILE_PATH).voice
    assert profile is not None
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "question.wav").write_bytes(b"RIFF")
    voices = Voices(profile.model_copy(update={"prompts_dir": str(tmp_path)}), "https://h.example")
    root = ET.fromstring(
        checkin_twiml(voices, language=Language.AM, drill=False, keys_url="https://h.example/k")
    )
    played = [verb.text for gather in root.findall("Gather") for verb in gather]
    assert played == ["https://h.example/voice/prompts/am/question.wav"] * 2
    # A prompt not recorded yet is said in English rather than left out.
    assert root[0].tag == "Say" and root[0].attrib["language"] == "en-US"


@pytest.mark.parametrize(
    ("twiml", "problem"),
    [
        ("<Response><Gather><Say>x</Say></Gather></Response>", "without an absolute action"),
        ("<Response><Dial>+9725</Dial></Response>", "unknown TwiML verb <Dial>"),
        ("<Response><Say colour='red'>x</Say></Response>", "no attribute 'colour'"),
        (
            "<Response><Gather action='https://a/b'><Hangup/></Gather></Response>",
            "<Hangup> inside <Gather>",
        ),
        ("<Response><Say></Say></Response>", "<Say> is empty"),
        ("<Reply/>", "not <Response>"),
    ],
)
def test_bad_twiml_is_caught(twiml: str, problem: str) -> None:
    problems = check_twiml(ET.fromstring(twiml))
    assert any(problem in p for p in problems), problems


def _client(fake_settings: Settings) -> Client:
    return make_twilio_sync_client(fake_settings)


def test_a_call_with_an_unknown_parameter_or_without_a_url_is_refused(
    fake_twilio: FakeTwilio, fake_settings: Settings
) -> None:
    client = _client(fake_settings)
    with pytest.raises(TwilioRestException) as refused:
        client.calls.create(to="+97286123456", from_=fake_twilio.phone_number)
    assert refused.value.status == 400
    assert any("none of 'Url'" in v for v in fake_twilio.violations)
    with pytest.raises(TwilioRestException):
        client.calls.create(
            to="+97286123456",
            from_=fake_twilio.phone_number,
            url="https://h.example/twiml",
            machine_detection="Enable",
            status_callback_event=["answered", "hung-up"],
        )
    assert any("StatusCallbackEvent 'hung-up'" in v for v in fake_twilio.violations)
    fake_twilio.violations.clear()  # provoked on purpose


def test_an_unanswered_call_ends_with_its_status(
    fake_twilio: FakeTwilio, fake_settings: Settings
) -> None:
    fake_twilio.voice.callees["+97286123456"] = Callee(answer="no-answer", keys=[])
    client = _client(fake_settings)
    call = client.calls.create(
        to="+97286123456",
        from_=fake_twilio.phone_number,
        url="http://127.0.0.1:9/unreachable",  # never fetched: nobody answers
        machine_detection="Enable",
    )
    assert call.sid.startswith("CA") and call.status == "queued"
    played = fake_twilio.voice.calls[call.sid]
    for _ in range(6000):  # the call plays on the fake's own thread
        if played.ended.is_set():
            break
        time.sleep(0.01)
    assert played.ended.is_set()
    fetched = client.calls(call.sid).fetch()
    assert (fetched.to, fetched.status) == ("+97286123456", "no-answer")
    assert played.heard == [] and fake_twilio.voice.active == 0
