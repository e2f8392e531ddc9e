from __future__ import annotations

import re
import string

import pytest

from config.i18n import catalog, missing_keys, t
from config.languages import ALL_LANGUAGES, Language


def test_every_catalog_has_every_key() -> None:
    assert missing_keys() == {}


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_placeholders_match_english(language: Language) -> None:
    formatter = string.Formatter()
    for key, english in catalog(Language.EN).items():
        wanted = {name for _, name, _, _ in formatter.parse(english) if name}
        found = {name for _, name, _, _ in formatter.parse(catalog(language)[key]) if name}
        assert found == wanted, f"{language}:{key} placeholders {found} != {wanted}"


@pytest.mark.parametrize("language", [Language.HE, Language.AR, Language.RU, Language.AM])
def test_translations_are_not_english_copies(language: Language) -> None:
    english = catalog(Language.EN)
    copies = [
        k
        for k, v in catalog(language).items()
        if v == english.get(k) and re.search("[A-Za-z]{4}", v)
    ]
    assert copies == []


def test_rtl_languages() -> None:
    assert Language.HE.rtl and Language.AR.rtl
    assert not Language.RU.rtl and not Language.AM.rtl and not Language.EN.rtl


def test_lookup_fills_placeholders() -> None:
    assert "Neve" in t(Language.EN, "zone.unknown", zone="Neve")
