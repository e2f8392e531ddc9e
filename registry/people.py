"""Register, update, merge, opt out and erase people. Usable from the CLI, the bots and tests alike.

Every function takes ``session`` and leaves the commit to its caller (the unit of work).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Column, Table, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import flag_modified

from config.languages import Language
from registry import audit, rules
from registry.bulk import bulk_insert, bulk_update, stage, table_of
from registry.db import utcnow
from registry.errors import ConsentRequired, RegistryError
from registry.models import (
    ACTIVE_ASSIGNMENT,
    NEED_FLAGS,
    AssignmentStatus,
    AuditEntry,
    Authority,
    BuddyAssignment,
    Channel,
    Consent,
    ConsentGiver,
    ConsentKind,
    GroupMember,
    Person,
    PersonStatus,
    PhoneKind,
    PhoneSource,
    ResidentNeeds,
    RoleAssignment,
    Source,
    VolunteerProfile,
    Zone,
)
from registry.phone_codes import PhoneCode, requester_of
from registry.phones import Phone
from registry.rules import ADULT_AGE, DEFAULT_CHECKIN_CAPACITY, MAX_ADDRESS, MAX_NAME


@dataclass(frozen=True)
class VolunteerDetails:
    skills: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    available_routine: bool = True
    available_emergency: bool = True
    has_vehicle: bool = False
    checkin_capacity: int = DEFAULT_CHECKIN_CAPACITY


@dataclass(frozen=True)
class NeedsDetails:
    lives_alone: bool = False
    mobility: bool = False
    bedridden: bool = False
    powered_medical_equipment: bool = False
    sight: bool = False
    hearing: bool = False
    cognitive: bool = False
    regular_medication: bool = False
    young_children: bool = False
    no_shelter_access: bool = False
    emergency_contact_name: str | None = None
    emergency_contact_phone: str | None = None


@dataclass(frozen=True)
class PersonDetails:
    """What is known about a person from one source. ``None`` means "not given": left as it is.

    ``phone_source`` says how the phone is known; without it, it follows the registration's
    source (a list, staff) and a phone from a dialog counts as typed, proving nothing.
    """

    name: str | None = None
    phone: Phone | None = None
    phone_source: PhoneSource | None = None
    phone_to_fix: str | None = None  # an unusable number as written; kept for staff to fix
    telegram_chat_id: int | None = None
    language: Language | None = None
    channel: Channel | None = None
    birth_year: int | None = None
    zone: Zone | None = None
    address: str | None = None
    lat: float | None = None
    lon: float | None = None
    external_ref: str | None = None
    volunteer: VolunteerDetails | None = None
    needs: NeedsDetails | None = None


@dataclass
class Registration:
    person: Person
    created: bool
    changed: list[str] = field(default_factory=list)
    merged_from: int | None = None
    # People who had only typed this phone and lost it to this registration.
    displaced: list[int] = field(default_factory=list)
    # The phone was typed and someone else holds it: it was left out, and nobody was told.
    phone_conflict: bool = False


@dataclass(slots=True)
class VolunteerRecord:
    """A volunteer profile as plain values (see :class:`PersonRecord`); ``None``: not set yet."""

    skills: list[str] | None = None
    languages: list[str] | None = None
    available_routine: bool | None = None
    available_emergency: bool | None = None
    has_vehicle: bool | None = None
    checkin_capacity: int | None = None


@dataclass(slots=True)
class NeedsRecord:
    """A resident's needs as plain values (see :class:`PersonRecord`); ``None``: not set yet."""

    lives_alone: bool | None = None
    mobility: bool | None = None
    bedridden: bool | None = None
    powered_medical_equipment: bool | None = None
    sight: bool | None = None
    hearing: bool | None = None
    cognitive: bool | None = None
    regular_medication: bool | None = None
    young_children: bool | None = None
    no_shelter_access: bool | None = None
    emergency_contact_name: str | None = None
    emergency_contact_phone: str | None = None


@dataclass(slots=True)
class PersonRecord:
    """A person as plain values, one attribute per column of ``person``, for bulk work.

    The registration rules (:func:`sort_matches`, ``_apply``) read and write a record exactly as
    they do a :class:`Person`; an import of 100,000 rows applies them without the ORM's
    per-attribute bookkeeping and writes the results with bulk statements. A record read from
    the database has every column; a new one starts empty, as an unsaved ``Person`` does.
    """

    id: int | None = None
    authority_id: int | None = None
    zone_id: int | None = None
    name: str | None = None
    phone: str | None = None
    phone_kind: PhoneKind | None = None
    phone_source: PhoneSource | None = None
    phone_verified_at: datetime | None = None
    phone_disputed_at: datetime | None = None
    phone_to_fix: str | None = None
    telegram_chat_id: int | None = None
    language: Language | None = None
    channel: Channel | None = None
    birth_year: int | None = None
    address: str | None = None
    lat: float | None = None
    lon: float | None = None
    status: PersonStatus | None = None
    is_volunteer: bool | None = None
    needs_help: bool | None = None
    source: Source | None = None
    external_ref: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    opted_out_at: datetime | None = None
    erased_at: datetime | None = None
    volunteer: VolunteerRecord | None = None
    needs: NeedsRecord | None = None

    @property
    def phone_trusted(self) -> bool:
        return self.phone_source is not None and self.phone_source.trusted


class RecordIndex:
    """The live people of one authority that a batch's municipal references and phones find,
    as :class:`PersonRecord`, read with two set-based queries over a staging table of the keys
    (COPY on PostgreSQL): the lookup costs what the batch costs, not what the authority holds."""

    def __init__(self) -> None:
        self.by_ref: dict[str, PersonRecord] = {}
        self.by_phone: dict[str, PersonRecord] = {}

    @classmethod
    def load(
        cls,
        session: Session,
        *,
        authority: Authority,
        keys: Sequence[tuple[str | None, str | None]],
    ) -> RecordIndex:
        """The people ``keys`` find: (municipal reference, phone) pairs, either may be missing.
        A phone is looked up only when its reference found nobody with that phone."""
        index = cls()
        index._read(session, authority, table_of(Person).c.external_ref, {r for r, _ in keys if r})
        phones = {
            phone
            for ref, phone in keys
            if phone
            and (ref is None or ref not in index.by_ref or index.by_ref[ref].phone != phone)
        }
        index._read(session, authority, table_of(Person).c.phone, phones)
        return index

    def _read(
        self, session: Session, authority: Authority, key: Column[Any], values: set[str]
    ) -> None:
        if not values:
            return
        staged = stage(
            session, "registry_lookup_key", [Column("value", key.type)], [(v,) for v in values]
        )
        query = _RECORD_QUERY.where(
            table_of(Person).c.authority_id == authority.id,
            key.in_(select(staged.c.value)),
        )
        known = {record.id for record in self.by_ref.values()}
        for row in session.execute(query).all():
            if row[0] in known:
                continue  # found by its reference already
            record = _record_of(row)
            if record.external_ref:
                self.by_ref[record.external_ref] = record
            if record.phone:
                self.by_phone[record.phone] = record

    def find(self, ref: str | None, phone: str | None) -> list[PersonRecord]:
        """Like :meth:`PeopleIndex.matches`: the people a municipal reference and an E.164
        phone find, by id."""
        by_ref = self.by_ref.get(ref) if ref else None
        by_phone = self.by_phone.get(phone) if phone else None
        if by_ref is None:
            return [by_phone] if by_phone is not None else []
        if by_phone is None or by_phone is by_ref:
            return [by_ref]
        return sorted((by_ref, by_phone), key=lambda p: p.id or 0)


_TABLES: dict[type[object], Table] = {
    Person: table_of(Person),
    VolunteerProfile: table_of(VolunteerProfile),
    ResidentNeeds: table_of(ResidentNeeds),
    PersonRecord: table_of(Person),
    VolunteerRecord: table_of(VolunteerProfile),
    NeedsRecord: table_of(ResidentNeeds),
}
_PERSON_FIELDS = tuple(f.name for f in fields(PersonRecord) if f.name not in ("volunteer", "needs"))
_NEEDS_FIELDS = tuple(f.name for f in fields(NeedsRecord))
_VOLUNTEER_FIELDS = tuple(f.name for f in fields(VolunteerRecord))
_ENDS = (len(_PERSON_FIELDS), len(_PERSON_FIELDS) + 1 + len(_NEEDS_FIELDS))


def _record_query() -> Any:
    person, needs, volunteer = (table_of(m) for m in (Person, ResidentNeeds, VolunteerProfile))
    columns = [
        *(person.c[name] for name in _PERSON_FIELDS),
        needs.c.person_id.label("n_person_id"),
        *(needs.c[name].label(f"n_{name}") for name in _NEEDS_FIELDS),
        volunteer.c.person_id.label("v_person_id"),
        *(volunteer.c[name].label(f"v_{name}") for name in _VOLUNTEER_FIELDS),
    ]
    joined = person.outerjoin(needs, needs.c.person_id == person.c.id).outerjoin(
        volunteer, volunteer.c.person_id == person.c.id
    )
    return select(*columns).select_from(joined).where(person.c.status != PersonStatus.ERASED)


_RECORD_QUERY = _record_query()


def _record_of(row: Sequence[Any]) -> PersonRecord:
    """A row of ``_RECORD_QUERY`` as a record: the person's columns, then their needs and
    volunteer profile, each after its ``person_id`` (``None`` when there is none)."""
    person_end, needs_end = _ENDS
    record = PersonRecord(*row[:person_end])
    if row[person_end] is not None:
        record.needs = NeedsRecord(*row[person_end + 1 : needs_end])
    if row[needs_end] is not None:
        record.volunteer = VolunteerRecord(*row[needs_end + 1 :])
    return record


def apply_details(record: PersonRecord, details: PersonDetails, now: datetime) -> set[str]:
    """Apply ``details`` to ``record`` by :func:`register_person`'s rules; the fields changed."""
    return _apply(record, details, now)


def insert_records(session: Session, records: Sequence[PersonRecord]) -> None:
    """Write new people built as records, with their needs and volunteer profiles; sets ids."""
    _insert_new_people(session, records)


def update_records(session: Session, records: Sequence[PersonRecord]) -> None:
    """Write changed people read as records: their rows in one statement, and their needs and
    volunteer profiles replaced (deleted and inserted in bulk)."""
    if not records:
        return
    bulk_update(session, Person, [_column_values(r) | {"id": r.id} for r in records])
    ids = [r.id for r in records]
    for model, attr in ((VolunteerProfile, "volunteer"), (ResidentNeeds, "needs")):
        session.execute(delete(model).where(model.person_id.in_(ids)))
        rows = [
            {**_column_values(getattr(r, attr)), "person_id": r.id}
            for r in records
            if getattr(r, attr) is not None
        ]
        bulk_insert(session, model, rows)


def clean_text(text: str, limit: int) -> str:
    """Collapse white space, drop control characters (bidi marks stay: they are legitimate)."""
    if text.isprintable():
        kept = text  # the usual case, without a look at every character
    else:
        kept = "".join(ch for ch in text if ch.isprintable() or ch in "\u200e\u200f")
    return " ".join(kept.split())[:limit]


def find_person(
    session: Session,
    *,
    authority: Authority,
    phone: str | None = None,
    telegram_chat_id: int | None = None,
    external_ref: str | None = None,
) -> list[Person]:
    """Every live person matching any of the keys (more than one means they should be merged)."""
    keys = []
    if external_ref:
        keys.append(Person.external_ref == external_ref)
    if phone:
        keys.append(Person.phone == phone)
    if telegram_chat_id is not None:
        keys.append(Person.telegram_chat_id == telegram_chat_id)
    if not keys:
        return []
    query = (
        select(Person)
        .where(or_(*keys), Person.status != PersonStatus.ERASED)
        .where(
            or_(Person.authority_id == authority.id, Person.telegram_chat_id == telegram_chat_id)
        )
        .order_by(Person.id)
    )
    return list(session.scalars(query))


def register_person(
    session: Session,
    *,
    authority: Authority,
    details: PersonDetails,
    source: Source,
    actor: str,
    now: datetime | None = None,
    known: Person | None = None,
) -> Registration:
    """Create or update a person idempotently; the same details twice change nothing.

    A person is found by municipal reference, phone or Telegram chat (``known``: the person the
    caller already knows the details are about, a registered person editing their answers).
    When the keys point at two people (someone who registered by SMS now shares the same phone on
    Telegram) they are merged, on the phone only as :func:`sort_matches` allows.
    """
    now = now or utcnow()
    if details.zone is not None and details.zone.authority_id != authority.id:
        raise RegistryError("zone.unknown", zone=details.zone.code)
    details = with_phone_source(details, source)
    candidates = find_person(
        session,
        authority=authority,
        phone=details.phone.e164 if details.phone else None,
        telegram_chat_id=details.telegram_chat_id,
        external_ref=details.external_ref,
    )
    if known is not None and all(known is not p for p in candidates):
        candidates = sorted([known, *candidates], key=lambda p: p.id)
    found = sort_matches(candidates, details, known=known)
    details, matches = found.details, found.update
    for holder in found.displace:
        displace_phone(session, holder, by=details, actor=actor, now=now)
    merged_from = None
    if matches:
        person = matches[0]
        for other in matches[1:]:
            merge_people(session, keep=person, absorb=other, actor=actor, now=now)
            merged_from = other.id
        created = False
    else:
        person = Person(authority_id=authority.id, source=source, created_at=now, updated_at=now)
        session.add(person)
        created = True

    changed = _apply(person, details, now)
    if created or changed:
        _stamp(person, now)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="person.create" if created else "person.update",
            person_id=person.id,
            at=now,
            fields=sorted(changed),
            source=source.value,
        )
    return Registration(
        person=person,
        created=created,
        changed=sorted(changed),
        merged_from=merged_from,
        displaced=[p.id for p in found.displace],
        phone_conflict=found.conflict,
    )


def _stamp(person: Person, now: datetime) -> None:
    """``updated_at`` is ``now``, the caller's clock, even when it holds that already (a second
    change in one import): otherwise the ORM would leave it out and stamp the wall clock."""
    person.updated_at = now
    flag_modified(person, "updated_at")


def with_phone_source(details: PersonDetails, source: Source) -> PersonDetails:
    """The details with their phone's source said: given, else the registration's own."""
    if details.phone is None or details.phone_source is not None:
        return details
    implied = {
        Source.IMPORT: PhoneSource.IMPORT,
        Source.SYNTHETIC: PhoneSource.IMPORT,
        Source.STAFF: PhoneSource.STAFF,
    }
    return replace(details, phone_source=implied.get(source, PhoneSource.TYPED))


P = TypeVar("P", Person, PersonRecord)


@dataclass(frozen=True)
class Matches(Generic[P]):
    """What the people a registration's keys found are to it (see :func:`sort_matches`)."""

    update: list[P]  # the one to update, then any to merge into it
    displace: list[P]  # they only typed this phone: it is taken from them
    details: PersonDetails  # the details to apply (without a typed phone someone else holds)
    conflict: bool  # a typed phone someone else holds was left out


def sort_matches(
    found: Sequence[P], details: PersonDetails, *, known: P | None = None
) -> Matches[P]:
    """The one rule for a phone as a key: it joins two records only when both can be trusted.

    A person found by municipal reference or Telegram chat is the same person. Found by the
    phone alone, they are merged only when both phones are trusted (proven, or from a list); a
    trusted phone takes the number from a record that only typed it (that record stays apart);
    a typed phone that another record holds is left out, and nothing of that record is used.
    """
    update: list[P] = []
    displace: list[P] = []
    conflict = False
    trusted = details.phone_source is not None and details.phone_source.trusted
    for person in found:
        same = (
            person is known
            or bool(details.external_ref and person.external_ref == details.external_ref)
            or (
                details.telegram_chat_id is not None
                and person.telegram_chat_id == details.telegram_chat_id
            )
        )
        if same or (trusted and person.phone_trusted):
            update.append(person)
        elif trusted:
            displace.append(person)
        else:
            conflict = True
    if conflict:
        details = replace(details, phone=None, phone_source=None)
    return Matches(update=update, displace=displace, details=details, conflict=conflict)


def displace_phone(
    session: Session, person: Person, *, by: PersonDetails, actor: str, now: datetime
) -> None:
    """Take a typed, unproven phone from ``person`` for a holder who can be trusted with it.

    The record stays, without the number and marked disputed, for staff to look at.
    """
    person.phone = None
    person.phone_kind = PhoneKind.UNKNOWN
    person.phone_source = None
    person.phone_verified_at = None
    person.phone_disputed_at = now
    if person.channel == Channel.SMS:
        person.channel = Channel.TELEGRAM if person.telegram_chat_id else Channel.NONE
    person.updated_at = now
    session.flush()  # the number must be free before its holder gets it
    audit.record(
        session,
        actor=actor,
        action="phone.displaced",
        person_id=person.id,
        at=now,
        by=by.phone_source.value if by.phone_source else None,
    )


class PeopleIndex:
    """The live people a batch of details may match, loaded with one query.

    ``register_people`` uses it to apply :func:`register_person`'s rules to a thousand rows with
    one lookup instead of a thousand; callers that must see a person before building its details
    (an import merging partial columns) load it first and pass it in.
    """

    def __init__(self, authority: Authority) -> None:
        self.authority_id = authority.id
        self.by_ref: dict[str, Person] = {}
        self.by_phone: dict[str, Person] = {}
        self.by_chat: dict[int, Person] = {}

    @classmethod
    def load(
        cls, session: Session, *, authority: Authority, details: Sequence[PersonDetails]
    ) -> PeopleIndex:
        index = cls(authority)
        refs = {d.external_ref for d in details if d.external_ref}
        phones = {d.phone.e164 for d in details if d.phone}
        chats = {d.telegram_chat_id for d in details if d.telegram_chat_id is not None}
        keys = []
        if refs:
            keys.append(and_(Person.authority_id == authority.id, Person.external_ref.in_(refs)))
        if phones:
            keys.append(and_(Person.authority_id == authority.id, Person.phone.in_(phones)))
        if chats:
            keys.append(Person.telegram_chat_id.in_(chats))
        if keys:
            query = (
                select(Person)
                .where(or_(*keys), Person.status != PersonStatus.ERASED)
                .options(selectinload(Person.volunteer), selectinload(Person.needs))
            )
            for person in session.scalars(query):
                index.add(person)
        return index

    def add(self, person: Person) -> None:
        if person.authority_id == self.authority_id:
            if person.external_ref:
                self.by_ref[person.external_ref] = person
            if person.phone:
                self.by_phone[person.phone] = person
        if person.telegram_chat_id is not None:
            self.by_chat[person.telegram_chat_id] = person

    def forget(self, person: Person) -> None:
        if person.external_ref and self.by_ref.get(person.external_ref) is person:
            del self.by_ref[person.external_ref]
        if person.phone and self.by_phone.get(person.phone) is person:
            del self.by_phone[person.phone]
        chat = person.telegram_chat_id
        if chat is not None and self.by_chat.get(chat) is person:
            del self.by_chat[chat]

    def matches(self, details: PersonDetails) -> list[Person]:
        """Like :func:`find_person`: everyone any key points at, oldest first (new ones last)."""
        found: list[Person] = []
        for person in (
            self.by_ref.get(details.external_ref) if details.external_ref else None,
            self.by_phone.get(details.phone.e164) if details.phone else None,
            self.by_chat.get(details.telegram_chat_id)
            if details.telegram_chat_id is not None
            else None,
        ):
            if person is not None and all(person is not other for other in found):
                found.append(person)
        return sorted(found, key=lambda p: (p.id is None, p.id or 0))


def register_people(
    session: Session,
    *,
    authority: Authority,
    batch: Sequence[PersonDetails],
    source: Source,
    actor: str,
    now: datetime | None = None,
    index: PeopleIndex | None = None,
) -> list[Registration]:
    """:func:`register_person` for a batch (an import of thousands): the same rules, one lookup.

    Existing people are updated through the session as usual. New people are built by the same
    rules in memory and written with bulk inserts (with their needs, volunteer profile and audit
    entries), because the ORM inserts them one statement at a time on SQLite: their ``Person``
    objects carry their new ids but are not attached to the session. Details in one batch that
    share a key update the same person, in order.
    """
    now = now or utcnow()
    for details in batch:
        if details.zone is not None and details.zone.authority_id != authority.id:
            raise RegistryError("zone.unknown", zone=details.zone.code)
    batch = [with_phone_source(details, source) for details in batch]
    if index is None:
        index = PeopleIndex.load(session, authority=authority, details=batch)
    results: list[Registration] = []
    fresh: list[Person] = []
    for details in batch:
        found = sort_matches(index.matches(details), details)
        details, matches = found.details, found.update
        for holder in found.displace:
            index.forget(holder)
            displace_phone(session, holder, by=details, actor=actor, now=now)
        merged_from = None
        if any(other.id is None for other in matches[1:]):
            # Callers deduplicate a batch first (the importer does); two rows that point at a
            # new person and an existing one cannot be merged before the new one is written.
            raise ValueError("a batch holds two details that point at different people")
        if matches and matches[0].id is not None:
            person = matches[0]
            for other in matches[1:]:
                index.forget(other)
                merge_people(session, keep=person, absorb=other, actor=actor, now=now)
                merged_from = other.id
            created = False
        elif matches:
            person, created = matches[0], False  # new in this batch, not yet written
        else:
            person = Person(
                authority_id=authority.id, source=source, created_at=now, updated_at=now
            )
            fresh.append(person)
            created = True
        changed = _apply(person, details, now)
        index.add(person)
        if created or changed:
            _stamp(person, now)
        results.append(
            Registration(
                person=person,
                created=created,
                changed=sorted(changed),
                merged_from=merged_from,
                displaced=[p.id for p in found.displace],
                phone_conflict=found.conflict,
            )
        )
    _insert_new_people(session, fresh)
    session.flush()
    audit_rows = [
        audit.entry_row(
            actor=actor,
            action="person.create" if result.created else "person.update",
            person_id=result.person.id,
            at=now,
            fields=result.changed,
            source=source.value,
        )
        for result in results
        if result.created or result.changed
    ]
    bulk_insert(session, AuditEntry, audit_rows)
    return results


def _insert_new_people(session: Session, people: Sequence[Person | PersonRecord]) -> None:
    """Write people built in memory, with their needs and volunteer profiles; sets their ids."""
    ids = bulk_insert(session, Person, [_column_values(p) for p in people], return_ids=True)
    for person, person_id in zip(people, ids, strict=True):
        person.id = person_id
    for model, attr in ((VolunteerProfile, "volunteer"), (ResidentNeeds, "needs")):
        rows = [
            {**_column_values(getattr(p, attr)), "person_id": p.id}
            for p in people
            if getattr(p, attr) is not None
        ]
        bulk_insert(session, model, rows)


def _column_values(
    obj: Person | VolunteerProfile | ResidentNeeds | PersonRecord | VolunteerRecord | NeedsRecord,
) -> dict[str, object]:
    """An unsaved object's columns as a row, with the column defaults a flush would fill in."""
    keys, read, defaults = _COLUMN_DEFAULTS[type(obj)]
    row = dict(zip(keys, read(obj), strict=True))
    for key, scalar, make in defaults:
        if row[key] is None:
            value = make(None) if make is not None else scalar
            if value is not None:
                setattr(obj, key, value)  # the object reads as the row it was written as
                row[key] = value
    return row


def _column_defaults(
    kind: type[object],
) -> tuple[
    tuple[str, ...], Callable[[object], tuple[object, ...]], tuple[tuple[str, object, Any], ...]
]:
    """A table's columns but its key, a reader of all of them at once, and the columns that
    have a default, each with its scalar or the function that makes one (worked out once: an
    import writes tens of thousands of rows)."""
    keys = []
    defaults = []
    for column in _TABLES[kind].columns:
        if column.primary_key:
            continue
        keys.append(column.key)
        default = column.default
        scalar = default.arg if default is not None and default.is_scalar else None  # type: ignore[attr-defined]
        make = default.arg if default is not None and default.is_callable else None  # type: ignore[attr-defined]
        if scalar is not None or make is not None:
            defaults.append((column.key, scalar, make))
    getter = operator.attrgetter(*keys)
    read = getter if len(keys) > 1 else lambda obj: (getter(obj),)
    return tuple(keys), read, tuple(defaults)


_COLUMN_DEFAULTS = {kind: _column_defaults(kind) for kind in _TABLES}


def _apply(person: Person | PersonRecord, details: PersonDetails, now: datetime) -> set[str]:
    changed: set[str] = set()

    def put(attr: str, value: object) -> None:
        if value is not None and getattr(person, attr) != value:
            setattr(person, attr, value)
            changed.add(attr)

    put("name", clean_text(details.name, MAX_NAME) if details.name else None)
    if details.phone is not None:
        _apply_phone(person, details.phone, details.phone_source, now, changed)
        if person.phone_to_fix is not None:
            # A usable number arrived: nothing left to fix, and a buddy no longer has to stand in.
            person.phone_to_fix = None
            changed.add("phone_to_fix")
            if person.channel == Channel.NONE and details.phone.can_receive_sms:
                put("channel", Channel.SMS)
    put("phone_to_fix", details.phone_to_fix)
    put("telegram_chat_id", details.telegram_chat_id)
    put("language", details.language)
    put("channel", details.channel)
    put("birth_year", details.birth_year)
    put("zone_id", details.zone.id if details.zone else None)
    put("address", clean_text(details.address, MAX_ADDRESS) if details.address else None)
    put("lat", details.lat)
    put("lon", details.lon)
    if person.external_ref is None:
        # The first municipal reference sticks: a person on two lists stays findable by the first,
        # and re-importing either list changes nothing.
        put("external_ref", details.external_ref)
    if person.channel is None or (
        person.channel == Channel.SMS and person.phone_kind == PhoneKind.LANDLINE
    ):
        # A landline cannot take SMS; such a person is reached by Telegram if known, else by a buddy.
        put("channel", Channel.TELEGRAM if person.telegram_chat_id else Channel.NONE)
    if details.volunteer is not None:
        put("is_volunteer", True)
        if isinstance(person, PersonRecord):
            record = person.volunteer or VolunteerRecord()
            if _copy(details.volunteer, record):
                changed.add("volunteer")
            person.volunteer = record
        else:
            profile = person.volunteer or VolunteerProfile()
            if _copy(details.volunteer, profile):
                changed.add("volunteer")
            person.volunteer = profile
    if details.needs is not None:
        put("needs_help", True)
        if isinstance(person, PersonRecord):
            needs_record = person.needs or NeedsRecord()
            if _copy(details.needs, needs_record):
                changed.add("needs")
            person.needs = needs_record
        else:
            needs = person.needs or ResidentNeeds()
            if _copy(details.needs, needs):
                changed.add("needs")
            person.needs = needs
    return changed


def _apply_phone(
    person: Person | PersonRecord,
    phone: Phone,
    source: PhoneSource | None,
    now: datetime,
    changed: set[str],
) -> None:
    """A new number takes its source; the same number only gains trust, never loses it."""
    if person.phone != phone.e164:
        person.phone = phone.e164
        person.phone_source = source
        person.phone_verified_at = now if source is not None and source.verified else None
        changed.add("phone")
    elif source is not None and source.verified and person.phone_verified_at is None:
        person.phone_source = source
        person.phone_verified_at = now
        changed.add("phone_verified")
    elif source is not None and source.trusted and not person.phone_trusted:
        person.phone_source = source
        changed.add("phone_source")
    if person.phone_kind != phone.kind:
        person.phone_kind = phone.kind
        changed.add("phone_kind")


def _copy(
    source: VolunteerDetails | NeedsDetails,
    target: VolunteerProfile | ResidentNeeds | VolunteerRecord | NeedsRecord,
) -> bool:
    changed = False
    for name in _DETAIL_FIELDS[type(source)]:
        value = getattr(source, name)
        if isinstance(value, tuple):
            value = sorted(set(value))
        if getattr(target, name, None) != value:
            setattr(target, name, value)
            changed = True
    return changed


_DETAIL_FIELDS: dict[type, tuple[str, ...]] = {
    kind: tuple(f.name for f in fields(kind)) for kind in (VolunteerDetails, NeedsDetails)
}


def merge_people(
    session: Session, *, keep: Person, absorb: Person, actor: str, now: datetime
) -> None:
    """Fold ``absorb`` into ``keep``: fill gaps, join skills and needs, move every linked row."""
    for attr in (
        "name",
        "phone",
        "telegram_chat_id",
        "birth_year",
        "zone_id",
        "address",
        "lat",
        "lon",
        "external_ref",
    ):
        if getattr(keep, attr) is None and getattr(absorb, attr) is not None:
            value = getattr(absorb, attr)
            setattr(absorb, attr, None)  # unique keys must be free before they move
            session.flush()
            setattr(keep, attr, value)
            if attr == "phone":  # how the number is known goes with it
                keep.phone_source = absorb.phone_source
                keep.phone_verified_at = absorb.phone_verified_at
    if absorb.phone_kind != PhoneKind.UNKNOWN and keep.phone == absorb.phone:
        keep.phone_kind = absorb.phone_kind
    if keep.telegram_chat_id is not None:
        keep.channel = Channel.TELEGRAM
    keep.is_volunteer = keep.is_volunteer or absorb.is_volunteer
    keep.needs_help = keep.needs_help or absorb.needs_help
    if absorb.volunteer is not None:
        if keep.volunteer is None:
            keep.volunteer = VolunteerProfile(
                skills=list(absorb.volunteer.skills),
                languages=list(absorb.volunteer.languages),
                available_routine=absorb.volunteer.available_routine,
                available_emergency=absorb.volunteer.available_emergency,
                has_vehicle=absorb.volunteer.has_vehicle,
                checkin_capacity=absorb.volunteer.checkin_capacity,
            )
        else:
            keep.volunteer.skills = sorted(
                set(keep.volunteer.skills) | set(absorb.volunteer.skills)
            )
            keep.volunteer.languages = sorted(
                set(keep.volunteer.languages) | set(absorb.volunteer.languages)
            )
            keep.volunteer.has_vehicle = keep.volunteer.has_vehicle or absorb.volunteer.has_vehicle
    if absorb.needs is not None:
        if keep.needs is None:
            keep.needs = ResidentNeeds()
        for flag in NEED_FLAGS:
            setattr(keep.needs, flag, getattr(keep.needs, flag) or getattr(absorb.needs, flag))
        for attr in ("emergency_contact_name", "emergency_contact_phone"):
            if getattr(keep.needs, attr) is None:
                setattr(keep.needs, attr, getattr(absorb.needs, attr))
    session.flush()

    for model, column in (
        (Consent, Consent.person_id),
        (RoleAssignment, RoleAssignment.person_id),
        (BuddyAssignment, BuddyAssignment.resident_id),
        (BuddyAssignment, BuddyAssignment.volunteer_id),
        (AuditEntry, AuditEntry.person_id),
    ):
        session.execute(update(model).where(column == absorb.id).values({column.key: keep.id}))
    existing_groups = set(
        session.scalars(select(GroupMember.group_id).where(GroupMember.person_id == keep.id))
    )
    session.execute(
        delete(GroupMember).where(
            GroupMember.person_id == absorb.id, GroupMember.group_id.in_(existing_groups)
        )
    )
    session.execute(
        update(GroupMember).where(GroupMember.person_id == absorb.id).values(person_id=keep.id)
    )
    session.expire_all()
    session.delete(session.get(Person, absorb.id))
    session.flush()
    audit.record(
        session, actor=actor, action="person.merge", person_id=keep.id, at=now, absorbed=absorb.id
    )


def record_consent(
    session: Session,
    *,
    person: Person,
    kind: ConsentKind,
    version: str,
    language: Language,
    text: str,
    channel: Source,
    given_by: ConsentGiver,
    actor: str,
    guardian_name: str | None = None,
    now: datetime | None = None,
) -> Consent:
    """Record exactly what was agreed to; an earlier consent of the same kind stays as history."""
    now = now or utcnow()
    consent = Consent(
        person_id=person.id,
        kind=kind,
        version=version,
        language=language,
        text=text,
        channel=channel,
        given_by=given_by,
        guardian_name=clean_text(guardian_name, MAX_NAME) if guardian_name else None,
        given_at=now,
    )
    session.add(consent)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="consent.give",
        person_id=person.id,
        at=now,
        kind=kind.value,
        version=version,
    )
    return consent


@dataclass(frozen=True)
class ConsentGrant:
    """One consent to record in bulk; the fields of :func:`record_consent`."""

    person_id: int
    kind: ConsentKind
    version: str
    language: Language
    text: str
    channel: Source
    given_by: ConsentGiver
    guardian_name: str | None = None


def record_consents(
    session: Session,
    *,
    grants: Sequence[ConsentGrant],
    actor: str,
    now: datetime | None = None,
) -> int:
    """:func:`record_consent` for many people at once (an import), with the same audit entries."""
    now = now or utcnow()
    rows = [
        {
            "person_id": g.person_id,
            "kind": g.kind,
            "version": g.version,
            "language": g.language,
            "text": g.text,
            "channel": g.channel,
            "given_by": g.given_by,
            "guardian_name": clean_text(g.guardian_name, MAX_NAME) if g.guardian_name else None,
            "given_at": now,
            "withdrawn_at": None,
        }
        for g in grants
    ]
    bulk_insert(session, Consent, rows)
    audit_rows = []
    shared: dict[tuple[ConsentKind, str], object] = {}  # equal details, one object: encoded once
    for g in grants:
        entry = audit.entry_row(
            actor=actor,
            action="consent.give",
            person_id=g.person_id,
            at=now,
            kind=g.kind.value,
            version=g.version,
        )
        entry["detail"] = shared.setdefault((g.kind, g.version), entry["detail"])
        audit_rows.append(entry)
    bulk_insert(session, AuditEntry, audit_rows)
    return len(rows)


def has_consent(session: Session, person: Person, kind: ConsentKind) -> bool:
    query = select(Consent.id).where(
        Consent.person_id == person.id, Consent.kind == kind, Consent.withdrawn_at.is_(None)
    )
    return session.scalar(query.limit(1)) is not None


def age_in(person: Person, year: int) -> int | None:
    return rules.age(person.birth_year, year)


def ensure_may_take_role(session: Session, person: Person, *, now: datetime | None = None) -> None:
    """Refuse a role to a minor without a recorded guardian consent, or to someone of unknown age."""
    age = age_in(person, (now or utcnow()).year)
    if age is None:
        raise ConsentRequired("role.birth_year_required")
    if age < ADULT_AGE and not has_consent(session, person, ConsentKind.GUARDIAN):
        raise ConsentRequired("role.guardian_consent_required")


def confirm_phone(
    session: Session, person: Person, *, actor: str, now: datetime | None = None
) -> bool:
    """A staff member checked that the person holds their number (say, by calling it).

    Returns False when there is no number or it was proven already.
    """
    now = now or utcnow()
    if person.phone is None or person.phone_verified_at is not None:
        return False
    person.phone_source = PhoneSource.STAFF
    person.phone_verified_at = now
    person.phone_disputed_at = None
    audit.record(session, actor=actor, action="phone.confirm", person_id=person.id, at=now)
    return True


def opt_out(session: Session, person: Person, *, actor: str, now: datetime | None = None) -> bool:
    """Stop every message to the person. Their volunteer assignments are released for reassignment.

    Returns False when they had already opted out (a repeated STOP changes nothing).
    """
    now = now or utcnow()
    if person.status in (PersonStatus.OPTED_OUT, PersonStatus.ERASED):
        return False
    person.status = PersonStatus.OPTED_OUT
    person.opted_out_at = now
    _release_volunteer_assignments(session, person)
    audit.record(session, actor=actor, action="person.opt_out", person_id=person.id, at=now)
    return True


def opt_in(session: Session, person: Person, *, actor: str, now: datetime | None = None) -> bool:
    """Undo an opt-out or a pause (START / UNSTOP)."""
    now = now or utcnow()
    if person.status not in (PersonStatus.OPTED_OUT, PersonStatus.PAUSED):
        return False
    person.status = PersonStatus.ACTIVE
    person.opted_out_at = None
    audit.record(session, actor=actor, action="person.opt_in", person_id=person.id, at=now)
    return True


def pause(session: Session, person: Person, *, actor: str, now: datetime | None = None) -> bool:
    """Routine messages stop; unlike opt-out, assignments are kept and emergencies still reach them."""
    now = now or utcnow()
    if person.status != PersonStatus.ACTIVE:
        return False
    person.status = PersonStatus.PAUSED
    audit.record(session, actor=actor, action="person.pause", person_id=person.id, at=now)
    return True


def erase(session: Session, person: Person, *, actor: str, now: datetime | None = None) -> None:
    """Remove every personal field; keep the row's zone and roles-in-general for anonymous counts."""
    now = now or utcnow()
    _release_volunteer_assignments(session, person)
    session.execute(
        update(BuddyAssignment)
        .where(
            BuddyAssignment.resident_id == person.id, BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT)
        )
        .values(status=AssignmentStatus.RELEASED, updated_at=now)
    )
    session.execute(delete(GroupMember).where(GroupMember.person_id == person.id))
    # Consent kept for proof is reduced to what shows it was given and withdrawn (kind, version,
    # language, channel, who gave it, when): the version names the text, so no copy stays.
    session.execute(
        update(Consent)
        .where(Consent.person_id == person.id)
        .values(guardian_name=None, text="", withdrawn_at=func.coalesce(Consent.withdrawn_at, now))
    )
    # The codes sent to their number hold it, and who asked: they go with the rest.
    codes = [PhoneCode.person_id == person.id]
    if person.phone:
        codes.append(PhoneCode.phone == person.phone)
        codes.append(PhoneCode.requester == requester_of(Channel.SMS.value, person.phone))
    if person.telegram_chat_id is not None:
        chat = str(person.telegram_chat_id)
        codes.append(PhoneCode.requester == requester_of(Channel.TELEGRAM.value, chat))
    session.execute(delete(PhoneCode).where(or_(*codes)))
    person.volunteer = None
    person.needs = None
    for attr in (
        "name",
        "phone",
        "phone_to_fix",
        "telegram_chat_id",
        "birth_year",
        "address",
        "lat",
        "lon",
        "external_ref",
    ):
        setattr(person, attr, None)
    person.phone_kind = PhoneKind.UNKNOWN
    person.phone_source = None
    person.phone_verified_at = None
    person.phone_disputed_at = None
    person.channel = Channel.NONE
    person.status = PersonStatus.ERASED
    person.erased_at = now
    person.updated_at = now
    session.flush()
    audit.record(session, actor=actor, action="person.erase", person_id=person.id, at=now)


def _release_volunteer_assignments(session: Session, person: Person) -> None:
    for model, column in (
        (RoleAssignment, RoleAssignment.person_id),
        (BuddyAssignment, BuddyAssignment.volunteer_id),
    ):
        session.execute(
            update(model)
            .where(column == person.id, model.status.in_(ACTIVE_ASSIGNMENT))
            .values(status=AssignmentStatus.RELEASED, pinned=False)
        )
