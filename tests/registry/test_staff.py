"""Who may do what: staff commands only from a verified channel, for their own authority."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.errors import RegistryError
from registry.models import AuditEntry, Authority, Channel, Group, GroupKind
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import (
    NotAuthorized,
    StaffAction,
    StaffRole,
    add_staff,
    authorize,
    remove_staff,
    verify_telegram,
)

OFFICER = normalise_phone("052-555-1000", region="IL")
COORDINATOR = normalise_phone("052-555-2000", region="IL")
STRANGER = normalise_phone("052-555-3000", region="IL")


@pytest.fixture
def group(session: Session, authority: Authority) -> Group:
    g = Group(
        authority_id=authority.id,
        kind=GroupKind.YOUTH_MOVEMENT,
        name="Scouts",
        join_code="scouts-kt",
    )
    session.add(g)
    session.flush()
    return g


CASES = [
    # (who, channel, action, authority, allowed)
    ("officer", Channel.SMS, StaffAction.START_CAMPAIGN, "kiryat-tamar", True),
    ("officer", Channel.SMS, StaffAction.START_CAMPAIGN, "emek-tamar", False),
    ("officer", Channel.SMS, StaffAction.MANAGE_STAFF, "kiryat-tamar", False),
    ("officer", Channel.TELEGRAM, StaffAction.START_CAMPAIGN, "kiryat-tamar", True),
    ("coordinator", Channel.SMS, StaffAction.START_CAMPAIGN, "kiryat-tamar", False),
    ("coordinator", Channel.SMS, StaffAction.MANAGE_GROUP_TASKS, "kiryat-tamar", True),
    ("stranger", Channel.SMS, StaffAction.VIEW_CAMPAIGN, "kiryat-tamar", False),
    ("unverified-telegram", Channel.TELEGRAM, StaffAction.VIEW_CAMPAIGN, "kiryat-tamar", False),
]


@pytest.mark.parametrize(("who", "channel", "action", "where", "allowed"), CASES)
def test_authorization_table(
    session: Session,
    directory: Directory,
    authority: Authority,
    group: Group,
    who: str,
    channel: Channel,
    action: StaffAction,
    where: str,
    allowed: bool,
) -> None:
    add_staff(
        session,
        name="Officer",
        phone=OFFICER,
        authority=authority,
        role=StaffRole.OFFICER,
        actor="t",
    )
    add_staff(
        session,
        name="Coord",
        phone=COORDINATOR,
        authority=authority,
        role=StaffRole.COORDINATOR,
        groups=[group],
        actor="t",
    )
    verify_telegram(session, phone=OFFICER, chat_id=9001)
    address = {
        ("officer", Channel.SMS): OFFICER.e164,
        ("officer", Channel.TELEGRAM): "9001",
        ("coordinator", Channel.SMS): COORDINATOR.e164,
        ("stranger", Channel.SMS): STRANGER.e164,
        ("unverified-telegram", Channel.TELEGRAM): "9002",
    }[(who, channel)]
    target = directory.authorities[where]
    before = len(list(session.scalars(select(AuditEntry))))
    if allowed:
        member = authorize(
            session,
            channel=channel,
            address=address,
            action=action,
            authority_id=target.id,
            group_id=group.id,
        )
        assert member.active
    else:
        with pytest.raises(NotAuthorized):
            authorize(
                session,
                channel=channel,
                address=address,
                action=action,
                authority_id=target.id,
                group_id=group.id,
            )
    entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert len(entries) == before + 1, "every attempt is audited"
    assert entries[-1].action == (action.value if allowed else "staff.refused")


def test_coordinator_only_for_own_group(
    session: Session, authority: Authority, group: Group
) -> None:
    other = Group(
        authority_id=authority.id, kind=GroupKind.YOUTH_MOVEMENT, name="Other", join_code="other-kt"
    )
    session.add(other)
    session.flush()
    add_staff(
        session,
        name="Coord",
        phone=COORDINATOR,
        authority=authority,
        role=StaffRole.COORDINATOR,
        groups=[group],
        actor="t",
    )
    with pytest.raises(NotAuthorized):
        authorize(
            session,
            channel=Channel.SMS,
            address=COORDINATOR.e164,
            action=StaffAction.MANAGE_GROUP_TASKS,
            authority_id=authority.id,
            group_id=other.id,
        )


def test_cluster_admin_acts_everywhere(session: Session, directory: Directory) -> None:
    add_staff(session, name="Admin", phone=OFFICER, authority=None, role=StaffRole.ADMIN, actor="t")
    for authority in directory.authorities.values():
        authorize(
            session,
            channel=Channel.SMS,
            address=OFFICER.e164,
            action=StaffAction.MANAGE_STAFF,
            authority_id=authority.id,
        )


def test_rules_for_adding_staff(session: Session, authority: Authority) -> None:
    with pytest.raises(RegistryError, match="group"):
        add_staff(
            session,
            name="C",
            phone=COORDINATOR,
            authority=authority,
            role=StaffRole.COORDINATOR,
            actor="t",
        )
    with pytest.raises(RegistryError, match="cluster"):
        add_staff(
            session, name="O", phone=OFFICER, authority=None, role=StaffRole.OFFICER, actor="t"
        )


def test_removed_staff_lose_access(session: Session, authority: Authority) -> None:
    add_staff(
        session,
        name="Officer",
        phone=OFFICER,
        authority=authority,
        role=StaffRole.OFFICER,
        actor="t",
    )
    verify_telegram(session, phone=OFFICER, chat_id=9001)
    assert remove_staff(session, phone=OFFICER, actor="t")
    assert not remove_staff(session, phone=OFFICER, actor="t")
    for channel, address in ((Channel.SMS, OFFICER.e164), (Channel.TELEGRAM, "9001")):
        with pytest.raises(NotAuthorized):
            authorize(
                session,
                channel=channel,
                address=address,
                action=StaffAction.VIEW_CAMPAIGN,
                authority_id=authority.id,
            )
