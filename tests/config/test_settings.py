from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from config.profile import ProfileError, load_profile
from config.settings import SettingsError, load_settings, reveal


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOSEN_DATABASE_URL", "HOSEN_TELEGRAM_TOKEN", "HOSEN_TWILIO_ACCOUNT_SID"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(_env_file=None)
    assert settings.database_url.startswith("sqlite:///var/")
    assert settings.default_region == "IL"
    assert settings.timezone == "Asia/Jerusalem"
    assert not settings.telegram_enabled and not settings.sms_enabled
    assert "Telegram off" in settings.channel_summary()


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("HOSEN_DATABASE_URL", "mysql://db/x", "HOSEN_DATABASE_URL"),
        ("HOSEN_TIMEZONE", "Mars/Olympus", "HOSEN_TIMEZONE"),
        ("HOSEN_DEFAULT_REGION", "XX", "HOSEN_DEFAULT_REGION"),
        ("HOSEN_TELEGRAM_API_URL", "not a url", "HOSEN_TELEGRAM_API_URL"),
        ("HOSEN_TWILIO_AUTH_TOKEN", "changeme", "HOSEN_TWILIO_AUTH_TOKEN"),
        ("HOSEN_TWILIO_FROM", "0501234567", "HOSEN_TWILIO_FROM"),
        ("HOSEN_SMS_RATE_PER_SECOND", "-3", "HOSEN_SMS_RATE_PER_SECOND"),
    ],
)
def test_bad_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert message.startswith(named + ":")
    assert "\n" not in message


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSEN_TIMEZONE", raising=False)
    env = tmp_path / ".env"
    env.write_text("HOSEN_TIMEZONE=Europe/Moscow\n", encoding="utf-8")
    assert load_settings(_env_file=env).timezone == "Europe/Moscow"


def test_sample_profile_is_valid_and_complete() -> None:
    from config.profile import DEFAULT_PROFILE_PATH

    profile = load_profile(DEFAULT_PROFILE_PATH)
    codes = {role.code for role in profile.roles}
    # The functions of an Israeli local emergency team, plus the community roles.
    assert {
        "head",
        "information",
        "education",
        "welfare",
        "health",
        "security",
        "logistics",
    } <= codes
    assert {"spokesperson", "buddy", "shelter_manager", "driver", "youth_team"} <= codes
    assert len(profile.authorities) == 2
    assert all(a.shelters for a in profile.authorities)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name = 'x'\n[[", "not valid TOML"),
        ("name = 'x'\nauthorities = []\nskills = []\nroles = []\n", "authorities"),
    ],
)
def test_bad_profile_is_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_profile_shelter_in_unknown_zone_is_refused(tmp_path: Path) -> None:
    from config.profile import DEFAULT_PROFILE_PATH

    text = DEFAULT_PROFILE_PATH.read_text(encoding="utf-8").replace(
        'zone = "kt-north"', 'zone = "kt-nowhere"'
    )
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError, match="kt-nowhere"):
        load_profile(path)


def test_missing_profile_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"^HOSEN_PROFILE: no such file"):
        load_profile(tmp_path / "missing.toml")


TELEGRAM_DOCS_TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HOSEN_TELEGRAM_TOKEN", TELEGRAM_DOCS_TOKEN),
        ("HOSEN_TELEGRAM_TOKEN", "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"),
        ("HOSEN_TELEGRAM_TOKEN", "a"),
        ("HOSEN_TELEGRAM_TOKEN", "123456:" + "x" * 35),
        ("HOSEN_TWILIO_AUTH_TOKEN", "password"),
        ("HOSEN_TWILIO_AUTH_TOKEN", "x" * 32),
        ("HOSEN_TWILIO_AUTH_TOKEN", "ab" * 16),
        ("HOSEN_TELEGRAM_WEBHOOK_SECRET", "change_me"),
        ("HOSEN_TELEGRAM_WEBHOOK_SECRET", "a"),
        ("HOSEN_TELEGRAM_WEBHOOK_SECRET", "abcdefghijklmnopqrstuvwxyzab"),  # one kind
        ("HOSEN_HASH_KEY", "x" * 32),
        ("HOSEN_HASH_KEY", "Passw0rd"),
    ],
)
def test_weak_secrets_are_refused_with_the_rule_never_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert message.startswith(variable + ":") and "\n" not in message
    assert len(value) < 8 or value.lower() not in message.lower()  # never quoted


def test_strong_secrets_are_accepted_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "HOSEN_TELEGRAM_TOKEN": f"7012345678:{secrets.token_urlsafe(26)[:35]}",
        "HOSEN_TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "HOSEN_TELEGRAM_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "HOSEN_HASH_KEY": secrets.token_hex(32),
    }
    for variable, value in values.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings(_env_file=None)
    assert reveal(settings.telegram_token) == values["HOSEN_TELEGRAM_TOKEN"]
    shown = repr(settings) + str(settings.model_dump())
    assert not any(value in shown for value in values.values())


@pytest.mark.parametrize(
    ("tiers", "fragment"),
    [
        ('[[assignment.tiers]]\nroles = ["health"]\nbuddies = "rest"\n', "either roles or buddies"),
        ('[[assignment.tiers]]\nroles = "rest"\n', "no tier gives buddies = 'rest'"),
        (
            '[[assignment.tiers]]\nroles = ["health"]\n[[assignment.tiers]]\nroles = ["health"]\n'
            '[[assignment.tiers]]\nbuddies = "rest"\n',
            "a role is named in two tiers",
        ),
        (
            '[[assignment.tiers]]\nroles = ["buddy"]\n[[assignment.tiers]]\nbuddies = "rest"\n',
            "not roles with seats",
        ),
        (
            '[[assignment.tiers]]\nroles = ["health"]\n[[assignment.tiers]]\nbuddies = "rest"\n',
            "no tier for the roles",
        ),
    ],
)
def test_a_bad_assignment_policy_is_refused_with_its_reason(
    tmp_path: Path, tiers: str, fragment: str
) -> None:
    from config.profile import DEFAULT_PROFILE_PATH

    text = DEFAULT_PROFILE_PATH.read_text(encoding="utf-8")
    text = text[: text.index("[[assignment.tiers]]")] + tiers
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError, match="assignment") as caught:
        load_profile(path)
    assert fragment in str(caught.value)


def test_the_sample_policy_puts_high_risk_buddies_first() -> None:
    from config.profile import DEFAULT_PROFILE_PATH

    profile = load_profile(DEFAULT_PROFILE_PATH)
    assert profile.assignment.tiers[0].buddies == "high_risk"
    assert profile.tier_of_role("head") == 4 and profile.tier_of_role("health") == 2


def test_the_database_password_comes_from_its_file_whatever_its_characters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    secret = tmp_path / "postgres_password"
    password = "p@ss:w/rd%?#&= x"
    secret.write_text(password + "\n", encoding="utf-8")
    monkeypatch.setenv("HOSEN_DATABASE_URL", "postgresql://hosen@db:5432/hosen")
    monkeypatch.setenv("HOSEN_DATABASE_PASSWORD_FILE", str(secret))
    url = make_url(load_settings(_env_file=None).database_url)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "hosen",
        password,
        "db",
        5432,
        "hosen",
    )


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://hosen@db/hosen", "HOSEN_DATABASE_PASSWORD_FILE: no file"),
        ("sqlite:///var/hosen.sqlite3", "HOSEN_DATABASE_PASSWORD_FILE is for a postgresql://"),
    ],
)
def test_a_password_file_that_cannot_be_used_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, named: str
) -> None:
    secret = tmp_path / "postgres_password"
    if "sqlite" in url:
        secret.write_text("x", encoding="utf-8")
    monkeypatch.setenv("HOSEN_DATABASE_URL", url)
    monkeypatch.setenv("HOSEN_DATABASE_PASSWORD_FILE", str(secret))
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert str(caught.value).startswith(named) and "\n" not in str(caught.value)
