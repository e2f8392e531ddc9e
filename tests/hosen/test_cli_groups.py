"""``hosen groups``, ``hosen resources`` and ``hosen gaps`` on the test database."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from dispatch.models import CampaignRecipient
from hosen.cli import main
from registry.models import AuditEntry, Authority, Person, PhoneKind, Source, Zone
from registry.profile_sync import Directory


@pytest.fixture
def cli_db(
    monkeypatch: pytest.MonkeyPatch, database_url: str, directory: Directory, tmp_path: Path
) -> Directory:
    monkeypatch.setenv("HOSEN_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    return directory


def add_person(session: Session, authority: Authority, phone: str, name: str, zone: str) -> None:
    zone_id = session.scalar(
        select(Zone.id).where(Zone.authority_id == authority.id, Zone.code == zone)
    )
    session.add(
        Person(
            authority_id=authority.id,
            zone_id=zone_id,
            name=name,
            phone=phone,
            phone_kind=PhoneKind.MOBILE,
            source=Source.IMPORT,
            needs_help=True,
            birth_year=1940,
        )
    )
    session.commit()


def test_groups_add_show_members_and_the_unaffiliated_list(
    cli_db: Directory,
    session: Session,
    authority: Authority,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_person(session, authority, "+972525557101", '=HYPERLINK("http://x")', "kt-north")
    add_person(session, authority, "+972525557102", "Miriam", "kt-center")
    add_person(session, authority, "+972525557103", "Yael", "kt-north")
    args = ["groups", "add", "--name", "Scouts", "--kind", "youth_movement", "--code", "scouts-n"]
    args += ["--zone", "kt-north", "--coordinator-phone", "052-555-7000"]
    args += ["--coordinator-name", "Amit", "--coordinator-born", "1985"]
    assert main(args) == 0
    assert "/start scouts-n" in capsys.readouterr().out
    assert main(["groups", "members", "SCOUTS-N", "--add", "052-555-7103"]) == 0
    assert main(["groups", "members", "scouts-n", "--add", "052-555-7999"]) == 2
    assert "send them the join code scouts-n" in capsys.readouterr().err
    assert main(["groups", "members", "scouts-n", "--json"]) == 0
    members = json.loads(capsys.readouterr().out)
    assert [(m["name"], m["coordinator"]) for m in members] == [("Amit", True), ("Yael", False)]
    assert main(["groups", "show", "scouts-n", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["zones"] == ["kt-north"] and shown["coordinators"] == ["Amit"]
    assert shown["members"] == 2

    out = tmp_path / "unaffiliated.csv"
    assert main(["groups", "unaffiliated", "--csv", str(out)]) == 0
    assert "2 people who belong to no group" in capsys.readouterr().out
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM: Excel reads Hebrew right
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["id", "name", "phone"]
    names = {row[1] for row in rows[1:]}
    assert names == {'\'=HYPERLINK("http://x")', "Miriam"}  # formula neutralised
    assert main(["groups", "unaffiliated", "--zone", "kt-north", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(row["phone"], row["needs_help"]) for row in listed] == [("+972525557101", True)]
    session.expire_all()
    reads = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "groups.unaffiliated")
    ).all()
    assert len(reads) == 2  # reading names and phones is audited


def test_imports_report_rows_in_the_officers_language(
    cli_db: Directory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    groups_csv = tmp_path / "groups.csv"
    groups_csv.write_text(
        "code,name,kind,zones\nok-1,Committee,building committee,kt-north\nx,Bad,spaceship,\n",
        encoding="utf-8",
    )
    report = tmp_path / "report.json"
    assert main(["groups", "import", str(groups_csv), "--lang", "he", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    skipped = t(Language.HE, "community_lists.outcome.skipped")
    assert f"שורה 3: {skipped}: " in out
    saved = json.loads(report.read_text(encoding="utf-8"))
    assert saved["totals"]["created"] == 1 and saved["totals"]["skipped"] == 1
    assert saved["rows"][1]["problems"][0]["key"] == "community_lists.kind_unknown"

    resources_csv = tmp_path / "resources.csv"
    resources_csv.write_text(
        "code,name,kind,zone,capacity,state\n"
        "gen-1,Generator,generator,kt-north,20,available\n"
        "van-1,Van,accessible_vehicle,kt-north,lots,\n",
        encoding="utf-8",
    )
    assert main(["resources", "import", str(resources_csv), "--lang", "ar", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and t(Language.AR, "community_lists.outcome.skipped") in out
    assert main(["resources", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # the dry run wrote nothing
    assert main(["resources", "import", str(resources_csv)]) == 0
    capsys.readouterr()
    assert main(["resources", "set-state", "gen-1", "busy"]) == 0
    assert main(["resources", "set-state", "gen-1", "sideways"]) == 2
    assert "gen-1: in_use" in capsys.readouterr().out
    assert main(["resources", "list", "--json"]) == 0
    [generator] = json.loads(capsys.readouterr().out)
    assert (generator["code"], generator["state"], generator["capacity"]) == ("gen-1", "in_use", 20)


def test_gaps_as_text_json_and_html(
    cli_db: Directory,
    session: Session,
    authority: Authority,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_person(session, authority, "+972525557201", "Miriam", "kt-north")
    group = ["groups", "add", "--name", "<b>Scouts</b>", "--kind", "youth_movement"]
    assert main([*group, "--zone", "kt-north"]) == 0
    capsys.readouterr()

    assert main(["gaps", "--zone", "kt-north", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    [north] = document["zones"]
    assert north["zone"] == "kt-north" and north["residents"] == 1 and north["no_buddy"] == 1
    assert north["groups"] == ["<b>Scouts</b>"]
    assert [gap["cause"] for gap in north["gaps"] if gap["kind"] == "buddy"] == [
        "no_volunteer_in_reach"
    ]

    assert main(["gaps", "--zone", "kt-north", "--lang", "ru"]) == 0
    text = capsys.readouterr().out
    assert t(Language.RU, "gaps.needs", count=1) in text
    assert t(Language.RU, "gaps.buddies", confirmed=0, offered=0, none=1) in text

    page = tmp_path / "gaps.html"
    assert main(["gaps", "--html", str(page), "--lang", "he"]) == 0
    html = page.read_text(encoding="utf-8")
    assert '<html lang="he" dir="rtl">' in html
    assert "&lt;b&gt;Scouts&lt;/b&gt;" in html and "<b>Scouts</b>" not in html
    assert t(Language.HE, "gaps.no_resources") in html


def test_a_group_made_by_the_cli_is_what_staff_and_campaigns_name(
    cli_db: Directory,
    session: Session,
    authority: Authority,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_person(session, authority, "+972525557401", "Yael", "kt-north")
    assert (
        main(
            ["groups", "add", "--name", "Scouts", "--kind", "youth_movement", "--code", "scouts-n"]
        )
        == 0
    )
    assert main(["groups", "members", "scouts-n", "--add", "052-555-7401"]) == 0
    phone = ["--phone", "052-555-7500", "--name", "Avi", "--authority", "kiryat-tamar"]
    assert main(["staff", "add", *phone, "--role", "coordinator", "--group", "SCOUTS-N"]) == 0
    assert main(["staff", "add", *phone, "--role", "coordinator", "--group", "nope"]) == 2
    capsys.readouterr()
    assert main(["campaign", "start", "--drill", "--group", "Scouts-N", "--yes"]) == 0
    session.expire_all()
    recipients = session.scalars(select(CampaignRecipient.person_id)).all()
    yael = session.scalars(select(Person.id).where(Person.phone == "+972525557401")).one()
    assert recipients == [yael]


def test_an_unreadable_list_is_refused_in_the_officers_language(
    cli_db: Directory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("name,colour\nA,red\n", encoding="utf-8")
    assert main(["groups", "import", str(bad), "--lang", "he"]) == 2
    err = capsys.readouterr().err
    assert t(Language.HE, "community_lists.missing_columns", columns="kind") in err
