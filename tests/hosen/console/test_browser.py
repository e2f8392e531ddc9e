"""The console in a real browser: Chromium (the system's, driven by Playwright) against the real
service (webhooks, inbox processor, outbox worker) on the loopback Telegram and Twilio fakes,
with simulated residents who answer by SMS.

An officer signs in with the code the Telegram fake received, starts a drill, watches the counts
change as residents answer, takes a help alert, prints the unreached call-down sheet, visits
the registry pages (people, a person, groups, resources, the gaps map), switches to Arabic,
visits them again, closes the drill and reads its report. axe-core (vendored beside this file)
checks every page: no serious or critical violation. ``HOSEN_CONSOLE_SCREENSHOTS=DIR`` also saves the screenshots of docs/.

Chromium is not downloaded: a missing /usr/bin/chromium skips the test, or fails it under CI.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.models import Alert, AlertState
from fakes.people import Delay, People, Persona
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from hosen.app import build_app
from hosen.context import Context
from registry.models import Channel, Person, PhoneKind, ResidentNeeds, Source
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import StaffRole, add_staff, verify_telegram

CHROMIUM = Path(os.environ.get("HOSEN_CHROMIUM", "/usr/bin/chromium"))
AXE = Path(__file__).with_name("axe.min.js")
OFFICER_CHAT = 7_000_001
# Who lives where and how each will answer: three "I'm OK", one "help", two never.
RESIDENTS = [
    ("Miriam Cohen", "kt-north", "ok"),
    ("David Levi", "kt-north", "help"),
    ("Sara Azoulay", "kt-center", "ok"),
    ("Yosef Peretz", "kt-center", "silent"),
    ("Hana Mizrahi", "kt-vatika", "ok"),
    ("Eli Biton", "kt-vatika", "silent"),
]

pytestmark = [pytest.mark.db, pytest.mark.e2e, pytest.mark.slow]


def _chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: CI installs Debian's chromium (.ci/apt-packages)")
        pytest.skip(f"{CHROMIUM} is not installed")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Service:
    """``hosen serve``'s app under uvicorn in a thread of its own."""

    def __init__(self, ctx: Context, port: int) -> None:
        self.app = build_app(ctx, run_bot=False, run_scheduler=False)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Service:
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("the service did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def _wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true (a condition, not a measured time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def town(
    sessions: sessionmaker[Session], directory: Directory, fake_telegram: FakeTelegram
) -> dict[str, Any]:
    authority = directory.authorities["kiryat-tamar"]
    phones = {}
    with sessions() as session:
        for n, (name, zone, _) in enumerate(RESIDENTS):
            person = Person(
                authority_id=authority.id,
                zone_id=directory.zones[(authority.id, zone)].id,
                name=name,
                phone=f"+97250200000{n}",
                phone_kind=PhoneKind.MOBILE,
                channel=Channel.SMS,
                source=Source.STAFF,
                address=f"Hadekel {n + 1}",
                needs_help=True,
                needs=ResidentNeeds(lives_alone=True),
            )
            session.add(person)
            phones[name] = person.phone
        phone = normalise_phone("052-555-1000", region="IL")
        add_staff(
            session,
            name="Rina Levi",
            phone=phone,
            authority=authority,
            role=StaffRole.OFFICER,
            actor="test",
        )
        fake_telegram.new_user("Rina", user_id=OFFICER_CHAT)
        verify_telegram(session, phone=phone, chat_id=OFFICER_CHAT)
        session.commit()
    return {"phones": phones, "officer_phone": "052-555-1000"}


@pytest.fixture
def service(
    settings: Settings,
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
    town: dict[str, Any],
) -> Iterator[tuple[str, People]]:
    port = _free_port()
    public = f"http://127.0.0.1:{port}"
    ctx = Context(
        settings=settings_for_fakes(
            settings.model_copy(
                update={
                    "public_url": public,
                    "telegram_webhook_secret": SecretStr(secrets.token_urlsafe(24)),
                    "sms_rate_per_second": 100.0,
                }
            ),
            telegram=fake_telegram,
            twilio=fake_twilio,
        )
    )
    people = People(
        twilio=fake_twilio, sms_webhook_url=f"{public}/sms/inbound", manual=True, seed=3
    )
    for name, _, kind in RESIDENTS:
        people.add_sms(Persona(kind, Delay(median=60.0, sigma=0.1)), town["phones"][name])  # type: ignore[arg-type]
    try:
        with Service(ctx, port):
            yield public, people
    finally:
        people.close()
        ctx.close()


def _axe(page: Any, where: str) -> None:
    """No serious or critical accessibility violation on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{where}: {bad}"


def _shoot(page: Any, name: str) -> None:
    folder = os.environ.get("HOSEN_CONSOLE_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_an_officer_runs_a_drill_from_the_console(
    service: tuple[str, People],
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
    sessions: sessionmaker[Session],
    town: dict[str, Any],
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, people = service
    chromium = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"]
        )
        # axe is injected as a script the console's Content-Security-Policy would refuse.
        page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        expect.set_options(timeout=20_000)
        try:
            # Sign in: the code comes to the officer's verified Telegram chat.
            page.goto(f"{base}/console")
            expect(page.locator("html")).to_have_attribute("dir", "rtl")
            expect(page.locator("html")).to_have_attribute("lang", "he")
            _axe(page, "sign-in")
            page.fill("#phone", town["officer_phone"])
            page.click("form.card button[type=submit]")
            expect(page.locator("#code")).to_be_visible()
            message = _wait_for(
                "the sign-in code on Telegram",
                lambda: [m for m in fake_telegram.sent_to(OFFICER_CHAT) if "חוסן" in m["text"]],
            )[-1]
            code = re.search(r"\d{6}", message["text"])
            assert code is not None
            page.fill("#code", code.group(0))
            page.click("form.card button[type=submit]")
            expect(page.locator("h1")).to_have_text("לוח חי")

            # Start a drill for the residents: the estimate, then the confirmation.
            page.click("a[href='/console/start']")
            _axe(page, "start")
            page.check("#mode-drill")
            page.check("#who-residents")
            page.click("form.card button.primary")
            expect(page.locator("#estimate-title")).to_contain_text("6")
            page.click("form.card button.primary")
            expect(page.locator("[data-total=people]")).to_have_text("6")
            expect(page.locator("[data-total=waiting]")).to_have_text("6")
            _axe(page, "board")

            # The worker sends the check-ins; then the residents answer and the board follows.
            _wait_for(
                "the check-ins to go out",
                lambda: all(fake_twilio.sent_to(p) for p in town["phones"].values()),
            )
            _wait_for("answers to be due", lambda: people.waiting >= 4)
            people.advance(3600)
            expect(page.locator("[data-total=ok]")).to_have_text("3")
            expect(page.locator("[data-total=help]")).to_have_text("1")
            expect(page.locator("[data-total=waiting]")).to_have_text("2")
            _shoot(page, "console-board-he")

            # The help answer waits in the queue, and beside it the alert that nobody can be sent
            # to him (this town has no buddies for him): take the help alert.
            page.click("a[href='/console/queue']")
            rows = page.locator("tr", has_text="David Levi")
            expect(rows).to_have_count(2)
            row = rows.filter(has_text=t(Language.HE, "console.queue.help"))
            expect(row).to_be_visible()
            expect(
                rows.filter(has_text=t(Language.HE, "console.queue_owned.no_buddy"))
            ).to_be_visible()
            _axe(page, "queue")
            _shoot(page, "console-queue-he")
            row.locator("button.primary").click()
            expect(page.locator(".notice")).to_contain_text("David Levi")
            with sessions() as session:
                alert = session.scalars(select(Alert).where(Alert.state == AlertState.TAKEN)).one()
                assert alert.owner_staff_id is not None

            # The unreached call-down sheet, printed.
            page.click("a[href='/console/lists']")
            expect(page.locator("[data-testid=list]")).to_contain_text("Yosef Peretz")
            _axe(page, "lists")
            page.emulate_media(media="print")  # printed, the list drops the menus and forms
            expect(page.locator("header.top")).to_be_hidden()
            expect(page.locator("form.filters")).to_be_hidden()
            page.emulate_media(media="screen")
            expect(page.locator("header.top")).to_be_visible()
            page.click("a[href^='/console/sheet']")
            expect(page.locator("h1")).to_contain_text("דף טלפונים")
            page.emulate_media(media="print")
            sheet = page.locator("main")
            expect(page.locator(".zone-sheet")).to_have_count(2)  # one page per zone
            expect(sheet).to_contain_text("Yosef Peretz")
            expect(sheet).to_contain_text("Eli Biton")
            expect(sheet).not_to_contain_text("Miriam Cohen")
            pdf = page.pdf(path=str(tmp_path / "sheet.pdf"), format="A4", landscape=True)
            assert pdf.startswith(b"%PDF")
            _shoot(page, "console-sheet-he")
            page.emulate_media(media="screen")

            # The registry pages in Hebrew: find David, open his page, then groups, resources
            # and the needs and gaps map.
            page.goto(f"{base}/console/people")
            page.fill("#name", "Levi")
            page.click("form.filters button[type=submit]")
            expect(page.locator("[data-testid=people]")).to_contain_text("David Levi")
            _axe(page, "people")
            page.locator("[data-testid=people] a", has_text="David Levi").click()
            expect(page.locator("h1")).to_have_text("David Levi")
            expect(page.locator("#needs")).to_be_visible()
            expect(page.locator("main")).to_contain_text("גר/ה לבד")
            _axe(page, "person")
            for href, heading in (
                ("/console/groups", "קבוצות ורכזיהן"),
                ("/console/resources", "משאבים קהילתיים"),
                ("/console/gaps", "צרכים, מענים ופערים"),
            ):
                page.click(f"header a[href='{href}']")
                expect(page.locator("h1")).to_contain_text(heading)
                _axe(page, href)

            # Arabic: right to left, every word from the Arabic catalog.
            page.goto(f"{base}/console/board")
            page.select_option("#lang-switch", "ar")
            page.click("form[action='/console/language'] button")
            expect(page.locator("html")).to_have_attribute("dir", "rtl")
            expect(page.locator("html")).to_have_attribute("lang", "ar")
            expect(page.locator("h1")).to_have_text("اللوحة الحية")
            _axe(page, "board in Arabic")
            _shoot(page, "console-board-ar")
            page.click("a[href='/console/queue']")
            expect(page.locator("h1")).to_have_text("بحاجة إلى مساعدة")
            _shoot(page, "console-queue-ar")
            page.click("a[href='/console/lists']")
            page.click("a[href^='/console/sheet']")
            page.emulate_media(media="print")
            _shoot(page, "console-sheet-ar")
            page.emulate_media(media="screen")

            # The registry pages and, once the drill is closed, its report, in Arabic.
            page.goto(f"{base}/console/people")
            expect(page.locator("h1")).to_have_text("الأشخاص")
            _axe(page, "people in Arabic")
            page.locator("[data-testid=people] a", has_text="Miriam Cohen").click()
            expect(page.locator("html")).to_have_attribute("lang", "ar")
            _axe(page, "person in Arabic")
            page.click("header a[href='/console/gaps']")
            expect(page.locator("[data-testid=gap-zone]").first).to_be_visible()
            _axe(page, "gaps in Arabic")
            page.click("header a[href='/console/start']")
            page.click("form[action^='/console/close/'] button")
            page.click("header a[href='/console/board']")
            page.click("a[href^='/console/report/']")
            expect(page.locator("html")).to_have_attribute("dir", "rtl")
            expect(page.locator(".report h1")).to_be_visible()
            expect(page.locator(".report")).to_contain_text("Yosef Peretz")
            _axe(page, "report in Arabic")
        finally:
            browser.close()
