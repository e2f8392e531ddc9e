"""The gates against real databases: each chat's next free time, read under a row lock; the
channel breaker, which goes down and comes back once however many workers count."""

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


def test_a_channel_goes_down_once_is_probed_one_send_at_a_time_and_comes_back_once(
    sessions: sessionmaker[Session],
) -> None:
    breaker = gates.Breaker(failures=20, seconds=10.0, probe_every=5.0)

    def count(at: float, *, answered: int = 0, failed: int = 0) -> gates.Health | None:
        with sessions() as session:
            health = gates.count_answers(
                session,
                channel=Channel.SMS,
                answered=answered,
                failed=failed,
                now=NOW + timedelta(seconds=at),
                breaker=breaker,
            )
            session.commit()
            return health

    def allowance(at: float) -> int | None:
        with sessions() as session:
            allowed = gates.claim_allowance(
                session, channel=Channel.SMS, now=NOW + timedelta(seconds=at), breaker=breaker
            )
            session.commit()
            return allowed

    with sessions() as session:
        gates.reserve_slots(session, channel=Channel.SMS, count=1, rate=30.0, now=NOW)
        session.commit()
    assert count(0, failed=30) is None  # many failures, but not for long yet
    assert count(5, answered=1, failed=5) is None  # an answer: the count starts again
    assert count(6, failed=30) is None
    assert count(15, failed=1) is None  # nine seconds of failures only
    assert allowance(15) is None
    assert count(16, failed=1) == gates.Health.DOWN
    assert count(16.5, failed=40) is None  # another worker's failures: down already
    # Down: one probe (one claim of one worker), then none until the next probe time.
    assert [allowance(17), allowance(17), allowance(20)] == [0, 0, 0]
    assert [allowance(21), allowance(21), allowance(25)] == [1, 0, 0]
    assert count(22, failed=1) is None  # the probe failed
    assert allowance(26) == 1
    assert count(27, answered=1) == gates.Health.BACK
    assert count(27, answered=3) is None  # another worker's answers: back already
    assert allowance(27) is None
