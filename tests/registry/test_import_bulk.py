"""The bulk import against the registry's rules one row at a time.

A list imported in batches (looked up together, written with bulk statements) must leave the
database exactly as importing it row by row through ``register_people`` does, and report every
row the same: duplicates within the file, a person already present by phone (listed, only
typed, proven), a merge of two records, rows that change only the language, unusable phones.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from config.languages import Language
from config.profile import Profile
from registry import importer
from registry.bulk import table_of
from registry.importer import import_list
from registry.models import (
    AuditEntry,
    Authority,
    Channel,
    Consent,
    Person,
    PhoneSource,
    ResidentNeeds,
    Source,
    VolunteerProfile,
)
from registry.people import (
    NeedsDetails,
    NeedsRecord,
    PersonDetails,
    PersonRecord,
    VolunteerRecord,
    register_person,
)
from registry.phones import normalise_phone

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
BEFORE = NOW - timedelta(days=30)  # when the people already known registered
HEADER = "municipal id,first name,last name,phone,language,lives alone,medical equipment"
PHONES = ("052-5551267", "+972 54 555 1268", "0535551269", "058-5551270", "050-5551271")
# Already registered, each a way a person can be known: (ref, phone, phone source, source).
EXISTING = {
    "listed": ("welfare:1", PHONES[0], PhoneSource.IMPORT, Source.IMPORT),
    "typed": (None, PHONES[1], PhoneSource.TYPED, Source.TELEGRAM),
    "proven": (None, PHONES[2], PhoneSource.CODE, Source.SMS),
    "listed_no_phone": ("welfare:2", None, None, Source.IMPORT),
    "other_list": ("welfare:3", PHONES[3], PhoneSource.IMPORT, Source.IMPORT),
}

rows = st.lists(
    st.tuples(
        st.sampled_from(["", "1", "2", "3", "4", "5"]),  # municipal id
        st.sampled_from(["Rachel", "Yosef", "", "Noa"]),
        st.sampled_from(["Levi", "Cohen"]),
        st.sampled_from([*PHONES, "", "-", "052-555", "call me", "03-6405555", "052-5551299"]),
        st.sampled_from(["", "עברית", "russian", "arabic", "klingon"]),
        st.sampled_from(["", "כן", "no", "maybe"]),
        st.sampled_from(["", "yes"]),
    ),
    max_size=14,
)


def csv_of(lines: list[tuple[str, ...]]) -> bytes:
    return "\n".join([HEADER, *(",".join(line) for line in lines)]).encode()


def register_existing(session: Session, authority: Authority, which: list[str]) -> None:
    for index, name in enumerate(which):
        ref, phone, phone_source, source = EXISTING[name]
        register_person(
            session,
            authority=authority,
            details=PersonDetails(
                name=f"Known {name}",
                phone=normalise_phone(phone, region="IL") if phone else None,
                phone_source=phone_source,
                telegram_chat_id=9000 + index if source == Source.TELEGRAM else None,
                channel=Channel.TELEGRAM if source == Source.TELEGRAM else None,
                external_ref=ref,
                needs=NeedsDetails(lives_alone=True) if index % 2 else None,
            ),
            source=source,
            actor="setup",
            now=BEFORE,
        )
    session.commit()


def state(session: Session, report: importer.ImportReport) -> dict[str, Any]:
    """The report and every row the import may write, with person ids as their rank."""
    session.flush()
    # A row may name someone a later row merged away: ranked among the rest all the same.
    mentioned = {row.person_id for row in report.rows if row.person_id is not None}
    ids = sorted(set(session.scalars(select(Person.id))) | mentioned)
    rank = {person_id: position for position, person_id in enumerate(ids)}

    def rows_of(model: type, key: str, drop: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        table = table_of(model)
        found = []
        for row in session.execute(select(table)).mappings():
            values = {k: v for k, v in row.items() if k not in ("id", *drop)}
            if values.get(key) is not None:
                values[key] = rank[values[key]]
            found.append(tuple(sorted((k, repr(v)) for k, v in values.items())))
        return sorted(found)

    people = []
    for person in session.execute(select(table_of(Person))).mappings():
        values = dict(person)
        if values["updated_at"] not in (BEFORE, *(NOW + timedelta(hours=h) for h in range(3))):
            # The ORM stamps a row it flushes without a new updated_at with the wall clock (a
            # merge into someone an earlier row updated): the same in both, but not the same time.
            values["updated_at"] = "clock"
        people.append((rank[values.pop("id")], sorted((k, repr(v)) for k, v in values.items())))
    as_json = report.as_json()
    for row in as_json["rows"]:
        if row["person_id"] is not None:
            row["person_id"] = rank[row["person_id"]]
    return {
        "report": as_json,
        "people": sorted(people),
        "needs": rows_of(ResidentNeeds, "person_id"),
        "volunteers": rows_of(VolunteerProfile, "person_id"),
        "consents": rows_of(Consent, "person_id"),
        "audit": rows_of(AuditEntry, "person_id"),
    }


def forget_everyone(session: Session) -> None:
    for model in (AuditEntry, Consent, ResidentNeeds, VolunteerProfile, Person):
        session.execute(delete(model))
    session.commit()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lines=rows,
    existing=st.lists(st.sampled_from(sorted(EXISTING)), unique=True),
    batch=st.integers(min_value=2, max_value=5),
)
def test_a_list_in_batches_gives_what_row_by_row_gives(
    session: Session,
    authority: Authority,
    profile: Profile,
    monkeypatch: pytest.MonkeyPatch,
    lines: list[tuple[str, ...]],
    existing: list[str],
    batch: int,
) -> None:
    monkeypatch.setattr(importer, "BATCH", batch)
    forget_everyone(session)
    register_existing(session, authority, existing)
    results = []
    for one_by_one in (False, True):
        report = import_list(
            session,
            data=csv_of(lines),
            kind="residents",
            authority=authority,
            profile=profile,
            list_name="welfare",
            list_version="v1",
            actor="import",
            now=NOW,
            one_by_one=one_by_one,
        )
        results.append(state(session, report))
        session.rollback()
    bulk, reference = results
    assert bulk == reference


def test_a_list_larger_than_a_batch_imports_and_reimports_like_row_by_row(
    session: Session, authority: Authority, profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several batches, every kind of row, and the same list again with a tenth changed."""
    monkeypatch.setattr(importer, "BATCH", 7)
    register_existing(session, authority, sorted(EXISTING))
    lines = [
        (str(n), f"Name{n}", "Levi", f"052-55{n:05d}", ["", "עברית", "russian"][n % 3], "", "")
        for n in range(10, 60)
    ]
    lines += [
        ("1", "Rachel", "Levi", PHONES[2], "", "כן", ""),
        ("4", "Noa", "Cohen", PHONES[1], "", "", ""),
    ]
    lines += [
        ("10", "Again", "Levi", "", "", "", ""),
        ("", "Nobody", "Levi", "call me", "", "", ""),
    ]
    changed = [
        (ref, first, last, phone, "arabic" if n % 10 == 0 else language, alone, equipment)
        for n, (ref, first, last, phone, language, alone, equipment) in enumerate(lines)
    ]
    results = []
    for one_by_one in (False, True):
        found = []
        for hours, data in enumerate((csv_of(lines), csv_of(lines), csv_of(changed))):
            report = import_list(
                session,
                data=data,
                kind="residents",
                authority=authority,
                profile=profile,
                list_name="welfare",
                list_version="v1",
                now=NOW + timedelta(hours=hours),
                one_by_one=one_by_one,
            )
            found.append(state(session, report))
        results.append(found)
        session.rollback()
    bulk, reference = results
    assert bulk == reference
    first, again, second = bulk
    outcomes = [row["outcome"] for row in first["report"]["rows"]]
    assert outcomes.count("created") == 51 and outcomes.count("skipped") == 2
    merged, displaced = first["report"]["rows"][50:52]  # the lines after the fifty new ones
    assert merged["outcome"] == "updated"  # welfare:1 and the proven holder of its phone
    assert displaced["outcome"] == "created"
    assert [w["key"] for w in displaced["warnings"]] == ["lists.phone_unverified_holder"]
    assert [row["outcome"] for row in again["report"]["rows"]].count("updated") == 0
    languages = [row for row in second["report"]["rows"] if row["changed"] == ["language"]]
    assert len(languages) >= 4


def test_records_hold_every_column() -> None:
    """A column added to a model needs its field in the record the bulk import works on."""
    for record, model, extra in (
        (PersonRecord, Person, {"volunteer", "needs"}),
        (NeedsRecord, ResidentNeeds, set()),
        (VolunteerRecord, VolunteerProfile, set()),
    ):
        columns = [c.key for c in table_of(model).columns if c.key != "person_id"]
        fields = [name for name in record.__dataclass_fields__ if name not in extra]
        assert fields == columns


def test_rows_across_batch_boundaries_are_reported_by_their_own_line(
    session: Session, authority: Authority, profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Duplicates of a row in an earlier batch, bad rows and blank lines on either side of a
    boundary: every row keeps its line number, outcome and reason, and its person. The
    reading thread hands rows over two at a time, across the batches' boundaries."""
    monkeypatch.setattr(importer, "BATCH", 3)
    monkeypatch.setattr(importer, "READ_AHEAD", 2)
    lines = [
        "10,Rachel,Levi,052-5550010,,,",  # line 2
        "11,Yosef,Levi,052-5550011,,,",  # 3
        "12,Noa,Levi,call me,,,",  # 4: kept, by its id, with the phone to fix
        "",  # 5: blank, not a row
        "13,Dan,Levi,052-5550013,,,",  # 6
        "14,Tamar,Levi,052-5550010,,,",  # 7: the phone of line 2, two batches back
        "10,Again,Levi,052-5550099,,,",  # 8: the id of line 2
        ",Nobody,Levi,call me,,,",  # 9: no id, no usable phone
        "15,Ayala,Levi,052-5550015,,,",  # 10
        "16,Short,row",  # 11: too few cells
        "17,Eli,Levi,052-5550017,,,",  # 12
    ]
    data = "\n".join([HEADER, *lines]).encode()
    report = import_list(
        session,
        data=data,
        kind="residents",
        authority=authority,
        profile=profile,
        list_name="welfare",
        list_version="v1",
        now=NOW,
    )
    got = {
        r.row: (r.outcome.value, [p.key for p in r.problems], [w.key for w in r.warnings])
        for r in report.rows
    }
    assert got == {
        2: ("created", [], []),
        3: ("created", [], []),
        4: ("created", [], ["lists.phone_unusable"]),
        6: ("created", [], []),
        7: ("skipped", ["lists.duplicate_phone"], []),
        8: ("skipped", ["lists.duplicate_id"], []),
        9: ("skipped", ["lists.phone_unusable_no_key"], []),
        10: ("created", [], []),
        11: ("skipped", ["lists.row_cells"], []),
        12: ("created", [], []),
    }
    by_line = {r.row: r for r in report.rows}
    assert by_line[7].problems[0].params == {"first": 2}
    assert by_line[8].problems[0].params == {"first": 2}
    # Each created row names the person its own line made.
    refs = dict(session.execute(select(Person.id, Person.external_ref)).all())
    for line, ref in ((2, 10), (3, 11), (4, 12), (6, 13), (10, 15), (12, 17)):
        assert refs[by_line[line].person_id] == f"welfare:{ref}"
    assert by_line[4].person_id is not None
    assert report.totals == {
        "created": 6,
        "updated": 0,
        "unchanged": 0,
        "skipped": 4,
        "rows": 10,
        "with_warnings": 1,
    }
    message = by_line[7].problems[0].render(Language.HE)
    assert "2" in message and message != "lists.duplicate_phone"


def test_a_reimport_updates_exactly_the_changed_rows(
    session: Session, authority: Authority, profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the rows whose values changed are updated, audited and stamped; the rest are
    unchanged to the row and to their stored time."""
    monkeypatch.setattr(importer, "BATCH", 4)
    lines = [(str(n), f"Name{n}", "Levi", f"052-55{n:05d}", "עברית", "", "") for n in range(1, 12)]
    changed_lines = {3, 4, 9}  # positions whose language changes, across three batches
    second = [
        (*line[:4], "russian" if n in changed_lines else line[4], *line[5:])
        for n, line in enumerate(lines)
    ]

    def run(data: bytes, at: datetime) -> importer.ImportReport:
        return import_list(
            session,
            data=data,
            kind="residents",
            authority=authority,
            profile=profile,
            list_name="welfare",
            list_version="v1",
            now=at,
        )

    run(csv_of(lines), NOW)
    audits = session.scalar(select(func.count()).select_from(AuditEntry))
    later = NOW + timedelta(hours=1)
    report = run(csv_of(second), later)
    outcomes = {r.row - 2: (r.outcome.value, r.changed) for r in report.rows}
    assert outcomes == {
        n: (("updated", ["language"]) if n in changed_lines else ("unchanged", []))
        for n in range(len(lines))
    }
    stamped = {
        ref: updated_at
        for ref, updated_at in session.execute(select(Person.external_ref, Person.updated_at))
    }
    assert stamped == {
        f"welfare:{n + 1}": later if n in changed_lines else NOW for n in range(len(lines))
    }
    new_audits = session.execute(
        select(AuditEntry.action, AuditEntry.detail).order_by(AuditEntry.id).offset(audits)
    ).all()
    assert [(action, detail["fields"]) for action, detail in new_audits] == [
        ("person.update", ["language"])
    ] * len(changed_lines)
    languages = dict(session.execute(select(Person.external_ref, Person.language)).all())
    assert sorted(ref for ref, lang in languages.items() if lang == Language.RU) == sorted(
        f"welfare:{n + 1}" for n in changed_lines
    )


def test_rows_read_ahead_come_in_order_then_the_reading_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reading thread hands rows over in chunks: every row comes, in file order, the ones
    read before a failure included, and the failure is raised where the next row would be."""
    monkeypatch.setattr(importer, "READ_AHEAD", 3)

    def rows() -> Iterator[Any]:
        yield from range(7)
        raise OSError("the disk went away")

    got: list[Any] = []
    with (
        pytest.raises(OSError, match="disk went away"),
        importer._read_ahead(rows()) as ahead,  # type: ignore[arg-type]
    ):
        got.extend(ahead)
    assert got == list(range(7))
    assert not [t for t in threading.enumerate() if t.name == "import-read-ahead"]


def test_an_import_interrupted_stops_reading_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the import stops (a database error, an interrupt), the reading thread stops too,
    having read at most its bounded way ahead of the row the import reached."""
    monkeypatch.setattr(importer, "READ_AHEAD", 4)
    read = 0

    def endless() -> Iterator[int]:
        nonlocal read
        while True:
            read += 1
            yield read

    with (
        pytest.raises(KeyboardInterrupt),
        importer._read_ahead(endless()) as ahead,  # type: ignore[arg-type]
    ):
        for row in ahead:
            if row == 10:
                raise KeyboardInterrupt
    assert not [t for t in threading.enumerate() if t.name == "import-read-ahead"]
    # The queue's chunks, the one being handed over and the one consumed: no more.
    assert read <= 10 + (importer._READ_AHEAD_CHUNKS + 2) * 4
