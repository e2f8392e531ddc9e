"""The pricing's search: every pair below a resident's budget is found, or one of them is."""

from __future__ import annotations

import numpy as np
import pytest

from registry.assignment.geo import Neighbourhood, Places, haversine_m

LAT, LON, M_PER_DEG = 31.61, 34.77, 111_195.0
REACH = 1500


def places(rng: np.random.Generator, n: int, unlocated: float) -> Places:
    north, east = rng.uniform(0, 3000, n), rng.uniform(0, 3000, n)
    lat = LAT + north / M_PER_DEG
    lon = LON + east / (M_PER_DEG * np.cos(np.radians(LAT)))
    lost = rng.random(n) < unlocated
    lat[lost], lon[lost] = np.nan, np.nan
    return Places(lat=lat, lon=lon, zone=rng.integers(1, 3, n))


@pytest.mark.parametrize("seed", range(10))
def test_within_finds_a_pair_below_budget_for_every_resident_who_has_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    residents, volunteers = places(rng, 60, 0.1), places(rng, 40, 0.1)
    speaks = rng.choice([1, 1 | 2, 1 | 8, 2], size=40)
    needs = rng.choice([0, 0, 2, 8], size=60)
    budget = rng.integers(0, 2500, size=60)
    lift = rng.integers(0, 800, size=40)
    area = Neighbourhood(residents, volunteers, speaks=speaks, reach_m=REACH)
    found = area.within(np.arange(60), needs, budget, lift, k=2)

    # Brute force: every compatible pair in reach (or in the same zone, one side unplaced).
    expected: dict[int, set[int]] = {}
    for r in range(60):
        for v in range(40):
            if needs[r] and not speaks[v] & needs[r]:
                continue
            if residents.located[r] and volunteers.located[v]:
                metres = haversine_m(
                    residents.lat[r : r + 1], residents.lon[r : r + 1],
                    volunteers.lat[v : v + 1], volunteers.lon[v : v + 1],
                )[0]  # fmt: skip
                if metres > REACH:
                    continue
                cost = round(metres)
            elif residents.zone[r] == volunteers.zone[v]:
                cost = REACH
            else:
                continue
            if cost + lift[v] < budget[r]:
                expected.setdefault(r, set()).add(v)

    got: dict[int, set[int]] = {}
    for r, v in zip(found.resident.tolist(), found.volunteer.tolist(), strict=True):
        got.setdefault(r, set()).add(v)
    assert len(found) == sum(len(vs) for vs in got.values())  # no pair twice
    assert set(got) == set(expected)  # a resident with such a pair gets at least one
    for r, vs in got.items():
        assert vs <= expected[r]


@pytest.mark.parametrize("seed", range(10))
def test_full_lists_are_every_compatible_pair_in_reach_or_in_the_same_zone(seed: int) -> None:
    """Zones without volunteers, people without a zone, and volunteers left out by ``active``:
    the same-zone pairs are found for exactly the residents who have some."""
    rng = np.random.default_rng(100 + seed)
    residents, volunteers = places(rng, 60, 0.3), places(rng, 40, 0.3)
    residents = Places(residents.lat, residents.lon, rng.choice([-1, 1, 2, 3], size=60))
    volunteers = Places(volunteers.lat, volunteers.lon, rng.choice([-1, 1, 2], size=40))
    speaks = rng.choice([1, 1 | 2, 1 | 8, 2], size=40)
    needs = rng.choice([0, 0, 2, 8], size=60)
    active = rng.random(40) < 0.8
    area = Neighbourhood(residents, volunteers, speaks=speaks, reach_m=REACH, active=active)
    found = area.pairs(np.arange(60), needs, None)

    expected: set[tuple[int, int, int]] = set()
    for r in range(60):
        for v in np.flatnonzero(active).tolist():
            if needs[r] and not speaks[v] & needs[r]:
                continue
            if residents.located[r] and volunteers.located[v]:
                metres = haversine_m(
                    residents.lat[r : r + 1], residents.lon[r : r + 1],
                    volunteers.lat[v : v + 1], volunteers.lon[v : v + 1],
                )[0]  # fmt: skip
                if metres <= REACH:
                    expected.add((r, v, round(metres)))
            elif residents.zone[r] >= 0 and residents.zone[r] == volunteers.zone[v]:
                expected.add((r, v, REACH))
    got = list(
        zip(
            found.resident.tolist(),
            found.volunteer.tolist(),
            found.distance_m.tolist(),
            strict=True,
        )
    )
    assert len(got) == len(set(got))
    assert set(got) == expected
