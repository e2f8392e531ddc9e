"""The help loop end to end, per channel: the real ``hosen serve`` app, python-telegram-bot and
twilio clients against the loopback fakes. A check-in goes out, the resident answers with the
single word for help, the officer on duty gets a push and takes it (a button, or "1" by SMS), the
buddy accepts, and the resident is told the buddy's name; a second call for help that nobody
takes climbs to the next officer and then to all of them: its timer is moved back in the database
by the authority's climb time and the scheduler's sweep runs (nothing sleeps)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.campaigns import Audience, start_campaign
from dispatch.models import Alert, AlertState, CampaignKind, CampaignMode, Task
from dispatch.scheduler import sweep_all
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry.db import unit_of_work, utcnow
from registry.models import (
    AssignmentStatus,
    Authority,
    BuddyAssignment,
    Channel,
    Person,
    PhoneKind,
    Source,
)
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import StaffRole, add_staff, set_pin, verify_telegram
from tests.bots.test_e2e import Service, _free_port, run, service_settings, sms, start_service, tg

pytestmark = pytest.mark.e2e
ZONE = ZoneInfo("Asia/Jerusalem")
OFFICER_PIN = "582039"  # staff actions by SMS need the member's PIN
OFFICERS = (
    ("Dana Levi", "+972525550301"),
    ("Avi Peretz", "+972525550302"),
    ("Rina Katz", "+972525550303"),
)


def _setup(
    service: Service,
    *,
    residents: list[dict[str, Any]],
    buddy: dict[str, Any],
    officer_chats: dict[str, int],
) -> dict[str, int]:
    """Residents with one buddy, three officers (some verified on Telegram), a check-in started."""
    ids: dict[str, int] = {}
    with unit_of_work(service.ctx.sessions) as session:
        authority = session.scalars(select(Authority).where(Authority.code == "kiryat-tamar")).one()
        helper = Person(
            authority_id=authority.id,
            source=Source.STAFF,
            phone_kind=PhoneKind.MOBILE,
            is_volunteer=True,
            birth_year=1980,
            **buddy,
        )
        session.add(helper)
        for n, fields in enumerate(residents):
            resident = Person(
                authority_id=authority.id,
                source=Source.STAFF,
                phone_kind=PhoneKind.MOBILE,
                needs_help=True,
                address="Herzl 5",
                **fields,
            )
            session.add(resident)
            session.flush()
            ids[f"resident{n}"] = resident.id
            session.add(
                BuddyAssignment(
                    resident_id=resident.id,
                    volunteer_id=helper.id,
                    rank=1,
                    status=AssignmentStatus.CONFIRMED,
                )
            )
        for name, phone in OFFICERS:
            member = add_staff(
                session,
                name=name,
                phone=normalise_phone(phone, region="IL"),
                authority=authority,
                role=StaffRole.OFFICER,
                actor="test",
            )
            set_pin(session, member=member, pin=OFFICER_PIN, actor="test")
            if name in officer_chats:
                verify_telegram(
                    session, phone=normalise_phone(phone, region="IL"), chat_id=officer_chats[name]
                )
        start_campaign(
            session,
            authority=authority,
            kind=CampaignKind.CHECKIN,
            mode=CampaignMode.DRILL,
            audience=Audience(residents_only=True),
            started_by="test",
            now=utcnow(),
        )
    return ids


def _alert_of(service: Service, person_id: int) -> Alert:
    with service.ctx.sessions() as session:
        return session.scalars(select(Alert).where(Alert.person_id == person_id)).one()


def _task_of(service: Service, person_id: int) -> Task:
    with service.ctx.sessions() as session:
        return session.scalars(select(Task).where(Task.resident_id == person_id)).one()


async def _climb(service: Service) -> None:
    """The climb's time passes: the open alerts' timers are moved back by the authority's
    ``alert_climb_after`` (time moved in the database, as the worker and the processor keep
    their own clocks), then the scheduler's sweep runs and the worker sends what it queued."""
    now = utcnow()
    with unit_of_work(service.ctx.sessions) as session:
        climb = timedelta(
            seconds=session.scalars(
                select(Authority.alert_climb_after).where(Authority.code == "kiryat-tamar")
            ).one()
        )
        for alert in session.scalars(select(Alert).where(Alert.state == AlertState.OPEN)):
            assert alert.due_at is not None and alert.due_at - now <= climb
            alert.created_at -= climb
            alert.due_at -= climb
    sweep_all(service.ctx.sessions, profile=service.ctx.profile, zone=ZONE, now=now)
    await service.flush()


def test_help_on_telegram_pushed_taken_by_button_buddy_named_and_an_untaken_alert_climbs(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram
) -> None:
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=None, port=port)
    he, ar = Language.HE, Language.AR

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            miriam = fake_telegram.new_user("מרים", language_code="he")
            salma = fake_telegram.new_user("سلمى", language_code="ar")
            yossi = fake_telegram.new_user("Yossi", language_code="he")
            dana = fake_telegram.new_user("Dana", language_code="he")
            avi = fake_telegram.new_user("Avi", language_code="he")
            rina = fake_telegram.new_user("Rina", language_code="he")
            ids = _setup(
                service,
                residents=[
                    dict(
                        name="מרים כהן",
                        language=he,
                        channel=Channel.TELEGRAM,
                        telegram_chat_id=miriam.id,
                    ),
                    dict(
                        name="سلمى خوري",
                        language=ar,
                        channel=Channel.TELEGRAM,
                        telegram_chat_id=salma.id,
                    ),
                ],
                buddy=dict(
                    name="Yossi Amar",
                    language=he,
                    channel=Channel.TELEGRAM,
                    telegram_chat_id=yossi.id,
                ),
                officer_chats={"Dana Levi": dana.id, "Avi Peretz": avi.id, "Rina Katz": rina.id},
            )
            await service.flush()  # the check-ins go out
            assert fake_telegram.last_sent(miriam.id)["text"].startswith(
                t(he, "dispatch.drill_marker")
            )

            # 1. The single word "עזרה": the truth (the team has it), and a push to Dana only.
            told = await tg(service, fake_telegram, miriam.id, fake_telegram.text(miriam, "עזרה"))
            drill = t(he, "dispatch.drill_marker")
            assert [m["text"] for m in told] == [f"{drill} {t(he, 'dispatch.ack.help')}"]
            push = fake_telegram.last_sent(dana.id)
            assert "מרים כהן" in push["text"]
            assert fake_telegram.sent_to(avi.id) == [] and fake_telegram.sent_to(rina.id) == []
            before = len(fake_telegram.sent_to(miriam.id))
            await tg(
                service,
                fake_telegram,
                dana.id,
                fake_telegram.press(dana, push, t(he, "dispatch.alert.take")),
            )
            alert = _alert_of(service, ids["resident0"])
            assert alert.state == AlertState.TAKEN
            # 2. The buddy accepts: Miriam hears Dana's name, then Yossi's.
            task_message = fake_telegram.last_sent(yossi.id)
            await tg(
                service,
                fake_telegram,
                yossi.id,
                fake_telegram.press(yossi, task_message, t(he, "dispatch.task.accept")),
            )
            heard = [m["text"] for m in fake_telegram.sent_to(miriam.id)[before:]]
            assert heard == [
                f"{drill} {t(he, 'dispatch.ack.help_taken', volunteer='Dana')}",
                f"{drill} {t(he, 'dispatch.ack.help_taken', volunteer='Yossi')}",
            ]

            # 3. Salma's help nobody takes: it climbs to Avi, then to all of them.
            told = await tg(service, fake_telegram, salma.id, fake_telegram.text(salma, "مساعدة"))
            assert (
                told[0]["text"] == f"{t(ar, 'dispatch.drill_marker')} {t(ar, 'dispatch.ack.help')}"
            )
            assert len(fake_telegram.sent_to(avi.id)) == 0
            await _climb(service)
            assert len(fake_telegram.sent_to(avi.id)) == 1 and fake_telegram.sent_to(rina.id) == []
            await _climb(service)
            assert len(fake_telegram.sent_to(rina.id)) == 1
            assert len(fake_telegram.sent_to(avi.id)) == 2
            # Rina takes it from the last push; Salma hears her name in Arabic.
            push = fake_telegram.last_sent(rina.id)
            await tg(
                service,
                fake_telegram,
                rina.id,
                fake_telegram.press(rina, push, t(he, "dispatch.alert.take")),
            )
            assert fake_telegram.last_sent(salma.id)["text"] == (
                f"{t(ar, 'dispatch.drill_marker')} {t(ar, 'dispatch.ack.help_taken', volunteer='Rina')}"
            )
            assert _alert_of(service, ids["resident1"]).state == AlertState.TAKEN
        finally:
            await service.stop()

    run(scenario)


def test_help_by_sms_pushed_taken_by_number_buddy_named_and_an_untaken_alert_climbs(
    settings: Settings, directory: Directory, fake_twilio: FakeTwilio
) -> None:
    port = _free_port()
    config = service_settings(settings, telegram=None, twilio=fake_twilio, port=port)
    he, ar = Language.HE, Language.AR
    miriam, salma, yossi = "+972525550401", "+972525550402", "+972525550403"
    dana, avi, rina = (phone for _, phone in OFFICERS)

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            ids = _setup(
                service,
                residents=[
                    dict(name="מרים כהן", language=he, channel=Channel.SMS, phone=miriam),
                    dict(name="سلمى خوري", language=ar, channel=Channel.SMS, phone=salma),
                ],
                buddy=dict(name="Yossi Amar", language=he, channel=Channel.SMS, phone=yossi),
                officer_chats={},
            )
            await service.flush()
            drill = t(he, "dispatch.drill_marker")
            # The carriers' HELP inside a check-in is a help answer, and still gets their text.
            told = await sms(service, fake_twilio, "help", phone=miriam)
            assert told == [f"{drill} {t(he, 'dispatch.ack.help')}", t(he, "bot.help.sms")]
            push = fake_twilio.sent_to(dana)
            assert len(push) == 1 and "\n1 " in str(push[0]["body"])
            assert fake_twilio.sent_to(avi) == []
            # Dana takes it by its number (her first staff SMS asks for her PIN, then is carried
            # out); the buddy accepts by his.
            asked = await sms(service, fake_twilio, "1", phone=dana)
            assert _alert_of(service, ids["resident0"]).state == AlertState.OPEN, asked
            await sms(service, fake_twilio, OFFICER_PIN, phone=dana)
            assert _alert_of(service, ids["resident0"]).state == AlertState.TAKEN
            task = fake_twilio.sent_to(yossi)[-1]["body"]
            assert str(task).endswith(t(he, "dispatch.task.not_reached"))
            before = len(fake_twilio.sent_to(miriam))
            await sms(service, fake_twilio, "1", phone=yossi)
            assert _task_of(service, ids["resident0"]).accepted_at is not None
            heard = [str(m["body"]) for m in fake_twilio.sent_to(miriam)]
            assert heard[-1] == f"{drill} {t(he, 'dispatch.ack.help_taken', volunteer='Yossi')}"
            assert (
                f"{drill} {t(he, 'dispatch.ack.help_taken', volunteer='Dana')}"
                in heard[before - 1 :]
            )

            # Salma's help, in Arabic, nobody takes: Avi, then all.
            told = await sms(service, fake_twilio, "مساعدة", phone=salma)
            assert told == [f"{t(ar, 'dispatch.drill_marker')} {t(ar, 'dispatch.ack.help')}"]
            await _climb(service)
            assert len(fake_twilio.sent_to(avi)) == 1 and fake_twilio.sent_to(rina) == []
            await _climb(service)
            # Dana: her push, the PIN prompt and her "yours", then Salma's first push and the
            # push to all.
            assert len(fake_twilio.sent_to(rina)) == 1 and len(fake_twilio.sent_to(dana)) == 5
            # No medical detail and not the resident's words in any SMS to an officer.
            for phone in (dana, avi, rina):
                for message in fake_twilio.sent_to(phone):
                    assert "مساعدة" not in str(message["body"])
            await sms(service, fake_twilio, "1", phone=avi)
            await sms(service, fake_twilio, OFFICER_PIN, phone=avi)
            assert str(fake_twilio.sent_to(salma)[-1]["body"]) == (
                f"{t(ar, 'dispatch.drill_marker')} {t(ar, 'dispatch.ack.help_taken', volunteer='Avi')}"
            )
        finally:
            await service.stop()

    run(scenario)
