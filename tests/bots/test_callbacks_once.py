"""A provider callback posted twice, with the database up, acts once and is answered twice.

Twilio retries a webhook that timed out (and two webhook processes may each receive a copy);
Telegram redelivers an update it thinks was lost. For every kind of callback the real app gets
the same signed request twice: the second is answered like the first (2xx, the same TwiML) and
changes nothing: one answer to the check-in, one help alert, one step of the ladder, one
receipt, one inbox message and one reply. The replay of the spool shares the keys, so a
callback applied at once and replayed later still counts once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from bots.spool import Spool
from config.i18n import t
from config.languages import DEFAULT_LANGUAGE
from config.settings import Settings
from dispatch import calls
from dispatch.escalation import run_escalations
from dispatch.models import (
    Alert,
    AlertKind,
    Answer,
    CallOutcome,
    InboundMessage,
    OutboxMessage,
    OutboxStatus,
    VoiceCall,
)
from dispatch.outbox import enqueue
from registry.db import unit_of_work, utcnow
from registry.models import Channel, Person
from registry.profile_sync import Directory
from tests.bots.test_spool import PUBLIC, SECRET, TOKEN, outage_settings, served
from tests.bots.test_voice_e2e import _recipient, _setup

pytestmark = pytest.mark.db
RESIDENT = "+97286123490"
SID = "CA" + "7" * 32


def signed(path: str, params: dict[str, str]) -> dict[str, str]:
    """The headers of a Twilio callback to ``path`` signed with our auth token."""
    return {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)}


async def post_twice(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> list[httpx.Response]:
    """The same signed Twilio callback, posted twice."""
    headers = signed(path, params)
    return [await client.post(path, data=params, headers=headers) for _ in range(2)]


def _answered_during_outage(settings: Settings, *, fill: bool) -> tuple[str, int, int]:
    """A call answered while the database is away (after messages filled the spool, with
    ``fill``): what the callee hears, and the records spooled before and after it."""
    with served(settings) as (client, runtime, _ctx):
        assert runtime.intake is not None and runtime.intake.spool is not None
        spool = runtime.intake.spool
        runtime.intake.database.failed(ConnectionError("the database is away"))

        async def post_messages() -> list[int]:
            codes = []
            for n in range(40):
                form = {"MessageSid": f"SMf{n}", "From": RESIDENT, "Body": "x" * 40}
                answer = await client.post(
                    "/sms/inbound", data=form, headers=signed("/sms/inbound", form)
                )
                codes.append(answer.status_code)
            return codes

        if fill:
            codes = asyncio.run(post_messages())
            assert codes[0] == 200 and codes[-1] == 503  # full, for messages
        before = spool.status().pending
        form = {"CallSid": SID, "From": "+972500000000", "To": RESIDENT, "AnsweredBy": "human"}
        answer, again = asyncio.run(post_twice(client, "/voice/call/7", form))
        assert answer.status_code == again.status_code == 200 and "<Hangup" in answer.text
        return answer.text, before, spool.status().pending


def _claims(sessions: sessionmaker[Session], prefix: str) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(InboundMessage.provider_key).where(
                    InboundMessage.provider_key.startswith(prefix)
                )
            )
        )


def _call_placed(ctx: object, *, retries: int = 2) -> tuple[int, int]:
    """A landline resident in a drill check-in, their call placed (outbox id, person id)."""
    (resident,) = _setup(
        SimpleNamespace(ctx=ctx),  # type: ignore[arg-type]
        [{"name": "Rivka", "phone": RESIDENT, "language": "he"}],
        retries=retries,
    )
    with unit_of_work(ctx.sessions) as session:  # type: ignore[attr-defined]
        run_escalations(session, now=utcnow())  # a landline: the call comes first
        outbox_id = session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.channel == Channel.VOICE)
        ).one()
        session.get_one(OutboxMessage, outbox_id).status = OutboxStatus.SENT
        calls.calls_placed(session, placed=[(outbox_id, SID)], now=utcnow())
    return outbox_id, resident


def _voice_rows(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(
            session.scalar(select(func.count()).where(OutboxMessage.channel == Channel.VOICE)) or 0
        )


def test_a_key_pressed_twice_answers_the_checkin_once(
    database_url: str, sessions: sessionmaker[Session], directory: Directory, tmp_path: Path
) -> None:
    settings = outage_settings(database_url, tmp_path / "spool")
    with served(settings) as (client, _runtime, ctx):
        outbox_id, resident = _call_placed(ctx)
        with unit_of_work(ctx.sessions) as session:  # they also read Telegram: acks go there
            person = session.get_one(Person, resident)
            person.telegram_chat_id, person.channel = 4242, Channel.TELEGRAM
        form = {"CallSid": SID, "From": "+972500000000", "To": RESIDENT, "Digits": "2"}
        first, again = asyncio.run(
            post_twice(client, f"/voice/call/{outbox_id}/keys?lang=he&round=1", form)
        )
        assert first.status_code == again.status_code == 200
        assert "<Hangup" in again.text and again.text == first.text  # the same goodbye
        with ctx.sessions() as session:
            acks = session.scalar(select(func.count()).where(OutboxMessage.kind == "ack"))
            assert acks == 1  # "the team has your request", once
        assert _recipient(SimpleNamespace(ctx=ctx), resident).answer == Answer.HELP  # type: ignore[arg-type]
        with ctx.sessions() as session:
            alerts = session.scalars(select(Alert).where(Alert.person_id == resident)).all()
            assert [a.kind for a in alerts] == [AlertKind.HELP]
            call = session.scalars(select(VoiceCall)).one()
            assert call.outcome == CallOutcome.HELP
        assert _claims(ctx.sessions, "voice:") == [f"voice:{SID}:keys"]


def test_a_calls_end_told_twice_moves_the_ladder_once(
    database_url: str, sessions: sessionmaker[Session], directory: Directory, tmp_path: Path
) -> None:
    settings = outage_settings(database_url, tmp_path / "spool")
    with served(settings) as (client, _runtime, ctx):
        outbox_id, _resident = _call_placed(ctx)
        assert _voice_rows(ctx.sessions) == 1
        form = {"CallSid": SID, "From": "+972500000000", "To": RESIDENT, "CallStatus": "no-answer"}
        first, again = asyncio.run(post_twice(client, f"/voice/call/{outbox_id}/status", form))
        assert first.status_code == again.status_code == 204
        assert _voice_rows(ctx.sessions) == 2  # called again once, not twice
        with ctx.sessions() as session:
            call = session.scalars(select(VoiceCall)).one()
            assert call.outcome == CallOutcome.NO_ANSWER and call.ended_at is not None
        assert _claims(ctx.sessions, "voice:") == [f"voice:{SID}:status:no-answer"]


def test_a_strangers_2_told_twice_is_one_help_request(
    database_url: str, sessions: sessionmaker[Session], directory: Directory, tmp_path: Path
) -> None:
    settings = outage_settings(database_url, tmp_path / "spool")
    stranger = "+97286999011"
    with served(settings) as (client, _runtime, ctx):
        _setup(SimpleNamespace(ctx=ctx), [])  # type: ignore[arg-type]
        form = {"CallSid": SID, "From": stranger, "To": "+972500000000", "Digits": "2"}
        first, again = asyncio.run(post_twice(client, "/voice/inbound/keys?lang=he", form))
        assert first.status_code == again.status_code == 200
        assert again.text == first.text and "<Hangup" in again.text
        with ctx.sessions() as session:
            (caller,) = session.scalars(select(Person).where(Person.phone == stranger)).all()
            alerts = session.scalars(select(Alert).where(Alert.person_id == caller.id)).all()
            assert [a.kind for a in alerts] == [AlertKind.HELP_REQUEST]
            assert session.scalar(select(func.count()).select_from(VoiceCall)) == 1


def test_a_delivery_receipt_told_twice_changes_the_message_once(
    database_url: str, sessions: sessionmaker[Session], directory: Directory, tmp_path: Path
) -> None:
    settings = outage_settings(database_url, tmp_path / "spool")
    with served(settings) as (client, _runtime, ctx):
        with unit_of_work(ctx.sessions) as session:
            message = enqueue(session, channel=Channel.SMS, address=RESIDENT, text="hi")
            message.status, message.provider_id = OutboxStatus.SENT, "SMrcpt1"
            session.flush()
            message_id = message.id
        form = {"MessageSid": "SMrcpt1", "MessageStatus": "undelivered", "ErrorCode": "30008"}
        first, again = asyncio.run(post_twice(client, "/sms/status", form))
        assert first.status_code == again.status_code == 200
        with ctx.sessions() as session:
            row = session.get_one(OutboxMessage, message_id)
            assert (
                row.status == OutboxStatus.FAILED and row.last_error == "twilio undelivered 30008"
            )
        assert _claims(ctx.sessions, "smsstatus:") == ["smsstatus:SMrcpt1:undelivered"]


def test_an_sms_told_twice_is_stored_and_answered_once(
    database_url: str, sessions: sessionmaker[Session], directory: Directory, tmp_path: Path
) -> None:
    settings = outage_settings(database_url, tmp_path / "spool")
    with served(settings) as (client, runtime, ctx):
        form = {"MessageSid": "SMin1", "From": RESIDENT, "To": "+972500000000", "Body": "hello"}
        first, again = asyncio.run(post_twice(client, "/sms/inbound", form))
        assert first.status_code == again.status_code == 200
        assert again.text == first.text and "<Response" in again.text
        assert runtime.processor is not None
        runtime.processor.drain()
        assert _claims(ctx.sessions, "sms:") == ["sms:SMin1"]
        with ctx.sessions() as session:
            replies = session.scalar(select(func.count()).where(OutboxMessage.address == RESIDENT))
            assert replies == 1


def test_a_telegram_update_delivered_twice_is_stored_and_answered_once(
    database_url: str, sessions: sessionmaker[Session], directory: Directory, tmp_path: Path
) -> None:
    settings = outage_settings(database_url, tmp_path / "spool")
    chat = 5550123
    update = {
        "update_id": 9001,
        "message": {
            "message_id": 1,
            "date": 1767225600,
            "chat": {"id": chat, "type": "private", "first_name": "Omer"},
            "from": {"id": chat, "is_bot": False, "first_name": "Omer"},
            "text": "hello",
        },
    }
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    with served(settings) as (client, runtime, ctx):

        async def twice() -> list[int]:
            return [
                (await client.post("/telegram/webhook", json=update, headers=headers)).status_code
                for _ in range(2)
            ]

        assert asyncio.run(twice()) == [200, 200]
        assert runtime.processor is not None
        runtime.processor.drain()
        assert _claims(ctx.sessions, "tg:") == ["tg:9001"]
        with ctx.sessions() as session:
            replies = session.scalar(select(func.count()).where(OutboxMessage.address == str(chat)))
            assert replies == 1


def test_a_key_applied_at_once_and_replayed_from_a_spool_counts_once(
    database_url: str, sessions: sessionmaker[Session], directory: Directory, tmp_path: Path
) -> None:
    """Twilio's repeat reached another process during its outage and was spooled there: its
    replay finds the key the first delivery claimed."""
    settings = outage_settings(database_url, tmp_path / "spool")
    with served(settings) as (client, _runtime, ctx):
        outbox_id, resident = _call_placed(ctx)
        form = {"CallSid": SID, "From": "+972500000000", "To": RESIDENT, "Digits": "2"}
        first, _ = asyncio.run(
            post_twice(client, f"/voice/call/{outbox_id}/keys?lang=he&round=1", form)
        )
        assert first.status_code == 200
        other = Spool(
            tmp_path / "other", max_bytes=1 << 20, max_age=timedelta(hours=1), clock=utcnow
        )
        data = {"outbox": str(outbox_id), "digits": "2"}
        assert other.append_voice(event="keys", call_sid=SID, data=data, received_at=utcnow())
        assert other.replay(ctx.sessions) == 1
        other.close()
        with ctx.sessions() as session:
            alerts = session.scalars(select(Alert).where(Alert.person_id == resident)).all()
            assert [a.kind for a in alerts] == [AlertKind.HELP]


# --- a call answered while the database is away, the spool full --------------------------------


def test_a_call_answered_with_the_spool_full_of_messages_still_keeps_its_call_again(
    database_url: str, sessions: sessionmaker[Session], directory: Directory, tmp_path: Path
) -> None:
    """Messages filled the spool: the call's record uses the room kept for calls, so "we will
    call you again" is true (the ladder calls again once the database is back)."""
    settings = outage_settings(database_url, tmp_path / "spool", spool_max_bytes=2400)
    said, before, after = _answered_during_outage(settings, fill=True)
    assert t(DEFAULT_LANGUAGE, "voice.prompt.outage.call") in said
    assert after == before + 1  # kept once (Twilio's repeat too): the ladder calls again


def test_a_call_answered_when_even_the_calls_room_is_gone_promises_nothing(
    database_url: str, sessions: sessionmaker[Session], directory: Directory, tmp_path: Path
) -> None:
    """The spool takes nothing at all: the callee hears the emergency numbers, never "we will
    call you again" (the call's deadline sends the buddy instead)."""
    settings = outage_settings(database_url, tmp_path / "spool", spool_max_bytes=16)
    said, before, after = _answered_during_outage(settings, fill=False)
    assert t(DEFAULT_LANGUAGE, "voice.prompt.outage.numbers") in said
    assert t(DEFAULT_LANGUAGE, "voice.prompt.outage.call") not in said
    assert before == after == 0
