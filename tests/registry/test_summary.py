from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.profile import Profile
from fakes.town import generate_town, load_town
from registry.models import NEED_FLAGS, Channel, Person, PhoneKind
from registry.people import erase, opt_out
from registry.profile_sync import Directory
from registry.summary import summarise

YEAR = 2026


def test_summary_counts_what_the_town_holds(
    session: Session, directory: Directory, profile: Profile
) -> None:
    town = generate_town(profile, size=900, seed=4, year=YEAR)
    load_town(session, town, directory)
    session.commit()
    authority = directory.authorities["kiryat-tamar"]
    people = town.in_authority("kiryat-tamar")

    summary = summarise(session, authority=authority, now=_year(YEAR))
    total = summary.total
    assert total.people == len(people)
    assert total.residents == sum(p.needs_help for p in people)
    assert total.volunteers == sum(p.is_volunteer for p in people)
    assert total.telegram == sum(p.channel == Channel.TELEGRAM for p in people)
    assert total.sms == sum(p.channel == Channel.SMS for p in people)
    assert total.landline_only == sum(p.phone_kind == PhoneKind.LANDLINE for p in people)
    assert total.minors == sum(town.age(p) < 18 for p in people)
    assert total.groups == sum(g.authority == "kiryat-tamar" for g in town.groups)
    for flag in NEED_FLAGS:
        expected = sum(bool(p.needs and getattr(p.needs, flag)) for p in people)
        assert total.needs.get(flag, 0) == expected, flag
    first_aid = sum(bool(p.volunteer and "first_aid" in p.volunteer.skills) for p in people)
    assert total.skills["first_aid"] == first_aid

    centre = next(z for z in summary.zones if z.zone == "kt-center")
    assert centre.people == sum(p.zone == "kt-center" for p in people)
    assert {z.zone for z in summary.zones} >= {z.code for z in profile.authorities[0].zones}


def test_opted_out_and_erased_people_are_not_counted_as_reachable(
    session: Session, directory: Directory, profile: Profile
) -> None:
    town = generate_town(profile, size=100, seed=4, year=YEAR, authorities=["kiryat-tamar"])
    load_town(session, town, directory)
    session.commit()
    authority = directory.authorities["kiryat-tamar"]
    first, second = session.scalars(select(Person).order_by(Person.id).limit(2)).all()
    opt_out(session, first, actor="test")
    erase(session, second, actor="test")
    session.commit()

    summary = summarise(session, authority=authority, now=_year(YEAR))
    assert summary.total.people == 98
    assert (summary.opted_out, summary.erased) == (1, 1)
    assert summary.as_json()["total"]["people"] == 98


def _year(year: int) -> datetime:
    return datetime(year, 6, 1, tzinfo=UTC)
