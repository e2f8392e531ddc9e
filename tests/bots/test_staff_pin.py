"""The PIN gate in front of staff SMS: a spoofed sender number starts nothing, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog
from config.i18n import t
from dispatch.models import Campaign, CampaignMode, InboundMessage, OutboxMessage
from registry.models import AuditEntry, Channel
from registry.staff import PIN_ATTEMPTS, StaffMember, set_pin
from tests.bots.chat import Chat, Clock
from tests.bots.test_staff_commands import (
    OFFICER_CHAT,
    OFFICER_PHONE,
    PIN,
    PIN_ASK,
    town,  # noqa: F401  (the fixture these tests use)
)

pytestmark = pytest.mark.usefixtures("town")

WORD = t("he", "officer.confirm.word")


def _sms(sessions: sessionmaker[Session], dialog: Dialog, clock: Clock) -> Chat:
    return Chat(sessions, dialog, Channel.SMS, OFFICER_PHONE, clock)


def _campaigns(sessions: sessionmaker[Session]) -> list[Campaign]:
    with sessions() as session:
        return list(session.scalars(select(Campaign)))


def test_six_spoofed_sms_from_an_officers_number_start_nothing(
    sessions: sessionmaker[Session], dialog: Dialog, clock: Clock
) -> None:
    spoofer = _sms(sessions, dialog, clock)
    replies = [spoofer.send(text) for text in ("/emergency", "1", "2", "Evacuate now", "1", WORD)]
    assert _campaigns(sessions) == []
    assert replies[0] == [PIN_ASK]  # the command is kept, waiting for the PIN
    assert all(
        reply == [t("he", "staff.pin.wrong", left=PIN_ATTEMPTS - n)]
        for n, reply in enumerate(replies[1:5], start=1)
    )
    assert replies[5] == [t("he", "staff.pin.locked")]  # the fifth wrong PIN locked it
    with sessions() as session:
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
        member = session.scalars(
            select(StaffMember).where(StaffMember.phone == OFFICER_PHONE)
        ).one()
        notice = session.scalars(
            select(OutboxMessage.text).where(OutboxMessage.address == OFFICER_CHAT)
        ).all()
    assert actions.count("staff.pin.failed") == PIN_ATTEMPTS
    assert "staff.pin.locked" in actions and "campaign.start" not in actions
    assert member.pin_locked_at is not None
    # Told on the channel the spoofer does not hold.
    assert notice == [t("he", "staff.pin.locked_elsewhere")]
    # Locked: even the right PIN does nothing now, until an administrator sets a new one.
    assert spoofer.send("/drill") == [t("he", "staff.pin.locked")]
    assert spoofer.send(PIN) != [PIN_ASK]
    assert _campaigns(sessions) == []


def test_the_officer_with_the_pin_runs_an_emergency_and_is_asked_again_to_send(
    sessions: sessionmaker[Session], dialog: Dialog, clock: Clock
) -> None:
    officer = _sms(sessions, dialog, clock)
    assert officer.send("/emergency") == [PIN_ASK]
    audience = officer.send(PIN)  # the kept command is carried out
    assert audience and t("he", "officer.audience.ask") in audience[0]
    officer.send("1")
    officer.send("1")  # standard check-in: the confirmation, inside the session: no PIN
    again = officer.send("1")
    assert WORD in again[0]
    assert officer.send(WORD) == [PIN_ASK]  # sending always asks, even inside a session
    assert _campaigns(sessions) == []
    started = officer.send(PIN)
    campaigns = _campaigns(sessions)
    assert [c.mode for c in campaigns] == [CampaignMode.EMERGENCY]
    assert f"{campaigns[0].id}" in started[0]
    with sessions() as session:
        payloads = [str(p) for p in session.scalars(select(InboundMessage.payload))]
    assert not any(PIN in payload for payload in payloads)  # the PIN is kept nowhere
    assert officer.send("/close") == [PIN_ASK]  # closing too


def test_the_session_ends_and_the_pin_is_asked_again(
    sessions: sessionmaker[Session], dialog: Dialog, clock: Clock
) -> None:
    officer = _sms(sessions, dialog, clock)
    officer.send("/status")
    assert officer.send(PIN) != [PIN_ASK]
    assert officer.send("/status") != [PIN_ASK]  # within the 15 minutes
    clock.now += timedelta(minutes=16)
    assert officer.send("/status") == [PIN_ASK]


def test_a_late_pin_does_not_carry_out_an_old_confirmation(
    sessions: sessionmaker[Session], dialog: Dialog, clock: Clock
) -> None:
    officer = _sms(sessions, dialog, clock)
    officer.send("/drill")
    officer.send(PIN)
    officer.send("1")
    officer.send("1")
    assert officer.send("1") == [PIN_ASK]
    clock.now += timedelta(hours=2)
    officer.send(PIN)
    assert _campaigns(sessions) == []


def test_staff_without_a_pin_are_refused_by_sms_but_not_on_telegram(
    sessions: sessionmaker[Session], dialog: Dialog, clock: Clock
) -> None:
    with sessions() as session:
        member = session.scalars(
            select(StaffMember).where(StaffMember.phone == OFFICER_PHONE)
        ).one()
        member.pin_hash = None
        session.commit()
    assert _sms(sessions, dialog, clock).send("/drill") == [t("he", "staff.pin.unset")]
    telegram = Chat(sessions, dialog, Channel.TELEGRAM, OFFICER_CHAT, clock)
    assert t("he", "officer.audience.ask") in telegram.send("/drill")[0]


def test_a_reset_pin_unlocks(sessions: sessionmaker[Session], dialog: Dialog, clock: Clock) -> None:
    officer = _sms(sessions, dialog, clock)
    officer.send("/status")
    for _ in range(PIN_ATTEMPTS):
        officer.send("000000")
    with sessions() as session:
        member = session.scalars(
            select(StaffMember).where(StaffMember.phone == OFFICER_PHONE)
        ).one()
        assert member.pin_hash is not None and PIN not in member.pin_hash
        set_pin(session, member=member, pin="739164", actor="test")
        session.commit()
    assert officer.send("/status") == [PIN_ASK]
    assert officer.send("739164") != [t("he", "staff.pin.locked")]


def test_a_new_telegram_chat_must_verify_again(
    sessions: sessionmaker[Session], dialog: Dialog, clock: Clock
) -> None:
    refusal = t("he", "staff.not_authorized")
    old = Chat(sessions, dialog, Channel.TELEGRAM, OFFICER_CHAT, clock)
    new = Chat(sessions, dialog, Channel.TELEGRAM, "900002", clock)
    assert refusal in new.send("/drill")[0]
    assert new.send(contact=OFFICER_PHONE) == [t("he", "officer.verified")]
    assert refusal not in new.send("/drill")[0]
    assert refusal in old.send("/drill")[0]  # the old chat is no longer theirs
