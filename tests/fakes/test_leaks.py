"""The secret-in-logs guard finds a secret in its plain and encoded forms, and only then."""

from __future__ import annotations

import base64
import logging
from urllib.parse import quote

import pytest

from fakes.leaks import assert_no_secret_in, find_secrets

TOKEN = "7012345678:AAH-secret_token/with+chars"


@pytest.mark.parametrize(
    "text",
    [
        f"GET https://api.telegram.org/bot{TOKEN}/getMe",
        f"url=/bot{quote(TOKEN, safe='')}",
        f"Authorization: Basic {base64.b64encode(TOKEN.encode()).decode()}",
    ],
    ids=["plain", "url-quoted", "base64"],
)
def test_a_leaked_secret_is_found(text: str) -> None:
    assert find_secrets(text, [TOKEN]) == [TOKEN]
    with pytest.raises(AssertionError, match="1 secret") as caught:
        assert_no_secret_in(text, [TOKEN])
    assert TOKEN not in str(caught.value)  # the failure message itself must not leak it


def test_clean_text_and_short_strings_pass() -> None:
    assert_no_secret_in("POST /bot<redacted>/sendMessage", [TOKEN, "ab"])


def test_the_fixture_sees_records_at_debug(
    log_secrets: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    logging.getLogger("hosen.test").debug("a debug line with no secret")
    assert "a debug line" in caplog.text
    log_secrets.append("never-logged-secret-123")
