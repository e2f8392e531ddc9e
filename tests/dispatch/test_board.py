"""The console's board and lists: counts that add up to the audience, the ladder's steps, the
answers curve, and the lists to act on with buddy, last attempt and next action."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.board import (
    BoardState,
    ListKind,
    NextAction,
    Rung,
    action_list,
    answer_curve,
    board_counts,
    help_queue,
    ladder_of,
    open_help_count,
    queue_version,
)
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.escalation import run_escalations
from dispatch.help import AlertAction, handle, raise_help
from dispatch.models import AlertKind, Answer, Campaign, CampaignRecipient
from registry.models import Authority, Person
from registry.phones import normalise_phone
from registry.staff import StaffRole, add_staff
from tests.dispatch.conftest import START, MakePerson

pytestmark = pytest.mark.db


def _answer(
    session: Session, campaign: Campaign, person: Person, answer: Answer, minutes: int
) -> None:
    recipient = session.scalars(
        select(CampaignRecipient).where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.person_id == person.id,
        )
    ).one()
    recipient.answer = answer
    recipient.answered_at = START + timedelta(minutes=minutes)
    recipient.next_step_at = None


def test_counts_per_zone_add_up_to_the_audience(
    sessions: sessionmaker[Session],
    authority: Authority,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    zones = sorted(z.id for z in authority.zones)[:3]
    people = [
        make_person(needs=("lives_alone",), zone_id=zones[n % 3], telegram=n % 2 == 0)
        for n in range(9)
    ]
    volunteer = make_person(name="Dana Buddy", is_volunteer=True)
    make_buddy(people[4], volunteer)
    with sessions() as session:
        campaign = start_drill_checkin(
            session,
            authority=session.get_one(Authority, authority.id),
            audience=Audience(residents_only=True),
            started_by="test",
            now=START,
        )
        for person, answer, minute in [
            (people[0], Answer.OK, 2),
            (people[1], Answer.OK, 3),
            (people[2], Answer.HELP, 4),
            (people[3], Answer.FREE_TEXT, 20),
        ]:
            _answer(session, campaign, person, answer, minute)
        session.commit()
        # The ladder runs for the silent: reminders, then buddies, then the unreached list.
        for minutes in (16, 46, 121):
            run_escalations(session, now=START + timedelta(minutes=minutes))
            session.commit()

        counts = board_counts(session, campaign=campaign)
        assert counts.total.total == 9 == campaign.recipients
        assert sum(zone.total for zone in counts.zones) == 9
        for zone in counts.zones:
            assert sum(zone.counts.values()) == zone.total
        assert counts.total.counts[BoardState.OK] == 2
        assert counts.total.counts[BoardState.HELP] == 1
        assert counts.total.counts[BoardState.FREE_TEXT] == 1
        assert counts.total.counts[BoardState.UNREACHED] == 5
        assert counts.total.counts[BoardState.WAITING] == 0
        assert counts.total.accounted == 4

        ladder = ladder_of(campaign, now=START + timedelta(minutes=30))
        assert [step.rung for step in ladder] == list(Rung)
        assert [step.passed for step in ladder] == [True, True, False, False]
        assert ladder[2].at == START + timedelta(minutes=45)

        curve = answer_curve(
            session, campaign=campaign, now=START + timedelta(minutes=30), points=30
        )
        assert curve[0] == (0.0, 0) and curve[-1][1] == 4
        at = dict(curve)
        assert (
            at[60.0] == 0
            and at[120.0] == 1
            and at[180.0] == 2
            and at[240.0] == 3
            and at[1200.0] == 4
        )

        unreached = action_list(session, campaign=campaign, kind=ListKind.UNREACHED)
        assert unreached.total == 5 and len(unreached.rows) == 5
        row = next(r for r in unreached.rows if r.person_id == people[4].id)
        assert row.buddy == "Dana Buddy" and row.phone == people[4].phone
        assert row.next_action == NextAction.VISIT_OFFERED and row.helper == "Dana Buddy"
        assert row.last_channel in ("telegram", "sms") and row.last_status == "queued"
        alone = next(r for r in unreached.rows if r.person_id == people[5].id)
        assert alone.buddy is None and alone.next_action == NextAction.CALL
        paged = action_list(session, campaign=campaign, kind=ListKind.UNREACHED, limit=2, offset=4)
        assert paged.total == 5 and len(paged.rows) == 1
        in_zone = action_list(session, campaign=campaign, kind=ListKind.UNREACHED, zone_id=zones[0])
        assert {r.zone_id for r in in_zone.rows} == {zones[0]}


def test_a_waiting_resident_shows_the_next_step_and_its_time(
    sessions: sessionmaker[Session], authority: Authority, make_person: MakePerson
) -> None:
    person = make_person(needs=("mobility",))
    with sessions() as session:
        campaign = start_drill_checkin(
            session,
            authority=session.get_one(Authority, authority.id),
            audience=Audience(residents_only=True),
            started_by="test",
            now=START,
        )
        session.commit()
        (row,) = action_list(session, campaign=campaign, kind=ListKind.UNREACHED).rows
        assert row.person_id == person.id
        assert row.next_action == NextAction.REMINDER
        assert row.next_at == START + timedelta(seconds=campaign.reminder_after)
        assert row.last_channel == "telegram" and row.last_status == "queued"


def test_the_help_queue_is_oldest_first_with_owner_and_changes_its_version(
    sessions: sessionmaker[Session], authority: Authority, make_person: MakePerson
) -> None:
    first, second = make_person(name="First Asker"), make_person(name="Second Asker")
    with sessions() as session:
        officer = add_staff(
            session,
            name="Rina",
            phone=normalise_phone("052-555-1000", region="IL"),
            authority=session.get_one(Authority, authority.id),
            role=StaffRole.OFFICER,
            actor="test",
        )
        for n, person in enumerate((first, second)):
            raise_help(
                session,
                resident=session.get_one(Person, person.id),
                campaign=None,
                kind=AlertKind.HELP_REQUEST,
                now=START + timedelta(minutes=n),
                detail="no water",
            )
        session.commit()
        before = queue_version(session, authority_ids=[authority.id])
        rows = help_queue(session, authority_ids=[authority.id])
        assert [r.resident for r in rows] == ["First Asker", "Second Asker"]
        assert rows[0].owner == "" and rows[0].words == "no water"
        assert (
            help_queue(session, authority_ids=[authority.id], person_ids={second.id})[0].resident
            == "Second Asker"
        )
        handle(
            session,
            alert_id=rows[0].alert_id,
            action=AlertAction.TAKE,
            member=officer,
            now=START + timedelta(minutes=5),
        )
        session.commit()
        after = queue_version(session, authority_ids=[authority.id])
        assert after != before
        assert help_queue(session, authority_ids=[authority.id])[0].owner == "Rina"
        handle(
            session,
            alert_id=rows[0].alert_id,
            action=AlertAction.DONE,
            member=officer,
            now=START + timedelta(minutes=9),
        )
        session.commit()
        assert queue_version(session, authority_ids=[authority.id]) not in (before, after)
        assert [r.resident for r in help_queue(session, authority_ids=[authority.id])] == [
            "Second Asker"
        ]
        assert help_queue(session, authority_ids=[authority.id + 1000]) == []
        assert open_help_count(session, authority_ids=[authority.id]) == 1


def test_pages_cover_the_whole_list_once_and_agree_with_the_board(
    sessions: sessionmaker[Session],
    authority: Authority,
    make_person: MakePerson,
    make_buddy: Callable[..., None],
) -> None:
    zones = sorted(z.id for z in authority.zones)[:3]
    people = [
        make_person(needs=("lives_alone",) if n % 2 else ("mobility",), zone_id=zones[n % 3])
        for n in range(23)
    ]
    volunteer = make_person(name="Dana Buddy", is_volunteer=True)
    make_buddy(people[7], volunteer)
    with sessions() as session:
        campaign = start_drill_checkin(
            session,
            authority=session.get_one(Authority, authority.id),
            audience=Audience(residents_only=True),
            started_by="test",
            now=START,
        )
        for n in range(0, 23, 4):
            _answer(session, campaign, people[n], Answer.HELP if n % 8 else Answer.OK, 3)
        session.commit()

        counts = board_counts(session, campaign=campaign).total.counts
        whole = action_list(session, campaign=campaign, kind=ListKind.UNREACHED, limit=None)
        assert (
            whole.total
            == len(whole.rows)
            == (counts[BoardState.WAITING] + counts[BoardState.UNREACHED])
        )
        helped = action_list(session, campaign=campaign, kind=ListKind.HELP, limit=None)
        assert helped.total == len(helped.rows) == counts[BoardState.HELP]
        # Pages of 5, one after another: every person once, in the whole list's order.
        paged = []
        for offset in range(0, whole.total + 5, 5):
            page = action_list(
                session, campaign=campaign, kind=ListKind.UNREACHED, limit=5, offset=offset
            )
            assert page.total == whole.total
            paged += page.rows
        assert paged == whole.rows
        # The printed sheets, a zone each, are the whole list.
        sheets = [
            action_list(
                session, campaign=campaign, kind=ListKind.UNREACHED, zone_id=zone, limit=None
            )
            for zone in zones
        ]
        assert sum(sheet.total for sheet in sheets) == whole.total
        assert sorted(r.person_id for s in sheets for r in s.rows) == sorted(
            r.person_id for r in whole.rows
        )
        buddied = next(r for r in whole.rows if r.person_id == people[7].id)
        assert buddied.buddy == "Dana Buddy" and buddied.next_action == NextAction.REMINDER
        assert all(r.last_channel is not None for r in whole.rows)
