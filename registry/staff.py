"""Municipal staff: administrators, emergency officers and group coordinators, and what each may do.

A staff command is honoured only from a verified channel of that staff member (their phone, whose
SMS arrive signed by Twilio, or a Telegram chat verified by sharing that phone's contact), only for
their own authority (or every authority of the cluster for cluster-wide staff), and every attempt,
allowed or refused, is written to the audit log.

A signed SMS webhook proves only that Twilio delivered the message, not who sent it (a sender
number can be spoofed), so a staff action by SMS also needs the member's PIN: set by an
administrator, kept as a salted scrypt hash, locked after :data:`PIN_ATTEMPTS` wrong tries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from config.languages import DEFAULT_LANGUAGE, Language
from registry import audit
from registry.db import Base, UTCDateTime, utcnow
from registry.digests import sender_key
from registry.errors import RegistryError
from registry.models import Authority, Channel, Group, enum_type
from registry.people import clean_text
from registry.phones import Phone
from registry.rules import MAX_NAME


class StaffRole(StrEnum):
    ADMIN = "admin"
    OFFICER = "officer"
    COORDINATOR = "coordinator"


class StaffAction(StrEnum):
    MANAGE_STAFF = "staff.manage"
    START_CAMPAIGN = "campaign.start"
    VIEW_CAMPAIGN = "campaign.view"
    CLOSE_CAMPAIGN = "campaign.close"
    VIEW_UNREACHED = "campaign.unreached"
    MANAGE_GROUP_TASKS = "tasks.manage"
    RUN_ASSIGNMENT = "assignment.run"
    HANDLE_HELP = "help.handle"  # take, close or give up a help alert
    MANAGE_GROUP_MEMBERS = "group.members"  # list and remove a group's members
    MARK_RESOURCE = "resource.state"  # mark a community resource available, in use, out of service
    VIEW_REGISTRY = "registry.view"  # the console's people, groups, resources and gaps pages


ALLOWED: dict[StaffRole, frozenset[StaffAction]] = {
    StaffRole.ADMIN: frozenset(StaffAction),
    StaffRole.OFFICER: frozenset(StaffAction) - {StaffAction.MANAGE_STAFF},
    StaffRole.COORDINATOR: frozenset(
        {StaffAction.MANAGE_GROUP_TASKS, StaffAction.MANAGE_GROUP_MEMBERS}
    ),
}


class NotAuthorized(RegistryError):
    """The sender is not staff, or not allowed this action here. Nothing happens."""


class StaffMember(Base):
    __tablename__ = "staff"
    __table_args__ = (
        UniqueConstraint("phone"),
        Index("ix_staff_telegram_chat_id", "telegram_chat_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str] = mapped_column(String(20))
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    # None: cluster-wide, every authority this service serves.
    authority_id: Mapped[int | None] = mapped_column(ForeignKey("authority.id"))
    role: Mapped[StaffRole] = mapped_column(enum_type(StaffRole))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The SMS PIN: "scrypt$n$r$p$salt$digest" (base64), never the PIN itself.
    pin_hash: Mapped[str | None] = mapped_column(String(160))
    pin_failures: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    pin_locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Until when a PIN given by SMS stands for this member's staff SMS (a session).
    sms_session_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The language every message to them is written in: replies, help alerts, notices.
    language: Mapped[Language] = mapped_column(
        enum_type(Language), default=DEFAULT_LANGUAGE, server_default=DEFAULT_LANGUAGE.value
    )


class CoordinatedGroup(Base):
    """The groups a coordinator is responsible for."""

    __tablename__ = "staff_group"

    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("community_group.id", ondelete="CASCADE"), primary_key=True
    )


def add_staff(
    session: Session,
    *,
    name: str,
    phone: Phone,
    authority: Authority | None,
    role: StaffRole,
    groups: list[Group] | None = None,
    language: Language | None = None,
    actor: str,
    now: datetime | None = None,
) -> StaffMember:
    """Register (or re-activate and update) a staff member, keyed by phone. ``language``: the
    language they read (Hebrew for a new member when not given; kept as it was otherwise)."""
    if role == StaffRole.COORDINATOR and not groups:
        raise RegistryError("staff.coordinator_needs_group")
    if authority is None and role != StaffRole.ADMIN:
        raise RegistryError("staff.cluster_only_admin")
    for group in groups or []:
        if authority is not None and group.authority_id != authority.id:
            raise RegistryError("staff.group_elsewhere", group=group.join_code)
    member = session.scalar(select(StaffMember).where(StaffMember.phone == phone.e164))
    if member is None:
        member = StaffMember(phone=phone.e164, name="", role=role, language=DEFAULT_LANGUAGE)
        session.add(member)
    if language is not None:
        member.language = language
    member.name = clean_text(name, MAX_NAME)
    member.authority_id = authority.id if authority else None
    member.role = role
    member.active = True
    session.flush()
    existing = set(
        session.scalars(
            select(CoordinatedGroup.group_id).where(CoordinatedGroup.staff_id == member.id)
        )
    )
    for group in groups or []:
        if group.id not in existing:
            session.add(CoordinatedGroup(staff_id=member.id, group_id=group.id))
    audit.record(
        session,
        actor=actor,
        action="staff.add",
        at=now or utcnow(),
        staff_id=member.id,
        role=role.value,
    )
    return member


def remove_staff(
    session: Session, *, phone: Phone, actor: str, now: datetime | None = None
) -> bool:
    member = session.scalar(select(StaffMember).where(StaffMember.phone == phone.e164))
    if member is None or not member.active:
        return False
    member.active = False
    member.telegram_chat_id = None
    member.sms_session_until = None
    audit.record(
        session, actor=actor, action="staff.remove", at=now or utcnow(), staff_id=member.id
    )
    return True


def verify_telegram(
    session: Session, *, phone: Phone, chat_id: int, now: datetime | None = None
) -> StaffMember | None:
    """Bind a Telegram chat to the staff member whose phone the chat's own user shared."""
    member = session.scalar(
        select(StaffMember).where(StaffMember.phone == phone.e164, StaffMember.active)
    )
    if member is None:
        return None
    if member.telegram_chat_id != chat_id:
        member.telegram_chat_id = chat_id
        audit.record(
            session,
            actor=f"telegram:{chat_id}",
            action="staff.verify",
            at=now or utcnow(),
            staff_id=member.id,
        )
    return member


def find_staff(session: Session, *, channel: Channel, address: str) -> StaffMember | None:
    """The active staff member behind a verified Telegram chat id or an SMS sender's E.164 phone."""
    query = select(StaffMember).where(StaffMember.active)
    if channel == Channel.TELEGRAM:
        if not address.lstrip("-").isdecimal():
            return None
        query = query.where(StaffMember.telegram_chat_id == int(address))
    elif channel == Channel.SMS:
        query = query.where(StaffMember.phone == address)
    else:
        return None
    return session.scalar(query)


def authorize(
    session: Session,
    *,
    channel: Channel,
    address: str,
    action: StaffAction,
    authority_id: int | None,
    group_id: int | None = None,
    now: datetime | None = None,
) -> StaffMember:
    """The staff member allowed to do ``action`` here, or :class:`NotAuthorized`. Always audited."""
    now = now or utcnow()
    member = find_staff(session, channel=channel, address=address)
    reason = _refusal(session, member, action, authority_id, group_id)
    if reason:
        record_refusal(
            session,
            channel=channel,
            address=address,
            member=member,
            reason=reason,
            now=now,
            action=action.value,
            authority_id=authority_id,
            group_id=group_id,
        )
        raise NotAuthorized("staff.not_authorized")
    assert member is not None
    audit.record(
        session,
        actor=_actor(channel, member),
        action=action.value,
        at=now,
        authority_id=authority_id,
        group_id=group_id,
    )
    return member


def authorize_member(
    session: Session,
    *,
    member: StaffMember,
    action: StaffAction,
    authority_id: int | None,
    actor: str,
    group_id: int | None = None,
    now: datetime | None = None,
    audited: bool = True,
) -> None:
    """As :func:`authorize`, for a member already identified another way (the web console's
    session): :class:`NotAuthorized` unless allowed; refusals always audited, the allowed
    action when ``audited``."""
    now = now or utcnow()
    reason = _refusal(session, member if member.active else None, action, authority_id, group_id)
    if reason:
        audit.record(
            session,
            actor=actor,
            action="staff.refused",
            at=now,
            reason=reason,
            attempted=action.value,
            authority_id=authority_id,
            group_id=group_id,
        )
        raise NotAuthorized("staff.not_authorized")
    if audited:
        audit.record(
            session,
            actor=actor,
            action=action.value,
            at=now,
            authority_id=authority_id,
            group_id=group_id,
        )


def record_refusal(
    session: Session,
    *,
    channel: Channel,
    address: str,
    member: StaffMember | None,
    reason: str,
    now: datetime,
    action: str,
    authority_id: int | None = None,
    group_id: int | None = None,
    task_id: int | None = None,
) -> None:
    """Audit a refused staff action. Someone unknown is named by the keyed digest of their
    chat id or number (the same sender gives the same digest), never by the number itself."""
    audit.record(
        session,
        actor=_actor(channel, member),
        action="staff.refused",
        at=now,
        reason=reason,
        attempted=action,
        authority_id=authority_id,
        group_id=group_id,
        task_id=task_id,
        sender=sender_key(channel, address) if member is None else None,
    )


def _actor(channel: Channel, member: StaffMember | None) -> str:
    return f"{channel.value}:staff:{member.id}" if member else f"{channel.value}:unknown"


def _refusal(
    session: Session,
    member: StaffMember | None,
    action: StaffAction,
    authority_id: int | None,
    group_id: int | None,
) -> str | None:
    if member is None:
        return "not staff"
    if action not in ALLOWED[member.role]:
        return "role"
    if member.authority_id is not None and member.authority_id != authority_id:
        return "authority"
    if member.role == StaffRole.COORDINATOR:
        groups = set(
            session.scalars(
                select(CoordinatedGroup.group_id).where(CoordinatedGroup.staff_id == member.id)
            )
        )
        if group_id not in groups:
            return "group"
    return None


def authorities_of(session: Session, member: StaffMember) -> list[Authority]:
    """The authorities a staff member acts for (all of them for cluster-wide staff)."""
    query = select(Authority).order_by(Authority.id)
    if member.authority_id is not None:
        query = query.where(Authority.id == member.authority_id)
    return list(session.scalars(query))


def language_of(session: Session, member: StaffMember) -> Language:
    """The language to write to a staff member in (their own choice; Hebrew until they make one)."""
    return Language(member.language) if member.language else DEFAULT_LANGUAGE


def set_language(
    session: Session, *, member: StaffMember, language: Language, actor: str, now: datetime
) -> None:
    """A staff member's language, changed by them (a bot command) or by an administrator."""
    member.language = language
    audit.record(
        session,
        actor=actor,
        action="staff.language",
        at=now,
        staff_id=member.id,
        language=language.value,
    )


def on_duty(session: Session) -> list[StaffMember]:
    """The active administrators and officers: who is told when the service itself is in
    trouble (a provider not answering)."""
    return list(
        session.scalars(
            select(StaffMember)
            .where(
                StaffMember.active.is_(True),
                StaffMember.role.in_((StaffRole.ADMIN, StaffRole.OFFICER)),
            )
            .order_by(StaffMember.id)
        )
    )


# --- the SMS PIN ---------------------------------------------------------------------------------

PIN_ATTEMPTS = 5
PIN_MIN_DIGITS = 6
PIN_MAX_DIGITS = 12
# scrypt's cost: about 16 MiB and a few tens of milliseconds a try (hashlib's memory cap is 32 MiB).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class PinCheck(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"  # this try was the last one, or the PIN was locked already
    UNSET = "unset"  # no PIN was ever set: SMS staff actions are refused


def pin_problem(pin: str) -> str | None:
    """Why a PIN is refused (a catalog key), or None. Digits only so any phone can type it."""
    if not pin.isdigit() or not PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS:
        return "staff.pin.rule"
    if len(set(pin)) == 1 or pin in "01234567890123456789" or pin in "98765432109876543210":
        return "staff.pin.rule"
    return None


def generate_pin() -> str:
    """A random PIN that passes :func:`pin_problem`."""
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(8))
        if pin_problem(pin) is None:
            return pin


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def hash_pin(pin: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(pin, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    encoded = (base64.b64encode(part).decode() for part in (salt, digest))
    return "$".join(("scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), *encoded))


def _pin_matches(stored: str, pin: str) -> bool:
    scheme, n, r, p, salt, digest = stored.split("$")
    if scheme != "scrypt":
        return False
    actual = _scrypt(pin, base64.b64decode(salt), int(n), int(r), int(p))
    return hmac.compare_digest(actual, base64.b64decode(digest))


def set_pin(
    session: Session, *, member: StaffMember, pin: str, actor: str, now: datetime | None = None
) -> None:
    """Set (or reset) a member's SMS PIN; unlocks it and ends any SMS session. Audited."""
    problem = pin_problem(pin)
    if problem is not None:
        raise RegistryError(problem, low=PIN_MIN_DIGITS, high=PIN_MAX_DIGITS)
    member.pin_hash = hash_pin(pin)
    member.pin_failures = 0
    member.pin_locked_at = None
    member.sms_session_until = None
    audit.record(
        session, actor=actor, action="staff.pin.set", at=now or utcnow(), staff_id=member.id
    )


def check_pin(
    session: Session, *, member: StaffMember, pin: str, actor: str, now: datetime
) -> PinCheck:
    """Check one PIN try. Every wrong try is audited; the fifth locks the PIN until it is reset."""
    if member.pin_hash is None:
        return PinCheck.UNSET
    if member.pin_locked_at is not None:
        audit.record(session, actor=actor, action="staff.pin.refused", at=now, staff_id=member.id)
        return PinCheck.LOCKED
    if _pin_matches(member.pin_hash, pin.strip()):
        member.pin_failures = 0
        audit.record(session, actor=actor, action="staff.pin.ok", at=now, staff_id=member.id)
        return PinCheck.OK
    member.pin_failures = (member.pin_failures or 0) + 1
    audit.record(
        session,
        actor=actor,
        action="staff.pin.failed",
        at=now,
        staff_id=member.id,
        failures=member.pin_failures,
    )
    if member.pin_failures < PIN_ATTEMPTS:
        return PinCheck.WRONG
    member.pin_locked_at = now
    member.sms_session_until = None
    audit.record(session, actor=actor, action="staff.pin.locked", at=now, staff_id=member.id)
    return PinCheck.LOCKED


def pin_locked(member: StaffMember) -> bool:
    return member.pin_locked_at is not None
