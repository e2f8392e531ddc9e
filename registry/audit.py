"""The audit trail: who did what to whom, and who read special-category data."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from registry.db import utcnow
from registry.models import AuditEntry, Person, ResidentNeeds

JSONScalar = str | int | float | bool | None


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    person_id: int | None = None,
    at: datetime | None = None,
    **detail: JSONScalar | list[str],
) -> AuditEntry:
    """Append an audit entry. ``detail`` holds identifiers and field names, never personal values."""
    entry = AuditEntry(
        actor=actor, action=action, person_id=person_id, at=at or utcnow(), detail=detail
    )
    session.add(entry)
    return entry


def entry_row(
    *,
    actor: str,
    action: str,
    person_id: int | None,
    at: datetime,
    **detail: JSONScalar | list[str],
) -> dict[str, object]:
    """An audit entry as a row for bulk inserts (registry.bulk); the same rules as :func:`record`."""
    return {"actor": actor, "action": action, "person_id": person_id, "at": at, "detail": detail}


def read_needs(
    session: Session, person: Person, *, actor: str, purpose: str
) -> ResidentNeeds | None:
    """Return a person's needs and log the read: health data is read only on the record."""
    record(session, actor=actor, action="needs.read", person_id=person.id, purpose=purpose)
    return person.needs
