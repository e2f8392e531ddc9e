"""The assignment policy: tiers filled in order, each optimal (against brute force), stable, and
the true cause of every gap."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict

import pytest

from config.languages import Language
from config.profile import (
    DEFAULT_PROFILE_PATH,
    AssignmentPolicy,
    Profile,
    TierProfile,
    load_profile,
)
from registry.assignment.buddies import Buddy, Resident, Volunteer, priority
from registry.assignment.report import gap_lines
from registry.assignment.roles import (
    Quota,
    RoleVolunteer,
    Scope,
    Unfilled,
    not_eligible,
)
from registry.assignment.tiers import Cause, PolicyPlan, high_risk, plan_policy
from tests.registry.assignment.test_buddies import at, great_circle, resident, volunteer

YEAR = 2026
REACH = 1500
SAMPLE = load_profile(DEFAULT_PROFILE_PATH)


def policy(*tiers: TierProfile) -> Profile:
    return SAMPLE.model_copy(
        update={"assignment": AssignmentPolicy(tiers=list(tiers)), "walking_distance_m": REACH}
    )


HIGH = TierProfile(buddies="high_risk")
REST_BUDDIES = TierProfile(buddies="rest")
CORE = TierProfile(roles=["health"])
REST_ROLES = TierProfile(roles="rest")
LIFE_SAFETY = policy(HIGH, CORE, REST_BUDDIES, REST_ROLES)
ROLES_FIRST = policy(CORE, HIGH, REST_BUDDIES, REST_ROLES)


def as_role_volunteer(v: Volunteer, skills: frozenset[str] = frozenset()) -> RoleVolunteer:
    return RoleVolunteer(
        id=v.id, zone_id=v.zone_id, lat=v.lat, lon=v.lon, birth_year=v.birth_year, skills=skills,
        available=v.available,
    )  # fmt: skip


def health(seats: int = 1) -> Quota:
    return Quota(
        role_code="health", scope=Scope.TOTAL, seats=seats, required_skills=frozenset({"first_aid"})
    )


def shelter(seats: int = 1) -> Quota:
    lat, lon = at(600, 600)
    return Quota(
        role_code="shelter_manager", scope=Scope.SHELTER, seats=seats, zone_id=1, shelter_id=7,
        lat=lat, lon=lon,
    )  # fmt: skip


def run(
    residents: list[Resident],
    volunteers: list[Volunteer],
    skills: dict[int, frozenset[str]],
    quotas: list[Quota],
    profile: Profile,
    **kw: object,
) -> PolicyPlan:
    role_volunteers = [as_role_volunteer(v, skills.get(v.id, frozenset())) for v in volunteers]
    return plan_policy(
        residents,
        volunteers,
        role_volunteers,
        quotas,
        profile=profile,
        year=YEAR,
        **kw,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------ brute force, tier by tier


def random_town(
    rng: random.Random, n_res: int, n_vol: int
) -> tuple[list[Resident], list[Volunteer], dict[int, frozenset[str]]]:
    needs = ["powered_medical_equipment", "bedridden", "lives_alone", "mobility"]
    residents = [
        resident(
            i, rng.uniform(0, 2000), rng.uniform(0, 2000), language=rng.choice(["he", "he", "ru"]),
            needs=frozenset(n for n in needs if rng.random() < 0.35),
            birth_year=rng.choice([1940, 1980]),
        )
        for i in range(n_res)
    ]  # fmt: skip
    volunteers = [
        volunteer(
            100 + j, rng.uniform(0, 2000), rng.uniform(0, 2000),
            language=rng.choice(["he", "he", "ru"]), capacity=rng.randint(1, 2),
        )
        for j in range(n_vol)
    ]  # fmt: skip
    skills = {v.id: frozenset({"first_aid"}) for v in volunteers if rng.random() < 0.5}
    return residents, volunteers, skills


def compatible(r: Resident, v: Volunteer) -> bool:
    return great_circle(r, v) <= REACH and (r.language == "he" or r.language in v.speaks)


def best_buddies(
    members: list[Resident], volunteers: list[Volunteer], room: dict[int, int]
) -> tuple[int, float]:
    """Most priority-weighted residents with a buddy, then the least walking, by trying all."""
    options = [
        [None, *(v for v in volunteers if room.get(v.id, 0) > 0 and compatible(r, v))]
        for r in members
    ]
    best: tuple[int, float] = (0, 0.0)
    for choice in itertools.product(*options):
        load = Counter(v.id for v in choice if v is not None)
        if any(load[i] > room[i] for i in load):
            continue
        weight = sum(priority(r, YEAR) for r, v in zip(members, choice, strict=True) if v)
        walk = sum(great_circle(r, v) for r, v in zip(members, choice, strict=True) if v)
        best = max(best, (weight, -walk))
    return best


def most_seats(volunteers: list[RoleVolunteer], quotas: list[Quota]) -> int:
    options = [
        [None, *(q for q in quotas if not_eligible(v, q, year=YEAR, reach_m=REACH) is None)]
        for v in volunteers
    ]
    best = 0
    for choice in itertools.product(*options):
        taken = Counter(q.key for q in choice if q is not None)
        if all(taken[q.key] <= q.seats for q in quotas):
            best = max(best, sum(taken.values()))
    return best


def best_by_tier(
    members: list[Resident],
    volunteers: list[Volunteer],
    tier_of: dict[int, int],
    order: list[int],
) -> tuple[tuple[int, ...], float]:
    """By trying every plan: the most priority-weighted residents of the first buddy tier, then
    of the next..., then the least walking."""
    options = [[None, *(v for v in volunteers if compatible(r, v))] for r in members]
    best: tuple[tuple[int, ...], float] = ((), 0.0)
    for choice in itertools.product(*options):
        load = Counter(v.id for v in choice if v is not None)
        if any(load[v.id] > v.capacity for v in volunteers if v.id in load):
            continue
        pairs = [(r, v) for r, v in zip(members, choice, strict=True) if v is not None]
        weights = tuple(
            sum(priority(r, YEAR) for r, _ in pairs if tier_of[r.id] == t) for t in order
        )
        walk = sum(great_circle(r, v) for r, v in pairs)
        best = max(best, (weights, -walk))
    return best


@pytest.mark.parametrize("profile", [LIFE_SAFETY, ROLES_FIRST], ids=["life_safety", "roles_first"])
@pytest.mark.parametrize("seed", range(12))
def test_each_tier_is_optimal_given_the_tiers_before_it(profile: Profile, seed: int) -> None:
    rng = random.Random(seed)
    residents, volunteers, skills = random_town(rng, rng.randint(3, 6), rng.randint(2, 4))
    quotas = [health(rng.randint(1, 2)), shelter()]
    plan = run(residents, volunteers, skills, quotas, profile)
    tier_of = plan.tier_of_resident
    primaries = [b for b in plan.buddies.pairs if b.rank == 1]
    covered = {b.resident_id for b in primaries}
    holders = {h.person_id: plan.tier_of_role[h.role_code] for h in plan.roles.holders}
    adults = [v for v in volunteers if YEAR - (v.birth_year or YEAR) >= 18]
    buddy_tiers = [n for n, t in enumerate(profile.assignment.tiers, 1) if t.buddies]
    result_of = {r.number: r for r in plan.tiers}
    for number, tier in enumerate(profile.assignment.tiers, start=1):
        if tier.roles is not None:
            # The most seats among the volunteers that no earlier tier engaged.
            free = [
                as_role_volunteer(v, skills.get(v.id, frozenset()))
                for v in volunteers
                if v.id not in result_of[number].engaged
            ]
            mine = [q for q in quotas if plan.tier_of_role[q.role_code] == number]
            filled = sum(1 for t in holders.values() if t == number)
            assert filled == most_seats(free, mine)
            continue
        # Buddy tiers so far: each covered as fully as it can be, in order, with the volunteers
        # that hold no role of an earlier tier (later tiers never cost an earlier one).
        order = [t for t in buddy_tiers if t <= number]
        members = [r for r in residents if tier_of[r.id] in order]
        free_v = [v for v in adults if holders.get(v.id, number) >= number]
        achieved = tuple(
            sum(priority(r, YEAR) for r in members if tier_of[r.id] == t and r.id in covered)
            for t in order
        )
        assert achieved == best_by_tier(members, free_v, tier_of, order)[0]
    # The whole plan walks least among the plans that cover as much, tier by tier.
    members = [r for r in residents if tier_of[r.id] in buddy_tiers]
    free_v = [v for v in adults if v.id not in holders]
    by_id = {r.id: r for r in residents}
    walk = sum(
        great_circle(by_id[b.resident_id], next(v for v in volunteers if v.id == b.volunteer_id))
        for b in primaries
    )
    _, best_walk = best_by_tier(members, free_v, tier_of, buddy_tiers)
    assert walk == pytest.approx(-best_walk, abs=len(primaries) + 1)  # metres are rounded
    # A volunteer never holds a role and checks on residents.
    assert not set(holders) & {b.volunteer_id for b in plan.buddies.pairs}


def test_the_first_tier_gets_the_most_it_could_have_at_all() -> None:
    """Later tiers never cost an earlier one: the high-risk tier covers as many as if it were
    the only demand."""
    for seed in range(8):
        rng = random.Random(100 + seed)
        residents, volunteers, skills = random_town(rng, 6, 4)
        plan = run(residents, volunteers, skills, [health(2), shelter()], LIFE_SAFETY)
        members = [r for r in residents if plan.tier_of_resident[r.id] == 1]
        covered = {b.resident_id for b in plan.buddies.pairs}
        room = {v.id: v.capacity for v in volunteers}
        weight = sum(priority(r, YEAR) for r in members if r.id in covered)
        assert weight == best_buddies(members, volunteers, room)[0]


# ------------------------------------------------------------------ the policy decides


def test_life_safety_first_gives_the_buddy_and_roles_first_the_role() -> None:
    """One volunteer with first aid next to a bedridden resident: the policy decides."""
    bedridden = [resident(1, 100, needs=frozenset({"bedridden"}))]
    medic = [volunteer(10, 0)]
    skills = {10: frozenset({"first_aid"})}

    safety = run(bedridden, medic, skills, [health()], LIFE_SAFETY)
    assert [(b.resident_id, b.volunteer_id) for b in safety.buddies.pairs] == [(1, 10)]
    [seat] = safety.roles.open_seats
    assert seat.reason is Unfilled.CANDIDATES_ENGAGED
    assert (seat.engaged, seat.engaged_tiers) == (1, (1,))

    roles = run(bedridden, medic, skills, [health()], ROLES_FIRST)
    assert [h.person_id for h in roles.roles.holders] == [10]
    assert roles.causes == {1: Cause.HELD_BY_ROLES}
    [gap] = roles.buddy_gaps
    assert (gap.tier, gap.in_reach, gap.in_roles, gap.role_tiers) == (2, 1, 1, (1,))


def test_high_risk_is_the_profiles_definition() -> None:
    rule = SAMPLE.assignment.high_risk
    assert high_risk(resident(1, needs=frozenset({"powered_medical_equipment"})), rule)
    assert high_risk(resident(2, needs=frozenset({"bedridden"})), rule)
    assert high_risk(resident(3, needs=frozenset({"lives_alone", "sight"})), rule)
    assert not high_risk(resident(4, needs=frozenset({"lives_alone"})), rule)
    assert not high_risk(resident(5, needs=frozenset({"mobility"})), rule)


def test_backups_come_after_every_tier_of_primaries() -> None:
    """Two residents, two volunteers of one room each: both get a primary, nobody a backup, even
    though the high-risk resident's backup would outweigh the other's primary in one stage."""
    people = [
        resident(1, 100, needs=frozenset({"powered_medical_equipment"})),
        resident(2, 150),
    ]
    pool = [volunteer(10, 0, capacity=1), volunteer(11, 200, capacity=1)]
    plan = run(people, pool, {}, [], LIFE_SAFETY)
    assert sorted((b.resident_id, b.rank) for b in plan.buddies.pairs) == [(1, 1), (2, 1)]
    roomy = [volunteer(10, 0, capacity=2), volunteer(11, 200, capacity=2)]
    plan = run(people, roomy, {}, [], LIFE_SAFETY)
    assert Counter(b.rank for b in plan.buddies.pairs) == {1: 2, 2: 2}


# ------------------------------------------------------------------ the true cause of each gap


def line_of(plan: PolicyPlan, profile: Profile = LIFE_SAFETY) -> list[str]:
    return [
        line.text
        for line in gap_lines(
            buddy_gaps=plan.buddy_gaps,
            open_seats=plan.roles.open_seats,
            zone_codes={1: "kt-north"},
            shelter_names={7: "Hall"},
            tier_of_role=plan.tier_of_role,
            profile=profile,
            authority=SAMPLE.authorities[0],
            language=Language.EN,
        )
    ]


def test_cause_no_volunteer_in_reach() -> None:
    plan = run([resident(1, 0)], [volunteer(10, 3000)], {}, [], LIFE_SAFETY)
    assert plan.causes == {1: Cause.NO_VOLUNTEER_IN_REACH}
    assert line_of(plan) == [
        "North Town: 1 residents of tier 3 have no buddy: no volunteer within 1500 m "
        "(1 more volunteers would cover them)"
    ]


def test_cause_cannot_visit() -> None:
    minor = volunteer(10, 100, birth_year=YEAR - 16)
    away = volunteer(11, 100, available=False)
    plan = run([resident(1, 0)], [minor, away], {}, [], LIFE_SAFETY)
    assert plan.causes == {1: Cause.CANNOT_VISIT}
    assert "no volunteer within 1500 m may visit" in line_of(plan)[0]


def test_cause_no_shared_language() -> None:
    plan = run([resident(1, 0, language="am")], [volunteer(10, 100)], {}, [], LIFE_SAFETY)
    assert plan.causes == {1: Cause.NO_SHARED_LANGUAGE}
    [gap] = plan.buddy_gaps
    assert gap.language == "am"
    assert line_of(plan) == [
        "North Town: 1 residents of tier 3 have no buddy: no volunteer within 1500 m speaks "
        "Amharic (1 more volunteers who speak Amharic would cover them)"
    ]


def test_cause_held_by_roles_counts_each_volunteer_once() -> None:
    """Twelve residents, nine volunteers within reach, all in the tier-1 roles."""
    people = [resident(i, 10 * i) for i in range(12)]
    medics = [volunteer(100 + j, 20 * j) for j in range(9)]
    skills = {v.id: frozenset({"first_aid"}) for v in medics}
    plan = run(people, medics, skills, [health(9)], ROLES_FIRST)
    assert set(plan.causes.values()) == {Cause.HELD_BY_ROLES}
    assert line_of(plan, ROLES_FIRST) == [
        "North Town: 12 residents of tier 3 have no buddy: the 9 volunteers within 1500 m all "
        "hold roles of tier 1"
    ]


def test_cause_held_by_roles_when_the_others_are_full() -> None:
    people = [resident(i, 10 * i) for i in range(3)]
    pool = [volunteer(100, 0, capacity=1), volunteer(101, 50)]
    plan = run(people, pool, {101: frozenset({"first_aid"})}, [health()], ROLES_FIRST)
    assert Counter(plan.causes.values()) == {Cause.ROLES_AND_FULL: 2}
    assert (
        "1 of the 2 volunteers within 1500 m hold roles of tier 1, the others have no room"
        in (line_of(plan, ROLES_FIRST)[0])
    )


def test_cause_volunteers_full() -> None:
    people = [resident(1, 0), resident(2, 50), resident(3, 80)]
    plan = run(people, [volunteer(10, 0, capacity=2)], {}, [], LIFE_SAFETY)
    assert list(plan.causes.values()) == [Cause.VOLUNTEERS_FULL]
    assert line_of(plan)[0].endswith(
        "the 1 volunteers within 1500 m have no room left (1 more volunteers would cover them)"
    )


def test_cause_no_place() -> None:
    nowhere = Resident(id=1, zone_id=None, lat=None, lon=None, language="he")
    plan = run([nowhere], [volunteer(10)], {}, [], LIFE_SAFETY)
    assert plan.causes == {1: Cause.NO_PLACE}


def test_every_resident_without_a_buddy_has_a_cause_and_a_gap() -> None:
    rng = random.Random(5)
    residents, volunteers, skills = random_town(rng, 80, 12)
    plan = run(residents, volunteers, skills, [health(3), shelter()], LIFE_SAFETY)
    covered = {b.resident_id for b in plan.buddies.pairs}
    assert set(plan.causes) == {r.id for r in residents} - covered
    assert sum(g.residents for g in plan.buddy_gaps) == len(plan.causes)
    assert plan.buddies.unassigned == {r: c.value for r, c in plan.causes.items()}


# ------------------------------------------------------------------ stable when re-run


def test_rerun_with_nobody_changed_changes_nothing() -> None:
    rng = random.Random(11)
    residents, volunteers, skills = random_town(rng, 40, 40)
    quotas = [health(3), shelter()]
    for profile in (LIFE_SAFETY, ROLES_FIRST):
        first = run(residents, volunteers, skills, quotas, profile)
        assert first.buddies.pairs and first.roles.holders
        again = run(
            residents, volunteers, skills, quotas, profile,
            current_buddies=first.buddies.pairs, current_roles=first.roles.holders,
        )  # fmt: skip
        assert again.buddies.changes == [] and again.roles.changes == []
        assert again.buddies.pairs == first.buddies.pairs


def test_rerun_after_a_new_volunteer_keeps_most_pairs() -> None:
    rng = random.Random(12)
    residents, volunteers, skills = random_town(rng, 60, 18)
    quotas = [health(3), shelter()]
    first = run(residents, volunteers, skills, quotas, LIFE_SAFETY)
    newcomer = volunteer(999, 1000, 1000, capacity=2)
    again = run(
        residents, [*volunteers, newcomer], skills, quotas, LIFE_SAFETY,
        current_buddies=first.buddies.pairs, current_roles=first.roles.holders,
    )  # fmt: skip
    released = [c for c in again.buddies.changes if c.kind == "released"]
    assert len(released) <= 2
    assert again.buddies.coverage.weighted >= first.buddies.coverage.weighted


def test_pinned_pairs_and_roles_are_kept_across_tiers() -> None:
    people = [resident(1, 0, needs=frozenset({"bedridden"})), resident(2, 50)]
    pool = [volunteer(10, 0), volunteer(11, 60)]
    pinned_pair = Buddy(resident_id=2, volunteer_id=10, rank=1, pinned=True)
    from registry.assignment.roles import RoleHolder

    pinned_role = RoleHolder(person_id=11, role_code="health", pinned=True)
    plan = run(
        people, pool, {11: frozenset({"first_aid"})}, [health()], LIFE_SAFETY,
        current_buddies=[pinned_pair], current_roles=[pinned_role],
    )  # fmt: skip
    assert [h.person_id for h in plan.roles.holders] == [11]
    pairs = defaultdict(list)
    for b in plan.buddies.pairs:
        pairs[b.resident_id].append((b.volunteer_id, b.rank, b.pinned))
    assert pairs[2] == [(10, 1, True)]
    assert pairs[1] == [(10, 1, False)]  # the only volunteer left free for the bedridden one
