"""The outbox worker against real databases, with scripted channels and a manual clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from dispatch import gates
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.clock import ManualClock
from dispatch.inflight import InFlightLimit
from dispatch.models import (
    Answer,
    BlockReason,
    CampaignRecipient,
    ChannelBlock,
    ChannelGate,
    OutboxMessage,
    OutboxStatus,
    Priority,
)
from dispatch.outbox import enqueue
from dispatch.senders import Outgoing, Permanent, RateLimited, SendResult, Transient
from dispatch.worker import AnotherWorkerRunning, Worker, WorkerConfig
from registry.models import Authority, Channel, PhoneKind
from tests.dispatch.conftest import (
    START,
    MakePerson,
    ScriptedSender,
    ThreadAwareClock,
    plans_of,
)

pytestmark = pytest.mark.db


def make_worker(
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: ManualClock,
    *senders: ScriptedSender,
    **config: object,
) -> Worker:
    return Worker(
        sessions=sessions,
        senders={sender.channel: sender for sender in senders},
        settings=settings,
        clock=clock,
        config=WorkerConfig(**config),  # type: ignore[arg-type]
    )


def put(
    sessions: sessionmaker[Session],
    clock: ManualClock,
    *,
    person_id: int | None,
    address: str,
    channel: Channel = Channel.TELEGRAM,
    priority: Priority = Priority.ROUTINE,
    risk_rank: int = 0,
    text: str = "hello",
    campaign_id: int | None = None,
) -> int:
    with sessions() as session:
        message = enqueue(
            session,
            channel=channel,
            address=address,
            text=text,
            person_id=person_id,
            priority=priority,
            due_at=clock.now(),
            campaign_id=campaign_id,
        )
        message.risk_rank = risk_rank
        session.commit()
        return message.id


def statuses(sessions: sessionmaker[Session]) -> list[tuple[int, Channel, OutboxStatus]]:
    with sessions() as session:
        return [
            (m.id, m.channel, m.status)
            for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        ]


def run(worker: Worker, rounds: int = 1) -> int:
    async def go() -> int:
        total = 0
        async with worker:
            for _ in range(rounds):
                total += await worker.run_once()
        return total

    return asyncio.run(go())


def test_interactive_first_then_emergency_drill_routine_and_most_at_risk_first(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    telegram: ScriptedSender,
) -> None:
    put(sessions, clock, person_id=None, address="1", priority=Priority.ROUTINE)
    put(sessions, clock, person_id=None, address="2", priority=Priority.DRILL, risk_rank=5)
    put(sessions, clock, person_id=None, address="3", priority=Priority.DRILL, risk_rank=1)
    put(sessions, clock, person_id=None, address="4", priority=Priority.EMERGENCY)
    put(sessions, clock, person_id=None, address="5", priority=Priority.INTERACTIVE)

    handled = run(make_worker(sessions, fast_settings, clock, telegram))

    assert handled == 5
    assert telegram.addresses() == ["5", "4", "3", "2", "1"]
    assert {status for *_, status in statuses(sessions)} == {OutboxStatus.SENT}
    with sessions() as session:
        message = session.scalars(select(OutboxMessage)).first()
        assert message is not None
        assert message.attempts == 1
        assert message.provider_id is not None
        assert message.lease_until is None


def test_the_channel_rate_holds_and_slots_are_spread(
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: ManualClock,
    telegram: ScriptedSender,
) -> None:
    limited = settings.model_copy(update={"telegram_rate_per_second": 30.0})
    for n in range(90):
        put(sessions, clock, person_id=None, address=str(n))
    start = clock.now()

    run(make_worker(sessions, limited, clock, telegram), rounds=3)

    times = [at for at, _ in telegram.sent]
    assert len(times) == 90
    # 90 messages at 30 a second need three seconds; no one-second window holds more than 30.
    assert (times[-1] - start) >= timedelta(seconds=89 / 30 - 0.001)
    for i in range(len(times) - 30):
        assert times[i + 30] - times[i] >= timedelta(seconds=0.999)


def test_two_workers_share_one_rate(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock
) -> None:
    """Slots come from the database: two workers' reservations never overlap."""
    with sessions() as session:
        first = gates.reserve_slots(
            session, channel=Channel.SMS, count=10, rate=10.0, now=clock.now()
        )
        session.commit()
    with sessions() as session:
        second = gates.reserve_slots(
            session, channel=Channel.SMS, count=10, rate=10.0, now=clock.now()
        )
        session.commit()
    assert first == clock.now()
    assert second == clock.now() + timedelta(seconds=1)


def test_one_chat_gets_at_most_one_message_a_second(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    telegram: ScriptedSender,
) -> None:
    first = put(sessions, clock, person_id=None, address="42", text="one")
    second = put(sessions, clock, person_id=None, address="42", text="two")
    worker = make_worker(sessions, fast_settings, clock, telegram)

    run(worker)
    assert [m.text for _, m in telegram.sent] == ["one"]
    with sessions() as session:
        deferred = session.get(OutboxMessage, second)
        assert deferred is not None and deferred.status == OutboxStatus.QUEUED
        assert deferred.attempts == 0
    clock.advance(1.0)
    run(worker)
    assert [m.text for _, m in telegram.sent] == ["one", "two"]
    assert telegram.sent[1][0] - telegram.sent[0][0] >= timedelta(seconds=1)
    assert first < second


def test_transient_errors_back_off_then_give_the_channel_up(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    telegram: ScriptedSender,
    sms: ScriptedSender,
    make_person: MakePerson,
) -> None:
    person = make_person()
    address = str(person.telegram_chat_id)
    telegram.answer(address, *[Transient(error="NetworkError: Bad Gateway")] * 3)
    message_id = put(sessions, clock, person_id=person.id, address=address, campaign_id=None)
    worker = make_worker(sessions, fast_settings, clock, telegram, sms, max_attempts=3)

    delays = []
    for _ in range(3):
        before = clock.now()
        run(worker)
        with sessions() as session:
            row = session.get(OutboxMessage, message_id)
            assert row is not None
            if row.status == OutboxStatus.QUEUED:
                delays.append((row.due_at - before).total_seconds())
                assert row.last_error == "NetworkError: Bad Gateway"
                clock.advance(delays[-1] + 0.001)
    assert len(telegram.sent) == 3
    # Exponential backoff with jitter: 1–2 s after the first failure, 2–4 s after the second.
    assert 1.0 <= delays[0] <= 2.0
    assert 2.0 <= delays[1] <= 4.0
    with sessions() as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        assert row.status == OutboxStatus.FAILED
        assert row.attempts == 3
        assert "gave up after 3 attempts" in (row.last_error or "")
        # Giving up after retries is not the person's fault: the channel stays open for them.
        assert session.get(ChannelBlock, (person.id, Channel.TELEGRAM)) is None
    run(worker)
    assert sms.addresses() == [person.phone]


def test_retry_after_pauses_the_channel_for_every_worker_and_keeps_the_row(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    telegram: ScriptedSender,
) -> None:
    telegram.answer("1", RateLimited(retry_after=5.0))
    put(sessions, clock, person_id=None, address="1")
    worker = make_worker(sessions, fast_settings, clock, telegram)

    run(worker)
    with sessions() as session:
        gate = session.get(ChannelGate, Channel.TELEGRAM)
        assert gate is not None and gate.paused_until == clock.now() + timedelta(seconds=5)
        row = session.scalars(select(OutboxMessage)).one()
        assert row.status == OutboxStatus.QUEUED
        assert row.attempts == 0  # a pause is not counted against the message
        assert gates.paused_until(session, channel=Channel.TELEGRAM, now=clock.now()) is not None
    clock.advance(4.0)
    assert run(make_worker(sessions, fast_settings, clock, telegram)) == 0
    clock.advance(1.0)
    assert run(make_worker(sessions, fast_settings, clock, telegram)) == 1
    assert telegram.addresses() == ["1", "1"]


def test_a_blocked_bot_moves_the_message_to_sms_and_stops_telegram_for_that_person(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    telegram: ScriptedSender,
    sms: ScriptedSender,
    make_person: MakePerson,
) -> None:
    person = make_person()
    address = str(person.telegram_chat_id)
    telegram.answer(
        address, Permanent(error="Forbidden: bot was blocked", reason=BlockReason.BLOCKED)
    )
    put(sessions, clock, person_id=person.id, address=address, text="first")
    worker = make_worker(sessions, fast_settings, clock, telegram, sms)

    run(worker, rounds=2)
    assert sms.addresses() == [person.phone]
    put(sessions, clock, person_id=person.id, address=address, text="second")
    run(worker, rounds=2)

    assert telegram.addresses() == [address]  # never tried again on Telegram
    assert [m.text for _, m in sms.sent] == ["first", "second"]
    with sessions() as session:
        block = session.get(ChannelBlock, (person.id, Channel.TELEGRAM))
        assert block is not None and block.reason == BlockReason.BLOCKED
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert [(r.channel, r.status) for r in rows] == [
            (Channel.TELEGRAM, OutboxStatus.FAILED),
            (Channel.SMS, OutboxStatus.SENT),
            (Channel.TELEGRAM, OutboxStatus.FAILED),
            (Channel.SMS, OutboxStatus.SENT),
        ]


def test_a_landline_answer_fixes_the_registry(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    sms: ScriptedSender,
    make_person: MakePerson,
) -> None:
    person = make_person(telegram=False)
    assert person.phone is not None
    sms.answer(person.phone, Permanent(error="twilio 21614", reason=BlockReason.LANDLINE))
    put(sessions, clock, person_id=person.id, address=person.phone, channel=Channel.SMS)

    run(make_worker(sessions, fast_settings, clock, sms))

    with sessions() as session:
        stored = session.get(type(person), person.id)
        assert stored is not None and stored.phone_kind == PhoneKind.LANDLINE
        assert session.get(ChannelBlock, (person.id, Channel.SMS)) is not None


def test_an_expired_lease_is_claimed_again(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    telegram: ScriptedSender,
) -> None:
    message_id = put(sessions, clock, person_id=None, address="7")
    dead = make_worker(sessions, fast_settings, clock, telegram, lease_seconds=30.0)
    claimed = dead._claim(Channel.TELEGRAM)  # the worker claims, then dies before sending
    assert [c.message.id for c in claimed] == [message_id]
    with sessions() as session:
        gates.release_lease(session, name="sqlite-worker", holder=dead.worker_id)
        session.commit()

    survivor = make_worker(sessions, fast_settings, clock, telegram, sweep_every=0.0)
    assert run(survivor) == 0  # still leased
    clock.advance(31)
    assert run(survivor) == 1
    assert telegram.addresses() == ["7"]
    with sessions() as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None and row.status == OutboxStatus.SENT and row.attempts == 2


def test_claims_skip_rows_another_worker_holds(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    telegram: ScriptedSender,
    db_kind: str,
) -> None:
    ids = [put(sessions, clock, person_id=None, address=str(n)) for n in range(4)]
    if db_kind == "sqlite":
        first = make_worker(sessions, fast_settings, clock, telegram)
        asyncio.run(first.start())
        with pytest.raises(AnotherWorkerRunning):
            asyncio.run(make_worker(sessions, fast_settings, clock, telegram).start())
        return
    # PostgreSQL: rows locked by another transaction are skipped, not waited for.
    with sessions() as holder:
        holder.scalars(
            select(OutboxMessage).where(OutboxMessage.id.in_(ids[:2])).with_for_update()
        ).all()
        worker = make_worker(sessions, fast_settings, clock, telegram)
        claimed = worker._claim(Channel.TELEGRAM)
        assert sorted(c.message.id for c in claimed) == ids[2:]
        holder.rollback()


def test_a_sqlite_claim_updates_the_rows_it_chose_by_their_key(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    telegram: ScriptedSender,
    db_kind: str,
) -> None:
    """Not by walking the queue: a claim's cost must not grow with the campaign's size."""
    if db_kind != "sqlite":
        pytest.skip("PostgreSQL plans from statistics; its claim is measured in bench/")
    for n in range(3):
        put(sessions, clock, person_id=None, address=str(n))
    worker = make_worker(sessions, fast_settings, clock, telegram)
    with plans_of(sessions.kw["bind"], "UPDATE outbox SET status") as plans:
        assert len(worker._claim(Channel.TELEGRAM)) == 3
    [plan] = plans
    assert plan.splitlines()[0] == "SEARCH outbox USING INTEGER PRIMARY KEY (rowid=?)", plan


class _SlowFirst(ScriptedSender):
    """Takes a moment (on the test's clock) over texts marked "slow", so a later message
    could overtake them."""

    def __init__(self, channel: Channel, clock: ManualClock) -> None:
        super().__init__(channel, clock)
        self.arrived: list[tuple[str, str]] = []

    async def send(self, message: Outgoing) -> SendResult:
        if message.text.startswith("slow"):
            await self.clock.sleep(0.05)
        self.arrived.append((message.address, message.text))
        return await super().send(message)


def test_one_chat_gets_its_messages_in_the_order_written(
    sessions: sessionmaker[Session], fast_settings: Settings, clock: ManualClock
) -> None:
    """A summary and the question whose buttons follow it must not swap places on the phone."""
    settings = fast_settings.model_copy(update={"telegram_rate_per_chat_per_second": 1000.0})
    sender = _SlowFirst(Channel.TELEGRAM, clock)
    put(sessions, clock, person_id=None, address="9", text="slow: the summary")
    put(sessions, clock, person_id=None, address="9", text="the question, with buttons")
    put(sessions, clock, person_id=None, address="8", text="someone else")

    assert run(make_worker(sessions, settings, clock, sender)) == 3

    to_nine = [text for address, text in sender.arrived if address == "9"]
    assert to_nine == ["slow: the summary", "the question, with buttons"]
    assert sender.arrived[0] == ("8", "someone else"), "other chats do not wait for a slow one"


class _HangsOn(ScriptedSender):
    """Never answers for one address, as a client whose own timeout failed would."""

    def __init__(self, channel: Channel, clock: ManualClock, address: str) -> None:
        super().__init__(channel, clock)
        self.hang_for = address

    async def send(self, message: Outgoing) -> SendResult:
        if message.address == self.hang_for:
            await asyncio.Event().wait()
        return await super().send(message)


def test_a_send_that_never_answers_is_given_up_and_retried_while_the_rest_go(
    sessions: sessionmaker[Session], fast_settings: Settings, clock: ManualClock
) -> None:
    sender = _HangsOn(Channel.TELEGRAM, clock, address="7")
    hung = put(sessions, clock, person_id=None, address="7", text="stuck")
    others = [put(sessions, clock, person_id=None, address=str(n)) for n in range(3)]

    assert run(make_worker(sessions, fast_settings, clock, sender, send_timeout=0.2)) == 4

    assert sorted(sender.addresses()) == ["0", "1", "2"]
    with sessions() as session:
        stuck = session.get_one(OutboxMessage, hung)
        assert (stuck.status, stuck.last_error, stuck.attempts) == (
            OutboxStatus.QUEUED,
            "timeout",
            1,
        )
        assert stuck.due_at > clock.now(), "backed off, not sent again at once"
        assert {session.get_one(OutboxMessage, i).status for i in others} == {OutboxStatus.SENT}


def test_each_channel_keeps_its_own_minimum_in_flight(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    telegram: ScriptedSender,
    sms: ScriptedSender,
) -> None:
    settings = fast_settings.model_copy(update={"sms_min_in_flight": 16})
    worker = make_worker(sessions, settings, clock, telegram, sms)
    by_channel = {
        channel: (limit.minimum, limit.limit, limit.maximum)
        for channel, limit in worker.in_flight.items()
    }
    assert by_channel == {Channel.TELEGRAM: (1, 2, 64), Channel.SMS: (16, 16, 64)}
    capped = make_worker(sessions, settings, clock, sms, max_in_flight=8)
    assert (capped.in_flight[Channel.SMS].minimum, capped.in_flight[Channel.SMS].limit) == (8, 8)


class _TakesTime(ScriptedSender):
    """Answers after a flat round trip on the test's clock (the worker measures round trips
    on the clock it is given, so a busy machine cannot make them look queued), and counts
    the sends under way."""

    def __init__(self, channel: Channel, clock: ManualClock) -> None:
        super().__init__(channel, clock)
        self.limit: InFlightLimit | None = None
        self.under_way = 0
        self.most_under_way = 0
        self.highest_limit = 0

    async def send(self, message: Outgoing) -> SendResult:
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        assert self.limit is not None
        self.highest_limit = max(self.highest_limit, self.limit.limit)
        try:
            await self.clock.sleep(0.1)  # Telegram's own, a tenth of a second
            return await super().send(message)
        finally:
            self.under_way -= 1


def test_sends_under_way_follow_the_in_flight_limit_as_it_climbs_during_a_batch(
    sessions: sessionmaker[Session], fast_settings: Settings, clock: ManualClock
) -> None:
    """A batch starts with as many couriers as the limit allows (two on Telegram); flat round
    trips let the limit climb, and couriers are hired so that more sends go out at once."""
    sender = _TakesTime(Channel.TELEGRAM, clock)
    worker = make_worker(sessions, fast_settings, clock, sender)
    sender.limit = worker.in_flight[Channel.TELEGRAM]
    for n in range(200):
        put(sessions, clock, person_id=None, address=str(n))

    assert run(worker) == 200

    assert sorted(sender.addresses(), key=int) == [str(n) for n in range(200)]
    assert sender.most_under_way >= 6, "couriers hired as the limit climbed"
    assert sender.most_under_way <= sender.highest_limit


class _StopsAfterFirst(ScriptedSender):
    """Asks the worker to stop as soon as the first message is out."""

    def __init__(self, channel: Channel, clock: ManualClock, stop: asyncio.Event) -> None:
        super().__init__(channel, clock)
        self.stop = stop

    async def send(self, message: Outgoing) -> SendResult:
        self.stop.set()
        return await super().send(message)


class _IdleUntilStopped(ThreadAwareClock):
    """The thread-aware clock on which the worker's idle waits (its sweeps', its lease
    renewals') last until it stops, without moving time: only the sends move it."""

    def __init__(self, stop: asyncio.Event) -> None:
        super().__init__(START)
        self.stop = stop

    async def sleep(self, seconds: float) -> None:
        await self.stop.wait()


def test_a_stopping_worker_records_what_it_sent_and_gives_back_what_it_claimed_ahead(
    sessions: sessionmaker[Session], fast_settings: Settings
) -> None:
    """The next batch is claimed while one goes out; stopping must not leave it leased."""

    async def go() -> None:
        stop = asyncio.Event()
        clock = _IdleUntilStopped(stop)
        clock.count_threads_of(asyncio.get_running_loop())
        ids = [put(sessions, clock, person_id=None, address=str(n)) for n in range(10)]
        sender = _StopsAfterFirst(Channel.TELEGRAM, clock, stop)
        worker = make_worker(
            sessions, fast_settings, clock, sender, max_batch=4, lanes_per_channel=1
        )
        await worker.run(stop)
        with sessions() as session:
            rows = [session.get_one(OutboxMessage, i) for i in ids]
        assert [r.status for r in rows] == [OutboxStatus.SENT] * 4 + [OutboxStatus.QUEUED] * 6
        assert {r.attempts for r in rows[4:]} == {0}, "given back, not counted as a try"
        assert all(r.leased_by is None and r.lease_until is None for r in rows[4:])
        # Only the pacer's sends moved the clock: nothing could have expired meanwhile.
        assert clock.now() - START < timedelta(seconds=1)

    asyncio.run(go())


class _PausedOnce(ScriptedSender):
    """Telegram asks for a minute's pause at the first message; stops the worker once all
    messages are out."""

    def __init__(self, clock: ManualClock, stop: asyncio.Event, total: int) -> None:
        super().__init__(Channel.TELEGRAM, clock)
        self.stop = stop
        self.total = total
        self.answer("0", RateLimited(retry_after=60.0))

    async def send(self, message: Outgoing) -> SendResult:
        result = await super().send(message)
        if len({m.address for _, m in self.sent}) == self.total and len(self.sent) > self.total:
            self.stop.set()
        return result


def test_a_pause_holds_for_the_batch_claimed_before_it_was_recorded(
    sessions: sessionmaker[Session], fast_settings: Settings, clock: ManualClock
) -> None:
    started = clock.now()
    for n in range(4):
        put(sessions, clock, person_id=None, address=str(n))

    async def go() -> _PausedOnce:
        stop = asyncio.Event()
        sender = _PausedOnce(clock, stop, total=4)
        worker = make_worker(
            sessions, fast_settings, clock, sender, max_batch=2, lanes_per_channel=1
        )
        await asyncio.wait_for(worker.run(stop), timeout=30)
        return sender

    sender = asyncio.run(go())
    first, *after = sender.sent
    assert first[1].address == "0"
    assert sorted(message.address for _, message in after) == ["0", "1", "2", "3"]
    assert all(at >= started + timedelta(seconds=60) for at, _ in after), [
        (at - started, message.address) for at, message in after
    ]


class _Slow(ScriptedSender):
    """A provider that takes a second to answer each message (on the test's clock, which
    stands still while the worker's database steps run: a busy machine cannot make a lease
    renewal late)."""

    async def send(self, message: Outgoing) -> SendResult:
        await self.clock.sleep(1.0)
        return await super().send(message)


def test_a_batch_that_outlasts_its_lease_keeps_it_and_is_sent_once(
    sessions: sessionmaker[Session], fast_settings: Settings, clock: ManualClock
) -> None:
    """Three sends a second apart, one at a time, against a lease of 0.6 s swept every 0.2 s:
    without renewal the sweep would put the rows back and the other lane send them again."""
    ids = [put(sessions, clock, person_id=None, address=str(n)) for n in range(3)]
    sender = _Slow(Channel.TELEGRAM, clock)

    def all_sent() -> bool:
        with sessions() as session:
            return all(session.get_one(OutboxMessage, i).status == OutboxStatus.SENT for i in ids)

    async def go() -> None:
        stop = asyncio.Event()
        worker = make_worker(
            sessions,
            fast_settings,
            clock,
            sender,
            lease_seconds=0.6,
            sweep_every=0.2,
            max_in_flight=1,
            idle_sleep=0.05,
        )
        running = asyncio.create_task(worker.run(stop))
        for _ in range(200):
            await clock.sleep(0.1)
            if await asyncio.to_thread(all_sent):
                await clock.sleep(0.7)  # a sweep or two more: nothing goes out again
                break
        stop.set()
        await asyncio.wait_for(running, timeout=10)

    asyncio.run(go())
    assert sorted(sender.addresses()) == ["0", "1", "2"]
    assert all_sent()


def test_a_check_in_outlasts_the_count_of_tries_while_its_recipient_waits(
    sessions: sessionmaker[Session],
    fast_settings: Settings,
    clock: ManualClock,
    authority: Authority,
    telegram: ScriptedSender,
    sms: ScriptedSender,
    make_person: MakePerson,
) -> None:
    """Transient failures past ``max_attempts`` keep a waited-for check-in on its channel, with
    back-off capped; once the recipient has answered, the count ends it as before."""
    person = make_person(needs=("lives_alone",))
    address = str(person.telegram_chat_id)
    telegram.answer(address, *[Transient(error="twilio HTTP 503")] * 8)
    with sessions() as session:
        campaign = start_drill_checkin(
            session, authority=authority, audience=Audience(), started_by="t", now=clock.now()
        )
        session.commit()
        campaign_id = campaign.id
    worker = make_worker(
        sessions, fast_settings, clock, telegram, sms, max_attempts=3, backoff_cap=10.0
    )

    def checkin() -> OutboxMessage:
        with sessions() as session:
            return session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.kind == "checkin",
                    OutboxMessage.person_id == person.id,
                    OutboxMessage.channel == Channel.TELEGRAM,
                )
            ).one()

    delays = []
    for _ in range(6):
        before = clock.now()
        run(worker)
        row = checkin()
        assert row.status == OutboxStatus.QUEUED, row.last_error
        delays.append((row.due_at - before).total_seconds())
        clock.advance(delays[-1] + 0.001)
    assert row.attempts == 6
    assert max(delays) <= 10.0 and delays[-1] >= 5.0  # capped (jitter 0.5-1.0 of the cap)
    assert sms.sent == []  # still Telegram's: no jump to the next channel by a count
    with sessions() as session:
        recipient = session.scalars(
            select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign_id)
        ).one()
        recipient.answer = Answer.OK
        session.commit()
    run(worker)
    assert checkin().status == OutboxStatus.FAILED
    assert "gave up after 7 attempts" in (checkin().last_error or "")
