"""The webhooks' way into the inbox: one writer thread that stores deliveries with group commit.

A webhook may answer Telegram or Twilio only once its message is committed. Committing each
request in a transaction of its own (a pool thread, a session, a commit, per request) cost
about 2 ms of CPU a request and could not hold 500 replies a second with the processor on the
same two cores (``bench/inbound_bench.py``). Here every request puts its delivery on a queue
and waits; one thread takes whatever has queued up (one request when traffic is light, dozens
under load), stores it with one ``INSERT ... ON CONFLICT DO NOTHING`` in one transaction,
commits, and tells each waiting request whether its message was new.

When the database cannot take a message (:func:`bots.spool.database_unavailable`), the request
waits up to HOSEN_SPOOL_AFTER_SECONDS (well within Twilio's 15-second webhook timeout) for the
replayer to find the database back and then tries again; otherwise it puts the message in the
local spool (:mod:`bots.spool`) and is answered as usual; while anything is spooled, new messages are spooled behind it, so one sender's messages
keep their order. Without a spool the request gets :class:`DatabaseUnavailable`. A write that
fails because of one message (a value the database refuses) fails that message alone: a batch
that fails for another reason is written again one message at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from bots.inbound import accept_many
from bots.spool import DatabaseState, Spool, database_unavailable
from dispatch.channels.base import Arrival
from registry.db import unit_of_work

log = logging.getLogger("hosen.intake")

Clock = Callable[[], datetime]
# However short HOSEN_SPOOL_AFTER_SECONDS, a healthy database gets this long to answer.
FIRST_TRY_SECONDS = 0.5


class DatabaseUnavailable(Exception):
    """The database could not take the message, and there is no spool to keep it."""


class WriteTurns:
    """SQLite's one writer at a time, taken in turns inside this process, webhooks first.

    Left to SQLite, a webhook's insert that finds the processor's transaction open waits in the
    busy handler, which sleeps 1, 2, 5 ... 100 ms between looks and keeps missing the moments
    between the processor's transactions: acknowledgements waited over a second. Here the
    intake waits for the current transaction only, and the processor starts no new one while
    the intake is waiting. (PostgreSQL needs none of this: inserts do not wait for row locks.)
    """

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._busy = False
        self._urgent = 0

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        with self._turn:
            self._urgent += 1
            while self._busy:
                self._turn.wait()
            self._urgent -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextlib.contextmanager
    def background(self) -> Iterator[None]:
        with self._turn:
            while self._busy or self._urgent:
                self._turn.wait()
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._turn:
            self._busy = False
            self._turn.notify_all()


@dataclass
class _Pending:
    arrival: Arrival
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[bool]


@dataclass
class Intake:
    """``await intake.store(arrival)``: True once stored and committed, False if a repeat."""

    sessions: sessionmaker[Session]
    clock: Clock
    stored: Callable[[], None] = lambda: None  # told (on the loop) after new rows are committed
    max_batch: int = 200
    turns: WriteTurns | None = None  # SQLite: take turns with the in-process processor
    _queue: queue.SimpleQueue[_Pending | None] = field(default_factory=queue.SimpleQueue)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    batches: int = 0
    rows: int = 0
    last_write: float = 0.0  # time.monotonic() of the latest batch
    spool: Spool | None = None  # where a message waits while the database is away
    spool_after: float = 5.0  # seconds of trying the database before spooling
    database: DatabaseState = field(default_factory=DatabaseState)

    def busy(self, within: float = 0.1) -> bool:
        """Whether webhooks stored something in the last ``within`` seconds."""
        return time.monotonic() - self.last_write < within

    async def store(self, arrival: Arrival) -> bool:
        """True once the message is durable (committed, or spooled), False if a repeat.

        Raises :class:`bots.spool.SpoolFull` when the database and the spool both refuse it,
        and :class:`DatabaseUnavailable` when the database refuses it and there is no spool.
        """
        loop = asyncio.get_running_loop()
        received = self.clock()
        give_up = loop.time() + self.spool_after
        pause = 0.05
        while True:
            if self.spool is not None and self.spool.active:
                return await self._spool(arrival, received)
            # While the database is known to be away, requests wait for the replayer's look
            # (bots.spool.Replayer) instead of each knocking: hundreds of requests retrying
            # at once cost the server more than it had.
            if self.spool is None or self.database.up:
                future: asyncio.Future[bool] = loop.create_future()
                self._ensure_thread()
                self._queue.put(_Pending(arrival, loop, future))
                if self.spool is None:
                    new = await future
                    break
                try:
                    timeout = max(give_up - loop.time(), FIRST_TRY_SECONDS)
                    # Shielded: a write still under way when time runs out may yet commit;
                    # the spooled copy then meets its key in the inbox and is not stored twice.
                    new = await asyncio.wait_for(asyncio.shield(future), timeout=timeout)
                    break
                except (DatabaseUnavailable, TimeoutError):
                    pass
            if loop.time() + pause >= give_up:
                return await self._spool(arrival, received)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
        if new:
            self.stored()
        return new

    async def _spool(self, arrival: Arrival, received: datetime) -> bool:
        assert self.spool is not None
        await asyncio.to_thread(self.spool.append_arrival, arrival, received_at=received)
        return True

    def close(self) -> None:
        """Stop the writer thread once the queue is empty."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inbox-intake", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            with (
                self.turns.urgent() if self.turns else contextlib.nullcontext(),
                unit_of_work(self.sessions) as session,
            ):
                new = accept_many(session, arrivals=[p.arrival for p in batch], now=self.clock())
        except Exception as exc:
            if database_unavailable(exc):
                self.database.failed(exc)  # one line when it goes down, not one a request
                failure: BaseException = DatabaseUnavailable(type(exc).__name__)
            elif len(batch) > 1:
                for pending in batch:  # one message's fault must not fail the others
                    self._write([pending])
                return
            else:
                log.error("inbox: a delivery not stored: %s", type(exc).__name__)
                failure = exc
            for pending in batch:
                pending.loop.call_soon_threadsafe(_fail, pending.future, failure)
            return
        self.database.answered()
        self.batches += 1
        self.rows += len(batch)
        self.last_write = time.monotonic()
        seen: set[str] = set()
        for pending in batch:
            key = pending.arrival.provider_key
            first_of_key = key in new and key not in seen
            seen.add(key)
            pending.loop.call_soon_threadsafe(_resolve, pending.future, first_of_key)


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[bool], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
