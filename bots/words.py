"""Understanding what people type: normalising text and recognising commands and keywords.

A keyword is recognised in the person's language and, always, in English (many phones and many
people fall back to Latin letters). Stop and start words, and the answers to a check-in ("OK",
"help"), are recognised in every language for everyone: a resident registered in Hebrew who
writes "СТОП" or "مساعدة" means it. The word lists live in the message catalogs
(``bot.words.*``). Carrier-standard SMS keywords (STOP, START, HELP...) are a protocol, not text
for people, so they are constants here rather than catalog entries.

Digits of every script are read as ASCII digits (:func:`ascii_digits`, applied by :func:`clean`),
so "٣", "３" and "²" are numbers wherever a number is expected.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from functools import cache

from config.i18n import t
from config.languages import ALL_LANGUAGES, Language
from dispatch.models import Answer, HelpNeed
from registry.groups import CODE_PATTERN

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


# Commands understood in every language, whatever the person's own: nobody may be kept on a list
# because they wrote "stop" in the "wrong" language.
EVERY_LANGUAGE = frozenset({Command.STOP, Command.JOIN})


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


@cache
def _words(language: Language, key: str) -> frozenset[str]:
    return frozenset(
        fold(word) for word in t(language, f"bot.words.{key}").split(",") if fold(word)
    )


def number_in(text: str | None) -> int | None:
    """The number a person typed ("3", "٣", "３", "3."), or None: the one way user text becomes an int."""
    typed = clean(text).rstrip(".)")
    return int(typed) if typed.isascii() and typed.isdigit() else None


def words_for(language: Language, key: str) -> frozenset[str]:
    """The folded spellings of a keyword in ``language`` and in English."""
    return _words(language, key) | _words(Language.EN, key)


@cache
def all_words(key: str) -> frozenset[str]:
    """The folded spellings of a keyword in every language (for people whose language we don't know)."""
    found: set[str] = set()
    for language in ALL_LANGUAGES:
        found |= _words(language, key)
    return frozenset(found)


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
        if language is None or command in EVERY_LANGUAGE:
            spellings = all_words(command.value)
        else:
            spellings = words_for(language, command.value)
        if folded in spellings:
            return command, ""
    # "JOIN CODE" by SMS: the word for join in any language, then a group's code as printed.
    head, _, code = raw.partition(" ")
    if CODE_PATTERN.fullmatch(code.strip()) and fold(head) in all_words(Command.JOIN.value):
        return Command.JOIN, code.strip()
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
    command = command_in(text, None)
    if command is not None and command[0] == Command.JOIN and command[1]:
        folded = fold(clean(text).partition(" ")[0])  # "הצטרפות CODE": the word, not the code
    english = set().union(*(_words(Language.EN, c.value) for c in Command))
    if folded in english:
        return None
    for language in ALL_LANGUAGES:
        if any(folded in _words(language, c.value) for c in Command):
            return language
    return None


def checkin_answer(text: str | None) -> Answer | None:
    """What a typed answer to a check-in says, in any language: OK, help, or None (not a word of
    either). A text that contains a way of asking for help ("need help, my medicine ran out")
    is a request for help: better an officer reads one too many than misses one."""
    folded = fold(text)
    if not folded:
        return None
    if asks_for_help(text):
        return Answer.HELP
    if folded in all_words("ok"):
        return Answer.OK
    return None


def asks_for_help(text: str | None) -> bool:
    """Whether ``text`` is, or contains as whole words, a way of asking for help in any language."""
    folded = fold(text)
    if not folded:
        return False
    padded = f" {folded} "
    return any(f" {phrase} " in padded for phrase in all_words("need_help"))


# The catalog key of each kind of help a request may name (``bot.words.need_*`` word stems).
NEED_STEMS = {
    HelpNeed.MEDICINE: "need_medicine",
    HelpNeed.FOOD: "need_food",
    HelpNeed.TRANSPORT: "need_transport",
    HelpNeed.POWER: "need_power",
    HelpNeed.CHECK_ON_ME: "need_check",
}
PREFIX_LETTERS = 2  # Hebrew and Arabic glue "the", "and", "to" to the word: "התרופות", "والدواء"


def need_in(text: str | None) -> HelpNeed | None:
    """The kind of help a request names ("נגמרו התרופות" → medicine), in any language, or None.

    Stems match the start of a word; in a script other than Latin also after a one- or
    two-letter prefix."""
    words = fold(text).split()
    for need, key in NEED_STEMS.items():
        for stem in all_words(key):
            if " " in stem:
                if f" {stem}" in f" {' '.join(words)}":
                    return need
                continue
            reach = 0 if stem.isascii() else PREFIX_LETTERS
            if any(0 <= word.find(stem) <= reach for word in words):
                return need
    return None
