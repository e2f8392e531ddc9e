"""A person's role and buddies as stored, with each row's status (proposed, confirmed, declined)
and where its offer stands (queued, offered, reminded, confirmed, declined, expired, withdrawn).

Plain selects, without the solver, so that ``hosen people show`` starts fast.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from registry.assignment.models import AssignmentOffer
from registry.models import (
    AssignmentStatus,
    BuddyAssignment,
    Person,
    RoleAssignment,
    Shelter,
    Zone,
)

SHOWN = (AssignmentStatus.PROPOSED, AssignmentStatus.CONFIRMED, AssignmentStatus.DECLINED)


def stored_assignments(session: Session, *, person_id: int) -> dict[str, list[dict[str, Any]]]:
    """The person's role and buddy rows that are live or declined, with their status as stored."""
    other = aliased(Person)
    roles = session.execute(
        select(RoleAssignment, Zone.code, Shelter.name)
        .outerjoin(Zone, Zone.id == RoleAssignment.zone_id)
        .outerjoin(Shelter, Shelter.id == RoleAssignment.shelter_id)
        .where(RoleAssignment.person_id == person_id, RoleAssignment.status.in_(SHOWN))
        .order_by(RoleAssignment.id)
    ).all()
    checks_on = session.execute(
        select(BuddyAssignment, other.name)
        .join(other, other.id == BuddyAssignment.resident_id)
        .where(BuddyAssignment.volunteer_id == person_id, BuddyAssignment.status.in_(SHOWN))
        .order_by(BuddyAssignment.resident_id, BuddyAssignment.rank)
    ).all()
    checked_by = session.execute(
        select(BuddyAssignment, other.name)
        .join(other, other.id == BuddyAssignment.volunteer_id)
        .where(BuddyAssignment.resident_id == person_id, BuddyAssignment.status.in_(SHOWN))
        .order_by(BuddyAssignment.rank)
    ).all()
    offers = latest_offers(
        session,
        roles=[r.id for r, _, _ in roles],
        buddies=[b.id for b, _ in (*checks_on, *checked_by)],
    )
    return {
        "roles": [
            {
                "role": r.role_code,
                "zone": zone,
                "shelter": shelter,
                "status": r.status.value,
                "offer": offers.get(("role", r.id)),
                "pinned": r.pinned,
            }
            for r, zone, shelter in roles
        ],
        "checks_on": [
            {
                "resident_id": b.resident_id,
                "name": name,
                "rank": b.rank,
                "status": b.status.value,
                "offer": offers.get(("buddy", b.id)),
                "distance_m": b.distance_m,
                "pinned": b.pinned,
            }
            for b, name in checks_on
        ],
        "buddies": [
            {
                "volunteer_id": b.volunteer_id,
                "name": name,
                "rank": b.rank,
                "status": b.status.value,
                "offer": offers.get(("buddy", b.id)),
                "distance_m": b.distance_m,
                "pinned": b.pinned,
            }
            for b, name in checked_by
        ],
    }


def latest_offers(
    session: Session, *, roles: list[int], buddies: list[int]
) -> dict[tuple[str, int], str]:
    """The state of the latest offer of each of these seats (none yet: absent)."""
    latest: dict[tuple[str, int], tuple[int, str]] = {}
    for kind, ids in (("role", roles), ("buddy", buddies)):
        if not ids:
            continue
        rows = session.execute(
            select(AssignmentOffer.id, AssignmentOffer.assignment_id, AssignmentOffer.state).where(
                AssignmentOffer.kind == kind, AssignmentOffer.assignment_id.in_(ids)
            )
        )
        for offer_id, assignment_id, state in rows:
            key = (kind, assignment_id)
            if key not in latest or latest[key][0] < offer_id:
                latest[key] = (offer_id, state)
    return {key: state for key, (_, state) in latest.items()}
