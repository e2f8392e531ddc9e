"""The inbox processor: acts on the inbound messages the webhooks (or the poller) stored.

The webhooks answer Telegram and Twilio as soon as a message is committed to the inbox; this
processor, a task in every ``hosen serve`` (or ``hosen inbox``), does the rest: it claims a batch
of unprocessed rows under a lease, acts on them and marks them done.

- Claiming is one statement: it locks the oldest free rows (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, so several processes divide the work without taking a row twice) and keeps those
  whose sender has no earlier row waiting elsewhere; it returns what processing reads of them.
- A batch's plain "I'm OK" answers to open check-ins are decided and written together in a few
  statements (:mod:`bots.batch`, :func:`dispatch.responses.take_checkin_answers`); every other
  row runs :func:`bots.inbound.process` (dialog, help, tasks, staff), in a unit of work of its
  own (on PostgreSQL, the rest of the batch shares one with a savepoint per message).
- Each row is processed exactly once: it is marked done in the transaction that acted on it,
  and only while it is still leased to this processor (locked, on PostgreSQL). A process that
  dies mid-batch commits nothing of it; the rows are claimed again when the lease runs out.
- One sender's messages are processed in the order they came (a dialog is a sequence): a row is
  claimed only behind its sender's earlier rows in the same claim, never while an earlier one
  is in flight elsewhere or retrying; inside a batch, a sender's later messages take the
  per-message path after their first, and wait if it failed.
- A message whose processing raises is retried with back-off (the error's class is kept on the
  row, never its text); after ``max_attempts`` it is parked for a human (``parked_at``), the
  sender is asked to write again, and their later messages go on. Attempts are counted when a
  row is claimed, so a message that kills the process also ends parked instead of looping.
- Time is injected (``clock``); tests drive :meth:`InboxProcessor.drain` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from bots.batch import Stored, split
from bots.dialog import Dialog
from bots.flood import DEFAULT_POLICY, FloodPolicy
from bots.inbound import process, tell_to_try_again
from bots.intake import WriteTurns
from dispatch.channels.base import Delivery
from dispatch.channels.sms import delivery_from_params
from dispatch.channels.telegram import delivery_from_payload
from dispatch.models import InboundMessage
from dispatch.responses import take_checkin_answers
from registry.bulk import among, bulk_update
from registry.db import unit_of_work, utcnow
from registry.models import Channel

log = logging.getLogger("hosen.inbox")

Clock = Callable[[], datetime]
Decoder = Callable[[dict[str, Any]], Delivery | None]


@dataclass(frozen=True)
class ProcessorConfig:
    batch: int = 100  # rows claimed at once (a sender's consecutive ones, in order)
    lease_seconds: float = 60.0  # a claimed row is claimed again this long after a crash
    max_attempts: int = 5  # then the message is parked for a human
    backoff_base: float = 1.0  # seconds before the second attempt; doubled each time
    backoff_cap: float = 60.0
    poll_every: float = 1.0  # also look without being woken: other processes' rows, retries
    # In the serving process, while webhooks are arriving: a pause after each message, so the
    # event loop that acknowledges them gets the interpreter (processing is ~10 ms of Python a
    # reply; left alone it took half the interpreter and acknowledgements queued behind it).
    yield_seconds: float = 0.02


@dataclass(frozen=True)
class Done:
    """What happened to one claimed row (for tests and the benchmark)."""

    inbox_id: int
    processed: bool = False
    failed: str | None = None  # the error's class
    parked: bool = False


def decoders(*, region: str) -> dict[Channel, Decoder]:
    """How a stored payload becomes a delivery again, per channel."""
    return {
        Channel.TELEGRAM: delivery_from_payload,
        Channel.SMS: lambda params: delivery_from_params(params, region=region),
    }


def claim(
    session: Session,
    *,
    holder: str,
    now: datetime,
    limit: int,
    lease: timedelta,
    skip_locked: bool,
) -> list[int]:
    """Take up to ``limit`` waiting rows, oldest first; a sender's rows only in the order they
    came, from their first unfinished one on. The ids, in the order to process; see
    :func:`claim_rows`."""
    return [
        row.id
        for row in claim_rows(
            session, holder=holder, now=now, limit=limit, lease=lease, skip_locked=skip_locked
        )
    ]


def claim_rows(
    session: Session,
    *,
    holder: str,
    now: datetime,
    limit: int,
    lease: timedelta,
    skip_locked: bool,
) -> list[Row[Any]]:
    """:func:`claim`, returning the claimed rows as the processor reads them, in id order.

    A row is waiting while neither processed nor parked, with no live lease (a claim, or the
    back-off after a failure). The caller commits.

    One statement: the oldest free rows are locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL:
    rows another processor is claiming are left to it); of those, a row is taken unless an
    earlier waiting row of its sender is not among them (in flight, backing off, or locked by
    another processor): then it waits, and so do its sender's later rows. Both reads use the
    partial indexes of waiting rows, so each processor reads what it takes and its senders'
    earlier rows, never the backlog or the processed history, and no two processors decide
    the same sender's first row: the rows are divided by their locks before anything is read.
    """
    waiting = and_(InboundMessage.processed_at.is_(None), InboundMessage.parked_at.is_(None))
    free = or_(InboundMessage.lease_until.is_(None), InboundMessage.lease_until <= now)
    oldest_rows = (
        select(InboundMessage.id, InboundMessage.sender)
        .where(waiting, InboundMessage.sender.is_not(None), free)
        .order_by(InboundMessage.id)
        .limit(limit)
    )
    if skip_locked:
        oldest_rows = oldest_rows.with_for_update(skip_locked=True)
    oldest = oldest_rows.cte("oldest")
    earlier = aliased(InboundMessage)
    # A scalar subquery with LIMIT 1, not NOT EXISTS: PostgreSQL then looks each row's sender up
    # in the index whatever its statistics say (right after a burst they say the inbox is empty,
    # and an anti-join planned on that read the whole index once a row).
    blocker = (
        select(earlier.id)
        .where(
            earlier.sender == oldest.c.sender,
            earlier.id < oldest.c.id,
            earlier.processed_at.is_(None),
            earlier.parked_at.is_(None),
            earlier.id.not_in(select(oldest.c.id)),
        )
        .limit(1)
        .scalar_subquery()
    )
    taken = select(oldest.c.id).where(blocker.is_(None))
    rows = session.execute(
        update(InboundMessage)
        .where(InboundMessage.id.in_(taken))
        .values(
            lease_until=now + lease,
            leased_by=holder,
            attempts=InboundMessage.attempts + 1,
        )
        .returning(*CLAIMED)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(rows, key=lambda row: int(row.id))


# What a claim returns of each row: all the processor's batch path reads.
CLAIMED = (
    InboundMessage.id,
    InboundMessage.channel,
    InboundMessage.payload,
    InboundMessage.received_at,
    InboundMessage.attempts,
    InboundMessage.sender,
    InboundMessage.person_id,
)


@dataclass
class InboxProcessor:
    """Claims and processes stored inbound messages; ``await run(stop)`` in the serving process."""

    sessions: sessionmaker[Session]
    dialog: Dialog
    clock: Clock = utcnow
    flood: FloodPolicy = DEFAULT_POLICY
    config: ProcessorConfig = field(default_factory=ProcessorConfig)
    holder: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"[:64]
    )
    decode: Mapping[Channel, Decoder] | None = None
    turns: WriteTurns | None = None  # SQLite: let the webhooks' inserts go first
    busy: Callable[[], bool] | None = None  # the webhooks are busy: pause between messages
    _wake: asyncio.Event | None = None

    def __post_init__(self) -> None:
        if self.decode is None:
            self.decode = decoders(region=self.dialog.region)
        bind = self.sessions.kw.get("bind")
        self.on_postgresql = bind is not None and bind.dialect.name == "postgresql"

    # --- one round, synchronous (a thread in the server; called directly by tests) ----------

    def drain(self, *, rounds: int = 1000) -> list[Done]:
        """Claim and process until nothing is waiting (or ``rounds`` claims); what was done."""
        done: list[Done] = []
        for _ in range(rounds):
            batch = self.step()
            if not batch:
                break
            done.extend(batch)
        return done

    def step(self) -> list[Done]:
        """One claim and the processing of what it took."""
        claimed = self.claim_rows()
        if not claimed:
            return []
        ids = [row.id for row in claimed]
        done, rest, senders = self.process_quick(ids, claimed=claimed)
        if self.on_postgresql and len(rest) > 1:
            done.update({d.inbox_id: d for d in self.process_together(rest, senders=senders)})
        else:
            failed: set[str] = set()
            held: list[int] = []
            for inbox_id in rest:
                sender = senders.get(inbox_id)
                if sender is not None and sender in failed:
                    held.append(inbox_id)
                    continue
                done[inbox_id] = self.process_one(inbox_id)
                result = done[inbox_id]
                if result.failed is not None and not result.parked and sender is not None:
                    failed.add(sender)  # to be retried: their later rows wait for it
                if self.busy is not None and self.busy():
                    time.sleep(self.config.yield_seconds)
            done.update({d.inbox_id: d for d in self._release(held)})
        return [done[inbox_id] for inbox_id in ids]

    def process_quick(
        self, ids: list[int], *, claimed: Sequence[Row[Any]] = ()
    ) -> tuple[dict[int, Done], list[int], dict[int, str]]:
        """The batch's plain "I'm OK" answers to open check-ins, in one transaction of a few
        statements (:mod:`bots.batch`); returns what was done, the ids left for the per-message
        path (in order) and each row's sender. ``claimed``: the rows as the claim returned them
        (else they are read again).

        The rows are processed and marked so in the same transaction, only while still leased
        to this processor (locked on PostgreSQL): a crash before the commit leaves them all
        waiting, one after it leaves them all done. Should anything fail here, every row takes
        the per-message path, which isolates the one at fault.
        """
        senders: dict[int, str] = {}
        try:
            with self._turn(), unit_of_work(self.sessions) as session:
                known = {row.id: row for row in claimed}
                query = (
                    select(*((InboundMessage.id,) if known else CLAIMED))
                    .where(
                        among(session, InboundMessage.id, ids),
                        InboundMessage.leased_by == self.holder,
                        InboundMessage.processed_at.is_(None),
                        InboundMessage.parked_at.is_(None),
                    )
                    .order_by(InboundMessage.id)
                )
                if self.on_postgresql:
                    query = query.with_for_update()
                # Still ours (and, on PostgreSQL, locked until the commit): what a claim
                # returned of a row does not change while it is leased to us.
                rows = [known.get(row.id, row) for row in session.execute(query)]
                senders = {row.id: row.sender for row in rows if row.sender is not None}
                # A row to be parked takes the per-message path; its sender's later rows wait.
                stored = [
                    Stored(
                        row.id,
                        self._decoded(row.channel, row.payload)
                        if row.attempts <= self.config.max_attempts
                        else None,
                        row.received_at,
                        row.sender,
                    )
                    for row in rows
                ]
                quick, _ = split(session, stored)
                if not quick:
                    return {}, ids, senders
                take_checkin_answers(session, answers=[q.answer for q in quick])
                person_of = {row.id: row.person_id for row in rows}
                bulk_update(
                    session,
                    InboundMessage,
                    [
                        {
                            "id": q.inbox_id,
                            "person_id": q.answer.person.id
                            if q.names_person
                            else person_of[q.inbox_id],
                        }
                        for q in quick
                    ],
                    same={"processed_at": self.clock(), "lease_until": None, "leased_by": None},
                )
        except Exception as exc:
            log.warning("inbox batch of %d: per message instead: %s", len(ids), type(exc).__name__)
            return {}, ids, senders
        done = {q.inbox_id: Done(q.inbox_id, processed=True) for q in quick}
        return done, [inbox_id for inbox_id in ids if inbox_id not in done], senders

    def _decoded(self, channel: Channel, payload: dict[str, Any]) -> Delivery | None:
        """The delivery of a stored payload, or None if it does not decode (the per-message
        path then meets the same error and records it)."""
        assert self.decode is not None
        decode = self.decode.get(channel)
        try:
            return decode(payload) if decode is not None else None
        except Exception:
            return None

    def _release(self, ids: list[int]) -> list[Done]:
        """Give back claimed rows not processed because an earlier row of their sender failed:
        they wait behind it (their claim does not count as an attempt)."""
        if not ids:
            return []
        with contextlib.suppress(Exception), self._turn(), unit_of_work(self.sessions) as session:
            session.execute(
                update(InboundMessage)
                .where(
                    among(session, InboundMessage.id, ids),
                    InboundMessage.leased_by == self.holder,
                    InboundMessage.processed_at.is_(None),
                )
                .values(lease_until=None, leased_by=None, attempts=InboundMessage.attempts - 1)
                .execution_options(synchronize_session=False)
            )
        return [Done(inbox_id) for inbox_id in ids]

    def process_together(
        self, ids: list[int], *, senders: Mapping[int, str] | None = None
    ) -> list[Done]:
        """Process claimed rows in one transaction, each under a savepoint (PostgreSQL).

        One commit for the lot instead of one a message: a durable commit waits for the disk,
        and that wait, not the work, bounded processing at a few dozen replies a second. A
        message that fails rolls back to its savepoint alone; its failure is recorded after
        the commit, as :meth:`process_one` records it. Should the commit itself fail, the rows
        stay claimed and are processed again when the lease ends (their replies, written in the
        same transaction, were never queued).
        """
        done: dict[int, Done] = {}
        failed: dict[int, str] = {}
        failed_senders: set[str] = set()
        held: list[int] = []
        senders = senders or {}
        with self._turn(), unit_of_work(self.sessions) as session:
            for inbox_id in ids:
                sender = senders.get(inbox_id)
                if sender is not None and sender in failed_senders:
                    held.append(inbox_id)  # behind their failed message, in order
                    continue
                try:
                    with session.begin_nested():
                        done[inbox_id] = self._process_in(session, inbox_id)
                except Exception as exc:
                    failed[inbox_id] = type(exc).__name__
                    if sender is not None:
                        failed_senders.add(sender)
                if self.busy is not None and self.busy():
                    time.sleep(self.config.yield_seconds)
        for inbox_id, error in failed.items():
            done[inbox_id] = self._failed(inbox_id, error=error)
        done.update({d.inbox_id: d for d in self._release(held)})
        return [done[inbox_id] for inbox_id in ids]

    def _turn(self) -> contextlib.AbstractContextManager[None]:
        return self.turns.background() if self.turns is not None else contextlib.nullcontext()

    def claim(self) -> list[int]:
        return [row.id for row in self.claim_rows()]

    def claim_rows(self) -> list[Row[Any]]:
        with self._turn(), unit_of_work(self.sessions) as session:
            return claim_rows(
                session,
                holder=self.holder,
                now=self.clock(),
                limit=self.config.batch,
                lease=timedelta(seconds=self.config.lease_seconds),
                skip_locked=self.on_postgresql,
            )

    def process_one(self, inbox_id: int) -> Done:
        """Process one claimed row in its own unit of work; on an error, record it and retry."""
        try:
            with self._turn(), unit_of_work(self.sessions) as session:
                return self._process_in(session, inbox_id)
        except Exception as exc:
            return self._failed(inbox_id, error=type(exc).__name__)

    def _process_in(self, session: Session, inbox_id: int) -> Done:
        row = self._mine(session, inbox_id)
        if row is None:
            return Done(inbox_id)  # our lease ran out and someone else took it
        if row.attempts > self.config.max_attempts:
            # Claimed again and again without ever finishing: it kills its processor.
            self._park(session, row, error=row.error or "lease expired", now=self.clock())
            return Done(inbox_id, failed=row.error, parked=True)
        delivery = self._delivery(row)
        if delivery is not None:
            process(
                session,
                stored=row,
                delivery=delivery,
                dialog=self.dialog,
                now=row.received_at,  # when the person wrote: flood control, answers
                flood=self.flood,
            )
        row.processed_at = self.clock()
        row.lease_until = row.leased_by = None
        return Done(inbox_id, processed=True)

    def _mine(self, session: Session, inbox_id: int) -> InboundMessage | None:
        query = select(InboundMessage).where(
            InboundMessage.id == inbox_id,
            InboundMessage.leased_by == self.holder,
            InboundMessage.processed_at.is_(None),
            InboundMessage.parked_at.is_(None),
        )
        if self.on_postgresql:
            query = query.with_for_update()  # a re-claim after our lease must wait for us
        return session.scalar(query)

    def _delivery(self, row: InboundMessage) -> Delivery | None:
        assert self.decode is not None
        decode = self.decode.get(row.channel)
        return decode(row.payload) if decode is not None else None

    def _failed(self, inbox_id: int, *, error: str) -> Done:
        now = self.clock()
        try:
            with self._turn(), unit_of_work(self.sessions) as session:
                row = self._mine(session, inbox_id)
                if row is None:
                    return Done(inbox_id, failed=error)
                row.error = error[:200]
                if row.attempts >= self.config.max_attempts:
                    self._park(session, row, error=error, now=now)
                    return Done(inbox_id, failed=error, parked=True)
                delay = min(
                    self.config.backoff_cap,
                    self.config.backoff_base * 2 ** max(row.attempts - 1, 0),
                )
                row.lease_until = now + timedelta(seconds=delay)
                row.leased_by = None
        except Exception as exc:  # the database is away: the lease runs out, then a retry
            log.error("inbox %d: failure not recorded: %s", inbox_id, type(exc).__name__)
            return Done(inbox_id, failed=error)
        log.warning("inbox %d: attempt %d failed: %s", inbox_id, row.attempts, error)
        return Done(inbox_id, failed=error)

    def _park(self, session: Session, row: InboundMessage, *, error: str, now: datetime) -> None:
        row.parked_at = now
        row.error = f"parked: {error}"[:200]
        row.lease_until = row.leased_by = None
        delivery = None
        with contextlib.suppress(Exception):
            delivery = self._delivery(row)
        if delivery is not None:
            tell_to_try_again(session, delivery=delivery)
        log.error("inbox %d parked after %d attempts: %s", row.id, row.attempts, error)

    # --- the serving loop --------------------------------------------------------------------

    def wake(self) -> None:
        """A new row was committed: look now rather than at the next poll."""
        if self._wake is not None:
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set: at once when woken, else every ``poll_every``."""
        self._wake = asyncio.Event()
        while not stop.is_set():
            self._wake.clear()
            try:
                done = await asyncio.to_thread(self.step)
            except Exception as exc:  # the database is away: try again at the next poll
                log.warning("inbox processor waiting: %s", type(exc).__name__)
                done = []
            if done:
                continue  # more may be waiting behind this batch (one row per sender a round)
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(
                    waiters, timeout=self.config.poll_every, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
