"""The list import and the assignment in a real browser: Chromium (the system's, driven by
Playwright) against the real service on the loopback Telegram fake, with the harness of
``test_browser`` (its service, axe-core check and screenshots).

An officer signs in with the code the Telegram fake received, uploads the welfare department's
list with one bad row, reads the preview, applies it and reads the row report; runs the
assignment, reads the gaps per zone with their causes, applies the plan, and the scheduler's
sweep sends the offers to the volunteers' Telegram chats; then the same pages in Arabic. axe
finds no serious or critical violation on any of them. ``HOSEN_CONSOLE_SCREENSHOTS=DIR`` saves
the screenshots of docs/ (console-import-*.png, console-assign-*.png).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from config.profile import Profile
from config.settings import Settings
from dispatch.scheduler import sweep_all
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from hosen.context import Context
from registry.db import utcnow
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import StaffRole, add_staff, verify_telegram
from tests.hosen.console.test_browser import (
    Service,
    _axe,
    _chromium,
    _free_port,
    _shoot,
    _wait_for,
)
from tests.hosen.console.test_import_assign import WELFARE, build_town

pytestmark = [pytest.mark.db, pytest.mark.e2e, pytest.mark.slow]

OFFICER_CHAT = 7_000_011
VOLUNTEERS = ("Volunteer 0", "Volunteer 1", "Volunteer 2")


@pytest.fixture
def town(
    sessions: sessionmaker[Session], directory: Directory, fake_telegram: FakeTelegram
) -> dict[str, Any]:
    with sessions() as session:
        chats = build_town(session, directory)
        phone = normalise_phone("052-555-1000", region="IL")
        add_staff(
            session,
            name="Rina Levi",
            phone=phone,
            authority=directory.authorities["kiryat-tamar"],
            role=StaffRole.OFFICER,
            actor="test",
        )
        fake_telegram.new_user("Rina", user_id=OFFICER_CHAT)
        verify_telegram(session, phone=phone, chat_id=OFFICER_CHAT)
        session.commit()
    for name, chat in chats.items():
        fake_telegram.new_user(name.split()[0], user_id=chat)
    return {"chats": chats, "officer_phone": "052-555-1000"}


@pytest.fixture
def service(
    settings: Settings, fake_telegram: FakeTelegram, town: dict[str, Any]
) -> Iterator[tuple[str, Context]]:
    port = _free_port()
    public = f"http://127.0.0.1:{port}"
    ctx = Context(
        settings=settings_for_fakes(
            settings.model_copy(
                update={
                    "public_url": public,
                    "telegram_webhook_secret": SecretStr(secrets.token_urlsafe(24)),
                }
            ),
            telegram=fake_telegram,
        )
    )
    try:
        with Service(ctx, port):
            yield public, ctx
    finally:
        ctx.close()


def _sign_in(page: Any, base: str, fake_telegram: FakeTelegram, phone: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/console")
    page.fill("#phone", phone)
    page.click("form.card button[type=submit]")
    expect(page.locator("#code")).to_be_visible()
    message = _wait_for(
        "the sign-in code on Telegram",
        lambda: [m for m in fake_telegram.sent_to(OFFICER_CHAT) if re.search(r"\d{6}", m["text"])],
    )[-1]
    code = re.search(r"\d{6}", message["text"])
    assert code is not None
    page.fill("#code", code.group(0))
    page.click("form.card button[type=submit]")
    expect(page.locator("h1")).to_have_text("לוח חי")


def test_an_officer_imports_a_list_and_applies_the_assignment(
    service: tuple[str, Context],
    fake_telegram: FakeTelegram,
    sessions: sessionmaker[Session],
    profile: Profile,
    settings: Settings,
    town: dict[str, Any],
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, _ = service
    welfare = tmp_path / "welfare-2026-11.csv"
    welfare.write_text(WELFARE, encoding="utf-8")
    chromium = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"]
        )
        # axe is injected as a script the console's Content-Security-Policy would refuse.
        page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        expect.set_options(timeout=30_000)
        try:
            _sign_in(page, base, fake_telegram, town["officer_phone"])

            # The import: upload, the preview with the rejected row, apply, the row report.
            page.click("header a[href='/console/import']")
            expect(page.locator("h1")).to_have_text("ייבוא רשימה עירונית")
            _axe(page, "import")
            page.check("#kind-residents")
            page.set_input_files("#list-file", str(welfare))
            page.click("form.card button.primary")
            expect(page.locator("h1")).to_have_text("תצוגה מקדימה: מה הייבוא היה משנה")
            totals = page.locator("[data-testid=import-totals]")
            expect(totals.locator("[data-outcome=created] td")).to_have_text("2")
            expect(totals.locator("[data-outcome=skipped] td")).to_have_text("1")
            rejected = page.locator("[data-testid=import-rows] tr[data-row='4']")
            expect(rejected).to_contain_text("Levi")
            expect(rejected).to_contain_text("לא ניתן להשתמש")  # why, in Hebrew
            _axe(page, "import preview")
            _shoot(page, "console-import-he")
            page.check("#confirm")
            page.click("form[action$='/apply'] button.primary")
            expect(page.locator("h1")).to_have_text("הייבוא בוצע: דוח השורות")
            expect(
                page.locator("[data-testid=import-totals] [data-outcome=created] td")
            ).to_have_text("2")
            expect(page.locator("a[href$='/rejected.csv']")).to_be_visible()
            _axe(page, "import report")

            # The assignment: a dry run, the gaps per zone with their causes, then apply.
            page.click("header a[href='/console/assign']")
            _axe(page, "assign")
            page.click("form[action='/console/assign'] button")
            expect(page.locator("[data-testid=plan]")).to_be_visible()
            north = page.locator("[data-testid=assign-zone]", has_text="צפון העיר")
            expect(north.locator("[data-testid=zone-gaps]")).to_contain_text("אין מתנדב בטווח")
            _axe(page, "assign review")
            _shoot(page, "console-assign-he")
            page.check("#confirm")
            page.click("[data-testid=apply] button.primary")
            expect(page.locator("[data-testid=applied]")).to_be_visible()

            # The scheduler's sweep turns the plan's changes into offers; the worker sends them.
            sweep_all(sessions, profile=profile, zone=settings.zone_info, now=utcnow())
            for name in VOLUNTEERS:
                chat = town["chats"][name]
                _wait_for(f"the offer to {name}", lambda chat=chat: fake_telegram.sent_to(chat))
            page.reload()
            expect(page.locator("[data-testid=zone-offers]").first).to_be_visible()

            # Arabic: the same pages, right to left.
            page.select_option("#lang-switch", "ar")
            page.click("form[action='/console/language'] button")
            expect(page.locator("html")).to_have_attribute("lang", "ar")
            expect(page.locator("html")).to_have_attribute("dir", "rtl")
            page.click("form[action='/console/assign'] button")
            expect(page.locator("[data-testid=plan]")).to_be_visible()
            north = page.locator("[data-testid=assign-zone]", has_text="شمال المدينة")
            expect(north.locator("[data-testid=zone-gaps]")).to_contain_text("لا متطوع")
            _axe(page, "assign in Arabic")
            _shoot(page, "console-assign-ar")
            page.click("header a[href='/console/import']")
            expect(page.locator("h1")).to_have_text("استيراد قائمة بلدية")
            page.set_input_files("#list-file", str(welfare))
            page.click("form.card button.primary")
            expect(page.locator("h1")).to_have_text("معاينة: ما كان الاستيراد سيغيّره")
            expect(
                page.locator("[data-testid=import-totals] [data-outcome=unchanged] td")
            ).to_have_text("2")
            _axe(page, "import preview in Arabic")
            _shoot(page, "console-import-ar")
        finally:
            browser.close()
