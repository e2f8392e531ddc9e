"""A group's code after the word for join, in any of the five languages, is a join by SMS."""

from __future__ import annotations

import pytest

from bots.words import Command, command_in, language_of
from config.languages import Language


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("JOIN scouts-n", None, (Command.JOIN, "scouts-n")),
        ("join SCOUTS-N", Language.HE, (Command.JOIN, "SCOUTS-N")),
        ("הצטרפות ABC123", None, (Command.JOIN, "ABC123")),
        ("انضمام ABC123", Language.HE, (Command.JOIN, "ABC123")),
        ("вступить ABC123", None, (Command.JOIN, "ABC123")),
        ("ተቀላቀል ABC123", None, (Command.JOIN, "ABC123")),
        ("/start ABC123", None, (Command.JOIN, "ABC123")),
        ("join", None, (Command.JOIN, "")),
        ("join the scouts please", None, None),  # words, not a code
        ("הצטרפות לקבוצה", None, None),  # a code is Latin letters, digits, - and _
        ("join x", None, None),  # too short to be a code
        ("hello ABC123", None, None),
    ],
)
def test_join_with_a_code(
    text: str, language: Language | None, expected: tuple[Command, str] | None
) -> None:
    assert command_in(text, language) == expected


def test_the_join_word_still_says_the_language() -> None:
    assert language_of("הצטרפות ABC123") == Language.HE
    assert language_of("вступить ABC123") == Language.RU
    assert language_of("JOIN ABC123") is None  # English words say nothing
