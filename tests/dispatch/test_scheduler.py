"""One active scheduler across processes, its job settings, and drills that respect quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.profile import Profile
from config.settings import Settings
from dispatch.campaigns import Audience, CampaignError
from dispatch.clock import ManualClock
from dispatch.models import Campaign, CampaignMode, DrillSchedule, OutboxMessage
from dispatch.scheduler import (
    MISFIRE_GRACE_SECONDS,
    DispatchScheduler,
    add_drill_schedule,
    fire_drill,
    sweep,
)
from registry.models import Authority
from tests.dispatch.conftest import MakePerson

pytestmark = pytest.mark.db


def make(
    sessions: sessionmaker[Session],
    profile: Profile,
    settings: Settings,
    clock: ManualClock,
    name: str,
) -> DispatchScheduler:
    return DispatchScheduler(
        sessions=sessions, profile=profile, zone=settings.zone_info, clock=clock, holder=name
    )


def test_exactly_one_scheduler_is_active_and_a_standby_takes_over(
    sessions: sessionmaker[Session],
    authority: Authority,
    profile: Profile,
    settings: Settings,
    clock: ManualClock,
) -> None:
    first = make(sessions, profile, settings, clock, "first")
    second = make(sessions, profile, settings, clock, "second")
    try:
        assert first.tick() and first.active
        assert not second.tick() and not second.active
        assert first.tick()  # renewing keeps it
        first.stop()
        assert second.tick() and second.active
        jobs = {job.id: job for job in second.scheduler.get_jobs()}
        assert set(jobs) == {"sweep", "reload"}
        for job in jobs.values():
            assert job.coalesce is True
            assert job.max_instances == 1
        assert jobs["reload"].misfire_grace_time == MISFIRE_GRACE_SECONDS
        assert jobs["sweep"].misfire_grace_time == second.sweep_seconds
    finally:
        first.stop()
        second.stop()


def test_a_dead_sqlite_scheduler_is_replaced_when_its_lease_runs_out(
    sessions: sessionmaker[Session],
    authority: Authority,
    profile: Profile,
    settings: Settings,
    clock: ManualClock,
    db_kind: str,
) -> None:
    if db_kind != "sqlite":
        pytest.skip("PostgreSQL frees the advisory lock when the holder's connection drops")
    first = make(sessions, profile, settings, clock, "first")
    second = make(sessions, profile, settings, clock, "second")
    try:
        assert first.tick()
        first.scheduler.shutdown(wait=False)  # it dies: no more heartbeats
        assert not second.tick()
        clock.advance(first.lock.ttl.total_seconds() + 1)
        assert second.tick()
    finally:
        second.stop()


def test_drill_jobs_follow_the_schedule_rows(
    sessions: sessionmaker[Session],
    authority: Authority,
    profile: Profile,
    settings: Settings,
    clock: ManualClock,
) -> None:
    with sessions() as session:
        schedule = add_drill_schedule(
            session,
            authority=authority,
            cron="0 10 * * 0",
            audience=Audience(),
            zone=settings.zone_info,
            now=clock.now(),
        )
        session.commit()
        with pytest.raises(CampaignError, match="crontab"):
            add_drill_schedule(
                session,
                authority=authority,
                cron="every sunday",
                audience=Audience(),
                zone=settings.zone_info,
                now=clock.now(),
            )
    scheduler = make(sessions, profile, settings, clock, "only")
    try:
        assert scheduler.tick()
        job = scheduler.scheduler.get_job(f"drill-{schedule.id}")
        assert job is not None
        assert job.coalesce is True and job.misfire_grace_time == MISFIRE_GRACE_SECONDS
        # Crontab weekday 0 is Sunday (APScheduler 3 alone would read it as Monday).
        saturday = datetime(2026, 11, 21, 12, 0, tzinfo=settings.zone_info)
        next_fire = job.trigger.get_next_fire_time(None, saturday)
        assert next_fire == datetime(2026, 11, 22, 10, 0, tzinfo=settings.zone_info)
        with sessions() as session:
            stored = session.get(DrillSchedule, schedule.id)
            assert stored is not None
            stored.enabled = False
            session.commit()
        scheduler.load_schedules()
        assert scheduler.scheduler.get_job(f"drill-{schedule.id}") is None
    finally:
        scheduler.stop()


def test_a_drill_due_in_quiet_hours_waits_for_the_morning_and_starts_once(
    sessions: sessionmaker[Session],
    authority: Authority,
    profile: Profile,
    settings: Settings,
    make_person: MakePerson,
) -> None:
    make_person(needs=("lives_alone",))
    zone = settings.zone_info
    night = datetime(2026, 11, 22, 23, 30, tzinfo=zone).astimezone(UTC)  # quiet: 22:00–07:00
    with sessions() as session:
        schedule = add_drill_schedule(
            session,
            authority=authority,
            cron="30 23 * * *",
            audience=Audience(),
            zone=zone,
            now=night,
        )
        session.commit()
        assert (
            fire_drill(session, schedule_id=schedule.id, profile=profile, zone=zone, now=night)
            is None
        )
        session.commit()
        assert schedule.pending_since == night
        early = datetime(2026, 11, 23, 6, 59, tzinfo=zone).astimezone(UTC)
        assert sweep(session, profile=profile, zone=zone, now=early)["drills"] == 0
        morning = datetime(2026, 11, 23, 7, 0, tzinfo=zone).astimezone(UTC)
        assert sweep(session, profile=profile, zone=zone, now=morning)["drills"] == 1
        session.commit()
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.mode == CampaignMode.DRILL and campaign.started_at == morning
        assert campaign.started_by == f"schedule:{schedule.id}"
        # The same fire delivered twice (a failover mid-run) does not start a second drill.
        later = morning + timedelta(minutes=1)
        assert (
            fire_drill(session, schedule_id=schedule.id, profile=profile, zone=zone, now=later)
            is None
        )
        assert len(session.scalars(select(Campaign)).all()) == 1
        assert len(session.scalars(select(OutboxMessage)).all()) == 1


@pytest.mark.parametrize(
    ("cron", "weekday"),
    [
        ("0 9 * * 0", "Sunday"),
        ("0 9 * * 7", "Sunday"),
        ("0 9 * * 5", "Friday"),
        ("0 9 * * 1-5", "Monday"),
    ],
)
def test_crontab_weekdays_are_read_as_cron_reads_them(cron: str, weekday: str) -> None:
    from zoneinfo import ZoneInfo

    from dispatch.scheduler import parse_cron

    zone = ZoneInfo("Asia/Jerusalem")
    saturday_noon = datetime(2026, 11, 21, 12, 0, tzinfo=zone)
    fire = parse_cron(cron, zone).get_next_fire_time(None, saturday_noon)
    assert fire is not None and fire.strftime("%A") == weekday
