"""Phone numbers: E.164 normalisation with phonenumbers, and knowing which numbers take SMS."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from registry.errors import InvalidPhone
from registry.models import PhoneKind

_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.PAGER}
_LANDLINE = {PhoneNumberType.FIXED_LINE, PhoneNumberType.VOIP, PhoneNumberType.UAN}
# Bidi controls and other invisible characters that copy-paste from chat apps brings along.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff\u00a0"), " "
)


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str
    kind: PhoneKind

    @property
    def can_receive_sms(self) -> bool:
        return self.kind != PhoneKind.LANDLINE


def normalise_phone(text: str, *, region: str) -> Phone:
    """Parse a number written in any local or international format into E.164.

    Raises :class:`InvalidPhone` (catalog key ``phone.invalid``) when it is not a valid number.
    """
    cleaned = text.translate(_INVISIBLE).strip()
    if not cleaned or len(cleaned) > 40:
        raise InvalidPhone("phone.invalid")
    try:
        parsed = phonenumbers.parse(cleaned, region)
    except NumberParseException:
        raise InvalidPhone("phone.invalid") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone("phone.invalid")
    number_type = phonenumbers.number_type(parsed)
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
