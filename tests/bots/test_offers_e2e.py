"""Offers end to end, per channel: the real ``hosen serve`` app, python-telegram-bot and twilio
clients against the loopback fakes. The engine plans a resident's buddies, the scheduler's sweep
offers each volunteer their seat, one declines (a button, or the offer's own number by SMS while a
check-in is open too), that seat alone is planned again and the volunteer it goes to is asked; an
acceptance confirms the seat and the resident hears their buddy's first name."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bots.consent import CONSENT_VERSIONS, consent_text
from config.i18n import t
from config.languages import Language
from config.profile import DEFAULT_PROFILE_PATH, Profile, load_profile
from config.settings import Settings
from dispatch.campaigns import Audience, start_campaign
from dispatch.models import Answer, CampaignKind, CampaignMode, CampaignRecipient
from dispatch.offers import ACCEPT_NUMBER, DECLINE_NUMBER
from dispatch.scheduler import sweep_all
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry.assignment.models import AssignmentOffer, OfferState
from registry.assignment.store import assign_authority
from registry.db import unit_of_work, utcnow
from registry.models import (
    AssignmentStatus,
    Authority,
    BuddyAssignment,
    Channel,
    ConsentGiver,
    ConsentKind,
    PhoneKind,
    Source,
)
from registry.people import (
    NeedsDetails,
    PersonDetails,
    VolunteerDetails,
    record_consent,
    register_person,
)
from registry.profile_sync import Directory
from tests.bots.test_e2e import Service, _free_port, run, service_settings, sms, start_service, tg

pytestmark = pytest.mark.e2e
ZONE = ZoneInfo("Asia/Jerusalem")
CENTRE = (31.6100, 34.7700)  # kt-center


def buddies_only() -> Profile:
    """The sample profile without role seats: these few volunteers are all buddies."""
    base = load_profile(DEFAULT_PROFILE_PATH)
    roles = [r for r in base.roles if r.code == "buddy"]
    tiers = [tier for tier in base.assignment.tiers if tier.buddies is not None]
    policy = base.assignment.model_copy(update={"tiers": tiers})
    return base.model_copy(update={"roles": roles, "assignment": policy})


def _people(service: Service, rows: list[dict[str, object]]) -> dict[str, int]:
    """Register these people (``north``: metres north of the zone's centre), plan the buddies."""
    ids: dict[str, int] = {}
    with unit_of_work(service.ctx.sessions) as session:
        authority = session.scalars(select(Authority).where(Authority.code == "kiryat-tamar")).one()
        zone = next(z for z in authority.zones if z.code == "kt-center")
        for row in rows:
            north = float(row["north"])  # type: ignore[arg-type]
            language = Language(str(row["language"]))
            phone = row.get("phone")
            person = register_person(
                session,
                authority=authority,
                details=PersonDetails(
                    name=str(row["name"]), language=language, birth_year=1975, zone=zone,
                    lat=CENTRE[0] + north / 111_195, lon=CENTRE[1], address="Herzl 5",
                    channel=Channel.SMS if phone else Channel.TELEGRAM,
                    telegram_chat_id=row.get("chat"),  # type: ignore[arg-type]
                    volunteer=VolunteerDetails(checkin_capacity=1) if row.get("volunteer") else None,
                    needs=row.get("needs"),  # type: ignore[arg-type]
                ),
                source=Source.STAFF, actor="test",
            ).person  # fmt: skip
            if phone:
                person.phone, person.phone_kind = str(phone), PhoneKind.MOBILE
            if row.get("consent"):
                record_consent(
                    session, person=person, kind=ConsentKind.HEALTH_DATA,
                    version=CONSENT_VERSIONS[ConsentKind.HEALTH_DATA], language=language,
                    text=consent_text(ConsentKind.HEALTH_DATA, language), channel=Source.STAFF,
                    given_by=ConsentGiver.SELF, actor="test",
                )  # fmt: skip
            session.flush()
            ids[str(row["name"]).split()[0]] = person.id
        assign_authority(session, authority=authority, profile=buddies_only(), actor="test")
    return ids


async def _sweep(service: Service) -> None:
    """The scheduler's sweep (offers among the rest), then the worker sends what it queued."""
    sweep_all(service.ctx.sessions, profile=service.ctx.profile, zone=ZONE, now=utcnow())
    await service.flush()


def _seat(service: Service, resident: int, volunteer: int) -> BuddyAssignment:
    with service.ctx.sessions() as session:
        return session.scalars(
            select(BuddyAssignment).where(
                BuddyAssignment.resident_id == resident, BuddyAssignment.volunteer_id == volunteer
            )
        ).one()


def _offer_states(service: Service, volunteer: int) -> list[str]:
    with service.ctx.sessions() as session:
        return list(
            session.scalars(
                select(AssignmentOffer.state)
                .where(AssignmentOffer.volunteer_id == volunteer)
                .order_by(AssignmentOffer.id)
            )
        )


def test_offers_on_telegram_declined_by_button_replanned_and_accepted(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram
) -> None:
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=None, port=port)
    he = Language.HE

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            miriam = fake_telegram.new_user("מרים", language_code="he")
            yossi = fake_telegram.new_user("Yossi", language_code="he")
            dana = fake_telegram.new_user("Dana", language_code="he")
            rina = fake_telegram.new_user("Rina", language_code="he")
            ids = _people(
                service,
                [
                    dict(name="מרים כהן", language="he", chat=miriam.id, north=0, consent=True,
                         needs=NeedsDetails(powered_medical_equipment=True)),
                    dict(name="Yossi Amar", language="he", chat=yossi.id, north=100, volunteer=True),
                    dict(name="Dana Levi", language="he", chat=dana.id, north=300, volunteer=True),
                    dict(name="Rina Katz", language="he", chat=rina.id, north=600, volunteer=True),
                ],
            )  # fmt: skip
            await _sweep(service)
            # Yossi, the nearest, is asked to be Miriam's first buddy: her first name, her street
            # and (she consented to share it with her volunteer) the help she may need.
            offer = fake_telegram.last_sent(yossi.id)
            assert offer["text"].startswith(
                t(he, "assign.offer.buddy_primary", name="מרים", street="Herzl")
            )
            assert t(he, "bot.needs.powered_medical_equipment") in offer["text"]
            assert "כהן" not in offer["text"]
            backup = fake_telegram.last_sent(dana.id)
            assert backup["text"].startswith(t(he, "assign.offer.buddy_backup", name="מרים", street="Herzl"))  # fmt: skip
            assert fake_telegram.sent_to(rina.id) == []

            # 1. Yossi cannot: that seat alone is planned again. Dana moves up and is asked
            #    again; Rina becomes the backup and is asked at once.
            told = await tg(
                service, fake_telegram, yossi.id,
                fake_telegram.press(yossi, offer, t(he, "assign.offer.decline")),
            )  # fmt: skip
            assert [m["text"] for m in told] == [t(he, "assign.offer.declined")]
            assert _seat(service, ids["מרים"], ids["Yossi"]).status == AssignmentStatus.DECLINED
            moved_up = fake_telegram.last_sent(dana.id)
            assert moved_up["text"].startswith(t(he, "assign.offer.buddy_primary", name="מרים", street="Herzl"))  # fmt: skip
            assert fake_telegram.last_sent(rina.id)["text"].startswith(
                t(he, "assign.offer.buddy_backup", name="מרים", street="Herzl")
            )
            # Dana's first offer (as the backup) is gone: its button says so.
            told = await tg(
                service, fake_telegram, dana.id,
                fake_telegram.press(dana, backup, t(he, "assign.offer.accept")),
            )  # fmt: skip
            assert [m["text"] for m in told] == [t(he, "assign.offer.gone")]

            # 2. Dana accepts the seat she holds now; Miriam hears her first name.
            before = len(fake_telegram.sent_to(miriam.id))
            told = await tg(
                service, fake_telegram, dana.id,
                fake_telegram.press(dana, moved_up, t(he, "assign.offer.accept")),
            )  # fmt: skip
            assert [m["text"] for m in told] == [t(he, "assign.offer.accepted_buddy", name="מרים")]
            seat = _seat(service, ids["מרים"], ids["Dana"])
            assert seat.status == AssignmentStatus.CONFIRMED and seat.rank == 1
            heard = [m["text"] for m in fake_telegram.sent_to(miriam.id)[before:]]
            assert heard == [t(he, "assign.offer.resident_buddy", name="Dana")]
            assert _offer_states(service, ids["Yossi"]) == [OfferState.DECLINED]
            assert _offer_states(service, ids["Dana"]) == [
                OfferState.WITHDRAWN,
                OfferState.CONFIRMED,
            ]
        finally:
            await service.stop()

    run(scenario)


def test_offers_by_sms_have_their_own_numbers_beside_an_open_checkin(
    settings: Settings, directory: Directory, fake_twilio: FakeTwilio
) -> None:
    port = _free_port()
    config = service_settings(settings, telegram=None, twilio=fake_twilio, port=port)
    ru = Language.RU
    miriam, avi, eli, noa = "+972525550501", "+972525550502", "+972525550503", "+972525550504"

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            ids = _people(
                service,
                [
                    dict(name="Miriam Cohen", language="ru", phone=miriam, north=0, consent=True,
                         needs=NeedsDetails(bedridden=True)),
                    dict(name="Avi Peretz", language="ru", phone=avi, north=100, volunteer=True),
                    dict(name="Eli Dahan", language="ru", phone=eli, north=300, volunteer=True),
                    dict(name="Noa Bar", language="ru", phone=noa, north=600, volunteer=True),
                ],
            )  # fmt: skip
            await _sweep(service)
            offer = str(fake_twilio.last_sent(avi)["body"])
            assert offer.startswith(
                t(ru, "assign.offer.buddy_primary", name="Miriam", street="Herzl")
            )
            # No health detail in an SMS, even with her consent; the answers are 7 and 8.
            assert t(ru, "bot.needs.bedridden") not in offer
            assert offer.splitlines()[-2:] == [
                f"{ACCEPT_NUMBER} {t(ru, 'assign.offer.accept')}",
                f"{DECLINE_NUMBER} {t(ru, 'assign.offer.decline')}",
            ]
            # A drill check-in reaches everyone meanwhile: "1"/"2" are its answers.
            with unit_of_work(service.ctx.sessions) as session:
                authority = session.scalars(
                    select(Authority).where(Authority.code == "kiryat-tamar")
                ).one()
                start_campaign(
                    session, authority=authority, kind=CampaignKind.CHECKIN,
                    mode=CampaignMode.DRILL, audience=Audience(), started_by="test", now=utcnow(),
                )  # fmt: skip
            await service.flush()
            assert str(fake_twilio.last_sent(avi)["body"]).startswith(
                t(ru, "dispatch.drill_marker")
            )

            # 1. Avi declines by the offer's number: his check-in is still open.
            told = await sms(service, fake_twilio, DECLINE_NUMBER, phone=avi)
            assert told == [t(ru, "assign.offer.declined")]
            assert _seat(service, ids["Miriam"], ids["Avi"]).status == AssignmentStatus.DECLINED
            with service.ctx.sessions() as session:
                answer = session.scalars(
                    select(CampaignRecipient.answer).where(
                        CampaignRecipient.person_id == ids["Avi"]
                    )
                ).one()
            assert answer == Answer.PENDING
            # ...and "1" is still his check-in's: I'm OK.
            await sms(service, fake_twilio, "1", phone=avi)
            with service.ctx.sessions() as session:
                answer = session.scalars(
                    select(CampaignRecipient.answer).where(
                        CampaignRecipient.person_id == ids["Avi"]
                    )
                ).one()
            assert answer == Answer.OK
            assert _offer_states(service, ids["Avi"]) == [OfferState.DECLINED]

            # 2. Eli moved up and Noa is the new backup: both asked at once, by SMS.
            assert str(fake_twilio.last_sent(eli)["body"]).startswith(
                t(ru, "assign.offer.buddy_primary", name="Miriam", street="Herzl")
            )
            assert str(fake_twilio.last_sent(noa)["body"]).startswith(
                t(ru, "assign.offer.buddy_backup", name="Miriam", street="Herzl")
            )
            # Eli's check-in "1" answers the check-in, not the offer; "7" accepts.
            await sms(service, fake_twilio, "1", phone=eli)
            assert _seat(service, ids["Miriam"], ids["Eli"]).status == AssignmentStatus.PROPOSED
            before = len(fake_twilio.sent_to(miriam))
            told = await sms(service, fake_twilio, ACCEPT_NUMBER, phone=eli)
            assert told == [t(ru, "assign.offer.accepted_buddy", name="Miriam")]
            assert _seat(service, ids["Miriam"], ids["Eli"]).status == AssignmentStatus.CONFIRMED
            heard = [str(m["body"]) for m in fake_twilio.sent_to(miriam)[before:]]
            assert heard == [t(ru, "assign.offer.resident_buddy", name="Eli")]
            # A second "7" (say, to the reminder that crossed it) changes nothing and is told so.
            told = await sms(service, fake_twilio, ACCEPT_NUMBER, phone=eli)
            assert told == [t(ru, "assign.offer.already")]
            assert _offer_states(service, ids["Eli"])[-1] == OfferState.CONFIRMED
        finally:
            await service.stop()

    run(scenario)
