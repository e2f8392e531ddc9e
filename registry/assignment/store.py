"""The assignment engine's thin edge: load the registry in bulk, write back only what changed.

Loading uses plain column selects (no ORM object per person): a town of 100,000 people is a few
result sets. Writing touches only new, re-ranked and released rows, in bulk statements, records the
run and each change (the dispatcher's list of volunteers to ask), and one audit entry. Like every
service here, nothing commits: the unit of work does.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, false, func, or_, select, update
from sqlalchemy.orm import Session

from config.profile import Profile
from registry import audit
from registry.assignment.buddies import (
    Buddy,
    BuddyChange,
    BuddyPlan,
    BuddyRules,
    Coverage,
    Resident,
    Volunteer,
    plan_buddies,
)
from registry.assignment.models import AssignmentChange, AssignmentRun
from registry.assignment.roles import (
    Quota,
    RoleHolder,
    RolePlan,
    RoleRules,
    RoleVolunteer,
    Scope,
    plan_roles,
    seat_cost,
)
from registry.assignment.tiers import BuddyGap, TierResult, check_policy, plan_policy
from registry.bulk import bulk_insert
from registry.db import utcnow
from registry.errors import RegistryError
from registry.models import (
    ACTIVE_ASSIGNMENT,
    NEED_FLAGS,
    AssignmentStatus,
    Authority,
    BuddyAssignment,
    Consent,
    ConsentKind,
    GroupMember,
    Person,
    PersonStatus,
    ResidentNeeds,
    RoleAssignment,
    Shelter,
    VolunteerProfile,
    Zone,
)
from registry.rules import ADULT_AGE, is_adult

_CHUNK = 5000  # ids per IN (...) list: well inside SQLite's and PostgreSQL's limits
_RANK_PARKING = 10  # a re-ranked row waits at rank + 10 so two rows can swap ranks
_RINGS_M = (250, 600)  # a declined pair is planned again looking this far first, then farther


@dataclass
class Registry:
    """What the engine needs from the database, as the core's plain dataclasses."""

    authority_id: int
    residents: list[Resident]
    volunteers: list[Volunteer]  # role_code filled in once roles are planned
    role_volunteers: list[RoleVolunteer]
    quotas: list[Quota]
    buddies: list[Buddy]
    buddy_row: dict[tuple[int, int], int]  # (resident, volunteer) -> buddy_assignment.id
    declined_buddies: set[tuple[int, int]]
    roles: list[RoleHolder]
    role_row: dict[tuple[int, str, int | None, int | None], int]
    declined_roles: set[tuple[int, str]]
    zone_codes: dict[int, str]


@dataclass(frozen=True)
class Change:
    """One change as the dispatcher sees it: ask (or tell) this volunteer about this row."""

    change_id: int
    kind: str  # "buddy", "role"
    action: str  # "new", "rank", "released"
    assignment_id: int
    volunteer_id: int


@dataclass
class AssignmentResult:
    buddies: BuddyPlan
    roles: RolePlan
    zone_codes: dict[int, str]
    tiers: list[TierResult] = field(default_factory=list)
    buddy_gaps: list[BuddyGap] = field(default_factory=list)
    tier_of_resident: dict[int, int] = field(default_factory=dict)
    tier_of_role: dict[str, int] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    run_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Around:
    """Where a single seat is planned again: volunteers within ``reach_m`` of a point (a box a
    little wider than the circle, the solver keeps only those truly in reach) or in its zone
    (people without coordinates are matched by zone)."""

    lat: float | None
    lon: float | None
    zone_id: int | None
    reach_m: float
    year: int
    also: tuple[int, ...] = ()  # volunteers to read wherever they are (the resident's buddies)

    def condition(self) -> ColumnElement[bool]:
        """Volunteers who could take the seat (see ``buddies.not_buddy``: adult, available, no
        role) near enough and with room for one more resident; and ``also``."""
        near = self.near()
        # Not correlated: each set is read once, not once a person (seconds on PostgreSQL).
        available = select(VolunteerProfile.person_id).where(
            VolunteerProfile.available_emergency.is_(True)
        )
        full = (
            select(VolunteerProfile.person_id)
            .join(BuddyAssignment, BuddyAssignment.volunteer_id == VolunteerProfile.person_id)
            .where(BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT))
            .group_by(VolunteerProfile.person_id, VolunteerProfile.checkin_capacity)
            .having(func.count() >= VolunteerProfile.checkin_capacity)
        )
        holders = select(RoleAssignment.person_id).where(
            RoleAssignment.status.in_(ACTIVE_ASSIGNMENT)
        )
        adult = Person.birth_year <= self.year - ADULT_AGE
        free = and_(
            near,
            adult,
            Person.id.in_(available),
            Person.id.not_in(full),
            Person.id.not_in(holders),
        )
        return or_(free, Person.id.in_(self.also)) if self.also else free

    def near(self) -> ColumnElement[bool]:
        alike: list[ColumnElement[bool]] = []
        if self.zone_id is not None:
            zone = Person.zone_id == self.zone_id
            # Without coordinates on either side, the zone is all there is to go by.
            alike.append(zone if self.lat is None else and_(zone, Person.lat.is_(None)))
        if self.lat is not None and self.lon is not None:
            dlat = self.reach_m * 1.01 / 111_195
            dlon = dlat / max(math.cos(math.radians(self.lat)), 0.01)
            alike.append(
                and_(
                    Person.lat.between(self.lat - dlat, self.lat + dlat),
                    Person.lon.between(self.lon - dlon, self.lon + dlon),
                )
            )
        return or_(false(), *alike)


def load_registry(
    session: Session,
    *,
    authority: Authority,
    profile: Profile,
    now: datetime,
    resident_ids: Iterable[int] | None = None,
    volunteers_where: ColumnElement[bool] | None = None,
) -> Registry:
    """Everyone the engine decides about, in a handful of bulk selects.

    Residents and volunteers are people who are active or paused (a pause stops routine messages,
    not emergencies). ``resident_ids`` narrows the residents (used to reassign after a decline);
    ``volunteers_where`` narrows the volunteers to those who could take the seat (one seat planned
    again in a large town reads a few hundred people, not all of them: see :class:`Around`).
    """
    check_policy(profile)
    live = (PersonStatus.ACTIVE, PersonStatus.PAUSED)
    wanted = None if resident_ids is None else set(resident_ids)
    year = now.year

    query = select(
        Person.id, Person.zone_id, Person.lat, Person.lon, Person.language,
        Person.birth_year, Person.is_volunteer, Person.needs_help,
    ).where(Person.authority_id == authority.id, Person.status.in_(live))  # fmt: skip
    if wanted is None:
        query = query.where(or_(Person.needs_help.is_(True), Person.is_volunteer.is_(True)))
    else:
        volunteers_wanted: ColumnElement[bool] = Person.is_volunteer.is_(True)
        if volunteers_where is not None:
            volunteers_wanted = and_(volunteers_wanted, volunteers_where)
        query = query.where(or_(Person.id.in_(sorted(wanted)), volunteers_wanted))
    people = session.execute(query).all()
    # Narrowed: the other selects read only these people (else: the whole authority).
    chosen: Any = None
    if wanted is not None:
        ids = [p.id for p in people]
        # A few ids as a list; for many, the whole authority is read as in a full run.
        chosen = ids if len(ids) <= _CHUNK else None

    def of_these(column: Any) -> Any:
        if chosen is None:
            return Person.authority_id == authority.id
        return column.in_(chosen)

    needs_columns = [getattr(ResidentNeeds, flag) for flag in NEED_FLAGS]
    needs = {
        row[0]: frozenset(flag for flag, on in zip(NEED_FLAGS, row[1:], strict=True) if on)
        for row in session.execute(
            select(ResidentNeeds.person_id, *needs_columns)
            .join(Person, Person.id == ResidentNeeds.person_id)
            .where(of_these(ResidentNeeds.person_id))
        )
    }
    profiles = {
        row.person_id: row
        for row in session.execute(
            select(
                VolunteerProfile.person_id, VolunteerProfile.skills, VolunteerProfile.languages,
                VolunteerProfile.available_emergency, VolunteerProfile.checkin_capacity,
            )
            .join(Person, Person.id == VolunteerProfile.person_id)
            .where(of_these(VolunteerProfile.person_id))
        )
    }  # fmt: skip
    guardian = set(
        session.scalars(
            select(Consent.person_id)
            .join(Person, Person.id == Consent.person_id)
            .where(
                of_these(Consent.person_id),
                Consent.kind == ConsentKind.GUARDIAN,
                Consent.withdrawn_at.is_(None),
            )
        )
    )
    members_query = (
        select(GroupMember.group_id, GroupMember.person_id, Person.birth_year)
        .join(Person, Person.id == GroupMember.person_id)
        .where(Person.authority_id == authority.id, Person.status.in_(live))
    )
    if chosen is not None:  # only the groups of the people read (their ids: a plan per id list)
        theirs = sorted(
            set(
                session.scalars(
                    select(GroupMember.group_id).where(GroupMember.person_id.in_(chosen))
                )
            )
        )
        members_query = members_query.where(GroupMember.group_id.in_(theirs))
    members = session.execute(members_query).all()
    groups_with_adult = {g for g, _, born in members if is_adult(born, year)}
    in_adult_group = {p for g, p, _ in members if g in groups_with_adult}

    residents: list[Resident] = []
    volunteers: list[Volunteer] = []
    role_volunteers: list[RoleVolunteer] = []
    for p in people:
        if p.needs_help and (wanted is None or p.id in wanted):
            residents.append(
                Resident(
                    id=p.id, zone_id=p.zone_id, lat=p.lat, lon=p.lon, language=str(p.language),
                    needs=needs.get(p.id, frozenset()), birth_year=p.birth_year,
                )
            )  # fmt: skip
        vp = profiles.get(p.id)
        if p.is_volunteer and vp is not None:
            volunteers.append(
                Volunteer(
                    id=p.id, zone_id=p.zone_id, lat=p.lat, lon=p.lon, language=str(p.language),
                    languages=frozenset(vp.languages or ()), capacity=vp.checkin_capacity,
                    birth_year=p.birth_year, available=vp.available_emergency,
                )
            )  # fmt: skip
    buddy_rows = session.execute(
        select(
            BuddyAssignment.id, BuddyAssignment.resident_id, BuddyAssignment.volunteer_id,
            BuddyAssignment.rank, BuddyAssignment.pinned, BuddyAssignment.status,
            BuddyAssignment.distance_m,
        )
        .join(Person, Person.id == BuddyAssignment.resident_id)
        .where(
            Person.authority_id == authority.id if chosen is None else or_(
                BuddyAssignment.resident_id.in_(chosen), BuddyAssignment.volunteer_id.in_(chosen)
            ),
            BuddyAssignment.status.in_((*ACTIVE_ASSIGNMENT, AssignmentStatus.DECLINED)),
        )
    ).all()  # fmt: skip
    buddies = [
        Buddy(r.resident_id, r.volunteer_id, r.rank, r.pinned, r.distance_m)
        for r in buddy_rows
        if r.status != AssignmentStatus.DECLINED
    ]
    load: dict[int, int] = defaultdict(int)
    for b in buddies:
        load[b.volunteer_id] += 1
    for p in people:
        vp = profiles.get(p.id)
        if p.is_volunteer and vp is not None:
            role_volunteers.append(
                RoleVolunteer(
                    id=p.id, zone_id=p.zone_id, lat=p.lat, lon=p.lon, birth_year=p.birth_year,
                    skills=frozenset(vp.skills or ()), available=vp.available_emergency,
                    guardian_consent=p.id in guardian, adult_in_group=p.id in in_adult_group,
                    buddies=load.get(p.id, 0),
                )
            )  # fmt: skip
    role_rows = session.execute(
        select(
            RoleAssignment.id, RoleAssignment.person_id, RoleAssignment.role_code,
            RoleAssignment.zone_id, RoleAssignment.shelter_id, RoleAssignment.pinned,
            RoleAssignment.status,
        ).where(
            RoleAssignment.authority_id == authority.id,
            RoleAssignment.status.in_((*ACTIVE_ASSIGNMENT, AssignmentStatus.DECLINED)),
        )
    ).all()  # fmt: skip
    zones = session.execute(
        select(Zone.id, Zone.code, Zone.lat, Zone.lon).where(Zone.authority_id == authority.id)
    ).all()
    shelters = session.execute(
        select(Shelter.id, Shelter.code, Shelter.zone_id, Shelter.lat, Shelter.lon).where(
            Shelter.authority_id == authority.id
        )
    ).all()
    return Registry(
        authority_id=authority.id,
        residents=residents,
        volunteers=volunteers,
        role_volunteers=role_volunteers,
        quotas=quotas_for(profile, zones, shelters),
        buddies=[b for b in buddies if wanted is None or b.resident_id in wanted],
        buddy_row={
            (r.resident_id, r.volunteer_id): r.id
            for r in buddy_rows
            if r.status != AssignmentStatus.DECLINED
        },
        declined_buddies={
            (r.resident_id, r.volunteer_id)
            for r in buddy_rows
            if r.status == AssignmentStatus.DECLINED
        },
        roles=[
            RoleHolder(r.person_id, r.role_code, r.zone_id, r.shelter_id, r.pinned)
            for r in role_rows
            if r.status != AssignmentStatus.DECLINED
        ],
        role_row={
            (r.person_id, r.role_code, r.zone_id, r.shelter_id): r.id
            for r in role_rows
            if r.status != AssignmentStatus.DECLINED
        },
        declined_roles={
            (r.person_id, r.role_code) for r in role_rows if r.status == AssignmentStatus.DECLINED
        },
        zone_codes={z.id: z.code for z in zones},
    )


def quotas_for(profile: Profile, zones: Sequence[Any], shelters: Sequence[Any]) -> list[Quota]:
    """The seats the profile's role catalogue asks for in this authority's zones and shelters.

    A role without a quota (the buddy role) is not a seat: buddies are the buddy plan's business.
    """
    quotas: list[Quota] = []
    for role in profile.roles:
        common: dict[str, Any] = {
            "role_code": role.code,
            "required_skills": frozenset(role.required_skills),
            "min_age": role.min_age,
            "home_visits": role.home_visits,
        }
        if role.quota_per_zone:
            quotas.extend(
                Quota(scope=Scope.ZONE, seats=role.quota_per_zone, zone_id=z.id, lat=z.lat, lon=z.lon, **common)
                for z in zones
            )  # fmt: skip
        elif role.quota_per_shelter:
            quotas.extend(
                Quota(
                    scope=Scope.SHELTER, seats=role.quota_per_shelter, zone_id=s.zone_id,
                    shelter_id=s.id, lat=s.lat, lon=s.lon, **common,
                )
                for s in shelters
            )  # fmt: skip
        elif role.quota_total:
            quotas.append(Quota(scope=Scope.TOTAL, seats=role.quota_total, **common))
    return quotas


def plan(
    registry: Registry, *, profile: Profile, now: datetime, prove_walking: bool = False
) -> AssignmentResult:
    """The profile's tiers in order (see :mod:`registry.assignment.tiers`).

    ``prove_walking``: the buddies' walking proven least over every pair within reach at any
    size (see ``BuddyRules.prove_walking``), at some seconds more in a large town.
    """
    policy = plan_policy(
        registry.residents,
        registry.volunteers,
        registry.role_volunteers,
        registry.quotas,
        profile=profile,
        current_buddies=registry.buddies,
        declined_buddies=registry.declined_buddies,
        current_roles=registry.roles,
        declined_roles=registry.declined_roles,
        year=now.year,
        prove_walking=prove_walking,
    )
    result = AssignmentResult(
        buddies=policy.buddies,
        roles=policy.roles,
        zone_codes=registry.zone_codes,
        tiers=policy.tiers,
        buddy_gaps=policy.buddy_gaps,
        tier_of_resident=policy.tier_of_resident,
        tier_of_role=policy.tier_of_role,
    )
    result.timings = dict(policy.timings)
    return result


def write(
    session: Session,
    *,
    registry: Registry,
    result: AssignmentResult,
    actor: str,
    trigger: str,
    now: datetime,
) -> list[Change]:
    """Apply the plan's changes (only those), record the run and its changes, audit once."""
    run = AssignmentRun(
        authority_id=registry.authority_id,
        at=now,
        actor=actor,
        trigger=trigger,
        summary=summary(result),
    )
    session.add(run)
    session.flush()
    change_rows: list[dict[str, Any]] = []
    change_rows += _write_roles(session, registry, result.roles, run.id, now)
    change_rows += _write_buddies(
        session, registry, result.buddies.changes, result.buddies, run.id, now
    )
    ids = bulk_insert(session, AssignmentChange, change_rows, return_ids=True)
    changes = [
        Change(
            i,
            str(row["kind"]),
            str(row["action"]),
            int(row["assignment_id"]),
            int(row["volunteer_id"]),
        )
        for i, row in zip(ids, change_rows, strict=True)
    ]
    counts: dict[str, int] = defaultdict(int)
    for c in changes:
        counts[f"{c.kind}_{c.action}"] += 1
    audit.record(session, actor=actor, action=f"assign.{trigger}", at=now, run_id=run.id, **counts)
    result.run_id = run.id
    result.changes = changes
    return changes


def _ids_update(session: Session, model: Any, ids: Sequence[int], **values: Any) -> None:
    for start in range(0, len(ids), _CHUNK):
        session.execute(
            update(model)
            .where(model.id.in_(ids[start : start + _CHUNK]))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def _write_buddies(
    session: Session,
    registry: Registry,
    changes: Sequence[BuddyChange],
    plan_: BuddyPlan,
    run_id: int,
    now: datetime,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    released = [c for c in changes if c.kind == "released"]
    ranked = [c for c in changes if c.kind == "rank"]
    new = [c for c in changes if c.kind == "new"]
    released_ids = [registry.buddy_row[(c.resident_id, c.volunteer_id)] for c in released]
    _ids_update(
        session, BuddyAssignment, released_ids,
        status=AssignmentStatus.RELEASED, pinned=False, updated_at=now,
    )  # fmt: skip
    rows += [
        _change_row(run_id, "buddy", "released", i, c.volunteer_id, c.reason)
        for i, c in zip(released_ids, released, strict=True)
    ]
    if ranked:
        ranked_ids = [registry.buddy_row[(c.resident_id, c.volunteer_id)] for c in ranked]
        # Park first, then set: two rows of one resident may swap primary and backup.
        for c, i in zip(ranked, ranked_ids, strict=True):
            session.execute(
                update(BuddyAssignment)
                .where(BuddyAssignment.id == i)
                .values(rank=c.rank + _RANK_PARKING)
                .execution_options(synchronize_session=False)
            )
        session.execute(
            update(BuddyAssignment).execution_options(synchronize_session=False),
            [
                {"id": i, "rank": c.rank, "status": AssignmentStatus.PROPOSED, "updated_at": now}
                for c, i in zip(ranked, ranked_ids, strict=True)
            ],
        )
        rows += [
            _change_row(run_id, "buddy", "rank", i, c.volunteer_id, None)
            for i, c in zip(ranked_ids, ranked, strict=True)
        ]
    if new:
        distance = {(b.resident_id, b.volunteer_id): b.distance_m for b in plan_.pairs}
        new_rows = [
            {
                "resident_id": c.resident_id, "volunteer_id": c.volunteer_id, "rank": c.rank,
                "status": AssignmentStatus.PROPOSED, "pinned": False,
                "distance_m": distance.get((c.resident_id, c.volunteer_id)),
                "created_at": now, "updated_at": now,
            }
            for c in new
        ]  # fmt: skip
        ids = bulk_insert(session, BuddyAssignment, new_rows, return_ids=True)
        rows += [
            _change_row(run_id, "buddy", "new", i, c.volunteer_id, None)
            for i, c in zip(ids, new, strict=True)
        ]
    return rows


def _write_roles(
    session: Session, registry: Registry, plan_: RolePlan, run_id: int, now: datetime
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    released = [c for c in plan_.changes if c.kind == "released"]
    new = [c for c in plan_.changes if c.kind == "new"]
    released_ids = [registry.role_row[(c.holder.person_id, *c.holder.key)] for c in released]
    _ids_update(
        session, RoleAssignment, released_ids,
        status=AssignmentStatus.RELEASED, pinned=False, updated_at=now,
    )  # fmt: skip
    rows += [
        _change_row(run_id, "role", "released", i, c.holder.person_id, c.reason)
        for i, c in zip(released_ids, released, strict=True)
    ]
    if new:
        new_rows = [
            {
                "person_id": c.holder.person_id, "authority_id": registry.authority_id,
                "role_code": c.holder.role_code, "zone_id": c.holder.zone_id,
                "shelter_id": c.holder.shelter_id, "status": AssignmentStatus.PROPOSED,
                "pinned": False, "created_at": now, "updated_at": now,
            }
            for c in new
        ]  # fmt: skip
        ids = bulk_insert(session, RoleAssignment, new_rows, return_ids=True)
        rows += [
            _change_row(run_id, "role", "new", i, c.holder.person_id, None)
            for i, c in zip(ids, new, strict=True)
        ]
    return rows


def _change_row(
    run_id: int, kind: str, action: str, assignment_id: int, volunteer_id: int, reason: str | None
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "kind": kind,
        "action": action,
        "assignment_id": assignment_id,
        "volunteer_id": volunteer_id,
        "reason": reason,
    }


def summary(result: AssignmentResult) -> dict[str, Any]:
    """Counts only (safe for the audit trail and the run row)."""
    c = result.buddies.coverage
    kinds: dict[str, int] = defaultdict(int)
    for change in result.buddies.changes:
        kinds[f"buddy_{change.kind}"] += 1
    for role_change in result.roles.changes:
        kinds[f"role_{role_change.kind}"] += 1
    return {
        "residents": c.residents,
        "covered": c.covered,
        "with_backup": c.with_backup,
        "weighted": c.weighted,
        "weighted_total": c.weighted_total,
        "distance_m": c.distance_m,
        "seats": result.roles.seats,
        "seats_filled": result.roles.filled,
        **kinds,
    }


def assign_authority(
    session: Session,
    *,
    authority: Authority,
    profile: Profile,
    actor: str,
    now: datetime | None = None,
    dry_run: bool = False,
    prove_walking: bool = False,
) -> AssignmentResult:
    """Plan roles and buddies for one authority and (unless ``dry_run``) write the changes."""
    now = now or utcnow()
    t0 = time.perf_counter()
    registry = load_registry(session, authority=authority, profile=profile, now=now)
    t1 = time.perf_counter()
    result = plan(registry, profile=profile, now=now, prove_walking=prove_walking)
    t2 = time.perf_counter()
    if not dry_run:
        write(session, registry=registry, result=result, actor=actor, trigger="run", now=now)
        session.flush()
    t3 = time.perf_counter()
    result.timings.update(load_s=t1 - t0, plan_s=t2 - t1, write_s=t3 - t2)
    return result


def _could_take(
    session: Session, row: RoleAssignment, *, profile: Profile, year: int
) -> ColumnElement[bool]:
    """Volunteers who might take this role's seat (``roles.not_eligible`` has the last word):
    available, old enough, holding no role, not having declined it, and in its zone (a
    shelter's: or within reach)."""
    holds_role = (
        select(RoleAssignment.id)
        .where(RoleAssignment.person_id == Person.id, RoleAssignment.status.in_(ACTIVE_ASSIGNMENT))
        .correlate(Person)
        .exists()
    )
    declined_it = (
        select(RoleAssignment.id)
        .where(
            RoleAssignment.person_id == Person.id,
            RoleAssignment.role_code == row.role_code,
            RoleAssignment.status == AssignmentStatus.DECLINED,
        )
        .correlate(Person)
        .exists()
    )
    role = next((r for r in profile.roles if r.code == row.role_code), None)
    # The skills as stored JSON text: a superset (LIKE's "_" matches any letter), checked after.
    skilled = [
        cast(VolunteerProfile.skills, String).like(f'%"{skill}"%')
        for skill in (role.required_skills if role is not None else ())
    ]
    min_age = role.min_age if role is not None else ADULT_AGE
    could = and_(
        VolunteerProfile.available_emergency.is_(True),
        *skilled,
        ~holds_role,
        ~declined_it,
        Person.birth_year <= year - min_age,
    )
    if row.shelter_id is not None:
        shelter = session.get(Shelter, row.shelter_id)
        if shelter is not None:
            near = Around(shelter.lat, shelter.lon, None, profile.walking_distance_m, year)
            return and_(could, or_(Person.zone_id == shelter.zone_id, near.near()))
    if row.zone_id is not None:
        return and_(could, Person.zone_id == row.zone_id)
    return could


def _within_cost(quota: Quota, cost: int, rules: RoleRules) -> ColumnElement[bool]:
    """Volunteers whose seat cost (``roles.seat_cost``: the walk plus a bonus for an adult and
    another for one with buddies) may be at most ``cost``: those left out all cost more.

    The bonus is known from the row (adult? checks on residents?), so each class is read within
    its own radius: ``cost`` less its bonus. A walk is at least the distance (a box a little wider
    than the circle); without coordinates on either side it is the reach.
    """
    keep = rules.keep_bonus_m
    adult = Person.birth_year <= rules.year - ADULT_AGE
    # Not correlated: the database reads the volunteers with buddies once, not once a person.
    has_buddies = Person.id.in_(
        select(BuddyAssignment.volunteer_id).where(BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT))
    )
    classes = (
        (0, ~adult),  # a minor never checks on residents
        (keep, and_(adult, ~has_buddies)),
        (2 * keep, and_(adult, has_buddies)),
    )
    unplaced = quota.lat is None or quota.lon is None
    alike: list[ColumnElement[bool]] = []
    for bonus, who in classes:
        walk = cost - bonus
        if walk < 0:
            continue
        if quota.scope == Scope.TOTAL or (unplaced and walk >= rules.reach_m):
            alike.append(who)  # a walk of 0 (town-wide), or the reach for everyone
            continue
        if unplaced:
            continue
        where: list[ColumnElement[bool]] = []
        if walk >= rules.reach_m:  # people without coordinates walk the reach
            where.append(or_(Person.lat.is_(None), Person.lon.is_(None)))
        # One metre more: a walk is the distance rounded to the metre.
        box = Around(quota.lat, quota.lon, None, walk + 1, rules.year).near()
        where.append(box)
        alike.append(and_(who, or_(false(), *where)))
    return or_(false(), *alike)


def _role_volunteers(
    session: Session, *, authority: Authority, where: ColumnElement[bool], year: int
) -> list[RoleVolunteer]:
    """The volunteers matching ``where``, with only what the role plan reads: place, age,
    skills, availability, buddies held; guardian consent and group only for minors."""
    live = (PersonStatus.ACTIVE, PersonStatus.PAUSED)
    rows = session.execute(
        select(
            Person.id, Person.zone_id, Person.lat, Person.lon, Person.birth_year,
            VolunteerProfile.skills, VolunteerProfile.available_emergency,
        )
        .join(VolunteerProfile, VolunteerProfile.person_id == Person.id)
        .where(
            Person.authority_id == authority.id, Person.status.in_(live),
            Person.is_volunteer.is_(True), where,
        )
    ).all()  # fmt: skip
    ids = [r.id for r in rows]
    minors = [r.id for r in rows if not is_adult(r.birth_year, year)]
    load: dict[int, int] = defaultdict(int)
    guardian: set[int] = set()
    in_adult_group: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        for v in session.scalars(
            select(BuddyAssignment.volunteer_id).where(
                BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
                BuddyAssignment.volunteer_id.in_(ids[start : start + _CHUNK]),
            )
        ):
            load[v] += 1
    for start in range(0, len(minors), _CHUNK):
        chunk = minors[start : start + _CHUNK]
        guardian.update(
            session.scalars(
                select(Consent.person_id).where(
                    Consent.person_id.in_(chunk),
                    Consent.kind == ConsentKind.GUARDIAN,
                    Consent.withdrawn_at.is_(None),
                )
            )
        )
        theirs = session.execute(
            select(GroupMember.group_id, GroupMember.person_id).where(
                GroupMember.person_id.in_(chunk)
            )
        ).all()
        groups = sorted({g for g, _ in theirs})
        with_adult = set(
            session.scalars(
                select(GroupMember.group_id)
                .join(Person, Person.id == GroupMember.person_id)
                .where(
                    GroupMember.group_id.in_(groups),
                    Person.status.in_(live),
                    Person.birth_year <= year - ADULT_AGE,
                )
                .distinct()
            )
        )
        in_adult_group.update(p for g, p in theirs if g in with_adult)
    return [
        RoleVolunteer(
            id=r.id, zone_id=r.zone_id, lat=r.lat, lon=r.lon, birth_year=r.birth_year,
            skills=frozenset(r.skills or ()), available=r.available_emergency,
            guardian_consent=r.id in guardian, adult_in_group=r.id in in_adult_group,
            buddies=load.get(r.id, 0),
        )
        for r in rows
    ]  # fmt: skip


class NotDeclinable(RegistryError):
    """The assignment is not an active one (already declined, released, or not found)."""


def decline_buddy(
    session: Session,
    *,
    assignment_id: int,
    profile: Profile,
    actor: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> AssignmentResult:
    """A volunteer declines a buddy pair: mark it declined and find the resident someone else.

    The remaining buddy (if any) is kept, and promoted to primary when the primary declined; the
    free rank goes to the best volunteer with room who has not declined this resident. The next
    full run re-optimises the whole town.
    """
    now = now or utcnow()
    row = session.get(BuddyAssignment, assignment_id)
    if row is None or row.status not in ACTIVE_ASSIGNMENT:
        raise NotDeclinable("assign.not_active")
    row.status, row.pinned, row.updated_at = AssignmentStatus.DECLINED, False, now
    resident_id, volunteer_id = row.resident_id, row.volunteer_id
    session.flush()
    audit.record(
        session, actor=actor, action="buddy.decline", person_id=volunteer_id, at=now,
        assignment_id=assignment_id, resident_id=resident_id, reason=reason,
    )  # fmt: skip
    resident = session.get(Person, resident_id)
    assert resident is not None
    authority = session.get(Authority, resident.authority_id)
    assert authority is not None
    reach = profile.walking_distance_m
    # Rings out to the walking distance: a new pair costs its metres, so the nearest free
    # volunteer found within a ring is the one the whole circle would give (exact, and a few
    # dozen people read instead of thousands in a dense town).
    for radius in (*(r for r in _RINGS_M if r < reach), reach):
        registry, buddies = _replan_one(
            session, authority=authority, profile=profile, resident=resident, radius=radius,
            now=now,
        )  # fmt: skip
        found = [c for c in buddies.changes if c.kind == "new"]
        distance = {(b.resident_id, b.volunteer_id): b.distance_m for b in buddies.pairs}
        if found and all(
            (distance.get((c.resident_id, c.volunteer_id)) or reach + 1) <= radius for c in found
        ):
            break
    # The kept pair may have moved from backup to primary: that is a rank change to record.
    promoted = [
        BuddyChange("rank", b.resident_id, b.volunteer_id, rank=1, old_rank=b.rank)
        for b in registry.buddies
        if len(registry.buddies) == 1 and b.rank != 1
    ]
    buddies.changes = [*promoted, *(c for c in buddies.changes if c.kind == "new")]
    roles = RolePlan(holders=[], changes=[], open_seats=[], seats=0, filled=0)
    result = AssignmentResult(buddies=buddies, roles=roles, zone_codes=registry.zone_codes)
    write(session, registry=registry, result=result, actor=actor, trigger="decline", now=now)
    return result


def _replan_one(
    session: Session,
    *,
    authority: Authority,
    profile: Profile,
    resident: Person,
    radius: float,
    now: datetime,
) -> tuple[Registry, BuddyPlan]:
    """The resident's free rank planned among the volunteers within ``radius`` (or their zone,
    for people without coordinates); everyone else's pairs are fixed."""
    buddies_now = session.scalars(
        select(BuddyAssignment.volunteer_id).where(
            BuddyAssignment.resident_id == resident.id,
            BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
        )
    )
    around = Around(
        resident.lat, resident.lon, resident.zone_id, radius, now.year, tuple(buddies_now)
    )
    registry = load_registry(
        session, authority=authority, profile=profile, now=now, resident_ids=[resident.id],
        volunteers_where=around.condition(),
    )  # fmt: skip
    # Everyone else's pairs are fixed here: they only take volunteers' room.
    within = [v.id for v in registry.volunteers]
    taken: dict[int, int] = defaultdict(int)
    for start in range(0, len(within), _CHUNK):
        for v in session.scalars(
            select(BuddyAssignment.volunteer_id).where(
                BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
                BuddyAssignment.resident_id != resident.id,
                BuddyAssignment.volunteer_id.in_(within[start : start + _CHUNK]),
            )
        ):
            taken[v] += 1
    holders = set(
        session.scalars(
            select(RoleAssignment.person_id).where(
                RoleAssignment.authority_id == authority.id,
                RoleAssignment.status.in_(ACTIVE_ASSIGNMENT),
            )
        )
    )
    volunteers = [
        replace(
            v,
            capacity=v.capacity - taken.get(v.id, 0),
            role_code="held" if v.id in holders else None,
        )
        for v in registry.volunteers
    ]
    kept = [
        replace(b, rank=1, pinned=True) if len(registry.buddies) == 1 else replace(b, pinned=True)
        for b in registry.buddies
    ]
    buddies = plan_buddies(
        registry.residents,
        volunteers,
        current=kept,
        declined=registry.declined_buddies,
        rules=BuddyRules(
            year=now.year, reach_m=profile.walking_distance_m,
            keep_bonus_m=profile.walking_distance_m, candidate_limit=None,
        ),
    )  # fmt: skip
    return registry, buddies


def decline_role(
    session: Session,
    *,
    assignment_id: int,
    profile: Profile,
    actor: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> AssignmentResult:
    """A volunteer declines a role: mark it declined and offer the seat to the best free volunteer.

    The best is the one the full plan's rules pick for this seat alone (``roles.seat_cost``: the
    shortest walk, sparing adults and more so those with buddies), looked for in rings of that
    cost: everyone outside a ring costs more than it, so a seat filled within its ring is filled
    as the whole town would fill it, having read a few dozen people instead of thousands.
    """
    now = now or utcnow()
    row = session.get(RoleAssignment, assignment_id)
    if row is None or row.status not in ACTIVE_ASSIGNMENT:
        raise NotDeclinable("assign.not_active")
    row.status, row.pinned, row.updated_at = AssignmentStatus.DECLINED, False, now
    session.flush()
    audit.record(
        session, actor=actor, action="role.decline", person_id=row.person_id, at=now,
        assignment_id=assignment_id, role=row.role_code, reason=reason,
    )  # fmt: skip
    authority = session.get(Authority, row.authority_id)
    assert authority is not None
    zones = session.execute(
        select(Zone.id, Zone.code, Zone.lat, Zone.lon).where(Zone.authority_id == authority.id)
    ).all()
    shelters = session.execute(
        select(Shelter.id, Shelter.code, Shelter.zone_id, Shelter.lat, Shelter.lon).where(
            Shelter.id == row.shelter_id
        )
    ).all()
    key = (row.role_code, row.zone_id, row.shelter_id)
    quota = next((q for q in quotas_for(profile, zones, shelters) if q.key == key), None)
    taken = select(func.count()).where(
        RoleAssignment.authority_id == authority.id,
        RoleAssignment.role_code == row.role_code,
        RoleAssignment.status.in_(ACTIVE_ASSIGNMENT),
    )
    if quota is not None and quota.scope != Scope.TOTAL:
        taken = taken.where(RoleAssignment.zone_id == row.zone_id)
        taken = taken.where(
            RoleAssignment.shelter_id.is_(None)
            if row.shelter_id is None
            else RoleAssignment.shelter_id == row.shelter_id
        )
    open_ = 0 if quota is None else quota.seats - (session.scalar(taken) or 0)
    roles = RolePlan(holders=[], changes=[], open_seats=[], seats=0, filled=0)
    if quota is not None and open_ > 0:
        rules = RoleRules(
            year=now.year, reach_m=profile.walking_distance_m,
            keep_bonus_m=profile.walking_distance_m,
        )  # fmt: skip
        seat = replace(quota, seats=open_)
        could = _could_take(session, row, profile=profile, year=now.year)
        keep = rules.keep_bonus_m
        # Only adults may take it: nobody costs less than the adult's bonus.
        least = keep if quota.min_age >= ADULT_AGE else 0
        rings = sorted({b + r for b in (least, keep, 2 * keep) for r in _RINGS_M})
        for cost in (*rings, None):
            where = could if cost is None else and_(could, _within_cost(seat, cost, rules))
            volunteers = _role_volunteers(session, authority=authority, where=where, year=now.year)
            roles = plan_roles(volunteers, [seat], rules=rules)
            by_id = {v.id: v for v in volunteers}
            if cost is None or (
                roles.filled == open_
                and all(seat_cost(by_id[h.person_id], seat, rules) <= cost for h in roles.holders)
            ):
                break
    empty = BuddyPlan(
        pairs=[], changes=[], unassigned={}, not_buddies={}, gaps=[], coverage=Coverage()
    )
    registry = Registry(
        authority_id=authority.id, residents=[], volunteers=[], role_volunteers=[], quotas=[],
        buddies=[], buddy_row={}, declined_buddies=set(), roles=[], role_row={},
        declined_roles=set(), zone_codes={z.id: z.code for z in zones},
    )  # fmt: skip
    result = AssignmentResult(buddies=empty, roles=roles, zone_codes=registry.zone_codes)
    write(session, registry=registry, result=result, actor=actor, trigger="decline", now=now)
    return result
