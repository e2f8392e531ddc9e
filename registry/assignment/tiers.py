"""The assignment policy: the demand filled tier by tier, and the true cause of every gap.

The profile's ``[assignment]`` orders the demand in tiers (for example: a buddy for every
resident at high risk, then the core roles, then a buddy for everyone else at risk, then the
other roles). Each tier is planned optimally by the proven cores
(:func:`registry.assignment.roles.plan_roles`, :func:`registry.assignment.buddies.plan_buddies`)
with the volunteers the tiers before it left free: a volunteer who holds a role takes no
buddies, and one who checks on residents takes no role of a later tier.

A tier of buddies is planned together with the buddy tiers before it, an earlier tier's
residents weighing more than any later one's: the sets of residents that can be covered
together form a matroid, so the heaviest plan covers every tier as fully as it can be covered,
in order, and a later tier may re-route an earlier tier's pairs but never uncover one. Buddy
tiers place primaries; backups come last, from the room every tier left. Stable like the cores:
every current pair and holder earns its keep bonus, and a buddy pass keeps the pairs of the
pass before it where it can (the roles planned between them saw those volunteers engaged).

Every resident left without a buddy gets the true cause, found over every volunteer within
reach at the end: none who may visit at all, none who speaks the language, all of those who
could hold roles (of which tiers), some hold roles and the others are full, or all are full.
Counts and codes only: no personal data.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from config.profile import REST, HighRiskProfile, Profile
from registry.assignment.buddies import (
    HEBREW,
    LANGUAGE_BITS,
    PRIORITY_MAX,
    Buddy,
    BuddyPlan,
    BuddyRules,
    Resident,
    Volunteer,
    _coverage,
    _diff,
    _places,
    language_bit,
    not_buddy,
    plan_buddies,
)
from registry.assignment.geo import Neighbourhood
from registry.assignment.roles import (
    OpenSeats,
    Quota,
    RoleChange,
    RoleHolder,
    RolePlan,
    RoleRules,
    RoleVolunteer,
    plan_roles,
)
from registry.errors import RegistryError
from registry.models import NEED_FLAGS

_CHUNK = 512  # residents whose full lists are opened at once when explaining gaps


class Cause(StrEnum):
    """Why a resident has no buddy (a catalog key under ``assign.cause``)."""

    NO_PLACE = "no_place"  # neither coordinates nor zone
    NO_VOLUNTEER_IN_REACH = "no_volunteer_in_reach"  # nobody within reach who may visit
    CANNOT_VISIT = "cannot_visit"  # only minors, unavailable or without capacity in reach
    NO_SHARED_LANGUAGE = "no_shared_language"
    HELD_BY_ROLES = "held_by_roles"  # all of those in reach who could visit hold roles
    ROLES_AND_FULL = "roles_and_full"  # some of them hold roles, the others are full
    VOLUNTEERS_FULL = "volunteers_full"  # all of them are full (or declined this resident)


@dataclass(frozen=True, slots=True)
class BuddyGap:
    """Residents of one zone and tier without a buddy, for one cause (and language)."""

    zone_id: int | None
    tier: int
    cause: Cause
    language: str | None  # the language nobody in reach speaks (NO_SHARED_LANGUAGE only)
    residents: int
    in_reach: int  # volunteers within reach who may visit and speak the language
    in_roles: int  # of them, holding a role
    role_tiers: tuple[int, ...]  # the tiers of those roles
    recruit: int  # volunteers who would cover these residents


@dataclass
class TierResult:
    """One tier's outcome, for the report."""

    number: int
    kind: str  # "roles" or "buddies"
    what: str  # role codes, "rest" or "high_risk"
    demand: int  # seats, or residents
    met: int
    engaged: frozenset[int] = frozenset()  # roles: volunteers serving earlier tiers, left out


@dataclass
class PolicyPlan:
    buddies: BuddyPlan
    roles: RolePlan
    tiers: list[TierResult]
    tier_of_resident: dict[int, int]
    tier_of_role: dict[str, int]
    causes: dict[int, Cause]
    buddy_gaps: list[BuddyGap]
    timings: dict[str, float] = field(default_factory=dict)


def check_policy(profile: Profile) -> None:
    """The profile's high-risk needs must be needs the registry knows."""
    high = profile.assignment.high_risk
    unknown = set(high.needs) | set(high.living_alone_with)
    unknown -= set(NEED_FLAGS)
    if unknown:
        raise RegistryError(f"assignment.high_risk: unknown needs {sorted(unknown)}")


def high_risk(resident: Resident, rule: HighRiskProfile) -> bool:
    if any(need in resident.needs for need in rule.needs):
        return True
    return "lives_alone" in resident.needs and any(
        need in resident.needs for need in rule.living_alone_with
    )


def tier_of_residents(residents: Sequence[Resident], profile: Profile) -> dict[int, int]:
    """Each resident's buddy tier (1-based) under the profile's policy."""
    tiers = profile.assignment.tiers
    high = next((n for n, t in enumerate(tiers, 1) if t.buddies == "high_risk"), None)
    rest = next(n for n, t in enumerate(tiers, 1) if t.buddies == REST)
    rule = profile.assignment.high_risk
    return {r.id: high if high is not None and high_risk(r, rule) else rest for r in residents}


def plan_policy(
    residents: Sequence[Resident],
    volunteers: Sequence[Volunteer],
    role_volunteers: Sequence[RoleVolunteer],
    quotas: Sequence[Quota],
    *,
    profile: Profile,
    current_buddies: Sequence[Buddy] = (),
    declined_buddies: set[tuple[int, int]] | None = None,
    current_roles: Sequence[RoleHolder] = (),
    declined_roles: set[tuple[int, str]] | None = None,
    year: int,
    prove_walking: bool = False,
) -> PolicyPlan:
    """Fill the profile's tiers in order, each optimally with the volunteers left free."""
    started = time.perf_counter()
    declined_b = declined_buddies or set()
    declined_r = declined_roles or set()
    reach = profile.walking_distance_m
    role_rules = RoleRules(year=year, reach_m=reach, keep_bonus_m=reach)
    buddy_rules = BuddyRules(
        year=year, reach_m=reach, keep_bonus_m=reach, prove_walking=prove_walking
    )
    tier_of_role = {q.role_code: profile.tier_of_role(q.role_code) for q in quotas}
    tier_of_resident = tier_of_residents(residents, profile)
    volunteer_ids = {v.id for v in volunteers} | {v.id for v in role_volunteers}
    resident_ids = {r.id for r in residents}

    # Who serves which tier so far: a role holder (id -> tier), buddies' load per volunteer.
    role_tier: dict[int, int] = {}
    holders: list[RoleHolder] = []
    for h in current_roles:
        if h.pinned and h.person_id in volunteer_ids:
            role_tier[h.person_id] = tier_of_role.get(h.role_code, 0)
    buddy_tier: dict[int, int] = {}  # volunteer -> the earliest tier they check on
    load: dict[int, int] = defaultdict(int)  # room the pinned backups hold
    primaries: list[Buddy] = []
    all_buddy_tiers = [n for n, t in enumerate(profile.assignment.tiers, 1) if t.buddies]
    buddy_tiers: list[int] = []
    # Pinned backups keep their room whatever happens (their primaries are planned per tier).
    pinned_backups = [
        b
        for b in current_buddies
        if b.pinned
        and b.rank != 1
        and b.resident_id in resident_ids
        and b.volunteer_id in volunteer_ids
    ]
    for b in pinned_backups:
        load[b.volunteer_id] += 1
    pinned_backup_pairs = {(b.resident_id, b.volunteer_id) for b in pinned_backups}

    role_changes: list[RoleChange] = []
    open_seats: list[OpenSeats] = []
    seats = filled = 0
    results: list[TierResult] = []
    timings: dict[str, float] = defaultdict(float)
    walking_proven = True
    arcs = widened = priced = 0

    for number, tier in enumerate(profile.assignment.tiers, start=1):
        if tier.roles is not None:
            t0 = time.perf_counter()
            tier_quotas = [q for q in quotas if tier_of_role[q.role_code] == number]
            codes = {q.role_code for q in tier_quotas}
            engaged = {
                **{v: t for v, t in buddy_tier.items()},
                **{v: t for v, t in role_tier.items() if t != number},
            }
            plan = plan_roles(
                role_volunteers,
                tier_quotas,
                current=[h for h in current_roles if h.role_code in codes],
                declined=declined_r,
                engaged=engaged,
                rules=role_rules,
            )
            holders += plan.holders
            for h in plan.holders:
                role_tier[h.person_id] = number
            role_changes += plan.changes
            open_seats += plan.open_seats
            seats, filled = seats + plan.seats, filled + plan.filled
            what = ",".join(tier.roles) if isinstance(tier.roles, list) else REST
            results.append(
                TierResult(number, "roles", what, plan.seats, plan.filled, frozenset(engaged))
            )
            timings["roles_s"] += time.perf_counter() - t0
            continue
        # Every buddy tier so far, in one pass: an earlier tier's residents weigh more than any
        # later one's, and the coverable sets form a matroid, so the heaviest plan covers each
        # tier as fully as it can be covered, in order, while later tiers may re-route an
        # earlier tier's pairs (fixing them would cost coverage). The volunteers in roles so far
        # are out; future role holders were free in the pass before their tier, so an earlier
        # pass's coverage stays feasible.
        buddy_tiers.append(number)
        boost = {
            t: (len(all_buddy_tiers) - all_buddy_tiers.index(t)) * PRIORITY_MAX for t in buddy_tiers
        }
        members = [r for r in residents if tier_of_resident[r.id] in boost]
        member_ids = {r.id for r in members}
        pool = _pool(volunteers, role_tier, load)
        plan_b = plan_buddies(
            members,
            pool,
            # The pass before this one keeps its pairs where it can (its volunteers were
            # engaged when the roles between were planned: a re-run then finds the same).
            current=[
                *(
                    b
                    for b in current_buddies
                    if b.resident_id in member_ids and not (b.pinned and b.rank != 1)
                ),
                *(_pair(b, rank=1) for b in primaries if not b.pinned),
            ],
            declined=declined_b | {p for p in pinned_backup_pairs if p[0] in member_ids},
            rules=replace(buddy_rules, backups=False),
            boost={r.id: boost[tier_of_resident[r.id]] for r in members},
            report=False,
        )
        primaries = list(plan_b.pairs)
        buddy_tier = {}
        for b in primaries:
            t = tier_of_resident[b.resident_id]
            buddy_tier[b.volunteer_id] = min(t, buddy_tier.get(b.volunteer_id, t))
        _add_timings(timings, plan_b.timings)
        walking_proven = walking_proven and plan_b.walking_proven
        arcs, widened, priced = arcs + plan_b.arcs, widened + plan_b.widened, priced + plan_b.priced
        results.append(TierResult(number, "buddies", str(tier.buddies), 0, 0))

    covered_now = {b.resident_id for b in primaries}
    for result in results:
        if result.kind == "buddies":
            mine = [r.id for r in residents if tier_of_resident[r.id] == result.number]
            result.demand, result.met = len(mine), sum(1 for r in mine if r in covered_now)

    # Backups last, from the room every tier left: the primaries are fixed (pinned) here.
    final_pool = _pool(volunteers, role_tier, {})
    with_primary = {b.resident_id for b in primaries}
    primary_pairs = {(b.resident_id, b.volunteer_id) for b in primaries}
    backed = [r for r in residents if r.id in with_primary]
    backups = plan_buddies(
        backed,
        final_pool,
        current=[
            *(_pair(b, rank=1, pinned=True) for b in primaries),
            *(
                b
                for b in current_buddies
                if b.rank != 1
                and b.resident_id in with_primary
                and (b.resident_id, b.volunteer_id) not in primary_pairs
            ),
        ],
        declined=declined_b,
        rules=buddy_rules,
        report=False,
    )
    _add_timings(timings, backups.timings)
    walking_proven = walking_proven and backups.walking_proven
    pinned_now = {(b.resident_id, b.volunteer_id) for b in current_buddies if b.pinned}
    pairs = [
        _pair(b, rank=b.rank, pinned=(b.resident_id, b.volunteer_id) in pinned_now)
        for b in backups.pairs
    ]
    pairs.sort(key=lambda b: (b.resident_id, b.rank))

    volunteer_by_id = {v.id: v for v in final_pool}
    not_buddies = {v.id: reason for v in final_pool if (reason := not_buddy(v, year)) is not None}
    t0 = time.perf_counter()
    causes, gaps = explain_gaps(
        residents,
        final_pool,
        pairs,
        tier_of_resident=tier_of_resident,
        role_tier=role_tier,
        year=year,
        reach_m=reach,
    )
    timings["causes_s"] += time.perf_counter() - t0
    buddy_plan = BuddyPlan(
        pairs=pairs,
        changes=_diff(
            list(current_buddies), pairs, resident_ids, volunteer_by_id, not_buddies, declined_b
        ),
        unassigned={r: c.value for r, c in causes.items()},
        not_buddies=not_buddies,
        gaps=[],
        coverage=_coverage(residents, pairs, year),
        arcs=arcs + backups.arcs,
        widened=widened + backups.widened,
        priced=priced + backups.priced,
        walking_proven=walking_proven,
    )
    buddy_plan.timings = {**timings, "total_s": time.perf_counter() - started}
    role_plan = RolePlan(
        holders=sorted(holders, key=lambda h: (h.role_code, h.zone_id or 0, h.person_id)),
        changes=role_changes,
        open_seats=open_seats,
        seats=seats,
        filled=filled,
    )
    return PolicyPlan(
        buddies=buddy_plan,
        roles=role_plan,
        tiers=results,
        tier_of_resident=tier_of_resident,
        tier_of_role=tier_of_role,
        causes=causes,
        buddy_gaps=gaps,
        timings=dict(buddy_plan.timings),
    )


def _pool(
    volunteers: Sequence[Volunteer], role_tier: dict[int, int], load: dict[int, int]
) -> list[Volunteer]:
    """The volunteers as a buddy pass sees them: role holders marked, pinned room taken (a copy
    only of those that change: a town has thousands)."""
    return [
        v
        if v.id not in role_tier and not load.get(v.id)
        else replace(
            v,
            capacity=max(0, v.capacity - load.get(v.id, 0)),
            role_code="role" if v.id in role_tier else None,
        )
        for v in volunteers
    ]


def _pair(b: Buddy, *, rank: int, pinned: bool = False) -> Buddy:
    return Buddy(b.resident_id, b.volunteer_id, rank, pinned, b.distance_m)


def _add_timings(total: dict[str, float], part: dict[str, float]) -> None:
    for key, value in part.items():
        if key != "total_s":
            total[key] += value


def explain_gaps(
    residents: Sequence[Resident],
    volunteers: Sequence[Volunteer],
    pairs: Sequence[Buddy],
    *,
    tier_of_resident: dict[int, int],
    role_tier: dict[int, int],
    year: int,
    reach_m: int,
) -> tuple[dict[int, Cause], list[BuddyGap]]:
    """The true cause for every resident without a buddy, and the gaps summed per zone, tier,
    cause and language, with the volunteers within reach counted once per gap.

    Looked at over every volunteer within reach (the full lists, a chunk at a time): who may
    visit at all (an adult, available, with capacity: :func:`buddies.not_buddy` without the
    role), who of them speaks the resident's language, and who of those holds a role or is full.
    """
    covered = {b.resident_id for b in pairs}
    left = [r for r in residents if r.id not in covered]
    if not left:
        return {}, []
    visitors = np.array(
        [not_buddy(replace(v, role_code=None), year) is None for v in volunteers], dtype=bool
    )
    in_role = np.array([v.id in role_tier for v in volunteers], dtype=bool)
    v_role_tier = np.array([role_tier.get(v.id, 0) for v in volunteers], dtype=np.int64)
    speaks = np.array(
        [sum(LANGUAGE_BITS.get(lang, 0) for lang in v.speaks) for v in volunteers], dtype=np.int64
    )
    places_r, places_v = _places(left), _places(volunteers)
    may_visit = Neighbourhood(places_r, places_v, speaks=speaks, reach_m=reach_m, active=visitors)
    others = Neighbourhood(places_r, places_v, speaks=speaks, reach_m=reach_m, active=~visitors)
    needs = np.array([language_bit(r.language) for r in left], dtype=np.int64)
    anyone = np.zeros_like(needs)

    causes: dict[int, Cause] = {}
    # Per gap key: the compatible volunteers within reach of any of its residents.
    Key = tuple[int | None, int, Cause, str | None]
    residents_of: dict[Key, int] = defaultdict(int)
    reach_of: dict[Key, set[int]] = defaultdict(set)
    located, zoned = places_r.located, places_r.zone >= 0
    for start in range(0, len(left), _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, len(left)), dtype=np.int64)
        near = may_visit.pairs(rows, anyone, None)
        per_row: dict[int, list[int]] = defaultdict(list)
        for r, v in zip(near.resident.tolist(), near.volunteer.tolist(), strict=True):
            per_row[r].append(v)
        no_one = [r for r in rows.tolist() if r not in per_row]
        somebody = set()
        if no_one:
            found = others.pairs(np.array(no_one, dtype=np.int64), anyone, None)
            somebody = set(found.resident.tolist())
        for r in rows.tolist():
            resident = left[r]
            language = None
            vols: list[int] = []
            if not located[r] and not zoned[r]:
                cause = Cause.NO_PLACE
            elif r not in per_row:
                cause = Cause.CANNOT_VISIT if r in somebody else Cause.NO_VOLUNTEER_IN_REACH
            else:
                need = int(needs[r])
                vols = [v for v in per_row[r] if not need or speaks[v] & need]
                if not vols:
                    cause, language = Cause.NO_SHARED_LANGUAGE, resident.language
                elif in_role[vols].all():
                    cause = Cause.HELD_BY_ROLES
                elif in_role[vols].any():
                    cause = Cause.ROLES_AND_FULL
                else:
                    cause = Cause.VOLUNTEERS_FULL
            causes[resident.id] = cause
            key = (resident.zone_id, tier_of_resident[resident.id], cause, language)
            residents_of[key] += 1
            reach_of[key].update(vols)
    rooms = [v.capacity for v in volunteers if v.capacity > 0]
    typical = max(1, int(np.median(rooms))) if rooms else 3
    gaps = []
    for key, n in residents_of.items():
        zone, tier, cause, language = key
        within = np.fromiter(reach_of[key], dtype=np.int64, count=len(reach_of[key]))
        tiers = tuple(sorted(set(v_role_tier[within][in_role[within]].tolist())))
        gaps.append(
            BuddyGap(
                zone_id=zone,
                tier=tier,
                cause=cause,
                language=language if language != HEBREW else None,
                residents=n,
                in_reach=len(within),
                in_roles=int(np.count_nonzero(in_role[within])),
                role_tiers=tiers,
                recruit=0 if cause is Cause.NO_PLACE else math.ceil(n / typical),
            )
        )
    gaps.sort(key=lambda g: (g.tier, -g.residents, g.zone_id or 0, g.cause.value))
    return causes, gaps
