"""What an "I'm OK" withdraws, end to end: the real ``hosen serve`` app, python-telegram-bot and
twilio clients against the loopback fakes, on SQLite and PostgreSQL. A plain OK goes through the
inbox's batch path, a later word through the per-message path; both withdraw the same things.

- An OK by SMS cancels the call waiting to ring the resident: the phone never rings.
- An OK while a buddy's visit is offered withdraws it, and the buddy hears why in their language;
  a late "I'm going" on it gets the truth.
- An OK after the buddy accepted leaves the visit theirs, and tells them the resident answered.
- An OK after asking for help leaves the help alert open with its owner (or climbing to the
  next officer), shows the answer on the officers' list and tells the officers who know of it;
  the resident hears that the request is still open.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.calls import place_call
from dispatch.escalation import send_visit
from dispatch.help import open_help, request_help
from dispatch.models import (
    Alert,
    AlertState,
    Campaign,
    HelpNeed,
    OutboxMessage,
    OutboxStatus,
    Task,
    TaskReason,
    TaskStatus,
)
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry.db import unit_of_work, utcnow
from registry.models import Authority, Channel, Person
from registry.profile_sync import Directory
from registry.staff import StaffMember, language_of
from tests.bots.e2e_helpers import miriam_with_buddy, on_telegram, serve
from tests.bots.test_e2e import Service, _free_port, run, sms, start_service, tg
from tests.bots.test_help_e2e import _climb
from tests.bots.test_voice_e2e import _voice_settings

pytestmark = pytest.mark.e2e
HE, AR, RU = Language.HE, Language.AR, Language.RU
RESIDENT_PHONE = "+972525550211"


def drilled(language: Language, key: str, **params: str) -> str:
    return f"{t(language, 'dispatch.drill_marker')} {t(language, key, **params)}"


def _visit(service: Service, resident_id: int) -> int:
    """The ladder's visit step for a silent resident (the sweep's own function)."""
    with unit_of_work(service.ctx.sessions) as session:
        campaign = session.scalars(select(Campaign)).one()
        task = send_visit(
            session,
            campaign=campaign,
            resident=session.get_one(Person, resident_id),
            reason=TaskReason.NO_ANSWER,
            now=utcnow(),
        )
        assert task is not None
        return task.id


def _task(service: Service, task_id: int) -> Task:
    with service.ctx.sessions() as session:
        return session.get_one(Task, task_id)


def _help_alert(service: Service, resident_id: int) -> Alert:
    with service.ctx.sessions() as session:
        return session.scalars(select(Alert).where(Alert.person_id == resident_id)).one()


def test_an_ok_by_sms_in_the_inbox_batch_cancels_the_call_waiting_to_ring(
    settings: Settings, directory: Directory, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    port = _free_port()
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    config = _voice_settings(settings, fake_twilio, port, prompts, tmp_path)

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            with unit_of_work(service.ctx.sessions) as session:
                authority = session.scalars(
                    select(Authority).where(Authority.code == "kiryat-tamar")
                ).one()
                authority.calls = True
            ids = miriam_with_buddy(
                service,
                reach=dict(channel=Channel.SMS, phone=RESIDENT_PHONE),
                buddy=dict(
                    name="Yossi Amar", language=HE, channel=Channel.SMS, phone="+972525550411"
                ),
            )
            await service.flush()  # the check-in SMS goes out
            # A missed call is to be tried again in ten minutes (as the ladder queues a retry).
            with unit_of_work(service.ctx.sessions) as session:
                campaign = session.scalars(select(Campaign)).one()
                assert campaign.calls
                call = place_call(
                    session,
                    campaign=campaign,
                    person=session.get_one(Person, ids["resident0"]),
                    now=utcnow(),
                    due_at=utcnow() + timedelta(minutes=10),
                )
                session.flush()
                call_id = call.id
            # "1" by SMS: a plain OK, which the inbox processor takes in its batch.
            told = await sms(service, fake_twilio, "1", phone=RESIDENT_PHONE)
            assert told == [drilled(HE, "dispatch.ack.ok")]
            # The ten minutes pass: nothing is left to ring.
            with unit_of_work(service.ctx.sessions) as session:
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.channel == Channel.VOICE)
                    .values(due_at=utcnow())
                )
            await service.flush()
            assert fake_twilio.voice.placed == []
            with service.ctx.sessions() as session:
                assert session.get_one(OutboxMessage, call_id).status == OutboxStatus.CANCELLED
        finally:
            await service.stop()

    run(scenario)


def test_an_ok_while_the_visit_is_offered_withdraws_it_and_tells_the_buddy_in_arabic(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram
) -> None:
    async def scenario(service: Service) -> None:
        miriam = fake_telegram.new_user("מרים", language_code="he")
        salma = fake_telegram.new_user("سلمى", language_code="ar")
        ids = miriam_with_buddy(
            service,
            reach=dict(channel=Channel.TELEGRAM, telegram_chat_id=miriam.id),
            buddy=on_telegram("سلمى خوري", AR, salma.id),
        )
        await service.flush()  # the check-in goes out; Miriam is silent
        checkin = fake_telegram.last_sent(miriam.id)
        task_id = _visit(service, ids["resident0"])
        await service.flush()
        offer = fake_telegram.last_sent(salma.id)
        assert "מרים כהן" in offer["text"]

        told = await tg(
            service,
            fake_telegram,
            miriam.id,
            fake_telegram.press(miriam, checkin, t(HE, "dispatch.checkin.ok")),
        )
        assert [m["text"] for m in told] == [drilled(HE, "dispatch.ack.ok")]
        assert fake_telegram.last_sent(salma.id)["text"] == drilled(
            AR, "dispatch.answered.withdrawn", name="מרים כהן"
        )
        assert _task(service, task_id).status == TaskStatus.CANCELLED
        # A late "I'm going" on the withdrawn offer: the truth, and no visit comes alive.
        told = await tg(
            service,
            fake_telegram,
            salma.id,
            fake_telegram.press(salma, offer, t(AR, "dispatch.task.accept")),
        )
        assert [m["text"] for m in told] == [drilled(AR, "dispatch.task.gone")]
        assert _task(service, task_id).status == TaskStatus.CANCELLED

    serve(settings, scenario, telegram=fake_telegram, twilio=None)


def test_an_ok_by_sms_after_the_buddy_accepted_tells_the_buddy_and_the_visit_stays_theirs(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram, fake_twilio: FakeTwilio
) -> None:
    async def scenario(service: Service) -> None:
        igor = fake_telegram.new_user("Игорь", language_code="ru")
        ids = miriam_with_buddy(
            service,
            reach=dict(channel=Channel.SMS, phone=RESIDENT_PHONE),
            buddy=on_telegram("Игорь Ким", RU, igor.id),
        )
        await service.flush()
        task_id = _visit(service, ids["resident0"])
        await service.flush()
        offer = fake_telegram.last_sent(igor.id)
        await tg(
            service,
            fake_telegram,
            igor.id,
            fake_telegram.press(igor, offer, t(RU, "dispatch.task.accept")),
        )
        assert _task(service, task_id).status == TaskStatus.ACCEPTED

        texted = await sms(service, fake_twilio, "1", phone=RESIDENT_PHONE)
        assert texted == [drilled(HE, "dispatch.ack.ok")]
        assert fake_telegram.last_sent(igor.id)["text"] == drilled(
            RU, "dispatch.answered.under_way", name="מרים כהן"
        )
        assert _task(service, task_id).status == TaskStatus.ACCEPTED
        # Igor looks in anyway and reports with the offer's own button: it counts.
        told = await tg(
            service,
            fake_telegram,
            igor.id,
            fake_telegram.press(igor, offer, t(RU, "dispatch.task.done")),
        )
        assert [m["text"] for m in told] == [drilled(RU, "dispatch.task.ack_done")]
        assert _task(service, task_id).status == TaskStatus.DONE

    serve(settings, scenario, telegram=fake_telegram, twilio=fake_twilio)


def test_help_then_ok_keeps_the_taken_alert_with_its_owner_and_tells_the_officer(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram
) -> None:
    async def scenario(service: Service) -> None:
        miriam = fake_telegram.new_user("מרים", language_code="he")
        yossi = fake_telegram.new_user("Yossi", language_code="he")
        dana = fake_telegram.new_user("Dana", language_code="en")
        ids = miriam_with_buddy(
            service,
            reach=dict(channel=Channel.TELEGRAM, telegram_chat_id=miriam.id),
            buddy=on_telegram("Yossi Amar", HE, yossi.id),
            officer_chats={"Dana Levi": dana.id},
        )
        await service.flush()
        checkin = fake_telegram.last_sent(miriam.id)
        await tg(
            service,
            fake_telegram,
            miriam.id,
            fake_telegram.press(miriam, checkin, t(HE, "dispatch.checkin.help")),
        )
        push = fake_telegram.last_sent(dana.id)
        await tg(
            service,
            fake_telegram,
            dana.id,
            fake_telegram.press(dana, push, t(HE, "dispatch.alert.take")),
        )
        alert = _help_alert(service, ids["resident0"])
        assert alert.state == AlertState.TAKEN and alert.owner_staff_id is not None
        owner = alert.owner_staff_id
        to_dana = len(fake_telegram.sent_to(dana.id))
        help_visit = fake_telegram.last_sent(yossi.id)["text"]

        # Later, in words: "I'm OK" (the per-message path: her check-in is answered "help").
        told = await tg(service, fake_telegram, miriam.id, fake_telegram.text(miriam, "בסדר"))
        assert [m["text"] for m in told] == [drilled(HE, "dispatch.answered.help_open")]
        alert = _help_alert(service, ids["resident0"])
        assert alert.state == AlertState.TAKEN and alert.owner_staff_id == owner
        assert alert.later_ok_at is not None and alert.resolved_at is None
        with service.ctx.sessions() as session:
            language = language_of(session, session.get_one(StaffMember, owner))
            rows = open_help(session, authority_id=None, now=utcnow(), language=HE)
        assert [(row.alert_id, row.later_ok_at is not None) for row in rows] == [(alert.id, True)]
        assert [m["text"] for m in fake_telegram.sent_to(dana.id)[to_dana:]] == [
            t(language, "dispatch.answered.officer", alert=str(alert.id), name="מרים כהן")
        ]
        # The help visit stands: the officer decides.
        assert fake_telegram.last_sent(yossi.id)["text"] == help_visit
        with service.ctx.sessions() as session:
            statuses = list(session.scalars(select(Task.status)))
        assert statuses == [TaskStatus.OFFERED]
        # A second OK tells nobody again.
        await tg(service, fake_telegram, miriam.id, fake_telegram.text(miriam, "בסדר"))
        assert len(fake_telegram.sent_to(dana.id)) == to_dana + 1

    serve(settings, scenario, telegram=fake_telegram, twilio=None)


def test_help_at_any_time_then_ok_in_the_batch_keeps_the_alert_climbing_and_says_so(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram
) -> None:
    async def scenario(service: Service) -> None:
        miriam = fake_telegram.new_user("מרים", language_code="he")
        yossi = fake_telegram.new_user("Yossi", language_code="he")
        dana = fake_telegram.new_user("Dana", language_code="he")
        avi = fake_telegram.new_user("Avi", language_code="he")
        ids = miriam_with_buddy(
            service,
            reach=dict(channel=Channel.TELEGRAM, telegram_chat_id=miriam.id),
            buddy=on_telegram("Yossi Amar", HE, yossi.id),
            officer_chats={"Dana Levi": dana.id, "Avi Peretz": avi.id},
        )
        await service.flush()  # the check-in goes out
        checkin = fake_telegram.last_sent(miriam.id)
        # While it is open, Miriam asks for help from the menu (its own function, as the
        # dialog calls it): the alert is pushed to Dana, and her check-in is still open.
        with unit_of_work(service.ctx.sessions) as session:
            request_help(
                session,
                resident=session.get_one(Person, ids["resident0"]),
                need=HelpNeed.MEDICINE,
                detail=None,
                now=utcnow(),
            )
        await service.flush()
        assert len(fake_telegram.sent_to(dana.id)) == 1  # the push
        told = await tg(
            service,
            fake_telegram,
            miriam.id,
            fake_telegram.press(miriam, checkin, t(HE, "dispatch.checkin.ok")),
        )
        assert [m["text"] for m in told] == [drilled(HE, "dispatch.answered.help_open")]
        alert = _help_alert(service, ids["resident0"])
        assert alert.state == AlertState.OPEN and alert.due_at is not None
        assert alert.later_ok_at is not None
        assert [m["text"] for m in fake_telegram.sent_to(dana.id)[1:]] == [
            t(HE, "dispatch.answered.officer", alert=str(alert.id), name="מרים כהן")
        ]
        assert fake_telegram.sent_to(avi.id) == []
        # Nobody takes it: it climbs to Avi, who reads that she has since answered OK.
        await _climb(service)
        pushed = fake_telegram.sent_to(avi.id)
        assert len(pushed) == 1
        assert t(HE, "dispatch.answered.mark") in pushed[0]["text"]
        assert _help_alert(service, ids["resident0"]).state == AlertState.OPEN

    serve(settings, scenario, telegram=fake_telegram, twilio=None)
