"""SMS segment counting: GSM-7 160/153, UCS-2 70/67, for every language Hosen speaks."""

from __future__ import annotations

import pytest

from dispatch.segments import count_segments, encoding


@pytest.mark.parametrize(
    ("text", "kind", "segments"),
    [
        ("", "GSM-7", 1),
        ("Are you OK? Reply 1 or 2", "GSM-7", 1),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters take two septets: 160 exactly
        ("€" * 81, "GSM-7", 2),
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 2),  # the escape pair is not split: part 1 holds 152
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),
        ("Ça va? Ñandu ÄÖÜ", "GSM-7", 1),
        ("ש" * 70, "UCS-2", 1),  # Hebrew
        ("ש" * 71, "UCS-2", 2),
        ("ش" * 134, "UCS-2", 2),  # Arabic
        ("ش" * 135, "UCS-2", 3),
        ("Вы в порядке? Ответьте 1 или 2", "UCS-2", 1),  # Russian
        ("ደህና ነዎት? 1 ወይም 2 ይመልሱ", "UCS-2", 1),  # Amharic (Ethiopic script)
        ("a" * 69 + "😀", "UCS-2", 2),  # an emoji is two UTF-16 units
        ("😀" * 35, "UCS-2", 1),
        ("a" * 66 + "😀" + "a" * 66, "UCS-2", 3),  # a surrogate pair is not split between parts
        ("ok ç", "UCS-2", 1),  # ç (lower case) is not in GSM 03.38, only Ç is
    ],
)
def test_encoding_and_segments(text: str, kind: str, segments: int) -> None:
    assert encoding(text) == kind
    assert count_segments(text) == segments
