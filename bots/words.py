"""Understanding what people type: normalising text and recognising commands and keywords.

A keyword is recognised in the person's language and, always, in English (many phones and many
people fall back to Latin letters). Carrier-standard SMS keywords (STOP, START, HELP...) are a
protocol, not text for people, so they are constants here rather than catalog entries.

Digits of every script are read as ASCII digits (:func:`ascii_digits`, applied by :func:`clean`),
so "٣", "３" and "²" are numbers wherever a number is expected.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

from config.i18n import t
from config.languages import ALL_LANGUAGES, Language

# Bidi controls, zero-width and other invisible characters that phones and chat apps add.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\u00ad]")
MAX_INPUT = 4000  # Telegram's own limit; an SMS is shorter. Longer text is cut, not refused.


class Command(StrEnum):
    JOIN = "join"
    STATUS = "status"
    UPDATE = "update"
    LANGUAGE = "language"
    STOP = "stop"
    DELETE = "delete"
    HELP = "help"
    BACK = "back"
    CANCEL = "cancel"


class Word(StrEnum):
    """Answers that are not commands but are understood at many steps."""

    YES = "yes"
    NO = "no"
    NONE = "none"
    DONE = "done"
    SKIP = "skip"


# The words every US/UK carrier and Twilio's Advanced Opt-Out treat specially. On SMS they win
# over everything else: after STOP a number must get nothing but the confirmation.
CARRIER_OPT_OUT = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
CARRIER_OPT_IN = frozenset({"start", "unstop"})
# Twilio also re-subscribes an opted-out number that texts YES (only then is it an opt-in).
CARRIER_OPT_IN_AFTER_STOP = frozenset({"yes"})
CARRIER_HELP = frozenset({"help", "info"})


def ascii_digits(text: str) -> str:
    """``text`` in NFKC with every digit of any script as its ASCII digit ("٣", "３" → "3").

    NFKC already turns compatibility digits ("²", "①") into ASCII ones; the decimal digits of
    other scripts (Arabic-Indic, Devanagari...) and Ethiopic digits are mapped one by one, so
    ``int()`` of a string of ``isdigit()`` characters never fails on what a phone sends.
    """
    normal = unicodedata.normalize("NFKC", text)
    return "".join(
        str(unicodedata.digit(ch)) if not ch.isascii() and ch.isdigit() else ch for ch in normal
    )


def clean(text: str | None) -> str:
    """Text as the dialog stores it: invisible characters dropped, white space collapsed, digits
    of every script as ASCII digits."""
    if not text:
        return ""
    text = ascii_digits(_INVISIBLE.sub("", text[:MAX_INPUT]))
    kept = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(kept.split())


def fold(text: str | None) -> str:
    """Text for comparison: cleaned, case-folded, punctuation and symbols (emoji too) removed."""
    cleaned = clean(text).casefold()
    # Letters and digits stay, combining marks (Arabic harakat, Hebrew niqqud) go, the rest
    # (punctuation, symbols, emoji) becomes a space.
    kept = "".join(
        ch if unicodedata.category(ch)[0] in "LN" or ch == " " else " "
        for ch in cleaned
        if unicodedata.category(ch)[0] != "M"
    )
    return " ".join(kept.split())


def _words(language: Language, key: str) -> set[str]:
    return {fold(word) for word in t(language, f"bot.words.{key}").split(",") if fold(word)}


def words_for(language: Language, key: str) -> set[str]:
    """The folded spellings of a keyword in ``language`` and in English."""
    return _words(language, key) | _words(Language.EN, key)


def all_words(key: str) -> set[str]:
    """The folded spellings of a keyword in every language (for people whose language we don't know)."""
    found: set[str] = set()
    for language in ALL_LANGUAGES:
        found |= _words(language, key)
    return found


def command_in(text: str | None, language: Language | None) -> tuple[Command, str] | None:
    """A command and its argument, from ``/start payload`` or a keyword written on its own."""
    raw = clean(text)
    if raw.startswith("/"):
        head, _, rest = raw[1:].partition(" ")
        head = head.split("@", 1)[0].casefold()  # /start@HosenBot in groups
        aliases = {"start": Command.JOIN, "resume": Command.JOIN, "menu": Command.STATUS}
        try:
            return aliases.get(head) or Command(head), rest.strip()
        except ValueError:
            return None
    folded = fold(raw)
    if not folded or len(folded) > 40:
        return None
    for command in Command:
        spellings = words_for(language, command.value) if language else all_words(command.value)
        if folded in spellings:
            return command, ""
    return None


def is_word(text: str | None, language: Language | None, word: Word) -> bool:
    folded = fold(text)
    spellings = words_for(language, word.value) if language else all_words(word.value)
    return bool(folded) and folded in spellings


def language_of(text: str | None) -> Language | None:
    """The language whose own keyword this is (English words say nothing: everyone uses them)."""
    folded = fold(text)
    if not folded or clean(text).startswith("/"):
        return None
    english = set().union(*(_words(Language.EN, c.value) for c in Command))
    if folded in english:
        return None
    for language in ALL_LANGUAGES:
        if any(folded in _words(language, c.value) for c in Command):
            return language
    return None
