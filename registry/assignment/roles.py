"""Emergency roles: at most one role from the profile's catalogue for every capable volunteer, so
that the quotas per zone, per shelter and per authority are filled.

Pure core: plain dataclasses in, a plan out; no database. Rules:

* the volunteer is available in emergencies and their birth year is known;
* at least the role's minimum age and every required skill;
* a minor (under 18) takes a role only with a guardian's consent on record, only as a member of a
  group (youth movement, national service...) that has an adult in it, and never a role with home
  visits;
* a zone's role goes to a volunteer living in that zone; a shelter's role to one living in the
  shelter's zone or within walking distance of it; a town-wide role to anyone of the authority.

Optimal like the buddies (see :mod:`registry.assignment.flow`): one min-cost flow first fills as
many seats as possible, then keeps the walk to the zone's centre or the shelter shortest. Stable:
a current holder earns ``keep_bonus_m``; a pinned holder keeps the role. Roles are planned before
buddies (a staffed emergency team is the plan's backbone), so to leave adults free for home visits
an adult costs ``keep_bonus_m`` more than a minor who may take the role, and a volunteer who
already checks on residents ``keep_bonus_m`` more again: fewer buddy pairs break. Every seat left open gets a reason and a recruitment line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from registry.assignment import flow
from registry.rules import ADULT_AGE, age, distance_m, is_adult


class Scope(StrEnum):
    ZONE = "zone"
    SHELTER = "shelter"
    TOTAL = "total"


class NotEligible(StrEnum):
    """Why a volunteer cannot take a given role (the first rule that fails)."""

    UNAVAILABLE = "unavailable"
    AGE_UNKNOWN = "age_unknown"
    TOO_YOUNG = "too_young"
    NO_GUARDIAN_CONSENT = "no_guardian_consent"
    NO_ADULT_IN_GROUP = "no_adult_in_group"
    HOME_VISITS_ADULTS_ONLY = "home_visits_adults_only"
    MISSING_SKILL = "missing_skill"
    ELSEWHERE = "elsewhere"  # lives in another zone / too far from the shelter


class Unfilled(StrEnum):
    """Why seats of a quota stay open (a catalog key under ``assign.role_reason``)."""

    NO_CANDIDATE = "no_candidate"  # nobody in the area meets the role's requirements
    CANDIDATES_TAKEN = "candidates_taken"  # those who could are in other roles of this tier
    CANDIDATES_ENGAGED = "candidates_engaged"  # some who could serve an earlier tier
    DECLINED = "declined"  # everyone who could has declined the role


@dataclass(frozen=True, slots=True)
class RoleVolunteer:
    id: int
    zone_id: int | None
    lat: float | None
    lon: float | None
    birth_year: int | None
    skills: frozenset[str] = frozenset()
    available: bool = True
    guardian_consent: bool = False
    adult_in_group: bool = False  # a member of a group that has an adult member
    buddies: int = 0  # residents they currently check on


@dataclass(frozen=True, slots=True)
class Quota:
    """The seats of one role in one place."""

    role_code: str
    scope: Scope
    seats: int
    zone_id: int | None = None  # the zone of the role, or the shelter's zone
    shelter_id: int | None = None
    lat: float | None = None  # the zone's centre or the shelter
    lon: float | None = None
    required_skills: frozenset[str] = frozenset()
    min_age: int = ADULT_AGE
    home_visits: bool = False

    @property
    def key(self) -> tuple[str, int | None, int | None]:
        return (
            self.role_code,
            self.zone_id if self.scope != Scope.TOTAL else None,
            self.shelter_id,
        )


@dataclass(frozen=True, slots=True)
class RoleHolder:
    person_id: int
    role_code: str
    zone_id: int | None = None
    shelter_id: int | None = None
    pinned: bool = False

    @property
    def key(self) -> tuple[str, int | None, int | None]:
        return (self.role_code, self.zone_id, self.shelter_id)


@dataclass(frozen=True)
class RoleRules:
    year: int
    reach_m: int = 1500
    keep_bonus_m: int = 1500


@dataclass(frozen=True, slots=True)
class RoleChange:
    kind: str  # "new", "released"
    holder: RoleHolder
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OpenSeats:
    quota: Quota
    open: int
    reason: Unfilled
    eligible: int  # volunteers who meet every requirement (held elsewhere or not)
    engaged: int = 0  # of them, serving an earlier tier of the policy
    engaged_tiers: tuple[int, ...] = ()


@dataclass
class RolePlan:
    holders: list[RoleHolder]
    changes: list[RoleChange]
    open_seats: list[OpenSeats]
    seats: int
    filled: int


def not_eligible(
    volunteer: RoleVolunteer, quota: Quota, *, year: int, reach_m: float
) -> NotEligible | None:
    """Why ``volunteer`` cannot take ``quota``'s role, or None when they can."""
    if not volunteer.available:
        return NotEligible.UNAVAILABLE
    years = age(volunteer.birth_year, year)
    if years is None:
        return NotEligible.AGE_UNKNOWN
    if years < quota.min_age:
        return NotEligible.TOO_YOUNG
    if years < ADULT_AGE:
        if quota.home_visits:
            return NotEligible.HOME_VISITS_ADULTS_ONLY
        if not volunteer.guardian_consent:
            return NotEligible.NO_GUARDIAN_CONSENT
        if not volunteer.adult_in_group:
            return NotEligible.NO_ADULT_IN_GROUP
    if not quota.required_skills <= volunteer.skills:
        return NotEligible.MISSING_SKILL
    if quota.scope == Scope.ZONE and volunteer.zone_id != quota.zone_id:
        return NotEligible.ELSEWHERE
    if (
        quota.scope == Scope.SHELTER
        and volunteer.zone_id != quota.zone_id
        and (
            volunteer.lat is None
            or volunteer.lon is None
            or quota.lat is None
            or quota.lon is None
            or distance_m(volunteer.lat, volunteer.lon, quota.lat, quota.lon) > reach_m
        )
    ):
        return NotEligible.ELSEWHERE
    return None


def plan_roles(
    volunteers: Sequence[RoleVolunteer],
    quotas: Sequence[Quota],
    *,
    current: Iterable[RoleHolder] = (),
    declined: Iterable[tuple[int, str]] = (),
    engaged: Mapping[int, int] | None = None,
    rules: RoleRules,
) -> RolePlan:
    """The optimal role plan for these volunteers and quotas, and how it differs from ``current``.

    ``engaged``: volunteers already serving an earlier tier of the policy (id -> tier). They
    take no seat here, but an open seat they could have taken says so.
    """
    engaged = engaged or {}
    current = list(current)
    declined_pairs = set(declined)
    by_id = {v.id: v for v in volunteers}
    quota_by_key = {q.key: q for q in quotas}

    pinned = [h for h in current if h.pinned and h.person_id in by_id]
    pinned_ids = {h.person_id for h in pinned}
    seats_left = {q.key: q.seats for q in quotas}
    for h in pinned:
        if h.key in seats_left:
            seats_left[h.key] = max(0, seats_left[h.key] - 1)
    holding = {h.person_id: h.key for h in current if not h.pinned}

    pool = [v for v in volunteers if v.id not in pinned_ids]
    engaged_by: dict[tuple[str, int | None, int | None], set[int]] = defaultdict(set)
    engaged_count: dict[tuple[str, int | None, int | None], int] = defaultdict(int)
    declined_count: dict[tuple[str, int | None, int | None], int] = defaultdict(int)
    open_quotas = [q for q in quotas if seats_left[q.key] > 0]
    tails: list[int] = []
    heads: list[int] = []
    costs: list[int] = []
    eligible_count: dict[tuple[str, int | None, int | None], int] = defaultdict(int)
    # Only the quotas a volunteer could be near: their zone's, the shelters', the town-wide.
    by_zone: dict[int | None, list[int]] = defaultdict(list)
    anywhere: list[int] = []
    for qi, quota in enumerate(open_quotas):
        (by_zone[quota.zone_id] if quota.scope == Scope.ZONE else anywhere).append(qi)
    for vi, volunteer in enumerate(pool):
        if not volunteer.available or volunteer.birth_year is None:
            continue
        for qi in (*by_zone.get(volunteer.zone_id, ()), *anywhere):
            quota = open_quotas[qi]
            if not_eligible(volunteer, quota, year=rules.year, reach_m=rules.reach_m) is not None:
                continue
            eligible_count[quota.key] += 1
            if volunteer.id in engaged:
                engaged_by[quota.key].add(engaged[volunteer.id])
                engaged_count[quota.key] += 1
                continue
            if (volunteer.id, quota.role_code) in declined_pairs:
                declined_count[quota.key] += 1
                continue
            tails.append(vi)
            heads.append(qi)
            costs.append(
                seat_cost(volunteer, quota, rules, holding=holding.get(volunteer.id) == quota.key)
            )
    chosen = _solve(len(pool), [seats_left[q.key] for q in open_quotas], tails, heads, costs)
    holders = [
        *pinned,
        *(
            RoleHolder(
                person_id=pool[vi].id,
                role_code=open_quotas[qi].role_code,
                zone_id=open_quotas[qi].key[1],
                shelter_id=open_quotas[qi].shelter_id,
            )
            for vi, qi in chosen
        ),
    ]
    filled: dict[tuple[str, int | None, int | None], int] = defaultdict(int)
    for h in holders:
        filled[h.key] += 1
    open_seats = [
        OpenSeats(
            quota=q,
            open=q.seats - filled[q.key],
            reason=_unfilled(eligible_count[q.key], engaged_count[q.key], declined_count[q.key]),
            eligible=eligible_count[q.key],
            engaged=engaged_count[q.key],
            engaged_tiers=tuple(sorted(engaged_by[q.key])),
        )
        for q in quotas
        if filled[q.key] < q.seats
    ]
    planned = {(h.person_id, h.key) for h in holders}
    changes = [
        RoleChange(
            "released",
            h,
            reason="volunteer_gone"
            if h.person_id not in by_id
            else ("quota_gone" if h.key not in quota_by_key else "reassigned"),
        )
        for h in current
        if (h.person_id, h.key) not in planned
    ]
    known = {(h.person_id, h.key) for h in current}
    changes.extend(RoleChange("new", h) for h in holders if (h.person_id, h.key) not in known)
    return RolePlan(
        holders=sorted(holders, key=lambda h: (h.role_code, h.zone_id or 0, h.person_id)),
        changes=changes,
        open_seats=open_seats,
        seats=sum(q.seats for q in quotas),
        filled=sum(min(filled[q.key], q.seats) for q in quotas),
    )


def _unfilled(eligible: int, engaged: int, declined: int) -> Unfilled:
    """The true cause of open seats: nobody qualifies, an earlier tier has some of those who
    do, all of them declined, or they hold other seats of this tier."""
    if not eligible:
        return Unfilled.NO_CANDIDATE
    if engaged:
        return Unfilled.CANDIDATES_ENGAGED
    if declined == eligible:
        return Unfilled.DECLINED
    return Unfilled.CANDIDATES_TAKEN


def seat_cost(
    volunteer: RoleVolunteer, quota: Quota, rules: RoleRules, *, holding: bool = False
) -> int:
    """What giving ``quota``'s seat to ``volunteer`` costs the plan (its second objective): the
    walk, less ``keep_bonus_m`` for the current holder, plus ``keep_bonus_m`` for an adult (who
    could make home visits instead) and again for one who already checks on residents."""
    return (
        walk_m(volunteer, quota, rules.reach_m)
        - (rules.keep_bonus_m if holding else 0)
        + (rules.keep_bonus_m if volunteer.buddies else 0)
        + (rules.keep_bonus_m if _may_visit(volunteer, rules.year) else 0)
    )


def _may_visit(volunteer: RoleVolunteer, year: int) -> bool:
    """Could take buddies instead (an adult): such volunteers are the roles' second choice."""
    return is_adult(volunteer.birth_year, year)


def walk_m(volunteer: RoleVolunteer, quota: Quota, reach_m: float) -> int:
    """Metres from the volunteer to the role's place (0 for a town-wide role; the reach when a
    place is unknown)."""
    if quota.scope == Scope.TOTAL:
        return 0
    if volunteer.lat is None or volunteer.lon is None or quota.lat is None or quota.lon is None:
        return round(reach_m)
    return round(distance_m(volunteer.lat, volunteer.lon, quota.lat, quota.lon))


def _solve(
    n_volunteers: int, seats: Sequence[int], tails: list[int], heads: list[int], costs: list[int]
) -> list[tuple[int, int]]:
    """Chosen (volunteer, quota) index pairs: most seats filled, then the least walking."""
    n_q = len(seats)
    if not tails:
        return []
    source, sink, v0, q0 = 0, 1, 2, 2 + n_volunteers
    pair_cost = np.array(costs, dtype=np.int64)
    spread = int(np.abs(pair_cost).max(initial=0)) + 1
    scale = flow.coverage_scale(path_arcs=2 * min(n_volunteers, n_q) + 2, spread=spread)
    vols = np.arange(n_volunteers, dtype=np.int64)
    quotas = np.arange(n_q, dtype=np.int64)
    n_pairs = len(tails)
    # A seat's arcs: one per seat unit, each worth ``scale`` (filling is the first objective).
    seat_q = np.repeat(quotas, np.array(seats, dtype=np.int64))
    tail = np.concatenate([
        np.full(n_volunteers, source, dtype=np.int64),
        v0 + np.array(tails, dtype=np.int64),
        q0 + seat_q,
        np.array([source], dtype=np.int64),
    ])  # fmt: skip
    head = np.concatenate([
        v0 + vols,
        q0 + np.array(heads, dtype=np.int64),
        np.full(len(seat_q), sink, dtype=np.int64),
        np.array([sink], dtype=np.int64),
    ])  # fmt: skip
    capacity = np.ones(len(tail), dtype=np.int64)
    capacity[-1] = n_volunteers
    cost = np.concatenate([
        np.zeros(n_volunteers, dtype=np.int64),
        pair_cost,
        np.full(len(seat_q), -scale, dtype=np.int64),
        np.zeros(1, dtype=np.int64),
    ])  # fmt: skip
    supply = np.zeros(q0 + n_q, dtype=np.int64)
    supply[source], supply[sink] = n_volunteers, -n_volunteers
    flows = flow.solve(flow.Network(q0 + n_q, tail, head, capacity, cost, supply))
    used = np.flatnonzero(flows[n_volunteers : n_volunteers + n_pairs] > 0)
    return [(tails[i], heads[i]) for i in used.tolist()]
