"""Phone calls while the database is away: the real ``hosen serve`` and twilio client against the
Twilio fake, the SQLite database made unwritable for real (as in ``test_spool.py``).

A resident who presses 2 during the outage hears that the request is kept (never that someone is
coming); once the database is back exactly one help alert is raised and pushed to the officer,
and the call's status callbacks are applied after it. A call answered during the outage hears
"we will call you again" and is called again. A stranger who calls the Hosen number and presses
2 during the outage is a help request once the database is back. Forged callbacks are refused
and a callback Twilio repeats is spooled once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bots.spool import Spool
from config.i18n import t
from config.languages import DEFAULT_LANGUAGE, Language
from config.settings import Settings
from dispatch.models import (
    Alert,
    AlertKind,
    Answer,
    CallOutcome,
    InboundMessage,
    OutboxMessage,
    VoiceCall,
)
from fakes.twilio import FakeTwilio
from fakes.twilio_voice import Call, Callee
from hosen import migrations
from hosen.app import Runtime
from registry.db import make_engine, make_sessionmaker, utcnow
from registry.models import Channel, Person, Source
from registry.profile_sync import Directory, sync_sample_profile
from tests.bots.test_e2e import Service, _free_port, start_service
from tests.bots.test_spool import unwritable
from tests.bots.test_voice_e2e import (
    OFFICER,
    _outcomes,
    _recipient,
    _retry_now,
    _setup,
    _voice_settings,
)
from tests.bots.test_voice_e2e import prompts as recorded_prompts

pytestmark = pytest.mark.e2e
prompts = recorded_prompts  # the fixture: the recorded prompts (Amharic), synthesised once


Scenario = Callable[[Service, FakeTwilio, Path], Any]


@pytest.fixture
def serve_on_file(
    fake_twilio: FakeTwilio, prompts: Path, tmp_path: Path
) -> Callable[[Scenario], None]:
    """Run a scenario against ``hosen serve`` on an SQLite file of its own (the outage makes
    that file unwritable)."""
    path = tmp_path / "db" / "hosen.sqlite3"
    path.parent.mkdir()
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrations.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        sync_sample_profile(session)
        session.commit()
    engine.dispose()
    base = Settings(database_url=url, spool_dir=tmp_path / "spool", _env_file=None)  # type: ignore[call-arg]
    port = _free_port()
    voiced = _voice_settings(base, fake_twilio, port, prompts, tmp_path)

    def serving(scenario: Scenario) -> None:
        async def run() -> None:
            service = await start_service(voiced, port)
            try:
                await scenario(service, fake_twilio, path)
            finally:
                await service.stop()

        asyncio.run(run())

    return serving


def _runtime(service: Service) -> Runtime:
    runtime = service.server.config.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


def _pending(service: Service) -> int:
    intake = _runtime(service).intake
    assert intake is not None and intake.spool is not None
    return intake.spool.status().pending


async def _wait(condition: Callable[[], bool], what: str) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def _back(service: Service) -> None:
    """The database is back: wait for the service's own replayer to drain the spool."""
    runtime = _runtime(service)
    assert runtime.intake is not None and runtime.intake.spool is not None
    spool = runtime.intake.spool
    await _wait(
        lambda: not spool.active and runtime.intake is not None and runtime.intake.database.up,
        "spool drained",
    )


async def _signed(fake: FakeTwilio, url: str, call: Call, signing: str, **extra: str) -> int:
    form = {
        "CallSid": call.sid,
        "AccountSid": fake.account_sid,
        "From": call.from_,
        "To": call.to,
        "CallStatus": "in-progress",
        **extra,
    }
    return await fake.run_async(fake._post_form(url, form, signing, None))  # type: ignore[arg-type,no-any-return]


def _said(call: Call) -> str:
    return " | ".join(text for _, text in call.heard)


def test_pressing_2_during_an_outage_is_one_help_alert_after_it(
    serve_on_file: Callable[[Scenario], None], fake_twilio: FakeTwilio
) -> None:
    phone = "+97286123470"
    callee = Callee(answer="human", keys=["2"], presses_when=threading.Event())
    fake_twilio.voice.callees[phone] = callee

    async def scenario(service: Service, fake: FakeTwilio, path: Path) -> None:
        (resident,) = _setup(service, [{"name": "Rivka", "phone": phone, "language": "ru"}])
        await service.flush()  # the call is placed, answered, and asks its question
        await asyncio.to_thread(callee.listening.wait, 60)
        (call,) = fake.voice.placed
        with service.ctx.sessions() as session:
            outbox_id = session.scalars(
                select(OutboxMessage.id).where(OutboxMessage.channel == Channel.VOICE)
            ).one()
        keys_url = f"{service.url}/voice/call/{outbox_id}/keys?lang=ru&round=1"
        service.ctx.engine.dispose()  # the next connection meets the outage
        with unwritable(path):
            callee.presses_when.set()  # type: ignore[union-attr]
            await _wait(call.ended.is_set, "the call ended")
            # The goodbye, in Russian from the signed URL: the request is kept, the emergency
            # numbers; not that someone is coming.
            assert call.pressed == ["2"]
            assert call.heard[-1] == ("say", t(Language.RU, "voice.prompt.outage.help"))
            assert "101" in call.heard[-1][1] and "102" in call.heard[-1][1]
            kept = _pending(service)
            assert kept == 2  # the key, then the "completed" status callback
            # Twilio asking again: answered the same, kept once.
            assert await _signed(fake, keys_url, call, "valid", Digits="2") == 200
            assert _pending(service) == kept
            # Forged or unsigned: refused, nothing kept, database or not.
            for signing in ("forged", "none"):
                assert await _signed(fake, keys_url, call, signing, Digits="1") == 403
                status_url = f"{service.url}/voice/call/{outbox_id}/status"
                assert await _signed(fake, status_url, call, signing) == 403
            assert _pending(service) == kept
        service.ctx.engine.dispose()
        await _back(service)
        await service.flush()  # the help loop's push to the officer goes out
        with service.ctx.sessions() as session:
            alerts = session.scalars(select(Alert).where(Alert.person_id == resident)).all()
            assert [a.kind for a in alerts] == [AlertKind.HELP]
            voice_call = session.scalars(select(VoiceCall)).one()
            assert voice_call.status == "completed" and voice_call.ended_at is not None
            assert voice_call.outcome == CallOutcome.HELP  # the status came after the key
            remembered = session.scalar(
                select(func.count()).where(InboundMessage.provider_key.startswith("voice:"))
            )
            assert remembered == 2
        assert _recipient(service, resident).answer == Answer.HELP
        told = [str(m["body"]) for m in fake.sent_to(OFFICER)]
        assert len([body for body in told if "Rivka" in body]) == 1  # the help alert's push
        assert t(DEFAULT_LANGUAGE, "officer.outage.drained", count=2) in told
        # Replayed again (a replayer cut short repeats its batch): nothing happens twice.
        runtime = _runtime(service)
        assert runtime.replayer is not None
        assert await asyncio.to_thread(runtime.replayer.step) == 0

    serve_on_file(scenario)


def test_a_call_answered_during_an_outage_is_called_again(
    serve_on_file: Callable[[Scenario], None], fake_twilio: FakeTwilio
) -> None:
    phone = "+97286123471"
    callee = Callee(answer="human", keys=["1"], answers_when=threading.Event())
    fake_twilio.voice.callees[phone] = callee

    async def scenario(service: Service, fake: FakeTwilio, path: Path) -> None:
        (resident,) = _setup(service, [{"name": "Moshe", "phone": phone, "language": "ar"}])
        await service.flush()  # placed; the callee has not picked up yet
        (first,) = fake.voice.placed
        service.ctx.engine.dispose()
        with unwritable(path):
            callee.answers_when.set()  # type: ignore[union-attr]
            await _wait(first.ended.is_set, "the first call ended")
            # No database: who is called is unknown, so the default language; no question.
            assert first.heard == [("say", t(DEFAULT_LANGUAGE, "voice.prompt.outage.call"))]
            assert first.gathers == 0
        service.ctx.engine.dispose()
        await _back(service)
        assert _outcomes(service, resident) == [CallOutcome.UNSERVED]
        assert _recipient(service, resident).answer == Answer.PENDING
        _retry_now(service)  # the ladder called again (its wait moved, not slept)
        for _ in range(200):
            await service.flush()
            if len(fake.voice.placed) == 2 and fake.voice.placed[1].ended.is_set():
                break
            await asyncio.sleep(0.02)
        second = fake.voice.placed[1]
        await _wait(second.ended.is_set, "the second call ended")
        await service.flush()
        assert second.pressed == ["1"]
        assert _outcomes(service, resident) == [CallOutcome.UNSERVED, CallOutcome.WELL]
        assert _recipient(service, resident).answer == Answer.OK

    serve_on_file(scenario)


def test_a_stranger_pressing_2_during_an_outage_is_a_help_request_after_it(
    serve_on_file: Callable[[Scenario], None], fake_twilio: FakeTwilio
) -> None:
    stranger = "+97286999001"

    async def scenario(service: Service, fake: FakeTwilio, path: Path) -> None:
        _setup(service, [])
        service.ctx.engine.dispose()
        with unwritable(path):
            call = await fake.run_async(
                fake.voice.call_in(
                    f"{service.url}/voice/inbound", from_=stranger, callee=Callee(keys=["2"])
                )
            )
            assert call.pressed == ["2"]
            assert t(DEFAULT_LANGUAGE, "voice.prompt.menu") in _said(call)
            assert call.heard[-1] == ("say", t(DEFAULT_LANGUAGE, "voice.prompt.outage.help"))
            assert _pending(service) == 1
        service.ctx.engine.dispose()
        await _back(service)
        await service.flush()
        with service.ctx.sessions() as session:
            caller = session.scalars(select(Person).where(Person.phone == stranger)).one()
            assert caller.source == Source.VOICE and caller.language == DEFAULT_LANGUAGE
            alerts = session.scalars(select(Alert).where(Alert.person_id == caller.id)).all()
            assert [a.kind for a in alerts] == [AlertKind.HELP_REQUEST]
            voice_call = session.scalars(select(VoiceCall)).one()
            assert voice_call.inbound and voice_call.outcome == CallOutcome.HELP
        told = [str(m["body"]) for m in fake.sent_to(OFFICER)]
        assert len(told) == 2 and t(DEFAULT_LANGUAGE, "officer.outage.drained", count=1) in told

    serve_on_file(scenario)


@pytest.mark.db
def test_a_callback_kept_by_two_processes_is_applied_once(
    sessions: sessionmaker[Session], directory: Directory, tmp_path: Path
) -> None:
    """Twilio's repeat reached two webhook processes (two spool files), or a replayer repeats a
    batch: the inbox's key makes the replay apply it once (SQLite and PostgreSQL)."""
    now = utcnow()
    spools = [
        Spool(tmp_path / "spool", max_bytes=1 << 20, max_age=timedelta(hours=1), clock=utcnow)
        for _ in range(2)
    ]
    data = {"phone": "+97286999002", "digits": "2", "language": "ar"}
    sid = "CA" + "1" * 32
    for spool in spools:
        assert spool.append_voice(event="inbound_keys", call_sid=sid, data=data, received_at=now)
        # The same callback again in one process: not written twice.
        assert not spool.append_voice(
            event="inbound_keys", call_sid=sid, data=data, received_at=now
        )
    spools[0].close()
    assert spools[1].replay(sessions) == 2
    spools[1].close()
    with sessions() as session:
        caller = session.scalars(select(Person).where(Person.phone == data["phone"])).one()
        assert caller.language == Language.AR
        alerts = session.scalars(select(Alert).where(Alert.person_id == caller.id)).all()
        assert [a.kind for a in alerts] == [AlertKind.HELP_REQUEST]
        keys = session.scalars(
            select(InboundMessage.provider_key).where(InboundMessage.sender.is_(None))
        ).all()
        assert keys == [f"voice:{sid}:inbound_keys"]
