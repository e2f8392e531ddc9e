"""Who is within reach of whom: great-circle distances, searched with k-d trees, never densely.

A town of 100,000 people has about 20,000 residents who may need help and 10,000 volunteers; the
dense product (200 million pairs) is never built. Volunteers are put into k-d trees on a flat local
projection, one tree per language a resident may need (and one of everybody for residents who
speak Hebrew), and each resident asks their tree for the ``limit`` nearest volunteers within the
walking distance. The projection is exact to well under 0.1% across a town; every pair it finds is
then measured on the sphere and kept only if its great-circle distance is within reach.

The rule (issue 4): a resident and a volunteer are within reach when their great-circle distance is
at most the walking distance; when either has no coordinates, being in the same zone stands in for
it, and the pair costs as much as the longest allowed walk, so that a measured nearby pair is
always preferred to a guessed one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from registry.rules import EARTH_RADIUS_M, haversine_m

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_SCREEN_SLACK = 1.01
_PROBE = 4  # nearest volunteers asked first when only "anyone in reach?" matters
_CHUNK = 512  # residents per full search
# A pseudo language need: volunteers who speak Hebrew and nothing else (see ``pairs``).
HEBREW_ONLY = -1  # the projection's error is far below 1%: screen wide, then measure exactly


@dataclass(frozen=True)
class Places:
    """Where a set of people are: coordinates (NaN when unknown) and zone (-1 when unknown)."""

    lat: FloatArray
    lon: FloatArray
    zone: IntArray

    @cached_property
    def located(self) -> BoolArray:
        return ~(np.isnan(self.lat) | np.isnan(self.lon))

    def __len__(self) -> int:
        return len(self.zone)


@dataclass(frozen=True)
class Pairs:
    """Candidate (resident, volunteer) pairs, as indexes into the two lists."""

    resident: IntArray
    volunteer: IntArray
    distance_m: IntArray  # metres; the fallback cost where ``measured`` is False
    measured: BoolArray

    def __len__(self) -> int:
        return len(self.resident)

    @staticmethod
    def empty() -> Pairs:
        none = np.zeros(0, dtype=np.int64)
        return Pairs(none, none, none, np.zeros(0, dtype=bool))

    @staticmethod
    def join(parts: list[Pairs]) -> Pairs:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Pairs.empty()
        return Pairs(
            np.concatenate([p.resident for p in parts]),
            np.concatenate([p.volunteer for p in parts]),
            np.concatenate([p.distance_m for p in parts]),
            np.concatenate([p.measured for p in parts]),
        )

    def select(self, keep: BoolArray | IntArray) -> Pairs:
        return Pairs(
            self.resident[keep], self.volunteer[keep], self.distance_m[keep], self.measured[keep]
        )


@dataclass(frozen=True)
class Reachability:
    """Per resident: volunteers within reach, and those of them sharing a needed language (0 when
    none; otherwise at least 1)."""

    in_reach: IntArray
    eligible: IntArray


class Neighbourhood:
    """Search structure over one set of volunteers, reused for every resident query."""

    def __init__(
        self,
        residents: Places,
        volunteers: Places,
        *,
        speaks: IntArray,
        reach_m: float,
        active: BoolArray | None = None,
    ) -> None:
        """``active``: only these volunteers are searched (e.g. those with room left)."""
        self.residents = residents
        self.volunteers = volunteers
        self.speaks = speaks
        self.reach_m = reach_m
        located = np.concatenate(
            [residents.lat[residents.located], volunteers.lat[volunteers.located]]
        )
        self._lat0 = float(np.mean(located)) if len(located) else 0.0
        self._rxy = self._project(residents)
        self._vxy = self._project(volunteers)
        self._trees: dict[int, tuple[cKDTree, IntArray] | None] = {}
        self._zone_all: dict[int, IntArray] = {}
        self._zone_unlocated: dict[int, IntArray] = {}
        self._active = np.ones(len(volunteers), dtype=bool) if active is None else active
        vol_located = volunteers.located
        self._zones = np.unique(volunteers.zone[volunteers.zone >= 0])
        # Per zone of ``_zones``: how many volunteers each pool holds (see ``_has_pool``).
        self._zone_sizes = np.zeros((2, len(self._zones)), dtype=np.int64)
        for i, zone in enumerate(self._zones.tolist()):
            members = np.flatnonzero((volunteers.zone == zone) & self._active)
            self._zone_all[zone] = members
            self._zone_unlocated[zone] = members[~vol_located[members]]
            self._zone_sizes[:, i] = len(members), len(self._zone_unlocated[zone])

    def _project(self, places: Places) -> FloatArray:
        k = np.pi / 180 * EARTH_RADIUS_M
        xy: FloatArray = np.column_stack(
            [places.lon * k * np.cos(np.radians(self._lat0)), places.lat * k]
        )
        return xy

    def _tree(self, need: int) -> tuple[cKDTree, IntArray] | None:
        """The tree of located volunteers who can serve a resident needing language bit ``need``."""
        if need not in self._trees:
            ok = self.volunteers.located & self._active
            if need == HEBREW_ONLY:
                ok &= (self.speaks & ~1) == 0
            elif need:
                ok &= (self.speaks & need) != 0
            members = np.flatnonzero(ok)
            self._trees[need] = (cKDTree(self._vxy[members]), members) if len(members) else None
        return self._trees[need]

    def pairs(self, residents: IntArray, needs_language: IntArray, limit: int | None) -> Pairs:
        """The ``limit`` nearest compatible volunteers in reach of each resident (all if None).

        With a limit, a resident who speaks Hebrew also gets the ``limit`` nearest volunteers who
        speak *only* Hebrew: when Russian- or Amharic-speaking residents are many, the volunteers
        who speak their language are needed for them, and the flow needs somewhere else to send
        their Hebrew-speaking neighbours.
        """
        parts = [
            self._measured(residents, needs_language, limit),
            self._by_zone(residents, needs_language, limit),
        ]
        if limit is not None:
            hebrew = residents[needs_language[residents] == 0]
            alternatives = np.zeros_like(needs_language)
            alternatives[hebrew] = HEBREW_ONLY
            parts.append(self._measured(hebrew, alternatives, limit))
        pairs = Pairs.join(parts)
        if limit is not None and len(pairs):
            # Keep the nearest 2 * ``limit`` (the nearest and the Hebrew-only nearest, merged),
            # measured pairs first at equal distance; drop duplicates.
            order = np.lexsort((~pairs.measured, pairs.distance_m, pairs.resident))
            pairs = pairs.select(order)
            key = pairs.resident * max(1, len(self.volunteers)) + pairs.volunteer
            _, unique = np.unique(key, return_index=True)
            pairs = pairs.select(np.sort(unique))
            first = np.searchsorted(pairs.resident, pairs.resident, side="left")
            pairs = pairs.select((np.arange(len(pairs)) - first) < 2 * limit)
        return pairs

    def _measured(self, residents: IntArray, needs_language: IntArray, limit: int | None) -> Pairs:
        located = residents[self.residents.located[residents]]
        parts: list[Pairs] = []
        for need in np.unique(needs_language[located]).tolist():
            group = located[needs_language[located] == need]
            found = self._tree(need)
            if found is None or not len(group):
                continue
            tree, members = found
            screen = self.reach_m * _SCREEN_SLACK
            if limit is None:
                lists = tree.query_ball_point(self._rxy[group], r=screen)
                counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(group))
                r_idx = np.repeat(group, counts)
                v_pos = np.fromiter(
                    (i for x in lists for i in x), dtype=np.int64, count=int(counts.sum())
                )
            else:
                k = min(limit, len(members))
                _, pos = tree.query(self._rxy[group], k=k, distance_upper_bound=screen)
                pos = pos.reshape(len(group), k)
                hit = pos < len(members)
                r_idx = np.repeat(group, hit.sum(axis=1))
                v_pos = pos[hit].astype(np.int64)
            v_idx = members[v_pos]
            dist = haversine_m(
                self.residents.lat[r_idx], self.residents.lon[r_idx],
                self.volunteers.lat[v_idx], self.volunteers.lon[v_idx],
            )  # fmt: skip
            ok = dist <= self.reach_m
            parts.append(
                Pairs(
                    r_idx[ok],
                    v_idx[ok],
                    np.rint(dist[ok]).astype(np.int64),
                    np.ones(int(ok.sum()), dtype=bool),
                )
            )
        return Pairs.join(parts)

    def _zone_pool(self, r: int) -> IntArray | None:
        zone = int(self.residents.zone[r])
        if zone < 0:
            return None
        pools = self._zone_unlocated if self.residents.located[r] else self._zone_all
        return pools.get(zone)

    def _has_pool(self, residents: IntArray) -> BoolArray:
        """Whether :meth:`_zone_pool` is non-empty for each of these residents (vectorised: in a
        town where everyone has coordinates, nobody has one)."""
        zone = self.residents.zone[residents]
        at = np.minimum(np.searchsorted(self._zones, zone), max(0, len(self._zones) - 1))
        if not len(self._zones):
            return np.zeros(len(residents), dtype=bool)
        known = (zone >= 0) & (self._zones[at] == zone)
        size = self._zone_sizes[self.residents.located[residents].astype(np.int64), at]
        has: BoolArray = known & (size > 0)
        return has

    def _by_zone(self, residents: IntArray, needs_language: IntArray, limit: int | None) -> Pairs:
        """Same-zone pairs where at least one side has no coordinates, at the fallback cost."""
        fallback = round(self.reach_m)
        parts: list[Pairs] = []
        for r in residents[self._has_pool(residents)].tolist():
            pool = self._zone_pool(r)
            if pool is None or not len(pool):
                continue
            need = int(needs_language[r])
            if need:
                pool = pool[(self.speaks[pool] & need) != 0]
            if limit is not None and len(pool) > limit:
                # Spread residents over the zone's volunteers instead of piling them on a few.
                pool = np.roll(pool, -(r % len(pool)))[:limit]
            n = len(pool)
            parts.append(
                Pairs(
                    np.full(n, r, dtype=np.int64),
                    pool.astype(np.int64),
                    np.full(n, fallback, dtype=np.int64),
                    np.zeros(n, dtype=bool),
                )
            )
        return Pairs.join(parts)

    def nearest_residents(self, residents: IntArray, needs_language: IntArray, k: int) -> Pairs:
        """From the volunteers' side: each active volunteer's ``k`` nearest compatible residents
        in reach (among ``residents``). Added to the residents' own nearest lists, it keeps every
        volunteer on somebody's list, so room at the edge of town is never out of the flow's
        sight when the centre is crowded."""
        located = residents[self.residents.located[residents]]
        vols = np.flatnonzero(self.volunteers.located & self._active)
        if not len(located) or not len(vols) or k <= 0:
            return Pairs.empty()
        tree = cKDTree(self._rxy[located])
        # Ask for more than k: some of the nearest may not share a language.
        kk = min(len(located), 2 * k)
        _, pos = tree.query(
            self._vxy[vols], k=kk, distance_upper_bound=self.reach_m * _SCREEN_SLACK
        )
        pos = pos.reshape(len(vols), kk)
        hit = pos < len(located)
        v_idx = np.repeat(vols, hit.sum(axis=1))
        r_idx = located[pos[hit]]
        need = needs_language[r_idx]
        ok = (need == 0) | ((self.speaks[v_idx] & need) != 0)
        v_idx, r_idx = v_idx[ok], r_idx[ok]
        dist = haversine_m(
            self.residents.lat[r_idx], self.residents.lon[r_idx],
            self.volunteers.lat[v_idx], self.volunteers.lon[v_idx],
        )  # fmt: skip
        ok = dist <= self.reach_m
        v_idx, r_idx, dist = v_idx[ok], r_idx[ok], dist[ok]
        order = np.lexsort((dist, v_idx))
        v_idx, r_idx, dist = v_idx[order], r_idx[order], dist[order]
        first = np.searchsorted(v_idx, v_idx, side="left")
        keep = (np.arange(len(v_idx)) - first) < k
        return Pairs(
            r_idx[keep], v_idx[keep], np.rint(dist[keep]).astype(np.int64),
            np.ones(int(keep.sum()), dtype=bool),
        )  # fmt: skip

    def first_free(
        self,
        residents: list[int],
        needs_language: IntArray,
        usable: Callable[[int, int], bool],
        k: int = 4,
    ) -> tuple[int, int] | None:
        """Some (resident, volunteer) in reach with ``usable`` true, asking each resident's ``k``
        nearest active volunteers in one batch per language; None if none of those is usable
        (the caller then searches the full lists, so nothing is missed)."""
        rows = np.array(residents, dtype=np.int64)
        for need in np.unique(needs_language[rows]).tolist():
            group = rows[needs_language[rows] == need]
            located = group[self.residents.located[group]]
            found = self._tree(int(need))
            if found is not None and len(located):
                tree, members = found
                kk = min(k, len(members))
                _, pos = tree.query(
                    self._rxy[located], k=kk, distance_upper_bound=self.reach_m * _SCREEN_SLACK
                )
                pos = pos.reshape(len(located), kk)
                for row, r in enumerate(located.tolist()):
                    for p in pos[row].tolist():
                        if p >= len(members):
                            break
                        v = int(members[p])
                        exact = haversine_m(
                            self.residents.lat[r : r + 1], self.residents.lon[r : r + 1],
                            self.volunteers.lat[v : v + 1], self.volunteers.lon[v : v + 1],
                        )[0]  # fmt: skip
                        if exact <= self.reach_m and usable(r, v):
                            return r, v
            for r in group[self._has_pool(group)].tolist():
                pool = self._zone_pool(r)
                if pool is None:
                    continue
                for v in pool.tolist():
                    if (not need or self.speaks[v] & need) and usable(r, v):
                        return r, v
        return None

    def around(self, r: int, need: int) -> tuple[list[int], list[int], list[bool]]:
        """Every compatible volunteer within reach of one resident: (indexes, metres, measured).

        The same pairs as ``pairs([r], ..., None)``, with less overhead: the augmenting-path
        search asks this for one resident at a time.
        """
        volunteers: list[int] = []
        metres: list[int] = []
        measured: list[bool] = []
        if self.residents.located[r]:
            found = self._tree(need)
            if found is not None:
                tree, members = found
                hits = tree.query_ball_point(self._rxy[r], r=self.reach_m * _SCREEN_SLACK)
                if hits:
                    v_idx = members[np.asarray(hits, dtype=np.int64)]
                    lat_r = np.full(len(v_idx), self.residents.lat[r])
                    lon_r = np.full(len(v_idx), self.residents.lon[r])
                    dist = haversine_m(
                        lat_r, lon_r, self.volunteers.lat[v_idx], self.volunteers.lon[v_idx]
                    )
                    ok = dist <= self.reach_m
                    volunteers = v_idx[ok].tolist()
                    metres = np.rint(dist[ok]).astype(np.int64).tolist()
                    measured = [True] * len(volunteers)
        pool = self._zone_pool(r)
        if pool is not None and len(pool):
            if need:
                pool = pool[(self.speaks[pool] & need) != 0]
            volunteers += pool.tolist()
            metres += [round(self.reach_m)] * len(pool)
            measured += [False] * len(pool)
        return volunteers, metres, measured

    def within(
        self,
        residents: IntArray,
        needs_language: IntArray,
        budget_m: IntArray,
        lift_m: IntArray,
        *,
        k: int,
    ) -> Pairs:
        """Compatible pairs in reach with ``metres + lift_m[volunteer] < budget_m[resident]``
        (``budget_m`` indexed like ``residents``, ``lift_m`` by volunteer, both >= 0): the pairs
        a flow's potentials price below zero (see ``buddies._price``). Each resident's first
        ``k`` or so by the screen below, and all of them for a resident whose first ``k`` hold
        none: so the answer is empty exactly when no such pair exists.

        Measured pairs are screened in three dimensions: each volunteer is lifted to height
        ``lift_m`` above their place, and a resident's pairs lie within ``budget_m`` of them,
        since sqrt(metres² + lift²) <= metres + lift. Residents are asked in chunks of similar
        budget for their ``k`` nearest such volunteers (one vectorised query); a resident with
        ``k`` hits, none of them a pair, is then asked for the whole ball. Same-zone guesses cost
        the fallback, and are only looked at for residents whose budget exceeds it.
        """
        fallback = round(self.reach_m)
        parts: list[Pairs] = []
        located = self.residents.located[residents]
        for need in np.unique(needs_language[residents]).tolist():
            of_need = needs_language[residents] == need
            group, budget = residents[of_need & located], budget_m[of_need & located]
            found = self._tree(need)
            if found is not None and len(group):
                parts += self._lifted(found[1], group, budget, lift_m, k)
            wide = of_need & (budget_m > fallback) & self._has_pool(residents)
            for r, limit in zip(residents[wide].tolist(), budget_m[wide].tolist(), strict=True):
                pool = self._zone_pool(r)
                if pool is None or not len(pool):
                    continue
                pool = pool[fallback + lift_m[pool] < limit]
                if need:
                    pool = pool[(self.speaks[pool] & need) != 0]
                n = len(pool)
                parts.append(
                    Pairs(
                        np.full(n, r, dtype=np.int64), pool.astype(np.int64),
                        np.full(n, fallback, dtype=np.int64), np.zeros(n, dtype=bool),
                    )
                )  # fmt: skip
        return Pairs.join(parts)

    def _lifted(
        self, members: IntArray, group: IntArray, budget: IntArray, lift_m: IntArray, k: int
    ) -> list[Pairs]:
        """The measured part of :meth:`within` for residents needing one language."""
        # A volunteer lifted above every budget is no resident's pair.
        members = members[lift_m[members] < budget.max()]
        if not len(members):
            return []
        tree = cKDTree(np.column_stack([self._vxy[members], lift_m[members]]))
        order = np.argsort(budget, kind="stable")
        group, budget = group[order], budget[order]
        points = np.column_stack([self._rxy[group], np.zeros(len(group))])
        kk = min(k, len(members))
        parts: list[Pairs] = []
        unresolved: list[IntArray] = []
        for start in range(0, len(group), _CHUNK):
            rows = slice(start, start + _CHUNK)
            bound = float(budget[rows].max()) * _SCREEN_SLACK
            far, pos = tree.query(points[rows], k=kk, distance_upper_bound=bound)
            far, pos = far.reshape(-1, kk), pos.reshape(-1, kk)
            hit = pos < len(members)
            pairs, found = self._priced(group[rows], budget[rows], members, pos, hit, lift_m)
            parts.append(pairs)
            # k hits, none a pair, and the k-th still inside the resident's own ball: there may
            # be a pair beyond.
            full = hit[:, -1] & (far[:, -1] < budget[rows] * _SCREEN_SLACK) & (found == 0)
            unresolved.append(np.flatnonzero(full) + start)
        rest = np.concatenate(unresolved) if unresolved else np.zeros(0, dtype=np.int64)
        for start in range(0, len(rest), _CHUNK):
            ask = rest[start : start + _CHUNK]
            lists = tree.query_ball_point(points[ask], r=budget[ask] * _SCREEN_SLACK)
            counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
            width = int(counts.max()) if len(counts) else 0
            pos = np.full((len(ask), width), len(members), dtype=np.int64)
            for i, x in enumerate(lists):
                pos[i, : len(x)] = x
            pairs, _ = self._priced(
                group[ask], budget[ask], members, pos, pos < len(members), lift_m
            )
            parts.append(pairs)
        return parts

    def _priced(
        self,
        group: IntArray,
        budget: IntArray,
        members: IntArray,
        pos: IntArray,
        hit: BoolArray,
        lift_m: IntArray,
    ) -> tuple[Pairs, IntArray]:
        """The screened hits (``pos`` into ``members``, a row per resident) that are pairs, and
        how many each row has."""
        counts = hit.sum(axis=1)
        r_idx = np.repeat(group, counts)
        v_idx = members[pos[hit]]
        exact = haversine_m(
            self.residents.lat[r_idx], self.residents.lon[r_idx],
            self.volunteers.lat[v_idx], self.volunteers.lon[v_idx],
        )  # fmt: skip
        dist = np.rint(exact).astype(np.int64)
        ok = (exact <= self.reach_m) & (dist + lift_m[v_idx] < np.repeat(budget, counts))
        per_row = np.bincount(np.repeat(np.arange(len(group)), counts)[ok], minlength=len(group))
        pairs = Pairs(r_idx[ok], v_idx[ok], dist[ok], np.ones(int(ok.sum()), dtype=bool))
        return pairs, per_row

    def reachability(self, residents: IntArray, needs_language: IntArray) -> Reachability:
        """Whether each of these residents has a volunteer within reach, and one sharing a needed
        language (to explain why they have no buddy): exact zero or not, not a full count.

        A few nearest volunteers answer for almost everyone; only residents none of them reaches
        are searched in full, a chunk at a time. Asking for the full lists of all of them at once
        held tens of millions of pairs in a dense town short of volunteers.
        """
        in_reach = np.zeros(len(self.residents), dtype=np.int64)
        eligible = np.zeros(len(self.residents), dtype=np.int64)
        if not len(residents):
            return Reachability(in_reach, eligible)
        anyone = np.zeros_like(needs_language)
        for needs, found in ((anyone, in_reach), (needs_language, eligible)):
            probe = Pairs.join(
                [self._measured(residents, needs, _PROBE), self._by_zone(residents, needs, 1)]
            )
            np.add.at(found, probe.resident, 1)
            rest = residents[found[residents] == 0]
            for start in range(0, len(rest), _CHUNK):
                full = self.pairs(rest[start : start + _CHUNK], needs, None)
                np.add.at(found, full.resident, 1)
        return Reachability(in_reach, eligible)
        anyone = self.pairs(residents, np.zeros_like(needs_language), None)
        np.add.at(in_reach, anyone.resident, 1)
        need = needs_language[anyone.resident]
        ok = (need == 0) | ((self.speaks[anyone.volunteer] & need) != 0)
        np.add.at(eligible, anyone.resident[ok], 1)
        return Reachability(in_reach, eligible)
