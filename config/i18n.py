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


# CLDR plural categories. A table whose keys are all categories, ``other`` among them, is one
# message with a form per category: ``[report.count] one = "{count} person"``,
# ``other = "{count} people"``; each catalog has exactly the forms its language uses.
PLURAL_CATEGORIES = ("zero", "one", "two", "few", "many", "other")


def plural_forms(language: Language | str) -> tuple[str, ...]:
    """The CLDR plural categories ``language`` distinguishes, ``other`` last (Babel's rules)."""
    from babel import Locale

    tags = Locale.parse(str(Language(language))).plural_form.tags
    return (*(c for c in PLURAL_CATEGORIES if c in tags and c != "other"), "other")


def plural_messages(language: Language) -> dict[str, set[str]]:
    """Each plural message of ``language``'s catalog and the forms it has."""
    leaves: dict[str, set[str]] = {}
    for key in catalog(language):
        stem, _, leaf = key.rpartition(".")
        leaves.setdefault(stem, set()).add(leaf)
    return {
        stem: forms
        for stem, forms in leaves.items()
        if "other" in forms and forms <= set(PLURAL_CATEGORIES)
    }


def tn(language: Language | str, key: str, count: int, /, **params: object) -> str:
    """The plural message ``key`` in the form ``count`` takes in ``language`` (CLDR rules, so
    Russian says 1 человек, 3 человека, 5 человек); ``{count}`` and ``params`` filled in."""
    from babel import Locale

    lang = Language(language)
    form = Locale.parse(lang.value).plural_form(abs(count))
    for candidate in (lang, *_FALLBACKS):
        forms = catalog(candidate)
        template = forms.get(f"{key}.{form}") if candidate == lang else None
        template = template or forms.get(f"{key}.other")
        if template is not None:
            return template.format(count=count, **params)
    raise KeyError(f"no plural message {key!r} in any catalog")


def missing_keys() -> dict[Language, set[str]]:
    """Keys some catalog has and another lacks (for the completeness test). A plural message
    counts as one key here; its forms are checked against the language's own categories."""

    def keys(language: Language) -> set[str]:
        plurals = plural_messages(language)
        forms = {f"{stem}.{leaf}" for stem, leaves in plurals.items() for leaf in leaves}
        return (catalog(language).keys() - forms) | {f"{stem}.*" for stem in plurals}

    every = set().union(*(keys(language) for language in ALL_LANGUAGES))
    missing = {language: every - keys(language) for language in ALL_LANGUAGES}
    for language in ALL_LANGUAGES:
        wanted = set(plural_forms(language))
        for stem, forms in plural_messages(language).items():
            missing[language] |= {f"{stem}.{form}" for form in wanted - forms}
    return {language: keys for language, keys in missing.items() if keys}
