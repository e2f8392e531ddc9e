"""The confirmation's numbers on a small town whose every count is known."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.languages import Language
from config.profile import Profile
from config.settings import Settings
from dispatch.campaigns import Audience, checkin_message, marked
from dispatch.estimate import Estimate, estimate_campaign
from dispatch.models import CampaignKind, CampaignMode
from dispatch.segments import count_segments
from registry.models import Authority, Channel
from registry.profile_sync import Directory
from tests.dispatch.conftest import MakePerson

NOON = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # 12:00 in Israel
EVERYONE = Audience()
NIGHT = datetime(2026, 11, 22, 22, 30, tzinfo=UTC)  # 00:30 in Israel


@pytest.fixture
def town(make_person: MakePerson, directory: Directory, authority: Authority) -> None:
    center = directory.zone(authority, "kt-center")
    north = directory.zone(authority, "kt-north")
    assert center is not None and north is not None
    for _ in range(3):  # Telegram, Hebrew
        make_person(zone_id=center.id, needs_help=True)
    for _ in range(2):  # SMS only, English
        make_person(zone_id=north.id, telegram=False, language=Language.EN, name="Dana Levi")
    make_person(zone_id=north.id, telegram=False, sms=False)  # nothing to message
    make_person(zone_id=north.id, telegram=False, landline=True)  # a landline: no channel


def _estimate(
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    profile: Profile,
    *,
    audience: Audience = EVERYONE,
    kind: CampaignKind = CampaignKind.CHECKIN,
    mode: CampaignMode = CampaignMode.DRILL,
    now: datetime = NOON,
    text: str | None = None,
) -> Estimate:
    settings = settings.model_copy(
        update={"telegram_rate_per_second": 3.0, "sms_rate_per_second": 1.0}
    )
    with sessions() as session:
        return estimate_campaign(
            session,
            authority=session.merge(authority),
            audience=audience,
            kind=kind,
            mode=mode,
            settings=settings,
            now=now,
            text=text,
            profile=profile,
        )


def test_counts_people_zones_channels_segments_and_time(
    town: None,
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    profile: Profile,
) -> None:
    estimate = _estimate(sessions, authority, settings, profile)
    assert estimate.recipients == 7
    assert estimate.zones == {"kt-center": 3, "kt-north": 4}
    assert (estimate.telegram, estimate.sms, estimate.no_channel) == (3, 2, 2)
    text, _ = checkin_message(
        language="en", name="Dana", campaign_id=0, mode=CampaignMode.DRILL, channel=Channel.SMS
    )
    assert estimate.sms_segments == 2 * count_segments(text)
    assert estimate.seconds == pytest.approx(2.0)  # 2 SMS at 1/s; 3 Telegram at 3/s take 1 s
    assert estimate.per_language == {"en": 2, "he": 5}
    assert not estimate.quiet_hours


def test_narrowed_to_residents_in_one_zone(
    town: None,
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    profile: Profile,
) -> None:
    estimate = _estimate(
        sessions, authority, settings, profile, audience=Audience(residents_only=True)
    )
    assert estimate.recipients == 3
    assert estimate.zones == {"kt-center": 3}
    assert estimate.sms_segments == 0
    assert estimate.seconds == pytest.approx(1.0)


def test_an_announcement_costs_its_own_text(
    town: None,
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    profile: Profile,
) -> None:
    long_text = "Water is off until noon. " * 10
    estimate = _estimate(
        sessions,
        authority,
        settings,
        profile,
        kind=CampaignKind.ANNOUNCEMENT,
        mode=CampaignMode.EMERGENCY,
        text=long_text,
    )
    assert estimate.sms_segments == 2 * count_segments(
        marked("en", CampaignMode.EMERGENCY, long_text.strip())
    )
    assert estimate.sms_segments > 2


def test_quiet_hours_concern_drills_only(
    town: None,
    sessions: sessionmaker[Session],
    authority: Authority,
    settings: Settings,
    profile: Profile,
) -> None:
    assert _estimate(sessions, authority, settings, profile, now=NIGHT).quiet_hours
    emergency = _estimate(
        sessions, authority, settings, profile, now=NIGHT, mode=CampaignMode.EMERGENCY
    )
    assert not emergency.quiet_hours
