"""CSV export of the registry's people, in the columns the importer reads back.

UTF-8 with a BOM by default, so that Excel opens Hebrew, Arabic, Russian and Amharic correctly;
Windows-1255 on request (it holds Hebrew and Latin only, so an export that would lose a name is
refused). Health data leave only when asked for explicitly, and every such export is written to
the audit log, one ``needs.read`` entry per person, purpose ``export``. An export imports back
unchanged (``hosen import residents FILE``): a person is found again by reference or phone.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from registry import audit
from registry.bulk import bulk_insert
from registry.db import utcnow
from registry.errors import RegistryError
from registry.models import NEED_FLAGS, AuditEntry, Authority, Person, PersonStatus, Zone
from registry.spreadsheet import SafeWriter

Encoding = Literal["utf-8", "cp1255"]

# (field the importer reads, Hebrew header, English header): every header is in the importer's
# alias table, which a test checks.
BASE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("municipal_id", "מס' רשומה", "municipal id"),
    ("name", "שם", "name"),
    ("phone", "טלפון", "phone"),
    ("zone", "שכונה", "zone"),
    ("address", "כתובת", "address"),
    ("birth_year", "שנת לידה", "birth year"),
    ("language", "שפה", "language"),
    ("needs_help", "זקוק לסיוע", "needs help"),
    ("is_volunteer", "מתנדב", "volunteer"),
    ("skills", "כישורים", "skills"),
    ("languages", "שפות", "languages spoken"),
    ("has_vehicle", "רכב", "has vehicle"),
    ("checkin_capacity", "כמה אנשים", "checkin capacity"),
    ("available_routine", "זמינות בשגרה", "available routine"),
    ("available_emergency", "זמינות בחירום", "available emergency"),
)
NEEDS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("lives_alone", "גר לבד", "lives alone"),
    ("mobility", "מוגבלות בניידות", "mobility"),
    ("bedridden", "מרותק למיטה", "bedridden"),
    ("powered_medical_equipment", "מכשור רפואי", "medical equipment"),
    ("sight", "לקות ראייה", "sight"),
    ("hearing", "לקות שמיעה", "hearing"),
    ("cognitive", "לקות קוגניטיבית", "cognitive"),
    ("regular_medication", "תרופות קבועות", "regular medication"),
    ("young_children", "ילדים קטנים", "young children"),
    ("no_shelter_access", "ללא מרחב מוגן", "no shelter access"),
    ("emergency_contact_name", "איש קשר לחירום", "emergency contact"),
    ("emergency_contact_phone", "טלפון איש קשר", "emergency contact phone"),
)
assert tuple(name for name, _, _ in NEEDS_COLUMNS[: len(NEED_FLAGS)]) == NEED_FLAGS


def export_people(
    session: Session,
    *,
    authority: Authority,
    path: Path,
    include_needs: bool = False,
    encoding: Encoding = "utf-8",
    hebrew_headers: bool = True,
    actor: str = "export",
    now: datetime | None = None,
) -> int:
    """Write every person of ``authority`` (erased ones excepted) to ``path``; returns the count.

    Nothing is written when ``cp1255`` cannot hold someone's name or address.
    """
    now = now or utcnow()
    columns = BASE_COLUMNS + (NEEDS_COLUMNS if include_needs else ())
    yes, no = ("כן", "לא") if hebrew_headers else ("yes", "no")
    zones = {
        z.id: z.code for z in session.scalars(select(Zone).where(Zone.authority_id == authority.id))
    }
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.writerow([he if hebrew_headers else en for _, he, en in columns])
    needs_read: list[int] = []
    count = 0
    unencodable = 0
    for person in _people(session, authority, include_needs=include_needs):
        row = _row(person, zones, include_needs=include_needs, yes=yes, no=no)
        if encoding == "cp1255" and not _encodes(row, "cp1255"):
            unencodable += 1
        writer.writerow(row)
        if include_needs and person.needs is not None:
            needs_read.append(person.id)
        count += 1
    if unencodable:
        raise RegistryError("lists.export_unencodable", count=unencodable)
    # UTF-8 with a BOM: without it Excel reads the file as the machine's legacy code page.
    path.write_text(out.getvalue(), encoding="utf-8-sig" if encoding == "utf-8" else "cp1255")
    bulk_insert(
        session,
        AuditEntry,
        [
            audit.entry_row(
                actor=actor, action="needs.read", person_id=person_id, at=now, purpose="export"
            )
            for person_id in needs_read
        ],
    )
    return count


def _people(session: Session, authority: Authority, *, include_needs: bool) -> Iterator[Person]:
    options = [selectinload(Person.volunteer)]
    if include_needs:
        options.append(selectinload(Person.needs))
    query = (
        select(Person)
        .where(Person.authority_id == authority.id, Person.status != PersonStatus.ERASED)
        .order_by(Person.id)
        .options(*options)
        .execution_options(yield_per=1000)
    )
    yield from session.scalars(query)


def _row(
    person: Person, zones: dict[int, str], *, include_needs: bool, yes: str, no: str
) -> list[str]:
    def flag(value: bool) -> str:
        return yes if value else no

    volunteer = person.volunteer
    row = [
        person.external_ref or "",
        person.name or "",
        local_phone(person.phone),
        zones.get(person.zone_id, "") if person.zone_id else "",
        person.address or "",
        str(person.birth_year) if person.birth_year else "",
        person.language.value,
        flag(person.needs_help),
        flag(person.is_volunteer),
    ]
    if volunteer is not None and person.is_volunteer:
        row += [
            ", ".join(volunteer.skills),
            ", ".join(volunteer.languages),
            flag(volunteer.has_vehicle),
            str(volunteer.checkin_capacity),
            flag(volunteer.available_routine),
            flag(volunteer.available_emergency),
        ]
    else:
        row += [""] * 6
    if include_needs:
        needs = person.needs
        if needs is not None and person.needs_help:
            row += [flag(getattr(needs, name)) for name in NEED_FLAGS]
            row += [needs.emergency_contact_name or "", local_phone(needs.emergency_contact_phone)]
        else:
            row += [""] * len(NEEDS_COLUMNS)
    return row


def local_phone(e164: str | None) -> str:
    """An Israeli number as people write it (050-123-4567): Excel keeps it as text, and a
    leading + would make it a number and drop the zero."""
    if not e164:
        return ""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    if parsed.country_code != 972:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


def _encodes(row: list[str], encoding: str) -> bool:
    try:
        "".join(row).encode(encoding)
    except UnicodeEncodeError:
        return False
    return True
