from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.profile import Profile
from fakes.town import generate_town, load_town
from registry.errors import RegistryError
from registry.exporter import BASE_COLUMNS, NEEDS_COLUMNS, export_people, local_phone
from registry.importer import _ALIAS_FIELD, import_list, normalise_header
from registry.models import AuditEntry, Authority, Person
from registry.profile_sync import Directory


@pytest.fixture
def loaded(session: Session, directory: Directory, profile: Profile) -> Authority:
    town = generate_town(profile, size=600, seed=9, year=2026, authorities=["kiryat-tamar"])
    load_town(session, town, directory)
    session.commit()
    return directory.authorities["kiryat-tamar"]


def test_every_export_header_is_read_back_as_its_field() -> None:
    for name, hebrew, english in BASE_COLUMNS + NEEDS_COLUMNS:
        assert _ALIAS_FIELD[normalise_header(hebrew)] == name
        assert _ALIAS_FIELD[normalise_header(english)] == name


@pytest.mark.parametrize("include_needs", [False, True])
@pytest.mark.parametrize("hebrew_headers", [False, True])
def test_an_export_imports_back_unchanged(
    session: Session,
    loaded: Authority,
    profile: Profile,
    tmp_path: Path,
    include_needs: bool,
    hebrew_headers: bool,
) -> None:
    path = tmp_path / "people.csv"
    count = export_people(
        session,
        authority=loaded,
        path=path,
        include_needs=include_needs,
        hebrew_headers=hebrew_headers,
    )
    session.commit()
    assert count == 600
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to see UTF-8
    before = session.scalar(select(func.max(Person.updated_at)))
    report = import_list(
        session,
        data=data,
        kind="residents",
        authority=loaded,
        profile=profile,
        list_name="welfare",
        list_version="export",
    )
    session.commit()
    assert report.totals["unchanged"] == 600, report.problem_rows()[:3]
    assert session.scalar(select(func.max(Person.updated_at))) == before


def test_health_data_leave_only_when_asked_and_the_read_is_audited(
    session: Session, loaded: Authority, tmp_path: Path
) -> None:
    plain, full = tmp_path / "plain.csv", tmp_path / "full.csv"
    export_people(session, authority=loaded, path=plain, hebrew_headers=False)
    reads = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "needs.read")
    assert session.scalar(reads) == 0
    header = plain.read_text(encoding="utf-8-sig").splitlines()[0]
    assert "lives alone" not in header and "medical equipment" not in header

    export_people(session, authority=loaded, path=full, include_needs=True, hebrew_headers=False)
    session.commit()
    residents = session.scalar(
        select(func.count()).select_from(Person).where(Person.needs_help.is_(True))
    )
    assert session.scalar(reads) == residents > 0
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "needs.read")).first()
    assert entry is not None and entry.detail == {"purpose": "export"}
    assert "lives alone" in full.read_text(encoding="utf-8-sig").splitlines()[0]


def test_windows_1255_refuses_rather_than_lose_a_name(
    session: Session, loaded: Authority, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    with pytest.raises(RegistryError) as raised:
        export_people(session, authority=loaded, path=path, encoding="cp1255")
    assert raised.value.key == "lists.export_unencodable"
    assert not path.exists()


def test_windows_1255_export_of_hebrew_names(
    session: Session, authority: Authority, profile: Profile, tmp_path: Path
) -> None:
    data = "שם,טלפון,שכונה\nרחל כהן,052-5551267,מרכז העיר\n".encode("cp1255")
    import_list(
        session,
        data=data,
        kind="residents",
        authority=authority,
        profile=profile,
        list_name="welfare",
        list_version="1",
    )
    path = tmp_path / "people.csv"
    assert export_people(session, authority=authority, path=path, encoding="cp1255") == 1
    text = path.read_bytes().decode("cp1255")
    assert "רחל כהן,052-555-1267,kt-center" in text


@pytest.mark.parametrize(
    ("e164", "local"),
    [("+972525551267", "052-555-1267"), ("+97286851234", "08-685-1234"), (None, ""),
     ("+14155550100", "+14155550100")],
)  # fmt: skip
def test_local_phone(e164: str | None, local: str) -> None:
    assert local_phone(e164) == local
