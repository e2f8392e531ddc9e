"""Communities: groups, the zones they serve, their adult coordinators and their members.

A group (a youth movement, a building, kindergarten or school committee, a community centre,
national service) belongs to one authority and serves some of its zones (none: all of them).
People join it with its join code ("/start CODE" on Telegram, "JOIN CODE" by SMS) or are put in it
by an officer or a list. Its coordinators are adults with a mobile phone: members of the group
marked as coordinators (so a minor member never visits alone: the dispatcher sends the adult
coordinator along) and staff coordinators of the group (so they get its task list and manage its
members from the bot). Everyone registered who belongs to no group is on the outreach list,
:func:`unaffiliated`.

Functions take ``session`` and do not commit; the caller owns the transaction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session

from registry import audit, rules
from registry.db import utcnow
from registry.errors import RegistryError
from registry.models import (
    Authority,
    Group,
    GroupKind,
    GroupMember,
    GroupZone,
    Person,
    PersonStatus,
    PhoneSource,
    Source,
    Zone,
)
from registry.people import clean_text
from registry.phones import Phone
from registry.staff import CoordinatedGroup, StaffMember, StaffRole, add_staff

# What a Telegram deep link may carry ("t.me/bot?start=CODE"), and what an SMS keyboard types.
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{3,32}")
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L to misread
GENERATED_CODE_LENGTH = 7


def valid_code(text: str) -> bool:
    return CODE_PATTERN.fullmatch(text) is not None


def find_group(session: Session, code: str) -> Group | None:
    """The group whose join code this is, whatever its case (people type codes in lower case)."""
    code = code.strip()
    if not valid_code(code):
        return None
    return session.scalar(select(Group).where(func.upper(Group.join_code) == code.upper()))


def new_join_code(session: Session) -> str:
    while True:
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(GENERATED_CODE_LENGTH))
        if find_group(session, code) is None:
            return code


def zones_of(session: Session, group: Group) -> list[Zone]:
    return list(
        session.scalars(
            select(Zone)
            .join(GroupZone, GroupZone.zone_id == Zone.id)
            .where(GroupZone.group_id == group.id)
            .order_by(Zone.code)
        )
    )


def save_group(
    session: Session,
    *,
    authority: Authority,
    name: str,
    kind: GroupKind,
    zones: Sequence[Zone] = (),
    code: str | None = None,
    actor: str,
    now: datetime | None = None,
) -> tuple[Group, bool]:
    """Create the group with this join code, or update it. Without a code: update the
    authority's group of this name, or create one with a new random code. Returns the group and
    whether it was created."""
    now = now or utcnow()
    name = clean_text(name, rules.MAX_NAME)
    if not name:
        raise RegistryError("groups.name_missing")
    if code is not None and not valid_code(code.strip()):
        raise RegistryError("groups.code_invalid", code=code[:40])
    for zone in zones:
        if zone.authority_id != authority.id:
            raise RegistryError("groups.zone_elsewhere", zone=zone.code)
    if code:
        group = find_group(session, code)
    else:  # a list without codes is imported again without duplicating its groups
        group = session.scalars(
            select(Group)
            .where(Group.authority_id == authority.id, Group.name == name)
            .order_by(Group.id)
        ).first()
    created = group is None
    if group is None:
        group = Group(
            authority_id=authority.id,
            join_code=code.strip() if code else new_join_code(session),
            kind=kind,
            name=name,
        )
        session.add(group)
    elif group.authority_id != authority.id:
        raise RegistryError("groups.code_taken", code=group.join_code)
    group.name, group.kind = name, kind
    group.zone_id = zones[0].id if zones else None
    session.flush()
    wanted = {zone.id for zone in zones}
    have = set(session.scalars(select(GroupZone.zone_id).where(GroupZone.group_id == group.id)))
    if have - wanted:
        session.execute(
            delete(GroupZone).where(
                GroupZone.group_id == group.id, GroupZone.zone_id.in_(have - wanted)
            )
        )
    session.add_all(GroupZone(group_id=group.id, zone_id=z) for z in sorted(wanted - have))
    audit.record(
        session,
        actor=actor,
        action="group.add" if created else "group.update",
        at=now,
        group_id=group.id,
    )
    session.flush()
    return group, created


def add_coordinator(
    session: Session,
    *,
    group: Group,
    name: str,
    phone: Phone,
    birth_year: int | None = None,
    actor: str,
    now: datetime | None = None,
) -> Person:
    """Make the holder of ``phone`` a coordinator of ``group``: an adult member marked as its
    coordinator, and a staff coordinator of the group (the task list, the members from the bot).

    The person is found by phone in the group's authority, or registered (by staff, with the
    phone as a list gives it). A coordinator must be known to be an adult and reachable by SMS.
    """
    now = now or utcnow()
    person, year = check_coordinator(
        session, authority_id=group.authority_id, phone=phone, birth_year=birth_year, now=now
    )
    if person is None:
        person = Person(
            authority_id=group.authority_id,
            zone_id=group.zone_id,
            name=clean_text(name, rules.MAX_NAME) or None,
            phone=phone.e164,
            phone_kind=phone.kind,
            phone_source=PhoneSource.IMPORT,
            source=Source.STAFF,
            birth_year=year,
        )
        session.add(person)
        session.flush()
        audit.record(session, actor=actor, action="person.create", person_id=person.id, at=now)
    elif person.birth_year is None:
        person.birth_year = year
    membership = session.get(GroupMember, (group.id, person.id))
    if membership is None:
        session.add(
            GroupMember(group_id=group.id, person_id=person.id, is_coordinator=True, joined_at=now)
        )
    else:
        membership.is_coordinator = True
    staff = session.scalar(select(StaffMember).where(StaffMember.phone == phone.e164))
    if staff is None or not staff.active:
        authority = session.get(Authority, group.authority_id)
        add_staff(
            session,
            name=person.name or name,
            phone=phone,
            authority=authority,
            role=StaffRole.COORDINATOR,
            groups=[group],
            actor=actor,
            now=now,
        )
    elif session.get(CoordinatedGroup, (staff.id, group.id)) is None:
        # An officer or a coordinator of other groups keeps their role and gains this group.
        session.add(CoordinatedGroup(staff_id=staff.id, group_id=group.id))
    audit.record(
        session,
        actor=actor,
        action="group.coordinator",
        person_id=person.id,
        at=now,
        group_id=group.id,
    )
    session.flush()
    return person


def check_coordinator(
    session: Session, *, authority_id: int, phone: Phone, birth_year: int | None, now: datetime
) -> tuple[Person | None, int]:
    """Whether the holder of ``phone`` may coordinate: a mobile, and known to be an adult (by
    ``birth_year`` or their registration). Returns the person if registered, and the birth
    year; raises :class:`RegistryError` otherwise. Writes nothing."""
    if not phone.can_receive_sms:
        raise RegistryError("groups.coordinator_landline", phone=phone.e164)
    person = session.scalar(
        select(Person).where(Person.authority_id == authority_id, Person.phone == phone.e164)
    )
    year = birth_year if birth_year is not None else (person.birth_year if person else None)
    if year is None or not rules.is_adult(year, now.year):
        raise RegistryError("groups.coordinator_not_adult", age=rules.ADULT_AGE)
    return person, year


def add_member(
    session: Session, *, group: Group, person: Person, actor: str, now: datetime | None = None
) -> bool:
    """Put a registered person of the group's authority in the group; False if already there."""
    if person.authority_id != group.authority_id:
        raise RegistryError("groups.person_elsewhere")
    if session.get(GroupMember, (group.id, person.id)) is not None:
        return False
    now = now or utcnow()
    session.add(GroupMember(group_id=group.id, person_id=person.id, joined_at=now))
    audit.record(
        session, actor=actor, action="group.join", person_id=person.id, at=now, group_id=group.id
    )
    session.flush()
    return True


def remove_member(
    session: Session, *, group: Group, person: Person, actor: str, now: datetime | None = None
) -> bool:
    """Take a person out of the group (a coordinator also stops coordinating it); False if they
    were not in it."""
    membership = session.get(GroupMember, (group.id, person.id))
    if membership is None:
        return False
    if membership.is_coordinator and person.phone:
        staff_ids = select(StaffMember.id).where(StaffMember.phone == person.phone)
        session.execute(
            delete(CoordinatedGroup).where(
                CoordinatedGroup.group_id == group.id, CoordinatedGroup.staff_id.in_(staff_ids)
            )
        )
    session.delete(membership)
    audit.record(
        session,
        actor=actor,
        action="group.leave",
        person_id=person.id,
        at=now or utcnow(),
        group_id=group.id,
    )
    session.flush()
    return True


@dataclass(frozen=True)
class Member:
    person_id: int
    name: str
    phone: str | None
    zone: str | None
    coordinator: bool
    minor: bool
    status: PersonStatus


def members(session: Session, group: Group, *, year: int) -> list[Member]:
    """The group's members, coordinators first, then by name."""
    rows = session.execute(
        select(Person, GroupMember.is_coordinator, Zone.code)
        .join(GroupMember, GroupMember.person_id == Person.id)
        .outerjoin(Zone, Zone.id == Person.zone_id)
        .where(GroupMember.group_id == group.id, Person.status != PersonStatus.ERASED)
        .order_by(GroupMember.is_coordinator.desc(), Person.name, Person.id)
    ).all()
    return [
        Member(
            person_id=person.id,
            name=person.name or "?",
            phone=person.phone,
            zone=zone,
            coordinator=coordinator,
            minor=rules.is_minor(person.birth_year, year),
            status=person.status,
        )
        for person, coordinator, zone in rows
    ]


@dataclass(frozen=True)
class GroupSummary:
    group: Group
    zones: list[str]
    coordinators: list[str]  # names
    members: int  # coordinators included


def list_groups(
    session: Session, *, authority: Authority, zone: Zone | None = None
) -> list[GroupSummary]:
    """The authority's groups (those serving ``zone``, or the whole authority, when given)."""
    query = select(Group).where(Group.authority_id == authority.id).order_by(Group.name, Group.id)
    if zone is not None:
        query = query.where(serves_zone(zone.id))
    groups = list(session.scalars(query))
    ids = [g.id for g in groups]
    counts = dict(
        session.execute(
            select(GroupMember.group_id, func.count())
            .join(Person, Person.id == GroupMember.person_id)
            .where(GroupMember.group_id.in_(ids), Person.status != PersonStatus.ERASED)
            .group_by(GroupMember.group_id)
        ).all()
    )
    zone_codes: dict[int, list[str]] = {}
    for group_id, code in session.execute(
        select(GroupZone.group_id, Zone.code)
        .join(Zone, Zone.id == GroupZone.zone_id)
        .where(GroupZone.group_id.in_(ids))
        .order_by(Zone.code)
    ):
        zone_codes.setdefault(group_id, []).append(code)
    heads: dict[int, list[str]] = {}
    for group_id, name in session.execute(
        select(GroupMember.group_id, Person.name)
        .join(Person, Person.id == GroupMember.person_id)
        .where(GroupMember.group_id.in_(ids), GroupMember.is_coordinator.is_(True))
        .order_by(Person.name)
    ):
        heads.setdefault(group_id, []).append(name or "?")
    return [
        GroupSummary(g, zone_codes.get(g.id, []), heads.get(g.id, []), counts.get(g.id, 0))
        for g in groups
    ]


def serves_zone(zone_id: int):  # type: ignore[no-untyped-def]
    """A condition on :class:`Group`: it serves this zone, or its whole authority (no zone)."""
    listed = exists().where(GroupZone.group_id == Group.id)
    return or_(
        exists().where(GroupZone.group_id == Group.id, GroupZone.zone_id == zone_id),
        Group.zone_id == zone_id,
        ~listed & Group.zone_id.is_(None),
    )


def unaffiliated(
    session: Session, *, authority: Authority, zone: Zone | None = None
) -> list[Person]:
    """Everyone registered and active in the authority (in ``zone``) who belongs to no group."""
    query = (
        select(Person)
        .where(
            Person.authority_id == authority.id,
            Person.status == PersonStatus.ACTIVE,
            ~exists().where(GroupMember.person_id == Person.id),
        )
        .order_by(Person.zone_id, Person.name, Person.id)
    )
    if zone is not None:
        query = query.where(Person.zone_id == zone.id)
    return list(session.scalars(query))


# --- what a coordinator does from the bot ------------------------------------------------------


def groups_managed(session: Session, member: StaffMember) -> list[Group]:
    """The groups whose members a staff member manages: a coordinator's own groups; an officer's
    or administrator's own groups, else every group of their authority."""
    own = list(
        session.scalars(
            select(Group)
            .join(CoordinatedGroup, CoordinatedGroup.group_id == Group.id)
            .where(CoordinatedGroup.staff_id == member.id)
            .order_by(Group.name, Group.id)
        )
    )
    if own or member.role == StaffRole.COORDINATOR:
        return own
    query = select(Group).order_by(Group.name, Group.id)
    if member.authority_id is not None:
        query = query.where(Group.authority_id == member.authority_id)
    return list(session.scalars(query))


def remove_by_staff(
    session: Session,
    *,
    member: StaffMember,
    group_id: int,
    person_id: int,
    actor: str,
    now: datetime,
) -> tuple[Group, Person] | None:
    """A staff member takes a person out of a group they manage. None, and nothing done, when
    the group is not theirs or the person is not in it."""
    group = next((g for g in groups_managed(session, member) if g.id == group_id), None)
    person = session.get(Person, person_id)
    if group is None or person is None:
        return None
    if not remove_member(session, group=group, person=person, actor=actor, now=now):
        return None
    return group, person
