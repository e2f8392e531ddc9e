"""The registry's tables. Alembic migrations are generated from, and checked against, these models."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.languages import Language
from registry.db import Base, JSONType, UTCDateTime, utcnow


def enum_type(enum: type[StrEnum]) -> Enum:
    """Store an enum as its string value (VARCHAR), identical on SQLite and PostgreSQL."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=24,
        values_callable=lambda members: [member.value for member in members],
    )


class Channel(StrEnum):
    TELEGRAM = "telegram"
    SMS = "sms"
    VOICE = "voice"  # a phone call (an outbox row only: a person's channel is never VOICE)
    NONE = "none"  # landline only: reached through their buddy (or called, see VOICE)


class PhoneKind(StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"
    UNKNOWN = "unknown"


class PhoneSource(StrEnum):
    """How the registry came to hold a person's phone, which decides whether it is trusted.

    A shared Telegram contact, an SMS from the number, a one-time code sent to it and a staff
    member's check prove that the person holds the number (``verified``). A municipal list is
    trusted for merges without proving possession. A number only typed proves nothing.
    """

    CONTACT = "contact"  # their own contact, shared with Telegram's button
    SMS = "sms"  # they texted us from it: the carrier delivered it from that number
    CODE = "code"  # they typed back the one-time code we sent to it by SMS
    STAFF = "staff"  # a staff member checked it
    IMPORT = "import"  # a municipal list
    TYPED = "typed"  # typed in a dialog and not (yet) confirmed

    @property
    def verified(self) -> bool:
        return self in (PhoneSource.CONTACT, PhoneSource.SMS, PhoneSource.CODE, PhoneSource.STAFF)

    @property
    def trusted(self) -> bool:
        """Whether records may be merged on this number: proven, or from a municipal list."""
        return self.verified or self == PhoneSource.IMPORT


class PersonStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    OPTED_OUT = "opted_out"
    ERASED = "erased"


class Source(StrEnum):
    TELEGRAM = "telegram"
    SMS = "sms"
    IMPORT = "import"
    STAFF = "staff"
    SYNTHETIC = "synthetic"
    VOICE = "voice"  # called the Hosen number and asked for help: only the caller's number


class GroupKind(StrEnum):
    YOUTH_MOVEMENT = "youth_movement"
    BUILDING_COMMITTEE = "building_committee"
    SCHOOL_COMMITTEE = "school_committee"
    KINDERGARTEN_COMMITTEE = "kindergarten_committee"
    COMMUNITY_CENTRE = "community_centre"
    NATIONAL_SERVICE = "national_service"
    OTHER = "other"


class ConsentKind(StrEnum):
    REGISTRATION = (
        "registration"  # processing of contact details, messages in drills and emergencies
    )
    HEALTH_DATA = "health_data"  # special-category data: needs, disabilities, medical devices
    GUARDIAN = "guardian"  # a parent or guardian allows a minor to take a role


class ConsentGiver(StrEnum):
    SELF = "self"
    FAMILY = "family"  # a family member or caregiver registering someone else
    GUARDIAN = "guardian"
    STAFF = "staff"  # recorded by municipal staff (e.g. welfare department list)


class AssignmentStatus(StrEnum):
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    RELEASED = "released"


ACTIVE_ASSIGNMENT = ("proposed", "confirmed")


class Authority(Base):
    __tablename__ = "authority"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    # The profile's timings (seconds), copied by profile_sync so the dispatcher's timers need no
    # profile: the check-in ladder (reminder, buddy's visit, unreached list) and how long a help
    # alert waits for an officer to take it before it climbs to the next one.
    reminder_after: Mapped[int] = mapped_column(Integer, default=15 * 60, server_default="900")
    visit_after: Mapped[int] = mapped_column(Integer, default=45 * 60, server_default="2700")
    unreached_after: Mapped[int] = mapped_column(Integer, default=120 * 60, server_default="7200")
    alert_climb_after: Mapped[int] = mapped_column(Integer, default=10 * 60, server_default="600")
    # Phone calls in the ladder: on or off, and how an unanswered call is tried again.
    calls: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    call_retry_after: Mapped[int] = mapped_column(Integer, default=10 * 60, server_default="600")
    call_retries: Mapped[int] = mapped_column(SmallInteger, default=2, server_default="2")

    zones: Mapped[list[Zone]] = relationship(back_populates="authority")


class Zone(Base):
    __tablename__ = "zone"
    __table_args__ = (UniqueConstraint("authority_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authority.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(120))
    # The zone's name in every language of the profile ({"he": ..., "ar": ...}): messages name
    # the zone in the reader's language; ``name`` is the English one.
    names: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    lat: Mapped[float | None]
    lon: Mapped[float | None]

    authority: Mapped[Authority] = relationship(back_populates="zones")

    def name_in(self, language: Language | str) -> str:
        return self.names.get(str(language)) or self.name


class Shelter(Base):
    __tablename__ = "shelter"
    __table_args__ = (UniqueConstraint("authority_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authority.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zone.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(120))
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    capacity: Mapped[int]


class Person(Base):
    """Anyone the registry knows: a resident who may need help, a volunteer, or both.

    After erasure the row stays with every personal field emptied, so anonymous counts
    (per zone, volunteer or resident) survive while nothing identifies the person.
    """

    __tablename__ = "person"
    __table_args__ = (
        UniqueConstraint("authority_id", "phone"),
        UniqueConstraint("authority_id", "external_ref"),
        Index("ix_person_authority_status", "authority_id", "status"),
        Index("ix_person_phone", "phone"),  # a reply by SMS finds its sender by phone alone
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authority.id"))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zone.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(20))
    phone_kind: Mapped[PhoneKind] = mapped_column(enum_type(PhoneKind), default=PhoneKind.UNKNOWN)
    # Where the phone came from and when the person proved they hold it (see PhoneSource);
    # no source on a phone kept from before sources were recorded: it is not trusted.
    phone_source: Mapped[PhoneSource | None] = mapped_column(enum_type(PhoneSource))
    phone_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a verified or listed holder took over the number this person had only typed: the
    # record stays theirs, without the number, for staff to look at.
    phone_disputed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A number a list gave that cannot be used, as written, for staff to fix (``people list
    # --phone-to-fix``); cleared when a usable phone arrives. Meanwhile the person has no SMS.
    phone_to_fix: Mapped[str | None] = mapped_column(String(40))
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    language: Mapped[Language] = mapped_column(enum_type(Language), default=Language.HE)
    channel: Mapped[Channel] = mapped_column(enum_type(Channel), default=Channel.SMS)
    birth_year: Mapped[int | None] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(String(200))
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    status: Mapped[PersonStatus] = mapped_column(
        enum_type(PersonStatus), default=PersonStatus.ACTIVE
    )
    is_volunteer: Mapped[bool] = mapped_column(Boolean, default=False)
    needs_help: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[Source] = mapped_column(enum_type(Source))
    external_ref: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    volunteer: Mapped[VolunteerProfile | None] = relationship(
        back_populates="person", cascade="all, delete-orphan", uselist=False
    )
    needs: Mapped[ResidentNeeds | None] = relationship(
        back_populates="person", cascade="all, delete-orphan", uselist=False
    )
    zone: Mapped[Zone | None] = relationship()

    @property
    def can_receive_sms(self) -> bool:
        return self.phone is not None and self.phone_kind != PhoneKind.LANDLINE

    @property
    def phone_trusted(self) -> bool:
        """Whether another record may be merged with this one on the phone alone."""
        return self.phone_source is not None and self.phone_source.trusted

    @property
    def reachable(self) -> bool:
        return self.status == PersonStatus.ACTIVE


class VolunteerProfile(Base):
    __tablename__ = "volunteer_profile"

    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    skills: Mapped[list[str]] = mapped_column(JSONType, default=list)
    languages: Mapped[list[str]] = mapped_column(JSONType, default=list)
    available_routine: Mapped[bool] = mapped_column(Boolean, default=True)
    available_emergency: Mapped[bool] = mapped_column(Boolean, default=True)
    has_vehicle: Mapped[bool] = mapped_column(Boolean, default=False)
    checkin_capacity: Mapped[int] = mapped_column(Integer, default=3)

    person: Mapped[Person] = relationship(back_populates="volunteer")


NEED_FLAGS: tuple[str, ...] = (
    "lives_alone",
    "mobility",
    "bedridden",
    "powered_medical_equipment",
    "sight",
    "hearing",
    "cognitive",
    "regular_medication",
    "young_children",
    "no_shelter_access",
)


class ResidentNeeds(Base):
    """Special-category personal data: every read for display is written to the audit log."""

    __tablename__ = "resident_needs"

    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    lives_alone: Mapped[bool] = mapped_column(Boolean, default=False)
    mobility: Mapped[bool] = mapped_column(Boolean, default=False)
    bedridden: Mapped[bool] = mapped_column(Boolean, default=False)
    powered_medical_equipment: Mapped[bool] = mapped_column(Boolean, default=False)
    sight: Mapped[bool] = mapped_column(Boolean, default=False)
    hearing: Mapped[bool] = mapped_column(Boolean, default=False)
    cognitive: Mapped[bool] = mapped_column(Boolean, default=False)
    regular_medication: Mapped[bool] = mapped_column(Boolean, default=False)
    young_children: Mapped[bool] = mapped_column(Boolean, default=False)
    no_shelter_access: Mapped[bool] = mapped_column(Boolean, default=False)
    emergency_contact_name: Mapped[str | None] = mapped_column(String(120))
    emergency_contact_phone: Mapped[str | None] = mapped_column(String(20))

    person: Mapped[Person] = relationship(back_populates="needs")

    def flags(self) -> list[str]:
        return [flag for flag in NEED_FLAGS if getattr(self, flag)]


class Group(Base):
    __tablename__ = "community_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authority.id"), index=True)
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zone.id"))
    kind: Mapped[GroupKind] = mapped_column(enum_type(GroupKind))
    name: Mapped[str] = mapped_column(String(120))
    join_code: Mapped[str] = mapped_column(String(32), unique=True)


class GroupZone(Base):
    """The zones a group serves (a youth movement may cover several; ``Group.zone_id`` is the
    first of them, and a group with none serves its whole authority)."""

    __tablename__ = "group_zone"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("community_group.id", ondelete="CASCADE"), primary_key=True
    )
    zone_id: Mapped[int] = mapped_column(
        ForeignKey("zone.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class GroupMember(Base):
    __tablename__ = "group_member"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("community_group.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    is_coordinator: Mapped[bool] = mapped_column(Boolean, default=False)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Consent(Base):
    """What the person agreed to: the exact text shown, its version, when and on which channel."""

    __tablename__ = "consent"
    __table_args__ = (Index("ix_consent_person_kind", "person_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    kind: Mapped[ConsentKind] = mapped_column(enum_type(ConsentKind))
    version: Mapped[str] = mapped_column(String(20))
    language: Mapped[Language] = mapped_column(enum_type(Language))
    text: Mapped[str] = mapped_column(Text)
    channel: Mapped[Source] = mapped_column(enum_type(Source))
    given_by: Mapped[ConsentGiver] = mapped_column(enum_type(ConsentGiver))
    guardian_name: Mapped[str | None] = mapped_column(String(120))
    given_at: Mapped[datetime] = mapped_column(UTCDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RoleAssignment(Base):
    """An emergency role from the profile's catalogue, held by one volunteer."""

    __tablename__ = "role_assignment"
    __table_args__ = (
        Index(
            "uq_role_assignment_active_person",
            "person_id",
            unique=True,
            sqlite_where=text("status IN ('proposed', 'confirmed')"),
            postgresql_where=text("status IN ('proposed', 'confirmed')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    authority_id: Mapped[int] = mapped_column(ForeignKey("authority.id"), index=True)
    role_code: Mapped[str] = mapped_column(String(40))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zone.id"))
    shelter_id: Mapped[int | None] = mapped_column(ForeignKey("shelter.id"))
    status: Mapped[AssignmentStatus] = mapped_column(
        enum_type(AssignmentStatus), default=AssignmentStatus.PROPOSED
    )
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class BuddyAssignment(Base):
    """A volunteer who checks on an at-risk resident (rank 1: primary, rank 2: backup)."""

    __tablename__ = "buddy_assignment"
    __table_args__ = (
        Index(
            "uq_buddy_assignment_active_rank",
            "resident_id",
            "rank",
            unique=True,
            sqlite_where=text("status IN ('proposed', 'confirmed')"),
            postgresql_where=text("status IN ('proposed', 'confirmed')"),
        ),
        Index("ix_buddy_assignment_volunteer", "volunteer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[AssignmentStatus] = mapped_column(
        enum_type(AssignmentStatus), default=AssignmentStatus.PROPOSED
    )
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    distance_m: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AuditEntry(Base):
    """Who did what to whom. ``detail`` carries identifiers and field names, never personal data."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_person", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(60))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
