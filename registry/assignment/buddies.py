"""Buddy assignment: a volunteer who checks on every resident who may need help, and a backup.

Pure core: plain dataclasses in, a plan out; no database. The rules (issue 4):

* within reach: great-circle distance at most the walking distance, or the same zone when either
  side has no coordinates (see :mod:`registry.assignment.geo`);
* a shared language when the resident does not speak Hebrew (the volunteer's declared languages
  plus their own);
* each volunteer's check-in capacity, counting primaries and backups alike;
* home visits are for adults only. A minor never becomes a buddy, not even a backup: a backup
  visits *instead of* the primary, so a minor backup would visit alone. Minors serve through
  their youth group's roles (:mod:`registry.assignment.roles`), where a group with an adult is
  required;
* a volunteer who holds an emergency role from the catalogue has that one job and no buddies;
* graver needs first: :func:`priority` weighs powered medical equipment, bedridden, and living
  alone at an old age.

Optimal, not greedy, in two stages. Primaries: one min-cost flow (see
:mod:`registry.assignment.flow`) maximises the priority-weighted number of residents with a
buddy, then minimises their total walking. Backups: a second flow does the same for the residents
who have one buddy, from the room left, never with the same volunteer twice; a backup is never
bought with someone's primary. Candidate lists are cut to the nearest few per resident (k-d
trees), and an augmenting-path search over the full lists (:func:`_augmenting_pairs`) adds the
pairs the cut would have cost, so coverage is the maximum over *all* pairs within reach; walking
is optimal over the candidate lists. Stable: a current pair earns a bonus of ``keep_bonus_m`` metres, so
it is broken only to cover someone more or to save more than that much walking; a pinned pair is
not re-decided at all. Explained: every resident left without a buddy gets a reason, and the gaps
are summed per zone into what recruitment would close them.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from ortools.graph.python import max_flow

from registry.assignment import flow
from registry.assignment.geo import Neighbourhood, Pairs, Places, Reachability, haversine_m

IntArray = npt.NDArray[np.int64]

ADULT_AGE = 18
HEBREW = "he"
LANGUAGE_BITS = {"he": 1, "ar": 2, "en": 4, "ru": 8, "am": 16}

# Priority of a resident: 1 plus the weights of their graver needs. The numbers only order
# residents against each other; the flow never trades a primary for a backup whatever they are.
PRIORITY_BASE = 1
PRIORITY_WEIGHTS = {"powered_medical_equipment": 8, "bedridden": 4, "lives_alone_old": 2}
PRIORITY_MAX = PRIORITY_BASE + sum(PRIORITY_WEIGHTS.values())
OLD_AGE = 70
# Rounds of "open the lists of residents on an improving path, solve again" (one is the rule).
_MAX_WIDENING_ROUNDS = 8
# Up to this many (resident, volunteer) pairs in a stage, the augmenting-path search opens every
# resident's full list (exact); beyond, it walks the candidate lists (see _augmenting_pairs).
_EXACT_SEARCH_PAIRS = 5_000_000


class Unassigned(StrEnum):
    """Why a resident has no buddy (a catalog key under ``assign.reason``)."""

    NO_PLACE = "no_place"  # neither coordinates nor zone
    NO_VOLUNTEER_IN_REACH = "no_volunteer_in_reach"
    NO_SHARED_LANGUAGE = "no_shared_language"
    VOLUNTEERS_FULL = "volunteers_full"  # candidates exist, all at capacity with others


class NotBuddy(StrEnum):
    """Why a volunteer takes no buddies."""

    HAS_ROLE = "has_role"
    UNAVAILABLE = "unavailable"
    AGE_UNKNOWN = "age_unknown"
    MINOR = "minor"
    NO_CAPACITY = "no_capacity"


class Released(StrEnum):
    """Why a current pair ends."""

    RESIDENT_GONE = "resident_gone"  # no longer in the list of residents who need help
    VOLUNTEER_GONE = "volunteer_gone"  # opted out, stopped volunteering, took a role...
    OUT_OF_REACH = "out_of_reach"  # moved, or no longer shares the language
    DECLINED = "declined"
    REASSIGNED = "reassigned"  # the optimum covers more residents or walks less without it


@dataclass(frozen=True, slots=True)
class Resident:
    id: int
    zone_id: int | None
    lat: float | None
    lon: float | None
    language: str
    needs: frozenset[str] = frozenset()
    birth_year: int | None = None


@dataclass(frozen=True, slots=True)
class Volunteer:
    id: int
    zone_id: int | None
    lat: float | None
    lon: float | None
    language: str
    languages: frozenset[str] = frozenset()
    capacity: int = 3
    birth_year: int | None = None
    available: bool = True
    role_code: str | None = None

    @property
    def speaks(self) -> frozenset[str]:
        return self.languages | {self.language}


@dataclass(frozen=True, slots=True)
class Buddy:
    """A pair, current or planned. ``distance_m`` is None when it is a same-zone guess."""

    resident_id: int
    volunteer_id: int
    rank: int  # 1 primary, 2 backup
    pinned: bool = False
    distance_m: int | None = None


@dataclass(frozen=True)
class BuddyRules:
    year: int  # the current year, for ages
    reach_m: int = 1500
    keep_bonus_m: int = 1500
    backups: bool = True
    candidate_limit: int | None = 12  # nearest compatible volunteers kept per resident


@dataclass(frozen=True, slots=True)
class BuddyChange:
    kind: str  # "new", "rank", "released"
    resident_id: int
    volunteer_id: int
    rank: int
    old_rank: int | None = None
    reason: str | None = None  # for "released": a :class:`Released` value


@dataclass(frozen=True, slots=True)
class Gap:
    """What recruitment would close a zone's gap: ``volunteers`` more, speaking ``language``."""

    zone_id: int | None
    language: str | None  # None: any volunteer will do
    residents: int
    volunteers: int


@dataclass
class Coverage:
    residents: int = 0
    covered: int = 0
    with_backup: int = 0
    weighted: int = 0  # priority-weighted residents covered
    weighted_total: int = 0
    distance_m: int = 0  # total over measured pairs
    guessed_pairs: int = 0  # same-zone pairs without a measured distance


@dataclass
class BuddyPlan:
    pairs: list[Buddy]
    changes: list[BuddyChange]
    unassigned: dict[int, Unassigned]
    not_buddies: dict[int, NotBuddy]
    gaps: list[Gap]
    coverage: Coverage
    timings: dict[str, float] = field(default_factory=dict)
    arcs: int = 0
    widened: int = 0  # residents whose candidate list was opened in full after a first solve


def age(birth_year: int | None, year: int) -> int | None:
    return None if birth_year is None else year - birth_year


def priority(resident: Resident, year: int) -> int:
    """1 plus the weights of the resident's graver needs (see ``PRIORITY_WEIGHTS``)."""
    score = PRIORITY_BASE
    for need in ("powered_medical_equipment", "bedridden"):
        if need in resident.needs:
            score += PRIORITY_WEIGHTS[need]
    years = age(resident.birth_year, year)
    if "lives_alone" in resident.needs and years is not None and years >= OLD_AGE:
        score += PRIORITY_WEIGHTS["lives_alone_old"]
    return score


def not_buddy(volunteer: Volunteer, year: int) -> NotBuddy | None:
    """Why this volunteer cannot take buddies, or None when they can."""
    if volunteer.role_code is not None:
        return NotBuddy.HAS_ROLE
    if not volunteer.available:
        return NotBuddy.UNAVAILABLE
    years = age(volunteer.birth_year, year)
    if years is None:
        return NotBuddy.AGE_UNKNOWN
    if years < ADULT_AGE:
        return NotBuddy.MINOR
    if volunteer.capacity <= 0:
        return NotBuddy.NO_CAPACITY
    return None


def language_bit(language: str) -> int:
    return 0 if language == HEBREW else LANGUAGE_BITS.get(language, 0)


def _places(people: Sequence[Resident] | Sequence[Volunteer]) -> Places:
    nan = float("nan")
    return Places(
        lat=np.array([nan if p.lat is None else p.lat for p in people], dtype=np.float64),
        lon=np.array([nan if p.lon is None else p.lon for p in people], dtype=np.float64),
        zone=np.array([-1 if p.zone_id is None else p.zone_id for p in people], dtype=np.int64),
    )


@dataclass
class _Problem:
    """The residents and volunteers still to be decided, as arrays."""

    residents: list[Resident]
    volunteers: list[Volunteer]
    places_r: Places
    places_v: Places
    needs_language: IntArray
    speaks: IntArray
    weight: IntArray  # priority per resident
    pinned_count: IntArray  # pinned pairs per resident
    slot: npt.NDArray[np.bool_]  # residents this stage finds a volunteer for
    room: IntArray  # remaining capacity per volunteer
    current: dict[tuple[int, int], int]  # (resident idx, volunteer idx) -> current rank
    excluded: set[tuple[int, int]]  # declined, or already pinned to the resident


def plan_buddies(
    residents: Sequence[Resident],
    volunteers: Sequence[Volunteer],
    *,
    current: Iterable[Buddy] = (),
    declined: Iterable[tuple[int, int]] = (),
    rules: BuddyRules,
) -> BuddyPlan:
    """The optimal buddy plan for these people, and how it differs from ``current``."""
    started = time.perf_counter()
    current = list(current)
    declined_pairs = set(declined)
    resident_ids = {r.id for r in residents}
    volunteer_by_id = {v.id: v for v in volunteers}
    not_buddies = {
        v.id: reason for v in volunteers if (reason := not_buddy(v, rules.year)) is not None
    }
    pool = [v for v in volunteers if v.id not in not_buddies]

    # Pinned pairs are kept as they are while both people are still on the lists.
    pinned = [
        b
        for b in current
        if b.pinned and b.resident_id in resident_ids and b.volunteer_id in volunteer_by_id
    ]
    pinned_load: dict[int, int] = defaultdict(int)
    pinned_ranks: dict[int, set[int]] = defaultdict(set)
    for b in pinned:
        pinned_load[b.volunteer_id] += 1
        pinned_ranks[b.resident_id].add(b.rank)

    problem = _build(residents, pool, current, declined_pairs, pinned, pinned_load, rules)
    timings: dict[str, float] = defaultdict(float)

    # Stage 1, primaries: everyone without a buddy. A current primary keeps the full bonus, a
    # current backup half of it (stepping up keeps a pair the resident knows).
    area = Neighbourhood(
        problem.places_r, problem.places_v, speaks=problem.speaks, reach_m=rules.reach_m
    )
    bonus = {1: rules.keep_bonus_m, 2: rules.keep_bonus_m // 2}
    first = _stage(problem, area, rules, bonus, timings, primaries=True)
    left = np.flatnonzero(problem.slot & ~first.served)
    reachability = area.reachability(left, problem.needs_language)
    chosen: list[tuple[int, int, int, bool, int]] = [(*c, 0) for c in first.chosen]
    arcs, widened = first.arcs, first.widened

    # Stage 2, backups: everyone with exactly one buddy, from the room left; never the same
    # volunteer twice. Primaries are never traded for backups: they are already decided.
    if rules.backups:
        started2 = time.perf_counter()
        used = np.bincount(
            np.array([c[1] for c in first.chosen], dtype=np.int64),
            minlength=len(problem.volunteers),
        )
        room = problem.room - used
        second_problem = replace(
            problem,
            slot=(problem.pinned_count + first.served) == 1,
            room=room,
            excluded=problem.excluded | {(r, v) for r, v, *_ in first.chosen},
        )
        second_area = Neighbourhood(
            problem.places_r, problem.places_v, speaks=problem.speaks, reach_m=rules.reach_m,
            active=room > 0,
        )  # fmt: skip
        timings["candidates_s"] += time.perf_counter() - started2
        second = _stage(
            second_problem, second_area, rules, {1: rules.keep_bonus_m, 2: rules.keep_bonus_m},
            timings, primaries=False,
        )  # fmt: skip
        chosen += [(*c, 1) for c in second.chosen]
        arcs, widened = arcs + second.arcs, widened + second.widened

    new_pairs = _rank(problem, chosen, pinned_ranks)
    pairs = [*pinned, *new_pairs]
    finished = time.perf_counter()

    unassigned = _reasons(problem, reachability, pairs)
    plan = BuddyPlan(
        pairs=sorted(pairs, key=lambda b: (b.resident_id, b.rank)),
        changes=_diff(current, pairs, resident_ids, volunteer_by_id, not_buddies, declined_pairs),
        unassigned=unassigned,
        not_buddies=not_buddies,
        gaps=_gaps(problem, unassigned),
        coverage=_coverage(residents, pairs, rules.year),
        arcs=arcs,
        widened=widened,
    )
    plan.timings = {**timings, "total_s": finished - started}
    return plan


@dataclass
class _Stage:
    chosen: Chosen
    served: npt.NDArray[np.bool_]  # per resident: got a pair in this stage
    arcs: int
    widened: int


def _stage(
    problem: _Problem,
    area: Neighbourhood,
    rules: BuddyRules,
    bonus: dict[int, int],
    timings: dict[str, float],
    *,
    primaries: bool,
) -> _Stage:
    """One volunteer for each resident with a slot: most priority-weighted coverage, then the
    least walking. Candidate lists are cut to the nearest few; the augmenting-path search then
    opens the full lists wherever that could cover more (see :func:`_augmenting_pairs`)."""
    started = time.perf_counter()
    wanted = np.flatnonzero(problem.slot)
    pairs_found = _candidates(problem, area, wanted, rules, rules.candidate_limit)
    prepared = time.perf_counter()
    timings["candidates_s"] += prepared - started
    chosen = _flow(problem, pairs_found, rules, bonus)
    widened = 0
    full_lists: dict[int, list[tuple[int, int, bool]]] = {}  # shared by every round
    # Primaries: always the full search. Backups ("where volunteers suffice"): the full search
    # in towns of some ten thousand people; beyond, backups are optimal over the candidate lists
    # (most residents can have none there, and searching for each would dominate the run).
    exact = primaries or len(wanted) * len(problem.volunteers) <= _EXACT_SEARCH_PAIRS
    rounds = _MAX_WIDENING_ROUNDS if rules.candidate_limit is not None and exact else 0
    for _ in range(rounds):
        # Augmenting paths alone first (so the lists hold a largest matching), then exchanges.
        hint = None if exact else pairs_found
        searching = time.perf_counter()
        extra = Pairs.join(
            [
                _augmenting_pairs(
                    problem, area, chosen, exchanges=False, lists=full_lists, candidates=hint
                ),
                _augmenting_pairs(
                    problem, area, chosen, exchanges=True, lists=full_lists, candidates=hint
                ),
            ]
        )
        timings["search_primaries_s" if primaries else "search_backups_s"] += (
            time.perf_counter() - searching
        )
        if not len(extra):
            break
        widened += len(extra)
        pairs_found = _dedupe(Pairs.join([pairs_found, extra]), len(problem.volunteers))
        chosen = _flow(problem, pairs_found, rules, bonus)
    timings["solve_s"] += time.perf_counter() - prepared
    served = np.zeros(len(problem.residents), dtype=bool)
    served[[c[0] for c in chosen]] = True
    return _Stage(chosen=chosen, served=served, arcs=len(pairs_found), widened=widened)


def _build(
    residents: Sequence[Resident],
    pool: Sequence[Volunteer],
    current: Sequence[Buddy],
    declined: set[tuple[int, int]],
    pinned: Sequence[Buddy],
    pinned_load: dict[int, int],
    rules: BuddyRules,
) -> _Problem:
    r_index = {r.id: i for i, r in enumerate(residents)}
    v_index = {v.id: i for i, v in enumerate(pool)}
    pinned_count: dict[int, int] = defaultdict(int)
    for b in pinned:
        pinned_count[b.resident_id] += 1
    count = np.array([pinned_count.get(r.id, 0) for r in residents], dtype=np.int64)
    excluded = {(r_index[r], v_index[v]) for r, v in declined if r in r_index and v in v_index} | {
        (r_index[b.resident_id], v_index[b.volunteer_id])
        for b in pinned
        if b.volunteer_id in v_index
    }
    return _Problem(
        residents=list(residents),
        volunteers=list(pool),
        places_r=_places(residents),
        places_v=_places(pool),
        needs_language=np.array([language_bit(r.language) for r in residents], dtype=np.int64),
        speaks=np.array(
            [sum(LANGUAGE_BITS.get(lang, 0) for lang in v.speaks) for v in pool], dtype=np.int64
        ),
        weight=np.array([priority(r, rules.year) for r in residents], dtype=np.int64),
        pinned_count=count,
        slot=count == 0,
        room=np.array(
            [max(0, v.capacity - pinned_load.get(v.id, 0)) for v in pool], dtype=np.int64
        ),
        current={
            (r_index[b.resident_id], v_index[b.volunteer_id]): b.rank
            for b in current
            if not b.pinned and b.resident_id in r_index and b.volunteer_id in v_index
        },
        excluded=excluded,
    )


def _candidates(
    problem: _Problem,
    area: Neighbourhood,
    residents: IntArray,
    rules: BuddyRules,
    limit: int | None,
) -> Pairs:
    """Pairs within reach for these residents, plus their current pairs the limit cut off (when
    still valid), minus declined and pinned ones."""
    found = area.pairs(residents, problem.needs_language, limit)
    n_v = max(1, len(problem.volunteers))
    if limit is not None:
        found = _dedupe(
            Pairs.join([found, area.nearest_residents(residents, problem.needs_language, limit)]),
            n_v,
        )
    known = set((found.resident * n_v + found.volunteer).tolist())
    asked = set(residents.tolist())
    extra = [(r, v) for (r, v) in problem.current if r in asked and (r * n_v + v) not in known]
    if extra:
        er = np.array([r for r, _ in extra], dtype=np.int64)
        ev = np.array([v for _, v in extra], dtype=np.int64)
        pr, pv = problem.places_r, problem.places_v
        both = pr.located[er] & pv.located[ev]
        d = np.where(
            both,
            haversine_m(
                np.nan_to_num(pr.lat[er]), np.nan_to_num(pr.lon[er]),
                np.nan_to_num(pv.lat[ev]), np.nan_to_num(pv.lon[ev]),
            ),
            float(rules.reach_m),
        )  # fmt: skip
        same_zone = (pr.zone[er] >= 0) & (pr.zone[er] == pv.zone[ev])
        need = problem.needs_language[er]
        ok = np.where(both, d <= rules.reach_m, same_zone) & (
            (need == 0) | ((problem.speaks[ev] & need) != 0)
        )
        found = Pairs.join(
            [found, Pairs(er[ok], ev[ok], np.rint(d[ok]).astype(np.int64), both[ok])]
        )
    if problem.excluded:
        ex = np.array([r * n_v + v for r, v in problem.excluded], dtype=np.int64)
        found = found.select(~np.isin(found.resident * n_v + found.volunteer, ex))
    return found


def _dedupe(pairs: Pairs, n_v: int) -> Pairs:
    _, first = np.unique(pairs.resident * max(1, n_v) + pairs.volunteer, return_index=True)
    return pairs.select(np.sort(first))


def _augmenting_pairs(
    problem: _Problem,
    area: Neighbourhood,
    chosen: Sequence[tuple[int, int]] | Chosen,
    *,
    exchanges: bool,
    lists: dict[int, list[tuple[int, int, bool]]],
    candidates: Pairs | None = None,
) -> Pairs:
    """Pairs outside the candidate lists that would let more residents have a buddy.

    Primaries only (backups give way to primaries anyway). From each resident without a buddy,
    highest priority first, a breadth-first search alternates "a volunteer within reach" and "a
    resident that volunteer already serves", opening each visited resident's full list, until it
    finds a volunteer with room (an augmenting path: one more resident covered) or a resident of
    lower priority (an exchange: graver needs first). When no path exists from a resident, none
    appears later either (a classic property of bipartite matching). The residents that can be
    covered together form a matroid, so once no resident without a buddy has such a path, the
    covered set is both the largest possible and the best by priority over *all* pairs.

    Opening every list is affordable in towns of some ten thousand people; in a dense town of a
    hundred thousand a resident has thousands of volunteers in reach. There (``candidates``
    given) the search walks the candidate lists and adds, at each resident, only the volunteers
    in reach who still have room: every last hop is still searched in full, the inner hops along
    the candidate lists. The bench checks the coverage against an independent upper bound.
    """
    with_slot = problem.slot
    members: dict[int, list[int]] = defaultdict(list)
    primary_of: dict[int, int] = {}
    by_resident: dict[int, list[int]] = defaultdict(list)
    for r, v, *_ in chosen:
        by_resident[r].append(v)
    for r, vs in by_resident.items():
        if with_slot[r]:
            primary_of[r] = vs[0]
            members[vs[0]].append(r)
    load = {v: len(rs) for v, rs in members.items()}
    excluded: dict[int, set[int]] = defaultdict(set)
    for r, v in problem.excluded:
        excluded[r].add(v)

    # Volunteers with room when the pass starts: asked first at every resident the search
    # visits, which ends most searches one step after they start (none gains room later).
    has_room = problem.room > 0
    for v, n in load.items():
        has_room[v] = n < problem.room[v]
    with_room = Neighbourhood(
        problem.places_r, problem.places_v, speaks=problem.speaks, reach_m=area.reach_m,
        active=has_room,
    )  # fmt: skip

    def _usable(r: int, v: int) -> bool:
        return v not in excluded.get(r, ()) and load.get(v, 0) < problem.room[v]

    if candidates is not None:
        lists = defaultdict(list)
        for r, v, d, m in zip(
            candidates.resident.tolist(), candidates.volunteer.tolist(),
            candidates.distance_m.tolist(), candidates.measured.tolist(), strict=True,
        ):  # fmt: skip
            lists[r].append((v, d, m))
        opened: set[int] = set()

    def full_list(r: int) -> list[tuple[int, int, bool]]:
        if candidates is not None:
            if r not in opened:
                opened.add(r)
                vols, metres, measured = with_room.around(r, int(problem.needs_language[r]))
                skip = excluded.get(r, set())
                lists[r] = [
                    (v, d, m)
                    for v, d, m in zip(vols, metres, measured, strict=True)
                    if v not in skip
                ] + [p for p in lists.get(r, []) if p[0] not in skip]
            return lists[r]
        if r not in lists:
            vols, metres, measured = area.around(r, int(problem.needs_language[r]))
            skip = excluded.get(r, set())
            lists[r] = [
                (v, d, m) for v, d, m in zip(vols, metres, measured, strict=True) if v not in skip
            ]
        return lists[r]

    added: dict[tuple[int, int], tuple[int, bool]] = {}
    left = [r for r in np.flatnonzero(with_slot).tolist() if r not in primary_of]
    left.sort(key=lambda r: -int(problem.weight[r]))
    # Volunteers a failed search went through lead nowhere for later searches either (they
    # start from residents of equal or lower priority): the Hungarian method's dead set. It
    # keeps the whole pass near one sweep of the town instead of one sweep per resident.
    dead: set[int] = set()
    for u in left:
        came_from: dict[int, int] = {}  # volunteer -> resident who reached it
        via: dict[int, int] = {u: -1}  # resident -> volunteer they were reached through
        frontier = [u]
        free = -1
        while frontier and free < 0:
            # Level by level: first ask, in one batch, whether any resident of this level has a
            # volunteer with room in reach (cheap); only then open their full lists.
            hit = with_room.first_free(frontier, problem.needs_language, lambda r, v: _usable(r, v))
            if hit is not None:
                r, v = hit
                came_from[v] = r
                free = v
                break
            following: list[int] = []
            for r in frontier:
                for v, _, _ in full_list(r):
                    if v in came_from or v in dead:
                        continue
                    came_from[v] = r
                    if load.get(v, 0) < problem.room[v]:
                        free = v
                        break
                    for other in members.get(v, ()):
                        if other in via:
                            continue
                        via[other] = v
                        following.append(other)
                        if exchanges and problem.weight[other] < problem.weight[u]:
                            # An exchange: ``other`` gives way to the graver need of ``u``.
                            members[v].remove(other)
                            load[v] -= 1
                            del primary_of[other]
                            free = v
                            break
                    if free >= 0:
                        break
                if free >= 0:
                    break
            frontier = following
        if free < 0:
            dead.update(came_from)
            continue
        v = free
        while True:  # walk the path back, moving each resident to the volunteer ahead of it
            r = came_from[v]
            old = primary_of.get(r)
            if old is not None:
                members[old].remove(r)
                load[old] -= 1
            primary_of[r] = v
            members[v].append(r)
            load[v] = load.get(v, 0) + 1
            for w, d, m in full_list(r):
                if w == v:
                    added[(r, v)] = (d, m)
            if r == u:
                break
            v = via[r]
    if not added:
        return Pairs.empty()
    keys = list(added)
    return Pairs(
        np.array([r for r, _ in keys], dtype=np.int64),
        np.array([v for _, v in keys], dtype=np.int64),
        np.array([added[k][0] for k in keys], dtype=np.int64),
        np.array([added[k][1] for k in keys], dtype=bool),
    )


Chosen = list[tuple[int, int, int, bool]]  # resident idx, volunteer idx, distance, measured


def _flow(problem: _Problem, reach: Pairs, rules: BuddyRules, bonus: dict[int, int]) -> Chosen:
    """One min-cost flow: each resident with a slot gets at most one of their candidates.

    A slot filled is worth ``scale`` times the resident's priority, a pair costs its walk minus
    the bonus for keeping a current pair; ``scale`` is the bound of
    :func:`flow.coverage_scale`, so the optimum is lexicographic: coverage, then walking.
    """
    n_r, n_v = len(problem.residents), len(problem.volunteers)
    source, sink, r0, v0 = 0, 1, 2, 2 + n_r
    n_arcs = len(reach.resident)
    keep = np.zeros(n_arcs, dtype=np.int64)
    if problem.current and n_arcs:
        width = max(1, n_v)
        keys = reach.resident * width + reach.volunteer
        for rank, amount in bonus.items():
            cur = [r * width + v for (r, v), k in problem.current.items() if k == rank]
            if cur and amount:
                keep += amount * np.isin(keys, np.array(cur, dtype=np.int64))
    pair_cost = reach.distance_m - keep
    spread = int(reach.distance_m.max(initial=0)) + max(bonus.values(), default=0)
    scale = flow.coverage_scale(path_arcs=2 * min(n_r, n_v) + 2, spread=spread)

    slots = np.flatnonzero(problem.slot)
    units = len(slots)
    tail = np.concatenate([
        np.full(units, source, dtype=np.int64),
        r0 + reach.resident,
        v0 + np.arange(n_v, dtype=np.int64),
        np.array([source], dtype=np.int64),
    ])  # fmt: skip
    head = np.concatenate([
        r0 + slots,
        v0 + reach.volunteer,
        np.full(n_v, sink, dtype=np.int64),
        np.array([sink], dtype=np.int64),
    ])  # fmt: skip
    capacity = np.concatenate([
        np.ones(units + n_arcs, dtype=np.int64),
        problem.room,
        np.array([units], dtype=np.int64),
    ])  # fmt: skip
    cost = np.concatenate([
        -scale * problem.weight[slots],
        pair_cost,
        np.zeros(n_v + 1, dtype=np.int64),
    ])  # fmt: skip
    supply = np.zeros(v0 + n_v, dtype=np.int64)
    supply[source], supply[sink] = units, -units
    flows = flow.solve(flow.Network(v0 + n_v, tail, head, capacity, cost, supply))
    used = np.flatnonzero(flows[units : units + n_arcs] > 0)
    return list(
        zip(
            reach.resident[used].tolist(),
            reach.volunteer[used].tolist(),
            reach.distance_m[used].tolist(),
            reach.measured[used].tolist(),
            strict=True,
        )
    )


def _rank(
    problem: _Problem,
    chosen: Sequence[tuple[int, int, int, bool, int]],
    pinned_ranks: dict[int, set[int]],
) -> list[Buddy]:
    """Ranks: the stage-1 pick takes the lowest rank a pinned pair leaves free, stage 2 the next."""
    out: list[Buddy] = []
    by_resident: dict[int, list[tuple[int, int, int, bool, int]]] = defaultdict(list)
    for pick in chosen:
        by_resident[pick[0]].append(pick)
    for r, picks in by_resident.items():
        resident = problem.residents[r]
        free = sorted({1, 2} - pinned_ranks.get(resident.id, set()))
        for (_, v, d, measured, _), rank in zip(
            sorted(picks, key=lambda p: p[4]), free, strict=False
        ):
            out.append(
                Buddy(
                    resident_id=resident.id,
                    volunteer_id=problem.volunteers[v].id,
                    rank=rank,
                    distance_m=d if measured else None,
                )
            )
    return out


def _reasons(
    problem: _Problem, reach: Reachability, pairs: Sequence[Buddy]
) -> dict[int, Unassigned]:
    covered = {b.resident_id for b in pairs}
    reasons: dict[int, Unassigned] = {}
    located, zoned = problem.places_r.located, problem.places_r.zone >= 0
    for i, resident in enumerate(problem.residents):
        if resident.id in covered:
            continue
        if not located[i] and not zoned[i]:
            reasons[resident.id] = Unassigned.NO_PLACE
        elif reach.in_reach[i] == 0:
            reasons[resident.id] = Unassigned.NO_VOLUNTEER_IN_REACH
        elif reach.eligible[i] == 0:
            reasons[resident.id] = Unassigned.NO_SHARED_LANGUAGE
        else:
            reasons[resident.id] = Unassigned.VOLUNTEERS_FULL
    return reasons


def _gaps(problem: _Problem, unassigned: dict[int, Unassigned]) -> list[Gap]:
    """Per zone and needed language: how many residents, and how many volunteers would cover them."""
    rooms = [v.capacity for v in problem.volunteers if v.capacity > 0]
    typical = max(1, int(np.median(rooms))) if rooms else 3
    counts: dict[tuple[int | None, str | None], int] = defaultdict(int)
    for resident in problem.residents:
        reason = unassigned.get(resident.id)
        if reason is None or reason is Unassigned.NO_PLACE:
            continue
        language = None if resident.language == HEBREW else resident.language
        counts[(resident.zone_id, language)] += 1
    return [
        Gap(zone_id=zone, language=language, residents=n, volunteers=math.ceil(n / typical))
        for (zone, language), n in sorted(
            counts.items(), key=lambda item: (-item[1], item[0][0] or 0, item[0][1] or "")
        )
    ]


def _coverage(residents: Sequence[Resident], pairs: Sequence[Buddy], year: int) -> Coverage:
    ranks: dict[int, int] = defaultdict(int)
    for b in pairs:
        ranks[b.resident_id] += 1
    coverage = Coverage(residents=len(residents))
    for resident in residents:
        weight = priority(resident, year)
        coverage.weighted_total += weight
        if ranks.get(resident.id, 0) >= 1:
            coverage.covered += 1
            coverage.weighted += weight
        if ranks.get(resident.id, 0) >= 2:
            coverage.with_backup += 1
    for b in pairs:
        if b.distance_m is None:
            coverage.guessed_pairs += 1
        else:
            coverage.distance_m += b.distance_m
    return coverage


def _diff(
    current: Sequence[Buddy],
    pairs: Sequence[Buddy],
    resident_ids: set[int],
    volunteer_by_id: dict[int, Volunteer],
    not_buddies: dict[int, NotBuddy],
    declined: set[tuple[int, int]],
) -> list[BuddyChange]:
    planned = {(b.resident_id, b.volunteer_id): b for b in pairs}
    changes: list[BuddyChange] = []
    for b in current:
        key = (b.resident_id, b.volunteer_id)
        kept = planned.get(key)
        if kept is None:
            if b.resident_id not in resident_ids:
                reason = Released.RESIDENT_GONE
            elif b.volunteer_id not in volunteer_by_id or b.volunteer_id in not_buddies:
                reason = Released.VOLUNTEER_GONE
            elif key in declined:
                reason = Released.DECLINED
            else:
                reason = Released.REASSIGNED
            changes.append(BuddyChange("released", *key, rank=b.rank, reason=reason))
        elif kept.rank != b.rank:
            changes.append(BuddyChange("rank", *key, rank=kept.rank, old_rank=b.rank))
    known = {(b.resident_id, b.volunteer_id) for b in current}
    changes.extend(
        BuddyChange("new", b.resident_id, b.volunteer_id, rank=b.rank)
        for b in pairs
        if (b.resident_id, b.volunteer_id) not in known
    )
    return changes


def primary_upper_bound(
    residents: Sequence[Resident],
    volunteers: Sequence[Volunteer],
    *,
    rules: BuddyRules,
) -> int:
    """Most residents that could have a buddy at all: a maximum matching over every pair within
    reach (no candidate limit), found by a max flow on the limited lists and then augmenting
    paths over the full lists (see :func:`_augmenting_pairs`)."""
    pool = [v for v in volunteers if not_buddy(v, rules.year) is None]
    problem = _build(residents, pool, (), set(), (), {}, replace(rules, backups=False))
    area = Neighbourhood(
        problem.places_r, problem.places_v, speaks=problem.speaks, reach_m=rules.reach_m
    )
    everyone = np.arange(len(residents), dtype=np.int64)
    pairs_found = area.pairs(everyone, problem.needs_language, rules.candidate_limit)
    n_r, n_v = len(residents), len(pool)
    if not len(pairs_found):
        return 0
    smf = max_flow.SimpleMaxFlow()
    source, sink, r0, v0 = 0, 1, 2, 2 + n_r
    tail = np.concatenate([
        np.zeros(n_r, dtype=np.int64), r0 + pairs_found.resident, v0 + np.arange(n_v, dtype=np.int64)
    ])  # fmt: skip
    head = np.concatenate([
        r0 + everyone, v0 + pairs_found.volunteer, np.full(n_v, sink, dtype=np.int64)
    ])  # fmt: skip
    capacity = np.concatenate([np.ones(n_r + len(pairs_found), dtype=np.int64), problem.room])
    smf.add_arcs_with_capacity(tail, head, capacity)
    if smf.solve(source, sink) != smf.OPTIMAL:
        raise flow.FlowError("max flow failed")
    flows = smf.flows(np.arange(n_r, n_r + len(pairs_found), dtype=np.int64))
    used = np.flatnonzero(flows > 0)
    matched = list(
        zip(pairs_found.resident[used].tolist(), pairs_found.volunteer[used].tolist(), strict=True)
    )
    extra = _augmenting_pairs(problem, area, matched, exchanges=False, lists={})
    if not len(extra):
        return len(matched)
    # Each augmenting path adds exactly one resident.
    return len(matched) + len(set(extra.resident.tolist()) - {r for r, _ in matched})
