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


def test_a_receipt_before_the_sid_is_recorded_is_kept_and_applied_later(
    sessions: sessionmaker[Session], clock: ManualClock, make_person: MakePerson
) -> None:
    """Twilio may call back before the worker commits the sid it got: the receipt must not be lost."""
    from dispatch.delivery import apply_early_receipts
    from dispatch.models import InboundMessage

    person = make_person(telegram=False)
    assert person.phone is not None
    with sessions() as session:
        message = enqueue(
            session, channel=Channel.SMS, address=person.phone, text="hi", person_id=person.id
        )
        message.status = OutboxStatus.SENDING
        session.commit()
        message_id = message.id
    with sessions() as session:
        for status in ("sent", "delivered", "delivered"):  # Twilio repeats itself sometimes
            assert not record_sms_status(
                session, message_sid="SMearly", status=status, error_code=None, now=clock.now()
            )
        session.commit()
        kept = session.scalars(
            select(InboundMessage).where(InboundMessage.processed_at.is_(None))
        ).all()
        assert len(kept) == 2
    with sessions() as session:  # the worker records the sid, then applies what was waiting
        row = session.get_one(OutboxMessage, message_id)
        row.status, row.provider_id = OutboxStatus.SENT, "SMearly"
        session.flush()
        assert apply_early_receipts(session, message_sids=["SMother"], now=clock.now()) == 0
        assert apply_early_receipts(session, message_sids=["SMearly"], now=clock.now()) == 2
        session.commit()
        assert session.get_one(OutboxMessage, message_id).status == OutboxStatus.DELIVERED
        assert apply_early_receipts(session, message_sids=["SMearly"], now=clock.now()) == 0
