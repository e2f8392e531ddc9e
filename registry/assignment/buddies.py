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

Optimal, not greedy, in two stages. Primaries: the priority-weighted number of residents with a
buddy is maximised first, then their total walking. Backups: the same for the residents who have
one buddy, from the room left, never with the same volunteer twice; a backup is never bought with
someone's primary. Each stage finds its coverage by a max flow and augmenting/exchange paths
(:func:`_best_coverage`), then solves one min-cost flow in plain metres that must cover as many
residents of each priority as that (:func:`_flow`; see :func:`_stage` for why this is the
lexicographic optimum). Candidate lists are cut to the nearest few per resident (k-d trees); the
path search runs over the full lists and adds the pairs the cut would have cost, so coverage is
the maximum over *all* pairs within reach. The walking is priced over all pairs within reach too
(:func:`_walking`: the flow's potentials find the pairs outside the lists that would shorten the
walks, and the flow is solved again with them): proven least over every pair within reach in a
small town or with ``BuddyRules.prove_walking``; otherwise the candidate lists' optimum. Stable: a current pair
earns a bonus of ``keep_bonus_m`` metres, so it is broken only to cover someone more or to save
more than that much walking; a pinned pair is not re-decided at all. Explained: every resident
left without a buddy gets a reason, and the gaps are summed per zone into what recruitment would
close them.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from ortools.graph.python import max_flow

from registry.assignment import flow
from registry.assignment.geo import Neighbourhood, Pairs, Places, Reachability
from registry.rules import ADULT_AGE, age, haversine_m

IntArray = npt.NDArray[np.int64]

HEBREW = "he"
LANGUAGE_BITS = {"he": 1, "ar": 2, "en": 4, "ru": 8, "am": 16}

# Priority of a resident: 1 plus the weights of their graver needs. The numbers only order
# residents against each other; the flow never trades a primary for a backup whatever they are.
PRIORITY_BASE = 1
PRIORITY_WEIGHTS = {"powered_medical_equipment": 8, "bedridden": 4, "lives_alone_old": 2}
PRIORITY_MAX = PRIORITY_BASE + sum(PRIORITY_WEIGHTS.values())
OLD_AGE = 70
# Passes of augmenting and exchange paths before the coverage is taken as it is (a pass that
# changes nothing ends the search; two are the rule).
_MAX_SEARCH_ROUNDS = 32
# Up to this many (resident, volunteer) pairs in a backup stage, the path search opens every
# resident's full list (exact); beyond, backups are the heaviest over the candidate lists.
# Primaries are always searched in full.
_EXACT_SEARCH_PAIRS = 5_000_000
# The walking's pricing rounds (potentials, a search for pairs outside the arcs that would
# shorten the walks, a new solve with them; see :func:`_walking`). Up to _EXACT_SEARCH_PAIRS
# pairs, or when the rules ask for the proof: until none is left, at most _MAX_PRICING_ROUNDS.
# Beyond: _CHEAP_PRICING_ROUNDS. In the 100,000-person town one round would take most of the
# gain (755 km of primaries' walking down to 667; proven least: 660, after 7 solves) for about a
# second, but a round that stops short of the proof leaves savings for the next run to find:
# a re-run with nothing changed moved some 95 pairs, and each move asks two volunteers to
# confirm again. Stability wins by default; ``prove_walking`` gives the proven least, which a
# re-run then keeps.
_MAX_PRICING_ROUNDS = 32
_CHEAP_PRICING_ROUNDS = 0
# Pairs a round adds per resident: the most negative few (partial pricing).
_PRICED_PER_RESIDENT = 8
_OUT_OF_SIGHT = 10**12  # metres: a volunteer's lift that no resident's budget reaches


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
    # The least walking proven over every pair within reach, not only the candidate lists, at
    # any size (column generation, see :func:`_walking`); small towns always have the proof.
    prove_walking: bool = False


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
    unassigned: dict[int, str]  # an :class:`Unassigned`, or the policy's true cause
    not_buddies: dict[int, NotBuddy]
    gaps: list[Gap]
    coverage: Coverage
    timings: dict[str, float] = field(default_factory=dict)
    arcs: int = 0
    widened: int = 0  # residents whose candidate list was opened in full after a first solve
    priced: int = 0  # pairs the walking's pricing added (see ``BuddyRules.prove_walking``)
    walking_proven: bool = False  # least walking over every pair within reach, in every stage


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


Chosen = list[tuple[int, int, int, bool]]  # resident idx, volunteer idx, distance, measured
# One resident's list: volunteer indexes, metres, measured (parallel arrays).
_List = tuple[npt.NDArray[np.integer], npt.NDArray[np.integer], npt.NDArray[np.bool_]]


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
    boost: Mapping[int, int] | None = None,
    report: bool = True,
) -> BuddyPlan:
    """The optimal buddy plan for these people, and how it differs from ``current``.

    ``boost``: added to a resident's priority (resident id -> weight): a policy's earlier tier
    weighs more than any later one's (see :mod:`registry.assignment.tiers`). Without
    ``report`` only the pairs are made (no changes, reasons, gaps or coverage): a policy's
    inner passes report once, at the end.
    """
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

    problem = _build(
        residents, pool, current, declined_pairs, pinned, pinned_load, rules, boost or {}
    )
    timings: dict[str, float] = defaultdict(float)

    # Stage 1, primaries: everyone without a buddy. A current primary keeps the full bonus, a
    # current backup half of it (stepping up keeps a pair the resident knows).
    area = Neighbourhood(
        problem.places_r, problem.places_v, speaks=problem.speaks, reach_m=rules.reach_m
    )
    bonus = {1: rules.keep_bonus_m, 2: rules.keep_bonus_m // 2}
    first = _stage(problem, area, rules, bonus, timings, primaries=True)
    left = np.flatnonzero(problem.slot & ~first.served)
    reachability = area.reachability(left if report else left[:0], problem.needs_language)
    chosen: list[tuple[int, int, int, bool, int]] = [(*c, 0) for c in first.chosen]
    arcs, widened = first.arcs, first.widened
    priced, proven = first.priced, first.proven

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
        priced, proven = priced + second.priced, proven and second.proven

    new_pairs = _rank(problem, chosen, pinned_ranks)
    pairs = [*pinned, *new_pairs]
    finished = time.perf_counter()

    unassigned = _reasons(problem, reachability, pairs) if report else {}
    plan = BuddyPlan(
        pairs=sorted(pairs, key=lambda b: (b.resident_id, b.rank)),
        changes=_diff(current, pairs, resident_ids, volunteer_by_id, not_buddies, declined_pairs)
        if report
        else [],
        unassigned=unassigned,
        not_buddies=not_buddies,
        gaps=_gaps(problem, unassigned) if report else [],
        coverage=_coverage(residents, pairs, rules.year) if report else Coverage(),
        arcs=arcs,
        widened=widened,
        priced=priced,
        walking_proven=proven,
    )
    plan.timings = {**timings, "total_s": finished - started}
    return plan


@dataclass
class _Stage:
    chosen: Chosen
    served: npt.NDArray[np.bool_]  # per resident: got a pair in this stage
    arcs: int
    widened: int
    priced: int = 0  # pairs the pricing added to the walking flow
    proven: bool = False  # walking proven least over every pair within reach


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
    least walking, in two steps that never build a scaled cost.

    1. Coverage (:func:`_best_coverage`): a maximum matching over the candidate lists (one max
       flow), improved by augmenting and exchange paths over the full lists until none is left.
       It says how many residents of each priority the optimum covers: in a matroid (the sets of
       residents that can be covered together form one) every heaviest basis holds the same
       number of elements of each weight.
    2. Walking (:func:`_flow`): one min-cost flow over the candidate lists plus the pairs the
       search used, covering exactly that many residents of each priority, costs in metres only.
       Every plan it may choose is a heaviest one, and it chooses the one with the least walking.
    """
    started = time.perf_counter()
    wanted = np.flatnonzero(problem.slot)
    if not len(wanted):
        # Nobody to find a volunteer for (the backups' pass has every primary pinned).
        return _Stage([], np.zeros(len(problem.residents), dtype=bool), 0, 0, proven=True)
    pairs_found = _candidates(problem, area, wanted, rules, rules.candidate_limit)
    prepared = time.perf_counter()
    timings["candidates_s"] += prepared - started
    # Primaries: always the search over the full lists. Backups ("where volunteers suffice"): the
    # full search in towns of some ten thousand people; beyond, backups are optimal over the
    # candidate lists (most residents can have none there, and opening every list would dominate
    # the run). Without a candidate limit the lists are already full.
    full = rules.candidate_limit is not None and (
        primaries or len(wanted) * len(problem.volunteers) <= _EXACT_SEARCH_PAIRS
    )
    covered, extra = _best_coverage(problem, area, pairs_found, open_lists=full)
    searched = time.perf_counter()
    timings["search_primaries_s" if primaries else "search_backups_s"] += searched - prepared
    arcs = len(pairs_found)
    if len(extra):
        pairs_found = _dedupe(Pairs.join([pairs_found, extra]), len(problem.volunteers))
    chosen, priced, proven = _walking(
        problem, area, pairs_found, covered, bonus, timings, prove=rules.prove_walking
    )
    timings["solve_s"] += time.perf_counter() - prepared
    served = np.zeros(len(problem.residents), dtype=bool)
    served[[c[0] for c in chosen]] = True
    return _Stage(
        chosen=chosen, served=served, arcs=len(pairs_found) + priced,
        widened=len(pairs_found) - arcs, priced=priced, proven=proven,
    )  # fmt: skip


def _build(
    residents: Sequence[Resident],
    pool: Sequence[Volunteer],
    current: Sequence[Buddy],
    declined: set[tuple[int, int]],
    pinned: Sequence[Buddy],
    pinned_load: dict[int, int],
    rules: BuddyRules,
    boost: Mapping[int, int],
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
        weight=np.array(
            [priority(r, rules.year) + boost.get(r.id, 0) for r in residents], dtype=np.int64
        ),
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
    extra = np.array(list(problem.current), dtype=np.int64).reshape(-1, 2)
    asked = np.zeros(len(problem.residents), dtype=bool)
    asked[residents] = True
    extra = extra[asked[extra[:, 0]]]
    extra = extra[~_among(extra[:, 0] * n_v + extra[:, 1], found.resident * n_v + found.volunteer)]
    if len(extra):
        er, ev = extra[:, 0], extra[:, 1]
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


def _among(keys: IntArray, pool: IntArray) -> npt.NDArray[np.bool_]:
    """``np.isin(keys, pool)`` for few keys in a large pool, by binary search (``np.isin``
    takes ten times as long there: 0.3 s for the current pairs among a large town's arcs)."""
    if not len(pool):
        return np.zeros(len(keys), dtype=bool)
    ordered = np.sort(pool)
    at = np.minimum(np.searchsorted(ordered, keys), len(ordered) - 1)
    found: npt.NDArray[np.bool_] = ordered[at] == keys
    return found


def _dedupe(pairs: Pairs, n_v: int) -> Pairs:
    _, first = np.unique(pairs.resident * max(1, n_v) + pairs.volunteer, return_index=True)
    return pairs.select(np.sort(first))


@dataclass(frozen=True)
class _Bipartite:
    """Source → each open resident slot → their candidate volunteers → sink, as arc arrays in
    that order (slots, pairs, volunteers), with the room of each volunteer on its sink arc."""

    nodes: int
    slots: IntArray
    tail: IntArray
    head: IntArray
    capacity: IntArray

    SOURCE = 0
    SINK = 1

    @classmethod
    def of(cls, problem: _Problem, pairs: Pairs) -> _Bipartite:
        n_r, n_v = len(problem.residents), len(problem.volunteers)
        slots = np.flatnonzero(problem.slot)
        r0, v0 = 2, 2 + n_r
        tail = np.concatenate([
            np.full(len(slots), cls.SOURCE, dtype=np.int64), r0 + pairs.resident,
            v0 + np.arange(n_v, dtype=np.int64),
        ])  # fmt: skip
        head = np.concatenate([
            r0 + slots, v0 + pairs.volunteer, np.full(n_v, cls.SINK, dtype=np.int64)
        ])  # fmt: skip
        capacity = np.concatenate([np.ones(len(slots) + len(pairs), dtype=np.int64), problem.room])
        return cls(v0 + n_v, slots, tail, head, capacity)

    def used_pairs(self, pairs: Pairs, flows: IntArray) -> dict[int, int]:
        """The pairs carrying flow (``flows`` indexed like the arcs), resident -> volunteer."""
        first = len(self.slots)
        used = np.flatnonzero(flows[first : first + len(pairs)] > 0)
        return dict(zip(pairs.resident[used].tolist(), pairs.volunteer[used].tolist(), strict=True))


def _max_matching(problem: _Problem, pairs: Pairs) -> dict[int, int]:
    """A maximum matching over ``pairs`` (resident -> volunteer): one max flow, no costs."""
    if not len(pairs):
        return {}
    net = _Bipartite.of(problem, pairs)
    smf = max_flow.SimpleMaxFlow()
    smf.add_arcs_with_capacity(net.tail, net.head, net.capacity)
    if smf.solve(net.SOURCE, net.SINK) != smf.OPTIMAL:
        raise flow.FlowError("max flow failed")
    return net.used_pairs(pairs, smf.flows(np.arange(len(net.tail), dtype=np.int64)))


def _heaviest_matching(problem: _Problem, pairs: Pairs) -> dict[int, int]:
    """The heaviest matching over ``pairs`` alone: a min-cost flow whose only costs are the
    residents' priorities (small numbers, so the solver's cost scaling has few phases)."""
    if not len(pairs):
        return {}
    net = _Bipartite.of(problem, pairs)
    n_slots = len(net.slots)
    # A bypass arc source → sink lets slots stay unmatched at no cost.
    tail = np.append(net.tail, net.SOURCE)
    head = np.append(net.head, net.SINK)
    capacity = np.append(net.capacity, n_slots)
    cost = np.concatenate(
        [-problem.weight[net.slots], np.zeros(len(tail) - n_slots, dtype=np.int64)]
    )
    supply = np.zeros(net.nodes, dtype=np.int64)
    supply[net.SOURCE], supply[net.SINK] = n_slots, -n_slots
    flows = flow.solve(flow.Network(net.nodes, tail, head, capacity, cost, supply))
    return net.used_pairs(pairs, flows)


def _best_coverage(
    problem: _Problem, area: Neighbourhood, pairs: Pairs, *, open_lists: bool
) -> tuple[dict[int, int], Pairs]:
    """The heaviest coverage (priority-weighted): a matching resident -> volunteer, and the pairs
    outside ``pairs`` it uses.

    A maximum matching over the candidate lists first, then passes of :func:`_augmenting_pairs`
    (augmenting paths, then exchanges that give a graver need the place of a lighter one) until a
    whole pass changes nothing: then no augmenting or improving exchange path is left, which is
    the optimality certificate of a heaviest basis in a matroid. The paths run over every pair
    within reach. Without ``open_lists``: the heaviest matching over ``pairs`` alone.
    """
    if not open_lists:
        return _heaviest_matching(problem, pairs), Pairs.empty()
    matching = _max_matching(problem, pairs)
    # First the heaviest over the candidate lists (cheap: short lists, nothing to open), then
    # over every pair within reach, which then has only the last few paths left to find. Over
    # the lists the matching is already maximum, so only exchanges are looked for there: a
    # maximum matching has no augmenting path, and an exchange keeps the number matched.
    matching, _ = _passes(
        problem, area, matching, _CandidateLists(pairs, len(problem.residents)),
        open_lists=False, maximum=True,
    )  # fmt: skip
    return _passes(problem, area, matching, {}, open_lists=True)


class _CandidateLists(dict[int, _List]):
    """Each resident's candidate list, made when first asked for (the search visits few)."""

    def __init__(self, pairs: Pairs, residents: int) -> None:
        super().__init__()
        self._pairs = pairs.select(np.argsort(pairs.resident, kind="stable"))
        self._starts = np.searchsorted(self._pairs.resident, np.arange(residents + 1))

    def __missing__(self, r: int) -> _List:
        lo, hi = int(self._starts[r]), int(self._starts[r + 1])
        p = self._pairs
        return p.volunteer[lo:hi], p.distance_m[lo:hi], p.measured[lo:hi]


def _passes(
    problem: _Problem,
    area: Neighbourhood,
    matching: dict[int, int],
    lists: dict[int, _List],
    *,
    open_lists: bool,
    maximum: bool = False,
) -> tuple[dict[int, int], Pairs]:
    """Passes of :func:`_augmenting_pairs` until a whole round changes nothing.

    ``maximum``: ``matching`` is a maximum matching over ``lists``, so the augmenting passes
    would find nothing (exchanges keep it maximum): only exchange passes are run.
    """
    extras: list[Pairs] = []
    kinds = (True,) if maximum else (False, True)
    matched = _Matched.of(problem, matching)
    for _ in range(_MAX_SEARCH_ROUNDS):
        moved = 0
        for exchanges in kinds:
            extra, _, paths = _augmenting_pairs(
                problem, area, matched, exchanges=exchanges, lists=lists, open_lists=open_lists
            )
            extras.append(extra)
            moved += paths
        if not moved:
            break
    return matched.primary_of, Pairs.join(extras)


@dataclass
class _Matched:
    """A matching as the path search keeps it across its passes: each resident's volunteer,
    each volunteer's residents and load, and the pairs no path may use."""

    primary_of: dict[int, int]
    members: dict[int, list[int]]
    load: dict[int, int]
    excluded: dict[int, set[int]]

    @classmethod
    def of(cls, problem: _Problem, matching: dict[int, int]) -> _Matched:
        members: dict[int, list[int]] = defaultdict(list)
        primary_of: dict[int, int] = {}
        for r, v in matching.items():
            if problem.slot[r]:
                primary_of[r] = v
                members[v].append(r)
        excluded: dict[int, set[int]] = defaultdict(set)
        for r, v in problem.excluded:
            excluded[r].add(v)
        load = {v: len(rs) for v, rs in members.items()}
        return cls(primary_of, members, load, excluded)


def _augmenting_pairs(
    problem: _Problem,
    area: Neighbourhood,
    matched: _Matched,
    *,
    exchanges: bool,
    lists: dict[int, _List],
    open_lists: bool = True,
) -> tuple[Pairs, dict[int, int], int]:
    """One pass of paths that would let more residents have a buddy (or graver needs first).

    Returns the pairs the paths used, the matching after them (``matched``, updated in place),
    and how many paths were applied. From each resident without a buddy, highest priority
    first, a breadth-first search alternates "a volunteer within reach" and "a resident that
    volunteer already serves" until it finds a volunteer with room (an augmenting path: one more resident covered) or, with ``exchanges``, a
    resident of lower priority (an exchange: graver needs first). When no augmenting path exists
    from a resident, none appears later either (a classic property of bipartite matching). The
    residents that can be covered together form a matroid, so once a pass finds no path at all,
    the covered set is both the largest possible and the best by priority over the lists searched.

    ``open_lists``: each visited resident's list is every compatible volunteer within reach
    (cached in ``lists`` across passes); otherwise ``lists`` holds the candidate lists, searched
    as they are.
    """
    primary_of, members, load = matched.primary_of, matched.members, matched.load
    excluded = matched.excluded
    left = [r for r in np.flatnonzero(problem.slot).tolist() if r not in primary_of]
    if not left:  # every path starts at a resident without a volunteer
        return Pairs.empty(), primary_of, 0
    left.sort(key=lambda r: -int(problem.weight[r]))

    # Volunteers with room when the pass starts: asked first at every resident the search
    # visits, which ends most searches one step after they start (none gains room later).
    has_room = problem.room > 0
    for v, n in load.items():
        has_room[v] = n < problem.room[v]
    with_room = None
    if open_lists:
        with_room = Neighbourhood(
            problem.places_r, problem.places_v, speaks=problem.speaks, reach_m=area.reach_m,
            active=has_room,
        )  # fmt: skip

    def _usable(r: int, v: int) -> bool:
        return v not in excluded.get(r, ()) and load.get(v, 0) < problem.room[v]

    def full_list(r: int) -> _List:
        if not open_lists:
            return lists[r]  # a _CandidateLists: made on first use
        if r not in lists:
            vols, metres, measured = area.around(r, int(problem.needs_language[r]))
            # Compact arrays, not tuples: in a dense town short of volunteers a pass can open the
            # lists of most residents, thousands of volunteers each.
            found = (
                np.array(vols, dtype=np.int32),
                np.array(metres, dtype=np.int32),
                np.array(measured, dtype=bool),
            )
            skip = excluded.get(r)
            if skip:
                keep = ~np.isin(found[0], np.fromiter(skip, dtype=np.int32, count=len(skip)))
                found = (found[0][keep], found[1][keep], found[2][keep])
            lists[r] = found
        return lists[r]

    added: dict[tuple[int, int], tuple[int, bool]] = {}
    paths = 0
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
            if with_room is not None:
                hit = with_room.first_free(frontier, problem.needs_language, _usable)
                if hit is not None:
                    r, v = hit
                    came_from[v] = r
                    free = v
                    break
            following: list[int] = []
            for r in frontier:
                for v in full_list(r)[0].tolist():
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
        paths += 1
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
            vols, metres, measured = full_list(r)
            at = np.flatnonzero(vols == v)
            if len(at):
                added[(r, v)] = (int(metres[at[0]]), bool(measured[at[0]]))
            if r == u:
                break
            v = via[r]
    if with_room is not None and paths:
        # Every resident a search went through may also take any volunteer in reach who had
        # room when the pass started: the walking flow then chooses how to reach that room,
        # instead of following the one path the search happened to find.
        for r, (opened, far, exact) in lists.items():
            for i in np.flatnonzero(has_room[opened]).tolist():
                added.setdefault((r, int(opened[i])), (int(far[i]), bool(exact[i])))
    if not added:
        return Pairs.empty(), primary_of, paths
    keys = list(added)
    found = Pairs(
        np.array([r for r, _ in keys], dtype=np.int64),
        np.array([v for _, v in keys], dtype=np.int64),
        np.array([added[k][0] for k in keys], dtype=np.int64),
        np.array([added[k][1] for k in keys], dtype=bool),
    )
    return found, primary_of, paths


@dataclass
class _Walk:
    """A solved walking flow, and where its residents and volunteers sit among its nodes."""

    chosen: Chosen
    network: flow.Network
    flows: IntArray
    slots: IntArray  # residents with an arc from their priority's source
    r0: int
    v0: int


def _walking(
    problem: _Problem,
    area: Neighbourhood,
    reach: Pairs,
    covered: dict[int, int],
    bonus: dict[int, int],
    timings: dict[str, float],
    *,
    prove: bool,
) -> tuple[Chosen, int, bool]:
    """The walking flow over ``reach``, then column generation: after each solve, :func:`_price`
    finds the pairs outside the arcs that would shorten the walks, and the flow is solved again
    with them. When it finds none, the walking is the least over *every* pair within reach.

    With ``prove``, or up to ``_EXACT_SEARCH_PAIRS`` pairs, the rounds go on until then;
    otherwise ``_CHEAP_PRICING_ROUNDS`` of them (each new solve can only walk less: it has
    every arc of the one before). Returns the chosen pairs, how many pairs the pricing added,
    and whether the walking is proven least over every pair within reach.
    """
    small = int(problem.slot.sum()) * len(problem.volunteers) <= _EXACT_SEARCH_PAIRS
    rounds = _MAX_PRICING_ROUNDS if prove or small else _CHEAP_PRICING_ROUNDS
    added = 0
    done = 0
    while True:
        started = time.perf_counter()
        walk = _flow(problem, reach, covered, bonus)
        solved = time.perf_counter()
        timings["flow_s"] += solved - started
        if walk is None:
            return [], added, True
        if done == rounds:
            return walk.chosen, added, False
        extra = _price(problem, area, walk)
        timings["pricing_s"] += time.perf_counter() - solved
        if not len(extra):
            return walk.chosen, added, True
        reach = Pairs.join([reach, extra])
        added += len(extra)
        done += 1


def _price(problem: _Problem, area: Neighbourhood, walk: _Walk) -> Pairs:
    """Pairs within reach that are not arcs of ``walk`` and have a negative reduced cost in it:
    each resident's most negative few, and none at all only if no such pair exists.

    With the flow's node potentials p (:func:`flow.potentials`, for this exact network, the
    per-priority sources included), a new pair (r, v) has reduced cost ``metres + p[r] - p[v]``;
    it carries no keep bonus, since every current pair within reach is already an arc. If no
    pair is negative, the flow is optimal over every pair within reach (LP duality: p stays a
    feasible dual). Shifted by the largest p of a volunteer with room, the test reads ``metres +
    lift[v] < budget[r]`` with both >= 0, which :meth:`Neighbourhood.within` answers with one
    k-d tree query per resident instead of a look at every pair within reach.
    """
    potential = flow.potentials(walk.network, walk.flows)
    n_r, n_v = len(problem.residents), len(problem.volunteers)
    p_r = potential[walk.r0 : walk.r0 + n_r]
    p_v = potential[walk.v0 : walk.v0 + n_v]
    open_v = problem.room > 0
    if not len(walk.slots) or not open_v.any():
        return Pairs.empty()
    # A volunteer without room is lifted out of sight: no arc lets them take any flow.
    top = int(p_v[open_v].max())
    budget = top - p_r[walk.slots]
    lift = np.where(open_v, top - p_v, _OUT_OF_SIGHT)
    asked = budget > 0
    found = area.within(
        walk.slots[asked], problem.needs_language, budget[asked], lift, k=_PRICED_PER_RESIDENT
    )
    reduced = found.distance_m + p_r[found.resident] - p_v[found.volunteer]
    # Of the arcs already in the flow only the used ones can price below zero (an unused arc's
    # reduced cost is >= 0, and more so without its keep bonus): a resident has one at most.
    used = np.full(n_r, -1, dtype=np.int64)
    used[[c[0] for c in walk.chosen]] = [c[1] for c in walk.chosen]
    new = (reduced < 0) & (used[found.resident] != found.volunteer)
    if problem.excluded:
        width = max(1, n_v)
        ex = np.array([r * width + v for r, v in problem.excluded], dtype=np.int64)
        new &= ~np.isin(found.resident * width + found.volunteer, ex)
    found, reduced = found.select(new), reduced[new]
    # Partial pricing: each resident's most negative few (in a crowded town, millions of pairs
    # can be negative after the first solve; few of them are ever used).
    order = np.lexsort((reduced, found.resident))
    found = found.select(order)
    first = np.searchsorted(found.resident, found.resident, side="left")
    return found.select((np.arange(len(found)) - first) < _PRICED_PER_RESIDENT)


def _flow(
    problem: _Problem, reach: Pairs, covered: dict[int, int], bonus: dict[int, int]
) -> _Walk | None:
    """One min-cost flow: the least walking among the plans that cover, of every priority, as
    many residents as ``covered`` does (which is what makes them the heaviest plans, see
    :func:`_stage`).

    Nodes: one per priority, supplying that many units; residents; volunteers; the sink. A pair
    costs its walk minus the bonus for keeping a current pair: metres, nothing scaled.
    """
    n_r, n_v = len(problem.residents), len(problem.volunteers)
    n_arcs = len(reach.resident)
    if not covered or not n_arcs:
        return None
    keep = np.zeros(n_arcs, dtype=np.int64)
    if problem.current:
        width = max(1, n_v)
        keys = reach.resident * width + reach.volunteer
        for rank, amount in bonus.items():
            cur = [r * width + v for (r, v), k in problem.current.items() if k == rank]
            if cur and amount:
                keep += amount * np.isin(keys, np.array(cur, dtype=np.int64))
    pair_cost = reach.distance_m - keep

    weights, units = np.unique(
        problem.weight[np.fromiter(covered, dtype=np.int64, count=len(covered))],
        return_counts=True,
    )
    sink, c0 = 0, 1
    r0 = c0 + len(weights)
    v0 = r0 + n_r
    # Only residents of a priority the optimum covers can take part (the others' class supplies
    # nothing); a resident without a slot has no arc in.
    slots = np.flatnonzero(problem.slot & np.isin(problem.weight, weights))
    tail = np.concatenate([
        c0 + np.searchsorted(weights, problem.weight[slots]),
        r0 + reach.resident,
        v0 + np.arange(n_v, dtype=np.int64),
    ])  # fmt: skip
    head = np.concatenate([
        r0 + slots, v0 + reach.volunteer, np.full(n_v, sink, dtype=np.int64)
    ])  # fmt: skip
    capacity = np.concatenate([np.ones(len(slots) + n_arcs, dtype=np.int64), problem.room])
    cost = np.concatenate([
        np.zeros(len(slots), dtype=np.int64), pair_cost, np.zeros(n_v, dtype=np.int64)
    ])  # fmt: skip
    supply = np.zeros(v0 + n_v, dtype=np.int64)
    supply[c0 : c0 + len(weights)] = units
    supply[sink] = -len(covered)
    network = flow.Network(v0 + n_v, tail, head, capacity, cost, supply)
    flows = flow.solve(network)
    used = np.flatnonzero(flows[len(slots) : len(slots) + n_arcs] > 0)
    chosen = list(
        zip(
            reach.resident[used].tolist(),
            reach.volunteer[used].tolist(),
            reach.distance_m[used].tolist(),
            reach.measured[used].tolist(),
            strict=True,
        )
    )
    return _Walk(chosen, network, flows, slots, r0, v0)


def _rank(
    problem: _Problem,
    chosen: Sequence[tuple[int, int, int, bool, int]],
    pinned_ranks: dict[int, set[int]],
) -> list[Buddy]:
    """Ranks: the stage-1 pick takes the lowest rank a pinned pair leaves free, stage 2 the next.

    In the order of ``chosen`` by resident (first appearance), then by stage."""
    if not chosen:
        return []
    resident, volunteer, metres, measured, stage = (
        np.array(column) for column in zip(*chosen, strict=True)
    )
    index = {r.id: i for i, r in enumerate(problem.residents)} if pinned_ranks else {}
    pinned = np.zeros((3, len(problem.residents)), dtype=bool)  # [rank, resident]
    for resident_id, ranks in pinned_ranks.items():
        if resident_id in index:
            pinned[[rank for rank in ranks if rank in (1, 2)], index[resident_id]] = True
    # The ranks a pinned pair leaves free: a resident's first pick takes the first of them, the
    # second pick the second (none: the pick is dropped).
    first_free = np.where(~pinned[1], 1, np.where(~pinned[2], 2, 0))
    second_free = np.where(~pinned[1] & ~pinned[2], 2, 0)
    values, appearance = np.unique(resident, return_index=True)
    seen = np.empty(len(problem.residents), dtype=np.int64)
    seen[values] = appearance
    order = np.lexsort((stage, seen[resident]))
    resident, volunteer, metres, measured = (
        resident[order],
        volunteer[order],
        metres[order],
        measured[order],
    )
    starts = np.flatnonzero(np.r_[True, resident[1:] != resident[:-1]])
    nth = np.arange(len(resident)) - np.repeat(starts, np.diff(np.r_[starts, len(resident)]))
    rank = np.where(nth == 0, first_free[resident], np.where(nth == 1, second_free[resident], 0))
    residents, volunteers = problem.residents, problem.volunteers
    return [
        Buddy(
            resident_id=residents[r].id, volunteer_id=volunteers[v].id, rank=k,
            distance_m=d if exact else None,
        )
        for r, v, k, d, exact in zip(
            resident.tolist(), volunteer.tolist(), rank.tolist(), metres.tolist(),
            measured.tolist(), strict=True,
        )
        if k
    ]  # fmt: skip


def _reasons(problem: _Problem, reach: Reachability, pairs: Sequence[Buddy]) -> dict[int, str]:
    covered = {b.resident_id for b in pairs}
    reasons: dict[int, str] = {}
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


def _gaps(problem: _Problem, unassigned: dict[int, str]) -> list[Gap]:
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
    problem = _build(residents, pool, (), set(), (), {}, replace(rules, backups=False), {})
    area = Neighbourhood(
        problem.places_r, problem.places_v, speaks=problem.speaks, reach_m=rules.reach_m
    )
    everyone = np.arange(len(residents), dtype=np.int64)
    pairs_found = area.pairs(everyone, problem.needs_language, rules.candidate_limit)
    matched = _max_matching(problem, pairs_found)
    # One pass is enough: a resident with no augmenting path never gains one later.
    _, matched, _ = _augmenting_pairs(
        problem, area, _Matched.of(problem, matched), exchanges=False, lists={}
    )
    return len(matched)
