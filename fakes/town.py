"""A deterministic synthetic town: realistic fictional residents and volunteers for demos, tests
and benchmarks.

``generate_town(profile, size=..., seed=...)`` is pure data: the same profile, size, seed and year
give the same town, person by person. ``load_town`` writes it with bulk inserts (100,000 people in
seconds), and ``write_municipal_csv`` renders it as the lists a municipality actually hands over
(the welfare department's at-risk list, the volunteer list), in Hebrew or English, UTF-8 or
Windows-1255.

The mix follows a development town in the south and its regional council: a Hebrew-speaking
majority, Russian-speaking immigrants, Ethiopian-Israeli families concentrated in two
neighbourhoods, an Arab village in the council, a few English speakers; an old-heavy registry
(the people a welfare department lists), about a fifth of them at risk and a tenth volunteers.
"""

from __future__ import annotations

import csv
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from config.languages import Language
from config.profile import AuthorityProfile, Profile, ZoneProfile
from fakes.town_names import (
    FEMALE,
    MALE,
    MORE_STREETS,
    RURAL_ZONES,
    SURNAMES,
    TOWN_STREETS,
    ZONE_STREETS,
)
from registry import audit
from registry.bulk import bulk_insert
from registry.db import utcnow
from registry.models import (
    NEED_FLAGS,
    Channel,
    Consent,
    ConsentGiver,
    ConsentKind,
    Group,
    GroupKind,
    GroupMember,
    GroupZone,
    Person,
    PersonStatus,
    PhoneKind,
    PhoneSource,
    ResidentNeeds,
    Source,
    VolunteerProfile,
)
from registry.people import NeedsDetails, VolunteerDetails
from registry.profile_sync import Directory
from registry.rules import ADULT_AGE

MAX_SIZE = 100_000
DEFAULT_SEED = 2026
CONSENT_VERSION = "synthetic-1"
CONSENT_TEXT = "Synthetic town: consent recorded by the generator for demonstration data."

# -------------------------------------------------------------------------- the town's shape
# Relative size of each zone; unknown zones (another profile) weigh 10.
ZONE_WEIGHT: dict[str, float] = {
    "kt-center": 14,
    "kt-vatika": 12,
    "kt-rimonim": 14,
    "kt-dekalim": 9,
    "kt-shaked": 12,
    "kt-north": 15,
    "kt-zayit": 10,
    "kt-tayelet": 10,
    "et-ein-tamar": 6,
    "et-kfar-ela": 6,
    "et-tel-zaytun": 10,
}
_TOWN_MIX = {Language.HE: 66, Language.RU: 21, Language.AM: 5, Language.AR: 5, Language.EN: 3}
# Ethiopian-Israeli families concentrated in two neighbourhoods, veteran Russian speakers in the
# old quarter, the council's Arab village, a moshav founded by Ethiopian immigrants.
LANGUAGE_MIX: dict[str, dict[Language, float]] = {
    "kt-rimonim": {
        Language.HE: 52,
        Language.RU: 14,
        Language.AM: 28,
        Language.AR: 4,
        Language.EN: 2,
    },
    "kt-shaked": {
        Language.HE: 50,
        Language.RU: 20,
        Language.AM: 25,
        Language.AR: 3,
        Language.EN: 2,
    },
    "kt-vatika": {Language.HE: 58, Language.RU: 33, Language.AM: 3, Language.AR: 4, Language.EN: 2},
    "kt-tayelet": {
        Language.HE: 70,
        Language.RU: 16,
        Language.AM: 2,
        Language.AR: 4,
        Language.EN: 8,
    },
    "et-ein-tamar": {
        Language.HE: 72,
        Language.RU: 6,
        Language.AM: 18,
        Language.AR: 1,
        Language.EN: 3,
    },
    "et-kfar-ela": {
        Language.HE: 84,
        Language.RU: 8,
        Language.AM: 1,
        Language.AR: 1,
        Language.EN: 6,
    },
    "et-tel-zaytun": {Language.AR: 96, Language.HE: 4},
}
# Ages of the people a municipal registry holds (14 and over: younger children are a need of
# their parents, not registrants). Old-heavy, as the lists of a welfare department are.
AGE_BRACKETS: tuple[tuple[int, int, float], ...] = (
    (14, 17, 6),
    (18, 20, 5),
    (21, 29, 12),
    (30, 39, 14),
    (40, 49, 13),
    (50, 59, 12),
    (60, 64, 6),
    (65, 69, 7),
    (70, 74, 7),
    (75, 79, 7),
    (80, 84, 6),
    (85, 89, 3.5),
    (90, 99, 1.5),
)
TELEGRAM_SHARE = {
    Language.RU: 0.65,
    Language.EN: 0.5,
    Language.HE: 0.35,
    Language.AR: 0.3,
    Language.AM: 0.3,
}
SKILL_WEIGHT = {
    "first_aid": 18,
    "driving": 15,
    "logistics": 12,
    "cooking": 12,
    "elderly_care": 10,
    "teaching": 8,
    "tech": 8,
    "social_work": 5,
    "mental_health": 5,
    "medical": 5,
    "security": 5,
    "media": 3,
}
MOBILE_PREFIXES = (
    *(f"50{d}" for d in "02345678"),
    *(f"52{d}" for d in "2345678"),
    *(f"53{d}" for d in "0123456"),
    *(f"54{d}" for d in "2345678"),
    *(f"58{d}" for d in "34567"),
)
# Southern landlines (08): national number 8 + 7 digits.
LANDLINE_PREFIXES = ("850", "851", "852", "858", "860", "861", "862", "866", "867", "868", "869")
YOUTH_MOVEMENTS_TOWN = ("הצופים", "בני עקיבא", "הנוער העובד והלומד", "כנפיים של קרמבו")
YOUTH_MOVEMENTS_RURAL = ("בני עקיבא", "תנועת המושבים")
YOUTH_MOVEMENTS_ARAB = ("הצופים הערבים", "הנוער העובד והלומד")
COMMUNITY_NAMES = {
    Language.AM: "קהילת יוצאי אתיופיה",
    Language.RU: "ותיקי העלייה דוברי רוסית",
    Language.EN: "קהילת דוברי אנגלית",
}
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True, slots=True)
class TownPerson:
    """One synthetic person. ``first_name``/``last_name`` are in their own script; the ``he_``
    forms are the Hebrew spelling municipal lists carry."""

    index: int
    ref: str  # external reference, unique in the town: what load_town stores
    municipal_id: int  # the record number a municipal list carries
    authority: str
    zone: str
    first_name: str
    last_name: str
    he_first_name: str
    he_last_name: str
    gender: Literal["f", "m"]
    phone: str
    phone_kind: PhoneKind
    telegram_chat_id: int | None
    language: Language
    channel: Channel
    birth_year: int
    address: str
    lat: float
    lon: float
    volunteer: VolunteerDetails | None = None
    needs: NeedsDetails | None = None
    guardian_name: str | None = None  # minors in a youth movement: the parent who consented
    national_service: bool = False

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def he_name(self) -> str:
        return f"{self.he_first_name} {self.he_last_name}"

    @property
    def needs_help(self) -> bool:
        return self.needs is not None

    @property
    def is_volunteer(self) -> bool:
        return self.volunteer is not None


@dataclass(frozen=True, slots=True)
class TownGroup:
    """A community group; ``coordinators`` and ``members`` are indexes into ``Town.people``."""

    join_code: str
    authority: str
    zone: str | None
    kind: GroupKind
    name: str
    coordinators: tuple[int, ...]
    members: tuple[int, ...]


@dataclass(frozen=True)
class Town:
    profile_name: str
    seed: int
    year: int  # the year ages are counted in
    people: tuple[TownPerson, ...]
    groups: tuple[TownGroup, ...]

    def age(self, person: TownPerson) -> int:
        return self.year - person.birth_year

    def in_authority(self, code: str) -> list[TownPerson]:
        return [p for p in self.people if p.authority == code]


@dataclass(frozen=True)
class LoadCounts:
    people: int
    residents: int  # who may need help
    volunteers: int
    groups: int
    group_members: int
    consents: int
    skipped: int  # already in the database (same reference, phone or Telegram chat)


# -------------------------------------------------------------------------- generation


@dataclass
class _Building:
    street: str
    number: int
    lat: float
    lon: float
    rural: bool
    residents: list[int] = field(default_factory=list)


def generate_town(
    profile: Profile,
    *,
    size: int,
    seed: int = DEFAULT_SEED,
    year: int | None = None,
    authorities: Sequence[str] | None = None,
) -> Town:
    """A town of ``size`` people spread over the profile's zones (or only ``authorities``')."""
    if not 1 <= size <= MAX_SIZE:
        raise ValueError(f"town size must be between 1 and {MAX_SIZE}, not {size}")
    year = year or utcnow().year
    wanted = [a for a in profile.authorities if authorities is None or a.code in authorities]
    if not wanted:
        raise ValueError(f"no such authorities in the profile: {authorities}")
    return _Generator(profile, wanted, seed, year).town(size)


class _Generator:
    def __init__(
        self, profile: Profile, authorities: list[AuthorityProfile], seed: int, year: int
    ) -> None:
        self.profile = profile
        self.authorities = authorities
        self.seed = seed
        self.year = year
        self.rng = random.Random(seed)
        self.phones: set[str] = set()
        self.chats: set[int] = set()
        self.codes: set[str] = set()
        skills = [s.code for s in profile.skills]
        self.skills = skills
        self.skill_weights = [SKILL_WEIGHT.get(code, 5) for code in skills]

    def town(self, size: int) -> Town:
        zones = [(a, z) for a in self.authorities for z in a.zones]
        counts = _apportion(size, [ZONE_WEIGHT.get(z.code, 10) for _, z in zones])
        people: list[TownPerson] = []
        buildings: list[tuple[AuthorityProfile, ZoneProfile, list[_Building]]] = []
        for (authority, zone), count in zip(zones, counts, strict=True):
            zone_buildings = self._buildings(zone, count)
            buildings.append((authority, zone, zone_buildings))
            for _ in range(count):
                building = self.rng.choice(zone_buildings)
                person = self._person(len(people), authority, zone, building)
                building.residents.append(person.index)
                people.append(person)
        groups = self._groups(people, buildings)
        return Town(self.profile.name, self.seed, self.year, tuple(people), tuple(groups))

    # ---------------------------------------------------------------- places
    def _buildings(self, zone: ZoneProfile, count: int) -> list[_Building]:
        rural = zone.code in RURAL_ZONES
        occupancy = 3.5 if rural else 9.0
        streets = list(ZONE_STREETS.get(zone.code, TOWN_STREETS))
        spare = [s for s in MORE_STREETS if s not in streets]
        lat0 = zone.lat if zone.lat is not None else 31.6
        lon0 = zone.lon if zone.lon is not None else 34.77
        numbers: Counter[str] = Counter()
        result = []
        for _ in range(max(1, math.ceil(count / occupancy))):
            street = self.rng.choice(streets)
            if not rural and numbers[street] > 90 and spare:
                streets.remove(street)  # a full street: the town grows along a new one
                street = spare.pop(0)
                streets.append(street)
            numbers[street] += 1 + self.rng.randrange(2)
            lat, lon = self._jitter(lat0, lon0)
            result.append(_Building(street, numbers[street], lat, lon, rural))
        return result

    def _jitter(self, lat: float, lon: float) -> tuple[float, float]:
        """A point a few hundred metres around the zone centre (normal, clipped at 450 m)."""
        while True:
            dy, dx = self.rng.gauss(0, 170), self.rng.gauss(0, 170)
            if dy * dy + dx * dx <= 450 * 450:
                break
        m_per_deg_lon = _M_PER_DEG_LAT * math.cos(math.radians(lat))
        return round(lat + dy / _M_PER_DEG_LAT, 6), round(lon + dx / m_per_deg_lon, 6)

    # ---------------------------------------------------------------- people
    def _person(
        self, index: int, authority: AuthorityProfile, zone: ZoneProfile, building: _Building
    ) -> TownPerson:
        rng = self.rng
        mix = LANGUAGE_MIX.get(zone.code, _TOWN_MIX)
        language = rng.choices(list(mix), weights=list(mix.values()))[0]
        gender: Literal["f", "m"] = "f" if rng.random() < 0.52 else "m"
        low, high, _ = rng.choices(AGE_BRACKETS, weights=[w for _, _, w in AGE_BRACKETS])[0]
        age = rng.randint(low, high)
        first, he_first = rng.choice((FEMALE if gender == "f" else MALE)[language])
        last, he_last = self._surname(language, gender)

        landline_share = 0.35 if age >= 75 else 0.12 if age >= 65 else 0.0
        telegram_chat_id = None
        if rng.random() < landline_share:
            phone, kind, channel = self._landline(), PhoneKind.LANDLINE, Channel.NONE
        else:
            phone, kind = self._mobile(), PhoneKind.MOBILE
            factor = 1.2 if age < 30 else 1.0 if age < 65 else 0.5 if age < 75 else 0.2
            if rng.random() < min(0.9, TELEGRAM_SHARE[language] * factor):
                telegram_chat_id = self._chat_id()
                channel = Channel.TELEGRAM
            else:
                channel = Channel.SMS

        if building.rural:
            address = f"{building.street} {building.number}"
        else:
            address = f"{building.street} {building.number}, דירה {rng.randint(1, 24)}"

        needs = self._needs(age, language)
        youth = age < ADULT_AGE and rng.random() < 0.55
        national_service = 18 <= age <= 20 and rng.random() < 0.3
        volunteer = self._volunteer(age, language, youth, national_service, needs is not None)
        guardian = None
        if youth:
            _, parent_he = rng.choice((FEMALE if rng.random() < 0.6 else MALE)[language])
            guardian = f"{parent_he} {he_last}"
        return TownPerson(
            index=index,
            ref=f"town:{self.seed}:{index:06d}",
            municipal_id=100_001 + index,
            authority=authority.code,
            zone=zone.code,
            first_name=first,
            last_name=last,
            he_first_name=he_first,
            he_last_name=he_last,
            gender=gender,
            phone=phone,
            phone_kind=kind,
            telegram_chat_id=telegram_chat_id,
            language=language,
            channel=channel,
            birth_year=self.year - age,
            address=address,
            lat=building.lat,  # the people of one house or building share its coordinates
            lon=building.lon,
            volunteer=volunteer,
            needs=needs,
            guardian_name=guardian,
            national_service=national_service,
        )

    def _surname(self, language: Language, gender: str) -> tuple[str, str]:
        last, he_last = self.rng.choice(SURNAMES[language])
        if language == Language.RU and gender == "f" and last.endswith(("ов", "ев", "ин")):
            return last + "а", he_last + "ה"  # Иванов → Иванова, איבנוב → איבנובה
        return last, he_last

    def _mobile(self) -> str:
        while True:
            number = f"+972{self.rng.choice(MOBILE_PREFIXES)}{self.rng.randrange(10**6):06d}"
            if number not in self.phones:
                self.phones.add(number)
                return number

    def _landline(self) -> str:
        while True:
            number = f"+972{self.rng.choice(LANDLINE_PREFIXES)}{self.rng.randrange(10**5):05d}"
            if number not in self.phones:
                self.phones.add(number)
                return number

    def _chat_id(self) -> int:
        while True:
            chat = self.rng.randrange(100_000_000, 7_000_000_000)
            if chat not in self.chats:
                self.chats.add(chat)
                return chat

    def _needs(self, age: int, language: Language) -> NeedsDetails | None:
        rng = self.rng
        if age >= 85:
            share = 0.8
        elif age >= 75:
            share = 0.55
        elif age >= 65:
            share = 0.3
        elif 25 <= age <= 45:
            share = 0.14  # mostly parents of young children
        elif age >= ADULT_AGE:
            share = 0.05
        else:
            share = 0.02
        if rng.random() >= share:
            return None
        elderly = age >= 65
        p = (
            {
                "lives_alone": 0.45,
                "mobility": 0.35,
                "bedridden": 0.06,
                "powered_medical_equipment": 0.05,
                "sight": 0.12,
                "hearing": 0.2,
                "cognitive": 0.1,
                "regular_medication": 0.7,
                "young_children": 0.0,
                "no_shelter_access": 0.2,
            }
            if elderly
            else {
                "lives_alone": 0.15,
                "mobility": 0.15,
                "bedridden": 0.02,
                "powered_medical_equipment": 0.04,
                "sight": 0.05,
                "hearing": 0.05,
                "cognitive": 0.08,
                "regular_medication": 0.3,
                "young_children": 0.55 if 22 <= age <= 50 else 0.0,
                "no_shelter_access": 0.2,
            }
        )
        flags = {flag: rng.random() < p[flag] for flag in NEED_FLAGS}
        if flags["young_children"]:
            flags["lives_alone"] = False
        if not any(flags.values()):
            flags["young_children" if 22 <= age <= 50 else "regular_medication"] = True
        contact_name = contact_phone = None
        if rng.random() < 0.7:
            # Hebrew spelling, as the welfare department writes a relative's name down.
            _, first = rng.choice((FEMALE if rng.random() < 0.6 else MALE)[language])
            _, last = rng.choice(SURNAMES[language])
            contact_name = f"{first} {last}"
            # A relative's mobile: valid, but not a registrant, so it need not be unique.
            contact_phone = f"+972{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**6):06d}"
        return NeedsDetails(
            **flags, emergency_contact_name=contact_name, emergency_contact_phone=contact_phone
        )

    def _volunteer(
        self, age: int, language: Language, youth: bool, national_service: bool, at_risk: bool
    ) -> VolunteerDetails | None:
        rng = self.rng
        if youth:
            skills = [
                s for s, share in (("first_aid", 0.2), ("tech", 0.15)) if rng.random() < share
            ]
            return VolunteerDetails(
                skills=tuple(s for s in skills if s in self.skills),
                languages=self._spoken(language),
                available_routine=rng.random() < 0.8,
                available_emergency=True,
                has_vehicle=False,
                checkin_capacity=rng.randint(1, 2),
            )
        if national_service:
            share = 1.0
        elif 18 <= age <= 70:
            share = 0.085
        elif age <= 80:
            share = 0.04
        else:
            share = 0.0
        if at_risk:
            share /= 2
        if rng.random() >= share:
            return None
        chosen = set(rng.choices(self.skills, weights=self.skill_weights, k=rng.randint(1, 3)))
        has_vehicle = age >= 21 and ("driving" in chosen or rng.random() < 0.5)
        return VolunteerDetails(
            skills=tuple(sorted(chosen)),
            languages=self._spoken(language),
            available_routine=rng.random() < 0.7,
            available_emergency=rng.random() < 0.92,
            has_vehicle=has_vehicle,
            checkin_capacity=rng.choices((1, 2, 3, 4, 5, 6), weights=(10, 20, 30, 20, 10, 10))[0],
        )

    def _spoken(self, language: Language) -> tuple[str, ...]:
        spoken = {language.value}
        if language != Language.HE and self.rng.random() < 0.8:
            spoken.add(Language.HE.value)
        if language != Language.EN and self.rng.random() < 0.25:
            spoken.add(Language.EN.value)
        if language == Language.HE and self.rng.random() < 0.05:
            spoken.add(Language.AR.value)
        return tuple(sorted(spoken))

    # ---------------------------------------------------------------- groups
    def _join_code(self, prefix: str) -> str:
        while True:
            code = prefix + "".join(self.rng.choice(_CODE_ALPHABET) for _ in range(6))
            if code not in self.codes:
                self.codes.add(code)
                return code

    def _groups(
        self,
        people: list[TownPerson],
        buildings: list[tuple[AuthorityProfile, ZoneProfile, list[_Building]]],
    ) -> list[TownGroup]:
        rng = self.rng
        groups: list[TownGroup] = []
        by_zone: dict[str, list[TownPerson]] = defaultdict(list)
        for person in people:
            by_zone[person.zone].append(person)

        def age(p: TownPerson) -> int:
            return self.year - p.birth_year

        for authority, zone, zone_buildings in buildings:
            residents = by_zone[zone.code]
            zone_he = zone.names.he
            # Youth-movement branches: the zone's members, led by young adult volunteers.
            movements: tuple[str, ...]
            if zone.code == "et-tel-zaytun":
                movements = YOUTH_MOVEMENTS_ARAB
            elif zone.code in RURAL_ZONES:
                movements = YOUTH_MOVEMENTS_RURAL
            else:
                movements = YOUTH_MOVEMENTS_TOWN
            youth = [p.index for p in residents if p.guardian_name is not None]
            leaders = [
                p.index
                for p in residents
                if p.volunteer is not None and 18 <= age(p) <= 30 and p.needs is None
            ]
            branches: dict[str, list[int]] = defaultdict(list)
            for member in youth:
                branches[rng.choice(movements)].append(member)
            for movement in movements:
                if not branches[movement]:
                    continue
                coordinators = tuple(rng.sample(leaders, min(len(leaders), rng.randint(1, 2))))
                groups.append(
                    TownGroup(
                        self._join_code("Y"),
                        authority.code,
                        zone.code,
                        GroupKind.YOUTH_MOVEMENT,
                        f"{movement} – {zone_he}",
                        coordinators,
                        tuple(branches[movement]),
                    )
                )
            # Building committees: one apartment building in ten that has five registrants or more.
            for building in zone_buildings:
                if building.rural or len(building.residents) < 5 or rng.random() >= 0.1:
                    continue
                adults = [
                    i
                    for i in building.residents
                    if 25 <= age(people[i]) <= 75 and not people[i].needs
                ]
                if not adults:
                    continue
                head = rng.choice(adults)
                groups.append(
                    TownGroup(
                        self._join_code("B"),
                        authority.code,
                        zone.code,
                        GroupKind.BUILDING_COMMITTEE,
                        f"ועד הבית {building.street} {building.number}",
                        (head,),
                        tuple(i for i in building.residents if i != head),
                    )
                )

        for authority in self.authorities:
            members = [p for p in people if p.authority == authority.code]
            national = [p.index for p in members if p.national_service]
            staff = [
                p.index
                for p in members
                if p.volunteer is not None and 30 <= age(p) <= 60 and p.needs is None
            ]
            if national:
                groups.append(
                    TownGroup(
                        self._join_code("N"),
                        authority.code,
                        None,
                        GroupKind.NATIONAL_SERVICE,
                        f"שירות לאומי – {authority.names.he}",
                        (rng.choice(staff),) if staff else (),
                        tuple(national),
                    )
                )
            for language, title in COMMUNITY_NAMES.items():
                volunteers = [
                    p.index
                    for p in members
                    if p.language == language and p.volunteer is not None and age(p) >= ADULT_AGE
                ]
                if len(volunteers) < 3:
                    continue
                head = rng.choice(volunteers)
                groups.append(
                    TownGroup(
                        self._join_code("C"),
                        authority.code,
                        None,
                        GroupKind.COMMUNITY_CENTRE,
                        f"{title} – {authority.names.he}",
                        (head,),
                        tuple(i for i in volunteers if i != head),
                    )
                )
        return groups


def _apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` by ``weights`` into whole numbers that add up (largest remainder)."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


# -------------------------------------------------------------------------- loading


def load_town(
    session: Session, town: Town, directory: Directory, *, now: datetime | None = None
) -> LoadCounts:
    """Write the town with bulk inserts. People already there (same reference, phone or Telegram
    chat) are skipped, so loading the same town twice changes nothing. Does not commit."""
    now = now or utcnow()
    authority_ids = {code: a.id for code, a in directory.authorities.items()}
    missing = {p.authority for p in town.people} - set(authority_ids)
    if missing:
        raise ValueError(f"authorities not in the database: {sorted(missing)} (sync the profile)")
    zone_ids = {(a_id, code): z.id for (a_id, code), z in directory.zones.items()}

    taken_refs: set[tuple[int, str]] = set()
    taken_phones: set[tuple[int, str]] = set()
    taken_chats: set[int] = set()
    rows = session.execute(
        select(Person.authority_id, Person.external_ref, Person.phone, Person.telegram_chat_id)
    )
    for authority_id, ref, phone, chat in rows:
        if ref is not None:
            taken_refs.add((authority_id, ref))
        if phone is not None:
            taken_phones.add((authority_id, phone))
        if chat is not None:
            taken_chats.add(chat)

    fresh: list[TownPerson] = []
    for p in town.people:
        a_id = authority_ids[p.authority]
        if (
            (a_id, p.ref) in taken_refs
            or (a_id, p.phone) in taken_phones
            or (p.telegram_chat_id is not None and p.telegram_chat_id in taken_chats)
        ):
            continue
        fresh.append(p)

    person_rows = [
        {
            "authority_id": authority_ids[p.authority],
            "zone_id": zone_ids[(authority_ids[p.authority], p.zone)],
            "name": p.name,
            "phone": p.phone,
            "phone_kind": p.phone_kind,
            "phone_source": PhoneSource.IMPORT if p.phone else None,
            "phone_verified_at": None,
            "phone_disputed_at": None,
            "telegram_chat_id": p.telegram_chat_id,
            "language": p.language,
            "channel": p.channel,
            "birth_year": p.birth_year,
            "address": p.address,
            "lat": p.lat,
            "lon": p.lon,
            "status": PersonStatus.ACTIVE,
            "is_volunteer": p.volunteer is not None,
            "needs_help": p.needs is not None,
            "source": Source.SYNTHETIC,
            "external_ref": p.ref,
            "created_at": now,
            "updated_at": now,
        }
        for p in fresh
    ]
    ids: dict[int, int] = {}  # town index -> person id
    if person_rows:
        returned = bulk_insert(session, Person, person_rows, return_ids=True)
        ids = {p.index: person_id for p, person_id in zip(fresh, returned, strict=True)}

    volunteer_rows = [
        {"person_id": ids[p.index], **_details_row(p.volunteer)}
        for p in fresh
        if p.volunteer is not None
    ]
    needs_rows = [
        {"person_id": ids[p.index], **_details_row(p.needs)} for p in fresh if p.needs is not None
    ]
    if volunteer_rows:
        bulk_insert(session, VolunteerProfile, volunteer_rows)
    if needs_rows:
        bulk_insert(session, ResidentNeeds, needs_rows)

    consent_rows = list(_consents(fresh, ids, now))
    if consent_rows:
        bulk_insert(session, Consent, consent_rows)

    taken_codes = set(session.scalars(select(Group.join_code)))
    groups = [g for g in town.groups if g.join_code not in taken_codes]
    member_rows: list[dict[str, Any]] = []
    if groups:
        group_ids = bulk_insert(
            session,
            Group,
            [
                {
                    "authority_id": authority_ids[g.authority],
                    "zone_id": zone_ids[(authority_ids[g.authority], g.zone)] if g.zone else None,
                    "kind": g.kind,
                    "name": g.name,
                    "join_code": g.join_code,
                }
                for g in groups
            ],
            return_ids=True,
        )
        zone_rows = [
            {"group_id": group_id, "zone_id": zone_ids[(authority_ids[g.authority], g.zone)]}
            for g, group_id in zip(groups, group_ids, strict=True)
            if g.zone
        ]
        if zone_rows:
            bulk_insert(session, GroupZone, zone_rows)
        for group, group_id in zip(groups, group_ids, strict=True):
            for is_coordinator, indexes in ((True, group.coordinators), (False, group.members)):
                member_rows.extend(
                    {
                        "group_id": group_id,
                        "person_id": ids[i],
                        "is_coordinator": is_coordinator,
                        "joined_at": now,
                    }
                    for i in indexes
                    if i in ids
                )
        if member_rows:
            bulk_insert(session, GroupMember, member_rows)

    counts = LoadCounts(
        people=len(fresh),
        residents=len(needs_rows),
        volunteers=len(volunteer_rows),
        groups=len(groups),
        group_members=len(member_rows),
        consents=len(consent_rows),
        skipped=len(town.people) - len(fresh),
    )
    audit.record(
        session,
        actor="synthetic",
        action="town.load",
        at=now,
        seed=town.seed,
        people=counts.people,
        skipped=counts.skipped,
    )
    session.flush()
    return counts


def _details_row(details: VolunteerDetails | NeedsDetails) -> dict[str, Any]:
    return {
        # The details dataclasses carry the same field names as the tables' columns.
        f.name: sorted(set(value))
        if isinstance(value := getattr(details, f.name), tuple)
        else value
        for f in fields(details)
    }


def _consents(
    people: list[TownPerson], ids: dict[int, int], now: datetime
) -> Iterator[dict[str, Any]]:
    for p in people:
        base = {
            "person_id": ids[p.index],
            "version": CONSENT_VERSION,
            "language": p.language,
            "text": CONSENT_TEXT,
            "channel": Source.SYNTHETIC,
            "given_at": now,
            "guardian_name": None,
        }
        yield {**base, "kind": ConsentKind.REGISTRATION, "given_by": ConsentGiver.SELF}
        if p.needs is not None:
            yield {**base, "kind": ConsentKind.HEALTH_DATA, "given_by": ConsentGiver.SELF}
        if p.guardian_name is not None:
            yield {
                **base,
                "kind": ConsentKind.GUARDIAN,
                "given_by": ConsentGiver.GUARDIAN,
                "guardian_name": p.guardian_name,
            }


# -------------------------------------------------------------------------- municipal lists

ListKind = Literal["residents", "volunteers"]

_LANGUAGE_WORDS = {
    Language.HE: ("עברית", "Hebrew"),
    Language.AR: ("ערבית", "Arabic"),
    Language.EN: ("אנגלית", "English"),
    Language.RU: ("רוסית", "Russian"),
    Language.AM: ("אמהרית", "Amharic"),
}
COMMON_COLUMNS_HE = (
    "מס' רשומה",
    "שם פרטי",
    "שם משפחה",
    "טלפון",
    "שכונה",
    "כתובת",
    "שנת לידה",
    "שפה",
)
COMMON_COLUMNS_EN = (
    "municipal id",
    "first name",
    "last name",
    "phone",
    "zone",
    "address",
    "birth year",
    "language",
)
NEEDS_COLUMNS_HE = {
    "lives_alone": "גר לבד",
    "mobility": "מוגבלות בניידות",
    "bedridden": "מרותק למיטה",
    "powered_medical_equipment": "מכשור רפואי",
    "sight": "לקות ראייה",
    "hearing": "לקות שמיעה",
    "cognitive": "לקות קוגניטיבית",
    "regular_medication": "תרופות קבועות",
    "young_children": "ילדים קטנים",
    "no_shelter_access": "ללא מרחב מוגן",
    "emergency_contact_name": "איש קשר לחירום",
    "emergency_contact_phone": "טלפון איש קשר",
}
VOLUNTEER_COLUMNS_HE = {
    "skills": "כישורים",
    "languages": "שפות",
    "has_vehicle": "רכב",
    "checkin_capacity": "כמה אנשים",
    "available_routine": "זמינות בשגרה",
    "available_emergency": "זמינות בחירום",
    "guardian": "שם הורה",
}


def write_municipal_csv(
    town: Town,
    path: Path,
    kind: ListKind,
    *,
    profile: Profile,
    authority: str | None = None,
    encoding: str = "utf-8-sig",
    hebrew_headers: bool = True,
    delimiter: str = ",",
    everyone: bool = False,
) -> int:
    """Write the list a municipality would hand over, as its spreadsheet exports it.

    ``residents`` is the welfare department's at-risk list, ``volunteers`` the volunteer list;
    names are in their Hebrew spelling (as municipal records hold them), zones by their name.
    ``everyone`` puts every person of the authority on the list (for benchmarks).
    Returns the number of rows written.
    """
    authority = authority or profile.authorities[0].code
    zone_names = {
        z.code: (z.names.he if hebrew_headers else z.names.en)
        for z in profile.authority(authority).zones
    }
    skill_names = {s.code: (s.names.he if hebrew_headers else s.names.en) for s in profile.skills}
    yes, no = ("כן", "") if hebrew_headers else ("yes", "no")
    lang_word = {lang: words[0 if hebrew_headers else 1] for lang, words in _LANGUAGE_WORDS.items()}

    def flag(value: bool) -> str:
        return yes if value else no

    if kind == "residents":
        extra = list(NEEDS_COLUMNS_HE.items())
    else:
        extra = list(VOLUNTEER_COLUMNS_HE.items())
    header = list(COMMON_COLUMNS_HE if hebrew_headers else COMMON_COLUMNS_EN)
    header += [he if hebrew_headers else key.replace("_", " ") for key, he in extra]

    written = 0
    with path.open("w", encoding=encoding, newline="") as out:
        writer = csv.writer(out, delimiter=delimiter)
        writer.writerow(header)
        for p in town.people:
            if p.authority != authority:
                continue
            if not everyone and (p.needs if kind == "residents" else p.volunteer) is None:
                continue
            row: list[str | int] = [
                p.municipal_id,
                p.he_first_name,
                p.he_last_name,
                _local_phone(p.phone, p.index),
                zone_names[p.zone],
                p.address,
                p.birth_year,
                lang_word[p.language],
            ]
            if kind == "residents":
                needs = p.needs or NeedsDetails()
                row += [flag(getattr(needs, f)) for f in NEED_FLAGS]
                row += [
                    needs.emergency_contact_name or "",
                    _local_phone(needs.emergency_contact_phone, 0)
                    if needs.emergency_contact_phone
                    else "",
                ]
            else:
                v = p.volunteer or VolunteerDetails()
                row += [
                    ", ".join(skill_names[s] for s in v.skills),
                    ", ".join(lang_word[Language(code)] for code in v.languages),
                    flag(v.has_vehicle),
                    v.checkin_capacity,
                    flag(v.available_routine),
                    flag(v.available_emergency),
                    p.guardian_name or "",
                ]
            writer.writerow(row)
            written += 1
    return written


def _local_phone(e164: str, variant: int) -> str:
    """The number as clerks type it: mostly 050-1234567, sometimes without the dash."""
    national = "0" + e164.removeprefix("+972")
    split = 3 if national.startswith("05") else 2
    if variant % 7 == 3:
        return national
    return f"{national[:split]}-{national[split:]}"


def insert_reachable_residents(
    session: Session,
    *,
    authority_id: int,
    count: int,
    on_telegram: Callable[[int], bool],
    chat_base: int,
    phone_prefix: str = "+97250",
    languages: Sequence[str] = ("he",),
    now: datetime | None = None,
) -> None:
    """``count`` plain residents who need help, in bulk, for benchmarks and reliability tests:
    resident ``n`` is on Telegram (chat ``chat_base + n``) when ``on_telegram(n)``, else SMS
    only; phone ``phone_prefix`` + ``n``; languages taken in turn. The caller commits."""
    now = now or utcnow()
    rows = [
        {
            "authority_id": authority_id,
            "name": f"Resident {n}",
            "phone": f"{phone_prefix}{n:07d}",
            "phone_kind": PhoneKind.MOBILE,
            "telegram_chat_id": chat_base + n if on_telegram(n) else None,
            "language": languages[n % len(languages)],
            "channel": "telegram" if on_telegram(n) else "sms",
            "source": Source.SYNTHETIC,
            "needs_help": True,
            "status": "active",
            "is_volunteer": False,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(count)
    ]
    for start in range(0, count, 10_000):
        session.execute(insert(Person), rows[start : start + 10_000])
