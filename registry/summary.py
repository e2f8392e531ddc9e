"""The registry at a glance, per zone: who may need help (and with what), who can help (and with
which skills), how people are reached, minors and groups.

Counts only: no name, phone or individual need leaves this module, so reading it is not a read
of health data. Opted-out and erased people are not counted as reachable; the authority's totals
say how many there are.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from registry.db import utcnow
from registry.models import (
    NEED_FLAGS,
    Authority,
    Channel,
    Group,
    Person,
    PersonStatus,
    PhoneKind,
    ResidentNeeds,
    VolunteerProfile,
    Zone,
)
from registry.rules import ADULT_AGE

NO_ZONE = "-"
_REACHABLE = (PersonStatus.ACTIVE, PersonStatus.PAUSED)


@dataclass
class ZoneSummary:
    zone: str  # code, or "-" for people without a zone, or "*" for the total
    name: str
    people: int = 0
    residents: int = 0  # who may need help
    needs: dict[str, int] = field(default_factory=dict)  # need category -> residents
    volunteers: int = 0
    skills: dict[str, int] = field(default_factory=dict)
    telegram: int = 0
    sms: int = 0
    landline_only: int = 0  # a landline and no Telegram: reached through a buddy
    no_channel: int = 0  # no phone and no Telegram at all
    minors: int = 0
    groups: int = 0

    def add(self, other: ZoneSummary) -> None:
        for name in (
            "people",
            "residents",
            "volunteers",
            "telegram",
            "sms",
            "landline_only",
            "no_channel",
            "minors",
            "groups",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.needs, other.needs), (self.skills, other.skills)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count


@dataclass
class RegistrySummary:
    authority: str
    year: int
    zones: list[ZoneSummary]
    total: ZoneSummary
    opted_out: int
    erased: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def summarise(
    session: Session, *, authority: Authority, now: datetime | None = None
) -> RegistrySummary:
    year = (now or utcnow()).year
    zone_rows = session.scalars(
        select(Zone).where(Zone.authority_id == authority.id).order_by(Zone.id)
    ).all()
    zones: dict[int | None, ZoneSummary] = {z.id: ZoneSummary(z.code, z.name) for z in zone_rows}

    def zone_of(zone_id: int | None) -> ZoneSummary:
        if zone_id not in zones:
            zones[zone_id] = ZoneSummary(NO_ZONE, "")
        return zones[zone_id]

    reachable = (Person.authority_id == authority.id, Person.status.in_(_REACHABLE))

    def count_if(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    people = select(
        Person.zone_id,
        func.count(),
        count_if(Person.needs_help.is_(True)),
        count_if(Person.is_volunteer.is_(True)),
        count_if(Person.channel == Channel.TELEGRAM),
        count_if(Person.channel == Channel.SMS),
        count_if((Person.channel == Channel.NONE) & (Person.phone_kind == PhoneKind.LANDLINE)),
        count_if((Person.channel == Channel.NONE) & (Person.phone_kind != PhoneKind.LANDLINE)),
        count_if(Person.birth_year > year - ADULT_AGE),
    ).where(*reachable)
    for zone_id, *counts in session.execute(people.group_by(Person.zone_id)):
        summary = zone_of(zone_id)
        (
            summary.people,
            summary.residents,
            summary.volunteers,
            summary.telegram,
            summary.sms,
            summary.landline_only,
            summary.no_channel,
            summary.minors,
        ) = (int(c or 0) for c in counts)

    needs = select(
        Person.zone_id, *(count_if(getattr(ResidentNeeds, flag).is_(True)) for flag in NEED_FLAGS)
    ).join(ResidentNeeds, ResidentNeeds.person_id == Person.id)
    needs = needs.where(*reachable, Person.needs_help.is_(True)).group_by(Person.zone_id)
    for zone_id, *counts in session.execute(needs):
        zone_of(zone_id).needs = {
            flag: int(c or 0) for flag, c in zip(NEED_FLAGS, counts, strict=True) if c
        }

    skills: dict[int | None, Counter[str]] = {}
    query = (
        select(Person.zone_id, VolunteerProfile.skills)
        .join(VolunteerProfile, VolunteerProfile.person_id == Person.id)
        .where(*reachable, Person.is_volunteer.is_(True))
    )
    for zone_id, codes in session.execute(query):
        skills.setdefault(zone_id, Counter()).update(codes or [])
    for zone_id, counter in skills.items():
        zone_of(zone_id).skills = dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))

    groups = select(Group.zone_id, func.count()).where(Group.authority_id == authority.id)
    for zone_id, count in session.execute(groups.group_by(Group.zone_id)):
        zone_of(zone_id).groups = int(count)

    statuses = dict(
        session.execute(
            select(Person.status, func.count())
            .where(Person.authority_id == authority.id)
            .group_by(Person.status)
        ).all()
    )
    ordered = [z for z in zones.values() if z.zone != NO_ZONE]
    ordered += [z for z in zones.values() if z.zone == NO_ZONE]
    total = ZoneSummary("*", authority.name)
    for summary in ordered:
        total.add(summary)
    total.skills = dict(sorted(total.skills.items(), key=lambda kv: (-kv[1], kv[0])))
    return RegistrySummary(
        authority=authority.code,
        year=year,
        zones=ordered,
        total=total,
        opted_out=int(statuses.get(PersonStatus.OPTED_OUT, 0)),
        erased=int(statuses.get(PersonStatus.ERASED, 0)),
    )
