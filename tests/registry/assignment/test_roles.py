"""Emergency roles: quotas filled optimally, skills, ages, minors only with a guardian and a group."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from registry.assignment.roles import (
    NotEligible,
    Quota,
    RoleHolder,
    RoleRules,
    RoleVolunteer,
    Scope,
    Unfilled,
    not_eligible,
    plan_roles,
    walk_m,
)

YEAR = 2026
RULES = RoleRules(year=YEAR)


def person(i: int, zone: int = 1, **kw: object) -> RoleVolunteer:
    fields: dict[str, object] = {"zone_id": zone, "lat": None, "lon": None, "birth_year": 1980}
    fields.update(kw)
    return RoleVolunteer(id=i, **fields)  # type: ignore[arg-type]


def zone_quota(role: str, seats: int, zone: int = 1, **kw: object) -> Quota:
    return Quota(role_code=role, scope=Scope.ZONE, seats=seats, zone_id=zone, **kw)  # type: ignore[arg-type]


def test_skills_and_ages_are_required() -> None:
    medic = zone_quota("health", 1, required_skills=frozenset({"first_aid"}), min_age=21)
    assert not_eligible(person(1), medic, year=YEAR, reach_m=1500) is NotEligible.MISSING_SKILL
    young = person(2, skills=frozenset({"first_aid"}), birth_year=YEAR - 19)
    assert not_eligible(young, medic, year=YEAR, reach_m=1500) is NotEligible.TOO_YOUNG
    unknown = person(3, skills=frozenset({"first_aid"}), birth_year=None)
    assert not_eligible(unknown, medic, year=YEAR, reach_m=1500) is NotEligible.AGE_UNKNOWN
    able = person(4, skills=frozenset({"first_aid"}))
    assert not_eligible(able, medic, year=YEAR, reach_m=1500) is None
    elsewhere = person(5, zone=2, skills=frozenset({"first_aid"}))
    assert not_eligible(elsewhere, medic, year=YEAR, reach_m=1500) is NotEligible.ELSEWHERE


def test_minors_need_a_guardian_and_a_group_with_an_adult() -> None:
    youth = zone_quota("youth_team", 2, min_age=14)
    minor = {"birth_year": YEAR - 15}
    cases = {
        person(1, **minor): NotEligible.NO_GUARDIAN_CONSENT,
        person(2, guardian_consent=True, **minor): NotEligible.NO_ADULT_IN_GROUP,
        person(3, adult_in_group=True, **minor): NotEligible.NO_GUARDIAN_CONSENT,
        person(4, guardian_consent=True, adult_in_group=True, **minor): None,
    }
    for volunteer, expected in cases.items():
        assert not_eligible(volunteer, youth, year=YEAR, reach_m=1500) is expected
    visits = zone_quota("buddy_team", 1, min_age=14, home_visits=True)
    consenting = person(5, guardian_consent=True, adult_in_group=True, **minor)
    assert (
        not_eligible(consenting, visits, year=YEAR, reach_m=1500)
        is NotEligible.HOME_VISITS_ADULTS_ONLY
    )
    plan = plan_roles(list(cases), [youth], rules=RULES)
    assert [h.person_id for h in plan.holders] == [4]
    assert plan.open_seats[0].open == 1


def test_shelter_roles_go_to_the_shelter_zone_or_within_walking_distance() -> None:
    shelter = Quota(
        role_code="shelter_manager", scope=Scope.SHELTER, seats=1, zone_id=1, shelter_id=9,
        lat=31.61, lon=34.77,
    )  # fmt: skip
    neighbour = person(1, zone=2, lat=31.612, lon=34.77)  # about 220 m away, another zone
    far = person(2, zone=2, lat=31.64, lon=34.77)
    assert not_eligible(neighbour, shelter, year=YEAR, reach_m=1500) is None
    assert not_eligible(far, shelter, year=YEAR, reach_m=1500) is NotEligible.ELSEWHERE


def test_one_role_at_most_and_quotas_filled() -> None:
    volunteers = [person(i, skills=frozenset({"first_aid", "driving"})) for i in range(3)]
    quotas = [
        zone_quota("health", 2, required_skills=frozenset({"first_aid"})),
        zone_quota("driver", 2, required_skills=frozenset({"driving"})),
    ]
    plan = plan_roles(volunteers, quotas, rules=RULES)
    assert len({h.person_id for h in plan.holders}) == len(plan.holders) == 3
    assert plan.filled == 3 and plan.seats == 4
    [open_seat] = plan.open_seats
    assert open_seat.open == 1 and open_seat.reason is Unfilled.CANDIDATES_TAKEN


def test_an_open_seat_nobody_could_fill_says_so() -> None:
    plan = plan_roles(
        [person(1)],
        [zone_quota("spokesperson", 1, required_skills=frozenset({"media"}))],
        rules=RULES,
    )
    assert plan.open_seats[0].reason is Unfilled.NO_CANDIDATE
    assert plan.open_seats[0].eligible == 0


def test_pinned_and_current_holders_are_kept() -> None:
    volunteers = [person(1), person(2), person(3)]
    quotas = [zone_quota("logistics", 1), zone_quota("youth_team", 1, min_age=14)]
    pinned = RoleHolder(3, "logistics", 1, None, pinned=True)
    current = RoleHolder(2, "youth_team", 1, None)
    plan = plan_roles(volunteers, quotas, current=[pinned, current], rules=RULES)
    assert {(h.person_id, h.role_code) for h in plan.holders} == {
        (3, "logistics"),
        (2, "youth_team"),
    }
    assert plan.changes == []


def test_a_volunteer_with_buddies_is_the_last_choice() -> None:
    plan = plan_roles([person(1, buddies=3), person(2)], [zone_quota("logistics", 1)], rules=RULES)
    assert [h.person_id for h in plan.holders] == [2]


def test_a_declined_role_is_not_offered_again() -> None:
    plan = plan_roles(
        [person(1), person(2, buddies=2)],
        [zone_quota("logistics", 1)],
        declined=[(1, "logistics")],
        rules=RULES,
    )
    assert [h.person_id for h in plan.holders] == [2]


@pytest.mark.parametrize("seed", range(25))
def test_optimal_against_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    skills = ["first_aid", "driving", "media"]
    volunteers = [
        person(
            i, zone=rng.randint(1, 2), lat=31.6 + rng.random() / 50, lon=34.77 + rng.random() / 50,
            skills=frozenset(rng.sample(skills, rng.randint(0, 2))),
            birth_year=rng.choice([1980, YEAR - 16, YEAR - 20]),
            guardian_consent=rng.random() < 0.5, adult_in_group=rng.random() < 0.5,
        )
        for i in range(6)
    ]  # fmt: skip
    quotas = [
        zone_quota(
            f"r{k}", rng.randint(1, 2), zone=rng.randint(1, 2), lat=31.61, lon=34.78,
            required_skills=frozenset(rng.sample(skills, rng.randint(0, 1))),
            min_age=rng.choice([14, 18, 21]),
        )
        for k in range(3)
    ]  # fmt: skip
    plan = plan_roles(volunteers, quotas, rules=RULES)

    def cost(v: RoleVolunteer, q: Quota) -> int:
        """The documented second objective: walking, plus the bonus for sparing adults."""
        adult = v.birth_year is not None and YEAR - v.birth_year >= 18
        return walk_m(v, q, 1500) + (1500 if adult else 0)

    best = (-1, 0)
    for choice in itertools.product(range(-1, len(quotas)), repeat=len(volunteers)):
        used = Counter(q for q in choice if q >= 0)
        if any(used[q] > quotas[q].seats for q in used):
            continue
        if any(
            q >= 0 and not_eligible(v, quotas[q], year=YEAR, reach_m=1500) is not None
            for v, q in zip(volunteers, choice, strict=True)
        ):
            continue
        walk = sum(cost(v, quotas[q]) for v, q in zip(volunteers, choice, strict=True) if q >= 0)
        best = max(best, (sum(used.values()), -walk))
    by_key = {q.key: q for q in quotas}
    walk = sum(
        cost(next(v for v in volunteers if v.id == h.person_id), by_key[h.key])
        for h in plan.holders
    )
    assert (plan.filled, -walk) == best
