"""``hosen demo`` end to end: the real service, the fakes and simulated people, on SQLite."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from config.settings import Settings
from dispatch.models import Campaign, CampaignRecipient, OutboxMessage
from hosen.demo import DemoOptions, run_demo


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_runs_a_whole_drill(tmp_path: Path, unit_settings: Settings) -> None:
    out = io.StringIO()
    options = DemoOptions(
        size=400,
        seed=3,
        speed=1500.0,
        database=tmp_path / "demo.sqlite3",
        html=tmp_path / "report.html",
        out=out,
    )
    assert asyncio.run(run_demo(unit_settings, options)) == 0
    text = out.getvalue()
    assert "Drill report" in text
    answered = re.search(r"answered\s+(\d+) \(([\d.]+)%\)", text)
    assert answered is not None and int(answered.group(1)) > 0
    html = options.html.read_text(encoding="utf-8")
    assert html.count("<svg") == 2 and "DRILL" in html

    engine = create_engine(f"sqlite:///{options.database}")
    with engine.connect() as conn:
        campaign = conn.execute(select(Campaign.status, Campaign.mode, Campaign.recipients)).one()
        assert campaign.status == "closed" and campaign.mode == "drill" and campaign.recipients > 0
        pending = conn.scalar(
            select(func.count())
            .select_from(CampaignRecipient)
            .where(CampaignRecipient.answer == "pending")
        )
        assert pending == 0, "every recipient ends answered or on the unreached list"
        texts = conn.scalars(
            select(OutboxMessage.text).where(OutboxMessage.kind == "checkin")
        ).all()
        assert texts and all(text.strip() for text in texts)
    engine.dispose()
