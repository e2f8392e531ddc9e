"""Phone numbers: E.164 normalisation with phonenumbers, why a number cannot be used, which take SMS.

This module is the one home of the phone rules: what counts as "no phone at all" (a cell of
dashes or "N/A"), why a written number is unusable (too short, unknown country code...), and
which numbers can receive SMS.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneMetadata,
    PhoneNumberDesc,
    PhoneNumberType,
    ValidationResult,
)

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
_SIGNIFICANT_DIGIT = re.compile(r"[1-9]")
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
    if _SIGNIFICANT_DIGIT.search(text):
        return False  # the usual number: no placeholder has a digit but zero
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

    A valid number written the usual way (``050-1234567``, ``+972 50 123 4567``) is read
    without ``phonenumbers.parse``, which costs most of an import's per-row time; the result
    is the same (``tests/registry/test_phones.py`` compares the two on generated numbers).
    """
    cleaned = text.translate(_INVISIBLE).strip()
    if len(cleaned) <= _TOO_LONG_TEXT:
        plain = _plain_reader(region)
        if plain is not None and (phone := plain(cleaned)) is not None:
            return phone
    return _parse_phone(cleaned, region=region)


def _parse_phone(cleaned: str, *, region: str) -> Phone:
    """:func:`normalise_phone` by ``phonenumbers`` alone, for any way of writing a number."""
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


# Digits with at most single spaces or dashes between them, after a "+" or a national prefix.
_PLAIN_NUMBER = re.compile(r"(\+ ?|0)([0-9]+(?:[ -][0-9]+)*)")
_KINDS = {
    **dict.fromkeys(_MOBILE, PhoneKind.MOBILE),
    **dict.fromkeys(_LANDLINE, PhoneKind.LANDLINE),
}
# The order in which ``phonenumbers`` tries a number's types (``_number_type_helper``).
_TYPE_ORDER = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)

_Matcher = Callable[[str], bool]


def _matcher(desc: PhoneNumberDesc | None) -> _Matcher:
    """Whether a national number fits ``desc``, as ``phonenumbers`` decides it (its possible
    lengths, then its pattern matched whole), with the pattern compiled once."""
    if desc is None or not desc.national_number_pattern:
        return lambda number: False
    lengths = frozenset(desc.possible_length)
    fullmatch = re.compile(desc.national_number_pattern).fullmatch
    if not lengths:
        return lambda number: fullmatch(number) is not None
    return lambda number: len(number) in lengths and fullmatch(number) is not None


@functools.cache
def _plain_reader(region: str) -> Callable[[str], Phone | None] | None:
    """For ``region``, a reader of numbers written plainly: ``+`` and the country's code, or
    the national prefix, then the national number in digits, spaces and dashes. It gives the
    :class:`Phone` that ``phonenumbers`` gives for a valid such number, and ``None`` for
    anything else (left to :func:`_parse_phone`). ``None`` for a country that shares its code
    with others, or whose national prefix is not a plain "0" (``phonenumbers`` would read
    more into those than this does)."""
    metadata = PhoneMetadata.metadata_for_region(region)
    if (
        metadata is None
        or metadata.country_code is None
        or phonenumbers.region_codes_for_country_code(metadata.country_code) != (region,)
        or metadata.national_prefix != "0"
        or metadata.national_prefix_for_parsing not in (None, metadata.national_prefix)
        or metadata.national_prefix_transform_rule
        or metadata.leading_digits
    ):
        return None
    country = str(metadata.country_code)
    # A number whose digits start like a call abroad ("00", "012" in Israel) is one for
    # phonenumbers to read.
    idd = re.compile(metadata.international_prefix or "(?!)").match
    general = _matcher(metadata.general_desc)
    special = [(_matcher(getattr(metadata, name)), kind) for name, kind in _TYPE_ORDER]
    fixed_line, mobile = _matcher(metadata.fixed_line), _matcher(metadata.mobile)
    same_pattern = metadata.same_mobile_and_fixed_line_pattern

    def number_type(national: str) -> int:
        if not general(national):
            return PhoneNumberType.UNKNOWN
        for matches, kind in special:
            if matches(national):
                return kind
        if fixed_line(national):
            if same_pattern or mobile(national):
                return PhoneNumberType.FIXED_LINE_OR_MOBILE
            return PhoneNumberType.FIXED_LINE
        if not same_pattern and mobile(national):
            return PhoneNumberType.MOBILE
        return PhoneNumberType.UNKNOWN

    def read(cleaned: str) -> Phone | None:
        written = _PLAIN_NUMBER.fullmatch(cleaned)
        if written is None:
            return None
        lead, rest = written.groups()
        digits = rest.replace(" ", "").replace("-", "")
        if lead.startswith("+"):
            if not digits.startswith(country):
                return None
            national = digits[len(country) :]
        else:
            if idd(lead + digits):
                return None
            national = digits
        if not national or national[0] == "0":
            return None
        number_kind = number_type(national)
        if number_kind == PhoneNumberType.UNKNOWN:
            return None
        return Phone(f"+{country}{national}", _KINDS.get(number_kind, PhoneKind.UNKNOWN))

    return read


def mask_phone(e164: str | None) -> str:
    """A phone fit for logs: country code and last two digits only."""
    if not e164:
        return "-"
    return f"{e164[:4]}…{e164[-2:]}"
