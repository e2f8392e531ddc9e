from __future__ import annotations

import pytest

from registry.errors import InvalidPhone
from registry.models import PhoneKind
from registry.phones import mask_phone, normalise_phone


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
