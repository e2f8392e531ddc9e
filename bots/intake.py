"""The webhooks' way into the inbox: one writer thread that stores deliveries with group commit.

A webhook may answer Telegram or Twilio only once its message is committed. Committing each
request in a transaction of its own (a pool thread, a session, a commit, per request) cost
about 2 ms of CPU a request and could not hold 500 replies a second with the processor on the
same two cores (``bench/inbound_bench.py``). Here every request puts its delivery on a queue
and waits; one thread takes whatever has queued up (one request when traffic is light, dozens
under load), stores it with one ``INSERT ... ON CONFLICT DO NOTHING`` in one transaction,
commits, and tells each waiting request whether its message was new. If the transaction fails,
every request in it gets the error (the provider is not acknowledged and delivers again).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from bots.inbound import Arrival, accept_many
from registry.db import unit_of_work

log = logging.getLogger("hosen.intake")

Clock = Callable[[], datetime]


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
    _queue: queue.SimpleQueue[_Pending | None] = field(default_factory=queue.SimpleQueue)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    batches: int = 0
    rows: int = 0

    async def store(self, arrival: Arrival) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._ensure_thread()
        self._queue.put(_Pending(arrival, loop, future))
        new = await future
        if new:
            self.stored()
        return new

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
            with unit_of_work(self.sessions) as session:
                new = accept_many(session, arrivals=[p.arrival for p in batch], now=self.clock())
        except Exception as exc:
            log.error("inbox: %d deliveries not stored: %s", len(batch), type(exc).__name__)
            for pending in batch:
                pending.loop.call_soon_threadsafe(_fail, pending.future, exc)
            return
        self.batches += 1
        self.rows += len(batch)
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
