from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.languages import Language
from config.profile import Profile
from fakes.town import generate_town, write_municipal_csv
from registry.importer import (
    HEADER_ALIASES,
    ImportReport,
    ListUnreadable,
    Outcome,
    decode,
    import_list,
    normalise_header,
    read_list,
)
from registry.models import (
    AuditEntry,
    Authority,
    Channel,
    Consent,
    ConsentGiver,
    ConsentKind,
    Person,
    PhoneKind,
    PhoneSource,
    Source,
)
from registry.people import PersonDetails, register_person
from registry.phones import normalise_phone

HE_HEADER = "מס' רשומה,שם פרטי,שם משפחה,טלפון,שכונה,כתובת,שנת לידה,שפה,גר לבד,מכשור רפואי"
EN_HEADER = "municipal id,first name,last name,phone,zone,address,birth year,language,lives alone,medical equipment"


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def run(
    session: Session,
    authority: Authority,
    profile: Profile,
    data: bytes,
    kind: str = "residents",
    version: str = "v1",
) -> tuple[dict[int, tuple[Outcome, list[str]]], dict[str, int]]:
    report = import_list(
        session,
        data=data,
        kind=kind,  # type: ignore[arg-type]
        authority=authority,
        profile=profile,
        list_name="welfare",
        list_version=version,
    )
    session.commit()
    rows = {
        r.row: (r.outcome, [p.key for p in r.problems] + [w.key for w in r.warnings])
        for r in report.rows
    }
    return rows, report.totals


@dataclass
class Case:
    name: str
    data: bytes
    outcomes: dict[int, tuple[Outcome, list[str]]]
    people: int
    encoding: str = "utf-8"
    extra: dict[str, str] = field(default_factory=dict)


C, S = Outcome.CREATED, Outcome.SKIPPED
CASES = [
    Case(
        "hebrew headers in windows-1255, zones by hebrew name",
        (
            HE_HEADER
            + "\n1,רחל,כהן,052-5551267,מרכז העיר,הרצל 3,1940,עברית,כן,\n"
            + "2,יוסף,לוי,08-6851234,נווה רימונים,הרימון 4,1936,עברית,,כן\n"
        ).encode("cp1255"),
        {2: (C, []), 3: (C, [])},
        2,
        encoding="cp1255",
    ),
    Case(
        "english headers in utf-8 with BOM, semicolons, zones by code and english name",
        (
            EN_HEADER.replace(",", ";")
            + "\r\n7;Olga;Иванова;+972 52 555 1234;kt-center;Herzl 5;1950;Russian;yes;no\r\n"
            + "8;Abebe;Tadesse;0545551234;Neve Rimonim;;1961;am;no;yes\r\n"
        ).encode("utf-8-sig"),
        {2: (C, []), 3: (C, [])},
        2,
    ),
    Case(
        "tab separated",
        (
            EN_HEADER.replace(",", "\t") + "\n9\tSara\tLevi\t052-5551235\tkt-north\t\t\t\t\t\n"
        ).encode(),
        {2: (C, [])},
        1,
    ),
    Case(
        "malformed rows cost only themselves",
        (
            EN_HEADER
            + "\n1,Ann,Cohen,052-5551267,kt-center\n"  # too few cells
            + '2,"Ben,Levi,052-5551268,kt-center,,,,,\n'  # an unclosed quote
            + "3,Dan,Peretz,052-5551269,kt-center,,,,,,extra\n"  # too many cells
            + "4,Eli,Amar,052-5551270,kt-center,,,,,\n"
            + ",,,,,,,,,\n"  # an empty spreadsheet row: not a row at all
        ).encode(),
        {
            2: (S, ["lists.row_cells"]),
            3: (S, ["lists.row_quotes"]),
            4: (S, ["lists.row_cells"]),
            5: (C, []),
        },
        1,
    ),
    Case(
        "invalid phones, unknown zones, missing names, duplicates",
        (
            EN_HEADER
            + "\n1,Ann,Cohen,12345,kt-center,,,,,\n"
            + "2,Ben,Levi,052-5551268,Atlantis,,,,,\n"
            + "3,,,052-5551269,kt-center,,,,,\n"
            + "4,Dan,Amar,052-5551270,kt-center,,,,,\n"
            + "4,Dan,Amar,052-5551271,kt-center,,,,,\n"
            + "5,Eve,Amar,052-5551270,kt-center,,,,,\n"
            + ",Fay,Tal,,kt-center,,,,,\n"
            + "6,Gil,Dor,,kt-center,,1888,Klingon,maybe,\n"
            + "7,Hila,Bar,052-5551272,kt-center,,,,,\n"
        ).encode(),
        {
            2: (C, ["lists.phone_unusable"]),  # kept by its id, for staff to fix
            3: (S, ["zone.unknown"]),
            4: (S, ["lists.name_missing"]),
            5: (C, []),
            6: (S, ["lists.duplicate_id"]),
            7: (S, ["lists.duplicate_phone"]),
            8: (S, ["lists.no_key"]),
            9: (
                C,
                [
                    "lists.phone_missing",
                    "lists.birth_year_invalid",
                    "lists.language_unknown",
                    "lists.not_yes_no",
                ],
            ),
            10: (C, []),
        },
        4,
    ),
    Case(
        "placeholders for no phone are no phone, in the phone and the contact's phone",
        (
            EN_HEADER
            + ",emergency contact phone\n"
            + "1,Ann,Cohen,-,kt-center,,,,,,N/A\n"
            + "2,Ben,Levi, N/A ,kt-center,,,,,,0\n"
            + "3,Dan,Amar,0,kt-center,,,,,,—\n"
            + "4,Eve,Tal,אין,kt-center,,,,,,אין\n"
            + "5,Fay,Dor,000-000-0000,kt-center,,,,,,--\n"
            + ",Gil,Bar,-,kt-center,,,,,,\n"
            + ",Hila,Ben,n/a,kt-center,,,,,,\n"
        ).encode(),
        {
            2: (C, ["lists.phone_missing"]),
            3: (C, ["lists.phone_missing"]),
            4: (C, ["lists.phone_missing"]),
            5: (C, ["lists.phone_missing"]),
            6: (C, ["lists.phone_missing"]),
            7: (S, ["lists.no_key"]),
            8: (S, ["lists.no_key"]),
        },
        5,
    ),
    Case(
        "a title line above the header",
        (
            "רשימת תושבים — נובמבר 2026\n"
            + EN_HEADER.replace(",", ";")
            + "\n1;Ann;Cohen;052-5551267;kt-center;;;;;\n"
        ).encode(),
        {3: (C, [])},
        1,
    ),
    Case(
        "a quoted cell spanning two lines",
        (EN_HEADER + '\n1,Ann,Cohen,052-5551267,kt-center,"Herzl 3\nflat 2",,,,\n').encode(),
        {2: (C, [])},
        1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_list_cases(case: Case, session: Session, authority: Authority, profile: Profile) -> None:
    rows, totals = run(session, authority, profile, case.data)
    assert rows == case.outcomes
    assert count(session, Person) == case.people == totals["created"]
    assert decode(case.data)[1] == case.encoding

    again, totals = run(session, authority, profile, case.data)
    assert totals["created"] == totals["updated"] == 0
    assert {outcome for outcome, _ in again.values()} <= {Outcome.UNCHANGED, Outcome.SKIPPED}
    assert count(session, Person) == case.people


def test_values_are_read_as_the_registry_holds_them(
    session: Session, authority: Authority, profile: Profile
) -> None:
    data = (
        HE_HEADER
        + ",איש קשר לחירום,טלפון איש קשר\n"
        + "17,רחל,כהן,052-5551267,מרכז העיר,הרצל 3,12/03/1940,רוסית,כן,,משה כהן,052-7654321\n"
        + "18,יוסף,לוי,08-6851234,kt-north,,,,,כן,,\n"
    ).encode("cp1255")
    run(session, authority, profile, data)
    rachel = session.scalars(select(Person).where(Person.external_ref == "welfare:17")).one()
    assert rachel.name == "רחל כהן" and rachel.phone == "+972525551267"
    assert rachel.birth_year == 1940 and rachel.language == Language.RU
    assert rachel.channel == Channel.SMS and rachel.source == Source.IMPORT
    assert rachel.needs_help and rachel.needs is not None
    assert rachel.needs.flags() == ["lives_alone"]
    assert rachel.needs.emergency_contact_phone == "+972527654321"
    yosef = session.scalars(select(Person).where(Person.external_ref == "welfare:18")).one()
    assert yosef.phone_kind == PhoneKind.LANDLINE and yosef.channel == Channel.NONE
    assert yosef.needs is not None and yosef.needs.powered_medical_equipment
    consents = session.scalars(select(Consent).where(Consent.person_id == rachel.id)).all()
    assert {(c.kind, c.given_by, c.version) for c in consents} == {
        (ConsentKind.REGISTRATION, ConsentGiver.STAFF, "v1"),
        (ConsentKind.HEALTH_DATA, ConsentGiver.STAFF, "v1"),
    }
    assert "welfare" in consents[0].text


def test_a_column_the_list_lacks_keeps_what_is_known(
    session: Session, authority: Authority, profile: Profile
) -> None:
    full = (HE_HEADER + "\n1,רחל,כהן,052-5551267,מרכז העיר,,1940,,כן,כן\n").encode()
    run(session, authority, profile, full)
    partial = "מס' רשומה,שם פרטי,שם משפחה,טלפון,גר לבד\n1,רחל,כהן,052-5551267,\n".encode()
    _rows, totals = run(session, authority, profile, partial, version="v2")
    assert totals["updated"] == 1
    person = session.scalars(select(Person)).one()
    assert person.needs is not None
    assert person.needs.flags() == ["powered_medical_equipment"]  # lives alone: cleared
    assert person.birth_year == 1940
    versions = session.scalars(select(Consent.version).where(Consent.person_id == person.id))
    assert sorted(versions) == ["v1", "v1", "v2", "v2"]


def test_self_registered_people_keep_their_language_and_channel(
    session: Session, authority: Authority, profile: Profile
) -> None:
    register_person(
        session,
        authority=authority,
        details=PersonDetails(
            name="Olga",
            phone=normalise_phone("052-5551267", region="IL"),
            phone_source=PhoneSource.CONTACT,  # her own contact, shared: a proven number
            telegram_chat_id=555,
            language=Language.RU,
            channel=Channel.TELEGRAM,
        ),
        source=Source.TELEGRAM,
        actor="bot",
    )
    session.commit()
    rows, _totals = run(
        session, authority, profile, (HE_HEADER + "\n1,אולגה,,052-5551267,,,,עברית,כן,\n").encode()
    )
    assert rows[2][0] == Outcome.UPDATED
    person = session.scalars(select(Person)).one()
    assert person.language == Language.RU and person.channel == Channel.TELEGRAM
    assert person.external_ref == "welfare:1" and person.needs_help


def test_volunteer_list_with_skills_and_a_minors_guardian(
    session: Session, authority: Authority, profile: Profile
) -> None:
    data = (
        "שם פרטי,שם משפחה,טלפון,שכונה,שנת לידה,כישורים,שפות,רכב,כמה אנשים,שם הורה\n"
        'נועה,לוי,052-5551267,kt-center,2010,"עזרה ראשונה, Driving, juggling","עברית, en",לא,2,דנה לוי\n'
        "משה,כהן,052-5551268,kt-center,1980,logistics,,כן,9,\n"
    ).encode()
    rows, _ = run(session, authority, profile, data, kind="volunteers")
    assert rows[2] == (Outcome.CREATED, ["lists.skill_unknown"])
    assert rows[3] == (Outcome.CREATED, ["lists.capacity_invalid"])
    noa = session.scalars(select(Person).where(Person.phone == "+972525551267")).one()
    assert noa.is_volunteer and not noa.needs_help and noa.volunteer is not None
    assert noa.volunteer.skills == ["driving", "first_aid"]
    assert noa.volunteer.languages == ["en", "he"] and noa.volunteer.checkin_capacity == 2
    guardian = session.scalars(
        select(Consent).where(Consent.person_id == noa.id, Consent.kind == ConsentKind.GUARDIAN)
    ).one()
    assert guardian.guardian_name == "דנה לוי" and guardian.given_by == ConsentGiver.GUARDIAN
    moshe = session.scalars(select(Person).where(Person.phone == "+972525551268")).one()
    assert moshe.volunteer is not None and moshe.volunteer.has_vehicle


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ("name,phone\nJosé,052-5551267\n".encode("latin-1"), "lists.unreadable_encoding"),
        ("name,phone\nMüller,052-5551267\n".encode("latin-1"), "lists.unreadable_encoding"),
        (b"", "lists.empty"),
        (b"colour,flavour\nred,sweet\n", "lists.no_header"),
        (b"phone,zone\n052-5551267,kt-center\n", "lists.missing_name_column"),
        (b"name,zone\nAnn,kt-center\n", "lists.missing_key_column"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_clearly(
    data: bytes, key: str, session: Session, authority: Authority, profile: Profile
) -> None:
    with pytest.raises(ListUnreadable) as raised:
        run(session, authority, profile, data)
    assert raised.value.key == key
    assert "\n" not in raised.value.render(Language.HE)
    assert count(session, Person) == 0


def test_excel_unicode_text_is_utf16_with_tabs() -> None:
    text = "שם\tטלפון\nרחל\t052-5551267\n"
    raw = read_list(text.encode("utf-16"))
    assert raw.encoding == "utf-16" and raw.delimiter == "\\t"
    assert raw.records == [(2, ["רחל", "052-5551267"])]


def test_every_alias_names_one_field() -> None:
    seen: dict[str, str] = {}
    for name, aliases in HEADER_ALIASES.items():
        for alias in aliases:
            key = normalise_header(alias)
            assert seen.setdefault(key, name) == name, alias
    assert normalise_header("\ufeffמס׳ רשומה:") == normalise_header("מס' רשומה")
    assert normalise_header("First_Name") == "first name"


def test_a_synthetic_welfare_list_imports_whole_and_twice_changes_nothing(
    session: Session, authority: Authority, profile: Profile, tmp_path: Path
) -> None:
    town = generate_town(profile, size=1200, seed=5, year=2026)
    path = tmp_path / "welfare.csv"
    written = write_municipal_csv(town, path, "residents", profile=profile, encoding="cp1255")
    _, totals = run(session, authority, profile, path.read_bytes())
    assert totals["created"] == written and totals["skipped"] == 0
    assert totals["with_warnings"] == 0
    audits = count(session, AuditEntry)
    consents = count(session, Consent)

    _rows, totals = run(session, authority, profile, path.read_bytes())
    assert totals["unchanged"] == written
    assert count(session, AuditEntry) == audits and count(session, Consent) == consents


def test_a_list_never_merges_into_a_record_that_only_typed_its_phone(
    session: Session, authority: Authority, profile: Profile
) -> None:
    impostor = register_person(
        session,
        authority=authority,
        details=PersonDetails(
            name="Intruder",
            phone=normalise_phone("052-5551267", region="IL"),  # typed, never confirmed
            telegram_chat_id=4242,
            channel=Channel.TELEGRAM,
        ),
        source=Source.TELEGRAM,
        actor="bot",
    ).person
    session.commit()
    header = "מס' רשומה,שם פרטי,שם משפחה,טלפון,מרותק למיטה,מכשור רפואי"
    rows, totals = run(
        session, authority, profile, f"{header}\n17,אסתר,לוי,052-5551267,כן,כן\n".encode()
    )
    # The resident is a record of her own, and the officer sees which record had the number.
    assert rows[2] == (Outcome.CREATED, ["lists.phone_unverified_holder"])
    assert totals["created"] == 1 and count(session, Person) == 2
    resident = session.scalars(select(Person).where(Person.external_ref == "welfare:17")).one()
    assert resident.phone == "+972525551267" and resident.phone_source == PhoneSource.IMPORT
    assert resident.needs is not None and resident.needs.bedridden
    assert resident.telegram_chat_id is None
    session.refresh(impostor)
    assert impostor.phone is None and impostor.phone_disputed_at is not None
    assert impostor.needs is None and not impostor.needs_help
    report = import_list(
        session,
        data=f"{header}\n17,אסתר,לוי,052-5551267,כן,כן\n".encode(),
        kind="residents",
        authority=authority,
        profile=profile,
        list_name="welfare",
        list_version="v1",
    )
    assert report.rows[0].outcome == Outcome.UNCHANGED and not report.rows[0].warnings
    row = report.as_json()["rows"][0]
    assert row["person_id"] == resident.id


def import_report(
    session: Session, authority: Authority, profile: Profile, data: bytes
) -> ImportReport:
    """A residents list imported as "welfare" v1, not committed."""
    return import_list(
        session,
        data=data,
        kind="residents",
        authority=authority,
        profile=profile,
        list_name="welfare",
        list_version="v1",
    )


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("052-555", "too few digits"),
        ("call me", "it is not a phone number"),
        ("+999 52 555 1234", "no country has that code"),
        ("050-1234567", "no such number"),
        ("052" + "1" * 42, "too many digits"),
    ],
)
def test_an_unusable_phone_keeps_the_resident_flagged_with_the_value_and_why(
    session: Session, authority: Authority, profile: Profile, value: str, why: str
) -> None:
    data = f"municipal id,name,phone,zone\n41,Ann Cohen,{value},kt-center\n".encode()
    report = import_report(session, authority, profile, data)
    (row,) = report.rows
    assert row.outcome == Outcome.CREATED and not row.problems
    (warning,) = row.warnings
    message = warning.render(Language.EN)
    assert f"“{value[:40]}”" in message and why in message and "“phone”" in message
    assert "--phone-to-fix" in message
    for language in Language:  # every catalog says it, with the value and the why
        assert value[:40] in warning.render(language)
    assert report.as_json()["rows"][0]["warnings"][0]["value"] == value[:40]

    person = session.scalars(select(Person)).one()
    assert person.phone is None and person.phone_to_fix == value[:40]
    assert person.channel == Channel.NONE  # no SMS: reached through a buddy meanwhile
    session.commit()

    rows, _ = run(session, authority, profile, data)
    assert rows == {2: (Outcome.UNCHANGED, ["lists.phone_unusable"])}

    # Staff fix it on the next list: the flag goes and SMS takes over from the buddy.
    rows, _ = run(session, authority, profile, data.replace(value.encode(), b"052-5551267"))
    assert rows == {2: (Outcome.UPDATED, [])}
    session.expire_all()
    person = session.scalars(select(Person)).one()
    assert (person.phone, person.phone_to_fix, person.channel) == (
        "+972525551267",
        None,
        Channel.SMS,
    )


def test_an_unusable_phone_without_an_id_is_refused_saying_the_value_why_and_what_to_do(
    session: Session, authority: Authority, profile: Profile
) -> None:
    data = "name,phone,zone\nAnn Cohen,052-555,kt-center\nBen Levi,052-5551268,kt-center\n"
    report = import_report(session, authority, profile, data.encode())
    refused, kept = report.rows
    assert (refused.outcome, kept.outcome) == (Outcome.SKIPPED, Outcome.CREATED)
    (problem,) = refused.problems
    assert problem.key == "lists.phone_unusable_no_key"
    message = problem.render(Language.EN)
    assert "“052-555”" in message and "too few digits" in message and "add an id" in message
    assert "חסרות ספרות" in problem.render(Language.HE)
    assert count(session, Person) == 1


def test_an_unusable_contact_phone_says_the_value_and_why(
    session: Session, authority: Authority, profile: Profile
) -> None:
    data = "municipal id,name,phone,emergency contact phone\n1,Ann,052-5551267,12345\n"
    report = import_report(session, authority, profile, data.encode())
    (warning,) = report.rows[0].warnings
    assert warning.key == "lists.contact_phone_invalid"
    assert "“12345”" in warning.render(Language.EN) and "too few digits" in warning.render(
        Language.EN
    )


def test_a_volunteer_on_a_landline_is_told_they_get_no_tasks_a_resident_is_not(
    session: Session, authority: Authority, profile: Profile
) -> None:
    data = "municipal id,name,phone,volunteer,needs help\n1,Ann,08-6851234,yes,no\n2,Ben,08-6851235,no,yes\n"
    report = import_report(session, authority, profile, data.encode())
    volunteer, resident = report.rows
    assert [w.key for w in volunteer.warnings] == ["lists.phone_landline"]
    assert "“08-6851234”" in volunteer.warnings[0].render(Language.EN)
    assert resident.warnings == []  # a buddy reaches a resident on a landline by design
