"""Community resources: generators, vehicles, accessible shelters, community centres, water.

Each resource belongs to an authority and a zone, has an owner or contact (a name and a phone),
a capacity where one makes sense (seats, litres, kW, people) and a state that staff keep up to
date: available, in use, or out of service. Officers add them from the command line or a list;
staff mark their state from the command line or the bot (``/resource CODE available``).

Functions take ``session`` and do not commit; the caller owns the transaction.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from registry import audit, rules
from registry.db import Base, UTCDateTime, utcnow
from registry.errors import RegistryError
from registry.models import Authority, Zone, enum_type
from registry.people import clean_text
from registry.phones import Phone

CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")


class ResourceKind(StrEnum):
    GENERATOR = "generator"
    VEHICLE = "vehicle"
    ACCESSIBLE_VEHICLE = "accessible_vehicle"
    ACCESSIBLE_SHELTER = "accessible_shelter"
    COMMUNITY_CENTRE = "community_centre"
    WATER = "water"
    OTHER = "other"


class ResourceState(StrEnum):
    AVAILABLE = "available"
    IN_USE = "in_use"
    OUT_OF_SERVICE = "out_of_service"


class Resource(Base):
    __tablename__ = "community_resource"
    __table_args__ = (UniqueConstraint("authority_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authority.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zone.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    kind: Mapped[ResourceKind] = mapped_column(enum_type(ResourceKind))
    name: Mapped[str] = mapped_column(String(120))
    contact_name: Mapped[str | None] = mapped_column(String(120))
    contact_phone: Mapped[str | None] = mapped_column(String(20))
    capacity: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[ResourceState] = mapped_column(
        enum_type(ResourceState), default=ResourceState.AVAILABLE
    )
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state_changed_by: Mapped[str | None] = mapped_column(String(80))


def valid_code(text: str) -> bool:
    return CODE_PATTERN.fullmatch(text) is not None


def find_resource(session: Session, *, authority_id: int, code: str) -> Resource | None:
    return session.scalar(
        select(Resource).where(Resource.authority_id == authority_id, Resource.code == code)
    )


def save_resource(
    session: Session,
    *,
    authority: Authority,
    zone: Zone,
    code: str,
    kind: ResourceKind,
    name: str,
    contact_name: str | None = None,
    contact_phone: Phone | None = None,
    capacity: int | None = None,
    state: ResourceState | None = None,
    actor: str,
    now: datetime | None = None,
) -> tuple[Resource, bool]:
    """Create the authority's resource with this code, or update it. Returns it and whether it
    was created. A state given is recorded as a change of state (who, when)."""
    now = now or utcnow()
    code = code.strip()
    if not valid_code(code):
        raise RegistryError("resources.code_invalid", code=code[:40])
    name = clean_text(name, rules.MAX_NAME)
    if not name:
        raise RegistryError("resources.name_missing")
    if zone.authority_id != authority.id:
        raise RegistryError("groups.zone_elsewhere", zone=zone.code)
    if capacity is not None and capacity < 0:
        raise RegistryError("resources.capacity_invalid")
    resource = find_resource(session, authority_id=authority.id, code=code)
    created = resource is None
    if resource is None:
        resource = Resource(
            authority_id=authority.id,
            code=code,
            state=ResourceState.AVAILABLE,
            state_changed_at=now,
            state_changed_by=actor,
        )
        session.add(resource)
    resource.zone_id = zone.id
    resource.kind = kind
    resource.name = name
    resource.contact_name = clean_text(contact_name, rules.MAX_NAME) if contact_name else None
    resource.contact_phone = contact_phone.e164 if contact_phone else None
    resource.capacity = capacity
    session.flush()
    if state is not None and state != resource.state:
        set_state(session, resource=resource, state=state, actor=actor, now=now)
    audit.record(
        session,
        actor=actor,
        action="resource.add" if created else "resource.update",
        at=now,
        resource_id=resource.id,
    )
    return resource, created


def set_state(
    session: Session,
    *,
    resource: Resource,
    state: ResourceState,
    actor: str,
    now: datetime | None = None,
) -> bool:
    """Mark a resource available, in use or out of service; False when it already was. Audited."""
    if resource.state == state:
        return False
    now = now or utcnow()
    before = resource.state
    resource.state = state
    resource.state_changed_at = now
    resource.state_changed_by = actor
    audit.record(
        session,
        actor=actor,
        action="resource.state",
        at=now,
        resource_id=resource.id,
        before=before.value,
        after=state.value,
    )
    return True


def list_resources(
    session: Session,
    *,
    authority: Authority,
    zone: Zone | None = None,
    kind: ResourceKind | None = None,
) -> list[tuple[Resource, str]]:
    """The authority's resources with their zone's code, by zone, kind and code."""
    query = (
        select(Resource, Zone.code)
        .join(Zone, Zone.id == Resource.zone_id)
        .where(Resource.authority_id == authority.id)
        .order_by(Zone.code, Resource.kind, Resource.code)
    )
    if zone is not None:
        query = query.where(Resource.zone_id == zone.id)
    if kind is not None:
        query = query.where(Resource.kind == kind)
    return [(resource, code) for resource, code in session.execute(query)]


STATE_WORDS: dict[str, ResourceState] = {
    "available": ResourceState.AVAILABLE,
    "free": ResourceState.AVAILABLE,
    "in_use": ResourceState.IN_USE,
    "busy": ResourceState.IN_USE,
    "used": ResourceState.IN_USE,
    "out_of_service": ResourceState.OUT_OF_SERVICE,
    "out": ResourceState.OUT_OF_SERVICE,
    "broken": ResourceState.OUT_OF_SERVICE,
}


def parse_state(text: str) -> ResourceState | None:
    """A state as staff type it: ``available``, ``in use``, ``out-of-service``, ``busy``..."""
    word = re.sub(r"[\s-]+", "_", text.strip().casefold())
    return STATE_WORDS.get(word)
