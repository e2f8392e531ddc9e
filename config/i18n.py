"""Message catalogs: every user-facing text, in he, ar, en, ru and am.

Catalogs are TOML files under ``config/locales``; nested tables flatten to dotted keys
(``[phone] invalid = ...`` is ``phone.invalid``). Placeholders use ``str.format`` names.
A key missing from a language falls back to English and then to Hebrew, and a test keeps
every catalog complete, so the fallback is a safety net, not a habit.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from config.languages import ALL_LANGUAGES, Language

LOCALES = Path(__file__).parent / "locales"
_FALLBACKS = (Language.EN, Language.HE)


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


@cache
def catalog(language: Language) -> dict[str, str]:
    path = LOCALES / f"{language.value}.toml"
    return _flatten(tomllib.loads(path.read_text(encoding="utf-8")))


def has(key: str) -> bool:
    return key in catalog(Language.EN)


def t(language: Language | str, key: str, /, **params: object) -> str:
    """The text for ``key`` in ``language`` with ``params`` filled in."""
    lang = Language(language)
    for candidate in (lang, *_FALLBACKS):
        template = catalog(candidate).get(key)
        if template is not None:
            return template.format(**params) if params else template
    raise KeyError(f"no message {key!r} in any catalog")


def missing_keys() -> dict[Language, set[str]]:
    """Keys some catalog has and another lacks (for the completeness test)."""
    every = set().union(*(catalog(language).keys() for language in ALL_LANGUAGES))
    return {
        language: every - catalog(language).keys()
        for language in ALL_LANGUAGES
        if every - catalog(language).keys()
    }
