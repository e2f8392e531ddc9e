"""The outbox's own services, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.clock import ManualClock
from dispatch.models import BlockReason, ChannelBlock, OutboxMessage, OutboxStatus
from dispatch.outbox import enqueue, forget_person
from registry.models import Channel
from tests.dispatch.conftest import MakePerson

pytestmark = pytest.mark.db


def test_erasure_empties_sent_texts_and_keeps_what_is_still_to_send(
    sessions: sessionmaker[Session], clock: ManualClock, make_person: MakePerson
) -> None:
    person = make_person(telegram=False)
    other = make_person(telegram=False)
    assert person.phone is not None and other.phone is not None
    with sessions() as session:
        sent = enqueue(
            session,
            channel=Channel.SMS,
            address=person.phone,
            text="Summary: Miriam, Herzl 12",
            person_id=person.id,
        )
        sent.status = OutboxStatus.DELIVERED
        goodbye = enqueue(
            session,
            channel=Channel.SMS,
            address=person.phone,
            text="Your data were deleted",
            person_id=person.id,
        )
        theirs = enqueue(
            session,
            channel=Channel.SMS,
            address=other.phone,
            text="Summary: Avi",
            person_id=other.id,
        )
        theirs.status = OutboxStatus.SENT
        session.add(
            ChannelBlock(
                person_id=person.id,
                channel=Channel.TELEGRAM,
                reason=BlockReason.BLOCKED,
                address="1",
                blocked_at=clock.now(),
            )
        )
        session.commit()
        ids = (sent.id, goodbye.id, theirs.id)
    with sessions() as session:
        forget_person(session, person_id=person.id, addresses=[])
        session.commit()
        texts = {m.id: m.text for m in session.scalars(select(OutboxMessage))}
        assert texts[ids[0]] == ""
        assert texts[ids[1]] == "Your data were deleted", "still to be sent: kept"
        assert texts[ids[2]] == "Summary: Avi", "other people's messages untouched"
        assert (
            session.scalars(select(ChannelBlock).where(ChannelBlock.person_id == person.id)).all()
            == []
        )
