"""Fixtures for the dispatcher tests: people to message, a clock that moves only when told to,
a scripted in-memory sender (a fake channel: it records what it was given and answers what
the test scripted for each address, like a provider would), the plan of a statement the
code under test ran, and a campaign started on a known ladder with what it queued per person."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from config.languages import Language
from config.settings import Settings
from dispatch.campaigns import Audience, Ladder, start_campaign
from dispatch.clock import ManualClock
from dispatch.models import CampaignKind, CampaignMode, OutboxMessage
from dispatch.senders import Outgoing, SendResult, Sent
from registry.models import (
    AssignmentStatus,
    Authority,
    BuddyAssignment,
    Channel,
    Person,
    PhoneKind,
    ResidentNeeds,
    Source,
)

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
LADDER = Ladder(
    reminder_after=timedelta(minutes=10),
    visit_after=timedelta(minutes=30),
    unreached_after=timedelta(minutes=60),
)


@contextmanager
def plans_of(engine: Engine, containing: str) -> Iterator[list[str]]:
    """The query plans of the statements containing ``containing`` that run in the block,
    filled in when it ends (each statement explained with its own parameters)."""
    seen: list[tuple[str, Any]] = []

    def keep(_conn: object, _cursor: object, statement: str, params: Any, *_: object) -> None:
        if containing in statement:
            seen.append((statement, params))

    plans: list[str] = []
    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield plans
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    explain = "EXPLAIN" if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
    with engine.connect() as connection:
        for statement, params in seen:
            rows = connection.exec_driver_sql(f"{explain} {statement}", params)
            plans.append("\n".join(str(row[-1]) for row in rows))


class ScriptedSender:
    """A channel that accepts everything unless a result was scripted for an address."""

    def __init__(self, channel: Channel, clock: ManualClock) -> None:
        self.channel = channel
        self.clock = clock
        self.sent: list[tuple[datetime, Outgoing]] = []
        self.script: dict[str, deque[SendResult]] = defaultdict(deque)
        self.started = False

    def answer(self, address: str, *results: SendResult) -> None:
        self.script[address].extend(results)

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    async def send(self, message: Outgoing) -> SendResult:
        self.sent.append((self.clock.now(), message))
        queue = self.script.get(message.address)
        if queue:
            return queue.popleft()
        return Sent(provider_id=f"{self.channel.value}-{message.id}-{len(self.sent)}")

    def addresses(self) -> list[str]:
        return [message.address for _, message in self.sent]


class ThreadAwareClock(ManualClock):
    """A manual clock that stands still while work runs in threads (the worker's database
    steps, ``asyncio.to_thread``). A plain manual clock moves to the next sleeper whenever the
    event loop has nothing to do, which it has not while a claim or a record runs in a thread:
    the worker's sweeps and lease renewals then raced ahead by as much as the machine was slow,
    and leases ran out in the middle of a batch (a message sent twice, on a busy machine only).
    """

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.in_threads = 0

    def count_threads_of(self, loop: asyncio.AbstractEventLoop) -> None:
        submit = loop.run_in_executor

        def counted(executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
            future = submit(executor, func, *args)
            self.in_threads += 1
            future.add_done_callback(self._thread_done)
            return future

        loop.run_in_executor = counted  # type: ignore[method-assign]

    def _thread_done(self, _: asyncio.Future[Any]) -> None:
        self.in_threads -= 1

    def _release_next(self) -> None:
        if self.in_threads:  # look again in a moment, without moving time
            asyncio.get_running_loop().call_later(0.001, self._release_next)
            return
        super()._release_next()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ThreadAwareClock:
    """The manual clock, counting the threads of every event loop the test starts."""
    clock = ThreadAwareClock(START)
    policy = asyncio.get_event_loop_policy()
    new_event_loop = policy.new_event_loop

    def new_counted_loop() -> asyncio.AbstractEventLoop:
        loop = new_event_loop()
        clock.count_threads_of(loop)
        return loop

    monkeypatch.setattr(policy, "new_event_loop", new_counted_loop)
    return clock


@pytest.fixture
def telegram(clock: ManualClock) -> ScriptedSender:
    return ScriptedSender(Channel.TELEGRAM, clock)


@pytest.fixture
def sms(clock: ManualClock) -> ScriptedSender:
    return ScriptedSender(Channel.SMS, clock)


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"telegram_rate_per_second": 1000.0, "sms_rate_per_second": 1000.0}
    )


MakePerson = Callable[..., Person]


@pytest.fixture
def make_person(sessions: sessionmaker[Session], authority: Authority) -> Iterator[MakePerson]:
    counter = iter(range(1, 1_000_000))

    def make(
        *,
        telegram: bool = True,
        sms: bool = True,
        landline: bool = False,
        language: Language = Language.HE,
        name: str | None = None,
        needs: tuple[str, ...] = (),
        **fields: object,
    ) -> Person:
        n = next(counter)
        with sessions() as session:
            person = Person(
                authority_id=authority.id,
                name=name or f"Resident {n}",
                phone=f"+97250{n:07d}" if (sms or landline) else None,
                phone_kind=PhoneKind.LANDLINE if landline else PhoneKind.MOBILE,
                telegram_chat_id=100_000 + n if telegram else None,
                language=language,
                channel=Channel.TELEGRAM if telegram else Channel.SMS,
                source=Source.STAFF,
                **fields,
            )
            if needs:
                person.needs_help = True
                person.needs = ResidentNeeds(**dict.fromkeys(needs, True))
            session.add(person)
            session.commit()
            return person

    yield make


@pytest.fixture
def make_buddy(sessions: sessionmaker[Session]) -> Callable[..., None]:
    def pair(resident: Person, volunteer: Person, rank: int = 1) -> None:
        with sessions() as session:
            session.add(
                BuddyAssignment(
                    resident_id=resident.id,
                    volunteer_id=volunteer.id,
                    rank=rank,
                    status=AssignmentStatus.CONFIRMED,
                )
            )
            session.commit()

    return pair


def begin(
    session: Session,
    authority: Authority,
    clock: ManualClock,
    *,
    mode: CampaignMode = CampaignMode.EMERGENCY,
    kind: CampaignKind = CampaignKind.CHECKIN,
    audience: Audience | None = None,
) -> int:
    """A campaign started now on ``LADDER`` (for the residents unless ``audience`` says), committed."""
    campaign = start_campaign(
        session,
        authority=session.get_one(Authority, authority.id),
        kind=kind,
        mode=mode,
        audience=audience or Audience(residents_only=True),
        started_by="test",
        now=clock.now(),
        ladder=LADDER,
    )
    session.commit()
    return campaign.id


def outbox_to(session: Session, person: Person) -> list[OutboxMessage]:
    """Every message queued for ``person``, oldest first."""
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.person_id == person.id)
            .order_by(OutboxMessage.id)
        )
    )
