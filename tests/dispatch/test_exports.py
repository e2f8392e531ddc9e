"""CSV exports neutralise formulas: the registry's export and a campaign's CSV, on both
databases."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.models import Campaign
from dispatch.reports import export_csv
from registry.db import utcnow
from registry.exporter import export_people
from registry.models import Authority, Channel, Person, PhoneKind, Source
from tests.registry.test_spreadsheet import FORMULAS


@pytest.mark.db
def test_the_registry_export_and_the_campaign_csv_neutralise_formulas(
    sessions: sessionmaker[Session], authority: Authority, tmp_path: Path
) -> None:
    with sessions() as session:
        for n, name in enumerate(FORMULAS):
            session.add(
                Person(
                    authority_id=authority.id,
                    name=name,
                    phone=f"+97250555{n:04d}",
                    phone_kind=PhoneKind.MOBILE,
                    channel=Channel.SMS,
                    needs_help=True,
                    source=Source.STAFF,
                )
            )
        session.commit()
        fresh = session.get(Authority, authority.id)
        assert fresh is not None
        path = tmp_path / "people.csv"
        export_people(session, authority=fresh, path=path, actor="test")
        campaign = start_drill_checkin(
            session,
            authority=fresh,
            audience=Audience(residents_only=True),
            started_by="test",
            now=utcnow(),
        )
        session.commit()
        campaign_csv = export_csv(session, campaign=session.get_one(Campaign, campaign.id))
    for text in (path.read_bytes().decode("utf-8-sig"), campaign_csv):
        cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
        for name in FORMULAS:
            assert "'" + name in cells
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
