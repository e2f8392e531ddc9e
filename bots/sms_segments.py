"""How many SMS segments a text costs: GSM-7 (160, or 153 each when split) or UCS-2 (70 / 67).

Hebrew, Arabic, Russian and Amharic force UCS-2. A character outside the Basic Multilingual
Plane (an emoji) takes two UCS-2 units.
"""

from __future__ import annotations

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def segments(text: str) -> int:
    """The number of segments ``text`` is sent as."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text):
        units = sum(2 if ch in _GSM_EXTENDED else 1 for ch in text)
        single, part = 160, 153
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
        single, part = 70, 67
    if units <= single:
        return 1
    return -(-units // part)
