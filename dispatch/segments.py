"""How many SMS segments a text costs, and in which encoding it travels.

Carriers send a text as GSM-7 when every character is in the GSM 03.38 alphabet (160 septets in
one segment, 153 in each part of a concatenated message; the extension characters such as ``€``
and ``[`` take two septets). Any other character, a single Hebrew, Arabic, Cyrillic or Ethiopic
letter or an emoji, switches the whole message to UCS-2: 70 UTF-16 code units in one segment,
67 per part. Hosen counts segments for every SMS prompt (cost and readability) and the Twilio
fake reports ``num_segments`` with the same function.
"""

from __future__ import annotations

from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 basic character set (the escape character 0x1B itself is not a printable member).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs an escape plus the character, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def encoding(text: str) -> Encoding:
    """The encoding a carrier uses for ``text``: GSM-7 if every character allows it."""
    for char in text:
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION:
            return "UCS-2"
    return "GSM-7"


def _units(text: str, kind: Encoding) -> list[int]:
    """The size of each character in the encoding's units (septets or UTF-16 code units)."""
    if kind == "GSM-7":
        return [2 if char in GSM7_EXTENSION else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def count_segments(text: str) -> int:
    """The number of SMS segments ``text`` is sent as (at least 1).

    A character is never split between two parts: an escaped GSM-7 character or a UTF-16
    surrogate pair that does not fit at the end of a part starts the next one, as handsets and
    Twilio do.
    """
    kind = encoding(text)
    units = _units(text, kind)
    single, part = (GSM7_SINGLE, GSM7_PART) if kind == "GSM-7" else (UCS2_SINGLE, UCS2_PART)
    if sum(units) <= single:
        return 1
    segments, used = 1, 0
    for size in units:
        if used + size > part:
            segments += 1
            used = 0
        used += size
    return segments
