"""``hosen campaign`` end to end through the command line, on both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from hosen.cli import main
from hosen.context import build_context
from registry.models import Authority, Person, Source

pytestmark = pytest.mark.db


def test_start_status_close_export(
    sessions: sessionmaker[Session],
    authority: Authority,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HOSEN_DATABASE_URL", database_url)
    # One context for every command, so its engine is closed at the end of the test.
    context = build_context()
    monkeypatch.setattr("hosen.context.build_context", lambda **_: context)
    with sessions() as session:
        session.add_all(
            Person(
                authority_id=authority.id,
                name=f"P {n}",
                phone=f"+97250800000{n}",
                source=Source.STAFF,
                needs_help=True,
            )
            for n in range(3)
        )
        session.commit()
    assert main(["campaign", "start", "--drill", "--residents", "--json", "--yes"]) == 0
    started = json.loads(capsys.readouterr().out)
    assert started["recipients"] == 3
    campaign_id = str(started["campaign_id"])
    assert main(["campaign", "status", campaign_id, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["total"]["queued"] == 3
    # Human text in the officer's language: Hebrew by default, --lang for another.
    assert main(["campaign", "status", campaign_id]) == 0
    hebrew = capsys.readouterr().out
    assert "כולם" in hebrew and "עוד לא ענו, הסולם ממשיך" in hebrew
    assert main(["campaign", "status", campaign_id, "--lang", "ar"]) == 0
    arabic = capsys.readouterr().out
    assert "الجميع" in arabic and "أُرسلت رسالة إلى 3 أشخاص." in arabic
    assert main(["campaign", "close", campaign_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["unreached"]) == 3
    assert main(["campaign", "export", campaign_id, "--codes"]) == 0
    assert capsys.readouterr().out.startswith("\ufeffperson_id,name,zone,channel,delivery")
    out = tmp_path / "campaign.csv"
    assert main(["campaign", "export", campaign_id, "--out", str(out), "--lang", "en"]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "a UTF-8 BOM, so Excel reads Hebrew"
    header = data.decode("utf-8-sig").splitlines()[0].split(",")
    assert header[:3] == ["Number in the registry", "Name", "Zone code"]
    assert {"Phone", "Address", "Buddy", "Zone"} <= set(header)
    assert main(["campaign", "start", "--drill", "--zone", "atlantis", "--yes"]) == 2
    assert "unknown zone" in capsys.readouterr().err
    context.engine.dispose()
