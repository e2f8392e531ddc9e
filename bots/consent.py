"""Consent texts and their versions.

The texts live in the catalogs (``bot.consent_text.*``). A version names one wording in all five
languages: whoever changes a text must bump its version here, and a test holds a fingerprint of
every text so that a silent change fails the suite.
"""

from __future__ import annotations

import hashlib

from config.i18n import t
from config.languages import ALL_LANGUAGES, Language
from registry.models import ConsentKind

CONSENT_VERSIONS: dict[ConsentKind, str] = {
    ConsentKind.REGISTRATION: "2026-11.1",
    ConsentKind.HEALTH_DATA: "2026-11.1",
    ConsentKind.GUARDIAN: "2026-11.1",
}


def consent_text(kind: ConsentKind, language: Language) -> str:
    """The exact text shown and recorded for ``kind`` in ``language``."""
    return t(language, f"bot.consent_text.{kind.value}")


def fingerprint(kind: ConsentKind) -> str:
    """A short hash of the text in every language: changes whenever any wording changes."""
    digest = hashlib.sha256()
    for language in ALL_LANGUAGES:
        digest.update(consent_text(kind, language).encode())
    return digest.hexdigest()[:16]
