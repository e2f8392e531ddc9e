"""The ``hosen`` command line end to end, on a real database."""

from __future__ import annotations

import argparse
import io
import json
import re
import stat
from pathlib import Path

import pytest
from sqlalchemy import select
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
    assert capsys.readouterr().out == ""


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


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["staff", "add", "--phone", "12", "--name", "x", "--role", "admin"], "--phone '12'"),
        (["people", "show", "99999"], "no person"),
        (["people", "list", "--authority", "atlantis"], "unknown authority 'atlantis'"),
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
