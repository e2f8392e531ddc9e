"""A coordinator lists their group's members and takes one out by SMS (numbers, with the PIN),
and may not touch another group."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog
from config.i18n import t
from registry import groups
from registry.models import (
    Authority,
    Channel,
    Group,
    GroupKind,
    GroupMember,
    Person,
    PhoneKind,
    Source,
)
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import StaffMember, set_pin
from tests.bots.chat import Clock
from tests.bots.test_staff_commands import PIN, REFUSAL, StaffChat

COORDINATOR = "+972525557000"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def setup(sessions: sessionmaker[Session], directory: Directory) -> tuple[int, int, int]:
    with sessions() as session:
        authority = session.get(Authority, directory.authorities["kiryat-tamar"].id)
        assert authority is not None
        mine, _ = groups.save_group(
            session, authority=authority, name="Scouts", kind=GroupKind.YOUTH_MOVEMENT, actor="t"
        )
        other, _ = groups.save_group(
            session, authority=authority, name="Other", kind=GroupKind.OTHER, actor="t"
        )
        groups.add_coordinator(
            session,
            group=mine,
            name="Amit",
            phone=normalise_phone(COORDINATOR, region="IL"),
            birth_year=1985,
            actor="t",
            now=NOW,
        )
        noa = Person(
            authority_id=authority.id,
            name="Noa",
            phone="+972525557301",
            phone_kind=PhoneKind.MOBILE,
            source=Source.IMPORT,
            birth_year=2011,
        )
        session.add(noa)
        session.flush()
        groups.add_member(session, group=mine, person=noa, actor="t")
        groups.add_member(session, group=other, person=noa, actor="t")
        for member in session.scalars(select(StaffMember)):
            set_pin(session, member=member, pin=PIN, actor="t")
        session.commit()
        return mine.id, other.id, noa.id


def test_a_coordinator_takes_a_member_out_by_sms(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    mine, other, noa = setup(sessions, directory)
    chat = StaffChat(sessions, dialog, Channel.SMS, COORDINATOR, clock)
    replies = chat.send("/members")
    head = t("he", "officer.members.head", group="Scouts", count=2)
    assert replies[0].startswith(head)
    assert "1 ★ Amit" in replies[0] and "2 Noa" in replies[0]
    replies = chat.send("2")
    assert replies[0].startswith(
        t("he", "officer.members.confirm", name="Noa", group="Scouts", code=_code(sessions, mine))
    )
    replies = chat.send("1")
    assert replies == [t("he", "officer.members.removed", name="Noa", group="Scouts")]
    with sessions() as session:
        assert session.get(GroupMember, (mine, noa)) is None
        assert session.get(GroupMember, (other, noa)) is not None  # not their group: untouched

    # A number that is not on the list, or "2" (keep) at the confirmation, changes nothing.
    chat.send("/members")
    assert chat.send("7") == [t("he", "officer.members.gone")]
    chat.send("/members")
    chat.send("1")
    assert chat.send("2") == [t("he", "officer.members.kept")]

    stranger = StaffChat(sessions, dialog, Channel.SMS, "+972525559999", clock)
    assert stranger.send("/members")[0].startswith(REFUSAL)


def _code(sessions: sessionmaker[Session], group_id: int) -> str:
    with sessions() as session:
        group = session.get(Group, group_id)
        assert group is not None
        return group.join_code
