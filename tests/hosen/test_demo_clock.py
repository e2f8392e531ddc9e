"""The demo's drill clock: it stands still while the service is behind, never goes back, and
goes on at the real pace once the service has caught up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from dispatch.clock import DrillClock
from dispatch.models import InboundMessage, OutboxStatus
from dispatch.outbox import enqueue
from hosen.demo_clock import LAG, DrillPace, behind
from registry.models import Channel

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


class RealTime:
    """The real time, moved by the test."""

    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at

    def go(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def test_a_paused_clock_stands_still_and_goes_on_from_where_it_stopped() -> None:
    real = RealTime()
    clock = DrillClock(real)
    real.go(10)
    assert clock.now() == START + timedelta(seconds=10) and clock.held == 0
    clock.pause()
    real.go(5)
    assert clock.now() == START + timedelta(seconds=10) and clock.paused
    assert clock.held == 5
    clock.pause()  # already paused: nothing moves
    real.go(1)
    clock.resume()
    assert clock.now() == START + timedelta(seconds=10) and not clock.paused
    real.go(2)
    assert clock.now() == START + timedelta(seconds=12) and clock.held == 6
    clock.resume()  # already running: nothing jumps
    assert clock.now() == START + timedelta(seconds=12)


@pytest.mark.db
def test_the_pace_waits_for_the_outbox_and_the_inbox_then_lets_time_go_on(
    sessions: sessionmaker[Session],
) -> None:
    real = RealTime()
    clock = DrillClock(real)
    pace = DrillPace(clock, max_pause=20.0)
    with sessions() as session:
        message = enqueue(
            session,
            channel=Channel.TELEGRAM,
            address="1001",
            text="check-in",
            kind="checkin",
            now=clock.now(),
        )
        session.commit()
        # Just queued: the worker has its lag to send it.
        assert behind(session, now=clock.now()) is None
        real.go(LAG.total_seconds() + 1)
        assert behind(session, now=clock.now()) == "outbox"
        pace.check(session, real=0.0)
        assert clock.paused and pace.pauses == 1
        real.go(3)
        pace.check(session, real=3.0)
        frozen = clock.now()
        message.status = OutboxStatus.SENT
        session.add(
            InboundMessage(
                provider_key="tg:1",
                channel=Channel.TELEGRAM,
                payload={},
                sender="digest",
                received_at=frozen - LAG - timedelta(seconds=1),
            )
        )
        session.commit()
        pace.check(session, real=4.0)
        assert clock.paused and pace.why == {"outbox": 2, "inbox": 1}
        session.query(InboundMessage).update({"processed_at": frozen})
        session.commit()
        pace.check(session, real=5.0)
        assert not clock.paused and clock.now() == frozen
        real.go(1)
        assert clock.now() == frozen + timedelta(seconds=1)


@pytest.mark.db
def test_a_pause_that_never_ends_is_let_go(sessions: sessionmaker[Session]) -> None:
    real = RealTime()
    clock = DrillClock(real)
    pace = DrillPace(clock, max_pause=20.0)
    with sessions() as session:
        enqueue(
            session,
            channel=Channel.TELEGRAM,
            address="1001",
            text="stuck",
            kind="checkin",
            now=clock.now() - timedelta(minutes=1),
        )
        session.commit()
        pace.check(session, real=0.0)
        assert clock.paused
        pace.check(session, real=19.0)
        assert clock.paused
        pace.check(session, real=21.0)
        assert not clock.paused and pace.let_go == 1
