"""The outbox worker: claims due messages under a lease, sends them within the shared rate
limits, and records what the provider answered.

Claiming is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`` on
PostgreSQL, so any number of ``hosen worker`` processes can share a database without sending a
row twice; a worker killed mid-batch leaves rows in ``sending`` whose lease runs out, and the
sweep puts them back in the queue (at least once: those in-flight rows may be sent twice). A
live worker renews the leases of the batches it holds, however long they take to go out.
SQLite has no row locks: there, exactly one worker may run, enforced by a lease row
(``process_lease`` "sqlite-worker") that a second worker finds taken and refuses to start.

Order: priority (interactive, emergency, drill, routine), then ``risk_rank`` (the most at-risk
first within a campaign), then due time. Each channel's rate is reserved in the database
(:mod:`dispatch.gates`), so the limit holds across workers; a ``RetryAfter``/429 pauses the
channel for everyone, from the moment it was answered, and the row goes back to the queue.
Transient errors back off exponentially with jitter, capped; a campaign's message keeps trying
for as long as its campaign waits on it, and a channel whose every send fails is found down
(:func:`dispatch.gates.count_answers`) and probed until it answers. Permanent errors move the
message to the next channel (:func:`dispatch.delivery.move_on`). Time comes from an injected
clock.

Idle, a lane's empty claims come further and further apart (``idle_sleep`` doubling to
``idle_max``) while one read-only look a poll interval (:meth:`Worker._due_watch_loop`) wakes
it when a message is due on its channel, so a campaign started by another process still goes
within one poll interval; a commit in this process that queued messages wakes it at once
(:meth:`Worker.wake_on_enqueue`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import math
import os
import random
import secrets
import socket
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, Text, cast, event, exists, func, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, sessionmaker

from config.settings import Settings
from dispatch import calls, delivery, gates, outages, sweeps
from dispatch.clients import request_leaving
from dispatch.clock import Clock, SystemClock
from dispatch.inflight import InFlightLimit
from dispatch.models import ChannelBlock, OutboxMessage, OutboxStatus
from dispatch.senders import Outgoing, Permanent, RateLimited, Sender, SendResult, Sent, Transient
from registry.bulk import bulk_update, table_of
from registry.db import unit_of_work
from registry.models import Channel

log = logging.getLogger("hosen.worker")
T = TypeVar("T")

SQLITE_WORKER_LEASE = "sqlite-worker"
# A channel's sends are counted by when each request left, which only the sending process
# knows: on each channel one worker at a time sends (a lease per channel, "<channel>-sender";
# on SQLite there is only one worker anyway). The holder renews it at every claim and while it
# has sends in hand; another worker takes over this long after it stopped.
SENDER_TTL = timedelta(seconds=10)
VOICE_SENDER_LEASE = "voice-sender"
VOICE_SENDER_TTL = SENDER_TTL


def sender_lease(channel: Channel) -> str:
    """The name of the lease whose holder sends on ``channel``."""
    return f"{channel.value}-sender"


# ``attempts`` is a SMALLINT: a message retried through a long outage stops counting here.
ATTEMPTS_CEILING = 30_000
# A send due sooner than this goes now: a timer for a few microseconds costs more than it keeps.
SLOT_TOLERANCE = timedelta(milliseconds=1)
# Calls a second are few (Twilio's default is one). Each call is counted from when its request
# left (as every send is: :class:`Pacer`), so a call delayed on the way out cannot bring the
# next one closer; the margin is for the provider's side: the moment it counts a request's
# arrival varies by some milliseconds too.
VOICE_MARGIN = 0.04


# What a row put back in the queue (deferred, or to be retried) has in common.
_BACK_IN_QUEUE: dict[str, object] = {
    "status": OutboxStatus.QUEUED,
    "lease_until": None,
    "leased_by": None,
}


@functools.lru_cache(maxsize=1024)
def _buttons(raw: str | None) -> list[list[dict[str, str]]] | None:
    """A keyboard from its JSON text, parsed once for all the messages that carry it (shared:
    nobody changes an outgoing keyboard)."""
    return json.loads(raw) if raw is not None else None


class _ClaimedRow(NamedTuple):
    """A claimed row, from the claim's JSON array (on both databases). The last two are
    Telegram's only."""

    id: int
    person_id: int | None
    address: str
    text: str
    attempts: int
    priority: int
    risk_rank: int
    dead: bool
    buttons: str | None = None
    kind: str = "reply"


def _database_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="hosen-worker-db")


class AnotherWorkerRunning(Exception):
    """SQLite allows one worker; another one holds the lease."""


@dataclass(frozen=True)
class WorkerConfig:
    batch_window: float = 2.0  # claim about this many seconds' worth of sends at the channel rate
    max_batch: int = 500
    # Sends in flight per channel, shared by its lanes, adapted to the provider's round trips
    # (dispatch.inflight) between these bounds; the settings raise the minimum per channel
    # (``HOSEN_SMS_MIN_IN_FLIGHT``). No more than the HTTP connection pool (dispatch.clients:
    # 64): requests queued inside httpcore's pool cost time quadratic in the queue length.
    min_in_flight: int = 1
    initial_in_flight: int = 2
    max_in_flight: int = 64
    lease_seconds: float = 60.0  # a claimed row returns to the queue this long after a crash
    send_timeout: float = 20.0
    # Transient failures before a message nobody waits for is given up on its channel; a
    # campaign's message keeps trying while its campaign wants it (``Worker._retries``).
    max_attempts: int = 6
    backoff_base: float = 2.0
    backoff_cap: float = 60.0  # the longest wait between two tries
    # An empty claim waits ``idle_sleep``, then twice as long after each further empty one, up
    # to ``idle_max``; meanwhile one cheap look every ``idle_sleep`` (:meth:`Worker._due_watch_loop`)
    # wakes a resting channel as soon as a message is due on it, and so does a commit in this
    # process that queued one (:meth:`Worker.wake_on_enqueue`).
    idle_sleep: float = 0.25
    idle_max: float = 4.0
    sweep_every: float = 5.0
    lanes_per_channel: int = 2  # concurrent claim→send→record loops per channel in ``run``
    # How often a sending worker reads the channels' shared pauses: under half a send's step
    # at 30 a second, so another worker's 429 is known before this one's next send.
    gate_poll: float = 0.015
    # When a channel whose every send fails is down, and how often it is probed.
    breaker: gates.Breaker = field(default_factory=gates.Breaker)
    restart_sender_after: float = 5.0  # first retry of a channel that did not start (doubles)


@dataclass(frozen=True, slots=True)
class Claimed:
    message: Outgoing
    slot: datetime
    attempts: int
    lease: str = ""  # the claim's ``leased_by``: its rows' lease is renewed while it is in hand


class Pacer:
    """This process's own spacing of sends on one channel, on top of the shared slots.

    Slots are planned times; a lane that falls behind (a busy CPU) would otherwise catch up in a
    burst while another lane sends on time, and together exceed the provider's limit. A send
    goes at its slot, and no sooner than one step after this process's previous send. Nothing
    is reserved ahead: a courier waiting for a later slot (the next batch's, from another lane)
    holds up nobody whose slot comes first.

    The rate keeps a small margin under the configured one, and no more than the configured
    number of sends leave within any second and a margin: a provider that counts a strict
    one-second window refuses the 31st message arriving a fraction of a millisecond inside it.
    After a 429 the rate drops a little (multiplicative decrease) and climbs back by a small
    step with every accepted send (additive increase), so one 429 costs a few percent for a few
    seconds instead of half the throughput.

    The window counts each send from the moment its request actually left (:meth:`leaving`,
    reported by the channel's HTTP client as it writes the request; else :meth:`done`, when the
    send came back), not from when it was let go: a send that then waited on the event loop
    (other sends, the webhooks the same process serves, a database step, a connection to open)
    must not leave the next ones closer to it than the window allows. A send let go but not yet
    left counts as leaving at any moment: a send is let go only while those that left within
    the window and those still on their way number fewer than the limit, so that however late
    they leave, no window ever holds more.
    """

    MARGIN = 0.02  # under the configured rate, and over a second for its window
    DECREASE = 0.9  # the rate after a 429, as a share of the rate before it
    INCREASE = 0.001  # added per accepted send, as a share of the ceiling
    FLOOR = 0.25  # the lowest rate, as a share of the ceiling
    WINDOW = timedelta(seconds=1 + MARGIN)

    def __init__(self, clock: Clock, rate: float, *, margin: float | None = None) -> None:
        self.clock = clock
        self._sends = itertools.count(1)
        self._on_the_way: set[int] = set()  # sends let go that have not left yet
        self._left: asyncio.Future[None] | None = None  # resolved when one of them leaves
        if margin is not None:  # this pacer's own margin (calls: see VOICE_MARGIN)
            self.MARGIN = margin
            self.WINDOW = timedelta(seconds=1 + margin)
        self.ceiling = rate * (1 - self.MARGIN)
        self.rate = self.ceiling
        self.step = timedelta(seconds=1 / self.rate)
        self.last: datetime | None = None  # when this process last let a send go
        self.limit = max(1, math.floor(rate))  # sends within one window
        # When the latest sends left, as many as the limit.
        self.window: deque[datetime] = deque(maxlen=self.limit)

    def _set(self, rate: float) -> None:
        self.rate = rate
        self.step = timedelta(seconds=1 / rate)

    def slow_down(self) -> None:
        """The provider refused a send for its rate (a 429)."""
        self._set(max(self.ceiling * self.FLOOR, self.rate * self.DECREASE))

    def accepted(self) -> None:
        """The provider took a send without complaint."""
        if self.rate < self.ceiling:
            self._set(min(self.ceiling, self.rate + self.ceiling * self.INCREASE))

    async def wait(self, slot: datetime) -> int:
        """Until ``slot`` and one step after this process's previous send, whichever is later,
        and until the window has room. Returns the send's number, for :meth:`leaving` and
        :meth:`done` (one of which must follow)."""
        slept = False
        while True:
            now = self.clock.now()
            at = slot if self.last is None else max(slot, self.last + self.step)
            # The window is full while the sends that left and those on their way reach the
            # limit: the next one waits for the oldest that counts to leave the window ...
            oldest = len(self.window) + len(self._on_the_way) - self.limit
            if oldest >= len(self.window):
                # ... or, with no departure to wait out, for one on its way to leave.
                if self._left is None:
                    self._left = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._left)
                continue
            if oldest >= 0:
                at = max(at, self.window[oldest] + self.WINDOW)
            if at - now <= SLOT_TOLERANCE:
                # Woken for its time, a send counts from that time: the timer's own lateness (a
                # millisecond or two) must not add up send after send. A send that arrived late
                # counts from now, so that what is overdue follows one step at a time.
                self.last = at if slept else max(now, at)
                send = next(self._sends)
                self._on_the_way.add(send)
                return send
            await self.clock.sleep_until(at)
            slept = True

    def leaving(self, send: int) -> None:
        """Send number ``send`` is leaving now (its request being written): the window counts
        it from this moment (a second report of the same send changes nothing)."""
        if send in self._on_the_way:
            self._on_the_way.discard(send)
            self.window.append(self.clock.now())
            left, self._left = self._left, None
            if left is not None and not left.done():
                left.set_result(None)

    def done(self, send: int) -> None:
        """Send number ``send`` came back (or never went): if its departure was not reported,
        it counts from now, the latest it can have reached the provider."""
        self.leaving(send)


@dataclass
class _Batch:
    """One lane's sends in progress: what each courier is sending since when, and the answers."""

    couriers: int
    paused: bool = False  # the provider asked everyone to slow down: do not keep knocking
    outcome: dict[int, SendResult] = field(default_factory=dict)  # by outbox id
    sending_since: list[float | None] = field(default_factory=list)  # per courier, loop time
    overdue: set[int] = field(default_factory=set)  # couriers the watchdog is cancelling

    def __post_init__(self) -> None:
        self.sending_since = [None] * self.couriers


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not share a provider's pause: %s", future.exception())


class _Recorder:
    """One channel's sends recorded as they complete, not when their batch is done.

    A completed send waits at most ``gather`` seconds (or until its batch is done, or
    ``group`` sends wait) to be recorded with the others that completed meanwhile: a few
    transactions a second instead of one a send, so the throughput holds, and a hung provider
    call holds back no record but its own: a worker killed mid-batch leaves unrecorded (to be
    sent again) only the sends in flight and those of the last fraction of a second.
    """

    def __init__(
        self, worker: Worker, channel: Channel, *, gather: float = 0.2, group: int = 200
    ) -> None:
        self.worker = worker
        self.channel = channel
        self.gather = gather
        self.group = group
        self.waiting: list[tuple[Claimed, SendResult]] = []
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.failure: BaseException | None = None
        self.added = 0
        self.done = 0  # recorded, or given up

    def add(self, claimed: Claimed, result: SendResult) -> None:
        self.waiting.append((claimed, result))
        self.added += 1
        if len(self.waiting) >= self.group:
            self._start()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.gather, self._start)

    def _start(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.waiting and (self.task is None or self.task.done()):
            self.task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self.waiting:
            group, self.waiting = self.waiting, []
            try:
                await self.worker._record_patiently(self.channel, group)
            except (OperationalError, DBAPIError) as exc:
                self.failure = exc  # given up: those leases run out, the sweep requeues them
            finally:
                self.done += len(group)

    async def flushed(self) -> None:
        """Until everything added so far is recorded; a record given up is raised here."""
        target = self.added
        self._start()
        while self.done < target and self.task is not None:
            await asyncio.shield(self.task)
            self._start()
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure


def backoff_seconds(attempts: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: base·2^(n-1), capped, scaled by a random 0.5–1.0."""
    # The exponent stops growing long after the cap is reached: a message retried through a
    # long outage would otherwise overflow a float.
    delay = min(cap, base * float(2 ** min(max(attempts - 1, 0), 32)))
    return float(delay * rng.uniform(0.5, 1.0))


class Worker:
    """One dispatcher worker. ``await worker.run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        senders: Mapping[Channel, Sender],
        settings: Settings,
        clock: Clock | None = None,
        config: WorkerConfig | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        write_turn: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
    ) -> None:
        self.sessions = sessions
        # SQLite: the serving process's turns at its one writer (bots.intake.WriteTurns): the
        # worker's writes wait behind the webhooks' inserts instead of making them (or the
        # inbox processor they wait for) sleep in SQLite's busy handler.
        self.write_turn = write_turn
        self.senders = dict(senders)
        self.settings = settings
        self.clock = clock or SystemClock()
        self.config = config or WorkerConfig()
        self.worker_id = (
            worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        )[:64]
        self.rng = rng or random.Random()
        bind = sessions.kw.get("bind")
        self.on_postgresql = bind is not None and bind.dialect.name == "postgresql"
        self._last_sweep: datetime | None = None
        self._pacers = {
            channel: Pacer(
                self.clock,
                self.rate(channel),
                margin=VOICE_MARGIN if channel == Channel.VOICE else None,
            )
            for channel in self.senders
        }
        self.in_flight = {channel: self._in_flight_limit(channel) for channel in self.senders}
        self._started = False
        self._claims = itertools.count(1)
        self._database = _database_thread()
        # Until when a provider asked us to pause each channel: a batch claimed before the
        # pause was recorded must not knock either.
        self._paused_until: dict[Channel, datetime] = {}
        # Claims in hand (claimed, not yet recorded or given back): their leases are renewed,
        # so a batch that outlasts its lease (a provider slowing down) is not handed out again.
        self._held: set[str] = set()
        self._background: set[asyncio.Future[None]] = set()
        # Channels whose sender did not start; run() retries them (one attempt at a time).
        self._down: set[Channel] = set()
        self._starting = {channel: asyncio.Lock() for channel in self.senders}
        self._recorders = {channel: _Recorder(self, channel) for channel in self.senders}
        # Idle lanes rest (backing off) until their channel's event is set: by the due watch,
        # or by :meth:`wake`. ``_resting`` counts the lanes resting on each channel.
        self._due = {channel: asyncio.Event() for channel in self.senders}
        self._resting = dict.fromkeys(self.senders, 0)
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.claims_made = 0  # claims run (empty ones included): what idle lanes cost
        self.looks_made = 0  # the due watch's looks

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Hold the SQLite lease and start every channel's sender. A channel that cannot start
        (its provider unreachable, its token rejected) is left down, said in one line without
        the error's text (PTB's InvalidToken quotes the token), and retried by ``run`` while
        the other channels work; its messages wait in the outbox."""
        await asyncio.to_thread(self._hold_sqlite_lease)
        for channel in self.senders:
            await self._start_sender(channel)
        self._started = True

    async def _start_sender(self, channel: Channel) -> bool:
        try:
            await self.senders[channel].start()
        except Exception as exc:
            self._down.add(channel)
            log.warning(
                "worker %s: %s not started (%s); the other channels go on, retrying",
                self.worker_id,
                channel.value,
                type(exc).__name__,
            )
            return False
        self._down.discard(channel)
        return True

    async def _bring_up(self, stop: asyncio.Event, channel: Channel) -> None:
        """Retry a channel that did not start, with back-off, until it starts or we stop."""
        delay = self.config.restart_sender_after
        while channel in self._down and not stop.is_set():
            await self._idle(stop, delay)
            async with self._starting[channel]:
                up = channel not in self._down or stop.is_set()
                if not up and await self._start_sender(channel):
                    log.info("worker %s: %s started", self.worker_id, channel.value)
            delay = min(delay * 2, 120.0)

    async def close(self) -> None:
        for sender in self.senders.values():
            await sender.close()
        self._database.shutdown(wait=False)
        self._database = _database_thread()  # a thread starts only when work arrives
        if not self.on_postgresql:
            with unit_of_work(self.sessions) as session:
                gates.release_lease(session, name=SQLITE_WORKER_LEASE, holder=self.worker_id)
        else:
            # Another worker may send on these channels at once (else: when the leases run out).
            with (
                contextlib.suppress(OperationalError, DBAPIError),
                unit_of_work(self.sessions) as session,
            ):
                for channel in self.senders:
                    gates.release_lease(session, name=sender_lease(channel), holder=self.worker_id)
        self._started = False

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _in_flight_limit(self, channel: Channel) -> InFlightLimit:
        floor = {
            Channel.TELEGRAM: self.settings.telegram_min_in_flight,
            # Placing a call is one quick request, and the calls in progress are capped
            # (dispatch.calls.free_lines): as many may be placed at once as may be in progress,
            # so a paced call never waits its turn after its slot.
            Channel.VOICE: self.settings.voice_max_calls,
        }.get(channel, self.settings.sms_min_in_flight)
        maximum = self.config.max_in_flight
        minimum = min(maximum, max(self.config.min_in_flight, floor))
        initial = min(maximum, max(self.config.initial_in_flight, minimum))
        return InFlightLimit(initial=initial, minimum=minimum, maximum=maximum)

    def rate(self, channel: Channel) -> float:
        if channel == Channel.TELEGRAM:
            return self.settings.telegram_rate_per_second
        if channel == Channel.VOICE:
            return self.settings.voice_rate_per_second
        return self.settings.sms_rate_per_second

    # --- waking idle lanes ---------------------------------------------------------------------

    def wake(self, channel: Channel | None = None) -> None:
        """Something may be due on ``channel`` (None: any): resting lanes claim now. Safe from
        any thread; before :meth:`run` has started it does nothing (the first claim comes at
        once anyway)."""
        loop = self._event_loop
        if loop is None or loop.is_closed():
            return
        channels = [channel] if channel is not None else list(self._due)
        for one in channels:
            if one in self._due:
                try:
                    loop.call_soon_threadsafe(self._due[one].set)
                except RuntimeError:  # the loop closed meanwhile
                    return

    @contextlib.contextmanager
    def wake_on_enqueue(self) -> Iterator[None]:
        """While inside, a commit through this worker's sessions that queued outbox rows (a
        reply, a campaign started from the console) wakes the resting lanes at once."""
        queued = "hosen.outbox_queued"

        def statement(state: ORMExecuteState) -> None:
            table = getattr(state.statement, "table", None)
            if state.is_insert and getattr(table, "name", None) == OutboxMessage.__tablename__:
                state.session.info[queued] = True

        def before_flush(session: Session, _flush: UOWTransaction, _instances: object) -> None:
            # ``new`` is empty once flushed: look before.
            if any(isinstance(item, OutboxMessage) for item in session.new):
                session.info[queued] = True

        def committed(session: Session) -> None:
            if session.info.pop(queued, False):
                self.wake()

        def rolled_back(session: Session, *_: object) -> None:
            session.info.pop(queued, None)

        hooks: list[tuple[str, Callable[..., None]]] = [
            ("do_orm_execute", statement),
            ("before_flush", before_flush),
            ("after_commit", committed),
            ("after_soft_rollback", rolled_back),
        ]
        for name, hook in hooks:
            event.listen(self.sessions, name, hook)
        try:
            yield
        finally:
            for name, hook in hooks:
                event.remove(self.sessions, name, hook)

    async def _rest(self, stop: asyncio.Event, channel: Channel, seconds: float) -> None:
        """An idle lane's wait: ``seconds``, or less if its channel is woken or we stop."""
        due = self._due[channel]
        self._resting[channel] += 1
        try:
            if isinstance(self.clock, SystemClock):
                waiters = [asyncio.ensure_future(due.wait()), asyncio.ensure_future(stop.wait())]
                try:
                    await asyncio.wait(
                        waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                return
            # An injected clock: in steps of the poll interval (a sleep on it cannot be
            # cancelled without moving its time), looking at the event between them.
            waited = 0.0
            while waited < seconds and not due.is_set() and not stop.is_set():
                step = min(self.config.idle_sleep, seconds - waited)
                await self.clock.sleep(step)
                waited += step
        finally:
            self._resting[channel] -= 1

    async def _due_watch_loop(self, stop: asyncio.Event) -> None:
        """Every ``idle_sleep``, while lanes rest, one read-only look at whether a message is due
        on their channels (a campaign started by another process, a retry come due): cheaper
        than every lane claiming, and a resting lane still claims within one poll interval."""
        while not stop.is_set():
            await self._idle(stop, self.config.idle_sleep)
            if stop.is_set():
                return
            now = self.clock.now()
            channels = tuple(
                channel
                for channel, resting in self._resting.items()
                if resting
                and not self._due[channel].is_set()
                and channel not in self._down
                and self._paused_until.get(channel, now) <= now
            )
            if not channels:
                continue
            try:
                due = await self._in_thread(self._due_channels, channels)
            except (OperationalError, DBAPIError):
                continue  # the lanes' own claims see the database's trouble
            for channel in due:
                self._due[channel].set()

    def _due_channels(self, channels: tuple[Channel, ...]) -> list[Channel]:
        """Which of ``channels`` have a queued message due now (one statement, each an index
        probe that stops at the first due row)."""
        now = self.clock.now()
        table = table_of(OutboxMessage)
        with unit_of_work(self.sessions) as session:
            found = session.execute(
                select(
                    *(
                        exists()
                        .where(
                            table.c.status == OutboxStatus.QUEUED,
                            table.c.channel == channel,
                            table.c.due_at <= now,
                        )
                        .label(f"due_{index}")
                        for index, channel in enumerate(channels)
                    )
                )
            ).one()
        self.looks_made += 1
        return [channel for channel, due in zip(channels, found, strict=True) if due]

    # --- one pass ----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Sweep if due, then one claim→send→record round on every channel; rows handled."""
        await self._in_thread(self._housekeeping, writes=True)
        up = [channel for channel in self.senders if channel not in self._down]
        counts = await asyncio.gather(*(self._lane(channel) for channel in up))
        return sum(counts)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; database outages are waited out, not fatal."""
        if not self._started:
            await self.start()
        self._event_loop = asyncio.get_running_loop()
        try:
            loops = [
                self._loop(stop, channel)
                for channel in self.senders
                # Two lanes overlap one batch's database work with another's sends. Safe on
                # SQLite too: there a claim is one UPDATE under the database's write lock.
                for _ in range(self.config.lanes_per_channel)
            ]
            await asyncio.gather(
                self._housekeeping_loop(stop),
                self._renewal_loop(stop),
                self._sender_lease_loop(stop),
                self._pause_watch_loop(stop),
                self._due_watch_loop(stop),
                *loops,
            )
        finally:
            self._event_loop = None
            await self.close()

    async def _loop(self, stop: asyncio.Event, channel: Channel) -> None:
        """Claim, send, record, with the database work beside the sends: the next batch is
        claimed while this one goes out, and this one is recorded while the next goes out, so
        the sends wait for the database only when it is slower than they are."""
        failures = 0
        upcoming: asyncio.Future[list[Claimed]] | None = None
        recording: asyncio.Task[None] | None = None
        rest = self.config.idle_sleep
        await self._bring_up(stop, channel)
        try:
            while not stop.is_set():
                claimed: list[Claimed] = []
                try:
                    if upcoming is None:
                        self._due[channel].clear()  # before the claim looks: no wake is lost
                    claiming, upcoming = upcoming or self._in_db(self._claim, channel), None
                    claimed = await claiming
                    if not claimed:
                        failures = 0
                        paused = self._paused_for(channel)
                        if paused is not None:
                            await self._idle(stop, paused)
                        else:
                            await self._rest(stop, channel, rest)
                            rest = min(rest * 2, max(self.config.idle_max, self.config.idle_sleep))
                        continue
                    rest = self.config.idle_sleep
                    self._due[channel].clear()
                    upcoming = self._in_db(self._claim, channel)
                    recorder = self._recorders[channel]
                    await self._send_all(channel, claimed, completed=recorder.add)
                    previous, recording = recording, None
                    if previous is not None:
                        await previous  # the previous batch's records: their errors seen
                    recording = asyncio.create_task(self._recorded(recorder, claimed))
                    failures = 0
                except (OperationalError, DBAPIError) as exc:
                    # The database went away (restart, failover): wait and try again; leases
                    # expire and the sweep returns any half-done batch to the queue.
                    self._let_go(claimed)
                    failures += 1
                    log.warning(
                        "worker %s: database error (%s), retrying", self.worker_id, exc.code
                    )
                    await self._idle(stop, min(10.0, 0.5 * 2**failures))
                except Exception:
                    # A bug must not stop the dispatcher: the batch's leases run out and the
                    # sweep returns its rows to the queue.
                    self._let_go(claimed)
                    failures += 1
                    log.exception(
                        "worker %s: unexpected error in the %s lane", self.worker_id, channel
                    )
                    await self._idle(stop, min(10.0, 0.5 * 2**failures))
        finally:
            await self._wind_down(channel, upcoming, recording)

    def _paused_for(self, channel: Channel) -> float | None:
        """Seconds left of a provider's pause on ``channel``: an empty claim waits exactly that
        long, so that sending resumes when the provider said, not up to an idle rest after."""
        paused = self._paused_until.get(channel)
        now = self.clock.now()
        if paused is not None and paused > now:
            return (paused - now).total_seconds()
        return None

    async def _wind_down(
        self,
        channel: Channel,
        upcoming: asyncio.Future[list[Claimed]] | None,
        recording: asyncio.Task[None] | None,
    ) -> None:
        """Stopping: what was sent is recorded, what was claimed ahead goes back to the queue
        (rather than wait for its lease to run out)."""
        try:
            if recording is not None:
                await recording
            if upcoming is not None:
                claimed = await upcoming
                if claimed:
                    try:
                        await self._in_db(self._give_back, claimed)
                    finally:
                        self._let_go(claimed)
        except Exception:
            log.exception("worker %s: could not wind the %s lane down", self.worker_id, channel)

    def _in_db(self, work: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Database work on this worker's one database thread: claims and records queue up
        there instead of contending for SQLite's write lock (whose busy handler sleeps), and
        take the serving process's write turn when there is one."""
        future = asyncio.get_running_loop().run_in_executor(
            self._database, self._in_turn, work, *args
        )
        release = self.clock.hold()
        future.add_done_callback(lambda _: release())
        return future

    async def _in_thread(self, work: Callable[..., T], *args: Any, writes: bool = False) -> T:
        """Database work on a thread of its own (beside the claims and records); ``writes``:
        it writes, so it takes the write turn."""
        release = self.clock.hold()
        try:
            if writes:
                return await asyncio.to_thread(self._in_turn, work, *args)
            return await asyncio.to_thread(work, *args)
        finally:
            release()

    def _in_turn(self, work: Callable[..., T], *args: Any) -> T:
        if self.write_turn is None:
            return work(*args)
        with self.write_turn():
            return work(*args)

    def _give_back(self, claimed: list[Claimed]) -> None:
        with unit_of_work(self.sessions) as session:
            bulk_update(
                session,
                OutboxMessage,
                [{"id": c.message.id, "attempts": c.attempts - 1} for c in claimed],
                same=_BACK_IN_QUEUE,
            )
        self._let_go(claimed)

    def _let_go(self, claimed: Sequence[Claimed]) -> None:
        """These claims are out of our hands: their leases are no longer renewed."""
        self._held.difference_update({c.lease for c in claimed})

    async def _renewal_loop(self, stop: asyncio.Event) -> None:
        """Every third of a lease, extend the leases of the claims in hand."""
        while not stop.is_set():
            await self._idle(stop, self.config.lease_seconds / 3)
            if not self._held:
                continue
            try:
                await self._in_db(self._renew_leases, tuple(self._held))
            except (OperationalError, DBAPIError):
                log.warning("worker %s: could not renew leases", self.worker_id)

    async def _sender_lease_loop(self, stop: asyncio.Event) -> None:
        """While sends are in hand, keep the channels' sender leases (:data:`SENDER_TTL`): a
        batch that takes longer than the lease (a slow provider) must not let another worker
        start sending on the same channel beside it."""
        if not self.on_postgresql:
            return
        while not stop.is_set():
            await self._idle(stop, SENDER_TTL.total_seconds() / 3)
            if not self._held:
                continue
            try:
                await self._in_db(self._renew_sender_leases)
            except (OperationalError, DBAPIError):
                log.warning("worker %s: could not renew its sender leases", self.worker_id)

    def _renew_sender_leases(self) -> None:
        with unit_of_work(self.sessions) as session:
            gates.renew_leases(
                session,
                names=[sender_lease(channel) for channel in self.senders],
                holder=self.worker_id,
                ttl=SENDER_TTL,
                now=self.clock.now(),
            )

    def _renew_leases(self, leases: tuple[str, ...]) -> None:
        until = self.clock.now() + timedelta(seconds=self.config.lease_seconds)
        table = table_of(OutboxMessage)
        with unit_of_work(self.sessions) as session:
            session.execute(
                update(table)
                .where(
                    table.c.status == OutboxStatus.SENDING,  # the index's first column
                    table.c.leased_by.in_(leases),
                    table.c.lease_until < until,  # a lease set further ahead stays
                )
                .values(lease_until=until)
            )

    def _provider_paused(self, channel: Channel, seconds: float) -> None:
        """A provider asked us to wait ``seconds`` (Retry-After, retry_after): from now, for every
        worker. Written to the channel gate at once, not with the batch's record, so the others
        know before their next send (:meth:`_pause_watch_loop`); the pacer slows down a little."""
        until = self.clock.now() + timedelta(seconds=seconds)
        known = self._paused_until.get(channel)
        if known is not None and known >= until:
            return  # the same pause, answered to another send of the same moment
        self._paused_until[channel] = until
        self._pacers[channel].slow_down()
        log.warning("worker %s: %s paused for %.1fs", self.worker_id, channel.value, seconds)
        shared = self._in_db(self._pause_everyone, channel, until)
        self._background.add(shared)
        shared.add_done_callback(self._background.discard)
        shared.add_done_callback(_log_failure)

    def _pause_everyone(self, channel: Channel, until: datetime) -> None:
        with unit_of_work(self.sessions) as session:
            gates.pause_channel(session, channel=channel, until=until, now=self.clock.now())

    async def _pause_watch_loop(self, stop: asyncio.Event) -> None:
        """Learn the pauses other workers were asked for: every ``gate_poll`` while this worker
        has sends in hand, every second while it is idle (its claims check the gate anyway)."""
        channels = tuple(self.senders)
        read_at: datetime | None = None
        while not stop.is_set():
            await self._idle(stop, self.config.gate_poll)
            now = self.clock.now()
            if not self._held and read_at is not None and now - read_at < timedelta(seconds=1):
                continue
            read_at = now
            try:
                pauses = await self._in_thread(self._read_pauses, channels)
            except (OperationalError, DBAPIError):
                continue  # the claims see the database's trouble and wait it out
            for channel, until in pauses.items():
                if until > self._paused_until.get(channel, until - timedelta(seconds=1)):
                    self._paused_until[channel] = until

    def _read_pauses(self, channels: tuple[Channel, ...]) -> dict[Channel, datetime]:
        with unit_of_work(self.sessions) as session:
            return gates.pauses(session, channels=channels, now=self.clock.now())

    async def _housekeeping_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._in_thread(self._housekeeping, writes=True)
            except (OperationalError, DBAPIError):
                log.warning("worker %s: database unavailable for housekeeping", self.worker_id)
            await self._idle(stop, self.config.sweep_every / 2)

    async def _idle(self, stop: asyncio.Event, seconds: float) -> None:
        if isinstance(self.clock, SystemClock):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=seconds)
        else:
            await self.clock.sleep(seconds)

    # --- database steps (run in a thread: the event loop keeps sending meanwhile) ------------

    def _hold_sqlite_lease(self) -> None:
        if self.on_postgresql:
            return
        now = self.clock.now()
        # Renewed at every sweep; a killed worker's lease runs out like its rows' leases do.
        ttl = timedelta(seconds=max(self.config.lease_seconds, 2 * self.config.sweep_every))
        with unit_of_work(self.sessions) as session:
            if not gates.acquire_lease(
                session, name=SQLITE_WORKER_LEASE, holder=self.worker_id, ttl=ttl, now=now
            ):
                raise AnotherWorkerRunning(
                    "another worker is running on this SQLite database; "
                    "SQLite allows one (use PostgreSQL for several)"
                )

    def _housekeeping(self) -> None:
        now = self.clock.now()
        if (
            self._last_sweep is not None
            and (now - self._last_sweep).total_seconds() < self.config.sweep_every
        ):
            return
        self._last_sweep = now
        self._hold_sqlite_lease()
        with unit_of_work(self.sessions) as session:
            requeued = sweeps.requeue_expired_leases(session, now=now)
            gates.forget_old_chat_times(session, before=now - timedelta(minutes=5))
        if requeued:
            log.info("worker %s: %d expired leases back in the queue", self.worker_id, requeued)

    def _claim(self, channel: Channel) -> list[Claimed]:
        self.claims_made += 1
        now = self.clock.now()
        rate = self._pacers[channel].rate  # the configured rate, less margin and back-off
        # A batch must be sent well within its lease, or the sweep would hand it out again.
        window = min(self.config.batch_window, self.config.lease_seconds / 2)
        limit = min(self.config.max_batch, max(1, math.ceil(rate * window)))
        with unit_of_work(self.sessions) as session:
            allowance = gates.claim_allowance(
                session, channel=channel, now=now, breaker=self.config.breaker
            )
            if allowance == 0:
                return []  # paused by the provider, or down and another claim has the probe
            limit = min(limit, allowance or limit)
            if self.on_postgresql and not gates.acquire_lease(
                session,
                name=sender_lease(channel),
                holder=self.worker_id,
                ttl=SENDER_TTL,
                now=now,
            ):
                return []  # another worker sends on this channel (see SENDER_TTL)
            if channel == Channel.VOICE:
                # No more calls in progress at once than the cap (dispatch.calls).
                limit = min(
                    limit, calls.free_lines(session, cap=self.settings.voice_max_calls, now=now)
                )
                if limit == 0:
                    return []
            table = table_of(OutboxMessage)
            due = (
                select(table.c.id)
                .where(
                    table.c.status == OutboxStatus.QUEUED,
                    table.c.channel == channel,
                    table.c.due_at <= now,
                )
                .order_by(table.c.priority, table.c.risk_rank, table.c.due_at, table.c.id)
                .limit(limit)
            )
            if self.on_postgresql:
                due = due.with_for_update(skip_locked=True)
            # Materialised: PostgreSQL may rescan an ``IN (SELECT ... LIMIT ... SKIP LOCKED)``
            # per row, each rescan skipping the rows just locked and taking the next ones.
            chosen = due.cte("due").prefix_with("MATERIALIZED")
            # Only what the send needs. Telegram's keyboard comes as its JSON text: a campaign
            # has a handful of keyboards, each parsed once (:func:`_buttons`). An SMS row's
            # text already holds its numbered choices.
            returned: list[ColumnElement[Any]] = [
                table.c.id,
                table.c.person_id,
                table.c.address,
                table.c.text,
                table.c.attempts,
                table.c.priority,
                table.c.risk_rank,
                # Whether a provider declared this person's channel dead (the exception: one
                # probe per row, instead of a second query per batch).
                exists()
                .where(ChannelBlock.person_id == table.c.person_id, ChannelBlock.channel == channel)
                .label("dead"),
            ]
            if channel == Channel.TELEGRAM:
                returned += [cast(table.c.buttons, Text).label("buttons"), table.c.kind]
            # Core, not the ORM: a batch is hundreds of rows, and ORM bulk machinery cost more
            # than the database's own work. ``leased_by`` names this claim, not only this worker.
            token = f"{self.worker_id[:50]}/{next(self._claims)}"
            claim = update(table).where(table.c.id.in_(select(chosen.c.id)))
            if self.on_postgresql:
                # A row chosen by the CTE may have been claimed by a transaction that committed
                # meanwhile: checked again once its lock is ours. SQLite runs the statement
                # under the database's one write lock, so the rows chosen are still queued;
                # and there the check would lead the planner to walk every queued row of the
                # index (2 ms a claim at 20,000 queued) instead of looking up the chosen ids.
                claim = claim.where(table.c.status == OutboxStatus.QUEUED)
            claim = claim.values(
                status=OutboxStatus.SENDING,
                lease_until=now + timedelta(seconds=self.config.lease_seconds),
                leased_by=token,
                attempts=table.c.attempts + 1,
            )
            connection = session.connection()
            # The claimed rows come back as one JSON array, parsed in one call into plain
            # tuples. Row by row, SQLite's driver would let go of the interpreter lock and take
            # it back at every row (the event loop waiting each time), and on PostgreSQL the
            # result rows' processing and attribute lookups cost more than the update itself.
            if self.on_postgresql:
                claimed_rows = claim.returning(*returned).cte("claimed")
                found = connection.execute(
                    select(cast(func.json_agg(func.json_build_array(*claimed_rows.c)), Text))
                ).scalar_one()
            else:
                connection.execute(claim)
                found = connection.execute(
                    select(func.json_group_array(func.json_array(*returned))).where(
                        table.c.status == OutboxStatus.SENDING,
                        table.c.channel == channel,
                        table.c.leased_by == token,
                    )
                ).scalar_one()
            rows = [_ClaimedRow(*row) for row in json.loads(found or "[]")]
            if not rows:
                return []
            # The claim's order (RETURNING keeps none); within one batch, ids stand in for due
            # times: a batch is a few seconds' sends.
            rows.sort(key=lambda r: (r.priority, r.risk_rank, r.id))
            if any(r.dead for r in rows):
                blocked = self._skip_dead_channels(session, channel, rows, now)
                rows = [r for r in rows if r.id not in blocked]
            if not rows:
                return []
            start = gates.reserve_slots(
                session, channel=channel, count=len(rows), rate=rate, now=now
            )
            step = timedelta(seconds=1 / rate)
            claimed: list[Claimed] = []
            deferred: list[dict[str, object]] = []
            chat_times: dict[str, datetime] = {}
            changed: dict[str, datetime] = {}
            telegram = channel == Channel.TELEGRAM
            if telegram:
                chat_times = gates.chat_next_times(
                    session, channel=channel, addresses=(r.address for r in rows)
                )
            chat_step = timedelta(seconds=1 / self.settings.telegram_rate_per_chat_per_second)
            for index, row in enumerate(rows):
                slot = start + index * step
                if telegram:
                    free_at = chat_times.get(row.address)
                    if free_at is not None and free_at > slot:
                        # This chat had a message less than a second ago: later, not now.
                        deferred.append(
                            {"id": row.id, "due_at": free_at, "attempts": row.attempts - 1}
                        )
                        continue
                    chat_times[row.address] = changed[row.address] = slot + chat_step
                claimed.append(
                    Claimed(
                        message=Outgoing(
                            id=row.id,
                            channel=channel,
                            address=row.address,
                            text=row.text,
                            buttons=_buttons(row.buttons) if telegram else None,
                            kind=row.kind if telegram else "reply",
                        ),
                        slot=slot,
                        attempts=row.attempts,
                        lease=token,
                    )
                )
            if claimed and claimed[-1].slot > now + timedelta(
                seconds=self.config.lease_seconds / 4
            ):
                # Slots shared with other workers may start well after now: the lease runs
                # from the last planned send, not from the claim. (Within a quarter of the
                # lease, the lease set by the claim leaves time enough.)
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_([c.message.id for c in claimed]))
                    .values(
                        lease_until=claimed[-1].slot + timedelta(seconds=self.config.lease_seconds)
                    )
                    .execution_options(synchronize_session=False)
                )
            bulk_update(session, OutboxMessage, deferred, same=_BACK_IN_QUEUE)
            gates.set_chat_next_times(session, channel=channel, times=changed)
        if claimed:
            self._held.add(token)
        return claimed

    def _skip_dead_channels(
        self, session: Session, channel: Channel, rows: Sequence[Any], now: datetime
    ) -> set[int]:
        """Rows for people whose channel a provider declared dead go straight to the next one."""
        skipped: set[int] = set()
        for row in rows:
            if not row.dead:
                continue
            message = session.get(OutboxMessage, row.id)
            block = session.get(ChannelBlock, (message.person_id, channel)) if message else None
            if message is None or block is None:
                continue
            delivery.move_on(
                session,
                message=message,
                reason=None,
                error=f"{channel.value} {block.reason.value}",
                now=now,
            )
            skipped.add(message.id)
        return skipped

    def _record(self, channel: Channel, results: list[tuple[Claimed, SendResult]]) -> None:
        now = self.clock.now()
        sent: list[dict[str, object]] = []
        retry: list[dict[str, object]] = []
        permanent: list[tuple[Claimed, Permanent]] = []
        failing: list[tuple[Claimed, Transient]] = []
        for claimed, result in results:
            if isinstance(result, Sent):
                sent.append({"id": claimed.message.id, "provider_id": result.provider_id[:64]})
            elif isinstance(result, RateLimited):
                retry.append(
                    {
                        "id": claimed.message.id,
                        "attempts": claimed.attempts - 1,  # a pause is not the message's fault
                        "due_at": now + timedelta(seconds=result.retry_after),
                        "last_error": "rate limited",
                    }
                )
            elif isinstance(result, Transient):
                failing.append((claimed, result))
            else:
                permanent.append((claimed, result))
        with unit_of_work(self.sessions) as session:
            # Counted before the transient failures given up join the permanent ones.
            self._count_answers(
                session, channel, answered=len(sent) + len(permanent), failed=len(failing), now=now
            )
            retry += self._retries(session, failing, now, given_up=permanent)
            if sent:
                bulk_update(
                    session,
                    OutboxMessage,
                    sent,
                    same={
                        "status": OutboxStatus.SENT,
                        "sent_at": now,
                        "lease_until": None,
                        "leased_by": None,
                        "last_error": None,
                    },
                )
                if channel == Channel.VOICE:
                    calls.calls_placed(
                        session,
                        placed=[(int(str(row["id"])), str(row["provider_id"])) for row in sent],
                        now=now,
                    )
                if channel == Channel.SMS:
                    delivery.apply_early_receipts(
                        session, message_sids=[str(row["provider_id"]) for row in sent], now=now
                    )
            bulk_update(session, OutboxMessage, retry, same=_BACK_IN_QUEUE)
            for claimed, failure in permanent:
                message = session.get(OutboxMessage, claimed.message.id)
                if message is not None:
                    delivery.move_on(
                        session,
                        message=message,
                        reason=failure.reason,
                        error=failure.error,
                        now=now,
                    )

    def _count_answers(
        self, session: Session, channel: Channel, *, answered: int, failed: int, now: datetime
    ) -> None:
        """The channel breaker (:func:`dispatch.gates.count_answers`); the officers are told
        when this worker's record brought the channel down or back."""
        health = gates.count_answers(
            session,
            channel=channel,
            answered=answered,
            failed=failed,
            now=now,
            breaker=self.config.breaker,
        )
        if health is None:
            return
        told = outages.tell_officers(
            session, channel=channel, health=health, ways=tuple(self.senders), now=now
        )
        log.warning(
            "worker %s: %s is %s (%d officers told)", self.worker_id, channel.value, health, told
        )

    def _retries(
        self,
        session: Session,
        failing: Sequence[tuple[Claimed, Transient]],
        now: datetime,
        *,
        given_up: list[tuple[Claimed, Permanent]],
    ) -> list[dict[str, object]]:
        """Transient failures back in the queue after a capped back-off. A count of tries gives
        up only on a message nobody waits for: a campaign's keeps trying for as long as its
        campaign still wants it (:func:`dispatch.delivery.still_wanted`), so an outage of
        minutes delays the first wave instead of losing it. Those given up go to ``given_up``
        (the next channel, as for a permanent failure)."""
        tired = [c.message.id for c, _ in failing if c.attempts >= self.config.max_attempts]
        wanted = delivery.still_wanted(session, message_ids=tired) if tired else set()
        retry: list[dict[str, object]] = []
        for claimed, result in failing:
            if claimed.attempts >= self.config.max_attempts and claimed.message.id not in wanted:
                error = f"gave up after {claimed.attempts} attempts: {result.error}"
                given_up.append((claimed, Permanent(error=error, reason=None)))
                continue
            delay = backoff_seconds(
                claimed.attempts,
                base=self.config.backoff_base,
                cap=self.config.backoff_cap,
                rng=self.rng,
            )
            retry.append(
                {
                    "id": claimed.message.id,
                    "attempts": min(claimed.attempts, ATTEMPTS_CEILING),
                    "due_at": now + timedelta(seconds=max(delay, result.retry_after or 0.0)),
                    "last_error": result.error[:200],
                }
            )
        return retry

    # --- sending -----------------------------------------------------------------------------

    async def _lane(self, channel: Channel) -> int:
        claimed = await self._in_db(self._claim, channel)
        if not claimed:
            return 0
        recorder = self._recorders[channel]
        try:
            await self._send_all(channel, claimed, completed=recorder.add)
        except BaseException:
            self._let_go(claimed)  # the leases run out: the sweep returns the rows
            raise
        await self._recorded(recorder, claimed)
        return len(claimed)

    async def _recorded(self, recorder: _Recorder, claimed: list[Claimed]) -> None:
        """Once every send of a batch is recorded (or given up), its leases are no longer ours
        to renew (given up, they run out and the sweep returns the rows to the queue)."""
        try:
            await recorder.flushed()
        finally:
            self._let_go(claimed)

    async def _record_patiently(
        self, channel: Channel, results: list[tuple[Claimed, SendResult]]
    ) -> None:
        """Record what the providers answered, waiting out a database outage for as long as the
        rows are leased to us: given up, they would go back to the queue and be sent again."""
        give_up_at = self.clock.now() + timedelta(seconds=self.config.lease_seconds)
        pause = 0.2
        while True:
            try:
                await self._in_db(self._record, channel, results)
                return
            except (OperationalError, DBAPIError) as exc:
                if self.clock.now() + timedelta(seconds=pause) >= give_up_at:
                    raise
                log.warning(
                    "worker %s: could not record %d sends (%s), retrying",
                    self.worker_id,
                    len(results),
                    exc.code,
                )
                await self.clock.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _send_all(
        self,
        channel: Channel,
        claimed: list[Claimed],
        *,
        completed: Callable[[Claimed, SendResult], None] | None = None,
    ) -> list[tuple[Claimed, SendResult]]:
        """Send a batch; each answer goes to ``completed`` as it comes (to be recorded then,
        not when the whole batch is done)."""
        sender = self.senders[channel]
        limit = self.in_flight[channel]  # shared with the channel's other lane
        pacer = self._pacers[channel]
        loop = asyncio.get_running_loop()

        # Different chats go out side by side; one chat's messages in the order they were
        # written (a summary before the question whose buttons follow it).
        by_address: dict[str, list[Claimed]] = {}
        for item in claimed:  # claim order: priority, then risk, then the order written
            by_address.setdefault(item.message.address, []).append(item)
        chats = deque(by_address.values())
        # A few couriers take one chat's messages at a time (cheaper than a task per chat), as
        # many as the in-flight limit lets send at once: one more would only wait its turn in
        # the limit, and every send would then cost a hand-over between tasks. When the limit
        # climbs while the batch is out, the couriers hire more, up to the limit's maximum.
        batch = _Batch(couriers=min(len(chats), limit.maximum))
        couriers: list[asyncio.Task[None]] = []

        async def one(courier: int, item: Claimed) -> SendResult:
            send = await pacer.wait(item.slot)
            try:
                await limit.acquire()
                paused_until = self._paused_until.get(channel)
                if batch.paused or (paused_until is not None and paused_until > self.clock.now()):
                    limit.release()
                    return RateLimited(retry_after=0.0)
                started = self.clock.monotonic()
                batch.sending_since[courier] = loop.time()
                # The channel's HTTP client reports the moment the request is written.
                leaving = request_leaving.set(functools.partial(pacer.leaving, send))
                try:
                    result = await sender.send(item.message)
                except Exception as exc:  # never lose a row to a surprise: retry it later
                    log.exception("worker %s: unexpected send error", self.worker_id)
                    result = Transient(error=f"unexpected {type(exc).__name__}")
                finally:
                    request_leaving.reset(leaving)
                    batch.sending_since[courier] = None
                    limit.release()
            finally:
                pacer.done(send)
            if isinstance(result, RateLimited):
                batch.paused = True
                self._provider_paused(channel, result.retry_after)
            else:
                pacer.accepted()
                limit.observe(self.clock.monotonic() - started)
            return result

        def hire() -> None:
            couriers.append(asyncio.create_task(courier(len(couriers))))

        async def courier(number: int) -> None:
            task = asyncio.current_task()
            assert task is not None
            while chats:
                if len(couriers) < limit.limit and len(couriers) < batch.couriers:
                    hire()
                for item in chats.popleft():
                    try:
                        result = await one(number, item)
                    except asyncio.CancelledError:
                        if number not in batch.overdue:
                            raise  # the worker is stopping
                        batch.overdue.discard(number)
                        if task.uncancel() > 0:
                            raise  # the worker is stopping as well
                        result = Transient(error="timeout")
                    batch.outcome[item.message.id] = result
                    if completed is not None:
                        completed(item, result)

        for _ in range(min(batch.couriers, limit.limit)):
            hire()
        watchdog = asyncio.create_task(self._watch(batch, couriers))
        try:
            done = 0
            while done < len(couriers):  # the list grows as couriers hire more
                await couriers[done]
                done += 1
        finally:
            watchdog.cancel()
            for task in couriers:
                task.cancel()  # only if the worker is stopping: they are done otherwise
        return [(item, batch.outcome[item.message.id]) for item in claimed]

    async def _watch(self, batch: _Batch, couriers: list[asyncio.Task[None]]) -> None:
        """Cancel a send that has run past ``send_timeout``: the clients' own timeouts should
        end it sooner, this is the backstop. One timer per batch, not one per send (a timer per
        send cost as much as the rest of the worker's work for that send)."""
        loop = asyncio.get_running_loop()
        timeout = self.config.send_timeout
        while True:
            await asyncio.sleep(timeout / 4)
            now = loop.time()
            for number, since in enumerate(batch.sending_since):
                if since is not None and now - since > timeout and number not in batch.overdue:
                    batch.overdue.add(number)
                    couriers[number].cancel()
