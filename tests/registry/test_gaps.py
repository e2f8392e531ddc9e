"""The map of needs, answers and gaps per zone, checked against what the town and the stored
assignment hold, with the gaps' true causes in the officer's language."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.languages import Language
from config.profile import Profile
from fakes.town import generate_town, load_town
from registry import groups
from registry.assignment.roles import Unfilled
from registry.assignment.store import assign_authority
from registry.assignment.tiers import Cause
from registry.gaps import needs_answers_gaps
from registry.models import (
    NEED_FLAGS,
    AssignmentStatus,
    BuddyAssignment,
    GroupKind,
    Person,
    RoleAssignment,
    Zone,
)
from registry.profile_sync import Directory
from registry.resources import ResourceKind, ResourceState, save_resource

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def test_needs_answers_and_gaps_per_zone(
    session: Session, directory: Directory, profile: Profile
) -> None:
    town = generate_town(profile, size=600, seed=5, year=NOW.year)
    load_town(session, town, directory)
    authority = directory.authorities["kiryat-tamar"]
    assign_authority(session, authority=authority, profile=profile, actor="test", now=NOW)
    # Some volunteers confirm their buddy.
    offered = session.scalars(
        select(BuddyAssignment).where(BuddyAssignment.rank == 1).order_by(BuddyAssignment.id)
    ).all()
    assert offered, "the town must give some buddies"
    for buddy in offered[::3]:
        buddy.status = AssignmentStatus.CONFIRMED
    zones = {
        z.code: z for z in session.scalars(select(Zone).where(Zone.authority_id == authority.id))
    }
    north = zones["kt-north"]
    save_resource(
        session,
        authority=authority,
        zone=north,
        code="gen-1",
        kind=ResourceKind.GENERATOR,
        name="Generator",
        actor="t",
    )
    save_resource(
        session,
        authority=authority,
        zone=north,
        code="gen-2",
        kind=ResourceKind.GENERATOR,
        name="Generator 2",
        state=ResourceState.OUT_OF_SERVICE,
        actor="t",
    )
    groups.save_group(
        session,
        authority=authority,
        name="Scouts North",
        kind=GroupKind.YOUTH_MOVEMENT,
        zones=[north],
        actor="t",
    )
    session.flush()

    result = needs_answers_gaps(
        session, authority=authority, profile=profile, now=NOW, language=Language.HE
    )
    by_zone = {z.zone: z for z in result.zones}
    people = town.in_authority("kiryat-tamar")
    residents = Counter(p.zone for p in people if p.needs_help)
    for code, row in by_zone.items():
        if code is None:
            continue
        assert row.residents == residents.get(code, 0), code
        assert row.buddy_confirmed + row.buddy_offered + row.no_buddy == row.residents
        expected_needs = Counter(
            flag
            for p in people
            if p.needs_help and p.zone == code and p.needs is not None
            for flag in NEED_FLAGS
            if getattr(p.needs, flag)
        )
        assert row.needs == dict(expected_needs), code

    # The buddies as stored: confirmed and offered, counted by the resident's zone.
    stored = session.execute(
        select(Zone.code, BuddyAssignment.status)
        .join(Person, Person.id == BuddyAssignment.resident_id)
        .join(Zone, Zone.id == Person.zone_id)
        .where(BuddyAssignment.rank == 1, Person.authority_id == authority.id)
    ).all()
    confirmed = Counter(code for code, s in stored if s == AssignmentStatus.CONFIRMED)
    proposed = Counter(code for code, s in stored if s == AssignmentStatus.PROPOSED)
    for code, row in by_zone.items():
        if code is not None:
            assert (row.buddy_confirmed, row.buddy_offered) == (confirmed[code], proposed[code])
    roles = session.scalars(
        select(RoleAssignment).where(RoleAssignment.authority_id == authority.id)
    ).all()
    assert sum(sum(z.roles_filled.values()) for z in result.zones) == len(roles)

    assert by_zone["kt-north"].resources == {"generator": {"total": 2, "available": 1}}
    assert "Scouts North" in by_zone["kt-north"].groups
    assert "Scouts North" not in by_zone["kt-center"].groups

    # Every gap names its true cause, in Hebrew.
    gaps = [gap for zone in result.zones for gap in zone.gaps]
    assert gaps
    causes = {c.value for c in Cause} | {u.value for u in Unfilled}
    assert {gap.cause for gap in gaps} <= causes
    assert {gap.kind for gap in gaps} <= {"buddy", "role"}
    for zone in result.zones:
        for gap in zone.gaps:
            assert any("\u0590" <= ch <= "\u05ff" for ch in gap.text), gap.text
            if zone.zone is not None:  # each line names its zone, as the officer reads it
                assert gap.text.startswith(zone.name), (zone.name, gap.text)

    one = needs_answers_gaps(session, authority=authority, profile=profile, now=NOW, zone=north)
    assert [z.zone for z in one.zones] == ["kt-north"]
    assert one.zones[0].residents == by_zone["kt-north"].residents
    assert one.as_json()["zones"][0]["zone"] == "kt-north"
