"""Closing a drill while a buddy has home visits, end to end: the real ``hosen serve`` app and
python-telegram-bot against the loopback Telegram fake. The buddy hears which visit is withdrawn
and which still counts; a late press on the withdrawn one gets the truth; the visit under way is
reported done after the close and takes the resident off the unreached list."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.escalation import send_visit
from dispatch.models import (
    Alert,
    AlertKind,
    Campaign,
    CampaignStatus,
    Task,
    TaskReason,
    TaskStatus,
)
from dispatch.reports import close_campaign
from fakes.telegram import FakeTelegram
from registry.db import unit_of_work, utcnow
from registry.models import Channel, Person
from registry.profile_sync import Directory
from tests.bots.test_e2e import _free_port, run, service_settings, start_service, tg
from tests.bots.test_help_e2e import _setup

pytestmark = pytest.mark.e2e


def test_a_buddy_hears_the_truth_when_the_drill_closes_on_telegram(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram
) -> None:
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=None, port=port)
    he = Language.HE
    drill = t(he, "dispatch.drill_marker")

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            miriam = fake_telegram.new_user("מרים", language_code="he")
            salma = fake_telegram.new_user("سلمى", language_code="ar")
            yossi = fake_telegram.new_user("Yossi", language_code="he")
            dana = fake_telegram.new_user("Dana", language_code="he")
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
                        language=Language.AR,
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
                officer_chats={"Dana Levi": dana.id},
            )
            await service.flush()  # the check-ins go out; nobody answers
            # The ladder reaches the visits (the sweep's own step): Yossi gets both.
            with unit_of_work(service.ctx.sessions) as session:
                campaign = session.scalars(select(Campaign)).one()
                for key in ("resident0", "resident1"):
                    send_visit(
                        session,
                        campaign=campaign,
                        resident=session.get_one(Person, ids[key]),
                        reason=TaskReason.NO_ANSWER,
                        now=utcnow(),
                    )
            await service.flush()
            offers = {
                name: next(m for m in fake_telegram.sent_to(yossi.id) if name in m["text"])
                for name in ("מרים כהן", "سلمى خوري")
            }
            accept = t(he, "dispatch.task.accept")
            told = await tg(
                service,
                fake_telegram,
                yossi.id,
                fake_telegram.press(yossi, offers["מרים כהן"], accept),
            )
            assert [m["text"] for m in told] == [f"{drill} {t(he, 'dispatch.task.ack_accept')}"]

            # The officer closes the drill.
            before = len(fake_telegram.sent_to(yossi.id))
            with unit_of_work(service.ctx.sessions) as session:
                campaign = session.scalars(select(Campaign)).one()
                close_campaign(session, campaign=campaign, now=utcnow())
                assert campaign.status == CampaignStatus.CLOSED
            await service.flush()
            heard = fake_telegram.sent_to(yossi.id)[before:]
            assert [m["text"] for m in heard] == [
                f"{drill} {t(he, 'dispatch.close.under_way', name='מרים כהן')}",
                f"{drill} {t(he, 'dispatch.close.withdrawn_unreached', name='سلمى خوري')}",
            ]
            still = heard[0]
            labels = [b["text"] for row in still["reply_markup"]["inline_keyboard"] for b in row]
            assert labels == [t(he, "dispatch.task.done"), t(he, "dispatch.task.not_reached")]
            assert "reply_markup" not in heard[1] or not heard[1]["reply_markup"].get(
                "inline_keyboard"
            )

            # A late "I'm going" on the withdrawn offer: the truth, and no visit comes alive.
            told = await tg(
                service,
                fake_telegram,
                yossi.id,
                fake_telegram.press(yossi, offers["سلمى خوري"], accept),
            )
            assert [m["text"] for m in told] == [f"{drill} {t(he, 'dispatch.close.gone')}"]
            # The visit under way, reported after the close: Miriam is accounted for.
            told = await tg(
                service,
                fake_telegram,
                yossi.id,
                fake_telegram.press(yossi, still, t(he, "dispatch.task.done")),
            )
            assert [m["text"] for m in told] == [f"{drill} {t(he, 'dispatch.task.ack_done')}"]
            with service.ctx.sessions() as session:
                statuses = {task.resident_id: task.status for task in session.scalars(select(Task))}
                assert statuses == {
                    ids["resident0"]: TaskStatus.DONE,
                    ids["resident1"]: TaskStatus.CANCELLED,
                }
                unreached = session.scalars(
                    select(Alert.person_id).where(
                        Alert.kind == AlertKind.UNREACHED, Alert.resolved_at.is_(None)
                    )
                ).all()
                assert unreached == [ids["resident1"]]
        finally:
            await service.stop()

    run(scenario)
