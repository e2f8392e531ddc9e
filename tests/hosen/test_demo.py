"""``hosen demo`` end to end: the real service, the fakes and simulated people, on SQLite."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.models import Campaign, CampaignRecipient, OutboxMessage, Task
from hosen.demo import DemoOptions, run_demo
from registry.models import Person


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
    # The offer round: volunteers answered, and coverage per zone says how many confirmed.
    offers = re.search(r"Offers: (\d+) accepted, (\d+) declined, (\d+) never answered", text)
    assert offers is not None and int(offers.group(1)) > 0, text
    assert t(Language.EN, "assign.coverage.head") in text
    confirmed = [int(n) for n in re.findall(r"(\d+) confirmed / \d+ offered / \d+ none", text)]
    assert confirmed and sum(confirmed) > 0
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
    help_acks = _nobody_is_promised_a_visit_without_a_person_behind_it(options.database)
    # The report lists the help answers and what became of each; every one was acknowledged
    # (answers still in flight at the close are acknowledged after the report). How many the
    # simulated residents give varies from run to run (5% of them, answering in time).
    helped = re.search(r"help answers\s+(\d+)", text)
    assert helped is not None and int(helped.group(1)) <= help_acks
    assert text.count("taken by") == min(int(helped.group(1)), 12)


def _nobody_is_promised_a_visit_without_a_person_behind_it(database: Path) -> int:
    """Every "NAME is on the way" follows an acceptance by that very person; every other
    acknowledgement of help says only that the team has the request."""
    engine = create_engine(f"sqlite:///{database}")
    with Session(engine) as session:
        acks = session.execute(
            select(OutboxMessage, Person)
            .join(Person, Person.id == OutboxMessage.person_id)
            .where(OutboxMessage.kind == "ack")
        ).all()
        help_acks = 0
        for message, resident in acks:
            language = resident.language
            body = message.text.removeprefix(t(language, "dispatch.drill_marker")).strip()
            if body == t(language, "dispatch.ack.help"):
                help_acks += 1
                continue
            pattern = re.escape(t(language, "dispatch.ack.help_taken", volunteer="\0"))
            named = re.fullmatch(pattern.replace(re.escape("\0"), "(.+)"), body)
            unnamed = body == t(language, "dispatch.ack.help_taken_unnamed")
            assert not any(
                word in body.casefold() for word in ("someone is coming", "מישהו יגיע", "سيأتي أحد")
            ), body
            if not (named or unnamed):
                continue
            # The acknowledgement is written in the transaction that records the acceptance;
            # their timestamps are not compared because the outbox stamps the wall clock and the
            # dispatcher the demo's compressed one.
            accepted = session.scalars(
                select(Task).where(Task.resident_id == resident.id, Task.accepted_at.is_not(None))
            ).all()
            names = {
                (session.get_one(Person, task.volunteer_id).name or "").split(" ")[0]
                for task in accepted
            }
            assert accepted, f"'{body}' sent to resident {resident.id} before anyone accepted"
            if named:
                assert named.group(1) in names, (body, names)
    engine.dispose()
    return help_acks
