"""A provider outage of two minutes, on the manual clock: the check-ins wait it out, the ladder
runs beside them, the channel is found down, probed and resumed, and the officers are told.

The providers are in-process channels answering on the manual clock (the Telegram one fails
every send while the outage lasts), so what the test sees does not depend on the machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.campaigns import Audience, Ladder, start_campaign
from dispatch.clock import ManualClock
from dispatch.escalation import run_escalations
from dispatch.gates import Breaker
from dispatch.models import (
    CampaignKind,
    CampaignMode,
    ChannelGate,
    OutboxMessage,
    OutboxStatus,
    Task,
)
from dispatch.outbox import count_unsent
from dispatch.senders import Outgoing, SendResult, Transient
from dispatch.worker import Worker, WorkerConfig
from registry.models import Authority, Channel, Person
from registry.staff import StaffMember, StaffRole
from tests.dispatch.conftest import MakePerson, ScriptedSender

pytestmark = pytest.mark.db

OUTAGE = timedelta(minutes=2)
LADDER = Ladder(
    reminder_after=timedelta(seconds=30),
    visit_after=timedelta(seconds=90),
    unreached_after=timedelta(minutes=30),
)
BREAKER = Breaker(failures=20, seconds=10.0, probe_every=5.0)


class Outage(ScriptedSender):
    """Telegram answering 502 to every send until ``until``, then accepting them all."""

    def __init__(self, clock: ManualClock, until: datetime) -> None:
        super().__init__(Channel.TELEGRAM, clock)
        self.until = until
        self.accepted: dict[str, datetime] = {}

    async def send(self, message: Outgoing) -> SendResult:
        if self.clock.now() < self.until:
            self.sent.append((self.clock.now(), message))
            return Transient(error="NetworkError: Bad Gateway")
        result = await super().send(message)
        self.accepted.setdefault(message.address, self.clock.now())
        return result


def run_until(
    sessions: sessionmaker[Session],
    clock: ManualClock,
    worker: Worker,
    done: Callable[[], bool],
) -> None:
    """The worker, and the ladder's sweep every five seconds (as ``hosen scheduler`` runs it),
    until ``done``."""

    def sweep() -> None:
        with sessions() as session:
            run_escalations(session, now=clock.now())
            session.commit()

    async def ladder(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await clock.sleep(5.0)
            release = clock.hold()
            try:
                await asyncio.to_thread(sweep)
            finally:
                release()

    async def go() -> None:
        stop = asyncio.Event()
        running = asyncio.gather(worker.run(stop), ladder(stop))
        try:
            for _ in range(6000):
                await asyncio.sleep(0.01)
                if done():
                    break
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=60)

    asyncio.run(go())


def test_a_two_minute_outage_delays_the_first_wave_and_loses_nobody(
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: ManualClock,
    authority: Authority,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    start = clock.now()
    with_phone = [make_person(needs=("lives_alone",)) for _ in range(20)]
    telegram_only = [make_person(needs=("lives_alone",), sms=False) for _ in range(5)]
    buddy = make_person(telegram=False, name="Buddy")
    for resident in telegram_only:
        make_buddy(resident, buddy)
    # The officer reads English (their staff row says so): the notices come in English.
    officer_phone = make_person(telegram=False, language=Language.EN, name="Officer").phone
    assert officer_phone is not None
    with sessions() as session:
        session.add(
            StaffMember(
                name="Officer",
                phone=officer_phone,
                telegram_chat_id=777,
                authority_id=authority.id,
                role=StaffRole.OFFICER,
                language=Language.EN,
            )
        )
        start_campaign(
            session,
            authority=authority,
            kind=CampaignKind.CHECKIN,
            mode=CampaignMode.EMERGENCY,
            audience=Audience(residents_only=True),
            started_by="test",
            now=start,
            ladder=LADDER,
        )
        session.commit()
    telegram = Outage(clock, until=start + OUTAGE)
    sms = ScriptedSender(Channel.SMS, clock)
    worker = Worker(
        sessions=sessions,
        senders={Channel.TELEGRAM: telegram, Channel.SMS: sms},
        settings=settings,
        clock=clock,
        config=WorkerConfig(idle_sleep=1.0, breaker=BREAKER),
    )
    residents = with_phone + telegram_only
    chats = {str(p.telegram_chat_id) for p in residents}

    def back_told() -> bool:
        return sum(officer_phone == m.address for _, m in sms.sent) >= 2

    def all_sent() -> bool:
        with sessions() as session:
            return count_unsent(session) == 0

    run_until(sessions, clock, worker, lambda: back_told() and all_sent())

    # Every resident got the check-in on Telegram once it answered again: nobody was given up.
    assert chats <= set(telegram.accepted)
    assert min(telegram.accepted.values()) >= start + OUTAGE
    with sessions() as session:
        checkins = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.kind == "checkin", OutboxMessage.channel == Channel.TELEGRAM
            )
        ).all()
        assert {m.status for m in checkins} == {OutboxStatus.SENT}
        tasks = session.scalars(select(Task)).all()
        gate = session.get_one(ChannelGate, Channel.TELEGRAM)
        assert gate.down_since is None and gate.failures == 0

    # The ladder ran meanwhile: reminders by SMS at 30 s, buddies sent at 90 s, all inside the
    # outage.
    by_sms = {m.address: at for at, m in sms.sent}
    for person in with_phone:
        assert person.phone is not None
        assert start + LADDER.reminder_after <= by_sms[person.phone] < start + OUTAGE
    assert {task.resident_id for task in tasks} == {p.id for p in telegram_only}
    assert buddy.phone is not None
    assert start + LADDER.visit_after <= by_sms[buddy.phone] < start + OUTAGE

    # Found down, probed with single sends, resumed; the officer told once each way, by SMS.
    told = [(at, m.text) for at, m in sms.sent if m.address == officer_phone]
    down, back = (
        t(Language.EN, f"dispatch.channel.{health}", channel="Telegram")
        for health in ("down", "back")
    )
    notices = [(at, text) for at, text in told if text in (down, back)]
    assert [text for _, text in notices] == [down, back]
    # The silent residents nobody can visit are the officer's alerts, pushed by SMS while
    # Telegram (their first way) is down: one each, nothing else.
    alerts = [text for _, text in told if text not in (down, back)]
    assert len(alerts) == len(with_phone)
    assert all(text.startswith("No buddy: ") for text in alerts)
    down_at, back_at = (at for at, _ in notices)
    assert down_at <= start + timedelta(seconds=30)
    assert start + OUTAGE <= back_at <= start + OUTAGE + timedelta(seconds=BREAKER.probe_every)
    probes = [at for at, _ in telegram.sent if down_at + timedelta(seconds=2) < at < start + OUTAGE]
    most = (start + OUTAGE - down_at) / timedelta(seconds=BREAKER.probe_every) + 1
    assert 0 < len(probes) <= most, (len(probes), most)
    assert not any(m.address == "777" for _, m in telegram.sent), "not by the channel down"


def test_a_channel_down_is_told_by_another_channel_or_not_at_all(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    """An officer reachable only by the channel that is down hears when it is back."""
    from dispatch.gates import Health
    from dispatch.outages import tell_officers

    with sessions() as session:
        session.add(StaffMember(name="A", phone="+972541110000", role=StaffRole.ADMIN))
        session.commit()
        down = tell_officers(
            session, channel=Channel.SMS, health=Health.DOWN, ways=(Channel.SMS,), now=clock.now()
        )
        back = tell_officers(
            session, channel=Channel.SMS, health=Health.BACK, ways=(Channel.SMS,), now=clock.now()
        )
        session.flush()
        queued = session.scalars(select(OutboxMessage)).all()
        assert (down, back) == (0, 1)
        [notice] = queued
        assert notice.channel == Channel.SMS and notice.address == "+972541110000"
        assert notice.text == t(Language.HE, "dispatch.channel.back", channel="SMS")
        assert session.scalars(select(Person)).all() == []
