"""Phone calls end to end: the real ``hosen serve`` app and twilio client against the Twilio fake,
which places each call to a simulated callee, fetches and checks the TwiML, presses keys and
posts the signed status callbacks. A landline resident is called in Hebrew and presses 1; an
Amharic one hears the recorded prompts and presses 2 (the help loop: the officer gets a push);
no answer twice climbs to the buddy's visit; an answering machine is called again; someone
calls the Hosen number and presses 2; forged voice webhooks are refused. A retry's due time is
moved back in the database (nothing sleeps for it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import AnyHttpUrl
from sqlalchemy import select, update

from config.languages import Language
from config.profile import DEFAULT_PROFILE_PATH, load_profile
from config.settings import Settings
from dispatch.campaigns import Audience, start_campaign
from dispatch.models import (
    Alert,
    AlertKind,
    Answer,
    CallOutcome,
    Campaign,
    CampaignKind,
    CampaignMode,
    CampaignRecipient,
    OutboxMessage,
    OutboxStatus,
    Task,
    TaskReason,
    VoiceCall,
)
from dispatch.reports import drill_report
from fakes.twilio import FakeTwilio
from fakes.twilio_voice import Call, Callee
from hosen.prompts import synthesise_prompts
from registry.db import unit_of_work, utcnow
from registry.models import (
    AssignmentStatus,
    Authority,
    BuddyAssignment,
    Channel,
    Person,
    PhoneKind,
    Source,
    Zone,
)
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import StaffRole, add_staff
from tests.bots.test_e2e import Service, _free_port, service_settings, start_service

pytestmark = pytest.mark.e2e
OFFICER = "+972525550301"
BUDDY = "+972525550401"


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorded prompts (Amharic), synthesised once with espeak-ng."""
    folder = tmp_path_factory.mktemp("prompts")
    voice = load_profile(DEFAULT_PROFILE_PATH).voice
    assert voice is not None
    synthesise_prompts(voice.model_copy(update={"prompts_dir": str(folder)}))
    return folder


def _voice_settings(
    settings: Settings, fake: FakeTwilio, port: int, prompts: Path, tmp_path: Path
) -> Settings:
    profile = tmp_path / "profile.toml"
    text = DEFAULT_PROFILE_PATH.read_text(encoding="utf-8")
    profile.write_text(
        text.replace('prompts_dir = "var/prompts"', f'prompts_dir = "{prompts}"'), encoding="utf-8"
    )
    faked = service_settings(settings, telegram=None, twilio=fake, port=port)
    return faked.model_copy(
        update={
            "profile": profile,
            "public_url": AnyHttpUrl(f"http://127.0.0.1:{port}"),
            "voice_rate_per_second": 1000.0,
        }
    )


def _setup(service: Service, residents: list[dict[str, Any]], *, retries: int = 2) -> list[int]:
    """Residents with a buddy, an officer on duty, calls switched on; a drill check-in started."""
    ids: list[int] = []
    with unit_of_work(service.ctx.sessions) as session:
        authority = session.scalars(select(Authority).where(Authority.code == "kiryat-tamar")).one()
        authority.calls = True
        authority.call_retries = retries
        buddy = Person(
            authority_id=authority.id,
            source=Source.STAFF,
            name="Noa Buddy",
            phone=BUDDY,
            phone_kind=PhoneKind.MOBILE,
            channel=Channel.SMS,
            is_volunteer=True,
            birth_year=1980,
        )
        session.add(buddy)
        zone = session.scalars(
            select(Zone).where(Zone.authority_id == authority.id).order_by(Zone.id)
        ).first()
        for fields in residents:
            resident = Person(
                zone_id=zone.id if zone else None,
                authority_id=authority.id,
                source=Source.STAFF,
                needs_help=True,
                address="Herzl 5",
                channel=Channel.NONE,
                phone_kind=PhoneKind.LANDLINE,
                **fields,
            )
            session.add(resident)
            session.flush()
            ids.append(resident.id)
            session.add(
                BuddyAssignment(
                    resident_id=resident.id,
                    volunteer_id=buddy.id,
                    rank=1,
                    status=AssignmentStatus.CONFIRMED,
                )
            )
        add_staff(
            session,
            name="Dana Levi",
            phone=normalise_phone(OFFICER, region="IL"),
            authority=authority,
            role=StaffRole.OFFICER,
            actor="test",
        )
        start_campaign(
            session,
            authority=authority,
            kind=CampaignKind.CHECKIN,
            mode=CampaignMode.DRILL,
            audience=Audience(residents_only=True),
            started_by="test",
            now=utcnow(),
        )
    return ids


async def _calls_end(service: Service, fake: FakeTwilio, count: int) -> list[Call]:
    """Send what is due, until the fake has played ``count`` calls to their end (each one's
    status callback answered by the service)."""
    for _ in range(6000):
        await service.flush()
        placed = list(fake.voice.placed)
        if len(placed) >= count and all(call.ended.is_set() for call in placed):
            await service.flush()  # what the calls' ends queued (a visit, a push)
            return placed
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(fake.voice.placed)} calls placed, {count} expected to end")


def _retry_now(service: Service) -> None:
    """A call to be tried again later: its due time moved back to now."""
    with unit_of_work(service.ctx.sessions) as session:
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.channel == Channel.VOICE,
                OutboxMessage.status == OutboxStatus.QUEUED,
            )
            .values(due_at=utcnow())
        )


def _recipient(service: Service, person_id: int) -> CampaignRecipient:
    with service.ctx.sessions() as session:
        return session.scalars(
            select(CampaignRecipient).where(CampaignRecipient.person_id == person_id)
        ).one()


def _outcomes(service: Service, person_id: int) -> list[CallOutcome]:
    with service.ctx.sessions() as session:
        return list(
            session.scalars(
                select(VoiceCall.outcome)
                .where(VoiceCall.person_id == person_id)
                .order_by(VoiceCall.id)
            )
        )


Scenario = Callable[[Service, FakeTwilio], Awaitable[None]]


@pytest.fixture
def serve(
    settings: Settings, directory: Directory, fake_twilio: FakeTwilio, prompts: Path, tmp_path: Path
) -> Callable[..., None]:
    """Run a scenario against ``hosen serve`` with calls on, on a migrated database."""
    port = _free_port()
    voiced = _voice_settings(settings, fake_twilio, port, prompts, tmp_path)

    def serving(scenario: Scenario, **changes: Any) -> None:
        async def run() -> None:
            service = await start_service(voiced.model_copy(update=changes), port)
            try:
                await scenario(service, fake_twilio)
            finally:
                await service.stop()

        asyncio.run(run())

    return serving


def test_a_landline_resident_is_called_in_hebrew_and_presses_1(
    serve: Callable[..., None], fake_twilio: FakeTwilio
) -> None:
    phone = "+97286123456"
    fake_twilio.voice.callees[phone] = Callee(answer="human", keys=["1"])

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        (resident,) = _setup(service, [{"name": "Rivka", "phone": phone, "language": "he"}])
        (call,) = await _calls_end(service, fake, 1)
        assert call.to == phone
        assert call.pressed == ["1"]
        assert call.answered_by == "human"
        # The drill marker, the message, the question, then the goodbye: all in Hebrew.
        assert call.heard[0] == ("say", "זהו תרגיל.")
        assert "הקש 1" in call.said()
        assert "שמחים ששלומך טוב" in call.heard[-1][1]
        assert set(call.said_in) == {("Google.he-IL-Standard-A", "he-IL")}
        assert _recipient(service, resident).answer == Answer.OK
        assert _outcomes(service, resident) == [CallOutcome.WELL]
        assert fake.voice.placed[0].status == "completed"

    serve(scenario)


def test_an_amharic_resident_hears_the_recorded_prompts_and_presses_2(
    serve: Callable[..., None], fake_twilio: FakeTwilio
) -> None:
    phone = "+97286123457"
    fake_twilio.voice.callees[phone] = Callee(answer="human", keys=["2"])

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        (resident,) = _setup(service, [{"name": "Alemu", "phone": phone, "language": "am"}])
        (call,) = await _calls_end(service, fake, 1)
        # Every prompt played from its recording (no <Say>: Twilio has no Amharic voice).
        assert [kind for kind, _ in call.heard] == ["play"] * len(call.heard)
        assert call.heard[1][1].endswith("/voice/prompts/am/checkin.wav")
        assert call.heard[-1][1].endswith("/voice/prompts/am/bye_help.wav")
        assert all(audio.startswith(b"RIFF") for audio in call.played)
        assert _recipient(service, resident).answer == Answer.HELP
        assert _outcomes(service, resident) == [CallOutcome.HELP]
        with service.ctx.sessions() as session:
            alert = session.scalars(select(Alert).where(Alert.person_id == resident)).one()
            assert alert.kind == AlertKind.HELP
            task = session.scalars(select(Task).where(Task.resident_id == resident)).one()
            assert task.reason == TaskReason.HELP
        # The help loop: the officer on duty got the push, the buddy the visit.
        assert fake.sent_to(OFFICER)
        assert any("Alemu" in str(m["body"]) for m in fake.sent_to(BUDDY))

    serve(scenario)


def test_no_answer_twice_climbs_to_the_buddys_visit(
    serve: Callable[..., None], fake_twilio: FakeTwilio
) -> None:
    phone = "+97286123458"
    fake_twilio.voice.callees[phone] = Callee(answer="no-answer", keys=[])

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        (resident,) = _setup(
            service, [{"name": "Moshe", "phone": phone, "language": "he"}], retries=1
        )
        await _calls_end(service, fake, 1)
        assert _outcomes(service, resident) == [CallOutcome.NO_ANSWER]
        with service.ctx.sessions() as session:
            assert session.scalars(select(Task)).first() is None  # not yet: tried again first
        _retry_now(service)
        await _calls_end(service, fake, 2)
        assert _outcomes(service, resident) == [CallOutcome.NO_ANSWER, CallOutcome.NO_ANSWER]
        with service.ctx.sessions() as session:
            task = session.scalars(select(Task).where(Task.resident_id == resident)).one()
            assert task.reason == TaskReason.NO_ANSWER
        assert _recipient(service, resident).step == 2
        assert any("Moshe" in str(m["body"]) for m in fake.sent_to(BUDDY))

    serve(scenario)


def test_an_answering_machine_is_called_again(
    serve: Callable[..., None], fake_twilio: FakeTwilio
) -> None:
    phone = "+97286123459"
    fake_twilio.voice.callees[phone] = Callee(answer="machine", keys=[])

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        (resident,) = _setup(service, [{"name": "Sara", "phone": phone, "language": "ru"}])
        (first,) = await _calls_end(service, fake, 1)
        assert first.answered_by == "machine_start"
        assert first.heard == []  # nothing is left on a machine
        assert _outcomes(service, resident) == [CallOutcome.MACHINE]
        fake.voice.callees[phone] = Callee(answer="human", keys=[None, "1"])
        _retry_now(service)
        second = (await _calls_end(service, fake, 2))[1]
        assert second.gathers == 2  # asked twice: the first time nothing was pressed
        assert second.pressed == ["1"]
        assert _outcomes(service, resident) == [CallOutcome.MACHINE, CallOutcome.WELL]
        assert _recipient(service, resident).answer == Answer.OK
        # The drill report counts the calls per zone and outcome.
        with service.ctx.sessions() as session:
            campaign = session.scalars(select(Campaign)).one()
            zone = session.get_one(Zone, session.get_one(Person, resident).zone_id)
            counted = drill_report(session, campaign=campaign).calls
        assert counted == {
            zone.code: {
                "well": 1,
                "help": 0,
                "no_key": 0,
                "machine": 1,
                "busy": 0,
                "no_answer": 0,
                "failed": 0,
                "pending": 0,
                "unserved": 0,
            }
        }

    serve(scenario)


def test_answered_without_a_key_is_recorded_so_and_the_visit_goes(
    serve: Callable[..., None], fake_twilio: FakeTwilio
) -> None:
    phone = "+97286123460"
    fake_twilio.voice.callees[phone] = Callee(answer="human", keys=[None, None])

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        (resident,) = _setup(service, [{"name": "Yosef", "phone": phone, "language": "ar"}])
        (call,) = await _calls_end(service, fake, 1)
        assert call.gathers == 2 and call.pressed == []
        assert "لم نسمع" in call.heard[-1][1]  # the goodbye says a volunteer will come by
        assert _outcomes(service, resident) == [CallOutcome.NO_KEY]
        with service.ctx.sessions() as session:
            assert session.scalars(select(Task).where(Task.resident_id == resident)).one()

    serve(scenario)


def test_a_caller_to_the_hosen_number_presses_2_for_help(
    serve: Callable[..., None], fake_twilio: FakeTwilio
) -> None:
    stranger = "+97286999000"

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        _setup(service, [])
        call = await fake.run_async(
            fake.voice.call_in(
                f"{service.url}/voice/inbound", from_=stranger, callee=Callee(keys=["2"])
            )
        )
        assert "הקש 2" in call.said()  # the menu, in Hebrew for a caller we do not know
        assert call.pressed == ["2"]
        await service.flush()
        with service.ctx.sessions() as session:
            caller = session.scalars(select(Person).where(Person.phone == stranger)).one()
            alert = session.scalars(select(Alert).where(Alert.person_id == caller.id)).one()
            assert alert.kind == AlertKind.HELP_REQUEST
            assert caller.language == Language.HE and caller.source == Source.VOICE
        assert fake.sent_to(OFFICER)  # the officer on duty got the push

    serve(scenario)


def test_a_registered_caller_hears_their_open_checkin(
    serve: Callable[..., None], fake_twilio: FakeTwilio
) -> None:
    phone = "+97286123461"
    fake_twilio.voice.callees[phone] = Callee(answer="busy", keys=[])

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        (resident,) = _setup(service, [{"name": "Olga", "phone": phone, "language": "ru"}])
        await _calls_end(service, fake, 1)  # busy: the check-in stays open
        call = await fake.run_async(
            fake.voice.call_in(
                f"{service.url}/voice/inbound", from_=phone, callee=Callee(keys=["1"])
            )
        )
        assert call.heard[0] == ("say", "Это учения.")  # the check-in is a drill's
        assert "Нажмите 1" in call.said()
        assert _recipient(service, resident).answer == Answer.OK

    serve(scenario)


@pytest.mark.parametrize(
    "path",
    [
        "/voice/call/1",
        "/voice/call/1/keys?round=1",
        "/voice/call/1/status",
        "/voice/inbound",
        "/voice/inbound/keys",
    ],
)
@pytest.mark.parametrize("signing", ["forged", "none"])
def test_forged_voice_webhooks_get_403(serve: Callable[..., None], path: str, signing: str) -> None:
    async def scenario(service: Service, fake: FakeTwilio) -> None:
        (resident,) = _setup(service, [{"name": "Dov", "phone": "+97286123462", "language": "he"}])
        form = {
            "CallSid": "CA" + "0" * 32,
            "AccountSid": fake.account_sid,
            "From": "+97286123462",
            "To": fake.phone_number,
            "CallStatus": "completed",
            "Digits": "2",
        }
        status = await fake.run_async(
            fake._post_form(f"{service.url}{path}", form, signing, None)  # type: ignore[arg-type]
        )
        assert status == 403
        with service.ctx.sessions() as session:
            assert session.scalars(select(VoiceCall)).first() is None
            assert session.scalars(select(Alert)).first() is None
        assert _recipient(service, resident).answer == Answer.PENDING

    serve(scenario)


def test_no_more_calls_at_once_than_the_cap(
    serve: Callable[..., None], fake_twilio: FakeTwilio
) -> None:
    """Eight landline residents, two lines: the fake never has a third call in progress."""
    fake_twilio.voice.ring_seconds = 0.2  # calls overlap
    phones = [f"+9728612350{n}" for n in range(8)]

    async def scenario(service: Service, fake: FakeTwilio) -> None:
        residents = _setup(
            service,
            [{"name": f"R{n}", "phone": phone, "language": "he"} for n, phone in enumerate(phones)],
        )
        placed = await _calls_end(service, fake, len(phones))
        assert sorted(call.to for call in placed) == phones
        assert fake.voice.max_active <= 2  # the cap holds (how full it got depends on timing)
        assert all(_recipient(service, r).answer == Answer.OK for r in residents)

    serve(scenario, voice_max_calls=2)
