"""The ``hosen`` command line end to end, on a real database."""

from __future__ import annotations

import argparse
import io
import json
import re
import secrets
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from hosen.cli import COMMAND_MODULES, build_parser, main
from registry.db import make_engine
from registry.models import AuditEntry
from registry.staff import StaffMember


@pytest.fixture
def cli_db(
    database_url: str, engine: object, monkeypatch: pytest.MonkeyPatch, sessions: object
) -> str:
    monkeypatch.setenv("HOSEN_DATABASE_URL", database_url)
    return database_url


def test_db_upgrade_then_people_list(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert "11 zones" in capsys.readouterr().out
    assert main(["people", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("hosen 0.")


def test_staff_add_list_remove(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert (
        main(
            [
                "staff",
                "add",
                "--phone",
                "052-555-1000",
                "--name",
                "Rina",
                "--authority",
                "kiryat-tamar",
                "--role",
                "officer",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["staff", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["phone"], s["role"], s["authority"]) for s in listed] == [
        ("+972525551000", "officer", "kiryat-tamar")
    ]
    assert main(["staff", "remove", "--phone", "+972525551000"]) == 0


def test_staff_add_takes_the_language_they_read(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    add = ["staff", "add", "--phone", "052-555-1001", "--name", "Samir", "--role", "officer"]
    add += ["--authority", "kiryat-tamar"]
    assert main([*add, "--lang", "ar"]) == 0
    assert main(add) == 0  # registered again without --lang: their language stays
    capsys.readouterr()
    assert main(["staff", "list", "--json"]) == 0
    assert [s["language"] for s in json.loads(capsys.readouterr().out)] == ["ar"]
    assert (
        main(
            [
                "staff",
                "add",
                "--phone",
                "052-555-1002",
                "--name",
                "Noa",
                "--role",
                "officer",
                "--authority",
                "kiryat-tamar",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["staff", "list", "--json"]) == 0
    assert [s["language"] for s in json.loads(capsys.readouterr().out)] == ["ar", "he"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["staff", "add", "--phone", "12", "--name", "x", "--role", "admin"], "--phone '12'"),
        (["people", "show", "99999"], "no person"),
        (["people", "list", "--authority", "atlantis"], "unknown authority 'atlantis'"),
        (
            ["people", "list", "--zone", "nowhere"],
            "unknown zone 'nowhere' in kiryat-tamar (known: kt-center, ",
        ),
    ],
)
def test_errors_are_one_line_and_nonzero(
    cli_db: str, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_setting_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOSEN_DATABASE_URL", "oracle://nope")
    assert main(["people", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hosen: error: HOSEN_DATABASE_URL:") and err.count("\n") == 1


def test_unreachable_database_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOSEN_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["people", "list"]) == 2
    err = capsys.readouterr().err
    assert "database" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_each_command_is_registered_by_its_module(command: str) -> None:
    parser = build_parser(command)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert command in subparsers.choices


@pytest.fixture
def empty_database_url(
    db_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A database that exists but was never migrated (on PostgreSQL an empty schema)."""
    if db_kind == "sqlite":
        sqlite3.connect(tmp_path / "empty.sqlite3").close()
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    base = str(request.getfixturevalue("postgres_url"))
    schema = f"empty_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.mark.db
@pytest.mark.parametrize("argv", [["people", "list"], ["campaign", "status", "1"]])
def test_an_unmigrated_database_is_told_to_run_db_upgrade(
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    monkeypatch.setenv("HOSEN_DATABASE_URL", empty_database_url)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hosen: error: database: the database has no Hosen schema yet")
    assert err.rstrip().endswith("run `hosen db upgrade`") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["db", "upgrade"], ["people", "list"]])
def test_a_sqlite_path_in_a_missing_directory_is_refused_and_nothing_is_created(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    missing = tmp_path / "typo" / "hosen.sqlite3"
    monkeypatch.setenv("HOSEN_DATABASE_URL", f"sqlite:///{missing}")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"the directory '{missing.parent}' does not exist" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_only_db_upgrade_creates_a_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hosen.sqlite3"
    monkeypatch.setenv("HOSEN_DATABASE_URL", f"sqlite:///{path}")
    assert main(["people", "list"]) == 2
    assert f"no database at '{path}'; run `hosen db upgrade`" in capsys.readouterr().err
    assert not path.exists()
    assert main(["db", "upgrade"]) == 0
    assert path.is_file()
    assert main(["people", "list", "--json"]) == 0
    assert "[]" in capsys.readouterr().out


def test_the_default_database_gets_its_var_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh checkout needs no setting: `hosen db upgrade` creates var/hosen.sqlite3."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOSEN_DATABASE_URL", raising=False)
    assert main(["people", "list"]) == 2
    assert not (tmp_path / "var").exists()
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "var" / "hosen.sqlite3").is_file()


# Run in a fresh interpreter: the top-level packages a command line imported.
_IMPORTS_PROBE = """
import json, sys
from hosen.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})), file=sys.stderr)
"""
# What only some commands need: the solver, the bots, the providers' clients, the fakes, the
# web server, the scheduler.
HEAVY = {
    "scipy", "ortools", "numpy", "telegram", "twilio", "aiohttp", "httpx", "fakes", "bots",
    "starlette", "uvicorn", "apscheduler",
}  # fmt: skip


def imported_by(argv: list[str], env: dict[str, str] | None = None) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS_PROBE, *argv],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_and_version_import_no_command() -> None:
    """`hosen --help` lists every command from the table in hosen.cli, importing none."""
    for argv in (["--help"], ["--version"]):
        loaded = imported_by(argv)
        assert "hosen" in loaded
        assert not loaded & (HEAVY | {"sqlalchemy", "pydantic", "registry", "dispatch"}), argv


def test_campaign_status_loads_no_client_solver_or_fakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'hosen.sqlite3'}"
    monkeypatch.setenv("HOSEN_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    assert main(["campaign", "start", "--drill", "--residents", "--yes"]) == 0
    loaded = imported_by(["campaign", "status", "1"], env={"HOSEN_DATABASE_URL": url, "PATH": ""})
    assert "dispatch" in loaded, "the probe ran the command"
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_a_command_loads_only_what_it_needs() -> None:
    """`hosen people ...` starts without the solver, the bots or the fakes."""
    import subprocess
    import sys

    code = (
        "import sys; from hosen.cli import build_parser; build_parser('people');"
        "print(sorted(m for m in ('ortools', 'scipy', 'telegram', 'bots', 'fakes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inbox_once_processes_what_the_webhooks_stored(
    cli_db: str, sessions: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    from bots.dialog import Inbound
    from bots.inbound import Delivery, accept
    from registry.db import unit_of_work
    from registry.models import Channel

    assert main(["db", "upgrade"]) == 0
    delivery = Delivery(
        provider_key="sms:SMcli",
        inbound=Inbound(channel=Channel.SMS, address="+972525551234", text="JOIN"),
        payload={"MessageSid": "SMcli", "From": "+972525551234", "Body": "JOIN"},
    )
    with unit_of_work(sessions) as session:  # type: ignore[arg-type]
        accept(session, delivery=delivery, now=datetime.now(UTC))
    capsys.readouterr()
    assert main(["inbox", "--once"]) == 0
    assert capsys.readouterr().out.strip() == "1 processed, 0 parked"


def test_staff_pin_is_generated_once_or_read_from_stdin_and_stored_hashed(
    cli_db: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sessions: sessionmaker[Session],
) -> None:
    assert main(["db", "upgrade"]) == 0
    add = ["staff", "add", "--phone", "052-555-1000", "--name", "Rina", "--role", "admin"]
    assert main(add) == 0
    capsys.readouterr()
    assert main(["staff", "pin", "--phone", "0525551000", "--generate"]) == 0
    shown = re.search(r"PIN for staff #\d+: (\d{8}) ", capsys.readouterr().out)
    assert shown is not None
    with sessions() as session:
        member = session.scalars(select(StaffMember)).one()
        assert member.pin_hash and shown.group(1) not in member.pin_hash
        actors = session.scalars(
            select(AuditEntry.actor).where(AuditEntry.action == "staff.pin.set")
        ).all()
    assert actors and all(re.fullmatch(r"cli:\S+", actor) for actor in actors)
    monkeypatch.setattr("sys.stdin", io.StringIO("111111\n"))
    assert main(["staff", "pin", "--phone", "0525551000"]) == 2
    assert "digits" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("582039\n"))
    assert main(["staff", "pin", "--phone", "0525551000"]) == 0
    assert "582039" not in capsys.readouterr().out


def test_people_list_is_audited_and_the_database_and_exports_are_the_owners_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "hosen.sqlite3"
    monkeypatch.setenv("HOSEN_DATABASE_URL", f"sqlite:///{database}")
    assert main(["db", "upgrade"]) == 0
    assert main(["people", "list"]) == 0
    assert main(["export", "people", str(tmp_path / "people.csv")]) == 0
    for made in (database, tmp_path / "people.csv"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o600, made
    engine = make_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as session:
            entry = session.scalars(
                select(AuditEntry).where(AuditEntry.action == "people.list")
            ).one()
    finally:
        engine.dispose()
    assert entry.actor.startswith("cli:") and entry.detail["shown"] == 0


def test_help_list_shows_open_help_with_its_age_and_owner(
    cli_db: str, sessions: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import timedelta

    from sqlalchemy import select
    from sqlalchemy.orm import sessionmaker

    from dispatch.help import handle, raise_help
    from dispatch.models import AlertKind, HelpNeed
    from registry.db import unit_of_work, utcnow
    from registry.models import Authority, Channel, Person, Source
    from registry.phones import normalise_phone
    from registry.staff import StaffRole, add_staff

    assert main(["db", "upgrade"]) == 0
    assert main(["help", "list"]) == 0
    assert "no open help" in capsys.readouterr().out
    assert isinstance(sessions, sessionmaker)
    factory: sessionmaker[Session] = sessions
    with unit_of_work(factory) as session:
        authority = session.scalars(select(Authority).where(Authority.code == "kiryat-tamar")).one()
        resident, other = (
            Person(authority_id=authority.id, name=name, channel=Channel.SMS, source=Source.STAFF)
            for name in ("Miriam Cohen", "Salma Khoury")
        )
        session.add_all([resident, other])
        officer = add_staff(
            session,
            name="Dana Levi",
            phone=normalise_phone("052-555-1001", region="IL"),
            authority=authority,
            role=StaffRole.OFFICER,
            actor="test",
        )
        early = utcnow() - timedelta(minutes=95)
        first = raise_help(
            session,
            resident=resident,
            campaign=None,
            kind=AlertKind.HELP_REQUEST,
            now=early,
            need=HelpNeed.MEDICINE,
        )
        second = raise_help(
            session, resident=other, campaign=None, kind=AlertKind.HELP_REQUEST, now=utcnow()
        )
        handle(session, alert_id=second.id, action="take", member=officer, now=utcnow())
        ids = (first.id, second.id)
    assert main(["help", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == [str(ids[0]), "1h35m", "open", "NOBODY"]
    assert lines[2].split()[:5] == [str(ids[1]), "0m", "taken", "Dana", "Levi"]
    assert main(["help", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["alert"], r["owner"], r["need"]) for r in rows] == [
        (ids[0], None, "medicine"),
        (ids[1], "Dana Levi", None),
    ]
