"""Starting and closing a check-in from the console: the estimate first, a warning for a channel
the audience needs that is not configured, a second confirmation for an emergency."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.models import Campaign, CampaignMode, CampaignStatus
from registry.models import Channel, Person, PhoneKind, Source
from registry.profile_sync import Directory
from tests.hosen.console.conftest import SignIn, Staff, csrf_of

pytestmark = pytest.mark.db


@pytest.fixture
def residents(sessions: sessionmaker[Session], directory: Directory) -> None:
    authority = directory.authorities["kiryat-tamar"]
    with sessions() as session:
        for n in range(4):
            session.add(
                Person(
                    authority_id=authority.id,
                    zone_id=directory.zones[(authority.id, "kt-north")].id,
                    name=f"Resident {n}",
                    phone=f"+97250300000{n}",
                    phone_kind=PhoneKind.MOBILE,
                    channel=Channel.SMS,
                    source=Source.STAFF,
                    needs_help=True,
                )
            )
        session.commit()


def _campaigns(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Campaign)) or 0)


def test_a_drill_shows_the_estimate_and_warns_of_sms_not_configured(
    sign_in: SignIn, staff: Staff, residents: None, sessions: sessionmaker[Session]
) -> None:
    client = sign_in(staff.officer)
    token = csrf_of(client.get("/console/start").text)
    form = {"csrf": token, "mode": "drill", "who": "residents", "step": "estimate"}
    estimate = client.post("/console/start", data=form)
    assert estimate.status_code == 200
    assert "4 אנשים" in estimate.text  # the estimate, in Hebrew, before anything is sent
    warning = 'data-testid="channel-warning"'
    assert estimate.text.count(warning) == 1 and "SMS אינו מוגדר" in estimate.text
    assert _campaigns(sessions) == 0
    started = client.post("/console/start", data={**form, "step": "confirm"})
    assert started.status_code == 303
    with sessions() as session:
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.mode == CampaignMode.DRILL and campaign.recipients == 4
        assert campaign.started_by == f"console:staff:{staff.officer.id}"
    assert started.headers["location"] == f"/console/board?campaign={campaign.id}"
    board = client.get(started.headers["location"])
    assert 'data-total="people">4<' in board.text

    closed = client.post(f"/console/close/{campaign.id}", data={"csrf": token})
    assert closed.status_code == 303
    with sessions() as session:
        assert session.get_one(Campaign, campaign.id).status == CampaignStatus.CLOSED


def test_an_emergency_needs_the_word_typed(
    sign_in: SignIn, staff: Staff, residents: None, sessions: sessionmaker[Session]
) -> None:
    client = sign_in(staff.officer)
    token = csrf_of(client.get("/console/start").text)
    form = {"csrf": token, "mode": "emergency", "who": "residents"}
    again = client.post("/console/start", data={**form, "step": "confirm"})
    assert again.status_code == 200 and 'name="word"' in again.text
    assert _campaigns(sessions) == 0
    wrong = client.post("/console/start", data={**form, "step": "again", "word": "yes"})
    assert wrong.status_code == 400 and "לא נשלח דבר" in wrong.text
    assert _campaigns(sessions) == 0
    right = client.post("/console/start", data={**form, "step": "again", "word": "חירום"})
    assert right.status_code == 303
    with sessions() as session:
        assert session.scalars(select(Campaign.mode)).one() == CampaignMode.EMERGENCY
