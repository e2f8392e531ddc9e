"""The console's registry pages over HTTP: people search and a person page (needs reads
audited), groups, resources, the needs / answers / gaps map and the drill report, each scoped to
the officer's authority, refused to coordinators, in the reader's language."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.models import Answer, CampaignRecipient
from dispatch.reports import close_campaign
from registry.assignment.models import AssignmentOffer, OfferState
from registry.groups import add_member, save_group
from registry.models import (
    AssignmentStatus,
    AuditEntry,
    BuddyAssignment,
    Channel,
    GroupKind,
    GroupMember,
    Person,
    PhoneKind,
    ResidentNeeds,
    RoleAssignment,
    Source,
)
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.resources import ResourceKind, ResourceState, save_resource
from registry.staff import StaffRole, add_staff
from tests.hosen.console.conftest import START, Clock, SignIn, Staff, TestClient, csrf_of

pytestmark = pytest.mark.db

PAGES = ["/console/people", "/console/groups", "/console/resources", "/console/gaps"]


def _person(authority_id: int, zone_id: int, name: str, phone: str, **more: object) -> Person:
    return Person(
        authority_id=authority_id,
        zone_id=zone_id,
        name=name,
        phone=phone,
        phone_kind=PhoneKind.MOBILE,
        channel=Channel.SMS,
        source=Source.STAFF,
        **more,
    )


@pytest.fixture
def town(sessions: sessionmaker[Session], directory: Directory) -> dict[str, int]:
    """Kiryat Tamar: a resident who lives alone and uses a wheelchair, her buddy (offered, no
    answer yet) who coordinates the scouts, a generator; Emek Tamar: one resident of its own."""
    kt = directory.authorities["kiryat-tamar"]
    et = directory.authorities["emek-tamar"]
    north = directory.zones[(kt.id, "kt-north")]
    center = directory.zones[(kt.id, "kt-center")]
    with sessions() as session:
        miriam = _person(
            kt.id,
            north.id,
            "Miriam Cohen",
            "+972501000001",
            needs_help=True,
            address="Hadekel 1",
            needs=ResidentNeeds(lives_alone=True, mobility=True),
        )
        dana = _person(kt.id, north.id, "Dana Shalev", "+972501000002", is_volunteer=True)
        avi = _person(kt.id, center.id, "Avi Ben", "+972501000003", needs_help=True)
        omar = _person(
            et.id,
            directory.zones[(et.id, "et-ein-tamar")].id,
            "Omar Haddad",
            "+972501000009",
            needs_help=True,
        )
        session.add_all([miriam, dana, avi, omar])
        session.flush()
        buddy = BuddyAssignment(
            resident_id=miriam.id,
            volunteer_id=dana.id,
            rank=1,
            status=AssignmentStatus.PROPOSED,
            distance_m=240,
        )
        session.add(buddy)
        session.flush()
        session.add(
            AssignmentOffer(
                kind="buddy",
                assignment_id=buddy.id,
                volunteer_id=dana.id,
                state=OfferState.OFFERED.value,
            )
        )
        session.add(
            RoleAssignment(
                person_id=dana.id,
                authority_id=kt.id,
                role_code="head",
                status=AssignmentStatus.CONFIRMED,
            )
        )
        group, _ = save_group(
            session,
            authority=kt,
            name="Scouts Tamar",
            kind=GroupKind.YOUTH_MOVEMENT,
            zones=[north],
            code="scouts-kt",
            actor="test",
            now=START,
        )
        add_member(session, group=group, person=dana, actor="test", now=START)
        session.get_one(GroupMember, (group.id, dana.id)).is_coordinator = True
        save_resource(
            session,
            authority=kt,
            zone=north,
            code="gen-1",
            kind=ResourceKind.GENERATOR,
            name="School generator",
            capacity=12,
            state=ResourceState.IN_USE,
            actor="test",
            now=START,
        )
        session.commit()
        return {
            "miriam": miriam.id,
            "dana": dana.id,
            "avi": avi.id,
            "omar": omar.id,
            "group": group.id,
            "north": north.id,
        }


def _rows(html: str) -> list[str]:
    return re.findall(r'<a href="/console/people/\d+">([^<]+)</a>', html)


def test_people_search_by_name_phone_and_zone_within_the_authority(
    sign_in: SignIn, staff: Staff, town: dict[str, int]
) -> None:
    client = sign_in(staff.officer)
    everyone = client.get("/console/people")
    assert everyone.status_code == 200
    assert sorted(_rows(everyone.text)) == ["Avi Ben", "Dana Shalev", "Miriam Cohen"]
    assert _rows(client.get("/console/people?name=miri").text) == ["Miriam Cohen"]
    assert _rows(client.get("/console/people?phone=050-100-0003").text) == ["Avi Ben"]
    assert _rows(client.get("/console/people?phone=0002").text) == ["Dana Shalev"]
    by_zone = client.get(f"/console/people?zone={town['north']}").text
    assert sorted(_rows(by_zone)) == ["Dana Shalev", "Miriam Cohen"]
    # Omar is Emek Tamar's: not found by name or phone here.
    assert _rows(client.get("/console/people?name=omar").text) == []
    assert _rows(client.get("/console/people?phone=0501000009").text) == []


def test_people_search_is_paged(
    sign_in: SignIn, staff: Staff, sessions: sessionmaker[Session], directory: Directory
) -> None:
    kt = directory.authorities["kiryat-tamar"]
    zone = directory.zones[(kt.id, "kt-north")]
    with sessions() as session:
        session.add_all(
            _person(kt.id, zone.id, f"Resident {n:03}", f"+9725020{n:05}") for n in range(60)
        )
        session.commit()
    client = sign_in(staff.officer)
    first = client.get("/console/people?name=resident")
    assert len(_rows(first.text)) == 50
    assert "Resident 000" in first.text and "Resident 050" not in first.text
    second = client.get("/console/people?name=resident&page=2")
    assert _rows(second.text) == [f"Resident {n:03}" for n in range(50, 60)]


def test_the_person_page_shows_buddies_offers_groups_and_audits_the_needs_read(
    sign_in: SignIn, staff: Staff, town: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    client = sign_in(staff.officer)
    page = client.get(f"/console/people/{town['miriam']}")
    assert page.status_code == 200
    assert '<html lang="he" dir="rtl">' in page.text
    html = page.text
    assert "Dana Shalev" in html
    assert "הצעה: נשלחה, אין תשובה עדיין" in html  # the buddy's offer: sent, no answer yet
    assert "240" in html
    assert "גר/ה לבד" in html and "קושי בהליכה" in html  # lives alone, walks with difficulty
    with sessions() as session:
        reads = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "needs.read", AuditEntry.person_id == town["miriam"]
            )
        ).all()
    assert len(reads) == 1 and reads[0].detail["purpose"] == "console.person"
    assert reads[0].actor == f"console:staff:{staff.officer.id}"
    volunteer = client.get(f"/console/people/{town['dana']}").text
    assert "Scouts Tamar" in volunteer and "רכז/ת" in volunteer  # coordinator of the scouts
    assert "Miriam Cohen" in volunteer  # whom she checks on
    assert "ראש מטה החירום · כלל היישוב · מאושר" in volunteer  # her role, by its name
    with sessions() as session:
        # A volunteer's page reads no needs.
        assert not session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "needs.read", AuditEntry.person_id == town["dana"]
            )
        ).all()


def test_another_authoritys_officer_sees_none_of_it(
    sign_in: SignIn,
    staff: Staff,
    town: dict[str, int],
    sessions: sessionmaker[Session],
    directory: Directory,
) -> None:
    other = sign_in(staff.other_officer)
    assert other.get(f"/console/people/{town['miriam']}").status_code == 404
    assert _rows(other.get("/console/people").text) == ["Omar Haddad"]
    assert "Scouts Tamar" not in other.get("/console/groups").text
    assert "School generator" not in other.get("/console/resources").text
    mine = str(directory.authorities["kiryat-tamar"].id)
    assert other.get(f"/console/people?authority={mine}").status_code == 404
    with sessions() as session:
        assert not session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "needs.read", AuditEntry.person_id == town["miriam"]
            )
        ).all()


def test_coordinators_are_refused_every_registry_page(
    sign_in: SignIn,
    town: dict[str, int],
    sessions: sessionmaker[Session],
    directory: Directory,
) -> None:
    with sessions() as session:
        from registry.models import Group

        member = add_staff(
            session,
            name="Amit",
            phone=normalise_phone("052-555-2000", region="IL"),
            authority=directory.authorities["kiryat-tamar"],
            role=StaffRole.COORDINATOR,
            groups=[session.get_one(Group, town["group"])],
            actor="test",
        )
        session.commit()
        session.expunge_all()
    client = sign_in(member)
    for page in [*PAGES, f"/console/people/{town['miriam']}"]:
        assert client.get(page).status_code == 403, page
    with sessions() as session:
        assert not session.scalars(
            select(AuditEntry).where(AuditEntry.action == "needs.read")
        ).all()
        refused = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "staff.refused")
        ).all()
    assert len(refused) >= len(PAGES)


def test_groups_and_resources_pages(sign_in: SignIn, staff: Staff, town: dict[str, int]) -> None:
    client = sign_in(staff.officer)
    groups = client.get("/console/groups").text
    row = re.search(r"<tr>\s*<td>Scouts Tamar</td>(.*?)</tr>", groups, re.S)
    assert row, groups
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    assert cells[0] == "תנועת נוער"  # the kind, in Hebrew
    assert cells[2] == "1" and cells[3] == "Dana Shalev"
    client.post(
        "/console/language",
        data={"csrf": csrf_of(groups), "lang": "ar", "back": "/console/resources"},
    )
    resources = client.get("/console/resources").text
    assert '<html lang="ar" dir="rtl">' in resources
    assert "School generator" in resources
    assert "قيد الاستخدام" in resources  # in use, in Arabic


def test_the_gaps_map_is_kept_for_five_minutes_and_refreshed_on_demand(
    sign_in: SignIn, staff: Staff, town: dict[str, int], clock: Clock
) -> None:
    client = sign_in(staff.officer)
    client.post(
        "/console/language",
        data={"csrf": csrf_of(client.get("/console/people").text), "lang": "en", "back": "/"},
    )

    def computed(html: str) -> str:
        found = re.search(r"Computed at ([^;]+);", html)
        assert found, html
        return found.group(1)

    first = client.get("/console/gaps")
    assert first.status_code == 200
    assert "Needs: 1 residents who may need help" in first.text  # kt-north: Miriam
    assert "Generator 0/1 available" in first.text
    assert "Scouts Tamar" in first.text
    at = computed(first.text)
    clock.move(minutes=2)
    assert computed(client.get("/console/gaps").text) == at  # kept
    refreshed = client.post("/console/gaps", data={"csrf": csrf_of(first.text), "authority": ""})
    assert refreshed.status_code == 200 and computed(refreshed.text) != at
    again = computed(refreshed.text)
    clock.move(minutes=6)
    assert computed(client.get("/console/gaps").text) != again  # stale: computed again
    assert client.post("/console/gaps", data={"authority": ""}).status_code == 403  # no CSRF


def test_the_drill_report_is_a_console_page_in_the_officers_language(
    sign_in: SignIn,
    staff: Staff,
    town: dict[str, int],
    sessions: sessionmaker[Session],
    directory: Directory,
) -> None:
    kt = directory.authorities["kiryat-tamar"]
    with sessions() as session:
        campaign = start_drill_checkin(
            session,
            authority=kt,
            audience=Audience(residents_only=True),
            started_by="test",
            now=START,
        )
        recipient = session.scalars(
            select(CampaignRecipient).where(CampaignRecipient.person_id == town["miriam"])
        ).one()
        recipient.answer, recipient.answered_at = Answer.OK, START
        session.flush()
        running = start_drill_checkin(
            session,
            authority=kt,
            audience=Audience(residents_only=True),
            started_by="test",
            now=START,
        )
        close_campaign(session, campaign=campaign, now=START)
        session.commit()
        campaign_id, running_id = campaign.id, running.id
    client = sign_in(staff.officer)
    board = client.get(f"/console/board?campaign={running_id}").text
    assert f'href="/console/report/{campaign_id}"' in board  # the closed one links its report
    assert f'href="/console/report/{running_id}"' not in board
    report = client.get(f"/console/report/{campaign_id}")
    assert report.status_code == 200
    assert '<html lang="he" dir="rtl">' in report.text
    assert 'class="report"' in report.text and "Avi Ben" in report.text  # unreached
    assert 'style="' not in report.text  # the console's CSP allows no inline style
    client.post(
        "/console/language",
        data={"csrf": csrf_of(report.text), "lang": "ar", "back": "/"},
    )
    arabic = client.get(f"/console/report/{campaign_id}").text
    assert '<html lang="ar" dir="rtl">' in arabic
    other: TestClient = sign_in(staff.other_officer)
    assert other.get(f"/console/report/{campaign_id}").status_code == 404
