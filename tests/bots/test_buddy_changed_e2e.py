"""A resident told their buddy's name is told when that buddy no longer holds, end to end (the
real ``hosen serve`` app and python-telegram-bot against the loopback fake): a confirmed buddy
who stops volunteering is released by the engine's next run; the resident hears, in their
language and by first name only, that this buddy is no longer theirs (a next buddy's name comes
when one accepts, as the first time: tests/bots/test_offers_e2e.py). A buddy released before
accepting was never named to the resident: the resident hears nothing about them."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from fakes.telegram import FakeTelegram
from registry.assignment.store import assign_authority
from registry.db import unit_of_work
from registry.models import AssignmentStatus, Authority, Person
from registry.people import NeedsDetails
from registry.profile_sync import Directory
from tests.bots.e2e_helpers import serve
from tests.bots.test_e2e import Service, tg
from tests.bots.test_offers_e2e import _people, _seat, _sweep, buddies_only

pytestmark = pytest.mark.e2e
AR = Language.AR


def _stops_volunteering(service: Service, person_id: int) -> None:
    """The volunteer stops; the engine's next run releases their seats."""
    with unit_of_work(service.ctx.sessions) as session:
        session.get_one(Person, person_id).is_volunteer = False
        authority = session.scalars(select(Authority).where(Authority.code == "kiryat-tamar")).one()
        assign_authority(session, authority=authority, profile=buddies_only(), actor="test")


def test_a_released_buddy_is_unnamed_to_the_resident_and_an_unnamed_one_is_not(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram
) -> None:
    async def scenario(service: Service) -> None:
        salma = fake_telegram.new_user("سلمى", language_code="ar")
        yossi = fake_telegram.new_user("Yossi", language_code="he")
        dana = fake_telegram.new_user("Dana", language_code="he")
        ids = _people(
            service,
            [
                dict(name="سلمى خوري", language="ar", chat=salma.id, north=0, consent=True,
                     needs=NeedsDetails(powered_medical_equipment=True)),
                dict(name="Yossi Amar", language="ar", chat=yossi.id, north=100, volunteer=True),
                dict(name="Dana Levi", language="ar", chat=dana.id, north=300, volunteer=True),
            ],
        )  # fmt: skip
        await _sweep(service)
        offer = fake_telegram.last_sent(yossi.id)
        await tg(
            service, fake_telegram, yossi.id,
            fake_telegram.press(yossi, offer, t(AR, "assign.offer.accept")),
        )  # fmt: skip
        assert _seat(service, ids["سلمى"], ids["Yossi"]).status == AssignmentStatus.CONFIRMED
        assert fake_telegram.last_sent(salma.id)["text"] == t(
            AR, "assign.offer.resident_buddy", name="Yossi"
        )
        # Dana (the backup, asked but not yet answered) stops first: never named to Salma.
        before = len(fake_telegram.sent_to(salma.id))
        _stops_volunteering(service, ids["Dana"])
        await _sweep(service)
        assert fake_telegram.sent_to(salma.id)[before:] == []

        # Yossi stops: Salma is told, in Arabic and by first name only.
        _stops_volunteering(service, ids["Yossi"])
        await _sweep(service)
        heard = [m["text"] for m in fake_telegram.sent_to(salma.id)[before:]]
        assert heard == [t(AR, "assign.buddy_changed.released", name="Yossi")]
        assert "Amar" not in heard[0]
        assert _seat(service, ids["سلمى"], ids["Yossi"]).status != AssignmentStatus.CONFIRMED

    serve(settings, scenario, telegram=fake_telegram, twilio=None)
