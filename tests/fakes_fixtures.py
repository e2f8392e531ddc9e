"""Pytest fixtures for the loopback fakes, registered by ``tests/conftest.py``.

``fake_telegram`` and ``fake_twilio`` start a fake for one test and fail the test at teardown if
any request broke the provider's spec. ``fake_settings`` points Hosen's settings at whichever
fakes the test uses; ``people`` adds simulated people to them. ``log_secrets`` captures logs at DEBUG and fails the test if a fake's token
(or any secret the test adds to the returned list) was logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from config.settings import Settings
from fakes.leaks import assert_no_secret_in
from fakes.people import People
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio


def _fail_on_violations(name: str, violations: list[str]) -> None:
    if violations:
        listing = "\n  ".join(violations)
        pytest.fail(f"{name} saw {len(violations)} spec violation(s):\n  {listing}", pytrace=False)


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    """A running Bot API fake; the test fails if any request broke the Bot API spec.

    A test that provokes violations on purpose empties ``fake_telegram.violations`` itself.
    """
    fake = FakeTelegram().start()
    try:
        yield fake
    finally:
        fake.stop()
    _fail_on_violations("FakeTelegram", fake.violations)


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A running Twilio Messages API fake; the test fails on any spec violation."""
    fake = FakeTwilio().start()
    try:
        yield fake
    finally:
        fake.stop()
    _fail_on_violations("FakeTwilio", fake.violations)


@pytest.fixture
def fake_settings(unit_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """``unit_settings`` pointed at the fakes this test also requests (either or both)."""
    names = request.fixturenames
    telegram = request.getfixturevalue("fake_telegram") if "fake_telegram" in names else None
    twilio = request.getfixturevalue("fake_twilio") if "fake_twilio" in names else None
    return settings_for_fakes(unit_settings, telegram=telegram, twilio=twilio)


@pytest.fixture
def log_secrets(
    caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> Iterator[list[str]]:
    """Capture every log record at DEBUG; at teardown no secret may appear in them.

    The fakes' tokens are checked automatically when the test uses them; append any other
    secret to the returned list.
    """
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = []
    names = request.fixturenames
    # Resolved now, so these fakes outlive this fixture's teardown.
    if "fake_telegram" in names:
        secrets.append(request.getfixturevalue("fake_telegram").token)
    if "fake_twilio" in names:
        fake = request.getfixturevalue("fake_twilio")
        secrets += [fake.auth_token, f"{fake.account_sid}:{fake.auth_token}"]
    yield secrets
    logged = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for record in caplog.records
    )
    assert_no_secret_in(logged + caplog.text, secrets)


@pytest.fixture
def people(request: pytest.FixtureRequest) -> Iterator[People]:
    """Simulated people on a manual clock, attached to the fakes this test also requests.

    Set ``people.sms_webhook_url`` before SMS people answer; move time with ``people.advance(s)``.
    """
    names = request.fixturenames
    telegram = request.getfixturevalue("fake_telegram") if "fake_telegram" in names else None
    twilio = request.getfixturevalue("fake_twilio") if "fake_twilio" in names else None
    simulated = People(telegram=telegram, twilio=twilio, manual=True)
    yield simulated
    simulated.close()
