"""The registry's shared rules: one adult age, one distance formula in scalar and vector form."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from registry import rules


def test_adult_and_minor_by_birth_year() -> None:
    assert rules.is_adult(2008, 2026) and not rules.is_minor(2008, 2026)
    assert rules.is_minor(2009, 2026) and not rules.is_adult(2009, 2026)
    assert not rules.is_adult(None, 2026) and not rules.is_minor(None, 2026)
    assert rules.age(1990, 2026) == 36 and rules.age(None, 2026) is None


def test_distance_scalar_and_vector_agree_and_measure_a_known_arc() -> None:
    # One degree of latitude on the mean sphere: pi * R / 180.
    assert abs(rules.distance_m(31.0, 34.0, 32.0, 34.0) - np.pi * rules.EARTH_RADIUS_M / 180) < 1e-6
    rng = np.random.default_rng(3)
    lat1, lat2 = rng.uniform(29, 33, 50), rng.uniform(29, 33, 50)
    lon1, lon2 = rng.uniform(34, 36, 50), rng.uniform(34, 36, 50)
    vector = rules.haversine_m(lat1, lon1, lat2, lon2)
    scalar = [rules.distance_m(*p) for p in zip(lat1, lon1, lat2, lon2, strict=True)]
    assert np.allclose(vector, scalar, rtol=1e-12, atol=1e-6)


def test_birth_years_and_checkin_capacity() -> None:
    assert rules.plausible_birth_year(2026 - rules.OLDEST_AGE, 2026)
    assert not rules.plausible_birth_year(2026 - rules.OLDEST_AGE - 1, 2026)
    assert not rules.plausible_birth_year(2027, 2026)
    assert rules.valid_checkin_capacity(rules.MIN_CHECKIN_CAPACITY)
    assert rules.valid_checkin_capacity(rules.MAX_CHECKIN_CAPACITY)
    assert not rules.valid_checkin_capacity(rules.MAX_CHECKIN_CAPACITY + 1)
    assert rules.valid_checkin_capacity(rules.DEFAULT_CHECKIN_CAPACITY)


RULE_NAMES = (
    "ADULT_AGE",
    "EARTH_RADIUS_M",
    "MIN_VOLUNTEER_AGE",
    "OLDEST_AGE",
    "OLDEST",
    "MAX_NAME",
    "MAX_ADDRESS",
    "MAX_CAPACITY",
    "MIN_CHECKIN_CAPACITY",
    "MAX_CHECKIN_CAPACITY",
)


def test_each_rule_is_defined_once() -> None:
    """The dialog, the importer, the engine and the dispatcher import these from
    ``registry.rules``; no other module of the project defines its own."""
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(rf"^({'|'.join(RULE_NAMES)})\s*[:=]", re.MULTILINE)
    defined = [
        f"{path.relative_to(root)}: {match.group(1)}"
        for package in ("config", "registry", "dispatch", "bots", "hosen", "fakes")
        for path in sorted((root / package).rglob("*.py"))
        for match in pattern.finditer(path.read_text(encoding="utf-8"))
        if path != root / "registry" / "rules.py"
    ]
    assert defined == []
    radius = re.compile(r"6[_]?371")
    elsewhere = [
        str(path.relative_to(root))
        for package in ("registry", "dispatch", "bots", "hosen")
        for path in sorted((root / package).rglob("*.py"))
        if path != root / "registry" / "rules.py"
        and radius.search(path.read_text(encoding="utf-8"))
    ]
    assert elsewhere == []
