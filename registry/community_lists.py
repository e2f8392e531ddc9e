"""Lists of communities and resources from CSV: groups with their coordinators, group members,
and community resources.

The files are read like the municipal lists (``registry.importer``: Hebrew or English headers,
UTF-8, Windows-1255 or UTF-16, commas, semicolons or tabs). Every row gets an outcome (created,
updated, unchanged, skipped) and its problems as catalog keys, which the officer reads in their
own language; a bad row never costs a good one. Each row is checked in full before anything of it
is written, so a refused row leaves nothing behind.

A member must already be registered (found by phone in the authority): people give their own
details and consent by joining with the group's code; a list cannot do it for them. A
coordinator is registered by the list if need be, as staff register a coordinator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from registry import rules
from registry.db import utcnow
from registry.errors import RegistryError
from registry.groups import (
    add_coordinator,
    add_member,
    check_coordinator,
    find_group,
    save_group,
)
from registry.importer import (
    ListUnreadable,
    Outcome,
    Problem,
    RowReport,
    normalise_header,
    read_list,
)
from registry.models import Authority, GroupKind, Person, Zone
from registry.phones import Phone, normalise_phone
from registry.resources import ResourceKind, ResourceState, parse_state, save_resource

CommunityListKind = Literal["groups", "members", "resources"]

COLUMNS: dict[CommunityListKind, dict[str, tuple[str, ...]]] = {
    "groups": {
        "code": ("קוד", "קוד הצטרפות", "code", "join code"),
        "name": ("שם", "שם הקבוצה", "קבוצה", "name", "group", "group name"),
        "kind": ("סוג", "kind", "type"),
        "zones": ("שכונות", "שכונה", "אזור", "zones", "zone", "neighbourhoods", "neighborhoods"),
        "coordinator_name": ("רכז", "רכז/ת", "שם רכז", "coordinator", "coordinator name"),
        "coordinator_phone": ("טלפון רכז", "טלפון רכז/ת", "coordinator phone"),
        "coordinator_birth_year": (
            "שנת לידה רכז", "שנת לידה", "coordinator birth year", "coordinator born", "birth year",
        ),
    },
    "members": {
        "code": ("קוד", "קוד הצטרפות", "קבוצה", "code", "join code", "group"),
        "phone": ("טלפון", "נייד", "phone", "mobile"),
        "name": ("שם", "name"),
        "role": ("תפקיד", "role"),
        "birth_year": ("שנת לידה", "birth year", "born"),
    },
    "resources": {
        "code": ("קוד", "מזהה", "code", "id"),
        "name": ("שם", "name"),
        "kind": ("סוג", "kind", "type"),
        "zone": ("שכונה", "אזור", "zone", "neighbourhood", "neighborhood"),
        "contact_name": ("איש קשר", "בעלים", "owner", "contact", "contact name"),
        "contact_phone": ("טלפון", "טלפון איש קשר", "phone", "contact phone"),
        "capacity": ("קיבולת", "capacity"),
        "state": ("מצב", "state", "status"),
    },
}  # fmt: skip
REQUIRED: dict[CommunityListKind, tuple[str, ...]] = {
    "groups": ("name", "kind"),
    "members": ("code", "phone"),
    "resources": ("code", "name", "kind", "zone"),
}

# Words a municipal spreadsheet uses for a kind, besides the kind's own value.
GROUP_KIND_WORDS: dict[str, GroupKind] = {
    "תנועת נוער": GroupKind.YOUTH_MOVEMENT,
    "youth movement": GroupKind.YOUTH_MOVEMENT,
    "ועד בית": GroupKind.BUILDING_COMMITTEE,
    "building committee": GroupKind.BUILDING_COMMITTEE,
    "ועד הורים": GroupKind.SCHOOL_COMMITTEE,
    "ועד בית ספר": GroupKind.SCHOOL_COMMITTEE,
    "school committee": GroupKind.SCHOOL_COMMITTEE,
    "ועד גן": GroupKind.KINDERGARTEN_COMMITTEE,
    "kindergarten committee": GroupKind.KINDERGARTEN_COMMITTEE,
    'מתנ"ס': GroupKind.COMMUNITY_CENTRE,
    "מתנס": GroupKind.COMMUNITY_CENTRE,
    "מרכז קהילתי": GroupKind.COMMUNITY_CENTRE,
    "community centre": GroupKind.COMMUNITY_CENTRE,
    "community center": GroupKind.COMMUNITY_CENTRE,
    "שירות לאומי": GroupKind.NATIONAL_SERVICE,
    "national service": GroupKind.NATIONAL_SERVICE,
    "אחר": GroupKind.OTHER,
}
RESOURCE_KIND_WORDS: dict[str, ResourceKind] = {
    "גנרטור": ResourceKind.GENERATOR,
    "רכב": ResourceKind.VEHICLE,
    "רכב נגיש": ResourceKind.ACCESSIBLE_VEHICLE,
    "accessible vehicle": ResourceKind.ACCESSIBLE_VEHICLE,
    "מקלט נגיש": ResourceKind.ACCESSIBLE_SHELTER,
    "accessible shelter": ResourceKind.ACCESSIBLE_SHELTER,
    'מתנ"ס': ResourceKind.COMMUNITY_CENTRE,
    "מתנס": ResourceKind.COMMUNITY_CENTRE,
    "מרכז קהילתי": ResourceKind.COMMUNITY_CENTRE,
    "community centre": ResourceKind.COMMUNITY_CENTRE,
    "community center": ResourceKind.COMMUNITY_CENTRE,
    "מים": ResourceKind.WATER,
    "אחר": ResourceKind.OTHER,
}
STATE_WORDS_HE = {
    "זמין": ResourceState.AVAILABLE,
    "בשימוש": ResourceState.IN_USE,
    "לא תקין": ResourceState.OUT_OF_SERVICE,
    "תקול": ResourceState.OUT_OF_SERVICE,
}
COORDINATOR_WORDS = frozenset({"coordinator", "רכז", "רכזת", "רכז/ת", "מדריך", "מדריכה"})


@dataclass
class CommunityReport:
    kind: CommunityListKind
    encoding: str
    dry_run: bool
    columns: dict[str, str]
    ignored_columns: list[str]
    rows: list[RowReport] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        totals = {o.value: sum(1 for r in self.rows if r.outcome == o) for o in Outcome}
        totals["rows"] = len(self.rows)
        return totals

    def problem_lines(self, language: Language) -> Iterator[str]:
        """One line per row with problems, in ``language``."""
        for row in self.rows:
            if not (row.problems or row.warnings):
                continue
            reasons = [p.render(language) for p in row.problems] + [
                t(language, "lists.warning", message=p.render(language)) for p in row.warnings
            ]
            outcome = t(language, f"community_lists.outcome.{row.outcome.value}")
            yield t(
                language, "community_lists.row", row=row.row, outcome=outcome,
                reasons=" ".join(reasons),
            )  # fmt: skip

    def as_json(self, language: Language) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "encoding": self.encoding,
            "dry_run": self.dry_run,
            "columns": self.columns,
            "ignored_columns": self.ignored_columns,
            "totals": self.totals,
            "rows": [
                {
                    "row": r.row,
                    "outcome": r.outcome.value,
                    "problems": [{"key": p.key, "message": p.render(language)} for p in r.problems],
                    "warnings": [{"key": p.key, "message": p.render(language)} for p in r.warnings],
                }
                for r in self.rows
            ],
        }


class _Skip(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _problem(exc: RegistryError) -> Problem:
    return Problem(exc.key, {k: str(v) for k, v in exc.params.items()})


def _word(text: str) -> str:
    return " ".join(normalise_header(text).split())


def _kind(text: str, words: dict[str, Any], enum: Any) -> Any:
    word = _word(text)
    for member in enum:
        if word in (member.value, member.value.replace("_", " ")):
            return member
    found = words.get(word) or words.get(text.strip())
    if found is None:
        choices = ", ".join(m.value for m in enum)
        raise _Skip(
            Problem("community_lists.kind_unknown", {"value": text[:40], "choices": choices})
        )
    return found


def zone_named(session: Session, authority: Authority, text: str) -> Zone | None:
    """A zone of the authority by its code or its name in any language, whatever the case."""
    word = text.strip().casefold()
    for zone in session.scalars(select(Zone).where(Zone.authority_id == authority.id)):
        names = {zone.code, zone.name, *zone.names.values()}
        if word in {n.casefold() for n in names if n}:
            return zone
    return None


def _phone(text: str, region: str) -> Phone:
    try:
        return normalise_phone(text, region=region)
    except RegistryError as exc:
        raise _Skip(Problem("community_lists.phone_invalid", {"value": text[:40]})) from exc


def _year(text: str, year: int) -> int | None:
    if not text:
        return None
    if text.isdecimal() and rules.plausible_birth_year(int(text), year):
        return int(text)
    raise _Skip(Problem("community_lists.birth_year_invalid", {"value": text[:20]}))


def import_community_list(
    session: Session,
    *,
    data: bytes,
    kind: CommunityListKind,
    authority: Authority,
    region: str,
    actor: str,
    dry_run: bool = False,
    now: datetime | None = None,
) -> CommunityReport:
    """Import a list of groups, members or resources. Raises :class:`ListUnreadable` when the
    file as a whole cannot be read or lacks a required column; otherwise reports every row."""
    now = now or utcnow()
    raw = read_list(data)
    aliases = {
        normalise_header(alias): name
        for name, spellings in COLUMNS[kind].items()
        for alias in (name, *spellings)
    }
    index: dict[str, int] = {}
    columns: dict[str, str] = {}
    ignored: list[str] = []
    for i, title in enumerate(raw.header):
        name = aliases.get(normalise_header(title))
        if name is not None and name not in index:
            index[name] = i
            columns[title] = name
        elif title.strip():
            ignored.append(title)
    missing = [name for name in REQUIRED[kind] if name not in index]
    if missing:
        raise ListUnreadable("community_lists.missing_columns", columns=", ".join(missing))
    report = CommunityReport(kind, raw.encoding, dry_run, columns, ignored)
    handle: Callable[[dict[str, str]], Outcome] = {
        "groups": lambda cells: _group_row(session, authority, cells, region, actor, now),
        "members": lambda cells: _member_row(session, authority, cells, region, actor, now),
        "resources": lambda cells: _resource_row(session, authority, cells, region, actor, now),
    }[kind]
    for line, record in raw.records:
        if record is None:
            report.rows.append(
                RowReport(line, Outcome.SKIPPED, problems=[Problem("lists.row_malformed")])
            )
            continue
        cells = {name: record[i].strip() if i < len(record) else "" for name, i in index.items()}
        try:
            outcome = handle(cells)
        except _Skip as skip:
            report.rows.append(RowReport(line, Outcome.SKIPPED, problems=[skip.problem]))
            continue
        except RegistryError as exc:
            report.rows.append(RowReport(line, Outcome.SKIPPED, problems=[_problem(exc)]))
            continue
        report.rows.append(RowReport(line, outcome))
    return report


def _group_row(
    session: Session,
    authority: Authority,
    cells: dict[str, str],
    region: str,
    actor: str,
    now: datetime,
) -> Outcome:
    kind = _kind(cells["kind"], GROUP_KIND_WORDS, GroupKind)
    zones: list[Zone] = []
    for word in filter(
        None, (w.strip() for w in cells.get("zones", "").replace(";", ",").split(","))
    ):
        zone = zone_named(session, authority, word)
        if zone is None:
            raise _Skip(Problem("community_lists.zone_unknown", {"value": word[:40]}))
        zones.append(zone)
    phone_text = cells.get("coordinator_phone", "")
    phone = _phone(phone_text, region) if phone_text else None
    born = _year(cells.get("coordinator_birth_year", ""), now.year)
    if phone is not None:  # checked before the group is written
        check_coordinator(session, authority_id=authority.id, phone=phone, birth_year=born, now=now)
    group, created = save_group(
        session,
        authority=authority,
        name=cells["name"],
        kind=kind,
        zones=zones,
        code=cells.get("code") or None,
        actor=actor,
        now=now,
    )
    if phone is not None:
        add_coordinator(
            session,
            group=group,
            name=cells.get("coordinator_name", ""),
            phone=phone,
            birth_year=born,
            actor=actor,
            now=now,
        )
    return Outcome.CREATED if created else Outcome.UPDATED


def _member_row(
    session: Session,
    authority: Authority,
    cells: dict[str, str],
    region: str,
    actor: str,
    now: datetime,
) -> Outcome:
    group = find_group(session, cells["code"])
    if group is None or group.authority_id != authority.id:
        raise _Skip(Problem("community_lists.group_unknown", {"value": cells["code"][:40]}))
    phone = _phone(cells["phone"], region)
    if _word(cells.get("role", "")) in COORDINATOR_WORDS:
        add_coordinator(
            session,
            group=group,
            name=cells.get("name", ""),
            phone=phone,
            birth_year=_year(cells.get("birth_year", ""), now.year),
            actor=actor,
            now=now,
        )
        return Outcome.UPDATED
    person = session.scalar(
        select(Person).where(Person.authority_id == authority.id, Person.phone == phone.e164)
    )
    if person is None:
        raise _Skip(Problem("community_lists.member_unknown", {"code": group.join_code}))
    added = add_member(session, group=group, person=person, actor=actor, now=now)
    return Outcome.CREATED if added else Outcome.UNCHANGED


def _resource_row(
    session: Session,
    authority: Authority,
    cells: dict[str, str],
    region: str,
    actor: str,
    now: datetime,
) -> Outcome:
    kind = _kind(cells["kind"], RESOURCE_KIND_WORDS, ResourceKind)
    zone = zone_named(session, authority, cells["zone"])
    if zone is None:
        raise _Skip(Problem("community_lists.zone_unknown", {"value": cells["zone"][:40]}))
    capacity_text = cells.get("capacity", "")
    capacity: int | None = None
    if capacity_text:
        if not capacity_text.isdecimal():
            raise _Skip(Problem("community_lists.capacity_invalid", {"value": capacity_text[:20]}))
        capacity = int(capacity_text)
    state_text = cells.get("state", "")
    state: ResourceState | None = None
    if state_text:
        state = parse_state(state_text) or STATE_WORDS_HE.get(state_text.strip())
        if state is None:
            raise _Skip(Problem("community_lists.state_unknown", {"value": state_text[:30]}))
    phone_text = cells.get("contact_phone", "")
    _resource, created = save_resource(
        session,
        authority=authority,
        zone=zone,
        code=cells["code"],
        kind=kind,
        name=cells["name"],
        contact_name=cells.get("contact_name") or None,
        contact_phone=_phone(phone_text, region) if phone_text else None,
        capacity=capacity,
        state=state,
        actor=actor,
        now=now,
    )
    return Outcome.CREATED if created else Outcome.UPDATED
