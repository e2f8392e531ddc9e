from __future__ import annotations

import re
import string

import pytest

from config.i18n import catalog, missing_keys, plural_forms, plural_messages, t, tn
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


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_plural_messages_have_exactly_the_forms_of_their_language(language: Language) -> None:
    wanted = set(plural_forms(language))
    messages = plural_messages(language)
    assert "report.people" in messages
    for stem, forms in messages.items():
        assert forms == wanted, (
            f"{language}:{stem} has {sorted(forms)}, CLDR wants {sorted(wanted)}"
        )


@pytest.mark.parametrize(
    ("count", "words"),
    [
        (1, "1 человек"),
        (3, "3 человека"),
        (5, "5 человек"),
        (21, "21 человек"),
        (22, "22 человека"),
    ],
)
def test_russian_counts_read_right(count: int, words: str) -> None:
    assert tn(Language.RU, "report.people", count) == words


@pytest.mark.parametrize(
    ("count", "words"),
    [
        (0, "0 شخص"),
        (1, "شخص واحد (1)"),
        (2, "شخصان (2)"),
        (3, "3 أشخاص"),
        (11, "11 شخصًا"),
        (100, "100 شخص"),
    ],
)
def test_arabic_counts_read_right(count: int, words: str) -> None:
    assert tn(Language.AR, "report.people", count) == words


def test_a_plural_form_a_language_lacks_falls_back_to_its_other() -> None:
    assert tn(Language.EN, "report.people", 1) == "1 person"
    assert tn(Language.EN, "report.people", 0) == "0 people"
    assert tn(Language.HE, "report.people", 2) == "2 אנשים"
