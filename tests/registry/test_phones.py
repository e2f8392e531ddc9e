from __future__ import annotations

from collections.abc import Callable

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from config.i18n import t
from config.languages import Language
from registry import phones
from registry.errors import InvalidPhone
from registry.models import PhoneKind
from registry.phones import (
    Phone,
    PhoneFault,
    UnusablePhone,
    is_no_phone,
    mask_phone,
    normalise_phone,
)


@pytest.mark.parametrize(
    "text",
    [
        "052-555-1234",
        "0525551234",
        "+972 52 555 1234",
        "972525551234",
        "(052) 555 1234",
        "\u200e052\u200f5551234",
        "052\u00a0555\u00a01234",
    ],
)
def test_local_formats_normalise_to_e164(text: str) -> None:
    phone = normalise_phone(text, region="IL")
    assert phone.e164 == "+972525551234"
    assert phone.kind == PhoneKind.MOBILE and phone.can_receive_sms


@pytest.mark.parametrize("text", ["08-6123456", "02 555 5555", "+972-4-8123456"])
def test_landlines_are_known_and_cannot_take_sms(text: str) -> None:
    phone = normalise_phone(text, region="IL")
    assert phone.kind == PhoneKind.LANDLINE
    assert not phone.can_receive_sms


@pytest.mark.parametrize("text", ["", "abc", "12", "052-555", "0" * 41, "😀", "*6050", "+1 555"])
def test_invalid_numbers_are_refused_with_a_catalog_message(text: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalise_phone(text, region="IL")
    assert caught.value.key == "phone.invalid"
    assert "052-555-1234" in str(caught.value)


def test_masked_phone_hides_the_number() -> None:
    assert mask_phone("+972525551234") == "+972…34"
    assert "5551" not in mask_phone("+972525551234")


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("abc", PhoneFault.NOT_A_NUMBER),
        ("", PhoneFault.NOT_A_NUMBER),
        ("052-555", PhoneFault.TOO_SHORT),
        ("+1 555", PhoneFault.TOO_SHORT),
        ("0" * 41, PhoneFault.TOO_LONG),
        ("+999 52 555 1234", PhoneFault.UNKNOWN_COUNTRY),
        ("050-1234567", PhoneFault.NO_SUCH_NUMBER),
    ],
)
def test_an_unusable_number_says_why(text: str, fault: PhoneFault) -> None:
    with pytest.raises(UnusablePhone) as caught:
        normalise_phone(text, region="IL")
    assert caught.value.fault == fault and caught.value.key == "phone.invalid"
    assert t(Language.EN, fault.key) != fault.key  # each why is in the catalog


@pytest.mark.parametrize(
    "text", ["", "   ", "-", " -- ", "—", "0", "000-000-0000", "N/A", "n.a.", "none", "אין", "нет"]
)
def test_placeholders_mean_no_phone(text: str) -> None:
    assert is_no_phone(text)


@pytest.mark.parametrize("text", ["052-555-1234", "052", "12345", "call me", "+999"])
def test_a_written_number_is_not_a_placeholder(text: str) -> None:
    assert not is_no_phone(text)


def _outcome(read: Callable[[], Phone]) -> Phone | PhoneFault:
    try:
        return read()
    except UnusablePhone as exc:
        return exc.fault


def _written(lead: str, digits: str, separators: list[str]) -> str:
    """``lead`` and ``digits`` with the separators between the digits, in turn."""
    out = [lead]
    for position, digit in enumerate(digits):
        out.append(digit)
        if position < len(separators):
            out.append(separators[position])
    return "".join(out)


REGIONS = ("IL", "PS", "JO", "DE", "ET")


@st.composite
def written_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A region and a number as people write them: valid ones of every type, and the same with
    digits changed, dropped or added, behind every prefix a reader may take for another."""
    region = draw(st.sampled_from(REGIONS))
    code = str(phonenumbers.country_code_for_region(region))
    examples = [
        str(example.national_number)
        for kind in PhoneNumberType.values()
        if (example := phonenumbers.example_number_for_type(region, kind)) is not None
    ]
    digits = draw(
        st.one_of(
            st.sampled_from(examples),
            st.text(alphabet="0123456789", max_size=14),
            st.builds(
                lambda example, cut, tail: example[:cut] + tail,
                st.sampled_from(examples),
                st.integers(min_value=0, max_value=12),
                st.text(alphabet="0123456789", max_size=4),
            ),
        )
    )
    if draw(st.booleans()):  # written plainly, with the example's last digits changed
        plain = draw(st.sampled_from(examples))
        keep = draw(st.integers(min_value=1, max_value=len(plain)))
        tail = draw(st.text(alphabet="0123456789", min_size=len(plain) - keep))
        lead = draw(st.sampled_from(["0", f"+{code}", f"+{code} ", f"+ {code}"]))
        separators = draw(st.lists(st.sampled_from(["", "", " ", "-"])))
        return region, _written(lead, plain[:keep] + tail, separators)
    lead = draw(
        st.sampled_from(
            ["0", "00", "+", "+ ", f"+{code}", f"+{code} ", f"+ {code}-", code, "01", "012", ""]
        )
    )
    separators = draw(st.lists(st.sampled_from(["", "", " ", "-", "  ", "--", "(", ".", " - "])))
    return region, _written(lead, digits, separators)


@settings(max_examples=1500, deadline=None)
@given(
    number=st.one_of(
        written_numbers(),
        st.tuples(st.sampled_from(REGIONS), st.text(alphabet="0123456789+- ", max_size=18)),
    )
)
def test_the_plain_reader_gives_what_phonenumbers_gives(number: tuple[str, str]) -> None:
    """Valid, invalid and odd numbers alike: the same phone, or the same fault."""
    region, text = number
    fast = _outcome(lambda: normalise_phone(text, region=region))
    full = _outcome(
        lambda: phones._parse_phone(text.translate(phones._INVISIBLE).strip(), region=region)
    )
    assert fast == full


def test_plain_numbers_take_the_fast_reader() -> None:
    read = phones._plain_reader("IL")
    assert read is not None
    for text in ("052-555-1234", "0525551234", "+972 52 555 1234", "08-6123456", "+972-4-8123456"):
        assert read(text) == phones._parse_phone(text, region="IL")
    assert read("050-1234567") is None  # no such number: phonenumbers says why
    assert read("(052) 555 1234") is None  # not plain: phonenumbers reads it
    assert (
        phones._plain_reader("GB") is None
    )  # +44 is shared with Jersey, Guernsey, the Isle of Man
