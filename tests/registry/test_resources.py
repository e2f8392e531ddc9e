"""Community resources: added, updated by code, their state marked and audited, imported from a
list row by row with errors in the officer's language."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from registry.community_lists import import_community_list
from registry.errors import RegistryError
from registry.importer import Outcome
from registry.models import AuditEntry, Authority, Zone
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.resources import (
    Resource,
    ResourceKind,
    ResourceState,
    list_resources,
    parse_state,
    save_resource,
    set_state,
)

NOW = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def zone(session: Session, authority: Authority, code: str) -> Zone:
    return session.scalars(
        select(Zone).where(Zone.authority_id == authority.id, Zone.code == code)
    ).one()


def test_add_update_and_mark_a_resource(
    session: Session, authority: Authority, directory: Directory
) -> None:
    north = zone(session, authority, "kt-north")
    generator, created = save_resource(
        session,
        authority=authority,
        zone=north,
        code="gen-1",
        kind=ResourceKind.GENERATOR,
        name="Generator",
        contact_name="Yossi",
        contact_phone=normalise_phone("052-555-7001", region="IL"),
        capacity=20,
        actor="test",
        now=NOW,
    )
    assert created and generator.state == ResourceState.AVAILABLE
    assert generator.contact_phone == "+972525557001"
    again, created = save_resource(
        session,
        authority=authority,
        zone=north,
        code="gen-1",
        kind=ResourceKind.GENERATOR,
        name="Generator (school)",
        capacity=25,
        actor="test",
    )
    assert again is generator and not created and generator.capacity == 25

    assert set_state(session, resource=generator, state=ResourceState.IN_USE, actor="sms:staff:1")
    assert not set_state(session, resource=generator, state=ResourceState.IN_USE, actor="x")
    assert generator.state_changed_by == "sms:staff:1"
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "resource.state")).one()
    assert audit.detail == {"resource_id": generator.id, "before": "available", "after": "in_use"}
    assert [(r.code, z) for r, z in list_resources(session, authority=authority)] == [
        ("gen-1", "kt-north")
    ]
    with pytest.raises(RegistryError) as caught:
        save_resource(
            session,
            authority=authority,
            zone=north,
            code="bad code",
            kind=ResourceKind.WATER,
            name="W",
            actor="t",
        )
    assert caught.value.key == "resources.code_invalid"


@pytest.mark.parametrize(
    ("typed", "state"),
    [
        ("available", ResourceState.AVAILABLE),
        ("In use", ResourceState.IN_USE),
        ("busy", ResourceState.IN_USE),
        ("out-of-service", ResourceState.OUT_OF_SERVICE),
        ("OUT", ResourceState.OUT_OF_SERVICE),
        ("maybe", None),
    ],
)
def test_states_as_staff_type_them(typed: str, state: ResourceState | None) -> None:
    assert parse_state(typed) == state


RESOURCES_CSV = """קוד,שם,סוג,שכונה,איש קשר,טלפון,קיבולת,מצב
gen-2,גנרטור בית הספר,גנרטור,kt-north,דנה,052-5557020,30,זמין
van-1,Accessible van,accessible vehicle,City Centre,,,6,busy
x,Bad zone,generator,nowhere,,,,
w1,Water tank,water,kt-north,,,abc,
s1,Shelter,accessible_shelter,kt-north,,,,broken-ish
p1,Pump,generator,kt-north,,12,,
"""


def test_resources_import_reports_every_row_in_the_officers_language(
    session: Session, authority: Authority, directory: Directory
) -> None:
    report = import_community_list(
        session,
        data=RESOURCES_CSV.encode(),
        kind="resources",
        authority=authority,
        region="IL",
        actor="test",
        now=NOW,
    )
    assert [(r.row, r.outcome, [p.key for p in r.problems]) for r in report.rows] == [
        (2, Outcome.CREATED, []),
        (3, Outcome.CREATED, []),
        (4, Outcome.SKIPPED, ["community_lists.zone_unknown"]),
        (5, Outcome.SKIPPED, ["community_lists.capacity_invalid"]),
        (6, Outcome.SKIPPED, ["community_lists.state_unknown"]),
        (7, Outcome.SKIPPED, ["community_lists.phone_invalid"]),
    ]
    van = session.scalars(select(Resource).where(Resource.code == "van-1")).one()
    assert van.kind == ResourceKind.ACCESSIBLE_VEHICLE and van.state == ResourceState.IN_USE
    assert van.zone_id == zone(session, authority, "kt-center").id  # found by its English name
    lines = list(report.problem_lines(Language.RU))
    assert lines[0].startswith("строка 4: пропущено: ")
    assert lines[0].endswith(t(Language.RU, "community_lists.zone_unknown", value="nowhere"))
    assert report.as_json(Language.AR)["totals"] == {
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "skipped": 4,
        "rows": 6,
    }
