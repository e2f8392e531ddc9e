"""``hosen campaign start`` shows the estimate and asks; ``hosen campaign report`` (both DBs)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import load_settings
from dispatch.models import Campaign
from hosen.cli import main
from hosen.context import Context, build_context
from registry.models import Authority, Person, PhoneKind, Source

pytestmark = pytest.mark.db


class Terminal(io.StringIO):
    """Standard input as a person at a terminal: the lines they will type."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def town(
    sessions: sessionmaker[Session],
    authority: Authority,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[], int]:
    monkeypatch.setenv("HOSEN_DATABASE_URL", database_url)
    context = build_context()
    monkeypatch.setattr("hosen.context.build_context", lambda **_: context)
    with sessions() as session:
        session.add_all(
            Person(
                authority_id=authority.id,
                name=f"P {n}",
                phone=f"+97250800000{n}",
                phone_kind=PhoneKind.MOBILE,
                telegram_chat_id=700 + n if n else None,
                source=Source.STAFF,
                needs_help=True,
            )
            for n in range(3)
        )
        session.commit()

    def campaigns() -> int:
        with sessions() as session:
            return session.scalar(select(func.count()).select_from(Campaign)) or 0

    return campaigns


def _type(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", Terminal(text))


def test_without_a_terminal_it_needs_yes(
    town: Callable[[], int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["campaign", "start", "--drill", "--residents"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert town() == 0


def test_the_estimate_then_a_confirmed_drill(
    town: Callable[[], int], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _type(monkeypatch, "yes\n")
    assert main(["campaign", "start", "--drill", "--residents"]) == 0
    out = capsys.readouterr().out
    assert "drill checkin to 3 people" in out
    assert "Telegram 2, SMS 1, no channel 0" in out
    assert "SMS segments: " in out and "sending takes about" in out
    # Neither channel is configured here: the officer is told who waits and what follows.
    assert "אזהרה: 2 אנשים מקבלים קודם בטלגרם, שאינו מוגדר." in out
    assert "אזהרה: אדם אחד (1) מקבל קודם SMS, שאינו מוגדר." in out
    assert "HOSEN_TWILIO_ACCOUNT_SID" in out and "אחרי 45 דקות" in out
    assert "started" in out
    assert town() == 1


def test_no_warning_when_the_channels_are_configured(
    town: Callable[[], int], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    context = Context(
        settings=load_settings(
            twilio_account_sid="AC" + "1" * 32,
            twilio_auth_token=SecretStr("9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
            twilio_from="+15005550006",
        )
    )
    monkeypatch.setattr("hosen.context.build_context", lambda **_: context)
    assert main(["campaign", "start", "--drill", "--residents", "--yes", "--json"]) == 0
    captured = capsys.readouterr()
    assert "SMS" not in captured.err and "אזהרה: 2 אנשים מקבלים קודם בטלגרם" in captured.err
    context.engine.dispose()


def test_no_means_nothing_is_sent(
    town: Callable[[], int], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _type(monkeypatch, "no\n")
    assert main(["campaign", "start", "--drill", "--residents"]) == 1
    assert "cancelled" in capsys.readouterr().out
    assert town() == 0


def test_an_emergency_needs_the_word_emergency(
    town: Callable[[], int], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _type(monkeypatch, "yes\n")
    assert main(["campaign", "start", "--emergency", "--residents"]) == 1
    assert town() == 0
    _type(monkeypatch, "EMERGENCY\n")
    assert main(["campaign", "start", "--emergency", "--residents"]) == 0
    assert town() == 1


def test_report_text_json_and_html(
    town: Callable[[], int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["campaign", "start", "--drill", "--residents", "--yes", "--json"]) == 0
    started = json.loads(capsys.readouterr().out)
    assert started["estimate"]["recipients"] == 3
    campaign_id = str(started["campaign_id"])
    assert main(["campaign", "report", campaign_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recipients"] == 3 and report["answered"] == 0
    html = tmp_path / "report.html"
    assert main(["campaign", "report", campaign_id, "--html", str(html), "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "3 people were messaged." in out and "0.0% answered" in out and str(html) in out
    assert "Not accounted for (3)" in out and "Reminder at" in out
    page = html.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") and f"campaign {campaign_id}" in page
    assert '<html lang="en" dir="ltr">' in page
    assert main(["campaign", "report", campaign_id, "--html", str(html)]) == 0
    assert '<html lang="he" dir="rtl">' in html.read_text(encoding="utf-8")
    assert "הדוח נכתב אל" in capsys.readouterr().out
    assert main(["campaign", "report", "999999"]) == 2


def test_the_ladder_comes_from_the_authoritys_profile_and_a_flag_overrides_it(
    town: Callable[[], int],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from config.profile import DEFAULT_PROFILE_PATH, load_profile

    timings = load_profile(DEFAULT_PROFILE_PATH).authority("kiryat-tamar").timings
    assert main(["campaign", "start", "--drill", "--residents", "--yes"]) == 0
    assert (
        main(["campaign", "start", "--drill", "--residents", "--yes", "--visit-after", "30"]) == 0
    )
    capsys.readouterr()
    with sessions() as session:
        ladders = session.execute(
            select(
                Campaign.reminder_after, Campaign.visit_after, Campaign.unreached_after
            ).order_by(Campaign.id)
        ).all()
    assert [tuple(row) for row in ladders] == [
        (timings.reminder * 60, timings.visit * 60, timings.unreached * 60),
        (timings.reminder * 60, 30 * 60, timings.unreached * 60),
    ]
