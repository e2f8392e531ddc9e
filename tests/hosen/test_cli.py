"""The ``hosen`` command line end to end, on a real database."""

from __future__ import annotations

import json

import pytest

from hosen.cli import main


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
