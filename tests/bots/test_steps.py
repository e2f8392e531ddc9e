"""The typed draft: rows written by earlier builds read back, and written as they always were."""

from __future__ import annotations

from typing import Any

from bots.steps import Availability, Draft, Step, Who
from config.languages import Language
from dispatch.models import HelpNeed

OLD_ROW: dict[str, Any] = {
    "language": "ar",
    "group": "youth-7",
    "who": "both",
    "name": "Miriam",
    "phone": None,
    "authority": "kiryat-tamar",
    "zone": "kt-center",
    "lat": 31.61,
    "lon": 34.77,
    "birth_year": 1950,
    "skills": ["driving"],
    "langs": ["ar", "he"],
    "avail": "emergency",
    "vehicle": False,
    "capacity": 3,
    "needs": [],
    "ec_name": None,
    "consent": "2026-11.1",
    "health": None,
    "_edit": True,
    "_resume": "zone",
    "_needs": ["mobility"],
    "_new_consents": ["registration"],
    "_officer": {"step": "audience", "zones": ["kt-center"]},
}


def test_an_old_row_reads_into_the_typed_draft_and_writes_back_unchanged() -> None:
    draft = Draft.load(OLD_ROW)
    assert draft.language == Language.AR and draft.who == Who.BOTH
    assert draft.avail == Availability.EMERGENCY and draft.resume == Step.ZONE
    assert draft.editing and draft.picked_needs == ["mobility"]
    assert draft.has("ec_name") and draft.ec_name is None  # skipped is answered
    assert not draft.has("ec_phone") and not draft.has("guardian")
    assert draft.others() == {"_officer": OLD_ROW["_officer"]}  # another flow's state rides along
    assert draft.dump() == OLD_ROW


def test_a_damaged_value_is_dropped_and_the_rest_kept() -> None:
    draft = Draft.load({"who": "alien", "name": "Omar", "birth_year": "19x0", "needs": "x"})
    assert draft.dump() == {"name": "Omar"}
    assert Draft.load(None).dump() == {} and Draft.load({"birth_year": "1980"}).birth_year == 1980


def test_forget_makes_an_answer_unanswered() -> None:
    draft = Draft.load({"zone": "kt-center", "authority": "kiryat-tamar"})
    draft.forget("zone")
    assert draft.dump() == {"authority": "kiryat-tamar"} and draft.answered() == {"authority"}


def test_the_kind_of_help_asked_is_bookkeeping_and_a_damaged_one_is_dropped() -> None:
    draft = Draft.load({"name": "Sara", "_help_need": "power"})
    assert draft.help_need == HelpNeed.POWER and draft.answered() == {"name"}
    assert draft.dump() == {"name": "Sara", "_help_need": "power"}
    assert Draft.load({"name": "Sara", "_help_need": "a pony"}).dump() == {"name": "Sara"}
