"""The call-down sheet as a PDF (WeasyPrint), and the board's map with and without tiles, over
HTTP against the real app on both databases: who may download what, what the PDF says (its
text read back with pypdf), and the Content-Security-Policy each way."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from config.settings import Settings
from dispatch.campaigns import Audience, start_drill_checkin
from hosen.app import build_app
from hosen.context import Context
from registry.models import AuditEntry, Channel, Person, PhoneKind, Source
from registry.profile_sync import Directory
from registry.resources import Resource, ResourceKind
from tests.hosen.console.conftest import START, Clock, SignIn, Staff, TestClient

pytestmark = pytest.mark.db

TILES = "http://127.0.0.1:9/tiles/{z}/{x}/{y}.png"  # never fetched here: only named


def _text(pdf: bytes) -> str:
    """The PDF's words, whitespace made single spaces (a table cell wraps where it must)."""
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return " ".join(text.split())


@pytest.fixture
def drills(sessions: sessionmaker[Session], directory: Directory) -> dict[str, int]:
    """A drill in each authority: Kiryat Tamar's to three residents in two zones (Arabic,
    Hebrew and Amharic names), Emek Tamar's to one; nobody has answered."""
    ids: dict[str, int] = {}
    with sessions() as session:
        for n, (authority, zone, name) in enumerate(
            [
                ("kiryat-tamar", "kt-north", "Miriam Cohen"),
                ("kiryat-tamar", "kt-north", "סבתא רחל"),
                ("kiryat-tamar", "kt-center", "سلمى حداد"),
                ("emek-tamar", None, "Stranger Dweller"),
            ]
        ):
            found = directory.authorities[authority]
            zone_id = directory.zones[(found.id, zone)].id if zone else None
            if zone:
                ids[zone] = zone_id  # type: ignore[assignment]
            session.add(
                Person(
                    authority_id=found.id,
                    zone_id=zone_id,
                    name=name,
                    phone=f"+97250300000{n}",
                    phone_kind=PhoneKind.MOBILE,
                    channel=Channel.SMS,
                    source=Source.STAFF,
                    address=f"Hadekel {n + 1}",
                    needs_help=True,
                )
            )
        session.flush()
        for authority in ("kiryat-tamar", "emek-tamar"):
            campaign = start_drill_checkin(
                session,
                authority=directory.authorities[authority],
                audience=Audience(residents_only=True),
                started_by="test",
                now=START,
            )
            ids[authority] = campaign.id
        kt = directory.authorities["kiryat-tamar"]
        session.add(
            Resource(
                authority_id=kt.id,
                zone_id=ids["kt-north"],
                code="mc-1",
                kind=ResourceKind.COMMUNITY_CENTRE,
                name="Matnas North",
            )
        )
        session.commit()
    return ids


def test_the_sheet_as_a_pdf_in_hebrew(
    sign_in: SignIn, staff: Staff, drills: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    client = sign_in(staff.officer)
    campaign = drills["kiryat-tamar"]
    sheet = client.get(f"/console/sheet?campaign={campaign}&kind=unreached")
    assert f'href="/console/sheet.pdf?campaign={campaign}&amp;kind=unreached"' in sheet.text
    answer = client.get(f"/console/sheet.pdf?campaign={campaign}&kind=unreached")
    if dump := os.environ.get("HOSEN_CONSOLE_PDF"):
        Path(dump).write_bytes(answer.content)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="hosen-{campaign}-unreached.pdf"'
    )
    assert answer.headers["cache-control"] == "no-store"
    reader = PdfReader(io.BytesIO(answer.content))
    assert len(reader.pages) == 2  # one page for each zone
    text = _text(answer.content)
    for expected in ("Miriam Cohen", "סבתא רחל", "سلمى حداد", "דף טלפונים", "+972503000000"):
        assert expected in text, expected
    assert "Stranger" not in text
    with sessions() as session:
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.actor == f"console:staff:{staff.officer.id}")
        ).all()
    assert actions.count("campaign.unreached") == 2  # the sheet, then its PDF


def test_one_zones_pdf_and_the_other_languages(
    sign_in: SignIn, staff: Staff, drills: dict[str, int]
) -> None:
    client = sign_in(staff.officer)
    campaign, zone = drills["kiryat-tamar"], drills["kt-center"]
    answer = client.get(f"/console/sheet.pdf?campaign={campaign}&kind=unreached&zone={zone}")
    assert answer.headers["content-disposition"].endswith(f'-unreached-zone-{zone}.pdf"')
    text = _text(answer.content)
    assert "سلمى حداد" in text and "Miriam" not in text
    for language, heading in (("ar", "ورقة اتصالات"), ("am", "የጥሪ ወረቀት"), ("ru", "Лист обзвона")):
        client.post("/console/language", data={"csrf": _csrf(client), "lang": language})
        answer = client.get(f"/console/sheet.pdf?campaign={campaign}&kind=unreached")
        assert answer.status_code == 200, language
        assert heading in _text(answer.content), language


def _csrf(client: TestClient) -> str:
    from tests.hosen.console.conftest import csrf_of

    return csrf_of(client.get("/console/lists").text)


def test_no_pdf_without_a_session_nor_of_another_authority(
    console_app: Starlette, sign_in: SignIn, staff: Staff, drills: dict[str, int]
) -> None:
    url = f"/console/sheet.pdf?campaign={drills['kiryat-tamar']}&kind=unreached"
    answer = TestClient(console_app).get(url)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"
    other = sign_in(staff.other_officer)
    answer = other.get(url)
    assert answer.status_code == 404 and "Miriam" not in answer.text
    own = other.get(f"/console/sheet.pdf?campaign={drills['emek-tamar']}&kind=unreached")
    text = _text(own.content)
    assert "Stranger Dweller" in text and "Miriam" not in text


def test_the_board_without_tiles_loads_no_image_from_outside(
    sign_in: SignIn, staff: Staff, drills: dict[str, int]
) -> None:
    board = sign_in(staff.officer).get(f"/console/board?campaign={drills['kiryat-tamar']}")
    policy = board.headers["content-security-policy"]
    assert "img-src 'self' data:;" in policy
    assert 'data-testid="map"' in board.text and "<image" not in board.text
    assert board.text.count("<circle") >= 3  # the zones of the sample profile
    assert "1 accessible shelter or community centre" not in board.text  # Hebrew by default
    assert "מקלט נגיש או מתנ&#34;ס אחד (1)" in board.text  # North's community centre


@pytest.fixture
def tiled_app(
    settings: Settings, sessions: sessionmaker[Session], directory: Directory, clock: Clock
) -> Iterator[Starlette]:
    ctx = Context(
        settings=settings.model_copy(
            update={"map_tiles_url": TILES, "map_tiles_attribution": "© Test Tiles"}
        )
    )
    yield build_app(
        ctx,
        clock=clock,
        run_worker=False,
        run_bot=False,
        run_scheduler=False,
        run_processor=False,
    )
    ctx.close()


def test_the_board_with_tiles_names_their_origin_and_draws_them(
    tiled_app: Starlette,
    sessions: sessionmaker[Session],
    staff: Staff,
    drills: dict[str, int],
) -> None:
    from tests.hosen.console.conftest import csrf_of, last_code

    client = TestClient(tiled_app)
    page = client.get("/console/sign-in")
    client.post("/console/sign-in", data={"csrf": csrf_of(page.text), "phone": staff.officer.phone})
    page = client.get("/console/sign-in/code")
    client.post(
        "/console/sign-in/code",
        data={"csrf": csrf_of(page.text), "code": last_code(sessions, staff.officer.phone)},
    )
    board = client.get(f"/console/board?campaign={drills['kiryat-tamar']}")
    assert board.status_code == 200
    policy = board.headers["content-security-policy"]
    assert "img-src 'self' data: http://127.0.0.1:9;" in policy
    assert policy.count("127.0.0.1") == 1  # images only: no script, style or frame from there
    assert '<image href="http://127.0.0.1:9/tiles/' in board.text
    assert "© Test Tiles" in board.text
    # Every page of the console carries the same policy.
    assert client.get("/console/lists").headers["content-security-policy"] == policy


def test_a_server_without_weasyprint_says_so_and_keeps_the_printable_sheet(
    sign_in: SignIn, staff: Staff, drills: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = sign_in(staff.officer)
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # as if it were not installed
    campaign = drills["kiryat-tamar"]
    answer = client.get(f"/console/sheet.pdf?campaign={campaign}&kind=unreached")
    assert answer.status_code == 503
    assert "Pango" in answer.text and "Miriam" not in answer.text
    sheet = client.get(f"/console/sheet?campaign={campaign}&kind=unreached")
    assert sheet.status_code == 200 and "Miriam Cohen" in sheet.text
