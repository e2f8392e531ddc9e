"""The console's templates and the words in them: a Jinja2 environment with autoescaping whose
every string comes from the message catalogs, counts in CLDR plural forms (Babel), and times
and numbers in the reader's locale and the service's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime, format_time
from babel.numbers import format_decimal
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    select_autoescape,
)

from config.i18n import t
from config.languages import ALL_LANGUAGES, Language

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def environment() -> Environment:
    return Environment(
        # The console's own templates, then the drill report's body (hosen/templates).
        loader=ChoiceLoader([FileSystemLoader(TEMPLATES), PackageLoader("hosen", "templates")]),
        autoescape=select_autoescape(["html", "svg"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=16)
def _locale(language: str) -> Locale:
    return Locale.parse(language)


@lru_cache(maxsize=8192, typed=True)
def _number(language: str, value: float) -> str:
    """A number in the language's digits and grouping (a page of counts repeats the same few;
    Babel's parsing of the locale costs more than the formatting)."""
    return str(format_decimal(value, locale=_locale(language)))


@lru_cache(maxsize=4096)
def _text(language: Language, key: str) -> str:
    """A catalog text without parameters: the same column headings and states on every row."""
    return t(language, key)


@lru_cache(maxsize=8192)
def _short(language: str, local: datetime, *, with_date: bool) -> str:
    """A local time to the minute in the language's short form (a call-down sheet of thousands
    of rows formats the same few minutes over and over)."""
    if with_date:
        return str(format_datetime(local, "short", locale=language))
    return str(format_time(local, "short", locale=language))


@dataclass(frozen=True)
class Words:
    """Everything a template needs to speak one language."""

    language: Language
    zone: ZoneInfo

    @property
    def dir(self) -> str:
        return "rtl" if self.language.rtl else "ltr"

    def __call__(self, key: str, /, **params: Any) -> str:
        return t(self.language, key, **params) if params else _text(self.language, key)

    def plural(self, key: str, count: int, **params: Any) -> str:
        """``key`` in the CLDR plural form of ``count`` for this language."""
        form = _locale(self.language.value).plural_form(count)
        return t(self.language, f"{key}.{form}", count=self.number(count), **params)

    def number(self, value: float) -> str:
        return _number(self.language.value, value)

    def time(self, moment: datetime | None) -> str:
        if moment is None:
            return "-"
        local = moment.astimezone(self.zone).replace(second=0, microsecond=0)
        return _short(self.language.value, local, with_date=False)

    def when(self, moment: datetime | None) -> str:
        if moment is None:
            return "-"
        local = moment.astimezone(self.zone).replace(second=0, microsecond=0)
        return _short(self.language.value, local, with_date=True)

    def minutes(self, seconds: float) -> str:
        return self.plural("console.plural.minutes", max(0, round(seconds / 60)))

    def languages(self) -> list[tuple[str, str]]:
        """Every language by its own name, for the switch."""
        return [(lang.value, t(lang, "bot.language.name")) for lang in ALL_LANGUAGES]
