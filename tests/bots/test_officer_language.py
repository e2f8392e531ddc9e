"""Staff have a language of their own: chosen with /language (a button, a number in any script,
or the language's name), kept on the staff row, and used for every reply, help alert and notice
to them, whatever language their conversation or the resident speaks. On both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog
from bots.officers import tell_officers
from config.i18n import t
from config.languages import Language
from dispatch.models import Alert, OutboxMessage
from dispatch.outages import Health
from dispatch.outages import tell_officers as tell_about_channels
from dispatch.reports import OUTCOMES
from registry.models import AuditEntry, Channel
from registry.profile_sync import Directory
from registry.staff import StaffMember
from tests.bots.chat import Chat, Clock
from tests.bots.test_help_loop import (
    AVI_PHONE,
    DANA_CHAT,
    DANA_PHONE,
    RESIDENT_PHONE,
    _to,
    _town,
    as_staff,
)


def _language_of(sessions: sessionmaker[Session], phone: str) -> Language:
    with sessions() as session:
        return session.scalars(select(StaffMember.language).where(StaffMember.phone == phone)).one()


def test_a_new_staff_member_reads_hebrew_and_changes_it_with_a_button(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog
) -> None:
    clock = Clock()
    _town(sessions, directory, Language.RU, clock)
    dana = Chat(sessions, dialog, Channel.TELEGRAM, DANA_CHAT, clock)
    assert _language_of(sessions, DANA_PHONE) == Language.HE
    asked = dana.send("/language")
    assert asked == [t(Language.HE, "officer.desk.language_ask")]
    assert [row[0]["data"] for row in dana.last_buttons() or []][:1] == ["b:officer.language:he"]
    assert dana.send(button="officer.language:ar") == [t(Language.AR, "officer.desk.language_set")]
    assert _language_of(sessions, DANA_PHONE) == Language.AR
    # Everything after is in Arabic: her commands' answers, and the push of a Russian
    # speaker's call for help.
    assert dana.send("/status")[0].startswith(
        t(Language.AR, "officer.accounted.status", **_HEAD)[:6]
    )
    Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock).send("помощь")
    with sessions() as session:
        alert = session.scalars(select(Alert)).one()
    pushed = [m for m in _to(sessions, DANA_CHAT) if m.kind == "alert"]
    assert pushed[0].text.startswith(
        t(
            Language.AR, f"dispatch.alert.push_{alert.kind.value}", **dict.fromkeys(_PUSH, "\0")
        ).split("\0")[0]
    )
    assert pushed[0].buttons == [
        [{"text": t(Language.AR, "dispatch.alert.take"), "data": f"officer.alert:{alert.id}:take"}]
    ]
    with sessions() as session:
        changed = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "staff.language")
        ).one()
        assert changed.detail["language"] == "ar"


_PUSH = ("alert", "name", "place", "phone")
_HEAD = dict.fromkeys(
    ("campaign", "what", "state", "people", "delivered", *OUTCOMES), 1
) | dict.fromkeys(("open", "done", "failed"), 0)


@pytest.mark.parametrize("answer", ["2", "٢", "العربية", "ar"])
def test_by_sms_the_language_is_chosen_by_its_number_in_any_script_or_its_name(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, answer: str
) -> None:
    clock = Clock()
    _town(sessions, directory, Language.HE, clock)
    avi = Chat(sessions, dialog, Channel.SMS, AVI_PHONE, clock)
    asked = as_staff(avi, "/language")
    assert asked[0].startswith(t(Language.HE, "officer.desk.language_ask"))
    assert "\n2 العربية" in asked[0]
    assert avi.send(answer) == [t(Language.AR, "officer.desk.language_set")]
    assert _language_of(sessions, AVI_PHONE) == Language.AR
    # The PIN question of the next SMS session is in Arabic too.
    clock.now = clock.now.replace(hour=clock.now.hour + 2)
    assert avi.send("/status") == [t(Language.AR, "staff.pin.ask")]


def test_a_resident_cannot_use_the_staff_language_command(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog
) -> None:
    clock = Clock()
    _town(sessions, directory, Language.HE, clock)
    resident = Chat(sessions, dialog, Channel.SMS, RESIDENT_PHONE, clock)
    replies = resident.send("/language")
    # The bot's own language question (the resident's), never the staff one.
    assert t(Language.HE, "officer.desk.language_ask") not in replies
    assert t(Language.HE, "staff.not_authorized") not in replies


def test_notices_to_officers_are_in_their_own_language(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog
) -> None:
    clock = Clock()
    _town(sessions, directory, Language.HE, clock)
    with sessions() as session:
        member = session.scalars(select(StaffMember).where(StaffMember.phone == AVI_PHONE)).one()
        member.language = Language.EN
        session.commit()
    with sessions() as session:
        tell_officers(session, key="drained", now=clock.now, count=3)
        tell_about_channels(
            session,
            channel=Channel.TELEGRAM,
            health=Health.DOWN,
            ways=[Channel.SMS, Channel.TELEGRAM],
            now=clock.now,
        )
        session.commit()
    with sessions() as session:
        to_avi = list(
            session.scalars(select(OutboxMessage.text).where(OutboxMessage.address == AVI_PHONE))
        )
        to_dana = list(
            session.scalars(select(OutboxMessage.text).where(OutboxMessage.address == DANA_CHAT))
        )
    assert t(Language.EN, "officer.outage.drained", count=3) in to_avi
    assert any(text.startswith("Hosen: Telegram") for text in to_avi), to_avi
    assert t(Language.HE, "officer.outage.drained", count=3) in to_dana
