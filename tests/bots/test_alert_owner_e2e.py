"""Every alert has an owner, end to end (the real ``hosen serve`` app, python-telegram-bot and
twilio clients against the loopback fakes): a "no buddy" alert (a silent resident nobody can be
sent to) and a "could not reach" alert are pushed to the first officer on duty with a take button
or number, in the officer's language, climb to the next officer when nobody takes them (the
timer is moved back in the database and the scheduler's sweep runs), and belong to the officer
who takes them, on the officers' list (``hosen help list``) and the console queue. The resident,
who asked for nothing, is told nothing when the alert is taken; a later "I'm OK" shows on the
alert and is told to its owner."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.board import help_queue
from dispatch.escalation import place_of, send_visit
from dispatch.help import open_help
from dispatch.models import Alert, AlertKind, AlertState, Campaign, TaskReason
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry.db import unit_of_work, utcnow
from registry.models import BuddyAssignment, Channel, Person
from registry.profile_sync import Directory
from registry.staff import StaffMember, language_of
from tests.bots.e2e_helpers import add_backup_buddy, miriam_with_buddy, on_telegram, serve
from tests.bots.test_answer_truth_e2e import _visit
from tests.bots.test_e2e import Service, sms, tg
from tests.bots.test_help_e2e import OFFICER_PIN, OFFICERS, _climb

pytestmark = pytest.mark.e2e
HE, RU = Language.HE, Language.RU
MIRIAM = "+972525550212"


def _alert(service: Service, kind: AlertKind) -> Alert:
    with service.ctx.sessions() as session:
        return session.scalars(select(Alert).where(Alert.kind == kind)).one()


def _officer(service: Service, name: str) -> tuple[int, Language]:
    with service.ctx.sessions() as session:
        member = session.scalars(select(StaffMember).where(StaffMember.name == name)).one()
        return member.id, language_of(session, member)


def _owners(service: Service, kind: AlertKind) -> tuple[list[str], list[str]]:
    """The alert's owner as `hosen help list` and the console queue show it."""
    with service.ctx.sessions() as session:
        alert = session.scalars(select(Alert).where(Alert.kind == kind)).one()
        resident = session.get_one(Person, alert.person_id)
        listed = open_help(session, authority_id=None, now=utcnow(), language=Language.EN)
        queued = help_queue(session, authority_ids=[resident.authority_id])
        return (
            [row.owner for row in listed if row.alert_id == alert.id],
            [row.owner for row in queued if row.alert_id == alert.id and row.kind == kind.value],
        )


def test_a_no_buddy_alert_is_pushed_climbs_and_is_owned_by_the_officer_who_takes_it(
    settings: Settings, directory: Directory, fake_twilio: FakeTwilio
) -> None:
    dana, avi, rina = (phone for _, phone in OFFICERS)

    async def scenario(service: Service) -> None:
        ids = miriam_with_buddy(
            service,
            reach=dict(channel=Channel.SMS, phone=MIRIAM),
            buddy=dict(name="Yossi Amar", language=HE, channel=Channel.SMS, phone="+972525550403"),
        )
        with unit_of_work(service.ctx.sessions) as session:
            session.execute(delete(BuddyAssignment))  # nobody to send
        await service.flush()  # the check-in SMS goes out; Miriam is silent
        with unit_of_work(service.ctx.sessions) as session:
            campaign = session.scalars(select(Campaign)).one()
            resident = session.get_one(Person, ids["resident0"])
            task = send_visit(
                session,
                campaign=campaign,
                resident=resident,
                reason=TaskReason.NO_ANSWER,
                now=utcnow(),
            )
            assert task is None
        await service.flush()
        alert = _alert(service, AlertKind.NO_BUDDY)
        _, language = _officer(service, "Dana Levi")
        with service.ctx.sessions() as session:
            resident = session.get_one(Person, ids["resident0"])
            expected = t(
                language,
                "dispatch.owned.push_no_buddy",
                alert=alert.id,
                name="מרים כהן",
                place=place_of(session, resident, language),
                phone=MIRIAM,
            )
        take = t(language, "dispatch.alert.take")
        assert [m["body"] for m in fake_twilio.sent_to(dana)] == [f"{expected}\n1 {take}"]
        assert fake_twilio.sent_to(avi) == [] and fake_twilio.sent_to(rina) == []
        assert _owners(service, AlertKind.NO_BUDDY) == ([""], [""])

        # Nobody takes it: it climbs to Avi, saying how long it has waited.
        await _climb(service)
        climbed = [str(m["body"]) for m in fake_twilio.sent_to(avi)]
        assert len(climbed) == 1 and expected in climbed[0] and climbed[0].endswith(take)
        waited = {t(language, "dispatch.alert.climbed", minutes=m) for m in range(1, 121)}
        assert climbed[0].split("\n")[0] in waited
        assert fake_twilio.sent_to(rina) == []

        # Avi takes it by its number (and his PIN): his; Miriam, who asked for nothing,
        # is told nothing.
        heard = len(fake_twilio.sent_to(MIRIAM))
        await sms(service, fake_twilio, "1", phone=avi)
        await sms(service, fake_twilio, OFFICER_PIN, phone=avi)
        avi_id, _ = _officer(service, "Avi Peretz")
        taken = _alert(service, AlertKind.NO_BUDDY)
        assert (taken.state, taken.owner_staff_id) == (AlertState.TAKEN, avi_id)
        assert taken.due_at is None
        assert _owners(service, AlertKind.NO_BUDDY) == (["Avi Peretz"], ["Avi Peretz"])
        assert len(fake_twilio.sent_to(MIRIAM)) == heard

        # Miriam answers the check-in "I'm OK" after all: the alert shows it, Avi is told.
        await sms(service, fake_twilio, "1", phone=MIRIAM)
        assert _alert(service, AlertKind.NO_BUDDY).later_ok_at is not None
        assert str(fake_twilio.sent_to(avi)[-1]["body"]) == t(
            language, "dispatch.answered.officer", alert=alert.id, name="מרים כהן"
        )

    serve(settings, scenario, telegram=None, twilio=fake_twilio)


def test_a_could_not_reach_alert_climbs_and_is_owned_by_the_officer_who_takes_it(
    settings: Settings,
    directory: Directory,
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
) -> None:
    _, avi, rina = (phone for _, phone in OFFICERS)

    async def scenario(service: Service) -> None:
        igor = fake_telegram.new_user("Игорь", language_code="ru")
        dana = fake_telegram.new_user("Dana", language_code="he")
        ids = miriam_with_buddy(
            service,
            reach=dict(channel=Channel.SMS, phone=MIRIAM),
            buddy=on_telegram("Игорь Ким", RU, igor.id),
            officer_chats={"Dana Levi": dana.id},
        )
        add_backup_buddy(service, ids["resident0"], "Игорь Ким")  # a backup buddy goes next
        await service.flush()
        _visit(service, ids["resident0"])
        await service.flush()
        offer = fake_telegram.last_sent(igor.id)
        await tg(
            service,
            fake_telegram,
            igor.id,
            fake_telegram.press(igor, offer, t(RU, "dispatch.task.not_reached")),
        )
        await service.flush()
        alert = _alert(service, AlertKind.NOT_REACHED)
        dana_id, language = _officer(service, "Dana Levi")
        push = fake_telegram.last_sent(dana.id)
        with service.ctx.sessions() as session:
            expected = t(
                language,
                "dispatch.not_reached.push_next",
                alert=alert.id,
                visitor="Игорь Ким",
                name="מרים כהן",
                next="Lea Backup",
                place=place_of(session, session.get_one(Person, ids["resident0"]), language),
                phone=MIRIAM,
            )
        assert push["text"] == expected
        # The take button, in Dana's language.
        labels = [b["text"] for row in push["reply_markup"]["inline_keyboard"] for b in row]
        assert labels == [t(language, "dispatch.alert.take")]
        assert fake_twilio.sent_to(avi) == []

        # Nobody takes it: it climbs to Avi by SMS, with its number to take it.
        await _climb(service)
        climbed = [str(m["body"]) for m in fake_twilio.sent_to(avi)]
        assert len(climbed) == 1 and "Lea Backup" in climbed[0] and "\n1 " in climbed[0]
        assert fake_twilio.sent_to(rina) == []
        assert _owners(service, AlertKind.NOT_REACHED) == ([""], [""])

        # Dana takes it from her push after all: hers; Miriam is told nothing.
        heard = len(fake_twilio.sent_to(MIRIAM))
        await tg(
            service,
            fake_telegram,
            dana.id,
            fake_telegram.press(dana, push, t(language, "dispatch.alert.take")),
        )
        taken = _alert(service, AlertKind.NOT_REACHED)
        assert (taken.state, taken.owner_staff_id, taken.due_at) == (
            AlertState.TAKEN,
            dana_id,
            None,
        )
        assert _owners(service, AlertKind.NOT_REACHED) == (["Dana Levi"], ["Dana Levi"])
        assert len(fake_twilio.sent_to(MIRIAM)) == heard
        # Avi, pressing his number now, hears who has it.
        told = await sms(service, fake_twilio, "1", phone=avi)
        told += await sms(service, fake_twilio, OFFICER_PIN, phone=avi)
        assert any("Dana Levi" in text for text in told), told

    serve(settings, scenario, telegram=fake_telegram, twilio=fake_twilio)
