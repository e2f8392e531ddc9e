"""Communities: groups, adult coordinators, members, the list of those who belong to none, and
the lists of groups and members imported row by row with errors in the officer's language."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from registry import groups
from registry.community_lists import import_community_list
from registry.errors import RegistryError
from registry.importer import ListUnreadable, Outcome
from registry.models import (
    Authority,
    GroupMember,
    GroupZone,
    Person,
    PersonStatus,
    PhoneKind,
    Source,
    Zone,
)
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import CoordinatedGroup, StaffMember, StaffRole, add_staff

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def zone(session: Session, authority: Authority, code: str) -> Zone:
    return session.scalars(
        select(Zone).where(Zone.authority_id == authority.id, Zone.code == code)
    ).one()


def person(
    session: Session,
    authority: Authority,
    phone: str,
    *,
    name: str = "Dana",
    zone_code: str = "kt-north",
    born: int | None = 1980,
) -> Person:
    p = Person(
        authority_id=authority.id,
        zone_id=zone(session, authority, zone_code).id,
        name=name,
        phone=normalise_phone(phone, region="IL").e164,
        phone_kind=PhoneKind.MOBILE,
        birth_year=born,
        source=Source.IMPORT,
        is_volunteer=True,
    )
    session.add(p)
    session.flush()
    return p


def test_a_group_with_zones_a_coordinator_and_members(
    session: Session, authority: Authority, directory: Directory
) -> None:
    north, center = zone(session, authority, "kt-north"), zone(session, authority, "kt-center")
    group, created = groups.save_group(
        session,
        authority=authority,
        name="  Scouts   North ",
        kind=groups.GroupKind.YOUTH_MOVEMENT,
        zones=[north, center],
        code="Scouts-N",
        actor="test",
        now=NOW,
    )
    assert created and group.name == "Scouts North" and group.zone_id == north.id
    assert {z.code for z in groups.zones_of(session, group)} == {"kt-north", "kt-center"}
    # Codes are found whatever their case: people type them in lower case by SMS.
    assert groups.find_group(session, "scouts-n") is group
    assert groups.find_group(session, "no such") is None

    head = groups.add_coordinator(
        session,
        group=group,
        name="Amit",
        phone=normalise_phone("052-555-7000", region="IL"),
        birth_year=1985,
        actor="test",
        now=NOW,
    )
    assert head.source == Source.STAFF and head.birth_year == 1985
    assert session.get(GroupMember, (group.id, head.id)).is_coordinator  # type: ignore[union-attr]
    staff = session.scalars(select(StaffMember).where(StaffMember.phone == head.phone)).one()
    assert staff.role == StaffRole.COORDINATOR
    assert session.get(CoordinatedGroup, (staff.id, group.id)) is not None

    youth = person(session, authority, "052-555-7001", name="Noa", born=2011)
    assert groups.add_member(session, group=group, person=youth, actor="test", now=NOW)
    assert not groups.add_member(session, group=group, person=youth, actor="test", now=NOW)
    rows = groups.members(session, group, year=2026)
    assert [(m.name, m.coordinator, m.minor) for m in rows] == [
        ("Amit", True, False),
        ("Noa", False, True),
    ]

    # Saved again with one zone: the other is no longer served.
    groups.save_group(
        session,
        authority=authority,
        name="Scouts North",
        kind=groups.GroupKind.YOUTH_MOVEMENT,
        zones=[north],
        code="SCOUTS-N",
        actor="test",
    )
    assert set(session.scalars(select(GroupZone.zone_id))) == {north.id}
    summary = groups.list_groups(session, authority=authority, zone=center)
    assert summary == []
    [listed] = groups.list_groups(session, authority=authority, zone=north)
    assert listed.members == 2 and listed.coordinators == ["Amit"]


@pytest.mark.parametrize(
    ("phone", "born", "key"),
    [
        ("08-6512345", 1980, "groups.coordinator_landline"),
        ("052-555-7002", 2012, "groups.coordinator_not_adult"),
        ("052-555-7003", None, "groups.coordinator_not_adult"),
    ],
)
def test_a_coordinator_is_an_adult_with_a_mobile(
    session: Session,
    authority: Authority,
    directory: Directory,
    phone: str,
    born: int | None,
    key: str,
) -> None:
    group, _ = groups.save_group(
        session, authority=authority, name="G", kind=groups.GroupKind.OTHER, actor="test"
    )
    with pytest.raises(RegistryError) as caught:
        groups.add_coordinator(
            session,
            group=group,
            name="X",
            phone=normalise_phone(phone, region="IL"),
            birth_year=born,
            actor="test",
            now=NOW,
        )
    assert caught.value.key == key
    assert session.scalars(select(GroupMember)).all() == []


def test_an_officer_made_coordinator_keeps_their_role(
    session: Session, authority: Authority, directory: Directory
) -> None:
    phone = normalise_phone("052-555-1000", region="IL")
    add_staff(
        session, name="Rina", phone=phone, authority=authority, role=StaffRole.OFFICER, actor="t"
    )
    group, _ = groups.save_group(
        session, authority=authority, name="G", kind=groups.GroupKind.OTHER, actor="test"
    )
    groups.add_coordinator(
        session, group=group, name="Rina", phone=phone, birth_year=1970, actor="t", now=NOW
    )
    staff = session.scalars(select(StaffMember)).one()
    assert staff.role == StaffRole.OFFICER
    assert session.get(CoordinatedGroup, (staff.id, group.id)) is not None


def test_unaffiliated_lists_active_people_in_no_group(
    session: Session, authority: Authority, directory: Directory
) -> None:
    group, _ = groups.save_group(
        session, authority=authority, name="G", kind=groups.GroupKind.OTHER, actor="test"
    )
    member = person(session, authority, "052-555-7101", name="In")
    alone_north = person(session, authority, "052-555-7102", name="Alone N")
    alone_center = person(session, authority, "052-555-7103", name="Alone C", zone_code="kt-center")
    gone = person(session, authority, "052-555-7104", name="Gone")
    gone.status = PersonStatus.OPTED_OUT
    groups.add_member(session, group=group, person=member, actor="test")
    assert {p.id for p in groups.unaffiliated(session, authority=authority)} == {
        alone_north.id,
        alone_center.id,
    }
    north = zone(session, authority, "kt-north")
    assert [p.id for p in groups.unaffiliated(session, authority=authority, zone=north)] == [
        alone_north.id
    ]
    groups.remove_member(session, group=group, person=member, actor="test")
    assert member in groups.unaffiliated(session, authority=authority, zone=north)


def test_a_coordinator_removes_only_members_of_their_own_groups(
    session: Session, authority: Authority, directory: Directory
) -> None:
    mine, _ = groups.save_group(
        session, authority=authority, name="Mine", kind=groups.GroupKind.OTHER, actor="t"
    )
    other, _ = groups.save_group(
        session, authority=authority, name="Other", kind=groups.GroupKind.OTHER, actor="t"
    )
    phone = normalise_phone("052-555-7200", region="IL")
    groups.add_coordinator(
        session, group=mine, name="C", phone=phone, birth_year=1980, actor="t", now=NOW
    )
    staff = session.scalars(select(StaffMember)).one()
    a = person(session, authority, "052-555-7201")
    b = person(session, authority, "052-555-7202")
    groups.add_member(session, group=mine, person=a, actor="t")
    groups.add_member(session, group=other, person=b, actor="t")
    assert [g.name for g in groups.groups_managed(session, staff)] == ["Mine"]
    refused = groups.remove_by_staff(
        session, member=staff, group_id=other.id, person_id=b.id, actor="t", now=NOW
    )
    assert refused is None and session.get(GroupMember, (other.id, b.id)) is not None
    done = groups.remove_by_staff(
        session, member=staff, group_id=mine.id, person_id=a.id, actor="t", now=NOW
    )
    assert done == (mine, a) and session.get(GroupMember, (mine.id, a.id)) is None


GROUPS_CSV = """קוד,שם הקבוצה,סוג,שכונות,רכז,טלפון רכז,שנת לידה רכז
bnei-akiva,בני עקיבא,תנועת נוער,"kt-north, מרכז העיר",דוד,052-5557010,1980
,ועד בית הרצל 5,ועד בית,kt-north,,,
bad code!,X,youth_movement,,,,
young,Y,youth_movement,kt-north,נער,052-5557011,2012
z,Z,spaceship,,,,
w,W,other,atlantis,,,
"""


def test_groups_list_import_reports_every_row_in_the_officers_language(
    session: Session, authority: Authority, directory: Directory
) -> None:
    def run(dry_run: bool = False) -> list[tuple[int, Outcome, list[str]]]:
        report = import_community_list(
            session,
            data=GROUPS_CSV.encode("utf-8-sig"),
            kind="groups",
            authority=authority,
            region="IL",
            actor="test",
            dry_run=dry_run,
            now=NOW,
        )
        return [(r.row, r.outcome, [p.key for p in r.problems]) for r in report.rows]

    assert run() == [
        (2, Outcome.CREATED, []),
        (3, Outcome.CREATED, []),
        (4, Outcome.SKIPPED, ["groups.code_invalid"]),
        (5, Outcome.SKIPPED, ["groups.coordinator_not_adult"]),
        (6, Outcome.SKIPPED, ["community_lists.kind_unknown"]),
        (7, Outcome.SKIPPED, ["community_lists.zone_unknown"]),
    ]
    akiva = groups.find_group(session, "BNEI-AKIVA")
    assert akiva is not None and akiva.kind == groups.GroupKind.YOUTH_MOVEMENT
    assert {z.code for z in groups.zones_of(session, akiva)} == {"kt-north", "kt-center"}
    # The refused coordinator row left nobody behind; the good one made David a coordinator.
    assert [p.name for p in session.scalars(select(Person))] == ["דוד"]
    # Again: the same groups are updated, none is duplicated (the one without a code by name).
    assert [outcome for _, outcome, _ in run()][:2] == [Outcome.UPDATED, Outcome.UPDATED]
    assert len(groups.list_groups(session, authority=authority)) == 2

    report = import_community_list(
        session,
        data=GROUPS_CSV.encode(),
        kind="groups",
        authority=authority,
        region="IL",
        actor="test",
    )
    lines = list(report.problem_lines(Language.HE))
    assert lines[0] == t(
        Language.HE,
        "community_lists.row",
        row=4,
        outcome=t(Language.HE, "community_lists.outcome.skipped"),
        reasons=t(Language.HE, "groups.code_invalid", code="bad code!"),
    )
    assert "שורה 4" in lines[0]


def test_members_list_import_needs_registered_people(
    session: Session, authority: Authority, directory: Directory
) -> None:
    group, _ = groups.save_group(
        session, authority=authority, name="G", kind=groups.GroupKind.OTHER, code="grp", actor="t"
    )
    known = person(session, authority, "052-555-7301")
    data = (
        b"code,phone,role,name,birth year\n"
        b"GRP,052-555-7301,,,\n"
        b"grp,052-555-7399,,,\n"
        b"nope,052-555-7301,,,\n"
        b"grp,not a phone,,,\n"
        b"grp,052-555-7302,coordinator,Avi,1975\n"
    )
    report = import_community_list(
        session, data=data, kind="members", authority=authority, region="IL", actor="t", now=NOW
    )
    assert [(r.outcome, [p.key for p in r.problems]) for r in report.rows] == [
        (Outcome.CREATED, []),
        (Outcome.SKIPPED, ["community_lists.member_unknown"]),
        (Outcome.SKIPPED, ["community_lists.group_unknown"]),
        (Outcome.SKIPPED, ["community_lists.phone_invalid"]),
        (Outcome.UPDATED, []),
    ]
    rows = groups.members(session, group, year=2026)
    assert {(m.name, m.coordinator) for m in rows} == {("Dana", False), ("Avi", True)}
    assert known.id in {m.person_id for m in rows}


def test_a_list_without_the_required_columns_is_refused_whole(
    session: Session, authority: Authority, directory: Directory
) -> None:
    with pytest.raises(ListUnreadable) as caught:
        import_community_list(
            session,
            data=b"name,colour\nA,red\n",
            kind="groups",
            authority=authority,
            region="IL",
            actor="t",
        )
    assert caught.value.key == "community_lists.missing_columns"
    assert "kind" in caught.value.render(Language.EN)
