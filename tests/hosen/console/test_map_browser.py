"""The board's map in a real browser (the system's Chromium, driven by Playwright): with a tile
server configured (a loopback one serving a PNG) the tiles load under the zones, past the
Content-Security-Policy, and the board's refresh every second does not fetch them again; with
none configured the page asks nothing of anyone but the console, and draws the same zones.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from dispatch.campaigns import Audience, start_drill_checkin
from hosen.app import build_app
from hosen.context import Context
from registry.models import Channel, Person, PhoneKind, Source
from registry.profile_sync import Directory
from tests.hosen.console.conftest import Staff, last_code
from tests.hosen.console.test_browser import _chromium, _wait_for

pytestmark = [pytest.mark.db, pytest.mark.e2e, pytest.mark.slow]


def _png(rgb: tuple[int, int, int]) -> bytes:
    """A one-pixel PNG of one colour (the map stretches it over the tile's square)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + bytes(rgb))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


class TileServer:
    """A loopback tile server: any /tiles/{z}/{x}/{y}.png is a pale green PNG, kept a day in
    the browser's cache (as public tile servers ask); every path asked for is recorded."""

    def __init__(self) -> None:
        asked = self.asked = []  # type: list[str]
        tile = _png((200, 230, 200))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked.append(self.path)
                if not self.path.startswith("/tiles/"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(tile)))
                self.send_header("Cache-Control", "public, max-age=86400")
                self.end_headers()
                self.wfile.write(tile)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Console:
    """The console alone (no worker, bot or scheduler) under uvicorn on a loopback port."""

    def __init__(self, settings: Settings) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        self.base = f"http://127.0.0.1:{port}"
        self.ctx = Context(settings=settings)
        app = build_app(
            self.ctx, run_worker=False, run_bot=False, run_scheduler=False, run_processor=False
        )
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Console:
        self.thread.start()
        _wait_for("the console to start", lambda: self.server.started)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.ctx.close()


@pytest.fixture
def tiles() -> Iterator[TileServer]:
    with TileServer() as server:
        yield server


@pytest.fixture
def campaign(sessions: sessionmaker[Session], directory: Directory) -> int:
    authority = directory.authorities["kiryat-tamar"]
    with sessions() as session:
        for n, zone in enumerate(("kt-north", "kt-center")):
            session.add(
                Person(
                    authority_id=authority.id,
                    zone_id=directory.zones[(authority.id, zone)].id,
                    name=f"Resident {n}",
                    phone=f"+97250400000{n}",
                    phone_kind=PhoneKind.MOBILE,
                    channel=Channel.SMS,
                    source=Source.STAFF,
                    needs_help=True,
                )
            )
        session.flush()
        found = start_drill_checkin(
            session,
            authority=authority,
            audience=Audience(residents_only=True),
            started_by="test",
            now=datetime.now(UTC),
        )
        session.commit()
        return found.id


@contextmanager
def _board(
    console: Console, sessions: sessionmaker[Session], staff: Staff, campaign: int
) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A signed-in page on the board, every URL it requested, and every CSP complaint."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(_chromium()), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            expect.set_options(timeout=20_000)
            requested: list[str] = []
            complaints: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on(
                "console",
                lambda message: (
                    complaints.append(message.text)
                    if "Content Security Policy" in message.text
                    else None
                ),
            )
            page.goto(f"{console.base}/console")
            page.fill("#phone", staff.officer.phone)
            page.click("form.card button[type=submit]")
            expect(page.locator("#code")).to_be_visible()
            page.fill("#code", last_code(sessions, staff.officer.phone))
            page.click("form.card button[type=submit]")
            expect(page.locator("h1")).to_have_text("לוח חי")
            page.goto(f"{console.base}/console/board?campaign={campaign}")
            expect(page.locator("[data-testid=map] circle")).to_have_count(_zones(sessions))
            yield page, requested, complaints
        finally:
            browser.close()


def _zones(sessions: sessionmaker[Session]) -> int:
    from sqlalchemy import func, select

    from registry.models import Authority, Zone

    with sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Zone)
                .join(Authority, Authority.id == Zone.authority_id)
                .where(Authority.code == "kiryat-tamar", Zone.lat.is_not(None))
            )
            or 0
        )


def _shoot(element: Any, name: str) -> None:
    """``HOSEN_CONSOLE_SCREENSHOTS=DIR`` keeps a picture of the map."""
    if folder := os.environ.get("HOSEN_CONSOLE_SCREENSHOTS"):
        element.screenshot(path=str(Path(folder) / f"{name}.png"))


def _refreshes(page: Any, count: int) -> None:
    """Wait until the board's live part has been swapped ``count`` more times."""
    page.evaluate(
        "() => { window.swaps = 0; document.body.addEventListener('htmx:afterSwap', () => window.swaps++); }"
    )
    _wait_for(f"{count} refreshes", lambda: page.evaluate("() => window.swaps") >= count)


def test_the_tiles_load_under_the_zones_and_are_not_fetched_again(
    settings: Settings,
    sessions: sessionmaker[Session],
    staff: Staff,
    campaign: int,
    tiles: TileServer,
) -> None:
    from playwright.sync_api import expect

    configured = settings.model_copy(
        update={
            "map_tiles_url": f"{tiles.origin}/tiles/{{z}}/{{x}}/{{y}}.png",
            "map_tiles_attribution": "© Loopback Tiles",
        }
    )
    with (
        Console(configured) as console,
        _board(console, sessions, staff, campaign) as (page, requested, complaints),
    ):
        images = page.locator("[data-testid=map] image")
        count = images.count()
        assert count >= 2  # tiles of 256 to 512 pixels cover the 640×360 picture
        expect(images.first).to_be_visible()
        expect(page.locator("[data-testid=map-attribution]")).to_have_text("© Loopback Tiles")
        _wait_for("every tile to be asked for", lambda: len(set(tiles.asked)) >= count)
        hrefs = {images.nth(i).get_attribute("href") for i in range(count)}
        assert {f"{tiles.origin}{path}" for path in tiles.asked} == hrefs
        # The tiles lie under the zones: drawn first, and the zones' circles on top.
        first = page.evaluate(
            "() => document.querySelector('[data-testid=map]').querySelector('image, circle').tagName"
        )
        assert first == "image"
        assert complaints == []
        _shoot(page.locator("[data-testid=map]"), "console-map-tiles")
        asked = len(tiles.asked)
        _refreshes(page, 2)
        assert len(tiles.asked) == asked  # the refresh takes them from the browser's cache
        outside = {
            urlsplit(url).netloc
            for url in requested
            if not url.startswith((console.base, tiles.origin))
        }
        assert outside == set()


def test_without_tiles_the_page_asks_nothing_of_anyone_else(
    settings: Settings,
    sessions: sessionmaker[Session],
    staff: Staff,
    campaign: int,
    tiles: TileServer,
) -> None:
    with (
        Console(settings) as console,
        _board(console, sessions, staff, campaign) as (page, requested, complaints),
    ):
        _refreshes(page, 1)
        assert page.locator("[data-testid=map] image").count() == 0
        assert page.locator("[data-testid=map-attribution]").count() == 0
        assert {urlsplit(url).netloc for url in requested} == {urlsplit(console.base).netloc}
        assert tiles.asked == [] and complaints == []
        assert page.locator("[data-testid=map] rect").count() >= 1  # the shelters
        _shoot(page.locator("[data-testid=map]"), "console-map-offline")
