from __future__ import annotations

import math
from collections import Counter

import phonenumbers
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.languages import Language
from config.profile import Profile
from fakes.town import Town, generate_town, load_town
from registry.models import (
    Channel,
    Consent,
    ConsentKind,
    Group,
    GroupKind,
    GroupMember,
    Person,
    PhoneKind,
    ResidentNeeds,
    Source,
    VolunteerProfile,
    Zone,
)
from registry.profile_sync import Directory

YEAR = 2026


@pytest.fixture(scope="module")
def town(profile: Profile) -> Town:
    return generate_town(profile, size=6000, seed=7, year=YEAR)


def share(count: int, town: Town) -> float:
    return count / len(town.people)


def test_the_same_seed_gives_the_same_town(profile: Profile) -> None:
    first = generate_town(profile, size=800, seed=11, year=YEAR)
    again = generate_town(profile, size=800, seed=11, year=YEAR)
    other = generate_town(profile, size=800, seed=12, year=YEAR)
    assert first == again
    assert [p.phone for p in first.people] != [p.phone for p in other.people]


@pytest.mark.parametrize("size", [0, 100_001])
def test_size_is_bounded(profile: Profile, size: int) -> None:
    with pytest.raises(ValueError, match="town size"):
        generate_town(profile, size=size, seed=1)


def test_exact_size_over_every_zone(town: Town, profile: Profile) -> None:
    assert len(town.people) == 6000
    zones = {z.code for a in profile.authorities for z in a.zones}
    assert {p.zone for p in town.people} == zones


def test_a_fifth_at_risk_and_a_tenth_volunteers(town: Town) -> None:
    assert 0.16 <= share(sum(p.needs_help for p in town.people), town) <= 0.26
    assert 0.08 <= share(sum(p.is_volunteer for p in town.people), town) <= 0.13
    powered = sum(bool(p.needs and p.needs.powered_medical_equipment) for p in town.people)
    assert 0.002 <= share(powered, town) <= 0.03
    for person in town.people:
        if person.needs is not None:
            assert any(getattr(person.needs, flag) for flag in ("lives_alone", "mobility",
                       "bedridden", "powered_medical_equipment", "sight", "hearing", "cognitive",
                       "regular_medication", "young_children", "no_shelter_access"))  # fmt: skip


def test_language_mix_of_a_development_town(town: Town) -> None:
    languages = Counter(p.language for p in town.people)
    assert 0.45 <= share(languages[Language.HE], town) <= 0.75
    for language in (Language.RU, Language.AR, Language.AM, Language.EN):
        assert share(languages[language], town) >= 0.01, language

    def arabic_share(zone: str) -> float:
        people = [p for p in town.people if p.zone == zone]
        return sum(p.language == Language.AR for p in people) / len(people)

    def amharic_share(zone: str) -> float:
        people = [p for p in town.people if p.zone == zone]
        return sum(p.language == Language.AM for p in people) / len(people)

    assert arabic_share("et-tel-zaytun") > 0.85
    assert amharic_share("kt-rimonim") > 3 * amharic_share("kt-north")


def test_names_are_written_in_each_communitys_script(town: Town) -> None:
    scripts = {
        Language.HE: ("\u0590", "\u05ff"),
        Language.AR: ("\u0600", "\u06ff"),
        Language.RU: ("\u0400", "\u04ff"),
        Language.AM: ("\u1200", "\u137f"),
        Language.EN: ("A", "z"),
    }
    for person in town.people[:500]:
        low, high = scripts[person.language]
        assert low <= person.first_name[0] <= high, person
        assert "\u05d0" <= person.he_first_name[0] <= "\u05ea", person


def test_age_pyramid(town: Town) -> None:
    ages = [town.age(p) for p in town.people]
    assert min(ages) >= 14 and max(ages) <= 99
    assert 0.04 <= sum(a < 18 for a in ages) / len(ages) <= 0.09
    assert 0.2 <= sum(a >= 65 for a in ages) / len(ages) <= 0.35


def test_phones_are_valid_israeli_numbers_unique_per_authority(town: Town) -> None:
    seen: set[tuple[str, str]] = set()
    for person in town.people:
        assert (person.authority, person.phone) not in seen
        seen.add((person.authority, person.phone))
    for person in town.people[::7]:  # a sample: phonenumbers is slow
        parsed = phonenumbers.parse(person.phone, "IL")
        assert phonenumbers.is_valid_number(parsed), person.phone
        kind = phonenumbers.number_type(parsed)
        if person.phone_kind == PhoneKind.MOBILE:
            assert kind == phonenumbers.PhoneNumberType.MOBILE
        else:
            assert kind == phonenumbers.PhoneNumberType.FIXED_LINE
        if person.needs and person.needs.emergency_contact_phone:
            contact = phonenumbers.parse(person.needs.emergency_contact_phone, "IL")
            assert phonenumbers.is_valid_number(contact)


def test_landline_only_elderly_are_reached_through_a_buddy(town: Town) -> None:
    landline = [p for p in town.people if p.phone_kind == PhoneKind.LANDLINE]
    assert 0.03 <= share(len(landline), town) <= 0.15
    assert all(p.channel == Channel.NONE and p.telegram_chat_id is None for p in landline)
    assert all(town.age(p) >= 65 for p in landline)
    telegram = [p for p in town.people if p.channel == Channel.TELEGRAM]
    assert telegram and all(p.telegram_chat_id for p in telegram)
    chats = [p.telegram_chat_id for p in telegram]
    assert len(set(chats)) == len(chats)


def test_people_live_a_few_hundred_metres_around_their_zone_centre(
    town: Town, profile: Profile
) -> None:
    centres = {z.code: (z.lat, z.lon) for a in profile.authorities for z in a.zones}
    for person in town.people:
        lat, lon = centres[person.zone]
        assert lat is not None and lon is not None
        dy = (person.lat - lat) * 111_320
        dx = (person.lon - lon) * 111_320 * math.cos(math.radians(lat))
        assert math.hypot(dx, dy) <= 460


def test_volunteers_have_catalogue_skills_and_a_capacity(town: Town, profile: Profile) -> None:
    catalogue = {s.code for s in profile.skills}
    volunteers = [p for p in town.people if p.volunteer is not None]
    for person in volunteers:
        assert person.volunteer is not None
        assert set(person.volunteer.skills) <= catalogue
        assert 1 <= person.volunteer.checkin_capacity <= 6
        assert person.language.value in person.volunteer.languages
    assert sum(p.national_service for p in town.people) > 0
    assert sum(bool(p.volunteer and p.volunteer.has_vehicle) for p in volunteers) > 0


def test_youth_movements_national_service_and_building_committees(town: Town) -> None:
    kinds = Counter(g.kind for g in town.groups)
    assert kinds[GroupKind.YOUTH_MOVEMENT] and kinds[GroupKind.NATIONAL_SERVICE]
    assert kinds[GroupKind.BUILDING_COMMITTEE]
    assert len({g.join_code for g in town.groups}) == len(town.groups)
    for group in town.groups:
        members = [town.people[i] for i in group.members]
        coordinators = [town.people[i] for i in group.coordinators]
        assert all(p.authority == group.authority for p in members + coordinators)
        assert all(town.age(p) >= 18 for p in coordinators)
        if group.kind == GroupKind.YOUTH_MOVEMENT:
            assert all(town.age(p) < 18 and p.guardian_name for p in members)
            assert all(p.zone == group.zone for p in members)
        if group.kind == GroupKind.NATIONAL_SERVICE:
            assert all(p.national_service for p in members)


def test_load_town_writes_everything_and_a_second_load_changes_nothing(
    session: Session, directory: Directory, profile: Profile
) -> None:
    town = generate_town(profile, size=1500, seed=3, year=YEAR)
    counts = load_town(session, town, directory)
    session.commit()

    assert counts.people == 1500 and counts.skipped == 0
    assert counts.residents == sum(p.needs_help for p in town.people)
    assert counts.volunteers == sum(p.is_volunteer for p in town.people)
    assert session.scalar(select(func.count()).select_from(Person)) == 1500
    assert session.scalar(select(func.count()).select_from(ResidentNeeds)) == counts.residents
    assert session.scalar(select(func.count()).select_from(VolunteerProfile)) == counts.volunteers
    assert session.scalar(select(func.count()).select_from(Group)) == len(town.groups)
    assert session.scalar(select(func.count()).select_from(GroupMember)) == counts.group_members > 0
    guardians = session.scalar(
        select(func.count()).select_from(Consent).where(Consent.kind == ConsentKind.GUARDIAN)
    )
    assert guardians == sum(p.guardian_name is not None for p in town.people)

    sample = town.people[42]
    person = session.scalars(select(Person).where(Person.external_ref == sample.ref)).one()
    zone = session.get(Zone, person.zone_id)
    assert zone is not None and zone.code == sample.zone
    assert (person.name, person.phone, person.phone_kind) == (
        sample.name,
        sample.phone,
        sample.phone_kind,
    )
    assert person.source == Source.SYNTHETIC and person.language == sample.language
    assert person.needs_help == sample.needs_help and person.is_volunteer == sample.is_volunteer
    volunteer = next(p for p in town.people if p.volunteer and p.volunteer.skills)
    loaded = session.scalars(select(Person).where(Person.external_ref == volunteer.ref)).one()
    assert loaded.volunteer is not None and volunteer.volunteer is not None
    assert loaded.volunteer.skills == sorted(volunteer.volunteer.skills)

    again = load_town(session, town, directory)
    session.commit()
    assert again.people == 0 and again.skipped == 1500 and again.groups == 0
    assert session.scalar(select(func.count()).select_from(Person)) == 1500
