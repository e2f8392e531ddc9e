"""Offers against real databases: made from the engine's changes, answered, reminded, expired and
planned again on the injected clock; what a volunteer is told respects the resident's consent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots.consent import CONSENT_VERSIONS, consent_text
from config.i18n import t
from config.languages import Language
from config.profile import DEFAULT_PROFILE_PATH, Profile, load_profile
from dispatch.models import OutboxMessage
from dispatch.offers import (
    ACCEPT_NUMBER,
    DECLINE_NUMBER,
    offer_choice,
    street_of,
    sweep_offers,
    take_offer_answer,
)
from dispatch.senders import choice_from_reply
from registry.assignment.models import AssignmentChange, AssignmentOffer, OfferState
from registry.assignment.store import assign_authority
from registry.assignment.stored import latest_offers
from registry.db import unit_of_work
from registry.models import (
    AssignmentStatus,
    Authority,
    BuddyAssignment,
    Channel,
    ConsentGiver,
    ConsentKind,
    Person,
    PhoneKind,
    RoleAssignment,
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
from tests.registry.assignment.test_store import health_only_context, run_cli

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CENTRE = (31.6100, 34.7700)  # kt-center


@pytest.fixture
def profile(profile: Profile) -> Profile:
    """No role seats: a small town's volunteers are all buddies (roles have a test of their own)."""
    base = load_profile(DEFAULT_PROFILE_PATH)
    roles = [r.model_copy(update={"quota_per_zone": None}) for r in base.roles if r.code == "buddy"]
    policy = base.assignment.model_copy(
        update={"tiers": [t for t in base.assignment.tiers if t.buddies is not None]}
    )
    return base.model_copy(update={"roles": roles, "assignment": policy})


def near(north_m: float) -> tuple[float, float]:
    return CENTRE[0] + north_m / 111_195, CENTRE[1]


class Town:
    def __init__(self, session: Session, authority: Authority, directory: Directory) -> None:
        self.session, self.authority, self.directory = session, authority, directory
        self.chats = 7000

    def add(
        self,
        name: str,
        *,
        north: float,
        sms: str | None = None,
        volunteer: VolunteerDetails | None = None,
        needs: NeedsDetails | None = None,
        health_consent: bool = False,
        language: Language = Language.EN,
    ) -> Person:
        lat, lon = near(north)
        self.chats += 1
        person = register_person(
            self.session,
            authority=self.authority,
            details=PersonDetails(
                name=name, language=language, birth_year=1970,
                zone=self.directory.zone(self.authority, "kt-center"), lat=lat, lon=lon,
                address=f"Herzl {int(north) // 10} apt 3", volunteer=volunteer, needs=needs,
                channel=Channel.SMS if sms else Channel.TELEGRAM,
                telegram_chat_id=None if sms else self.chats,
            ),
            source=Source.STAFF, actor="test", now=NOW,
        ).person  # fmt: skip
        if sms:
            person.phone, person.phone_kind = sms, PhoneKind.MOBILE
        if health_consent:
            record_consent(
                self.session, person=person, kind=ConsentKind.HEALTH_DATA,
                version=CONSENT_VERSIONS[ConsentKind.HEALTH_DATA], language=language,
                text=consent_text(ConsentKind.HEALTH_DATA, language), channel=Source.STAFF,
                given_by=ConsentGiver.SELF, actor="test", now=NOW,
            )  # fmt: skip
        self.session.flush()
        return person


def offers_to(session: Session, person: Person) -> list[OutboxMessage]:
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.person_id == person.id, OutboxMessage.kind == "offer")
            .order_by(OutboxMessage.id)
        )
    )


def texts_to(session: Session, person: Person) -> list[str]:
    return list(
        session.scalars(
            select(OutboxMessage.text)
            .where(OutboxMessage.person_id == person.id)
            .order_by(OutboxMessage.id)
        )
    )


def the_offer(session: Session, person: Person) -> AssignmentOffer:
    """The person's latest offer that was sent (open or answered)."""
    return session.scalars(
        select(AssignmentOffer)
        .where(AssignmentOffer.volunteer_id == person.id, AssignmentOffer.offered_at.is_not(None))
        .order_by(AssignmentOffer.id.desc())
    ).first() or pytest.fail(f"no offer to {person.name}")


def buddy_rows(session: Session) -> dict[int, tuple[int, int, str]]:
    return {
        b.id: (b.resident_id, b.volunteer_id, b.status.value)
        for b in session.scalars(select(BuddyAssignment))
    }


def test_offers_go_out_one_seat_at_a_time_and_accept_tells_the_resident(
    session: Session, authority: Authority, directory: Directory, profile: Profile
) -> None:
    town = Town(session, authority, directory)
    miriam = town.add("Miriam Cohen", north=100, needs=NeedsDetails(bedridden=True),
                      health_consent=True)  # fmt: skip
    yosef = town.add("Yosef Levi", north=140, needs=NeedsDetails(lives_alone=True, sight=True))
    dana = town.add("Dana Amar", north=120, volunteer=VolunteerDetails(checkin_capacity=2))
    assign_authority(session, authority=authority, profile=profile, actor="test", now=NOW)
    assert session.scalars(select(AssignmentChange)).all()

    swept = sweep_offers(session, profile=profile, now=NOW)
    assert swept.notified >= 2 and swept.offered == 1  # Dana holds two seats: one asked at a time
    [first] = offers_to(session, dana)
    assert first.text.startswith(t(Language.EN, "assign.offer.buddy_primary", name="Miriam",
                                   street="Herzl"))  # fmt: skip
    # Miriam agreed that her volunteer sees her needs: the Telegram offer names them.
    assert t(Language.EN, "bot.needs.bedridden") in first.text
    assert "Cohen" not in first.text  # the first name only
    assert [b["data"] for row in first.buttons or () for b in row] == [
        f"o:{the_offer(session, dana).id}:yes",
        f"o:{the_offer(session, dana).id}:no",
    ]
    assert sweep_offers(session, profile=profile, now=NOW).offered == 0  # still waiting for her

    take_offer_answer(session, person=dana, channel=Channel.TELEGRAM,
                      data=f"o:{the_offer(session, dana).id}:yes", profile=profile, now=NOW)  # fmt: skip
    seat = session.scalars(
        select(BuddyAssignment).where(BuddyAssignment.resident_id == miriam.id)
    ).one()
    assert seat.status == AssignmentStatus.CONFIRMED
    assert t(Language.EN, "assign.offer.resident_buddy", name="Dana") in texts_to(session, miriam)
    assert t(Language.EN, "assign.offer.accepted_buddy", name="Miriam") in texts_to(session, dana)

    # Her second seat is asked at once; Yosef gave no consent to share his needs: none named.
    second = offers_to(session, dana)[-1]
    assert "Yosef" in second.text
    seat_of = session.get_one(BuddyAssignment, the_offer(session, dana).assignment_id)
    assert seat_of.resident_id == yosef.id
    for flag in ("lives_alone", "sight"):
        assert t(Language.EN, f"bot.needs.{flag}") not in second.text
    assert latest_offers(session, roles=[], buddies=[seat.id]) == {("buddy", seat.id): "confirmed"}


def test_an_sms_offer_has_numbers_of_its_own_and_never_names_a_need(
    session: Session, authority: Authority, directory: Directory, profile: Profile
) -> None:
    town = Town(session, authority, directory)
    town.add("Miriam Cohen", north=100, needs=NeedsDetails(bedridden=True), health_consent=True)
    avi = town.add("Avi Peretz", north=120, sms="+972525550401", volunteer=VolunteerDetails())
    assign_authority(session, authority=authority, profile=profile, actor="test", now=NOW)
    sweep_offers(session, profile=profile, now=NOW)
    [offer] = offers_to(session, avi)
    assert offer.channel == Channel.SMS
    assert t(Language.EN, "bot.needs.bedridden") not in offer.text  # no health detail by SMS
    lines = offer.text.splitlines()
    assert lines[-2:] == [
        f"{ACCEPT_NUMBER} {t(Language.EN, 'assign.offer.accept')}",
        f"{DECLINE_NUMBER} {t(Language.EN, 'assign.offer.decline')}",
    ]
    # A check-in's "1" and "2" are not the offer's; the offer's numbers are.
    assert choice_from_reply("1", offer.buttons) is None
    assert choice_from_reply("2", offer.buttons) is None
    assert offer_choice(session, person=avi, text="1", now=NOW) is None
    assert offer_choice(session, person=avi, text=ACCEPT_NUMBER, now=NOW) == (
        f"o:{the_offer(session, avi).id}:yes"
    )


def test_a_decline_replans_that_seat_only_and_the_next_volunteer_is_asked(
    session: Session, authority: Authority, directory: Directory, profile: Profile
) -> None:
    town = Town(session, authority, directory)
    residents = [town.add(f"Res{i} X", north=100 + 40 * i, needs=NeedsDetails()) for i in range(3)]
    near_one = town.add("Near One", north=110, volunteer=VolunteerDetails(checkin_capacity=1))
    others = [
        town.add(f"Vol{i} Y", north=150 + 100 * i, volunteer=VolunteerDetails(checkin_capacity=1))
        for i in range(6)  # primaries and backups for three residents take six: one stays free
    ]
    assign_authority(session, authority=authority, profile=profile, actor="test", now=NOW)
    sweep_offers(session, profile=profile, now=NOW)
    before = buddy_rows(session)
    declined = the_offer(session, near_one)
    declined_seat = session.get_one(BuddyAssignment, declined.assignment_id)
    resident_id = declined_seat.resident_id

    take_offer_answer(session, person=near_one, channel=Channel.TELEGRAM,
                      data=f"o:{declined.id}:no", profile=profile, now=NOW)  # fmt: skip
    assert declined.state == OfferState.DECLINED
    assert t(Language.EN, "assign.offer.declined") in texts_to(session, near_one)
    after = buddy_rows(session)
    # Every other pair is exactly as it was; the declined one is declined; one new pair.
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {declined_seat.id}
    assert after[declined_seat.id][2] == "declined"
    [new_id] = set(after) - set(before)
    volunteers = {near_one.id, *(v.id for v in others)}
    free = volunteers - {v for _, v, _ in before.values()}
    assert after[new_id][0] == resident_id and after[new_id][1] in free
    # The new volunteer is asked at once, in the same transaction as the decline.
    asked = session.get_one(Person, after[new_id][1])
    assert the_offer(session, asked).state == OfferState.OFFERED
    assert the_offer(session, asked).assignment_id == new_id
    assert {r.id for r in residents} >= {resident_id}


def test_an_unanswered_offer_is_reminded_then_planned_again_on_the_clock(
    session: Session, authority: Authority, directory: Directory, profile: Profile
) -> None:
    timings = profile.authority("kiryat-tamar").timings
    remind, expire = (
        timedelta(minutes=timings.offer_reminder),
        timedelta(minutes=timings.offer_expiry),
    )
    town = Town(session, authority, directory)
    town.add("Miriam Cohen", north=100, needs=NeedsDetails(bedridden=True))
    silent = town.add("Silent Sam", north=110, volunteer=VolunteerDetails(checkin_capacity=1))
    other = town.add("Other Olga", north=400, volunteer=VolunteerDetails(checkin_capacity=1))
    assign_authority(session, authority=authority, profile=profile, actor="test", now=NOW)
    sweep_offers(session, profile=profile, now=NOW)
    offer = the_offer(session, silent)
    assert offer.state == OfferState.OFFERED
    # Olga is Miriam's backup buddy and says yes at once.
    backup = the_offer(session, other)
    take_offer_answer(session, person=other, channel=Channel.TELEGRAM,
                      data=f"o:{backup.id}:yes", profile=profile, now=NOW)  # fmt: skip
    assert backup.state == OfferState.CONFIRMED

    assert (
        sweep_offers(session, profile=profile, now=NOW + remind - timedelta(seconds=1)).total() == 0
    )
    assert sweep_offers(session, profile=profile, now=NOW + remind).reminded == 1
    assert offer.state == OfferState.REMINDED
    reminder = offers_to(session, silent)[-1]
    assert reminder.text.startswith(t(Language.EN, "assign.offer.reminder"))
    assert reminder.buttons == offers_to(session, silent)[0].buttons  # the same answers work

    assert (
        sweep_offers(
            session, profile=profile, now=NOW + remind + expire - timedelta(seconds=1)
        ).expired
        == 0
    )
    swept = sweep_offers(session, profile=profile, now=NOW + remind + expire)
    assert swept.expired == 1
    assert offer.state == OfferState.EXPIRED
    assert t(Language.EN, "assign.offer.expired") in texts_to(session, silent)
    seat = session.get_one(BuddyAssignment, offer.assignment_id)
    assert seat.status == AssignmentStatus.DECLINED  # he is not planned for her again
    # Olga moves up to first buddy, and is asked again as such.
    assert the_offer(session, other).state == OfferState.OFFERED
    assert offers_to(session, other)[-1].text.startswith(
        t(Language.EN, "assign.offer.buddy_primary", name="Miriam", street="Herzl")
    )
    # A late answer from Sam finds the offer gone.
    take_offer_answer(session, person=silent, channel=Channel.TELEGRAM,
                      data=f"o:{offer.id}:yes", profile=profile, now=NOW + remind + expire)  # fmt: skip
    assert texts_to(session, silent)[-1] == t(Language.EN, "assign.offer.gone")
    assert seat.status == AssignmentStatus.DECLINED


def test_a_role_offer_says_what_the_role_means_and_a_released_seat_is_told(
    session: Session, authority: Authority, directory: Directory
) -> None:
    base = load_profile(DEFAULT_PROFILE_PATH)
    health = base.role("health")
    roles = [
        health.model_copy(update={"quota_per_zone": None, "quota_total": 1}),
        base.role("buddy"),
    ]
    policy = base.assignment.model_copy(
        update={
            "tiers": [
                t for t in base.assignment.tiers if t.buddies is not None or t.roles == "rest"
            ]
        }
    )
    profile = base.model_copy(update={"roles": roles, "assignment": policy})
    town = Town(session, authority, directory)
    medic = town.add("Noa Medic", north=100, language=Language.HE,
                     volunteer=VolunteerDetails(skills=("first_aid",)))  # fmt: skip
    assign_authority(session, authority=authority, profile=profile, actor="test", now=NOW)
    sweep_offers(session, profile=profile, now=NOW)
    [offer] = offers_to(session, medic)
    he = Language.HE
    assert offer.text.splitlines()[0] == t(
        he, "assign.offer.role", role=health.names.he, place=t(he, "assign.offer.town_wide")
    )
    assert health.duties is not None and health.duties.he in offer.text
    # She no longer has first aid (the officer corrected her skills): the re-run releases her.
    assert medic.volunteer is not None
    medic.volunteer.skills = []
    session.flush()
    assign_authority(session, authority=authority, profile=profile, actor="test", now=NOW)
    sweep_offers(session, profile=profile, now=NOW)
    assert the_offer(session, medic).state == OfferState.WITHDRAWN
    assert texts_to(session, medic)[-1] == t(he, "assign.offer.released_role", role=health.names.he)
    assert session.scalars(select(RoleAssignment)).one().status == AssignmentStatus.RELEASED


def test_street_leaves_out_house_and_flat_numbers() -> None:
    assert street_of("Herzl 5") == "Herzl"
    assert street_of("Herzl 10 apt 3") == "Herzl"
    assert street_of("שדרות ירושלים 12, דירה 4") == "שדרות ירושלים"
    assert street_of("12 Herzl St, Kiryat Tamar") == "Herzl St"
    assert street_of(None) == ""


def test_people_show_and_explain_say_where_each_offer_stands(
    sessions: sessionmaker[Session],
    directory: Directory,
    authority: Authority,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    with unit_of_work(sessions) as session:
        town = Town(session, authority, directory)
        miriam = town.add("Miriam Cohen", north=100, needs=NeedsDetails(bedridden=True)).id
        dana = town.add("Dana Amar", north=120, volunteer=VolunteerDetails(checkin_capacity=1)).id
        olga = town.add("Olga Ben", north=300, volunteer=VolunteerDetails(checkin_capacity=1)).id
    ctx = health_only_context(
        database_url, tmp_path, policy='[[assignment.tiers]]\nbuddies = "rest"\n'
        '[[assignment.tiers]]\nroles = "rest"\n',
    )  # fmt: skip

    def hosen(*argv: str) -> str:
        assert run_cli(ctx, *argv) == 0
        return capsys.readouterr().out

    try:
        hosen("assign")
        with unit_of_work(ctx.sessions) as session:
            sweep_offers(session, profile=ctx.profile, now=NOW)
            offer = session.scalars(
                select(AssignmentOffer).where(AssignmentOffer.volunteer_id == dana)
            ).one()
            take_offer_answer(
                session, person=session.get_one(Person, dana), channel=Channel.TELEGRAM,
                data=f"o:{offer.id}:yes", profile=ctx.profile, now=NOW,
            )  # fmt: skip
        shown = hosen("people", "show", str(miriam))
        shown_olga = hosen("people", "show", str(olga))
        explained = json.loads(hosen("assign", "--explain", str(dana), "--json"))
        explained_text = hosen("assign", "--explain", str(olga))
    finally:
        ctx.engine.dispose()
    assert f"Dana Amar (#{dana}) primary, 20 m, confirmed (offer confirmed)" in shown
    assert f"Olga Ben (#{olga}) backup, 200 m, proposed (offer offered)" in shown
    assert f"Miriam Cohen (#{miriam}) backup, 200 m, proposed (offer offered)" in shown_olga
    assert explained["stored"]["checks_on"][0]["offer"] == "confirmed"
    assert f"#{miriam} rank 2 proposed, offer offered" in explained_text


def test_a_declined_pair_goes_to_the_nearest_volunteer_who_can_take_it_however_far(
    session: Session, authority: Authority, directory: Directory, profile: Profile
) -> None:
    """The re-plan looks in widening rings; whatever ring it stops at, its pick is the nearest
    volunteer a search of the whole walking distance would give (checked here by brute force)."""
    town = Town(session, authority, directory)
    miriam = town.add("Miriam Cohen", north=0, needs=NeedsDetails(bedridden=True))
    first = town.add("First Fay", north=40, volunteer=VolunteerDetails(checkin_capacity=1))
    # Near but unable: a minor, one unavailable in emergencies, one whose room is taken.
    minor = town.add("Minor Max", north=80, volunteer=VolunteerDetails(checkin_capacity=3))
    minor.birth_year = NOW.year - 15
    away = town.add("Away Ada", north=120, volunteer=VolunteerDetails(checkin_capacity=3,
                                                                     available_emergency=False))  # fmt: skip
    town.add("Full Fred", north=160, volunteer=VolunteerDetails(checkin_capacity=1))
    town.add("Other Oren", north=170, needs=NeedsDetails(bedridden=True))  # Fred's resident
    far = [
        town.add(f"Far{i} Z", north=d, volunteer=VolunteerDetails(checkin_capacity=2))
        for i, d in enumerate((900, 1100, 1400))
    ]
    session.flush()
    assign_authority(session, authority=authority, profile=profile, actor="test", now=NOW)
    seat = session.scalars(
        select(BuddyAssignment).where(
            BuddyAssignment.resident_id == miriam.id, BuddyAssignment.volunteer_id == first.id
        )
    ).one()
    before = buddy_rows(session)
    from registry.assignment.store import decline_buddy

    result = decline_buddy(session, assignment_id=seat.id, profile=profile, actor="test", now=NOW)
    after = buddy_rows(session)
    active = [(r, v) for r, v, state in before.values() if state != "declined"]
    load = {v.id: sum(1 for _, w in active if w == v.id) for v in far}
    free = [v for v in far if load[v.id] < 2 and (miriam.id, v.id) not in active]
    assert free, "the town leaves a far volunteer free"
    nearest = min(free, key=lambda v: v.lat)
    new = [c for c in result.changes if c.action == "new"]
    assert [after[c.assignment_id][1] for c in new] == [nearest.id]
    assert all(after[c.assignment_id][1] not in (minor.id, away.id) for c in new)
