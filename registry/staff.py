"""Municipal staff: administrators, emergency officers and group coordinators, and what each may do.

A staff command is honoured only from a verified channel of that staff member (their phone, whose
SMS arrive signed by Twilio, or a Telegram chat verified by sharing that phone's contact), only for
their own authority (or every authority of the cluster for cluster-wide staff), and every attempt,
allowed or refused, is written to the audit log.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from registry import audit
from registry.db import Base, UTCDateTime, utcnow
from registry.errors import RegistryError
from registry.models import Authority, Channel, Group, enum_type
from registry.people import MAX_NAME, clean_text
from registry.phones import Phone


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


ALLOWED: dict[StaffRole, frozenset[StaffAction]] = {
    StaffRole.ADMIN: frozenset(StaffAction),
    StaffRole.OFFICER: frozenset(StaffAction) - {StaffAction.MANAGE_STAFF},
    StaffRole.COORDINATOR: frozenset({StaffAction.MANAGE_GROUP_TASKS}),
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
    actor: str,
    now: datetime | None = None,
) -> StaffMember:
    """Register (or re-activate and update) a staff member, keyed by phone."""
    if role == StaffRole.COORDINATOR and not groups:
        raise RegistryError("staff.coordinator_needs_group")
    if authority is None and role != StaffRole.ADMIN:
        raise RegistryError("staff.cluster_only_admin")
    for group in groups or []:
        if authority is not None and group.authority_id != authority.id:
            raise RegistryError("staff.group_elsewhere", group=group.join_code)
    member = session.scalar(select(StaffMember).where(StaffMember.phone == phone.e164))
    if member is None:
        member = StaffMember(phone=phone.e164, name="", role=role)
        session.add(member)
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
    actor = f"{channel.value}:staff:{member.id}" if member else f"{channel.value}:unknown"
    audit.record(
        session,
        actor=actor,
        action="staff.refused" if reason else action.value,
        at=now,
        authority_id=authority_id,
        reason=reason,
    )
    if reason:
        raise NotAuthorized("staff.not_authorized")
    assert member is not None
    return member


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
