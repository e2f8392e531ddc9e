"""Phone numbers: E.164 normalisation with phonenumbers, why a number cannot be used, which take SMS.

This module is the one home of the phone rules: what counts as "no phone at all" (a cell of
dashes or "N/A"), why a written number is unusable (too short, unknown country code...), and
which numbers can receive SMS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

from registry.errors import InvalidPhone
from registry.models import PhoneKind

_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.PAGER}
_LANDLINE = {PhoneNumberType.FIXED_LINE, PhoneNumberType.VOIP, PhoneNumberType.UAN}
# Bidi controls and other invisible characters that copy-paste from chat apps brings along.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff\u00a0"), " "
)


# What spreadsheets and forms write for "no phone": dashes, zeros, "N/A", "none" in each language.
# Compared after dropping white space and punctuation and case-folding.
_NO_PHONE_WORDS = frozenset(
    {
        "", "na", "n/a", "none", "null", "nil", "no", "nophone", "unknown", "tbd", "x", "?",
        "אין", "איןטלפון", "ללא", "לאידוע", "לא", "איןמספר",
        "нет", "لا", "لايوجد", "የለም",
    }
)  # fmt: skip
_FILLER = re.compile(r"[\s\-\u2010-\u2015_.,'\"()*#]+")
_ZEROS = re.compile(r"0+")
_TOO_LONG_TEXT = 40


class PhoneFault(StrEnum):
    """Why a written number cannot be used; each is a catalog key under ``phone.fault``."""

    NOT_A_NUMBER = "not_a_number"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    UNKNOWN_COUNTRY = "unknown_country"
    NO_SUCH_NUMBER = "no_such_number"  # the right length, but not a number in use in that country

    @property
    def key(self) -> str:
        return f"phone.fault.{self.value}"


class UnusablePhone(InvalidPhone):
    """:class:`InvalidPhone` that also says why (``fault``), for staff reports."""

    def __init__(self, fault: PhoneFault) -> None:
        self.fault = fault
        super().__init__("phone.invalid")


_POSSIBLE_FAULT = {
    ValidationResult.TOO_SHORT: PhoneFault.TOO_SHORT,
    ValidationResult.TOO_LONG: PhoneFault.TOO_LONG,
    ValidationResult.INVALID_COUNTRY_CODE: PhoneFault.UNKNOWN_COUNTRY,
    ValidationResult.INVALID_LENGTH: PhoneFault.NO_SUCH_NUMBER,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: PhoneFault.TOO_SHORT,
}
_PARSE_FAULT = {
    NumberParseException.INVALID_COUNTRY_CODE: PhoneFault.UNKNOWN_COUNTRY,
    NumberParseException.TOO_SHORT_AFTER_IDD: PhoneFault.TOO_SHORT,
    NumberParseException.TOO_SHORT_NSN: PhoneFault.TOO_SHORT,
    NumberParseException.TOO_LONG: PhoneFault.TOO_LONG,
}


def is_no_phone(text: str | None) -> bool:
    """Whether a cell or answer means "no phone": empty, spaces, dashes, zeros, "N/A", "אין"..."""
    if text is None:
        return True
    squeezed = _FILLER.sub("", text.translate(_INVISIBLE)).casefold()
    return squeezed in _NO_PHONE_WORDS or _ZEROS.fullmatch(squeezed) is not None


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str
    kind: PhoneKind

    @property
    def can_receive_sms(self) -> bool:
        return self.kind != PhoneKind.LANDLINE


def normalise_phone(text: str, *, region: str) -> Phone:
    """Parse a number written in any local or international format into E.164.

    Raises :class:`UnusablePhone` (an :class:`InvalidPhone`, catalog key ``phone.invalid``, with
    the ``fault`` that says why) when it is not a valid number.
    """
    cleaned = text.translate(_INVISIBLE).strip()
    if not any(ch.isdigit() for ch in cleaned):
        raise UnusablePhone(PhoneFault.NOT_A_NUMBER)
    if len(cleaned) > _TOO_LONG_TEXT:
        raise UnusablePhone(PhoneFault.TOO_LONG)
    try:
        parsed = phonenumbers.parse(cleaned, region)
    except NumberParseException as exc:
        raise UnusablePhone(_PARSE_FAULT.get(exc.error_type, PhoneFault.NOT_A_NUMBER)) from None
    # A number is valid exactly when it has a type in its country's plan (what
    # ``is_valid_number`` checks), so the type is worked out once, for both.
    number_type = phonenumbers.number_type(parsed)
    if number_type == PhoneNumberType.UNKNOWN:
        possible = phonenumbers.is_possible_number_with_reason(parsed)
        raise UnusablePhone(_POSSIBLE_FAULT.get(possible, PhoneFault.NO_SUCH_NUMBER))
    if number_type in _MOBILE:
        kind = PhoneKind.MOBILE
    elif number_type in _LANDLINE:
        kind = PhoneKind.LANDLINE
    else:
        kind = PhoneKind.UNKNOWN
    return Phone(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), kind)


def mask_phone(e164: str | None) -> str:
    """A phone fit for logs: country code and last two digits only."""
    if not e164:
        return "-"
    return f"{e164[:4]}…{e164[-2:]}"
