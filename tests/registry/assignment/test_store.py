"""The engine against real databases: bulk load, writing only changes, declines, the CLI."""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config.languages import Language
from config.profile import DEFAULT_PROFILE_PATH, Profile, load_profile
from config.settings import Settings
from hosen.cli import build_parser
from hosen.context import Context, build_context
from registry.assignment.models import AssignmentChange, AssignmentRun
from registry.assignment.roles import RoleRules, not_eligible, seat_cost
from registry.assignment.store import (
    NotDeclinable,
    assign_authority,
    decline_buddy,
    decline_role,
    load_registry,
)
from registry.db import unit_of_work
from registry.models import (
    AssignmentStatus,
    AuditEntry,
    Authority,
    BuddyAssignment,
    ConsentGiver,
    ConsentKind,
    Group,
    GroupKind,
    GroupMember,
    Person,
    RoleAssignment,
    Source,
)
from registry.people import (
    NeedsDetails,
    PersonDetails,
    VolunteerDetails,
    record_consent,
    register_person,
)
from registry.profile_sync import Directory

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CENTRE = (31.6100, 34.7700)  # kt-center


def catalogue(profile: Profile, **seats: int) -> Profile:
    """The sample profile with only these roles (and these seats per zone)."""
    profile = load_profile(DEFAULT_PROFILE_PATH)
    roles = [
        r.model_copy(update={"quota_per_zone": seats[r.code]})
        for r in profile.roles
        if r.code in seats
    ]
    return profile.model_copy(update={"roles": roles})


@pytest.fixture
def profile(profile: Profile) -> Profile:
    """One health seat per zone only, so that a small town keeps its volunteers for buddies."""
    return catalogue(profile, health=1)


def near(north_m: float, east_m: float = 0.0) -> tuple[float, float]:
    lat = CENTRE[0] + north_m / 111_195
    return lat, CENTRE[1] + east_m / (111_195 * math.cos(math.radians(lat)))


def add(
    session: Session,
    authority: Authority,
    directory: Directory,
    ref: str,
    *,
    north: float = 0,
    east: float = 0,
    language: Language = Language.HE,
    born: int = 1980,
    volunteer: VolunteerDetails | None = None,
    needs: NeedsDetails | None = None,
    zone: str = "kt-center",
) -> Person:
    lat, lon = near(north, east)
    return register_person(
        session,
        authority=authority,
        details=PersonDetails(
            name=f"Person {ref}", language=language, birth_year=born,
            zone=directory.zone(authority, zone), lat=lat, lon=lon, external_ref=ref,
            volunteer=volunteer, needs=needs,
        ),
        source=Source.STAFF,
        actor="test",
        now=NOW,
    ).person  # fmt: skip


def small_town(session: Session, authority: Authority, directory: Directory) -> dict[str, Person]:
    people = {
        "r1": add(session, authority, directory, "r1", north=100, needs=NeedsDetails(bedridden=True)),
        "r2": add(session, authority, directory, "r2", north=200, needs=NeedsDetails(lives_alone=True)),
        "r-ar": add(session, authority, directory, "r-ar", north=150, language=Language.AR, needs=NeedsDetails()),
        "v1": add(session, authority, directory, "v1", north=120, volunteer=VolunteerDetails(checkin_capacity=2)),
        "v2": add(session, authority, directory, "v2", north=300, volunteer=VolunteerDetails(checkin_capacity=2)),
        "medic": add(
            session, authority, directory, "medic", north=50,
            volunteer=VolunteerDetails(skills=("first_aid",), checkin_capacity=2),
        ),
        "teen": add(session, authority, directory, "teen", north=60, born=2010, volunteer=VolunteerDetails()),
    }  # fmt: skip
    session.commit()
    return people


def test_assign_writes_changes_and_a_rerun_writes_none(
    sessions: sessionmaker[Session], directory: Directory, authority: Authority, profile: Profile
) -> None:
    with unit_of_work(sessions) as session:
        people = small_town(session, authority, directory)
    with unit_of_work(sessions) as session:
        result = assign_authority(
            session, authority=authority, profile=profile, actor="test", now=NOW
        )
    # The medic fills a health seat (their one job); v1 and v2 are the buddies.
    holders = {h.person_id: h.role_code for h in result.roles.holders}
    assert holders == {people["medic"].id: "health"}
    pairs = {(b.resident_id, b.volunteer_id, b.rank) for b in result.buddies.pairs}
    r1, r2, v1, v2 = (people[k].id for k in ("r1", "r2", "v1", "v2"))
    assert {(r, v) for r, v, _ in pairs} == {(r1, v1), (r1, v2), (r2, v2), (r2, v1)}
    assert result.buddies.unassigned == {people["r-ar"].id: "no_shared_language"}
    assert people["teen"].id not in {v for _, v, _ in pairs}

    with unit_of_work(sessions) as session:
        rows = session.scalars(select(BuddyAssignment)).all()
        assert {(b.resident_id, b.volunteer_id, b.rank) for b in rows} == pairs
        assert all(b.status == AssignmentStatus.PROPOSED for b in rows)
        assert session.scalar(select(func.count()).select_from(RoleAssignment)) == 1
        changes = session.scalars(select(AssignmentChange)).all()
        assert len(changes) == 5 and all(c.action == "new" for c in changes)
        assert all(c.notified_at is None for c in changes)
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "assign.run")).one()
        assert entry.detail["buddy_new"] == 4 and entry.detail["role_new"] == 1

    with unit_of_work(sessions) as session:
        again = assign_authority(
            session, authority=authority, profile=profile, actor="test", now=NOW
        )
    assert again.changes == []
    with unit_of_work(sessions) as session:
        assert session.scalar(select(func.count()).select_from(BuddyAssignment)) == 4
        assert session.scalar(select(func.count()).select_from(AssignmentRun)) == 2


def test_dry_run_writes_nothing(
    sessions: sessionmaker[Session], directory: Directory, authority: Authority, profile: Profile
) -> None:
    with unit_of_work(sessions) as session:
        small_town(session, authority, directory)
    with unit_of_work(sessions) as session:
        result = assign_authority(
            session, authority=authority, profile=profile, actor="test", now=NOW, dry_run=True
        )
    assert result.buddies.coverage.covered == 2 and result.run_id is None
    with unit_of_work(sessions) as session:
        assert session.scalar(select(func.count()).select_from(BuddyAssignment)) == 0
        assert session.scalar(select(func.count()).select_from(AssignmentRun)) == 0


def test_a_new_arabic_speaking_volunteer_covers_the_gap_and_ranks_swap_safely(
    sessions: sessionmaker[Session], directory: Directory, authority: Authority, profile: Profile
) -> None:
    with unit_of_work(sessions) as session:
        people = small_town(session, authority, directory)
    with unit_of_work(sessions) as session:
        assign_authority(session, authority=authority, profile=profile, actor="test", now=NOW)
    with unit_of_work(sessions) as session:
        add(
            session, authority, directory, "v-ar", north=160, language=Language.AR,
            volunteer=VolunteerDetails(checkin_capacity=1),
        )  # fmt: skip
    with unit_of_work(sessions) as session:
        result = assign_authority(
            session, authority=authority, profile=profile, actor="test", now=NOW
        )
    assert result.buddies.unassigned == {}
    assert {c.kind for c in result.buddies.changes} == {"new"}
    assert people["r-ar"].id in {b.resident_id for b in result.buddies.pairs}


def test_declining_a_buddy_finds_someone_else(
    sessions: sessionmaker[Session], directory: Directory, authority: Authority, profile: Profile
) -> None:
    with unit_of_work(sessions) as session:
        people = small_town(session, authority, directory)
        add(session, authority, directory, "v3", north=400, volunteer=VolunteerDetails())
    with unit_of_work(sessions) as session:
        assign_authority(session, authority=authority, profile=profile, actor="test", now=NOW)
    r1 = people["r1"].id
    with unit_of_work(sessions) as session:
        primary = session.scalars(
            select(BuddyAssignment).where(
                BuddyAssignment.resident_id == r1, BuddyAssignment.rank == 1
            )
        ).one()
        backup_volunteer = session.scalars(
            select(BuddyAssignment.volunteer_id).where(
                BuddyAssignment.resident_id == r1, BuddyAssignment.rank == 2
            )
        ).one()
        decliner, primary_id = primary.volunteer_id, primary.id
        result = decline_buddy(
            session, assignment_id=primary_id, profile=profile, actor="bot", reason="busy", now=NOW
        )
    assert {(c.kind, c.action) for c in result.changes} == {("buddy", "rank"), ("buddy", "new")}
    with unit_of_work(sessions) as session:
        active = {
            b.rank: b.volunteer_id
            for b in session.scalars(
                select(BuddyAssignment).where(
                    BuddyAssignment.resident_id == r1,
                    BuddyAssignment.status == AssignmentStatus.PROPOSED,
                )
            )
        }
        assert active[1] == backup_volunteer  # the backup stepped up
        assert active[2] not in (decliner, backup_volunteer)
        declined = session.get(BuddyAssignment, primary_id)
        assert declined is not None and declined.status == AssignmentStatus.DECLINED
        assert session.scalar(select(func.count()).where(AuditEntry.action == "buddy.decline")) == 1
    # The next full run does not propose the declined pair again.
    with unit_of_work(sessions) as session:
        again = assign_authority(
            session, authority=authority, profile=profile, actor="test", now=NOW
        )
    assert (r1, decliner) not in {(b.resident_id, b.volunteer_id) for b in again.buddies.pairs}
    with unit_of_work(sessions) as session, pytest.raises(NotDeclinable):
        decline_buddy(session, assignment_id=primary_id, profile=profile, actor="bot", now=NOW)


def test_declining_a_role_offers_the_seat_to_someone_else(
    sessions: sessionmaker[Session], directory: Directory, authority: Authority, profile: Profile
) -> None:
    with unit_of_work(sessions) as session:
        people = small_town(session, authority, directory)
        other = add(
            session, authority, directory, "medic2", north=900,
            volunteer=VolunteerDetails(skills=("first_aid",)),
        )  # fmt: skip
    with unit_of_work(sessions) as session:
        first = assign_authority(
            session, authority=authority, profile=profile, actor="test", now=NOW
        )
    # One health seat in the centre: the nearer medic has it.
    assert {h.person_id for h in first.roles.holders} == {people["medic"].id}

    def decline(person_id: int) -> list[int]:
        with unit_of_work(sessions) as session:
            row = session.scalars(
                select(RoleAssignment).where(
                    RoleAssignment.person_id == person_id,
                    RoleAssignment.status == AssignmentStatus.PROPOSED,
                )
            ).one()
            result = decline_role(
                session, assignment_id=row.id, profile=profile, actor="bot", now=NOW
            )
        return [h.person_id for h in result.roles.holders]

    assert decline(people["medic"].id) == [other.id]
    # Nobody else has first aid: the seat stays open.
    assert decline(other.id) == []
    with unit_of_work(sessions) as session:
        again = assign_authority(
            session, authority=authority, profile=profile, actor="test", now=NOW
        )
    assert again.roles.holders == []
    # The true cause: both volunteers with first aid declined the role.
    assert [
        s.reason.value for s in again.roles.open_seats if s.quota.zone_id == people["medic"].zone_id
    ] == ["declined"]


@pytest.mark.parametrize("seed", range(2))
def test_a_declined_seat_goes_to_whom_the_whole_town_would_give_it(
    sessions: sessionmaker[Session], directory: Directory, authority: Authority, seed: int
) -> None:
    """The re-plan reads rings of the seat's cost, not the town: for every kind of seat (a
    shelter's, a zone's, the town's), whoever it picks costs what the best volunteer of the whole
    town would (every free volunteer who may take it and has not declined it, by the plan's own
    ``seat_cost``): walks from a few metres to beyond the reach, minors, adults with and without
    buddies, people without coordinates."""
    rng = random.Random(seed)
    sample = load_profile(DEFAULT_PROFILE_PATH)
    seats = {"shelter_manager": {}, "youth_team": {"quota_per_zone": 1}, "head": {}}
    profile = sample.model_copy(
        update={
            "roles": [r.model_copy(update=seats[r.code]) for r in sample.roles if r.code in seats]
        }
    )
    zones = ("kt-center", "kt-vatika", "kt-rimonim")
    with unit_of_work(sessions) as session:
        group = Group(
            authority_id=authority.id, kind=GroupKind.YOUTH_MOVEMENT, name="Scouts",
            join_code=f"scouts-{seed}",
        )  # fmt: skip
        session.add(group)
        session.flush()
        for i in range(36):
            born = rng.choice((1970, 1985, 1999, 2009, 2010))
            person = add(
                session, authority, directory, f"v{i}", north=rng.uniform(-2500, 2500),
                east=rng.uniform(-2500, 2500), born=born, zone=rng.choice(zones),
                volunteer=VolunteerDetails(checkin_capacity=rng.choice((1, 2))),
            )  # fmt: skip
            if i % 7 == 3:
                person.lat = person.lon = None  # matched by zone alone
            if born < 2000 or rng.random() < 0.7:
                session.add(GroupMember(group_id=group.id, person_id=person.id, joined_at=NOW))
            if born > 2000 and rng.random() < 0.7:
                record_consent(
                    session, person=person, kind=ConsentKind.GUARDIAN, version="1",
                    language=Language.HE, text="guardian consent", channel=Source.STAFF,
                    given_by=ConsentGiver.GUARDIAN, actor="t", guardian_name="Parent", now=NOW,
                )  # fmt: skip
        for i in range(14):
            add(
                session, authority, directory, f"r{i}", north=rng.uniform(-2000, 2000),
                east=rng.uniform(-2000, 2000), zone=rng.choice(zones),
                needs=NeedsDetails(lives_alone=True),
            )  # fmt: skip
    with unit_of_work(sessions) as session:
        first = assign_authority(
            session, authority=authority, profile=profile, actor="test", now=NOW
        )
    assert first.buddies.pairs  # some volunteers check on residents: they cost more
    rules = RoleRules(
        year=NOW.year, reach_m=profile.walking_distance_m, keep_bonus_m=profile.walking_distance_m
    )
    kinds: set[str] = set()
    for holder in first.roles.holders:
        with sessions() as session:
            row = session.scalars(
                select(RoleAssignment).where(
                    RoleAssignment.person_id == holder.person_id,
                    RoleAssignment.status == AssignmentStatus.PROPOSED,
                )
            ).one()
            town = load_registry(session, authority=authority, profile=profile, now=NOW)
            quota = next(q for q in town.quotas if q.key == holder.key)
            holding = {h.person_id for h in town.roles}
            best = sorted(
                seat_cost(v, quota, rules)
                for v in town.role_volunteers
                if v.id not in holding
                and (v.id, quota.role_code) not in town.declined_roles
                and not_eligible(v, quota, year=NOW.year, reach_m=rules.reach_m) is None
            )
            result = decline_role(
                session, assignment_id=row.id, profile=profile, actor="bot", now=NOW
            )
            picked = {v.id: v for v in town.role_volunteers}
            costs = sorted(
                seat_cost(picked[h.person_id], quota, rules) for h in result.roles.holders
            )
            assert costs == best[: len(costs)]
            assert bool(costs) == bool(best)  # someone who may take it is asked
            kinds.add(quota.scope.value)
            session.rollback()
    assert kinds == {"shelter", "zone", "total"}


def test_a_minor_takes_a_youth_role_only_with_a_guardian_and_an_adult_group(
    sessions: sessionmaker[Session], directory: Directory, authority: Authority, profile: Profile
) -> None:
    profile = catalogue(profile, health=1, youth_team=1)
    with unit_of_work(sessions) as session:
        people = small_town(session, authority, directory)
    teen = people["teen"].id
    with unit_of_work(sessions) as session:
        result = assign_authority(
            session, authority=authority, profile=profile, actor="t", now=NOW, dry_run=True
        )
    assert teen not in {h.person_id for h in result.roles.holders}
    with unit_of_work(sessions) as session:
        person = session.get(Person, teen)
        assert person is not None
        record_consent(
            session, person=person, kind=ConsentKind.GUARDIAN, version="1", language=Language.HE,
            text="guardian consent", channel=Source.STAFF, given_by=ConsentGiver.GUARDIAN,
            actor="t", guardian_name="Parent", now=NOW,
        )  # fmt: skip
        group = Group(
            authority_id=authority.id,
            kind=GroupKind.YOUTH_MOVEMENT,
            name="Scouts",
            join_code="scouts-1",
        )
        session.add(group)
        session.flush()
        session.add_all(
            [
                GroupMember(group_id=group.id, person_id=teen, joined_at=NOW),
                GroupMember(group_id=group.id, person_id=people["v2"].id, joined_at=NOW),
            ]
        )
    with unit_of_work(sessions) as session:
        result = assign_authority(session, authority=authority, profile=profile, actor="t", now=NOW)
    roles = {h.person_id: h.role_code for h in result.roles.holders}
    # The teen is preferred to an adult, who stays free for home visits.
    assert roles.get(teen) == "youth_team"
    assert teen not in {b.volunteer_id for b in result.buddies.pairs}


def health_only_context(database_url: str, tmp_path: Path, policy: str = "") -> Context:
    """A CLI context on the sample profile's places with one health seat per zone (and this
    assignment policy; the default policy when empty)."""
    places = DEFAULT_PROFILE_PATH.read_text(encoding="utf-8").split(
        "# ---------------------------------------------------------------- emergency-role catalogue"
    )[0]
    health = (
        '[[roles]]\ncode = "health"\nrequired_skills = ["first_aid"]\nquota_per_zone = 1\n'
        'names = { he = "בריאות", ar = "الصحة", en = "Health", ru = "Здравоохранение", am = "ጤና" }\n'
    )
    (tmp_path / "profile.toml").write_text(places + health + policy, encoding="utf-8")
    settings = Settings(
        database_url=database_url, profile=tmp_path / "profile.toml", _env_file=None
    )  # type: ignore[call-arg]
    return build_context(settings)


def run_cli(ctx: Context, *argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    handler: Callable[[Context, argparse.Namespace], int] = args.handler
    return handler(ctx, args)


def test_cli_prints_coverage_changes_and_gaps(
    sessions: sessionmaker[Session],
    directory: Directory,
    authority: Authority,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    with unit_of_work(sessions) as session:
        small_town(session, authority, directory)
    # The sample profile's places with a one-role catalogue (as the ``profile`` fixture).
    ctx = health_only_context(database_url, tmp_path)

    def hosen(*argv: str) -> int:
        return run_cli(ctx, *argv)

    try:
        assert hosen("assign", "--dry-run") == 0
        table = capsys.readouterr().out
        assert hosen("assign", "--json", "--language", "ar") == 0
        document = json.loads(capsys.readouterr().out)
        assert hosen("assign", "--dry-run", "--json", "--prove-walking") == 0
        proven = json.loads(capsys.readouterr().out)
    finally:
        ctx.engine.dispose()
    assert "2 of 3 residents have a buddy" in table
    assert (
        "City Centre: 1 residents of tier 3 have no buddy: no volunteer within 1500 m speaks "
        "Arabic (1 more volunteers who speak Arabic would cover them)"
    ) in table
    assert "tier 1    buddies (high_risk): 1 of 1 residents have a buddy" in table

    assert document["buddies"]["covered"] == 2
    # A small town always has the proof; --prove-walking asks for it at any size.
    assert "(proven least)" in table
    assert document["buddies"]["walking_proven"] and proven["buddies"]["walking_proven"]
    assert proven["buddies"]["distance_m"] == document["buddies"]["distance_m"]
    assert document["changes"]["buddy"]["new"] == 4
    assert len(document["changes"]["to_confirm"]) == 5
    assert any("العربية" in gap["text"] for gap in document["gaps"])


def test_five_volunteers_next_to_nineteen_residents_give_buddies_not_a_head(
    sessions: sessionmaker[Session], directory: Directory, authority: Authority
) -> None:
    """The imported case: with the sample policy (life safety first) the volunteers check on
    residents; the head of the emergency team is not a 36-year-old from a volunteer list."""
    sample = load_profile(DEFAULT_PROFILE_PATH)
    with unit_of_work(sessions) as session:
        for i in range(19):
            needs = NeedsDetails(bedridden=True) if i < 4 else NeedsDetails(lives_alone=True)
            add(session, authority, directory, f"r{i}", north=20 * i, born=1940, needs=needs)
        for j, born in enumerate((1990, 1975, 1968, 1982, 1959)):
            add(session, authority, directory, f"v{j}", north=40 * j, born=born,
                volunteer=VolunteerDetails())  # fmt: skip
    with unit_of_work(sessions) as session:
        result = assign_authority(
            session, authority=authority, profile=sample, actor="test", now=NOW
        )
    held = {h.role_code for h in result.roles.holders}
    assert "head" not in held
    buddies = {b.volunteer_id for b in result.buddies.pairs}
    # Every volunteer without a role checks on residents, up to their room (3 each).
    assert len(buddies) == 5 - len(result.roles.holders)
    assert result.buddies.coverage.covered == 3 * len(buddies)
    tier = {t.what: t for t in result.tiers}
    assert (tier["high_risk"].demand, tier["high_risk"].met) == (4, 4)
    # Who has no buddy is told why: the volunteers within reach hold shelter roles or are full.
    assert set(result.buddies.unassigned.values()) <= {
        "held_by_roles",
        "roles_and_full",
        "volunteers_full",
    }
    head = next(s for s in result.roles.open_seats if s.quota.role_code == "head")
    assert head.reason.value == "candidates_engaged"

    with unit_of_work(sessions) as session:
        again = assign_authority(
            session, authority=authority, profile=sample, actor="test", now=NOW
        )
    assert again.changes == []


def test_explain_and_people_show_say_what_a_person_holds_and_why(
    sessions: sessionmaker[Session],
    directory: Directory,
    authority: Authority,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    with unit_of_work(sessions) as session:
        people = {k: p.id for k, p in small_town(session, authority, directory).items()}
    ctx = health_only_context(
        database_url, tmp_path, policy='[[assignment.tiers]]\nroles = ["health"]\n'
        '[[assignment.tiers]]\nbuddies = "rest"\n',
    )  # fmt: skip

    def hosen(*argv: str) -> str:
        assert run_cli(ctx, *argv) == 0
        return capsys.readouterr().out

    try:
        hosen("assign")
        medic = hosen("people", "show", str(people["medic"]))
        r1 = hosen("people", "show", str(people["r1"]))
        explain_medic = hosen("assign", "--explain", str(people["medic"]))
        explain_arabic = hosen("assign", "--explain", str(people["r-ar"]))
        explain_teen = hosen("assign", "--explain", str(people["teen"]))
        explain_r1 = json.loads(hosen("assign", "--explain", str(people["r1"]), "--json"))
    finally:
        ctx.engine.dispose()
    assert "role: health (kt-center) proposed" in medic
    assert "checks_on: none" in medic
    assert f"Person v1 (#{people['v1']}) primary, 20 m, proposed" in r1
    assert "role “Health” of tier 1 (roles health): 1 seats here, 1 volunteers qualify" in (
        explain_medic
    )
    assert "a volunteer who holds a role takes no buddies" in explain_medic
    assert "the stored assignment is what the policy plans now" in explain_medic
    assert (
        "City Centre: 1 residents of tier 2 have no buddy: no volunteer within 1500 m speaks Arabic"
    ) in explain_arabic
    assert "takes no buddies: minor (age 16)" in explain_teen
    assert explain_r1["planned"]["tier"] == 2
    assert [b["rank"] for b in explain_r1["stored"]["buddies"]] == [1, 2]
    assert all(b["status"] == "proposed" for b in explain_r1["stored"]["buddies"])
