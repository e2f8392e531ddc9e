"""Shared send limits and single-holder locks, kept in the database so they bind every process.

* Channel rate: each worker reserves a run of send slots (``count`` messages at ``rate`` a
  second) by moving ``channel_gate.next_slot_at`` forward under a row lock, then sends each
  message at its slot. Workers never share memory, yet together they never exceed the rate.
* Channel pause: a provider's ``RetryAfter`` / 429 sets ``paused_until``; nobody claims or sends
  on that channel before then.
* Channel breaker: transient failures with no answer in between, for long enough, mark the
  channel down (:func:`count_answers`); while it is down, one probe send goes out at a time
  (:func:`claim_allowance`), and the first answer brings it back.
* Per-chat rate (Telegram: 1 a second per chat): ``chat_gate`` keeps each chat's next free time.
* :func:`acquire_lease`: a named lock with a heartbeat (the single SQLite worker, the scheduler
  where there are no advisory locks, the one worker that sends on each channel: a provider
  counts a send when its request arrives, and only the sending process knows when it left).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import String, cast, delete, func, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dispatch.models import ChannelGate, ChatGate, ProcessLease
from registry.bulk import bulk_upsert, table_of
from registry.models import Channel


def upsert(session: Session, model: Any) -> Any:
    """An INSERT that can take ``on_conflict_do_*`` on both databases."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def _gate(session: Session, channel: Channel, now: datetime) -> ChannelGate:
    session.execute(
        upsert(session, ChannelGate)
        .values(channel=channel, next_slot_at=now, paused_until=None, pauses=0)
        .on_conflict_do_nothing(index_elements=["channel"])
    )
    gate = session.scalars(
        select(ChannelGate)
        .where(ChannelGate.channel == channel)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return gate


def reserve_slots(
    session: Session, *, channel: Channel, count: int, rate: float, now: datetime
) -> datetime:
    """Reserve ``count`` consecutive send slots; returns the first (the rest follow at 1/rate)."""
    # Core statements on the worker's hot path (once a batch): the ORM's object loading and
    # flush cost more than the row lock itself.
    gate = table_of(ChannelGate)
    connection = session.connection()
    locked = (
        select(gate.c.next_slot_at, gate.c.paused_until)
        .where(gate.c.channel == channel)
        .with_for_update()
    )
    found = connection.execute(locked).one_or_none()
    if found is None:  # the channel's first batch ever (or another worker's, just now)
        session.execute(
            upsert(session, ChannelGate)
            .values(channel=channel, next_slot_at=now, paused_until=None, pauses=0)
            .on_conflict_do_nothing(index_elements=["channel"])
        )
        found = connection.execute(locked).one()
    next_slot_at, paused = found
    start: datetime = max(next_slot_at, now, paused or now)
    connection.execute(
        update(gate)
        .where(gate.c.channel == channel)
        .values(next_slot_at=start + timedelta(seconds=count / rate))
    )
    return start


@dataclass(frozen=True)
class Breaker:
    """When a channel counts as down, and how often a down channel is probed."""

    failures: int = 20  # transient failures with no answer in between ...
    seconds: float = 10.0  # ... over at least this long
    probe_every: float = 5.0  # one probe send this often while it is down


class Health(StrEnum):
    DOWN = "down"  # the channel just went down
    BACK = "back"  # the channel just answered again


def claim_allowance(
    session: Session, *, channel: Channel, now: datetime, breaker: Breaker
) -> int | None:
    """How many messages a claim may take now: ``None`` for as many as it likes, 0 while the
    channel is paused or down, 1 for the one probe of a down channel (taken by one claim of
    one worker: the probe time moves on under the row's lock)."""
    gate = table_of(ChannelGate)
    connection = session.connection()
    found = connection.execute(
        select(gate.c.paused_until, gate.c.down_since).where(gate.c.channel == channel)
    ).one_or_none()
    if found is None:
        return None
    paused, down = found
    if paused is not None and paused > now:
        return 0
    if down is None:
        return None
    probe = connection.execute(
        update(gate)
        .where(gate.c.channel == channel, gate.c.down_since.is_not(None), gate.c.probe_at <= now)
        .values(probe_at=now + timedelta(seconds=breaker.probe_every))
    )
    return 1 if probe.rowcount else 0


def count_answers(
    session: Session,
    *,
    channel: Channel,
    answered: int,
    failed: int,
    now: datetime,
    breaker: Breaker,
) -> Health | None:
    """Count sends the provider answered (accepted or refused for good) and sends that failed
    transiently (5xx, timeout, no connection). Returns the change this call made, if any: the
    caller that brought the channel down or back (one, whatever the number of workers) tells
    the officers."""
    gate = table_of(ChannelGate)
    connection = session.connection()
    on_channel = gate.c.channel == channel
    if answered:
        back = connection.execute(
            update(gate)
            .where(on_channel, gate.c.down_since.is_not(None))
            .values(failures=0, failing_since=None, down_since=None, probe_at=None)
        )
        if back.rowcount:
            return Health.BACK
        # Only a gate that counted failures is written: the common case costs no row lock.
        connection.execute(
            update(gate)
            .where(on_channel, gate.c.failures > 0)
            .values(failures=0, failing_since=None)
        )
        return None
    if not failed:
        return None
    connection.execute(
        update(gate)
        .where(on_channel)
        .values(
            failures=gate.c.failures + failed,
            failing_since=func.coalesce(gate.c.failing_since, now),
        )
    )
    down = connection.execute(
        update(gate)
        .where(
            on_channel,
            gate.c.down_since.is_(None),
            gate.c.failures >= breaker.failures,
            gate.c.failing_since <= now - timedelta(seconds=breaker.seconds),
        )
        .values(down_since=now, probe_at=now + timedelta(seconds=breaker.probe_every))
    )
    return Health.DOWN if down.rowcount else None


def paused_until(session: Session, *, channel: Channel, now: datetime) -> datetime | None:
    """When the channel may be used again, if a provider asked us to pause it."""
    gate = table_of(ChannelGate)
    until = session.connection().scalar(
        select(gate.c.paused_until).where(gate.c.channel == channel)
    )
    return until if until is not None and until > now else None


def pauses(
    session: Session, *, channels: Iterable[Channel], now: datetime
) -> dict[Channel, datetime]:
    """The channels paused at ``now``, and until when."""
    gate = table_of(ChannelGate)
    rows = session.connection().execute(
        select(gate.c.channel, gate.c.paused_until).where(
            gate.c.channel.in_(list(channels)), gate.c.paused_until > now
        )
    )
    return {Channel(channel): until for channel, until in rows}


def pause_channel(session: Session, *, channel: Channel, until: datetime, now: datetime) -> None:
    """Stop every worker from sending on ``channel`` before ``until``."""
    gate = _gate(session, channel, now)
    if gate.paused_until is None or gate.paused_until < until:
        gate.paused_until = until
    gate.pauses += 1
    if gate.next_slot_at < until:
        gate.next_slot_at = until


def chat_next_times(
    session: Session, *, channel: Channel, addresses: Iterable[str]
) -> dict[str, datetime]:
    """Each chat's next free time, for the chats that have one; their rows locked until the
    caller's transaction ends."""
    wanted = sorted(set(addresses))
    if not wanted:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        # One primary-key probe per chat. A plain ``address IN (...)`` is planned from the
        # table's statistics, which a campaign outruns: the table grows by a batch of chats at
        # every claim, PostgreSQL still believes it small, scans every chat of the channel and
        # compares each with the whole list (176 ms a batch of 500 at 20,000 chats).
        wanted_chat = (
            func.unnest(cast(wanted, postgresql.ARRAY(String)))
            .table_valued("address")
            .render_derived(name="wanted")
        )
        gate = (
            select(ChatGate.next_at)
            .where(ChatGate.channel == channel, ChatGate.address == wanted_chat.c.address)
            .with_for_update()
            .lateral("gate")
        )
        rows = session.execute(select(wanted_chat.c.address, gate.c.next_at).join(gate, true()))
    else:
        rows = session.execute(
            select(ChatGate.address, ChatGate.next_at)
            .where(ChatGate.channel == channel, ChatGate.address.in_(wanted))
            .with_for_update()
        )
    return {address: next_at for address, next_at in rows}


def set_chat_next_times(session: Session, *, channel: Channel, times: dict[str, datetime]) -> None:
    if not times:
        return
    bulk_upsert(
        session,
        ChatGate,
        [
            {"channel": channel, "address": address, "next_at": at}
            for address, at in sorted(times.items())
        ],
        conflict=["channel", "address"],
    )


def forget_old_chat_times(session: Session, *, before: datetime) -> int:
    result = session.execute(delete(ChatGate).where(ChatGate.next_at < before))
    return int(getattr(result, "rowcount", 0) or 0)


def acquire_lease(
    session: Session, *, name: str, holder: str, ttl: timedelta, now: datetime
) -> bool:
    """Take or renew the named lease; ``False`` while another holder's lease is alive."""
    session.execute(
        upsert(session, ProcessLease)
        .values(name=name, holder=holder, expires_at=now + ttl)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    lease = session.scalars(
        select(ProcessLease)
        .where(ProcessLease.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if lease.holder != holder and lease.expires_at > now:
        return False
    lease.holder = holder
    lease.expires_at = now + ttl
    return True


def renew_leases(
    session: Session, *, names: Iterable[str], holder: str, ttl: timedelta, now: datetime
) -> int:
    """Extend the named leases ``holder`` still holds (none is taken: a lease that ran out
    stays with whoever took it since); how many were extended."""
    result = session.execute(
        update(ProcessLease)
        .where(
            ProcessLease.name.in_(list(names)),
            ProcessLease.holder == holder,
            ProcessLease.expires_at > now,
        )
        .values(expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def release_lease(session: Session, *, name: str, holder: str) -> None:
    session.execute(
        delete(ProcessLease).where(ProcessLease.name == name, ProcessLease.holder == holder)
    )
