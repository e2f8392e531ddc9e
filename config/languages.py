"""The five languages Hosen speaks, and which of them are written right to left."""

from __future__ import annotations

from enum import StrEnum


class Language(StrEnum):
    HE = "he"
    AR = "ar"
    EN = "en"
    RU = "ru"
    AM = "am"

    @property
    def rtl(self) -> bool:
        return self in (Language.HE, Language.AR)


ALL_LANGUAGES: tuple[Language, ...] = tuple(Language)
DEFAULT_LANGUAGE = Language.HE
