"""The webhooks' local spool: where an inbound message waits while the database is away.

A webhook answers Telegram or Twilio only once the message is durable. When the database cannot
take it (down, restarting, read-only, out of disk), the message is appended to this process's
spool file, which is fsynced before the provider is answered; a replayer moves spooled messages
into the inbox in the order they arrived as soon as the database answers again.

- One file per process (``spool-<host>-<pid>-<random>.jsonl``), one JSON line per message,
  written with one ``write`` under a lock and fsynced in groups (every waiting request shares
  one fsync). The file is locked (``flock``) by its owner while it lives: a file nobody holds is
  a dead process's, and any replayer may take it over.
- Replay goes in batches of one transaction each; after a commit, the file's checkpoint
  (``<file>.done``, the byte offset replayed) is written and renamed into place. A replayer
  killed between the commit and the checkpoint replays that batch again, and the inbox's unique
  provider key keeps it from being stored twice: nothing is lost, nothing is doubled.
- Order: while anything is spooled, new arrivals are spooled too (behind what came first), and
  several files are merged by arrival time. The stored ``received_at`` is the arrival's own.
- Phone calls (:mod:`bots.voice`): a key pressed, a status callback, a call answered while the
  database was away, kept as ``voice`` records; each is applied once at replay, claimed under
  the same key as when it comes with the database up (``voice:<CallSid>:<event>``,
  :mod:`dispatch.callbacks`), so a copy applied at once, replayed by another process or
  replayed twice counts once (a repeat Twilio sends meanwhile is not even spooled twice here).
- Bounded: beyond HOSEN_SPOOL_MAX_BYTES, or once its oldest message is older than
  HOSEN_SPOOL_MAX_AGE_HOURS, the spool takes nothing more (:class:`SpoolFull`; the webhooks
  answer 503 and the provider retries or tries the fallback URL). Nothing spooled is ever
  dropped by age: it is replayed when the database returns. The last eighth of the room (at
  most :data:`CALL_RESERVE`) is kept for calls' records, which the age limit does not stop:
  a caller waits on the line for what the spool took.

The spool holds what the inbox holds (senders' numbers and their words): its directory is as
private as the database (files are created ``0600``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bots.inbound import accept_many
from bots.officers import tell_officers
from config.settings import Settings
from dispatch import calls
from dispatch.channels.base import Arrival
from dispatch.delivery import record_sms_status
from registry.db import unit_of_work, utcnow
from registry.models import Channel

log = logging.getLogger("hosen.spool")

Clock = Callable[[], datetime]
PREFIX = "spool-"
SUFFIX = ".jsonl"
DONE = ".done"
REJECTED = "rejected.jsonl"  # messages the database refused at replay, kept for an operator
REPLAY_BATCH = 200
CALL_RESERVE = 1 << 20  # bytes of the spool only calls' records may use (a few thousand)
LOUD_EVERY = 60.0  # seconds between two "spool full" lines: one clear line, not one a request


def database_unavailable(exc: BaseException) -> bool:
    """Whether a failed write is the database's fault (unreachable, restarting, read-only, out
    of disk, locked), not the message's: worth retrying, and spooling meanwhile."""
    if isinstance(exc, (OperationalError, InterfaceError, InternalError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OSError)


def unavailable_reason(exc: BaseException) -> str:
    """A name for what went wrong, fit for a log line: never the message (it may hold a URL
    with a password, or a value)."""
    return type(exc).__name__


class SpoolFull(Exception):
    """The spool takes nothing more (full, too old, or not writable); ``str()`` says which."""


@dataclass
class DatabaseState:
    """What this process last saw of the database: up, or down since when (a monotonic time),
    reported once when it goes down and once when it comes back, never per request."""

    down_since: float | None = None
    last_outage: float = 0.0  # seconds the latest finished outage lasted
    tell_after: float = 60.0  # an outage this long is told to the officers when it ends
    untold: float | None = None  # such an outage, not yet told
    monotonic: Callable[[], float] = time.monotonic  # injected by tests
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.down_since is not None:
                return
            self.down_since = self.monotonic()
        log.warning(
            "database unavailable (%s): webhooks retry, then spool", unavailable_reason(exc)
        )

    def answered(self) -> float | None:
        """The database answered; the length of the outage that just ended, if one did."""
        with self._lock:
            if self.down_since is None:
                return None
            lasted = self.monotonic() - self.down_since
            self.down_since, self.last_outage = None, lasted
            if lasted >= self.tell_after:
                self.untold = lasted
        log.warning("database back after %.1fs", lasted)
        return lasted

    def down_for(self) -> float:
        since = self.down_since
        return 0.0 if since is None else self.monotonic() - since


@dataclass(frozen=True)
class SpoolStatus:
    pending: int  # messages waiting for the database (in files this process may replay)
    bytes: int  # the spool directory's size
    max_bytes: int
    oldest: datetime | None
    full: bool
    problem: str | None  # why it takes nothing more


@dataclass(frozen=True)
class _Record:
    kind: str  # "in" (an arrival), "status" (a Twilio delivery receipt) or "voice" (a call's)
    at: datetime
    data: dict[str, Any]
    end: int  # byte offset just past this record's line in its file


@dataclass
class _File:
    path: Path
    fd: int | None  # held (and flock-ed) while we own or replay it
    offset: int  # replayed up to here

    @property
    def done_path(self) -> Path:
        return self.path.with_name(self.path.name + DONE)


class Spool:
    """This process's spool in ``directory``; appends come from webhook threads, replays from
    one replayer at a time (:meth:`replay`)."""

    def __init__(
        self, directory: Path, *, max_bytes: int, max_age: timedelta, clock: Clock
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        # Kept back for calls: someone on the line is told what was kept, so their records
        # (a key, the "we will call you again" of a call answered now) still fit when messages
        # filled the rest.
        self.reserve = min(CALL_RESERVE, max_bytes // 8)
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()  # appends, and the switch back to the database
        self._sync_lock = threading.Lock()
        self._replay_lock = threading.Lock()
        self._own: _File | None = None
        self._written = 0  # appends made / made durable (group fsync)
        self._synced = 0
        self._own_pending = 0
        self._foreign_pending = 0
        self._oldest: datetime | None = None
        self._last_loud = 0.0
        self.refused = 0
        self.refusing = False  # the latest append was refused (until one is taken, or a drain)
        self.spooled = 0
        self.replayed = 0
        self._voice_keys: set[str] = set()  # the voice callbacks in this process's file

    # --- writing (webhook threads) -------------------------------------------------------

    @property
    def active(self) -> bool:
        """Something waits for the database: a new arrival goes behind it, into the spool."""
        return self._own_pending > 0 or self._foreign_pending > 0

    def append_arrival(self, arrival: Arrival, *, received_at: datetime) -> None:
        self._append(
            "in",
            received_at,
            {
                "key": arrival.provider_key,
                "channel": arrival.channel.value,
                "address": arrival.address,
                "payload": arrival.payload,
            },
        )

    def append_status(
        self, *, message_sid: str, status: str, error_code: int | None, received_at: datetime
    ) -> None:
        self._append(
            "status", received_at, {"sid": message_sid, "status": status, "error": error_code}
        )

    def append_voice(
        self, *, event: str, call_sid: str, data: dict[str, str], received_at: datetime
    ) -> bool:
        """Keep a call's callback (:data:`dispatch.calls.KEPT_EVENTS`); False when this very
        callback is already kept (Twilio asking again), and nothing is written."""
        assert event in calls.KEPT_EVENTS
        key = voice_key(event, call_sid, data)
        return self._append(
            "voice", received_at, {"key": key, "event": event, "sid": call_sid, **data}, once=key
        )

    def _append(
        self, kind: str, at: datetime, data: dict[str, Any], *, once: str | None = None
    ) -> bool:
        line = (
            json.dumps({"kind": kind, "at": at.isoformat(), **data}, ensure_ascii=False) + "\n"
        ).encode()
        with self._lock:
            if once is not None and once in self._voice_keys:
                return False
            problem = self._problem(extra=len(line), reserved=kind == "voice")
            if problem is not None:
                self.refuse(problem)
            try:
                own = self._own_file()
                assert own.fd is not None
                os.write(own.fd, line)  # O_APPEND: one write, one whole line
            except OSError as exc:
                self.refuse(f"not writable ({exc.strerror or type(exc).__name__})")
            self._written += 1
            if once is not None:
                self._voice_keys.add(once)
            self.refusing = False
            mine = self._written
            self._own_pending += 1
            self.spooled += 1
            if self._oldest is None:
                self._oldest = at
            fd = own.fd
        assert fd is not None
        with self._sync_lock:  # whoever fsyncs makes every line written before it durable
            if self._synced < mine:
                upto = self._written
                try:
                    os.fsync(fd)
                except OSError as exc:
                    self.refuse(f"not writable ({exc.strerror or type(exc).__name__})")
                self._synced = upto
        return True

    def refuse(self, problem: str) -> None:
        """Say loudly (once a minute, no personal data) that the spool takes nothing more."""
        self.refused += 1
        self.refusing = True
        now = time.monotonic()
        if now - self._last_loud >= LOUD_EVERY or self.refused == 1:
            self._last_loud = now
            log.error(
                "SPOOL FULL: %s (%s); webhooks answer 503 (%d refused so far): free space or "
                "bring the database back",
                problem,
                self.directory,
                self.refused,
            )
        raise SpoolFull(problem)

    def _problem(self, *, extra: int = 0, reserved: bool = False) -> str | None:
        """Why the spool takes nothing more; ``reserved``: for a call's record, which may use
        the room kept back for calls and is not refused for the spool's age."""
        if not reserved and self._oldest is not None and self.clock() - self._oldest > self.max_age:
            return f"oldest message older than {self.max_age}"
        size = self._size()
        room = self.max_bytes if reserved else self.max_bytes - self.reserve
        if size + extra > room:
            return f"{size} bytes of {room}"
        return None

    def _size(self) -> int:
        total = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self.directory) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
        return total

    def _own_file(self) -> _File:
        if self._own is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}{SUFFIX}"
            path = self.directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _sync_directory(self.directory)  # the new file's name is durable too
            self._own = _File(path=path, fd=fd, offset=0)
        return self._own

    # --- state -----------------------------------------------------------------------------

    def status(self) -> SpoolStatus:
        with self._lock:
            problem = self._problem() or ("refusing messages" if self.refusing else None)
            return SpoolStatus(
                pending=self._own_pending + self._foreign_pending,
                bytes=self._size(),
                max_bytes=self.max_bytes,
                oldest=self._oldest,
                full=problem is not None,
                problem=problem,
            )

    # --- replay (one replayer at a time) ---------------------------------------------------

    def replay(
        self, sessions: sessionmaker[Session], *, batch: int = REPLAY_BATCH, write_turn: Any = None
    ) -> int:
        """Move everything spooled (here, and in files no live process holds) into the inbox,
        oldest first, one transaction a batch; the messages moved. Database errors propagate:
        what was committed is checkpointed, the rest stays for the next call."""
        with self._replay_lock:
            files = self._replayable()
            moved = 0
            try:
                while True:
                    records = self._pending_records(files)
                    if not records:
                        break
                    for start in range(0, len(records), batch):
                        chunk = records[start : start + batch]
                        try:
                            self._commit(sessions, chunk, write_turn)
                        except Exception as exc:
                            if database_unavailable(exc):
                                raise
                            # One message the database refuses must not hold the rest (and,
                            # the spool never emptying, every later message) for ever.
                            for one in chunk:
                                self._store_or_set_aside(sessions, one, write_turn)
                        moved += len(chunk)
                        self._checkpoint(chunk)
            finally:
                self.replayed += moved
                self._let_go(files)
            return moved

    def _commit(
        self, sessions: sessionmaker[Session], chunk: list[tuple[_File, _Record]], turn: Any
    ) -> None:
        with (
            turn() if turn else contextlib.nullcontext(),
            unit_of_work(sessions) as session,
        ):
            _store(session, [record for _, record in chunk])

    def _store_or_set_aside(
        self, sessions: sessionmaker[Session], item: tuple[_File, _Record], turn: Any
    ) -> None:
        """Store one message; if the database refuses it (not for being away), keep it in
        ``rejected.jsonl`` beside the spool for an operator, and say so."""
        try:
            self._commit(sessions, [item], turn)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            line = json.dumps(
                {"kind": item[1].kind, "at": item[1].at.isoformat(), **item[1].data},
                ensure_ascii=False,
            )
            fd = os.open(self.directory / REJECTED, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            log.error(
                "spool: a message the database refuses (%s) set aside in %s",
                type(exc).__name__,
                REJECTED,
            )

    def _replayable(self) -> list[_File]:
        """This process's own file, and the files of processes that are gone (locked here)."""
        files: list[_File] = []
        with self._lock:
            if self._own is not None:
                files.append(self._own)
        own = self._own.path if self._own is not None else None
        for path in sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}")):
            if path == own:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process's (its owner, or another replayer)
                continue
            files.append(_File(path=path, fd=fd, offset=_read_offset(path)))
        return files

    def _pending_records(self, files: list[_File]) -> list[tuple[_File, _Record]]:
        """Everything not yet replayed, merged across files by arrival time (each file's own
        order kept, so a checkpoint always covers a prefix)."""
        streams = [[(f, r) for r in _read_records(f.path, f.offset)] for f in files]
        foreign = sum(len(s) for s, f in zip(streams, files, strict=True) if f is not self._own)
        with self._lock:
            self._foreign_pending = foreign
            if self._own is not None:
                own = next((s for s, f in zip(streams, files, strict=True) if f is self._own), [])
                self._own_pending = max(self._own_pending, len(own))
            heads = [s[0][1].at for s in streams if s]
            self._oldest = min(heads) if heads else self._oldest
        return list(heapq.merge(*streams, key=lambda item: item[1].at))

    def _checkpoint(self, chunk: list[tuple[_File, _Record]]) -> None:
        ends: dict[int, tuple[_File, int]] = {}
        for file, record in chunk:
            ends[id(file)] = (file, max(record.end, ends.get(id(file), (file, 0))[1]))
        for file, end in ends.values():
            _write_offset(file.done_path, end)
            file.offset = end
        with self._lock:
            for file, _ in chunk:
                if file is self._own:
                    self._own_pending -= 1
                else:
                    self._foreign_pending -= 1

    def _let_go(self, files: list[_File]) -> None:
        """Remove what is fully replayed; unlock the files of others."""
        for file in files:
            if file is self._own:
                continue
            if not _read_records(file.path, file.offset):
                _discard_torn_tail(file)
                for path in (file.path, file.done_path):
                    path.unlink(missing_ok=True)
            if file.fd is not None:
                os.close(file.fd)
        with self._lock:
            own = self._own
            if own is None or self._own_pending > 0:
                if self._own_pending == 0 and self._foreign_pending == 0:
                    self._oldest = None
                    self.refusing = False
                return
            if own.offset < os.path.getsize(own.path):
                return  # appended after the last read: the next pass takes it
            # Drained: the next outage starts a fresh file (and the webhooks go direct again).
            assert own.fd is not None
            os.close(own.fd)
            for path in (own.path, own.done_path):
                path.unlink(missing_ok=True)
            self._own = None
            self._voice_keys.clear()
            if self._foreign_pending == 0:
                self._oldest = None
                self.refusing = False

    def close(self) -> None:
        with self._lock:
            if self._own is not None and self._own.fd is not None:
                os.close(self._own.fd)  # the file stays for the next process to replay
                self._own = None


@dataclass
class Replayer:
    """Moves the spool into the inbox whenever the database answers, and keeps
    :class:`DatabaseState` current (a ``SELECT 1`` every ``look_every`` seconds, so ``/health``
    knows even when no webhook is writing). Runs in ``hosen serve`` beside the webhooks, or on
    its own (``hosen inbox --replay-spool``) for a spool left by a process that is gone."""

    spool: Spool
    sessions: sessionmaker[Session]
    database: DatabaseState
    write_turn: Any = None  # SQLite: the intake's turn (bots.intake.WriteTurns.urgent)
    replayed: Callable[[], None] = lambda: None  # told (on the loop) after messages moved
    look_every: float = 2.0
    look_when_down: float = 0.25  # webhooks wait for this look to find the database back
    drained_after: int = 0  # messages moved since the spool last had something in it

    def step(self, *, batch: int = REPLAY_BATCH) -> int:
        """One look: is the database there; if so, replay whatever is spooled. Database errors
        propagate (the caller notes them and looks again later)."""
        with unit_of_work(self.sessions) as session:
            session.execute(select(1))
        self.database.answered()
        outage = self.database.untold
        if outage is not None:
            self._tell("down", minutes=max(1, round(outage / 60)))
            self.database.untold = None
        moved = self.spool.replay(self.sessions, batch=batch, write_turn=self.write_turn)
        self.drained_after += moved
        if self.drained_after and not self.spool.active:
            log.warning("spool drained: %d messages replayed into the inbox", self.drained_after)
            self._tell("drained", count=self.drained_after)
            self.drained_after = 0
        return moved

    def _tell(self, key: str, **params: object) -> None:
        with unit_of_work(self.sessions) as session:
            tell_officers(session, key=key, now=utcnow(), **params)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self.step):
                    self.replayed()
            except Exception as exc:
                if database_unavailable(exc):
                    self.database.failed(exc)
                else:
                    log.error("spool replay failed: %s", type(exc).__name__)
            every = self.look_every if self.database.up else self.look_when_down
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)


def spool_of(settings: Settings, *, clock: Clock) -> Spool:
    return Spool(
        settings.spool_dir,
        max_bytes=settings.spool_max_bytes,
        max_age=timedelta(hours=settings.spool_max_age_hours),
        clock=clock,
    )


def scan(directory: Path) -> tuple[int, int]:
    """Messages waiting and bytes used in a spool directory, from outside (the CLI)."""
    pending = size = 0
    for path in directory.glob(f"{PREFIX}*{SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            size += path.stat().st_size
            pending += len(_read_records(path, _read_offset(path)))
    return pending, size


def _store(session: Session, records: list[_Record]) -> None:
    arrivals = [
        Arrival(
            provider_key=r.data["key"],
            channel=Channel(r.data["channel"]),
            address=r.data["address"],
            payload=r.data["payload"],
            received_at=r.at,
        )
        for r in records
        if r.kind == "in"
    ]
    accept_many(session, arrivals=arrivals, now=records[0].at)
    for r in records:
        if r.kind == "status":
            record_sms_status(
                session,
                message_sid=r.data["sid"],
                status=r.data["status"],
                error_code=r.data["error"],
                now=r.at,
            )
        elif r.kind == "voice":
            # Applied once however often it is replayed: dispatch.calls claims it by its key.
            calls.replay_callback(session, event=r.data["event"], data=r.data, now=r.at)


def voice_key(event: str, call_sid: str, data: dict[str, str]) -> str:
    """The key of a call's callback (:func:`dispatch.calls.callback_key`): a repeat Twilio
    sends while it is spooled is not written twice."""
    return calls.callback_key(event, call_sid, data.get("status", ""))


def _read_records(path: Path, offset: int) -> list[_Record]:
    """The complete lines after ``offset`` (a torn last line, from a crash mid-write, was never
    acknowledged: it is not a message)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return []
    records: list[_Record] = []
    position = offset
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        position += len(line)
        try:
            raw = json.loads(line)
            records.append(
                _Record(
                    kind=raw.pop("kind"),
                    at=datetime.fromisoformat(raw.pop("at")),
                    data=raw,
                    end=position,
                )
            )
        except (ValueError, KeyError, TypeError):
            log.error("spool: an unreadable line in %s skipped", path.name)
    return records


def _discard_torn_tail(file: _File) -> None:
    with contextlib.suppress(FileNotFoundError):
        if os.path.getsize(file.path) > file.offset:
            log.warning(
                "spool: %s ends in a torn line (a crash mid-write), dropped", file.path.name
            )


def _read_offset(path: Path) -> int:
    try:
        return int(path.with_name(path.name + DONE).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _write_offset(path: Path, offset: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, str(offset).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
