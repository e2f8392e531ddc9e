"""The console's locks: no page without a session, nothing of another authority, no form
without its CSRF token, sign-in codes that expire and lock, sessions that end."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from config.languages import Language
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.help import raise_help
from dispatch.models import Alert, AlertKind, AlertState, Answer, CampaignRecipient
from registry.models import (
    AuditEntry,
    Channel,
    Consent,
    ConsentGiver,
    ConsentKind,
    Person,
    PhoneKind,
    ResidentNeeds,
    Source,
)
from registry.profile_sync import Directory
from registry.staff import StaffRole
from tests.hosen.console.conftest import (
    START,
    Clock,
    SignIn,
    Staff,
    TestClient,
    csrf_of,
    last_code,
)

pytestmark = pytest.mark.db

PAGES = [
    "/console/board",
    "/console/board/live",
    "/console/queue",
    "/console/queue/rows",
    "/console/lists",
    "/console/lists.csv?kind=unreached",
    "/console/sheet?kind=unreached",
    "/console/sheet.pdf?kind=unreached",
    "/console/start",
    "/console/people",
    "/console/people/1",
    "/console/groups",
    "/console/resources",
    "/console/gaps",
    "/console/report/1",
]


@pytest.fixture
def drill(sessions: sessionmaker[Session], directory: Directory) -> dict[str, int]:
    """A drill of Kiryat Tamar to three residents; one answered "help" and has an open alert,
    one is named like a spreadsheet formula."""
    authority = directory.authorities["kiryat-tamar"]
    zone = directory.zones[(authority.id, "kt-north")]
    with sessions() as session:
        people = []
        for n, name in enumerate(["Miriam Cohen", '=HYPERLINK("http://x.example","y")', "Avi Ben"]):
            person = Person(
                authority_id=authority.id,
                zone_id=zone.id,
                name=name,
                phone=f"+97250100000{n}",
                phone_kind=PhoneKind.MOBILE,
                channel=Channel.SMS,
                source=Source.STAFF,
                address=f"Hadekel {n + 1}",
                needs_help=True,
                needs=ResidentNeeds(lives_alone=True),
            )
            session.add(person)
            people.append(person)
        session.flush()
        session.add(
            Consent(
                person_id=people[0].id,
                kind=ConsentKind.HEALTH_DATA,
                version="1",
                language=Language.HE,
                text="...",
                channel=Source.STAFF,
                given_by=ConsentGiver.STAFF,
                given_at=START,
            )
        )
        campaign = start_drill_checkin(
            session,
            authority=authority,
            audience=Audience(residents_only=True),
            started_by="test",
            now=START,
        )
        recipient = session.scalars(
            select(CampaignRecipient).where(CampaignRecipient.person_id == people[0].id)
        ).one()
        recipient.answer, recipient.answered_at = Answer.HELP, START
        alert = raise_help(
            session, resident=people[0], campaign=campaign, kind=AlertKind.HELP, now=START
        )
        session.commit()
        return {"campaign": campaign.id, "alert": alert.id, "zone": zone.id}


def test_every_page_without_a_session_goes_to_sign_in(console_app: Starlette) -> None:
    client = TestClient(console_app, follow_redirects=False)
    for page in PAGES:
        answer = client.get(page)
        assert answer.status_code == 303, page
        assert answer.headers["location"] == "/console/sign-in", page
    # The board's own refresh (htmx) is sent to sign in as a whole page, not drawn inside it.
    live = client.get("/console/board/live", headers={"HX-Request": "true"})
    assert live.headers["hx-redirect"] == "/console/sign-in" and live.text == ""
    token = csrf_of(client.get("/console/sign-in").text)
    for action in ("/console/help/1/take", "/console/close/1", "/console/start", "/console/gaps"):
        answer = client.post(action, data={"csrf": token})
        assert answer.headers["location"] == "/console/sign-in", action


def test_another_authoritys_officer_sees_nothing_of_this_one(
    sign_in: SignIn, staff: Staff, drill: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    own = sign_in(staff.officer)
    assert "Miriam Cohen" in own.get("/console/queue").text
    assert own.get(f"/console/board?campaign={drill['campaign']}").status_code == 200

    other = sign_in(staff.other_officer)
    campaign = drill["campaign"]
    assert "Miriam Cohen" not in other.get("/console/queue").text
    assert f"#{campaign}" not in other.get("/console/board").text
    for page in (
        f"/console/board?campaign={campaign}",
        f"/console/board/live?campaign={campaign}",
        f"/console/lists?campaign={campaign}",
        f"/console/sheet?campaign={campaign}&kind=help",
        f"/console/sheet.pdf?campaign={campaign}&kind=help",
        f"/console/lists.csv?campaign={campaign}&kind=help",
    ):
        answer = other.get(page)
        assert answer.status_code == 404, page
        assert "Miriam" not in answer.text and "+972501000000" not in answer.text
    token = csrf_of(other.get("/console/queue").text)
    assert (
        other.post(f"/console/help/{drill['alert']}/take", data={"csrf": token}).status_code == 404
    )
    assert other.post(f"/console/close/{campaign}", data={"csrf": token}).status_code == 404
    with sessions() as session:
        alert = session.get(Alert, drill["alert"])
        assert alert is not None and alert.state == AlertState.OPEN


def test_a_form_without_its_csrf_token_is_refused(
    sign_in: SignIn, staff: Staff, drill: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    client = sign_in(staff.officer)
    for data in ({}, {"csrf": "0" * 40}):
        answer = client.post(f"/console/help/{drill['alert']}/take", data=data)
        assert answer.status_code == 403
        assert client.post(f"/console/close/{drill['campaign']}", data=data).status_code == 403
    with sessions() as session:
        assert session.get_one(Alert, drill["alert"]).state == AlertState.OPEN
    # A token is good only with its own session: another browser's is refused too.
    stranger = TestClient(client.app, follow_redirects=False)
    foreign = csrf_of(stranger.get("/console/sign-in").text)
    assert (
        client.post(f"/console/help/{drill['alert']}/take", data={"csrf": foreign}).status_code
        == 403
    )
    # With its token the same form works, and is audited as the bot's commands are.
    token = csrf_of(client.get("/console/queue").text)
    taken = client.post(f"/console/help/{drill['alert']}/take", data={"csrf": token})
    assert taken.status_code == 303
    with sessions() as session:
        alert = session.get_one(Alert, drill["alert"])
        assert alert.state == AlertState.TAKEN and alert.owner_staff_id == staff.officer.id
        actions = set(
            session.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.actor == f"console:staff:{staff.officer.id}"
                )
            )
        )
        took = session.scalars(
            select(AuditEntry.actor).where(AuditEntry.action == "help.take")
        ).all()
    assert {"help.handle", "console.sign_in", "needs.read"} <= actions
    assert took == [f"staff:{staff.officer.id}"]  # as when taken from the bot
    assert "Rina" in client.get(taken.headers["location"]).text


def _ask_code(client: TestClient, phone: str) -> None:
    page = client.get("/console/sign-in")
    client.post("/console/sign-in", data={"csrf": csrf_of(page.text), "phone": phone})


def _try(client: TestClient, code: str) -> str:
    page = client.get("/console/sign-in/code")
    answer = client.post("/console/sign-in/code", data={"csrf": csrf_of(page.text), "code": code})
    return answer.text if answer.status_code != 303 else "SIGNED IN"


def test_a_code_expires(
    console_app: Starlette, staff: Staff, sessions: sessionmaker[Session], clock: Clock
) -> None:
    client = TestClient(console_app, follow_redirects=False)
    _ask_code(client, staff.officer.phone)
    code = last_code(sessions, staff.officer.phone)
    clock.move(minutes=11)
    assert "הקוד פג" in _try(client, code)  # Hebrew, the default
    assert client.get("/console/board").status_code == 303


def test_five_wrong_codes_lock_it(
    console_app: Starlette, staff: Staff, sessions: sessionmaker[Session]
) -> None:
    client = TestClient(console_app, follow_redirects=False)
    _ask_code(client, staff.officer.phone)
    code = last_code(sessions, staff.officer.phone)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(4):
        assert "קוד שגוי" in _try(client, wrong)
    assert "ננעל" in _try(client, wrong)
    assert _try(client, code) != "SIGNED IN"
    assert client.get("/console/board").status_code == 303


def test_a_stranger_is_told_the_same_as_staff_and_gets_no_code(
    console_app: Starlette, staff: Staff, sessions: sessionmaker[Session]
) -> None:
    client = TestClient(console_app, follow_redirects=False)
    page = client.get("/console/sign-in")
    answer = client.post(
        "/console/sign-in", data={"csrf": csrf_of(page.text), "phone": "052-555-9999"}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in/code"
    with sessions() as session:
        assert (
            session.scalars(select(AuditEntry).where(AuditEntry.action == "phone_code.send")).all()
            == []
        )
    assert _try(client, "123456") != "SIGNED IN"


def test_a_session_ends_after_its_lifetime_and_at_sign_out(
    sign_in: SignIn, staff: Staff, clock: Clock
) -> None:
    client = sign_in(staff.officer)
    cookie = client.cookies.get("hosen_console")
    assert cookie is not None
    assert client.get("/console/board").status_code == 200
    clock.move(hours=12, seconds=1)
    assert client.get("/console/board").headers["location"] == "/console/sign-in"

    client = sign_in(staff.officer)
    page = client.get("/console/board")
    out = client.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    assert client.get("/console/board").status_code == 303
    # A tampered cookie counts for nothing.
    forged = TestClient(client.app, follow_redirects=False, cookies={"hosen_console": cookie + "x"})
    assert forged.get("/console/board").status_code == 303


def test_the_cookie_is_httponly_and_samesite_strict(sign_in: SignIn, staff: Staff) -> None:
    client = sign_in(staff.officer)
    header = client.get("/console/board").headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header and "path=/console" in header


def test_a_coordinator_may_not_see_the_board(
    sign_in: SignIn, sessions: sessionmaker[Session], directory: Directory
) -> None:
    from registry.models import Group, GroupKind

    authority = directory.authorities["kiryat-tamar"]
    with sessions() as session:
        group = Group(
            authority_id=authority.id,
            name="Scouts",
            kind=GroupKind.YOUTH_MOVEMENT,
            join_code="scouts-kt",
        )
        session.add(group)
        session.flush()
        from registry.phones import normalise_phone
        from registry.staff import add_staff

        member = add_staff(
            session,
            name="Amit",
            phone=normalise_phone("052-555-2000", region="IL"),
            authority=authority,
            role=StaffRole.COORDINATOR,
            groups=[group],
            actor="test",
        )
        session.commit()
        session.expunge_all()
    client = sign_in(member)
    assert client.get("/console/board").status_code == 403
    assert client.get("/console/lists").status_code == 403
    assert client.get("/console/queue").status_code == 200
    with sessions() as session:
        refused = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "staff.refused")
        ).all()
    assert refused


def test_the_csv_has_a_bom_and_neutralised_formulas(
    sign_in: SignIn, staff: Staff, drill: dict[str, int]
) -> None:
    client = sign_in(staff.officer)
    answer = client.get(f"/console/lists.csv?campaign={drill['campaign']}&kind=unreached")
    assert answer.status_code == 200
    text = answer.content.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0][:3] == ["שם", "טלפון", "כתובת"]
    names = [row[0] for row in rows[1:]]
    assert '\'=HYPERLINK("http://x.example","y")' in names
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    phones = [row[1] for row in rows[1:]]
    # A phone starts with "+": kept as text (a spreadsheet shows +972..., never computes it).
    assert "'+972501000001" in phones and "'+972501000002" in phones
