"""The per-chat gate against real databases: each chat's next free time, read under a row lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dispatch import gates
from dispatch.models import ChatGate
from registry.models import Channel
from tests.dispatch.conftest import plans_of

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_chat_next_times_are_those_of_the_chats_asked_for_on_that_channel(
    sessions: sessionmaker[Session],
) -> None:
    times = {str(1_000 + n): NOW + timedelta(seconds=n) for n in range(600)}
    with sessions() as session:
        gates.set_chat_next_times(session, channel=Channel.TELEGRAM, times=times)
        gates.set_chat_next_times(
            session, channel=Channel.SMS, times={"1005": NOW + timedelta(hours=1)}
        )
        session.commit()

    asked = [str(1_000 + n) for n in range(0, 600, 3)] + ["1003", "77", "1599"]
    with sessions() as session:
        found = gates.chat_next_times(session, channel=Channel.TELEGRAM, addresses=asked)

    # Known chats with their own times (not the SMS row of "1005"); the unknown "77" is absent
    # and "1003", asked twice, appears once.
    assert found == {address: times[address] for address in asked if address != "77"}
    assert found["1599"] == NOW + timedelta(seconds=599)


def test_chat_next_times_lock_the_rows_read_until_the_transaction_ends(
    sessions: sessionmaker[Session],
) -> None:
    if sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite locks the whole database for a writer, not rows")
    with sessions() as session:
        gates.set_chat_next_times(session, channel=Channel.TELEGRAM, times={"42": NOW, "43": NOW})
        session.commit()

    def try_lock(other: Session, address: str) -> None:
        other.execute(
            select(ChatGate)
            .where(ChatGate.channel == Channel.TELEGRAM, ChatGate.address == address)
            .with_for_update(nowait=True)
        ).all()

    with sessions() as reader, sessions() as other:
        assert gates.chat_next_times(reader, channel=Channel.TELEGRAM, addresses=["42"]) == {
            "42": NOW
        }
        try_lock(other, "43")  # a chat not read stays free
        other.rollback()
        with pytest.raises(OperationalError, match="could not obtain lock"):
            try_lock(other, "42")
        other.rollback()
        reader.commit()
        try_lock(other, "42")  # free again once the reader's transaction ended


def test_chat_next_times_probe_each_chat_by_its_key_however_stale_the_statistics(
    sessions: sessionmaker[Session],
) -> None:
    """A campaign grows the table faster than PostgreSQL's statistics follow: the plan must
    still look each chat up by its key, not scan the channel's chats against the list."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite plans IN lists as key lookups by itself")
    with sessions() as session:
        session.execute(text("ANALYZE chat_gate"))  # statistics of an empty table
        for start in range(0, 20_000, 500):
            gates.set_chat_next_times(
                session,
                channel=Channel.TELEGRAM,
                times={str(n): NOW for n in range(start, start + 500)},
            )
        session.commit()

    with plans_of(engine, "FROM chat_gate") as plans, sessions() as session:
        found = gates.chat_next_times(
            session, channel=Channel.TELEGRAM, addresses=[str(n) for n in range(500)]
        )
        assert len(found) == 500
    [plan] = plans
    assert "Index Scan using pk_chat_gate" in plan, plan
    assert "address)::text = (wanted.address)::text" in plan.split("Index Cond:")[1], plan
