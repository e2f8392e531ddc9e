"""Live status, the drill report at close and the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.i18n import t
from config.languages import Language
from config.profile import Profile
from dispatch.campaigns import Audience, get_campaign, start_drill_checkin
from dispatch.clock import ManualClock
from dispatch.models import (
    Alert,
    AlertKind,
    BlockReason,
    ChannelBlock,
    OutboxMessage,
    OutboxStatus,
)
from dispatch.reports import (
    CSV_FIELDS,
    DELIVERIES,
    OUTCOMES,
    close_campaign,
    drill_report,
    export_csv,
    live_status,
)
from dispatch.responses import take_campaign_reply
from registry.models import Authority, Channel, Person, Zone
from registry.profile_sync import Directory
from tests.dispatch.conftest import START, MakePerson
from tests.drill_town import answer, build_town, sweep, visit

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
                "name": people[4].name,
                "zone": zone_b.code,
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


# --- a demo-like town ----------------------------------------------------------------------------


def _adds_up(status: dict[str, Any]) -> None:
    """Each recipient once in exactly one outcome and one delivery state, overall and per zone."""
    for counts in (status["total"], *status["zones"].values()):
        assert sum(counts[o] for o in OUTCOMES) == counts["recipients"]
        assert sum(counts[d] for d in DELIVERIES) == counts["recipients"]
    assert sum(z["recipients"] for z in status["zones"].values()) == status["total"]["recipients"]


def test_a_two_minute_old_drill_lists_what_the_ladder_has_done_so_far(
    sessions: sessionmaker[Session],
    profile: Profile,
    directory: Directory,
    authority: Authority,
) -> None:
    drill = build_town(
        sessions, profile=profile, directory=directory, authority=authority, started=START
    )
    answer(drill, minutes=1)
    with sessions() as session:
        report = drill_report(session, campaign=drill.campaign(session))
    _adds_up(report.status)
    total = report.status["total"]
    assert total["unreached"] == 0 and total["waiting"] == len(report.unreached) > 0
    # Nobody is "after the whole ladder" yet: each has the step the ladder is on, and what next.
    assert {p["state"] for p in report.unreached} == {"waiting"}
    assert {p["step"] for p in report.unreached} == {0}
    reminder = (START + timedelta(minutes=15)).isoformat()
    for person in report.unreached:
        if person["channel"] == "none":
            assert person["next_step"] == "visit"
        else:
            assert (person["next_step"], person["next_at"]) == ("reminder", reminder)
            assert person["last_attempt"] == START.isoformat()
    assert report.state == "active" and report.closed_at is None


def test_the_report_of_a_whole_drill_adds_up_and_says_who_to_go_to(
    sessions: sessionmaker[Session],
    profile: Profile,
    directory: Directory,
    authority: Authority,
) -> None:
    drill = build_town(
        sessions, profile=profile, directory=directory, authority=authority, started=START
    )
    answer(drill, minutes=2)
    sweep(drill, minutes=15)  # reminders
    sweep(drill, minutes=45)  # buddies sent
    visit(drill, minutes=60)  # half of them report their resident seen
    sweep(drill, minutes=120)  # the rest go on the unreached list
    with sessions() as session:
        before = live_status(session, campaign=drill.campaign(session))
        report = close_campaign(session, campaign=drill.campaign(session), now=drill.at(130))
        session.commit()
        after = live_status(session, campaign=drill.campaign(session))
        unreached_alerts = set(
            session.scalars(
                select(Alert.person_id).where(
                    Alert.campaign_id == drill.campaign_id, Alert.kind == AlertKind.UNREACHED
                )
            )
        )

    _adds_up(report.status)
    total = report.status["total"]
    assert total["recipients"] == len(drill.recipients)
    assert (total["ok"], total["help"], total["free_text"]) == (
        len(drill.ok),
        len(drill.help),
        len(drill.free_text),
    )
    # Seen by a buddy: accounted for, neither on the unreached list nor alerted as unreached.
    assert drill.visited and total["visited"] == len(drill.visited)
    listed = {p["person_id"] for p in report.unreached}
    assert not listed & drill.visited and not unreached_alerts & drill.visited
    # The live bar before closing, the report and the status after it say the same.
    assert before.total.unreached == total["unreached"] == after.total.unreached == len(listed)
    assert total["waiting"] == 0 and listed == unreached_alerts
    answered = drill.ok | drill.help | drill.free_text
    assert listed == set(drill.recipients) - answered - drill.visited

    # Whom to go to and how: phone, address, buddy, priority, the next step.
    for person in report.unreached:
        assert person["state"] == "unreached" and person["step"] == 3
        assert person["priority"] in ("high", "medium", "normal")
        assert person["next_step"] in ("call", "visit_address", "find", "wait_buddy")
        if person["next_step"] == "call":
            assert person["phone"]
    assert any(p["buddy"] and p["buddy_phone"] for p in report.unreached)
    ranks = [("high", "medium", "normal").index(p["priority"]) for p in report.unreached]
    assert ranks == sorted(ranks), "most at risk first"

    # Numbers to fix: the wrong number, with its holder's name and zone; a STOP is not one.
    assert [b["person_id"] for b in report.bounced_numbers] == [drill.invalid_number]
    bounced = report.bounced_numbers[0]
    assert bounced["name"] and bounced["zone"] and bounced["reason"] == "invalid_number"
    assert [o["person_id"] for o in report.opted_out] == [drill.opted_out]

    # Every call for help, and who came.
    assert {h["state"] for h in report.help} <= {"open", "taken", "done", "failed"}
    assert len(report.help) == len(drill.help)
    came = [h for h in report.help if h["state"] == "done"]
    for row in came:
        assert row["owner"] and row["owner_role"] == "volunteer" and row["closed_at"]
    assert report.state == "closed" and report.closed_at == drill.at(130).isoformat()


def test_the_csv_has_phone_address_buddy_zone_name_and_a_bom(
    sessions: sessionmaker[Session],
    profile: Profile,
    directory: Directory,
    authority: Authority,
) -> None:
    drill = build_town(
        sessions, profile=profile, directory=directory, authority=authority, started=START
    )
    with sessions() as session:
        campaign = drill.campaign(session)
        text = export_csv(session, campaign=campaign, language=Language.HE, bom=True)
        names = {z.code: z.name_in(Language.HE) for z in session.scalars(select(Zone))}
        people = {p.id: p for p in session.scalars(select(Person))}
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["מספר במאגר", "שם", "קוד אזור"]
    assert len(body) == len(drill.recipients)
    column = {name: header.index(t(Language.HE, f"report.csv.{name}")) for name in CSV_FIELDS}
    for row in body:
        person = people[int(row[column["person_id"]])]
        assert row[column["zone_name"]] == names[row[column["zone"]]]
        # Phones start with "+": written as text, so a spreadsheet does not read a formula.
        assert row[column["phone"]] == ("'" + person.phone if person.phone else "")
        assert row[column["address"]] == (person.address or "")
    assert any(row[column["buddy"]] and row[column["buddy_phone"]] for row in body)
