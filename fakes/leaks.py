"""Proof that secrets stay out of logs: a check tests run over captured log text.

Courier-style: after a test drove the real clients, every token it used must be absent from
what was logged, in plain form and in the encodings a URL or an Authorization header would
give it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import quote


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}


def find_secrets(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets (at least 8 characters long) that appear in ``text``, in any of their forms."""
    found = []
    for secret in secrets:
        if len(secret) >= 8 and any(form in text for form in _forms(secret)):
            found.append(secret)
    return found


def assert_no_secret_in(text: str, secrets: Iterable[str], *, where: str = "the logs") -> None:
    """AssertionError naming where (never the secret itself) if any secret is in ``text``."""
    leaked = find_secrets(text, secrets)
    if leaked:
        hints = ", ".join(f"{s[:3]}…({len(s)} chars)" for s in leaked)
        raise AssertionError(f"{len(leaked)} secret(s) found in {where}: {hints}")
