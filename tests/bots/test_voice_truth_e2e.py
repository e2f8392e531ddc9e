"""What a call's goodbye promises after no key, end to end (the real ``hosen serve`` app and
twilio client against the Twilio fake): "a volunteer will come by" only when a buddy would go;
a resident nobody can be sent to hears that the municipality's emergency team will see on its
list that we could not reach them (what the "no buddy" alert is), in their language, recorded
for Amharic. The same after a wrong key in the second round (the keys route's goodbye)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import delete, select

from config.i18n import t
from dispatch.models import Alert, AlertKind, CallOutcome, Task
from fakes.twilio import FakeTwilio
from fakes.twilio_voice import Callee
from registry.db import unit_of_work
from registry.models import BuddyAssignment
from tests.bots.test_e2e import Service
from tests.bots.test_voice_e2e import _calls_end, _outcomes, _setup, prompts, serve

pytestmark = pytest.mark.e2e
__all__ = ["prompts", "serve"]  # fixtures


def _without_buddy(service: Service, resident: int) -> None:
    with unit_of_work(service.ctx.sessions) as session:
        session.execute(delete(BuddyAssignment).where(BuddyAssignment.resident_id == resident))


def _no_buddy_alert(service: Service, resident: int) -> Alert:
    with service.ctx.sessions() as session:
        return session.scalars(select(Alert).where(Alert.person_id == resident)).one()


def test_no_key_without_a_buddy_promises_no_volunteer(
    serve: Callable[..., None], fake_twilio: FakeTwilio
) -> None:
    phone = "+97286123470"
    fake_twilio.voice.callees[phone] = Callee(answer="human", keys=[None, None])

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        (resident,) = _setup(service, [{"name": "Galina", "phone": phone, "language": "ru"}])
        _without_buddy(service, resident)
        (call,) = await _calls_end(service, fake, 1)
        assert call.gathers == 2 and call.pressed == []
        goodbye = call.heard[-1][1]
        assert goodbye == t("ru", "voice.prompt.no_buddy.bye_no_key")
        assert goodbye != t("ru", "voice.prompt.bye_no_key")
        assert "Волонтёр" not in call.said()
        assert _outcomes(service, resident) == [CallOutcome.NO_KEY]
        # What the goodbye said is what happened: the officers' list, nobody sent.
        assert _no_buddy_alert(service, resident).kind == AlertKind.NO_BUDDY
        with service.ctx.sessions() as session:
            assert session.scalars(select(Task)).first() is None

    serve(scenario)


def test_no_key_without_a_buddy_is_recorded_in_amharic(
    serve: Callable[..., None], fake_twilio: FakeTwilio
) -> None:
    phone = "+97286123471"
    fake_twilio.voice.callees[phone] = Callee(answer="human", keys=[None, None])

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        (resident,) = _setup(service, [{"name": "Tigist", "phone": phone, "language": "am"}])
        _without_buddy(service, resident)
        (call,) = await _calls_end(service, fake, 1)
        assert [kind for kind, _ in call.heard] == ["play"] * len(call.heard)
        assert call.heard[-1][1].endswith("/voice/prompts/am/no_buddy.bye_no_key.wav")
        assert all(audio.startswith(b"RIFF") for audio in call.played)
        assert _no_buddy_alert(service, resident).kind == AlertKind.NO_BUDDY

    serve(scenario)


@pytest.mark.parametrize("buddy", [True, False])
def test_a_wrong_key_in_the_second_round_says_what_is_true(
    serve: Callable[..., None], fake_twilio: FakeTwilio, buddy: bool
) -> None:
    phone = "+97286123472" if buddy else "+97286123473"
    fake_twilio.voice.callees[phone] = Callee(answer="human", keys=[None, "9"])

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        (resident,) = _setup(service, [{"name": "Avi", "phone": phone, "language": "he"}])
        if not buddy:
            _without_buddy(service, resident)
        (call,) = await _calls_end(service, fake, 1)
        assert call.pressed == ["9"]
        key = "voice.prompt.bye_no_key" if buddy else "voice.prompt.no_buddy.bye_no_key"
        assert call.heard[-1][1] == t("he", key)
        with service.ctx.sessions() as session:
            task = session.scalars(select(Task).where(Task.resident_id == resident)).first()
            alerts = session.scalars(select(Alert.kind).where(Alert.person_id == resident)).all()
        if buddy:
            assert task is not None and alerts == []
        else:
            assert task is None and alerts == [AlertKind.NO_BUDDY]

    serve(scenario)
