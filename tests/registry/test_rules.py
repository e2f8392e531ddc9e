"""The registry's shared rules: one adult age, one distance formula in scalar and vector form."""

from __future__ import annotations

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
