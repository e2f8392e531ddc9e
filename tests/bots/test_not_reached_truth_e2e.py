"""A buddy's "could not reach", end to end (the real ``hosen serve`` app, python-telegram-bot and
twilio clients against the loopback fakes): the "not reached" alert is pushed at once to the first
officer on duty, with a take number, who reads who went, where, and that nobody else can be sent; the buddy is told
"the municipality has been told" only then. With a backup buddy, the officer reads who the
visit goes to next. With no officer on duty to push to, the buddy hears
that it is on the emergency team's list (what is true), never that anyone was told; the alert
is pushed at the next climb once an officer is on duty."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.escalation import place_of
from dispatch.models import Alert, AlertKind, TaskStatus
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry.db import unit_of_work
from registry.models import Channel, Person
from registry.profile_sync import Directory
from registry.staff import StaffMember, language_of
from tests.bots.e2e_helpers import add_backup_buddy, miriam_with_buddy, on_telegram, serve
from tests.bots.test_answer_truth_e2e import _task, _visit, drilled
from tests.bots.test_e2e import Service, tg
from tests.bots.test_help_e2e import OFFICERS, _climb

pytestmark = pytest.mark.e2e
HE, RU = Language.HE, Language.RU


@pytest.mark.parametrize(("on_duty", "backup"), [(True, False), (False, False), (True, True)])
def test_could_not_reach_is_pushed_to_the_officer_and_the_buddy_told_the_truth(
    settings: Settings,
    directory: Directory,
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
    on_duty: bool,
    backup: bool,
) -> None:
    officer_phone = OFFICERS[0][1]

    async def scenario(service: Service) -> None:
        igor = fake_telegram.new_user("Игорь", language_code="ru")
        ids = miriam_with_buddy(
            service,
            reach=dict(channel=Channel.SMS, phone="+972525550212"),
            buddy=on_telegram("Игорь Ким", RU, igor.id),
        )
        if backup:  # a second buddy the visit moves on to
            add_backup_buddy(service, ids["resident0"], "Игорь Ким")
        if not on_duty:
            with unit_of_work(service.ctx.sessions) as session:
                session.execute(update(StaffMember).values(active=False))
        await service.flush()  # the check-in SMS goes out; Miriam is silent
        task_id = _visit(service, ids["resident0"])
        await service.flush()
        offer = fake_telegram.last_sent(igor.id)
        before = len(fake_twilio.sent_to(officer_phone))
        told = await tg(
            service,
            fake_telegram,
            igor.id,
            fake_telegram.press(igor, offer, t(RU, "dispatch.task.not_reached")),
        )
        await service.flush()
        assert _task(service, task_id).status == TaskStatus.NOT_REACHED
        pushed = fake_twilio.sent_to(officer_phone)[before:]
        with service.ctx.sessions() as session:
            alert = session.scalars(select(Alert).where(Alert.kind == AlertKind.NOT_REACHED)).one()
            kinds = set(session.scalars(select(Alert.kind)))
            resident = session.get_one(Person, ids["resident0"])
            member = session.scalars(select(StaffMember).order_by(StaffMember.id)).first()
            assert member is not None
            language = language_of(session, member)
            key = "push_next" if backup else "push_nobody"
            expected = t(
                language,
                f"dispatch.not_reached.{key}",
                **({"next": "Lea Backup"} if backup else {}),
                alert=alert.id,
                visitor="Игорь Ким",
                name="מרים כהן",
                place=place_of(session, resident, language),
                phone=resident.phone or "-",
            )
        if backup:  # the visit went on to the backup buddy
            assert kinds == {AlertKind.NOT_REACHED}
            assert any("מרים כהן" in str(m["body"]) for m in fake_twilio.sent_to("+972525550499"))
        else:
            assert kinds == {AlertKind.NOT_REACHED, AlertKind.NO_BUDDY}  # nobody else
        if on_duty:
            # Owned as a help alert is: with its take number. With nobody else to send, the
            # "no buddy" alert is pushed as well, on its own.
            bodies = [str(m["body"]) for m in pushed]
            take = t(language, "dispatch.alert.take")
            assert [b for b in bodies if b.startswith(expected)] == [f"{expected}\n1 {take}"]
            assert len(bodies) == (1 if backup else 2)
            assert [m["text"] for m in told] == [drilled(RU, "dispatch.task.ack_not_reached")]
        else:
            assert pushed == []
            assert [m["text"] for m in told] == [drilled(RU, "dispatch.not_reached.ack_listed")]
            # An officer comes on duty: the waiting alerts are pushed to them at the next
            # climb, each with its take number.
            with unit_of_work(service.ctx.sessions) as session:
                session.execute(update(StaffMember).values(active=True))
            await _climb(service)
            late = [str(m["body"]) for m in fake_twilio.sent_to(officer_phone)[before:]]
            assert len(late) == 2 and any(expected in body for body in late), late

    serve(settings, scenario, telegram=fake_telegram, twilio=fake_twilio)
