"""Scheduled drills and the periodic sweeps, run by APScheduler in exactly one process.

Several processes may run ``hosen scheduler`` (or embed :class:`DispatchScheduler`); only the
one holding the scheduler lock runs jobs, the others wait on standby and take over when it
dies. The lock is a PostgreSQL session advisory lock (released by the server when the holder's
connection drops), or on SQLite a ``process_lease`` row renewed by a heartbeat.

Jobs only write rows (campaigns, outbox rows, ladder steps); the workers send. Every job has
``coalesce=True`` (a backlog of missed runs becomes one run) and an explicit
``misfire_grace_time`` (a run late by less than that still happens; later it is skipped and
the next regular run, or the sweep, picks the work up), and ``max_instances=1``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session, sessionmaker

from config.profile import Profile, QuietHours
from dispatch import escalation, gates, offers, sweeps
from dispatch import help as help_alerts
from dispatch.campaigns import Audience, CampaignError, start_campaign
from dispatch.clock import Clock, SystemClock
from dispatch.models import CampaignKind, CampaignMode, DrillSchedule
from dispatch.retention import DEFAULT_RETENTION, Retention, purge
from registry.db import unit_of_work
from registry.models import Authority

log = logging.getLogger("hosen.scheduler")

SCHEDULER_LEASE = "scheduler"
ADVISORY_KEY = 0x486F73656E  # "Hosen": one cluster-wide scheduler lock
SWEEP_SECONDS = 15
MISFIRE_GRACE_SECONDS = 300
# A drill fired twice (a failover in the middle of a run) starts once.
DOUBLE_FIRE_WINDOW = timedelta(minutes=10)
JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": MISFIRE_GRACE_SECONDS, "max_instances": 1}


# --- drill schedules (services: the caller commits) ------------------------------------------


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_cron(cron: str, zone: ZoneInfo) -> CronTrigger:
    """A standard crontab line (minute hour day month weekday, 0 or 7 = Sunday).

    APScheduler 3 numbers weekdays from Monday = 0, so "0 10 * * 0" would fire on Mondays:
    numeric weekdays are turned into names first (a step such as "*/2" is left alone).
    """
    fields = cron.split()
    if len(fields) != 5:
        raise CampaignError(f"not a crontab line {cron!r}: it needs 5 fields")
    fields[4] = re.sub(r"(?<![/\d])([0-7])(?!\d)", lambda m: _WEEKDAYS[int(m.group(1))], fields[4])
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=zone)
    except ValueError as exc:
        raise CampaignError(f"not a crontab line {cron!r}: {exc}") from None


def add_drill_schedule(
    session: Session,
    *,
    authority: Authority,
    cron: str,
    audience: Audience,
    zone: ZoneInfo,
    now: datetime,
) -> DrillSchedule:
    parse_cron(cron, zone)
    schedule = DrillSchedule(
        authority_id=authority.id, cron=cron, audience=audience.describe(), created_at=now
    )
    session.add(schedule)
    session.flush()
    return schedule


def _audience(stored: dict[str, Any]) -> Audience:
    return Audience(
        zones=tuple(stored.get("zones", ())),
        needs=tuple(stored.get("needs", ())),
        roles=tuple(stored.get("roles", ())),
        groups=tuple(stored.get("groups", ())),
        residents_only=bool(stored.get("residents_only", False)),
        volunteers_only=bool(stored.get("volunteers_only", False)),
    )


def quiet_hours_for(profile: Profile, authority: Authority) -> QuietHours:
    for entry in profile.authorities:
        if entry.code == authority.code:
            return entry.quiet_hours
    return QuietHours()


def fire_drill(
    session: Session, *, schedule_id: int, profile: Profile, zone: ZoneInfo, now: datetime
) -> int | None:
    """The schedule's time came: start the drill, or hold it until quiet hours end."""
    schedule = session.get(DrillSchedule, schedule_id)
    if schedule is None or not schedule.enabled:
        return None
    if schedule.last_started_at is not None and now - schedule.last_started_at < DOUBLE_FIRE_WINDOW:
        return None
    authority = session.get(Authority, schedule.authority_id)
    assert authority is not None
    if quiet_hours_for(profile, authority).contains(now.astimezone(zone).time()):
        schedule.pending_since = schedule.pending_since or now
        return None
    return _start(session, schedule=schedule, authority=authority, now=now)


def start_pending_drills(
    session: Session, *, profile: Profile, zone: ZoneInfo, now: datetime
) -> list[int]:
    """Drills held back by quiet hours start as soon as the quiet hours are over."""
    started = []
    for schedule in session.scalars(
        select(DrillSchedule).where(
            DrillSchedule.pending_since.is_not(None), DrillSchedule.enabled.is_(True)
        )
    ):
        authority = session.get(Authority, schedule.authority_id)
        assert authority is not None
        if not quiet_hours_for(profile, authority).contains(now.astimezone(zone).time()):
            started.append(_start(session, schedule=schedule, authority=authority, now=now))
    return started


def _start(
    session: Session, *, schedule: DrillSchedule, authority: Authority, now: datetime
) -> int:
    campaign = start_campaign(
        session,
        authority=authority,
        kind=CampaignKind.CHECKIN,
        mode=CampaignMode.DRILL,  # a schedule never starts an emergency
        audience=_audience(schedule.audience),
        started_by=f"schedule:{schedule.id}",
        now=now,
    )
    schedule.pending_since = None
    schedule.last_started_at = now
    schedule.last_campaign_id = campaign.id
    log.info("scheduled drill %s started campaign %s", schedule.id, campaign.id)
    return campaign.id


def sweep(
    session: Session,
    *,
    profile: Profile,
    zone: ZoneInfo,
    now: datetime,
    retention: Retention = DEFAULT_RETENTION,
) -> dict[str, int]:
    """Everything periodic, as one unit of work: ladder steps, help alerts nobody took,
    offers to make, remind or plan again, lost leases, held drills, and the words past
    retention."""
    return {
        "ladder": escalation.run_escalations(session, now=now),
        "alerts": help_alerts.run_alert_climbs(session, now=now),
        "offers": offers.sweep_offers(session, profile=profile, now=now).total(),
        "leases": sweeps.requeue_expired_leases(session, now=now),
        "drills": len(start_pending_drills(session, profile=profile, zone=zone, now=now)),
        "purged": purge(session, now=now, retention=retention),
    }


def sweep_all(
    sessions: sessionmaker[Session],
    *,
    profile: Profile,
    zone: ZoneInfo,
    now: datetime,
    max_batches: int = 200,
    retention: Retention = DEFAULT_RETENTION,
) -> dict[str, int]:
    """Sweep until nothing is due, one transaction per batch of ladder steps (a reminder wave
    for a large campaign is many batches; each commits on its own)."""
    total = {"ladder": 0, "alerts": 0, "offers": 0, "leases": 0, "drills": 0, "purged": 0}
    for _ in range(max_batches):
        with unit_of_work(sessions) as session:
            done = sweep(session, profile=profile, zone=zone, now=now, retention=retention)
        for key, value in done.items():
            total[key] += value
        if (
            done["ladder"] < escalation.SWEEP_BATCH
            and done["alerts"] < help_alerts.SWEEP_BATCH
            and done["offers"] == 0
        ):
            break
    return total


# --- the single active scheduler -------------------------------------------------------------


class SchedulerLock:
    """Held by at most one process: a PostgreSQL advisory lock, or a lease row on SQLite."""

    def __init__(
        self, sessions: sessionmaker[Session], *, holder: str, clock: Clock, ttl: timedelta
    ) -> None:
        self.sessions = sessions
        self.holder = holder
        self.clock = clock
        self.ttl = ttl
        bind = sessions.kw["bind"]
        self.engine = bind
        self.on_postgresql = bind.dialect.name == "postgresql"
        self._connection: Connection | None = None

    def acquire(self) -> bool:
        """Take the lock, or renew it if held; False while another process holds it."""
        if self.on_postgresql:
            if self._connection is not None:
                try:
                    self._connection.execute(text("SELECT 1"))
                    return True
                except Exception:  # the server dropped us: the lock went with the connection
                    self._drop_connection()
            connection = self.engine.connect()
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}
            ).scalar_one()
            connection.commit()
            if got:
                self._connection = connection
                return True
            connection.close()
            return False
        with unit_of_work(self.sessions) as session:
            return gates.acquire_lease(
                session,
                name=SCHEDULER_LEASE,
                holder=self.holder,
                ttl=self.ttl,
                now=self.clock.now(),
            )

    def release(self) -> None:
        if self.on_postgresql:
            if self._connection is not None:
                try:
                    self._connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY}
                    )
                    self._connection.commit()
                finally:
                    self._drop_connection()
            return
        with unit_of_work(self.sessions) as session:
            gates.release_lease(session, name=SCHEDULER_LEASE, holder=self.holder)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


class DispatchScheduler:
    """APScheduler with the sweep and the drill schedules, active only while holding the lock."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        profile: Profile,
        zone: ZoneInfo,
        clock: Clock | None = None,
        sweep_seconds: int = SWEEP_SECONDS,
        holder: str | None = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> None:
        self.sessions = sessions
        self.retention = retention
        self.profile = profile
        self.zone = zone
        self.clock = clock or SystemClock()
        self.sweep_seconds = sweep_seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lock = SchedulerLock(
            sessions,
            holder=self.holder,
            clock=self.clock,
            ttl=timedelta(seconds=max(30, 3 * sweep_seconds)),
        )
        self.scheduler = BackgroundScheduler(timezone=zone, job_defaults=JOB_DEFAULTS)

    @property
    def active(self) -> bool:
        return bool(self.scheduler.running)

    def tick(self) -> bool:
        """Take (or keep) the lock and start jobs, or stand by; call every few seconds."""
        if self.lock.acquire():
            if not self.scheduler.running:
                self._add_jobs()
                self.scheduler.start()
                log.info("scheduler %s active", self.holder)
            return True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            self.scheduler = BackgroundScheduler(timezone=self.zone, job_defaults=JOB_DEFAULTS)
            log.warning("scheduler %s lost the lock; standing by", self.holder)
        return False

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.lock.release()

    def _add_jobs(self) -> None:
        self.scheduler.add_job(
            self.run_sweep,
            "interval",
            seconds=self.sweep_seconds,
            id="sweep",
            replace_existing=True,
            misfire_grace_time=self.sweep_seconds,
            coalesce=True,
        )
        self.scheduler.add_job(
            self.load_schedules, "interval", seconds=60, id="reload", replace_existing=True
        )
        self.load_schedules()

    def load_schedules(self) -> None:
        """One cron job per enabled drill schedule (rows are the truth; jobs follow them)."""
        with unit_of_work(self.sessions) as session:
            rows = session.execute(
                select(DrillSchedule.id, DrillSchedule.cron).where(DrillSchedule.enabled.is_(True))
            ).all()
        wanted = {f"drill-{row.id}": row for row in rows}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("drill-") and job.id not in wanted:
                job.remove()
        for job_id, row in wanted.items():
            if self.scheduler.get_job(job_id) is None:
                self.scheduler.add_job(
                    self.run_drill,
                    parse_cron(row.cron, self.zone),
                    args=[row.id],
                    id=job_id,
                    misfire_grace_time=MISFIRE_GRACE_SECONDS,
                    coalesce=True,
                )

    def run_sweep(self) -> dict[str, int]:
        return sweep_all(
            self.sessions,
            profile=self.profile,
            zone=self.zone,
            now=self.clock.now(),
            retention=self.retention,
        )

    def run_drill(self, schedule_id: int) -> int | None:
        with unit_of_work(self.sessions) as session:
            return fire_drill(
                session,
                schedule_id=schedule_id,
                profile=self.profile,
                zone=self.zone,
                now=self.clock.now(),
            )
