from __future__ import annotations

import pytest

from config.i18n import t
from config.languages import Language
from registry.errors import InvalidPhone
from registry.models import PhoneKind
from registry.phones import PhoneFault, UnusablePhone, is_no_phone, mask_phone, normalise_phone


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
