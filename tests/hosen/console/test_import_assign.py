"""The console's list import and assignment pages over HTTP: the upload's preview is the
importer's dry run and "apply" its real run, with a row report and a CSV of the rejected rows;
the assignment's dry run is reviewed per zone, kept while the registry stays as it was, and
applied as ``hosen assign`` applies it; each refused without a session, to coordinators and to
another authority, without the form's CSRF token, and (the upload) beyond its size."""

from __future__ import annotations

import csv
import io
import logging
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config.languages import Language
from config.profile import Profile
from dispatch.models import OutboxMessage
from dispatch.offers import sweep_offers
from hosen.console.assign_page import registry_version, review_of
from hosen.console.import_page import UPLOAD_MAX_BYTES
from registry.assignment.models import AssignmentChange, AssignmentRun
from registry.assignment.store import assign_authority
from registry.models import (
    AuditEntry,
    BuddyAssignment,
    Channel,
    Group,
    GroupKind,
    Person,
    Source,
)
from registry.people import NeedsDetails, PersonDetails, VolunteerDetails, register_person
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import StaffMember, StaffRole, add_staff
from tests.hosen.console.conftest import START, Clock, SignIn, Staff, TestClient, csrf_of

pytestmark = pytest.mark.db

# The welfare department's list: two good rows, one rejected (an unusable number and no
# municipal id) whose name a spreadsheet would run as a formula.
WELFARE = (
    "first name,last name,phone,zone,lives alone\n"
    "Miriam,Cohen,052-612-3401,kt-center,yes\n"
    "Avi,Ben,054-720-1102,kt-north,no\n"
    '"=HYPERLINK(""http://x.example"",""y"")",Levi,12,kt-center,yes\n'
)
CENTRE = (31.6100, 34.7700)  # kt-center


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Where the uploads' temporary files go, so a test can see that none is left."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _english(client: TestClient) -> None:
    page = client.get("/console/people")
    client.post("/console/language", data={"csrf": csrf_of(page.text), "lang": "en", "back": "/"})


def _upload(
    client: TestClient, text: str, *, kind: str = "residents", csrf: str | None = None
) -> object:
    token = csrf if csrf is not None else csrf_of(client.get("/console/import").text)
    return client.post(
        "/console/import",
        data={"csrf": token, "kind": kind},
        files={"file": ("welfare-2026-11.csv", text.encode("utf-8"), "text/csv")},
    )


def _people(sessions: sessionmaker[Session], authority_id: int) -> list[str]:
    with sessions() as session:
        return sorted(
            session.scalars(select(Person.name).where(Person.authority_id == authority_id))
        )


def test_an_officer_previews_applies_and_reads_the_row_report(
    sign_in: SignIn,
    staff: Staff,
    sessions: sessionmaker[Session],
    directory: Directory,
    uploads: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    kt = directory.authorities["kiryat-tamar"]
    client = sign_in(staff.officer)
    form = client.get("/console/import")
    assert form.status_code == 200 and '<html lang="he" dir="rtl">' in form.text
    assert 'href="/console/import"' in form.text  # in the navigation
    _english(client)
    sent = _upload(client, WELFARE)
    assert sent.status_code == 303, sent.text  # type: ignore[attr-defined]
    report_url = sent.headers["location"]  # type: ignore[attr-defined]
    assert report_url.startswith("/console/import/")
    preview = client.get(report_url)
    assert preview.status_code == 200
    html = preview.text
    assert "Preview: what the import would change" in html
    totals = dict(
        re.findall(r'data-outcome="(\w+)"><th scope="row">[^<]+</th><td class="num">(\d+)', html)
    )
    assert totals == {
        "created": "2",
        "updated": "0",
        "unchanged": "0",
        "skipped": "1",
        "with_warnings": "0",
    }
    # The rejected row, numbered as in the spreadsheet (the header is row 1), and why.
    row = re.search(r'<tr data-row="4">(.*?)</tr>', html, re.S)
    assert row, html
    assert "Levi" in row.group(1) and "cannot be used" in row.group(1)
    assert _people(sessions, kt.id) == []  # a preview writes nothing
    assert len(list(uploads.iterdir())) == 1  # kept for "apply"

    everyone = client.get(f"{report_url}?show=all").text
    assert '<tr data-row="2">' in everyone and "would be added" in everyone

    csrf = csrf_of(html)
    unconfirmed = client.post(f"{report_url}/apply", data={"csrf": csrf})
    assert unconfirmed.status_code == 400 and "Tick the box" in unconfirmed.text
    assert _people(sessions, kt.id) == []
    applied = client.post(f"{report_url}/apply", data={"csrf": csrf, "confirm": "yes"})
    assert applied.status_code == 303 and applied.headers["location"] == report_url
    assert _people(sessions, kt.id) == ["Avi Ben", "Miriam Cohen"]
    assert list(uploads.iterdir()) == []  # the file is gone once applied
    done = client.get(report_url).text
    assert "Import done: the row report" in done and "The file has been deleted" in done
    again = client.post(f"{report_url}/apply", data={"csrf": csrf, "confirm": "yes"})
    assert again.status_code == 303 and _people(sessions, kt.id) == ["Avi Ben", "Miriam Cohen"]

    rejected = client.get(f"{report_url}/rejected.csv")
    assert rejected.status_code == 200
    assert rejected.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(rejected.content.decode("utf-8-sig"))))
    assert rows[0] == ["Row", "Name", "Phone", "Why"]
    assert len(rows) == 2 and rows[1][0] == "4" and rows[1][2] == "12"
    assert rows[1][1].startswith("'=HYPERLINK")  # neutralised for the spreadsheet

    with sessions() as session:
        actions = [
            (entry.action, entry.detail)
            for entry in session.scalars(
                select(AuditEntry).where(AuditEntry.action.in_(("import.preview", "import.apply")))
            )
        ]
    assert [a for a, _ in actions] == ["import.preview", "import.apply"]
    assert actions[1][1]["created"] == 2 and actions[1][1]["skipped"] == 1
    assert "Miriam" not in repr(actions)  # counts, never names
    for personal in ("Miriam", "Levi", "612-3401", "HYPERLINK"):
        assert personal not in caplog.text  # nor in the logs


def test_an_unreadable_list_is_refused_with_its_reason_and_not_kept(
    sign_in: SignIn, staff: Staff, uploads: Path
) -> None:
    client = sign_in(staff.officer)
    _english(client)
    refused = _upload(client, "colour,shape\nred,round\n")
    assert refused.status_code == 400  # type: ignore[attr-defined]
    assert "none of the columns we know" in refused.text  # type: ignore[attr-defined]
    assert list(uploads.iterdir()) == []


def test_the_import_is_refused_without_session_to_coordinators_and_other_authorities(
    sign_in: SignIn,
    staff: Staff,
    sessions: sessionmaker[Session],
    directory: Directory,
    console_app: object,
    uploads: Path,
) -> None:
    anonymous = TestClient(console_app)  # type: ignore[arg-type]
    for url in ("/console/import", "/console/assign"):
        answer = anonymous.get(url)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"
    posted = anonymous.post(
        "/console/import", data={"csrf": "x"}, files={"file": ("a.csv", b"name,phone\n")}
    )
    assert posted.status_code == 303 and posted.headers["location"] == "/console/sign-in"

    coordinator = sign_in(_coordinator(sessions, directory))
    assert 'href="/console/import"' not in coordinator.get("/console/queue").text
    for url in ("/console/import", "/console/assign"):
        assert coordinator.get(url).status_code == 403, url
    csrf = csrf_of(coordinator.get("/console/queue").text)
    assert _upload(coordinator, WELFARE, csrf=csrf).status_code == 403  # type: ignore[attr-defined]
    assert coordinator.post("/console/assign", data={"csrf": csrf}).status_code == 403

    officer = sign_in(staff.officer)
    report_url = _upload(officer, WELFARE).headers["location"]  # type: ignore[attr-defined]
    other = sign_in(staff.other_officer)
    other_csrf = csrf_of(other.get("/console/import").text)
    assert other.get(report_url).status_code == 404
    assert other.get(f"{report_url}/rejected.csv").status_code == 404
    taken = other.post(f"{report_url}/apply", data={"csrf": other_csrf, "confirm": "yes"})
    assert taken.status_code == 404
    kt = directory.authorities["kiryat-tamar"]
    assert other.get(f"/console/assign?authority={kt.id}").status_code == 404
    assert _people(sessions, kt.id) == []
    assert list(uploads.iterdir())  # still the officer's to apply
    with sessions() as session:
        refused = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "staff.refused")
        ).all()
    assert {entry.detail["attempted"] for entry in refused} >= {"registry.import", "assignment.run"}


def test_forms_without_their_csrf_token_are_refused(
    sign_in: SignIn, staff: Staff, sessions: sessionmaker[Session], uploads: Path
) -> None:
    client = sign_in(staff.officer)
    assert _upload(client, WELFARE, csrf="0" * 40).status_code == 403  # type: ignore[attr-defined]
    assert list(uploads.iterdir()) == []  # refused before the file was kept
    report_url = _upload(client, WELFARE).headers["location"]  # type: ignore[attr-defined]
    assert client.post(f"{report_url}/apply", data={"confirm": "yes"}).status_code == 403
    assert client.post(f"{report_url}/cancel", data={}).status_code == 403
    assert client.post("/console/assign", data={}).status_code == 403
    assert client.post("/console/assign/apply", data={"confirm": "yes"}).status_code == 403
    csrf = csrf_of(client.get(report_url).text)
    cancelled = client.post(f"{report_url}/cancel", data={"csrf": csrf})
    assert cancelled.status_code == 303 and list(uploads.iterdir()) == []
    assert client.get(report_url).status_code == 404


def test_an_oversized_upload_is_refused_with_a_message(
    sign_in: SignIn, staff: Staff, uploads: Path
) -> None:
    client = sign_in(staff.officer)
    _english(client)
    big = b"name,phone\n" + b"x" * UPLOAD_MAX_BYTES
    refused = _upload(client, big.decode())
    assert refused.status_code == 413  # type: ignore[attr-defined]
    assert "larger than 20 MB and was not taken" in refused.text  # type: ignore[attr-defined]
    assert list(uploads.iterdir()) == []
    # Sent in chunks without a length, it is refused as soon as it grows past the limit.
    csrf = csrf_of(client.get("/console/import").text)
    boundary = "hosenboundary"

    async def body() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
            "Content-Type: text/csv\r\n\r\nname,phone\r\n"
        ).encode()
        for _ in range(UPLOAD_MAX_BYTES // (1 << 20) + 2):
            yield b"y" * (1 << 20)
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = client.post(
        "/console/import",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert streamed.status_code == 413 and "was not taken" in streamed.text
    assert list(uploads.iterdir()) == []


# --- the assignment ------------------------------------------------------------------------------


def _coordinator(sessions: sessionmaker[Session], directory: Directory) -> StaffMember:
    from registry.groups import save_group

    kt = directory.authorities["kiryat-tamar"]
    with sessions() as session:
        group, _ = save_group(
            session,
            authority=kt,
            name="Scouts Tamar",
            kind=GroupKind.YOUTH_MOVEMENT,
            zones=[],
            code="scouts-kt",
            actor="test",
            now=START,
        )
        member = add_staff(
            session,
            name="Amit",
            phone=normalise_phone("052-555-2000", region="IL"),
            authority=kt,
            role=StaffRole.COORDINATOR,
            groups=[session.get_one(Group, group.id)],
            actor="test",
        )
        session.commit()
        session.expunge_all()
    return member


def near(north_m: float) -> tuple[float, float]:
    return CENTRE[0] + north_m / 111_195, CENTRE[1]


def build_town(session: Session, directory: Directory) -> dict[str, int]:
    """Kiryat Tamar: two bedridden residents in the centre with three volunteers on Telegram
    beside them; one bedridden resident in the north, beyond every volunteer's reach. Their
    Telegram chats, by name."""
    kt = directory.authorities["kiryat-tamar"]
    chat = 8000
    chats: dict[str, int] = {}

    def add(name: str, north: float, zone: str, **more: object) -> None:
        nonlocal chat
        chat += 1
        chats[name] = chat
        lat, lon = near(north)
        register_person(
            session,
            authority=kt,
            details=PersonDetails(
                name=name, language=Language.HE, birth_year=1970,
                zone=directory.zone(kt, zone), lat=lat, lon=lon,
                address=f"Herzl {chat - 8000}", channel=Channel.TELEGRAM,
                telegram_chat_id=chat, **more,  # type: ignore[arg-type]
            ),
            source=Source.STAFF,
            actor="test", now=START,
        )  # fmt: skip

    for n, north in enumerate((0, 80)):
        add(f"Resident {n}", north, "kt-center", needs=NeedsDetails(bedridden=True))
    add("Far North", 3000, "kt-north", needs=NeedsDetails(bedridden=True))
    for n, north in enumerate((40, 120, 200)):
        add(f"Volunteer {n}", north, "kt-center", volunteer=VolunteerDetails())
    session.commit()
    return chats


@pytest.fixture
def town(sessions: sessionmaker[Session], directory: Directory) -> None:
    with sessions() as session:
        build_town(session, directory)


def test_the_review_adds_up_to_the_engines_tiers(
    session: Session, directory: Directory, profile: Profile, town: None
) -> None:
    kt = directory.authorities["kiryat-tamar"]
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    result = assign_authority(
        session, authority=kt, profile=profile, actor="test", now=now, dry_run=True
    )
    review = review_of(session, result, authority_id=kt.id, version="v", computed_at=now)
    for tier in review.tiers:
        zones = [tiers[tier.number] for tiers in review.per_zone.values() if tier.number in tiers]
        assert sum(z.demand for z in zones) == tier.demand, tier
        assert sum(z.met for z in zones) == tier.met, tier
    north = directory.zone(kt, "kt-north").id
    high_risk = review.tiers[0]
    assert high_risk.kind == "buddies"
    assert review.per_zone[north][high_risk.number].unmet == 1
    center = directory.zone(kt, "kt-center").id
    assert review.changes[center]["buddy_new"] >= 2
    assert registry_version(session, authority_id=kt.id) == registry_version(
        session, authority_id=kt.id
    )


def test_an_officer_runs_reviews_and_applies_the_assignment(
    sign_in: SignIn,
    staff: Staff,
    sessions: sessionmaker[Session],
    directory: Directory,
    profile: Profile,
    clock: Clock,
    town: None,
) -> None:
    kt = directory.authorities["kiryat-tamar"]
    client = sign_in(staff.officer)
    _english(client)
    first = client.get("/console/assign")
    assert first.status_code == 200
    assert "Run the assignment (dry run)" in first.text and 'data-testid="plan"' not in first.text
    csrf = csrf_of(first.text)
    ran = client.post("/console/assign", data={"csrf": csrf, "authority": str(kt.id)})
    assert (
        ran.status_code == 303 and ran.headers["location"] == f"/console/assign?authority={kt.id}"
    )
    page = client.get(ran.headers["location"]).text
    assert 'data-testid="plan"' in page
    # The north's resident has no buddy, and the page says why, as `hosen gaps` does.
    north = re.search(r'<h2 id="assign-zone-\d+">North Town</h2>(.*?)</section>', page, re.S)
    assert north, page
    assert "no volunteer within 1500 m" in north.group(1)
    assert "Buddies for residents at high risk" in north.group(1)
    centre = re.search(r'<h2 id="assign-zone-\d+">City Centre</h2>(.*?)</section>', page, re.S)
    assert centre and "New buddy pairs to offer: 2" in centre.group(1)
    computed = re.search(r"Plan computed at ([^(]+)\(", page)
    assert computed
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AssignmentRun)) == 0  # dry run

    clock.move(minutes=2)
    kept = client.get("/console/assign").text
    assert computed.group(1) in kept  # not computed again

    version = re.search(r'name="version" value="([0-9a-f]+)"', page)
    assert version
    unconfirmed = client.post(
        "/console/assign/apply",
        data={"csrf": csrf, "authority": str(kt.id), "version": version.group(1)},
    )
    assert unconfirmed.status_code == 400
    applied = client.post(
        "/console/assign/apply",
        data={"csrf": csrf, "authority": str(kt.id), "version": version.group(1), "confirm": "yes"},
    )
    assert applied.status_code == 303 and "&run=" in applied.headers["location"]
    done = client.get(applied.headers["location"]).text
    assert 'data-testid="applied"' in done and 'data-testid="plan"' not in done
    with sessions() as session:
        run = session.scalars(select(AssignmentRun)).one()
        assert run.actor == f"console:staff:{staff.officer.id}"
        assert session.scalar(select(func.count()).select_from(AssignmentChange)) >= 3
        assert (
            session.scalars(select(AuditEntry).where(AuditEntry.action == "assign.run")).one().actor
            == f"console:staff:{staff.officer.id}"
        )
        # The scheduler's sweep then asks the volunteers, as after `hosen assign`.
        sweep_offers(session, profile=profile, now=START)
        session.commit()
        offers = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "offer")).all()
        assert len(offers) == 3 and {o.channel for o in offers} == {Channel.TELEGRAM}
    after = client.get("/console/assign").text
    assert re.search(r'data-testid="zone-offers"', after)  # the offers, per zone

    # Once applied, nothing would change: there is nothing to apply.
    client.post("/console/assign", data={"csrf": csrf, "authority": str(kt.id)})
    current = client.get("/console/assign").text
    assert 'data-testid="up-to-date"' in current and 'data-testid="apply"' not in current

    # A plan reviewed before the registry changed is not written: it is shown again, new.
    def arrives(name: str, north: float, chat: int) -> None:
        with sessions() as session:
            register_person(
                session,
                authority=kt,
                details=PersonDetails(
                    name=name, language=Language.HE, birth_year=1950,
                    zone=directory.zone(kt, "kt-center"), lat=near(north)[0], lon=near(north)[1],
                    channel=Channel.TELEGRAM, telegram_chat_id=chat,
                    needs=NeedsDetails(bedridden=True),
                ),
                source=Source.STAFF, actor="test", now=START,
            )  # fmt: skip
            session.commit()

    arrives("Late Arrival", 10, 9998)
    client.post("/console/assign", data={"csrf": csrf, "authority": str(kt.id)})
    stale = re.search(r'name="version" value="([0-9a-f]+)"', client.get("/console/assign").text)
    assert stale
    arrives("Later Still", 20, 9999)  # the registry moves
    refused = client.post(
        "/console/assign/apply",
        data={"csrf": csrf, "authority": str(kt.id), "version": stale.group(1), "confirm": "yes"},
    )
    assert refused.status_code == 303 and refused.headers["location"].endswith("&changed=1")
    assert "The registry changed" in client.get(refused.headers["location"]).text
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AssignmentRun)) == 1
        assert session.scalar(select(func.count()).select_from(BuddyAssignment)) >= 2


def test_both_pages_speak_all_five_languages(
    sign_in: SignIn, staff: Staff, directory: Directory, town: None, uploads: Path
) -> None:
    client = sign_in(staff.officer)
    report_url = _upload(client, WELFARE).headers["location"]  # type: ignore[attr-defined]
    csrf = csrf_of(client.get("/console/assign").text)
    client.post("/console/assign", data={"csrf": csrf})
    for language in Language:
        client.post("/console/language", data={"csrf": csrf, "lang": language.value, "back": "/"})
        for url in ("/console/import", report_url, f"{report_url}?show=all", "/console/assign"):
            page = client.get(url)
            assert page.status_code == 200, (language, url)
            direction = "rtl" if language.rtl else "ltr"
            assert f'<html lang="{language.value}" dir="{direction}">' in page.text
