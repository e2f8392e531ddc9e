"""The registry's shared rules, defined once: who is an adult, how far apart two places are, how
long a name may be, how many people a volunteer may check on, which birth years are plausible.

The dialog, the importer, the assignment engine and the dispatcher all ask these, so a change
of rule is one line here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is loaded by the one function that needs it, not by every command
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

ADULT_AGE = 18  # a minor never visits alone and needs a guardian's consent
EARTH_RADIUS_M = 6_371_008.8  # the mean Earth radius (IUGG), for great-circle distances
MIN_VOLUNTEER_AGE = 14  # younger people register as residents only
OLDEST_AGE = 110  # a birth year further back is a typing error
MAX_NAME = 120  # characters of a person's, a group's or a resource's name (the column's size)
MAX_ADDRESS = 200
# How many people a volunteer checks on (0: a role, no buddies). More than a handful cannot be
# visited in the first hour of an emergency.
MIN_CHECKIN_CAPACITY = 0
MAX_CHECKIN_CAPACITY = 6
DEFAULT_CHECKIN_CAPACITY = 3


def plausible_birth_year(birth_year: int, year: int) -> bool:
    """Whether someone alive in ``year`` can have been born in ``birth_year``."""
    return year - OLDEST_AGE <= birth_year <= year


def valid_checkin_capacity(capacity: int) -> bool:
    return MIN_CHECKIN_CAPACITY <= capacity <= MAX_CHECKIN_CAPACITY


def age(birth_year: int | None, year: int) -> int | None:
    """Age in ``year`` by birth year alone (None when the birth year is unknown)."""
    return None if birth_year is None else year - birth_year


def is_adult(birth_year: int | None, year: int) -> bool:
    """Known to be an adult in ``year`` (an unknown birth year is not an adult)."""
    years = age(birth_year, year)
    return years is not None and years >= ADULT_AGE


def is_minor(birth_year: int | None, year: int) -> bool:
    """Known to be under age in ``year`` (an unknown birth year is not a minor)."""
    years = age(birth_year, year)
    return years is not None and years < ADULT_AGE


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres between two points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(a, 1.0)))


def haversine_m(
    lat1: FloatArray, lon1: FloatArray, lat2: FloatArray, lon2: FloatArray
) -> FloatArray:
    """:func:`distance_m` element-wise over arrays (the same formula, vectorised)."""
    import numpy as np

    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    )
    result: FloatArray = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
    return result
