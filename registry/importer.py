"""Import of municipal lists from CSV: the welfare department's at-risk residents, volunteer lists.

Municipal spreadsheets arrive in Hebrew or English, UTF-8 (with or without BOM), Windows-1255 or
Excel's UTF-16 "Unicode text", separated by commas, semicolons or tabs. Every row gets an outcome
(created, updated, unchanged, skipped) with the reasons, by row number; a bad row never costs a
good one. Importing the same file twice changes nothing: a person is found again by the list's
name and municipal id (``welfare:1234``) when the list has an id column, otherwise by phone.

Only what a column gives is changed: a list without a "mobility" column leaves a resident's
mobility need as it was. The registry's own rules (``registry.people``) decide everything else.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import gc
import io
import itertools
import operator
import queue
import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, BinaryIO, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from config.profile import Profile
from registry import audit, rules
from registry.bulk import bulk_insert
from registry.db import utcnow
from registry.errors import RegistryError
from registry.models import (
    NEED_FLAGS,
    AuditEntry,
    Authority,
    Channel,
    Consent,
    ConsentGiver,
    ConsentKind,
    Person,
    PhoneSource,
    Source,
    Zone,
)
from registry.people import (
    ConsentGrant,
    NeedsDetails,
    PeopleIndex,
    PersonDetails,
    PersonRecord,
    RecordIndex,
    VolunteerDetails,
    apply_details,
    insert_records,
    record_consents,
    register_people,
    sort_matches,
    update_records,
)
from registry.phones import Phone, UnusablePhone, is_no_phone, normalise_phone

ListKind = Literal["residents", "volunteers"]
BATCH = 5000  # rows looked up and written together
MAX_BYTES = 200 * 1024 * 1024


class ListUnreadable(RegistryError):
    """The file as a whole cannot be read (encoding, no known header); nothing was imported."""


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a row was skipped, or a warning about one cell (the row was kept without it)."""

    key: str  # catalog key
    params: dict[str, str | int] = field(default_factory=dict)
    reason: str | None = None  # catalog key of the why, rendered as ``{reason}`` in the message

    def render(self, language: Language) -> str:
        reason = {"reason": t(language, self.reason)} if self.reason else {}
        return t(language, self.key, **self.params, **reason)


@dataclass(slots=True)
class RowReport:
    row: int  # line number in the file; the header is line 1
    outcome: Outcome
    person_id: int | None = None
    changed: list[str] = field(default_factory=list)  # field names only, never values
    problems: list[Problem] = field(default_factory=list)  # skip reasons
    warnings: list[Problem] = field(default_factory=list)


@dataclass
class ImportReport:
    list_name: str
    list_version: str
    kind: ListKind
    encoding: str
    delimiter: str
    dry_run: bool
    columns: dict[str, str]  # header as written -> field it was read as
    ignored_columns: list[str]
    rows: list[RowReport] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.rows if r.outcome == outcome)

    @property
    def totals(self) -> dict[str, int]:
        totals = {outcome.value: self.count(outcome) for outcome in Outcome}
        totals["rows"] = len(self.rows)
        totals["with_warnings"] = sum(1 for r in self.rows if r.warnings)
        return totals

    def problem_rows(self) -> list[RowReport]:
        return [r for r in self.rows if r.problems or r.warnings]

    def as_json(self, language: Language = Language.EN) -> dict[str, Any]:
        """The report without personal data: row numbers, outcomes, field names and reasons."""
        return {
            "list": self.list_name,
            "version": self.list_version,
            "kind": self.kind,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "dry_run": self.dry_run,
            "columns": self.columns,
            "ignored_columns": self.ignored_columns,
            "totals": self.totals,
            "rows": [
                {
                    "row": r.row,
                    "outcome": r.outcome.value,
                    "person_id": r.person_id,
                    "changed": r.changed,
                    "problems": [_problem_json(p, language) for p in r.problems],
                    "warnings": [_problem_json(p, language) for p in r.warnings],
                }
                for r in self.rows
            ],
        }


def _problem_json(problem: Problem, language: Language) -> dict[str, Any]:
    reason = {"reason": problem.reason} if problem.reason else {}
    return {"key": problem.key, "message": problem.render(language), **problem.params, **reason}


# -------------------------------------------------------------------------- reading the file


@dataclass(frozen=True)
class RawList:
    encoding: str
    delimiter: str
    header: list[str]
    records: list[tuple[int, list[str] | None]]  # (line, cells), None: a malformed record


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# A word mixing Hebrew and Latin letters is what another 8-bit encoding (latin-1, cp1252) looks
# like when read as Windows-1255: "José" becomes "Josי".
_MIXED_WORD = re.compile(r"[A-Za-z][\u0590-\u05ff]|[\u0591-\u05ff][A-Za-z]")
_LINE_BREAK = re.compile(r"\r\n|\n|\r")


def decode(data: bytes) -> tuple[str, str]:
    """The text and the encoding it was in: UTF-16 by its BOM, UTF-8, else Windows-1255."""
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise ListUnreadable("lists.unreadable_encoding") from None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1255")
    except UnicodeDecodeError:
        raise ListUnreadable("lists.unreadable_encoding") from None
    if _MIXED_WORD.search(text):
        raise ListUnreadable("lists.unreadable_encoding")
    return text, "cp1255"


def read_list(data: bytes | BinaryIO) -> RawList:
    """Decode, find the delimiter, and split the file into records by line number (all of
    them, in memory: :func:`open_list` streams them)."""
    listing = open_list(data)
    return RawList(listing.encoding, listing.delimiter, listing.header, list(listing.records))


@dataclass
class ListStream:
    """A list being read: its encoding, delimiter and header, and its records as they come."""

    encoding: str
    delimiter: str
    header: list[str]
    records: Iterator[tuple[int, list[str] | None]]  # (line, cells), None: a malformed record


_READ_CHUNK = 1 << 20


def open_list(data: bytes | BinaryIO) -> ListStream:
    """Find the encoding (a first pass over the file, decoding it in chunks), then read the
    header and the delimiter and stream the records: the file is never held whole in memory.

    Each physical line is its own record, so one unclosed quotation mark costs one row and not
    the rest of the file; a quoted cell may still span lines when its quote closes within ten.
    ``data`` is the file's bytes or a seekable binary file.
    """
    stream: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else data
    if not stream.seekable():  # a pipe: read twice, so held once
        stream = io.BytesIO(stream.read(MAX_BYTES + 1))
    stream.seek(0, io.SEEK_END)
    if stream.tell() > MAX_BYTES:
        raise ListUnreadable("lists.too_large", megabytes=MAX_BYTES // (1024 * 1024))
    encoding, codec = _sniff_encoding(stream)
    stream.seek(0)
    lines = _lines(stream, codec)
    first = list(itertools.islice(lines, 6))
    buffered = first
    if first and not first[-1].strip():
        # Blank lines at the end of the file do not count (in the sample, say): look past them.
        more: list[str] = []
        for line in lines:
            more.append(line)
            if line.strip():
                break
        else:
            while first and not first[-1].strip():
                first.pop()
            more = []
        buffered = first + more
    if not first or not first[0].strip():
        raise ListUnreadable("lists.empty")
    sample = "\n".join(first[:6])  # a title line above the header has no delimiters
    delimiter = max((";", ",", "\t"), key=lambda d: (sample.count(d), d == ","))
    header_cells = _parse_record(first[0], delimiter)
    if header_cells is None:
        raise ListUnreadable("lists.no_header")
    records = _records(itertools.chain(buffered[1:], lines), delimiter)
    return ListStream(encoding, "\\t" if delimiter == "\t" else delimiter, header_cells, records)


def _lines(stream: BinaryIO, codec: str) -> Iterator[str]:
    """The stream's lines without their ends (``\\r\\n``, ``\\n`` or ``\\r``); the stream stays
    the caller's to close."""
    text = io.TextIOWrapper(stream, encoding=codec, newline="")
    try:
        for line in text:
            yield line.rstrip("\r\n")
    finally:
        text.detach()


def _sniff_encoding(stream: BinaryIO) -> tuple[str, str]:
    """The list's encoding as reported, and the codec that reads it: UTF-16 by its BOM, UTF-8,
    else Windows-1255 (refused when it reads as another 8-bit encoding would)."""
    stream.seek(0)
    if stream.read(2).startswith(_UTF16_BOMS):
        if _decodes(stream, "utf-16"):
            return "utf-16", "utf-16"
        raise ListUnreadable("lists.unreadable_encoding")
    if _decodes(stream, "utf-8-sig"):
        return "utf-8", "utf-8-sig"
    if _decodes(stream, "cp1255", refuse=_MIXED_WORD):
        return "cp1255", "cp1255"
    raise ListUnreadable("lists.unreadable_encoding")


def _decodes(stream: BinaryIO, codec: str, refuse: re.Pattern[str] | None = None) -> bool:
    """Whether the whole stream decodes with ``codec``; raises when it does but holds NUL
    characters (or, with ``refuse``, text matching it): not a list in that encoding either."""
    stream.seek(0)
    decoder = codecs.getincrementaldecoder(codec)()
    unreadable, tail = False, ""
    try:
        while chunk := stream.read(_READ_CHUNK):
            text = decoder.decode(chunk)
            unreadable = unreadable or "\x00" in text
            if refuse is not None and refuse.search(tail + text):
                unreadable = True
            tail = text[-1:] or tail
        text = decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    if unreadable or "\x00" in text or (refuse is not None and refuse.search(tail + text)):
        raise ListUnreadable("lists.unreadable_encoding")
    return True


def _records(lines: Iterator[str], delimiter: str) -> Iterator[tuple[int, list[str] | None]]:
    """The records after the header, by the line each starts on (the header is line 1)."""
    ahead: deque[str] = deque()
    line_no = 1
    while True:
        if not ahead:
            ahead.extend(itertools.islice(lines, 1))
            if not ahead:
                return
        record = ahead.popleft()
        line_no += 1
        start = line_no
        if record.count('"') % 2:
            ahead.extend(itertools.islice(lines, 10 - len(ahead)))
            joined = record
            for taken, extra in enumerate(ahead, start=1):
                joined += "\n" + extra
                if joined.count('"') % 2 == 0:
                    record = joined
                    for _ in range(taken):
                        ahead.popleft()
                    line_no += taken
                    break
        if not record.strip(delimiter + " \t"):
            continue  # a blank line, or a spreadsheet's empty row of delimiters
        yield start, _parse_record(record, delimiter)


def _parse_record(text: str, delimiter: str) -> list[str] | None:
    if '"' not in text and len(text) <= csv.field_size_limit():
        # Without quotation marks the csv module only splits at the delimiter.
        return [cell.strip() for cell in text.split(delimiter)]
    if text.count('"') % 2:
        return None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error:
        return None
    if len(rows) != 1:
        return None
    return [cell.strip() for cell in rows[0]]


# -------------------------------------------------------------------------- columns

# Headers as municipal spreadsheets write them (normalised: case-folded, Hebrew geresh as an
# apostrophe, "_" and "-" as spaces) and the field each one is.
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "municipal_id": (
        "מס' רשומה", "מספר רשומה", "מזהה", "מס' תושב", "מספר תושב", "מס'", "מספר", "קוד",
        "municipal id", "id", "record", "record id", "record number", "ref", "reference",
    ),
    "first_name": ("שם פרטי", "first name", "firstname", "given name"),
    "last_name": ("שם משפחה", "last name", "lastname", "surname", "family name"),
    "name": ("שם", "שם מלא", "name", "full name"),
    "phone": (
        "טלפון", "טלפון נייד", "נייד", "טל'", "טל", "מספר טלפון", "פלאפון",
        "phone", "mobile", "telephone", "phone number", "tel",
    ),
    "zone": ("שכונה", "אזור", "רובע", "ישוב", "יישוב", "zone", "neighbourhood", "neighborhood", "area", "district"),
    "address": ("כתובת", "רחוב", "address", "street"),
    "birth_year": ("שנת לידה", "birth year", "year of birth", "born", "תאריך לידה", "date of birth", "birth date"),
    "language": ("שפה", "שפת אם", "שפה מועדפת", "language", "preferred language"),
    "needs_help": ("זקוק לסיוע", "זקוק/ה לסיוע", "needs help", "at risk"),
    "is_volunteer": ("מתנדב", "מתנדב/ת", "volunteer"),
    "lives_alone": ("גר לבד", "גר/ה לבד", "גרה לבד", "בודד", "lives alone"),
    "mobility": ("מוגבלות בניידות", "ניידות", "מוגבלות ניידות", "mobility", "limited mobility"),
    "bedridden": ("מרותק למיטה", "מרותק/ת למיטה", "ריתוק למיטה", "bedridden"),
    "powered_medical_equipment": (
        "מכשור רפואי", "תלוי במכשור רפואי", "מכשיר רפואי", "תלות בחשמל",
        "medical equipment", "powered medical equipment",
    ),
    "sight": ("לקות ראייה", "לקות ראיה", "עיוור", "sight", "visual impairment"),
    "hearing": ("לקות שמיעה", "חירש", "hearing", "hearing impairment"),
    "cognitive": ("לקות קוגניטיבית", "קוגניטיבי", "cognitive", "cognitive impairment"),
    "regular_medication": ("תרופות קבועות", "תרופות", "regular medication", "medication"),
    "young_children": ("ילדים קטנים", "ילדים", "young children", "children"),
    "no_shelter_access": (
        "ללא מרחב מוגן", "אין מרחב מוגן", "אין גישה למרחב מוגן", "אין ממ\"ד",
        "no shelter access", "no shelter",
    ),
    "emergency_contact_name": ("איש קשר לחירום", "איש קשר", "emergency contact", "emergency contact name"),
    "emergency_contact_phone": (
        "טלפון איש קשר", "טלפון איש קשר לחירום", "emergency contact phone", "contact phone",
    ),
    "skills": ("כישורים", "מיומנויות", "תחומים", "skills"),
    "languages": ("שפות", "שפות מדוברות", "languages", "languages spoken", "spoken languages"),
    "has_vehicle": ("רכב", "יש רכב", "has vehicle", "vehicle", "car"),
    "checkin_capacity": (
        "כמה אנשים", "מספר אנשים לבדיקה", "קיבולת", "checkin capacity", "check in capacity",
        "capacity",
    ),
    "available_routine": ("זמינות בשגרה", "זמין בשגרה", "available routine", "routine"),
    "available_emergency": ("זמינות בחירום", "זמין בחירום", "available emergency", "emergency"),
    "guardian": (
        "שם הורה", "הורה", "אפוטרופוס", "שם הורה/אפוטרופוס", "הסכמת הורה",
        "guardian", "guardian name", "parent",
    ),
}  # fmt: skip


@functools.lru_cache(maxsize=4096)  # a list repeats its zones, languages and skills
def normalise_header(text: str) -> str:
    text = text.replace("\ufeff", "").translate(_HEADER_MARKS).casefold()
    text = re.sub(r"[_\-]+", " ", text)
    return " ".join(text.split()).strip(" :*")


_HEADER_MARKS = str.maketrans({"\u05f3": "'", "\u05f4": '"', "\u2019": "'", "\u201d": '"'})
_ALIAS_FIELD = {
    normalise_header(alias): name for name, aliases in HEADER_ALIASES.items() for alias in aliases
}
_YES = frozenset({"כן", "yes", "y", "true", "1", "x", "v", "✓", "✔", "+", "t", "כ", "да", "نعم"})
_NO = frozenset({"", "לא", "no", "n", "false", "0", "-", "f", "ל", "нет", "لا"})
_LANGUAGE_WORDS: dict[str, Language] = {
    **{language.value: language for language in Language},
    "עברית": Language.HE, "hebrew": Language.HE, "иврит": Language.HE,
    "ערבית": Language.AR, "arabic": Language.AR, "العربية": Language.AR, "عربي": Language.AR,
    "אנגלית": Language.EN, "english": Language.EN,
    "רוסית": Language.RU, "russian": Language.RU, "русский": Language.RU,
    "אמהרית": Language.AM, "amharic": Language.AM, "አማርኛ": Language.AM,
}  # fmt: skip
_LIST_SEPARATORS = re.compile(r"[,;|\n]")
_BIRTH_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d)(?!\d)")
NEEDS_FIELDS = (*NEED_FLAGS, "emergency_contact_name", "emergency_contact_phone")
VOLUNTEER_FIELDS = (
    "skills",
    "languages",
    "has_vehicle",
    "checkin_capacity",
    "available_routine",
    "available_emergency",
)


@dataclass(frozen=True)
class Columns:
    """Which cell holds which field; the first column of a field wins."""

    positions: dict[str, int]
    named: dict[str, str]
    ignored: list[str]

    @classmethod
    def from_header(cls, header: Sequence[str]) -> Columns:
        positions: dict[str, int] = {}
        named: dict[str, str] = {}
        ignored: list[str] = []
        for position, title in enumerate(header):
            name = _ALIAS_FIELD.get(normalise_header(title))
            if name is None or name in positions:
                if title.strip():
                    ignored.append(title.strip())
                continue
            positions[name] = position
            named[title.strip()] = name
        if not positions:
            raise ListUnreadable("lists.no_header")
        if "name" not in positions and "first_name" not in positions:
            raise ListUnreadable("lists.missing_name_column")
        if "phone" not in positions and "municipal_id" not in positions:
            raise ListUnreadable("lists.missing_key_column")
        return cls(positions, named, ignored)

    def has(self, name: str) -> bool:
        return name in self.positions

    @functools.cached_property
    def flags(self) -> tuple[str, ...]:
        """The need flags the list has a column for."""
        return tuple(flag for flag in NEED_FLAGS if flag in self.positions)

    def pick(self, cells: Sequence[str]) -> tuple[str, ...]:
        """The cells of the known fields, in the order of ``positions``."""
        return self._picker(cells)

    @functools.cached_property
    def _picker(self) -> Callable[[Sequence[str]], tuple[str, ...]]:
        positions = list(self.positions.values())
        if len(positions) == 1:
            return lambda cells: (cells[positions[0]],)
        return operator.itemgetter(*positions)

    def title(self, name: str) -> str:
        return next(title for title, field_name in self.named.items() if field_name == name)


def _find_header(listing: ListStream) -> tuple[ListStream, Columns]:
    """The header is the first line, or the first known one of the next few: spreadsheets often
    open with a title line ("רשימת תושבים — נובמבר") or an empty row."""
    first = list(itertools.islice(listing.records, 5))
    candidates: list[tuple[int, list[str] | None]] = [(1, listing.header), *first]
    for skipped, (_, cells) in enumerate(candidates):
        if cells is None:
            continue
        try:
            columns = Columns.from_header(cells)
        except ListUnreadable as refused:
            if refused.key == "lists.no_header":
                continue
            raise
        records = itertools.chain(first[skipped:], listing.records)
        return replace(listing, header=cells, records=records), columns
    raise ListUnreadable("lists.no_header")


# -------------------------------------------------------------------------- rows


@dataclass
class ParsedRow:
    line: int
    cells: dict[str, str]
    report: RowReport
    name: str = ""
    phone: Phone | None = None
    phone_to_fix: str | None = None  # the unusable number as written
    ref: str | None = None
    zone: Zone | None = None
    birth_year: int | None = None
    language: Language | None = None
    needs_help: bool = False
    volunteer: bool = False
    flags: dict[str, bool] = field(default_factory=dict)
    contact_name: str | None = None
    contact_phone: str | None = None
    skills: tuple[str, ...] | None = None
    languages: tuple[str, ...] | None = None
    has_vehicle: bool | None = None
    capacity: int | None = None
    available_routine: bool | None = None
    available_emergency: bool | None = None
    guardian: str | None = None


class _Vocabulary:
    """The profile's zones and skills by every name a list may use for them."""

    def __init__(self, session: Session, profile: Profile, authority: Authority) -> None:
        zones = {
            z.code: z
            for z in session.scalars(select(Zone).where(Zone.authority_id == authority.id))
        }
        # The database's zones by code and name, then every name the profile gives them.
        self.zones: dict[str, Zone] = {}
        for zone in zones.values():
            self.zones[normalise_header(zone.code)] = zone
            self.zones.setdefault(normalise_header(zone.name), zone)
        known = {a.code: a for a in profile.authorities}
        for zone_profile in known[authority.code].zones if authority.code in known else []:
            if zone_profile.code not in zones:
                continue
            for word in zone_profile.names.model_dump().values():
                self.zones[normalise_header(word)] = zones[zone_profile.code]
        self.skills: dict[str, str] = {}
        for skill in profile.skills:
            for word in (skill.code, *skill.names.model_dump().values()):
                self.skills[normalise_header(word)] = skill.code


def _parse_rows(
    raw: ListStream,
    columns: Columns,
    vocabulary: _Vocabulary,
    *,
    kind: ListKind,
    list_name: str,
    region: str,
    year: int,
) -> Iterator[ParsedRow]:
    """Each record read and checked, in file order; a duplicate of an earlier row is refused."""
    seen_refs: dict[str, int] = {}
    seen_phones: dict[str, int] = {}
    width = len(raw.header)
    for line, cells in raw.records:
        report = RowReport(row=line, outcome=Outcome.SKIPPED)
        if cells is None:
            report.problems.append(Problem("lists.row_quotes"))
            yield ParsedRow(line, {}, report)
            continue
        if not _fits(cells, width):
            report.problems.append(
                Problem("lists.row_cells", {"found": len(cells), "expected": width})
            )
            yield ParsedRow(line, {}, report)
            continue
        values = dict(zip(columns.positions, columns.pick(cells), strict=True))
        row = ParsedRow(line, values, report)
        _read_row(
            row, columns, vocabulary, kind=kind, list_name=list_name, region=region, year=year
        )
        if not report.problems:
            for key, seen, problem in (
                (row.ref, seen_refs, "lists.duplicate_id"),
                (row.phone.e164 if row.phone else None, seen_phones, "lists.duplicate_phone"),
            ):
                if key is None:
                    continue
                if key in seen:
                    report.problems.append(Problem(problem, {"first": seen[key]}))
                    break
            else:
                if row.ref:
                    seen_refs[row.ref] = line
                if row.phone:
                    seen_phones[row.phone.e164] = line
        yield row


def _fits(cells: list[str], width: int) -> bool:
    """Whether a record has the header's number of cells, once the trailing empty cells a
    spreadsheet adds are dropped (they are, in place)."""
    while len(cells) > width and not cells[-1]:
        cells.pop()
    return len(cells) == width


def _name_of(cells: dict[str, str]) -> str:
    """A row's name: the name column, else first and last name."""
    return cells.get("name") or " ".join(
        part for part in (cells.get("first_name", ""), cells.get("last_name", "")) if part
    )


def _read_row(
    row: ParsedRow,
    columns: Columns,
    vocabulary: _Vocabulary,
    *,
    kind: ListKind,
    list_name: str,
    region: str,
    year: int,
) -> None:
    cells, problems, warnings = row.cells, row.report.problems, row.report.warnings

    def yes_no(name: str) -> bool:
        value = cells.get(name, "")
        if not value:
            return False  # the usual empty cell: no
        value = value.casefold()
        if value in _YES:
            return True
        if value not in _NO:
            warnings.append(Problem("lists.not_yes_no", {"column": columns.title(name)}))
        return False

    name = _name_of(cells)
    if not name.strip():
        problems.append(Problem("lists.name_missing"))
    row.name = name

    municipal_id = cells.get("municipal_id", "")
    if municipal_id:
        # A reference exported by Hosen ("welfare:1234") is used as it is.
        row.ref = municipal_id if ":" in municipal_id else f"{list_name}:{municipal_id}"
        if len(row.ref) > 80:
            problems.append(Problem("lists.id_too_long"))

    phone_text = cells.get("phone", "")
    fault = None
    if not is_no_phone(phone_text):
        try:
            row.phone = normalise_phone(phone_text, region=region)
        except UnusablePhone as exc:
            fault, row.phone_to_fix = exc.fault, phone_text[:40]
    if fault is not None:
        # Kept when a municipal id finds the person again; without one, a kept row would be a
        # new person on every import, so it is refused with the value and why.
        params: dict[str, str | int] = {
            "value": row.phone_to_fix or "",
            "column": columns.title("phone"),
        }
        problem = Problem(
            "lists.phone_unusable" if row.ref else "lists.phone_unusable_no_key", params, fault.key
        )
        (warnings if row.ref else problems).append(problem)
    elif row.phone is None:
        if row.ref:
            warnings.append(Problem("lists.phone_missing"))
        else:
            problems.append(Problem("lists.no_key"))

    zone_text = cells.get("zone", "")
    if zone_text:
        zone = vocabulary.zones.get(normalise_header(zone_text))
        if zone is None:
            problems.append(Problem("zone.unknown", {"zone": zone_text[:60]}))
        row.zone = zone

    birth = cells.get("birth_year", "")
    if birth:
        found = _BIRTH_YEAR.findall(birth)
        if len(found) == 1 and rules.plausible_birth_year(int(found[0]), year):
            row.birth_year = int(found[0])
        else:
            warnings.append(
                Problem("lists.birth_year_invalid", {"column": columns.title("birth_year")})
            )

    language = cells.get("language", "")
    if language:
        row.language = _LANGUAGE_WORDS.get(normalise_header(language))
        if row.language is None:
            warnings.append(
                Problem("lists.language_unknown", {"column": columns.title("language")})
            )

    row.needs_help = yes_no("needs_help") if columns.has("needs_help") else kind == "residents"
    row.volunteer = yes_no("is_volunteer") if columns.has("is_volunteer") else kind == "volunteers"
    if row.volunteer and row.phone is not None and not row.phone.can_receive_sms:
        # A resident on a landline is reached through a buddy by design; a volunteer's tasks
        # come by SMS or Telegram, so a landline leaves them without any until staff step in.
        warnings.append(Problem("lists.phone_landline", {"value": phone_text[:40]}))
    if row.needs_help:
        # An empty cell is the usual "no", answered without a call.
        row.flags = {flag: bool(cells[flag]) and yes_no(flag) for flag in columns.flags}
        contact = cells.get("emergency_contact_name", "")
        row.contact_name = contact or None
        contact_phone = cells.get("emergency_contact_phone", "")
        if not is_no_phone(contact_phone):
            try:
                row.contact_phone = normalise_phone(contact_phone, region=region).e164
            except UnusablePhone as exc:
                warnings.append(
                    Problem(
                        "lists.contact_phone_invalid", {"value": contact_phone[:40]}, exc.fault.key
                    )
                )
    if row.volunteer:
        if columns.has("skills"):
            skills = []
            for word in _LIST_SEPARATORS.split(cells["skills"]):
                if not word.strip():
                    continue
                code = vocabulary.skills.get(normalise_header(word))
                if code is None:
                    warnings.append(Problem("lists.skill_unknown", {"skill": word.strip()[:40]}))
                else:
                    skills.append(code)
            row.skills = tuple(skills)
        if columns.has("languages"):
            spoken = []
            for word in _LIST_SEPARATORS.split(cells["languages"]):
                if not word.strip():
                    continue
                found_language = _LANGUAGE_WORDS.get(normalise_header(word))
                if found_language is None:
                    warnings.append(
                        Problem("lists.language_unknown", {"column": columns.title("languages")})
                    )
                else:
                    spoken.append(found_language.value)
            row.languages = tuple(spoken)
        for attr in ("has_vehicle", "available_routine", "available_emergency"):
            if columns.has(attr):
                setattr(row, attr, yes_no(attr))
        capacity = cells.get("checkin_capacity", "")
        if capacity:
            if capacity.isdecimal() and rules.valid_checkin_capacity(int(capacity)):
                row.capacity = int(capacity)
            else:
                warnings.append(
                    Problem(
                        "lists.capacity_invalid",
                        {
                            "column": columns.title("checkin_capacity"),
                            "low": rules.MIN_CHECKIN_CAPACITY,
                            "high": rules.MAX_CHECKIN_CAPACITY,
                        },
                    )
                )
        row.guardian = cells.get("guardian") or None


# -------------------------------------------------------------------------- importing


def import_list(
    session: Session,
    *,
    data: bytes | BinaryIO,
    kind: ListKind,
    authority: Authority,
    profile: Profile,
    list_name: str,
    list_version: str,
    region: str = "IL",
    actor: str = "import",
    dry_run: bool = False,
    now: datetime | None = None,
    one_by_one: bool = False,
) -> ImportReport:
    """Import one municipal list into ``authority``. Does not commit: for a dry run the caller
    rolls back, so the report says exactly what the import would do.

    ``data`` is the file's bytes or a seekable binary file, read as a stream. Rows are checked
    as they come and written a batch at a time with bulk statements (:func:`_import_rows`);
    ``one_by_one`` sends every row through :func:`registry.people.register_people` alone, the
    reference the bulk path is tested against.

    Raises :class:`ListUnreadable` when the file as a whole cannot be read.
    """
    with _cyclic_gc_paused():
        return _import_list(
            session,
            data=data,
            kind=kind,
            authority=authority,
            profile=profile,
            list_name=list_name,
            list_version=list_version,
            region=region,
            actor=actor,
            dry_run=dry_run,
            now=now,
            one_by_one=one_by_one,
        )


# Imports under way that paused the collector, and whether it was on before the first of them:
# the console imports in worker threads, so two can overlap, and the collector must come back
# on when the last one ends (a thread that saw it off because another paused it must not leave
# it off for good).
_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a list is imported, as it was afterwards.

    An import keeps every row's report and builds hundreds of thousands of small objects, few
    of them in reference cycles; the collector would walk the growing heap again and again
    (a fifth of the CPU time at 20,000 rows). Memory is freed by reference counting all the
    same, and the collector catches up once it is back on. Overlapping imports (threads) count
    themselves in and out: the last one out restores what the first one in found."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _import_list(
    session: Session,
    *,
    data: bytes | BinaryIO,
    kind: ListKind,
    authority: Authority,
    profile: Profile,
    list_name: str,
    list_version: str,
    region: str,
    actor: str,
    dry_run: bool,
    now: datetime | None,
    one_by_one: bool,
) -> ImportReport:
    now = now or utcnow()
    list_version = list_version[:20]  # the consent's version column
    listing, columns = _find_header(open_list(data))
    vocabulary = _Vocabulary(session, profile, authority)
    report = ImportReport(
        list_name=list_name,
        list_version=list_version,
        kind=kind,
        encoding=listing.encoding,
        delimiter=listing.delimiter,
        dry_run=dry_run,
        columns=columns.named,
        ignored_columns=columns.ignored,
    )
    context = _Batch(
        session=session,
        columns=columns,
        kind=kind,
        authority=authority,
        list_name=list_name,
        list_version=list_version,
        actor=actor,
        now=now,
    )
    pending: list[ParsedRow] = []
    parsed = _parse_rows(
        listing,
        columns,
        vocabulary,
        kind=kind,
        list_name=list_name,
        region=region,
        year=now.year,
    )
    with _read_ahead(parsed) as rows:
        for row in rows:
            report.rows.append(row.report)
            if row.report.problems:
                continue
            pending.append(row)
            if len(pending) >= (1 if one_by_one else BATCH):
                _import_rows(context, pending, one_by_one=one_by_one)
                pending = []
    _import_rows(context, pending, one_by_one=one_by_one)
    return report


READ_AHEAD = 1000  # parsed rows handed over at a time by the reading thread
_READ_AHEAD_CHUNKS = 2 * BATCH // READ_AHEAD  # how far it may run ahead: two batches


@contextlib.contextmanager
def _read_ahead(rows: Iterator[ParsedRow]) -> Iterator[Iterator[ParsedRow]]:
    """``rows`` read and checked in a thread of their own, at most two batches ahead.

    Reading and checking a row is a fifth of an import's CPU; the rest waits for the
    database's statements half the time (PostgreSQL's backend, SQLite's ``executemany``), and
    both drivers release the GIL while it runs. In a thread, the next rows are read meanwhile
    instead of after. The rows come in file order as before; an error while reading (an
    unreadable file) is raised where the row would have come. The thread touches only the
    file and the vocabulary, never the session. Leaving the block early stops it."""
    chunks: queue.Queue[list[ParsedRow] | BaseException | None] = queue.Queue(
        maxsize=_READ_AHEAD_CHUNKS
    )
    stop = threading.Event()

    def hand(item: list[ParsedRow] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        chunk: list[ParsedRow] = []
        try:
            for row in rows:
                chunk.append(row)
                if len(chunk) >= READ_AHEAD:
                    if not hand(chunk):
                        return
                    chunk = []
        except BaseException as error:  # raised in the importing thread, after the rows before it
            if hand(chunk):
                hand(error)
            return
        if hand(chunk):
            hand(None)

    def consume() -> Iterator[ParsedRow]:
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield from item

    reader = threading.Thread(target=read, name="import-read-ahead", daemon=True)
    reader.start()
    try:
        yield consume()
    finally:
        stop.set()
        reader.join()


@dataclass(frozen=True)
class _Batch:
    """What every batch of one import shares."""

    session: Session
    columns: Columns
    kind: ListKind
    authority: Authority
    list_name: str
    list_version: str
    actor: str
    now: datetime


def _import_rows(batch: _Batch, rows: list[ParsedRow], *, one_by_one: bool = False) -> None:
    """Import checked rows in file order, with what :func:`register_people` would do to each.

    The people the rows' municipal references and phones find are read in one lookup, as plain
    records. A row that finds nobody (a new person) or exactly one person that no other row of
    the batch finds, and that the list may update, is applied to that record by the registry's
    own rules and written in bulk with the rest. A row whose keys find two people (a merge),
    a record that only typed the phone (it loses it), or a person another row also finds, goes
    through :func:`register_people` on its own, after what came before it was written: the
    outcome is the same as importing the rows one at a time.
    """
    if not rows:
        return
    session = batch.session
    if one_by_one:
        for row in rows:
            _import_batch(batch, [row])
        return
    pairs = [(row.ref, row.phone.e164 if row.phone else None) for row in rows]
    index = RecordIndex.load(session, authority=batch.authority, keys=pairs)
    found = [index.find(ref, phone) for ref, phone in pairs]
    finders = Counter(id(person) for people in found for person in people)
    done: list[tuple[ParsedRow, PersonRecord, list[str], bool]] = []
    for row, people in zip(rows, found, strict=True):
        existing = None
        if people:  # else a new person: nobody to merge, displace or share
            key = PersonDetails(
                phone=row.phone, phone_source=PhoneSource.IMPORT, external_ref=row.ref
            )
            matches = sort_matches(people, key)
            if (
                len(people) > 1
                or matches.displace
                or matches.conflict
                or any(finders[id(person)] > 1 for person in people)
            ):
                _write(batch, done)
                done = []
                session.flush()
                session.expire_all()  # the bulk writes went around the ORM's objects
                _import_batch(batch, [row])
                continue
            existing = matches.update[0] if matches.update else None
        details = _details(row, existing)
        if existing is None:
            record = PersonRecord(
                authority_id=batch.authority.id,
                source=Source.IMPORT,
                created_at=batch.now,
                updated_at=batch.now,
            )
            done.append((row, record, sorted(apply_details(record, details, batch.now)), True))
        else:
            changed = sorted(apply_details(existing, details, batch.now))
            if changed:
                existing.updated_at = batch.now
            done.append((row, existing, changed, False))
    _write(batch, done)


def _write(batch: _Batch, done: list[tuple[ParsedRow, PersonRecord, list[str], bool]]) -> None:
    """Write the people a batch created or changed, their audit entries and the list's
    consents, in a few bulk statements; fill in the rows' report."""
    if not done:
        return
    session, now = batch.session, batch.now
    insert_records(session, [record for _, record, _, created in done if created])
    update_records(
        session, [record for _, record, changed, created in done if changed and not created]
    )
    audit_rows = []
    details: dict[tuple[bool, tuple[str, ...]], object] = {}  # equal details, one object
    for row, record, changed, created in done:
        row.report.person_id = record.id
        row.report.changed = changed
        row.report.outcome = (
            Outcome.CREATED if created else Outcome.UPDATED if changed else Outcome.UNCHANGED
        )
        if created or changed:
            entry = audit.entry_row(
                actor=batch.actor,
                action="person.create" if created else "person.update",
                person_id=record.id,
                at=now,
                fields=changed,
                source=Source.IMPORT.value,
            )
            # Shared, it is encoded once for the batch (bulk_insert).
            entry["detail"] = details.setdefault((created, tuple(changed)), entry["detail"])
            audit_rows.append(entry)
    bulk_insert(session, AuditEntry, audit_rows)
    updated = [record.id for _, record, changed, created in done if changed and not created]
    consents = _existing_consents(session, [i for i in updated if i is not None])
    grants: list[ConsentGrant] = []
    texts: dict[tuple[str, Language], str] = {}
    for row, record, changed, created in done:
        if not (created or changed):
            continue
        assert record.id is not None and record.language is not None  # written above
        grants.extend(_grants(batch, row, record.id, record.language, consents, texts))
    record_consents(session, grants=grants, actor=batch.actor, now=now)


def _grants(
    batch: _Batch,
    row: ParsedRow,
    person_id: int,
    language: Language,
    consents: set[tuple[int, ConsentKind, str | None]],
    texts: dict[tuple[str, Language], str],
) -> list[ConsentGrant]:
    """The list is the basis the municipality holds these data on: it is recorded as a staff
    consent with the list's name and version, once per version; a guardian's name, once."""

    def text(key: str) -> str:
        if (key, language) not in texts:
            texts[key, language] = t(
                language, key, list=batch.list_name, version=batch.list_version
            )
        return texts[key, language]

    wanted = [ConsentKind.REGISTRATION]
    if row.needs_help:
        wanted.append(ConsentKind.HEALTH_DATA)
    grants = [
        ConsentGrant(
            person_id=person_id,
            kind=consent_kind,
            version=batch.list_version,
            language=language,
            text=text("lists.consent_text"),
            channel=Source.IMPORT,
            given_by=ConsentGiver.STAFF,
        )
        for consent_kind in wanted
        if (person_id, consent_kind, batch.list_version) not in consents
    ]
    if row.guardian and (person_id, ConsentKind.GUARDIAN, None) not in consents:
        grants.append(
            ConsentGrant(
                person_id=person_id,
                kind=ConsentKind.GUARDIAN,
                version=batch.list_version,
                language=language,
                text=text("lists.guardian_consent_text"),
                channel=Source.IMPORT,
                given_by=ConsentGiver.GUARDIAN,
                guardian_name=row.guardian,
            )
        )
    return grants


def _import_batch(batch: _Batch, rows: list[ParsedRow]) -> None:
    """Rows through :func:`register_people` and the ORM: the path for a row that merges or
    displaces, and the reference the bulk path is tested against."""
    session, now = batch.session, batch.now
    keys = [
        PersonDetails(phone=row.phone, phone_source=PhoneSource.IMPORT, external_ref=row.ref)
        for row in rows
    ]
    index = PeopleIndex.load(session, authority=batch.authority, details=keys)
    details = []
    for row, key in zip(rows, keys, strict=True):
        # Only a record the list may update lends its known values (never one that typed it).
        existing = sort_matches(index.matches(key), key).update
        details.append(_details(row, existing[0] if existing else None))
    registrations = register_people(
        session,
        authority=batch.authority,
        batch=details,
        source=Source.IMPORT,
        actor=batch.actor,
        now=now,
        index=index,
    )
    changed_people = [
        (row, registration.person)
        for row, registration in zip(rows, registrations, strict=True)
        if registration.created or registration.changed
    ]
    consents = _existing_consents(session, [person.id for _, person in changed_people])
    for row, registration in zip(rows, registrations, strict=True):
        row.report.person_id = registration.person.id
        row.report.changed = registration.changed
        row.report.warnings.extend(
            Problem("lists.phone_unverified_holder", {"person": other})
            for other in registration.displaced
        )
        row.report.outcome = (
            Outcome.CREATED
            if registration.created
            else Outcome.UPDATED
            if registration.changed
            else Outcome.UNCHANGED
        )
    grants: list[ConsentGrant] = []
    texts: dict[tuple[str, Language], str] = {}
    for row, person in changed_people:
        grants.extend(_grants(batch, row, person.id, person.language, consents, texts))
    record_consents(session, grants=grants, actor=batch.actor, now=now)


def _existing_consents(
    session: Session, person_ids: list[int]
) -> set[tuple[int, ConsentKind, str | None]]:
    """(person, kind, version) of live consents, and (person, kind, None) for any version."""
    found: set[tuple[int, ConsentKind, str | None]] = set()
    if not person_ids:
        return found
    query = select(Consent.person_id, Consent.kind, Consent.version).where(
        Consent.person_id.in_(person_ids), Consent.withdrawn_at.is_(None)
    )
    for person_id, kind, version in session.execute(query):
        found.add((person_id, kind, version))
        found.add((person_id, kind, None))
    return found


_NO_NEEDS = NeedsDetails()
_NO_NEEDS_VALUES = {name: getattr(_NO_NEEDS, name) for name in NEEDS_FIELDS}
_NEW_VOLUNTEER = VolunteerDetails()


def _details(row: ParsedRow, existing: Person | PersonRecord | None) -> PersonDetails:
    """The row as details; a column the list lacks keeps what the registry already knows."""
    needs = None
    if row.needs_help:
        known = existing.needs if existing is not None else None
        values: dict[str, Any] = (
            {name: getattr(known, name) for name in NEEDS_FIELDS}
            if known is not None
            else dict(_NO_NEEDS_VALUES)
        )
        values.update(row.flags)
        if row.contact_name is not None:
            values["emergency_contact_name"] = row.contact_name
        if row.contact_phone is not None:
            values["emergency_contact_phone"] = row.contact_phone
        needs = NeedsDetails(**values)
    volunteer = None
    if row.volunteer:
        profile = existing.volunteer if existing is not None else None
        base: dict[str, Any] = {
            name: getattr(profile if profile is not None else _NEW_VOLUNTEER, name)
            for name in VOLUNTEER_FIELDS
        }
        base["skills"] = tuple(base["skills"])
        base["languages"] = tuple(base["languages"])
        for name in VOLUNTEER_FIELDS:
            value = getattr(row, "capacity" if name == "checkin_capacity" else name)
            if value is not None:
                base[name] = value
        volunteer = VolunteerDetails(**base)
    # What people said about themselves (their language, on Telegram or SMS) wins over a list.
    language = row.language
    if existing is not None and existing.source not in (Source.IMPORT, Source.STAFF):
        language = None
    channel = None
    if existing is None:
        # A new person is reached by SMS on a mobile, else (landline, no phone) through a buddy.
        channel = Channel.SMS if row.phone and row.phone.can_receive_sms else Channel.NONE
    return PersonDetails(
        name=row.name,
        phone=row.phone,
        phone_source=PhoneSource.IMPORT,
        phone_to_fix=row.phone_to_fix,
        language=language,
        channel=channel,
        birth_year=row.birth_year,
        zone=row.zone,
        address=row.cells.get("address") or None,
        external_ref=row.ref,
        volunteer=volunteer,
        needs=needs,
    )


def iter_problem_lines(report: ImportReport, language: Language, limit: int) -> Iterator[str]:
    """One line per problem row, for a terminal: "row 12: skipped: That is not a phone..."."""
    for row in report.problem_rows()[:limit]:
        reasons = [p.render(language) for p in row.problems] + [
            t(language, "lists.warning", message=p.render(language)) for p in row.warnings
        ]
        yield f"row {row.row}: {row.outcome.value}: " + " ".join(reasons)


@dataclass(frozen=True, slots=True)
class RowLabel:
    """A row as an officer finds it in their spreadsheet: the name and phone as written."""

    name: str
    phone: str


def row_labels(data: bytes | BinaryIO) -> dict[int, RowLabel]:
    """Each row's name and phone as written, by the line numbers of the row report, read by
    the same reader as :func:`import_list` (a row that cannot be read has none)."""
    listing, columns = _find_header(open_list(data))
    labels: dict[int, RowLabel] = {}
    width = len(listing.header)
    for line, cells in listing.records:
        if cells is None:
            continue
        if not _fits(cells, width):
            continue
        values = dict(zip(columns.positions, columns.pick(cells), strict=True))
        labels[line] = RowLabel(
            _name_of(values).strip()[: rules.MAX_NAME], values.get("phone", "").strip()[:40]
        )
    return labels
