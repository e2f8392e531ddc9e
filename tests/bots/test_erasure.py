"""Erasure leaves nothing behind: after a person's own deletion, or staff's ``hosen people
erase``, a dump of every column of every table holds none of their values. Both databases."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog
from bots.retention import forget_abandoned_conversations
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.models import Answer, CampaignRecipient, InboundMessage, OutboxMessage, OutboxStatus
from dispatch.retention import Retention, purge
from hosen.cli import main
from registry.db import Base, unit_of_work, utcnow
from registry.digests import sender_key
from registry.models import AuditEntry, Authority, Channel, Person, PersonStatus
from tests.bots.chat import Chat

PHONE = "+972525551234"
NAME = "מרים אבוקסיס"
CONTACT = "רותמה זילברשטיין"
CONTACT_PHONE = "054-555-0177"
FREE_TEXT = "מרכז החמצן שלי התקלקל"
SIGN_UP = [
    "הצטרפות",
    "2",  # a resident who may need help
    NAME,
    "1",  # Kiryat Tamar
    "2",  # Old Quarter
    "1941",
    "1 2 4",  # lives alone, mobility, powered medical equipment
    CONTACT,
    CONTACT_PHONE,
    "1",  # consent
    "1",  # health-data consent
    "אישור",
]


def _theirs() -> list[str]:
    return [
        NAME,
        "אבוקסיס",
        PHONE,
        "525551234",
        CONTACT,
        "זילברשטיין",
        "545550177",
        "555-0177",
        FREE_TEXT,
        "החמצן",
        sender_key(Channel.SMS, PHONE),
        hashlib.sha256(f"sms:{PHONE}".encode()).hexdigest()[:32],  # the old, unkeyed digest
    ]


def _dump(sessions: sessionmaker[Session]) -> Iterator[tuple[str, str, str]]:
    """Every value of every column of every table, as text."""
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                for column, value in row.items():
                    text = json.dumps(value, ensure_ascii=False, default=str)
                    yield table.name, column, text


def _leftovers(sessions: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    values = _theirs()
    return [
        (table, column, value)
        for table, column, text in _dump(sessions)
        for value in values
        if value in text
    ]


@pytest.fixture
def registered(sms_chat: Chat, sessions: sessionmaker[Session], authority: Authority) -> Chat:
    """She signs up by SMS, gets a drill check-in and answers it in her own words."""
    sms_chat.clock.now = utcnow()  # the outbox stamps its rows with the real time
    for text in SIGN_UP:
        sms_chat.send(text)
    with unit_of_work(sessions) as session:
        fresh = session.get(Authority, authority.id)
        assert fresh is not None
        start_drill_checkin(
            session,
            authority=fresh,
            audience=Audience(residents_only=True),
            started_by="test",
            now=sms_chat.clock.now,
        )
        session.execute(update(OutboxMessage).values(status=OutboxStatus.SENT))
    sms_chat.send(FREE_TEXT)
    with sessions() as session:
        answer = session.scalars(select(CampaignRecipient)).one()
        assert answer.answer == Answer.FREE_TEXT and answer.answer_text == FREE_TEXT
    leftovers = {value for _, _, value in _leftovers(sessions)}
    assert {NAME, PHONE, CONTACT, FREE_TEXT} <= leftovers  # the dump does see them while kept
    return sms_chat


def test_her_own_deletion_leaves_none_of_her_values(
    registered: Chat, sessions: sessionmaker[Session]
) -> None:
    registered.send("מחיקה")
    registered.send("כן")
    with unit_of_work(sessions) as session:
        # The worker sends the goodbye; the next sweep empties it (she is erased).
        session.execute(update(OutboxMessage).values(status=OutboxStatus.SENT))
        purge(session, now=registered.clock.now)
    assert _leftovers(sessions) == []
    with sessions() as session:
        person = session.scalars(select(Person)).one()
        assert person.status == PersonStatus.ERASED


def test_staff_erasure_by_the_command_leaves_none_of_her_values(
    registered: Chat,
    sessions: sessionmaker[Session],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HOSEN_DATABASE_URL", database_url)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["people", "erase", "0525551234"]) == 1  # asked, and refused: nothing happens
    assert {NAME, PHONE} <= {value for _, _, value in _leftovers(sessions)}
    assert main(["people", "erase", "0525551234", "--yes"]) == 0
    assert "erased" in capsys.readouterr().out
    assert _leftovers(sessions) == []
    with sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "person.erase")).one()
        assert entry.actor.startswith("cli:")
        # Nothing is left to be sent to her either.
        assert (
            session.scalars(
                select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.QUEUED)
            ).all()
            == []
        )


def test_retention_empties_old_payloads_and_texts_and_keeps_recent_ones(
    registered: Chat, sessions: sessionmaker[Session]
) -> None:
    now = registered.clock.now
    with unit_of_work(sessions) as session:
        assert purge(session, now=now + timedelta(days=29)) == 0
    with unit_of_work(sessions) as session:
        assert purge(session, now=now + timedelta(days=31)) > 0
    with sessions() as session:
        assert all(p == {} for p in session.scalars(select(InboundMessage.payload)))
        finished = session.scalars(
            select(OutboxMessage.text).where(OutboxMessage.status == OutboxStatus.SENT)
        ).all()
        assert finished and all(text == "" for text in finished)


def test_a_sign_up_left_half_way_is_forgotten_after_retention(
    registered: Chat, sessions: sessionmaker[Session], dialog: Dialog
) -> None:
    abandoned = Chat(sessions, dialog, Channel.SMS, "+972525559876", registered.clock)
    for text in SIGN_UP[:8]:  # name, place, year, needs, the emergency contact's name: then quiet
        abandoned.send(text.replace(NAME, "Dalia Ohana").replace(CONTACT, "Yossi Ohana"))
    assert abandoned.conversation() is not None
    retention = Retention(steps=(forget_abandoned_conversations,))
    now = registered.clock.now
    with unit_of_work(sessions) as session:
        purge(session, now=now + timedelta(days=29), retention=retention)
    assert abandoned.conversation() is not None
    with unit_of_work(sessions) as session:
        purge(session, now=now + timedelta(days=31), retention=retention)
    assert abandoned.conversation() is None
    assert registered.conversation() is not None  # a registered person's stays
    dump = " ".join(text for _, _, text in _dump(sessions))
    assert "Yossi Ohana" not in dump and "Dalia Ohana" not in dump
