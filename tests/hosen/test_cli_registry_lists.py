from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hosen.cli import main
from registry.models import AuditEntry, Person, Source
from registry.profile_sync import Directory


@pytest.fixture
def cli_db(
    monkeypatch: pytest.MonkeyPatch, database_url: str, directory: Directory, tmp_path: Path
) -> Directory:
    """The CLI on the test database (migrated, profile synced), run from an empty directory."""
    monkeypatch.setenv("HOSEN_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    return directory


def people(session: Session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Person)) or 0


def test_town_generate_load_and_lists(
    cli_db: Directory, session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lists = tmp_path / "lists"
    assert (
        main(["town", "generate", "--size", "300", "--seed", "2", "--load", "--csv", str(lists)])
        == 0
    )
    out = capsys.readouterr().out
    assert "loaded 300 people" in out
    assert people(session) == 300
    assert (lists / "kiryat-tamar-residents.csv").exists()
    assert (lists / "emek-tamar-volunteers.csv").exists()

    assert main(["town", "generate", "--size", "300", "--seed", "2", "--load"]) == 0
    assert "300 already there" in capsys.readouterr().out
    assert people(session) == 300


def test_import_dry_run_then_real_then_again(
    cli_db: Directory, session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["town", "generate", "--size", "400", "--seed", "3", "--csv", str(tmp_path)]) == 0
    residents = tmp_path / "kiryat-tamar-residents.csv"
    rows = len(residents.read_text(encoding="utf-8-sig").splitlines()) - 1
    capsys.readouterr()

    assert main(["import", "residents", str(residents), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would be created {rows}" in out and "dry run: nothing was written" in out
    assert people(session) == 0

    report = tmp_path / "report.json"
    assert main(["import", "residents", str(residents), "--report", str(report)]) == 0
    assert f"created {rows}," in capsys.readouterr().out
    assert people(session) == rows
    saved = json.loads(report.read_text(encoding="utf-8"))
    assert saved["totals"]["created"] == rows and len(saved["rows"]) == rows
    first_row = residents.read_text(encoding="utf-8-sig").splitlines()[1].split(",")
    dumped = json.dumps(saved, ensure_ascii=False)
    assert first_row[3] not in dumped  # no personal data in the report: no phone, no name
    assert f"{first_row[1]} {first_row[2]}" not in dumped

    assert main(["import", "residents", str(residents)]) == 0
    assert f"unchanged {rows}," in capsys.readouterr().out
    assert people(session) == rows


def test_skipped_rows_are_reported_and_the_import_succeeds(
    cli_db: Directory, session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "volunteers.csv"
    path.write_text(
        "first name,last name,phone,zone\nAnn,Cohen,052-5551267,kt-center\nBen,Levi,123,kt-center\n",
        encoding="utf-8",
    )
    assert main(["import", "volunteers", str(path), "--lang", "he"]) == 0
    out = capsys.readouterr().out
    assert "created 1," in out and "skipped 1," in out
    assert "row 3: skipped:" in out and "טלפון" in out
    assert people(session) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,phone\nJosé,052-5551267\n".encode("latin-1"), "neither UTF-8 nor Windows-1255"),
        (b"colour\nred\n", "none of the columns we know"),
        (None, "cannot read"),
    ],
)
def test_a_file_that_cannot_be_read_fails_in_one_line(
    cli_db: Directory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes | None,
    message: str,
) -> None:
    path = tmp_path / "list.csv"
    if content is not None:
        path.write_bytes(content)
    assert main(["import", "residents", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hosen: error:") and message in err
    assert err.count("\n") == 1


def test_export_round_trip_and_audit(
    cli_db: Directory, session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["town", "generate", "--size", "200", "--seed", "4", "--load"]) == 0
    out = tmp_path / "people.csv"
    assert main(["export", "people", str(out), "--include-needs", "--headers", "en"]) == 0
    assert "with health data (audited)" in capsys.readouterr().out
    session.expire_all()
    reads = session.scalar(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "needs.read")
    )
    assert reads and reads > 0
    exported = len(out.read_text(encoding="utf-8-sig").splitlines()) - 1
    assert main(["import", "residents", str(out)]) == 0
    assert f"unchanged {exported}," in capsys.readouterr().out

    assert main(["export", "people", str(tmp_path / "x.csv"), "--encoding", "cp1255"]) == 2
    assert "Windows-1255" in capsys.readouterr().err


def test_people_summary(cli_db: Directory, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["town", "generate", "--size", "250", "--seed", "5", "--load"]) == 0
    capsys.readouterr()
    assert main(["people", "summary"]) == 0
    table = capsys.readouterr().out
    assert "kt-center" in table and "volunteer skills" in table
    assert main(["people", "summary", "--json", "--authority", "emek-tamar"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["authority"] == "emek-tamar" and data["total"]["people"] > 0


def test_town_size_is_checked(cli_db: Directory, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["town", "generate", "--size", "0"]) == 2
    assert "--size" in capsys.readouterr().err


def test_staff_confirm_a_typed_phone(
    cli_db: Directory, session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    from registry.models import PhoneSource
    from registry.people import PersonDetails, register_person
    from registry.phones import normalise_phone

    person = register_person(
        session,
        authority=cli_db.authorities["kiryat-tamar"],
        details=PersonDetails(
            name="Moshe", phone=normalise_phone("08-6123456", region="IL"), telegram_chat_id=5
        ),
        source=Source.TELEGRAM,
        actor="bot",
    ).person
    session.commit()
    assert person.phone_source == PhoneSource.TYPED
    assert main(["people", "show", "08-6123456", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["phone_source"] == "typed" and shown["phone_verified"] is False
    assert main(["people", "confirm-phone", str(person.id)]) == 0
    assert "confirmed" in capsys.readouterr().out
    session.expire_all()
    assert person.phone_source == PhoneSource.STAFF and person.phone_verified_at is not None
    actions = session.scalars(select(AuditEntry.action).where(AuditEntry.person_id == person.id))
    assert "phone.confirm" in list(actions)
    assert main(["people", "confirm-phone", str(person.id)]) == 0
    assert "already" in capsys.readouterr().out


def test_an_unusable_phone_is_reported_kept_and_listed_for_staff_to_fix(
    cli_db: Directory, session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "welfare.csv"
    path.write_text(
        "municipal id,name,phone,zone\n"
        "1,Ann Cohen,052-555,kt-center\n"
        "2,Ben Levi,052-5551268,kt-center\n"
        "3,Dan Amar,N/A,kt-center\n"
        ",Eve Tal,abc,kt-center\n",
        encoding="utf-8",
    )
    assert main(["import", "residents", str(path)]) == 0
    out = capsys.readouterr().out
    assert "created 3," in out and "skipped 1," in out
    assert "row 2: created:" in out and "“052-555”" in out and "too few digits" in out
    assert "row 5: skipped:" in out and "“abc”" in out and "not a phone number" in out
    assert "row 4: created:" in out and "No phone number" in out  # "N/A" is no phone, not a bad one

    assert main(["people", "list", "--phone-to-fix", "--json"]) == 0
    (flagged,) = json.loads(capsys.readouterr().out)
    assert (flagged["name"], flagged["phone"], flagged["phone_to_fix"], flagged["channel"]) == (
        "Ann Cohen",
        None,
        "052-555",
        "none",
    )
    assert main(["people", "list", "--phone-to-fix"]) == 0
    table = capsys.readouterr().out
    assert "phone to fix: 052-555" in table and "Ben Levi" not in table and "1 shown" in table
    assert main(["people", "show", str(flagged["id"])]) == 0
    assert "phone_to_fix: 052-555" in capsys.readouterr().out

    path.write_text("municipal id,name,phone\n1,Ann Cohen,052-5551267\n", encoding="utf-8")
    assert main(["import", "residents", str(path)]) == 0
    assert "updated 1," in capsys.readouterr().out
    assert main(["people", "list", "--phone-to-fix", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
