"""Live status, the drill report at close and the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.campaigns import Audience, get_campaign, start_drill_checkin
from dispatch.clock import ManualClock
from dispatch.models import (
    BlockReason,
    ChannelBlock,
    OutboxMessage,
    OutboxStatus,
)
from dispatch.reports import close_campaign, export_csv, live_status
from dispatch.responses import take_campaign_reply
from registry.models import Authority, Channel, Person
from tests.dispatch.conftest import MakePerson

pytestmark = pytest.mark.db


def test_status_report_and_export_tell_the_whole_story(
    sessions: sessionmaker[Session],
    authority: Authority,
    clock: ManualClock,
    make_person: MakePerson,
) -> None:
    with sessions() as session:
        zone_a, zone_b = list(authority.zones)[:2]
    people = [make_person(zone_id=zone_a.id, needs=("mobility",)) for _ in range(4)]
    people.append(make_person(zone_id=zone_b.id, needs=("mobility",), telegram=False))
    with sessions() as session:
        campaign = start_drill_checkin(
            session,
            authority=authority,
            audience=Audience(residents_only=True),
            started_by="test",
            now=clock.now(),
        )
        session.commit()
        rows = {m.person_id: m for m in session.scalars(select(OutboxMessage))}
        rows[people[0].id].status = OutboxStatus.DELIVERED
        rows[people[1].id].status = OutboxStatus.SENT
        rows[people[2].id].status = OutboxStatus.SENT
        rows[people[3].id].status = OutboxStatus.FAILED
        rows[people[4].id].status = OutboxStatus.FAILED
        session.add(
            ChannelBlock(
                person_id=people[4].id,
                channel=Channel.SMS,
                reason=BlockReason.INVALID_NUMBER,
                address=people[4].phone or "",
                blocked_at=clock.now(),
            )
        )
        session.commit()
        for person, seconds, answer in ((people[0], 60, "ok"), (people[1], 300, "help")):
            clock_now = clock.now() + timedelta(seconds=seconds)
            fresh = session.get(Person, person.id)
            assert fresh is not None
            take_campaign_reply(
                session,
                person=fresh,
                channel=Channel.TELEGRAM,
                callback_data=f"c:{campaign.id}:{answer}",
                now=clock_now,
            )
        session.commit()

        status = live_status(session, campaign=campaign)
        assert status.total.recipients == 5
        assert (status.total.delivered, status.total.sent, status.total.failed) == (2, 1, 2)
        assert (status.total.ok, status.total.help, status.total.no_answer) == (1, 1, 3)
        assert status.zones[zone_a.code].recipients == 4
        assert status.zones[zone_b.code].failed == 1
        assert status.alerts == {"help": 1, "no_buddy": 1}

        report = close_campaign(
            session,
            campaign=get_campaign(session, campaign.id),
            now=clock.now() + timedelta(hours=1),
        )
        session.commit()
        assert report.response_rate == 0.4
        assert report.time_to_answer_seconds["p50"] in (60.0, 300.0)
        assert report.time_to_answer_seconds["p99"] == 300.0
        assert sorted(p["person_id"] for p in report.unreached) == sorted(p.id for p in people[2:])
        assert report.bounced_numbers == [
            {
                "person_id": people[4].id,
                "channel": "sms",
                "address": people[4].phone,
                "reason": "invalid_number",
            }
        ]
        assert report.status["total"]["unreached"] == 3

        lines = list(csv.DictReader(io.StringIO(export_csv(session, campaign=campaign))))
        assert len(lines) == 5
        first = next(line for line in lines if line["person_id"] == str(people[0].id))
        assert (first["delivery"], first["answer"], first["zone"]) == (
            "delivered",
            "ok",
            zone_a.code,
        )
        helped = next(line for line in lines if line["person_id"] == str(people[1].id))
        assert helped["answer"] == "help"
