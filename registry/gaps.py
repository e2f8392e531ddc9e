"""The map of needs, answers and gaps, per zone: what the officer and the console show.

Per zone: the **needs** (residents who may need help, by need), the **answers** (residents with a
confirmed or an offered buddy, roles filled, volunteers, the groups that serve the zone, the
community resources there and how many are available) and the **gaps** with their true causes,
in the officer's language: the assignment engine's dry run over the profile's policy
(``registry.assignment``) says, for each resident left without a buddy and each open role seat,
why (no volunteer in reach, none who speaks the language, all of them in roles of an earlier
tier...), and how many volunteers would close it.

Counts and codes only: no name, phone or individual need leaves this module.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from config.languages import Language
from config.profile import Profile
from registry.assignment.report import gap_lines
from registry.assignment.store import load_registry, plan
from registry.groups import list_groups
from registry.models import (
    ACTIVE_ASSIGNMENT,
    NEED_FLAGS,
    AssignmentStatus,
    Authority,
    BuddyAssignment,
    Person,
    PersonStatus,
    ResidentNeeds,
    RoleAssignment,
    Shelter,
    Zone,
)
from registry.resources import Resource, ResourceState

_REACHABLE = (PersonStatus.ACTIVE, PersonStatus.PAUSED)
TOWN_WIDE = None  # the zone key of people without a zone and of town-wide role seats


@dataclass
class Gap:
    kind: str  # "buddy" or "role"
    cause: str  # machine-readable cause (``tiers.Cause`` or ``roles.Unfilled``)
    count: int  # volunteers to recruit (buddies) or open seats (roles)
    text: str  # in the officer's language


@dataclass
class ZoneMap:
    zone: str | None  # code; None for the authority as a whole (no zone, town-wide roles)
    name: str
    residents: int = 0  # who may need help
    needs: dict[str, int] = field(default_factory=dict)  # need -> residents
    buddy_confirmed: int = 0  # residents whose primary buddy confirmed
    buddy_offered: int = 0  # residents whose primary buddy was offered and has not answered
    no_buddy: int = 0
    volunteers: int = 0
    roles_filled: dict[str, int] = field(default_factory=dict)  # role code -> seats held
    roles_confirmed: int = 0
    groups: list[str] = field(default_factory=list)  # names of the groups serving the zone
    resources: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> {total, available}
    gaps: list[Gap] = field(default_factory=list)

    @property
    def gap_count(self) -> int:
        return sum(g.count for g in self.gaps)


@dataclass
class NeedsMap:
    authority: str
    language: str
    zones: list[ZoneMap]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _count_if(condition: Any) -> Any:
    return func.sum(case((condition, 1), else_=0))


def needs_answers_gaps(
    session: Session,
    *,
    authority: Authority,
    profile: Profile,
    now: datetime,
    language: Language = Language.EN,
    zone: Zone | None = None,
) -> NeedsMap:
    """The map for the authority (or one of its zones). Reads counts and runs the assignment
    engine as a dry run (nothing is written)."""
    zones = list(
        session.scalars(select(Zone).where(Zone.authority_id == authority.id).order_by(Zone.code))
    )
    maps: dict[int | None, ZoneMap] = {
        z.id: ZoneMap(z.code, z.name_in(language)) for z in zones if zone is None or z.id == zone.id
    }
    if zone is None:
        maps[TOWN_WIDE] = ZoneMap(None, authority.name)

    def of(zone_id: int | None) -> ZoneMap | None:
        return maps.get(zone_id)

    reachable = (Person.authority_id == authority.id, Person.status.in_(_REACHABLE))
    for zone_id, residents, volunteers in session.execute(
        select(
            Person.zone_id,
            _count_if(Person.needs_help.is_(True)),
            _count_if(Person.is_volunteer.is_(True)),
        )
        .where(*reachable)
        .group_by(Person.zone_id)
    ):
        row = of(zone_id)
        if row is not None:
            row.residents, row.volunteers = int(residents or 0), int(volunteers or 0)
    flags = [getattr(ResidentNeeds, flag) for flag in NEED_FLAGS]
    for zone_id, *counts in session.execute(
        select(Person.zone_id, *(_count_if(flag.is_(True)) for flag in flags))
        .join(ResidentNeeds, ResidentNeeds.person_id == Person.id)
        .where(*reachable, Person.needs_help.is_(True))
        .group_by(Person.zone_id)
    ):
        row = of(zone_id)
        if row is not None:
            row.needs = {flag: int(n) for flag, n in zip(NEED_FLAGS, counts, strict=True) if n}

    buddy_state: dict[int | None, Counter[str]] = defaultdict(Counter)
    for zone_id, buddy_status, count in session.execute(
        select(Person.zone_id, BuddyAssignment.status, func.count())
        .join(BuddyAssignment, BuddyAssignment.resident_id == Person.id)
        .where(
            *reachable,
            BuddyAssignment.rank == 1,
            BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
        )
        .group_by(Person.zone_id, BuddyAssignment.status)
    ):
        buddy_state[zone_id][str(buddy_status)] += count
    for zone_id, row in maps.items():
        state = buddy_state.get(zone_id, Counter())
        row.buddy_confirmed = state[AssignmentStatus.CONFIRMED.value]
        row.buddy_offered = state[AssignmentStatus.PROPOSED.value]
        row.no_buddy = max(0, row.residents - row.buddy_confirmed - row.buddy_offered)

    shelter_zone: dict[int | None, int] = {
        shelter_id: zone_id
        for shelter_id, zone_id in session.execute(
            select(Shelter.id, Shelter.zone_id).where(Shelter.authority_id == authority.id)
        )
    }
    for role_zone, shelter_id, role_code, status, count in session.execute(
        select(
            RoleAssignment.zone_id,
            RoleAssignment.shelter_id,
            RoleAssignment.role_code,
            RoleAssignment.status,
            func.count(),
        )
        .where(
            RoleAssignment.authority_id == authority.id,
            RoleAssignment.status.in_(ACTIVE_ASSIGNMENT),
        )
        .group_by(
            RoleAssignment.zone_id,
            RoleAssignment.shelter_id,
            RoleAssignment.role_code,
            RoleAssignment.status,
        )
    ):
        row = of(role_zone if role_zone is not None else shelter_zone.get(shelter_id))
        if row is None:
            continue
        row.roles_filled[role_code] = row.roles_filled.get(role_code, 0) + count
        if str(status) == AssignmentStatus.CONFIRMED.value:
            row.roles_confirmed += count

    for summary in list_groups(session, authority=authority):
        served = summary.zones
        targets = [of(z.id) for z in zones if z.code in served] if served else [of(TOWN_WIDE)]
        for target in targets:
            if target is not None:
                target.groups.append(summary.group.name)

    for zone_id, kind, resource_state, count in session.execute(
        select(Resource.zone_id, Resource.kind, Resource.state, func.count())
        .where(Resource.authority_id == authority.id)
        .group_by(Resource.zone_id, Resource.kind, Resource.state)
    ):
        row = of(zone_id)
        if row is None:
            continue
        entry = row.resources.setdefault(str(kind), {"total": 0, "available": 0})
        entry["total"] += count
        if str(resource_state) == ResourceState.AVAILABLE.value:
            entry["available"] += count

    registry = load_registry(session, authority=authority, profile=profile, now=now)
    result = plan(registry, profile=profile, now=now)
    shelters = {
        row.id: row.name
        for row in session.execute(
            select(Shelter.id, Shelter.name).where(Shelter.authority_id == authority.id)
        )
    }
    by_code = {z.code: z.id for z in zones}
    for line in gap_lines(
        buddy_gaps=result.buddy_gaps,
        open_seats=result.roles.open_seats,
        zone_codes=result.zone_codes,
        shelter_names=shelters,
        tier_of_role=result.tier_of_role,
        profile=profile,
        authority=profile.authority(authority.code),
        language=language,
    ):
        row = of(by_code.get(line.zone) if line.zone else TOWN_WIDE)
        if row is not None:
            row.gaps.append(Gap(line.kind, line.cause, line.count, line.text))

    ordered = [maps[z.id] for z in zones if z.id in maps]
    if TOWN_WIDE in maps:
        town = maps[TOWN_WIDE]
        if town.residents or town.volunteers or town.gaps or town.groups or town.roles_filled:
            ordered.append(town)
    return NeedsMap(authority.code, language.value, ordered)
