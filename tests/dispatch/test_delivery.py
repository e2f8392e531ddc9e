"""Delivery receipts and the move to the next channel, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.clock import ManualClock
from dispatch.delivery import record_sms_status
from dispatch.models import BlockReason, ChannelBlock, OutboxMessage, OutboxStatus
from dispatch.outbox import enqueue
from registry.models import Channel
from tests.dispatch.conftest import MakePerson

pytestmark = pytest.mark.db


def sent_sms(sessions: sessionmaker[Session], person_id: int, phone: str, sid: str) -> int:
    with sessions() as session:
        message = enqueue(
            session, channel=Channel.SMS, address=phone, text="hi", person_id=person_id
        )
        message.status = OutboxStatus.SENT
        message.provider_id = sid
        session.commit()
        return message.id


def test_delivered_then_a_late_sent_callback_does_not_go_back(
    sessions: sessionmaker[Session], clock: ManualClock, make_person: MakePerson
) -> None:
    person = make_person(telegram=False)
    assert person.phone is not None
    message_id = sent_sms(sessions, person.id, person.phone, "SM1")
    with sessions() as session:
        assert record_sms_status(
            session, message_sid="SM1", status="delivered", error_code=None, now=clock.now()
        )
        assert record_sms_status(
            session, message_sid="SM1", status="sent", error_code=None, now=clock.now()
        )
        session.commit()
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        assert row.status == OutboxStatus.DELIVERED
        assert row.delivered_at == clock.now()
        assert not record_sms_status(
            session, message_sid="SMunknown", status="delivered", error_code=None, now=clock.now()
        )


def test_an_undelivered_landline_blocks_sms_for_that_person(
    sessions: sessionmaker[Session], clock: ManualClock, make_person: MakePerson
) -> None:
    person = make_person(telegram=False)
    assert person.phone is not None
    message_id = sent_sms(sessions, person.id, person.phone, "SM2")
    with sessions() as session:
        record_sms_status(
            session, message_sid="SM2", status="undelivered", error_code=30006, now=clock.now()
        )
        session.commit()
        row = session.get(OutboxMessage, message_id)
        assert row is not None and row.status == OutboxStatus.FAILED
        assert row.last_error == "twilio undelivered 30006"
        block = session.get(ChannelBlock, (person.id, Channel.SMS))
        assert block is not None and block.reason == BlockReason.LANDLINE


def test_an_undelivered_sms_for_someone_with_telegram_does_not_loop_back(
    sessions: sessionmaker[Session], clock: ManualClock, make_person: MakePerson
) -> None:
    """Telegram comes before SMS: after SMS fails there is no channel left to try."""
    person = make_person()
    assert person.phone is not None
    sent_sms(sessions, person.id, person.phone, "SM3")
    with sessions() as session:
        record_sms_status(
            session, message_sid="SM3", status="failed", error_code=30003, now=clock.now()
        )
        session.commit()
        rows = session.scalars(select(OutboxMessage)).all()
        assert [(r.channel, r.status) for r in rows] == [(Channel.SMS, OutboxStatus.FAILED)]
