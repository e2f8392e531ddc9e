from __future__ import annotations

import pytest

from bots.words import Command, Word, ascii_digits, clean, command_in, fold, is_word, language_of
from config.i18n import t
from config.languages import ALL_LANGUAGES, Language


def test_clean_drops_bidi_controls_and_collapses_space() -> None:
    assert clean("  \u202bשרה\u202c \u200f כהן\n") == "שרה כהן"
    assert clean(None) == ""


def test_fold_drops_punctuation_emoji_and_marks() -> None:
    assert fold("🙂 STOP!") == "stop"
    assert fold("تخطَّ") == "تخط"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/start", (Command.JOIN, "")),
        ("/start youth-7", (Command.JOIN, "youth-7")),
        ("/status@HosenBot", (Command.STATUS, "")),
        ("/nonsense", None),
        ("hello there my friend", None),
    ],
)
def test_slash_commands(text: str, expected: tuple[Command, str] | None) -> None:
    assert command_in(text, Language.EN) == expected


@pytest.mark.parametrize("language", ALL_LANGUAGES)
@pytest.mark.parametrize("command", list(Command))
def test_every_command_has_a_word_in_every_language(language: Language, command: Command) -> None:
    first = t(language, f"bot.words.{command.value}").split(",")[0]
    assert command_in(first, language) == (command, "")
    # English keywords work whatever the language.
    english = t(Language.EN, f"bot.words.{command.value}").split(",")[0]
    assert command_in(english.upper(), language) == (command, "")


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_navigation_button_labels_are_understood_as_words(language: Language) -> None:
    """On a reply keyboard a button sends its label as text: it must read as the command."""
    assert command_in(t(language, "bot.nav.back"), language) == (Command.BACK, "")
    assert command_in(t(language, "bot.nav.cancel"), language) == (Command.CANCEL, "")
    assert is_word(t(language, "bot.nav.done"), language, Word.DONE)


def test_language_is_guessed_from_a_keyword_in_it() -> None:
    assert language_of("הצטרפות") == Language.HE
    assert language_of("انضمام") == Language.AR
    assert language_of("Старт") == Language.RU
    assert language_of("ተቀላቀል") == Language.AM
    assert language_of("JOIN") is None
    assert language_of("/start") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("٣", "3"), ("３", "3"), ("²", "2"), ("۱۹۴۰", "1940"), ("१२", "12"), ("፫", "3"), ("a1", "a1")],
)
def test_ascii_digits_reads_every_script(text: str, expected: str) -> None:
    assert ascii_digits(text) == expected
    assert fold(text) == expected.casefold()
