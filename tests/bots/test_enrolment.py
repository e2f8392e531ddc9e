"""The registry side of the dialog (in-memory SQLite)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bots import enrolment
from config.profile import Profile
from registry.models import Authority, Channel, Group, GroupKind, Person, PersonStatus, Source


def test_nearest_zone_crosses_authorities(profile: Profile) -> None:
    assert enrolment.nearest_zone(profile, 31.6101, 34.7701) == ("kiryat-tamar", "kt-center")
    assert enrolment.nearest_zone(profile, 31.5901, 34.8349) == ("emek-tamar", "et-tel-zaytun")


def test_person_at_ignores_the_erased(memory_sessions: sessionmaker[Session]) -> None:
    with memory_sessions() as session:
        authority = session.query(Authority).first()
        assert authority is not None
        gone = Person(
            authority_id=authority.id,
            source=Source.SMS,
            phone="+972525551234",
            status=PersonStatus.ERASED,
        )
        here = Person(authority_id=authority.id, source=Source.TELEGRAM, telegram_chat_id=42)
        session.add_all([gone, here])
        session.flush()
        assert enrolment.person_at(session, Channel.SMS, "+972525551234") is None
        assert enrolment.person_at(session, Channel.TELEGRAM, "42") is here


def test_group_codes_are_cleaned_and_joining_twice_is_once(
    memory_sessions: sessionmaker[Session],
) -> None:
    with memory_sessions() as session:
        authority = session.query(Authority).first()
        assert authority is not None
        group = Group(
            authority_id=authority.id,
            kind=GroupKind.YOUTH_MOVEMENT,
            name="Scouts",
            join_code="sc-12",
        )
        person = Person(authority_id=authority.id, source=Source.TELEGRAM)
        session.add_all([group, person])
        session.flush()
        assert enrolment.find_group(session, " \u200fsc-12 ") is group
        assert enrolment.find_group(session, "") is None
        enrolment.join_group(session, person, group)
        enrolment.join_group(session, person, group)
