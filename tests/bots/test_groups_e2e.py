"""End to end, with the real python-telegram-bot and twilio clients against the loopback fakes:
joining a group by its code ("/start CODE" on Telegram, "JOIN CODE" by SMS in any language),
a coordinator who lists and takes out members from the bot, and an officer who marks a
community resource busy."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bots.models import Conversation
from config.i18n import t
from config.languages import Language
from config.settings import Settings
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry import groups
from registry.models import Authority, Channel, GroupKind, GroupMember, Zone
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.resources import Resource, ResourceKind, ResourceState, save_resource
from registry.staff import StaffMember, StaffRole, add_staff
from tests.bots.test_e2e import (
    PHONE,
    _free_port,
    person_where,
    run,
    service_settings,
    sms,
    start_service,
    tg,
)

pytestmark = pytest.mark.e2e
HE = Language.HE
COORDINATOR = "+972525557000"


def make_group(session: Session, authority: Authority) -> int:
    north = session.scalars(
        select(Zone).where(Zone.authority_id == authority.id, Zone.code == "kt-north")
    ).one()
    group, _ = groups.save_group(
        session,
        authority=authority,
        name="צופים צפון",
        kind=GroupKind.YOUTH_MOVEMENT,
        zones=[north],
        code="scouts-n",
        actor="test",
    )
    groups.add_coordinator(
        session,
        group=group,
        name="עמית",
        phone=normalise_phone(COORDINATOR, region="IL"),
        birth_year=1985,
        actor="test",
    )
    session.commit()
    return group.id


def members_of(service: Any, group_id: int) -> set[int]:
    with service.ctx.sessions() as session:
        return set(
            session.scalars(select(GroupMember.person_id).where(GroupMember.group_id == group_id))
        )


def test_joining_by_code_by_sms_in_hebrew_and_english(
    settings: Settings,
    session: Session,
    directory: Directory,
    authority: Authority,
    fake_twilio: FakeTwilio,
) -> None:
    group_id = make_group(session, authority)
    port = _free_port()
    config = service_settings(settings, telegram=None, twilio=fake_twilio, port=port)

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            # A new resident joins with the Hebrew word and the code in capitals: the group
            # sets her authority, so she is asked her neighbourhood without the authority.
            replies = await sms(service, fake_twilio, "הצטרפות SCOUTS-N")
            assert replies[-1].startswith(t(HE, "bot.who.prompt"))
            for body in ["2", "מרים", "1", "1941", "0", "דלג", "1"]:
                await sms(service, fake_twilio, body)
            replies = await sms(service, fake_twilio, "1")
            assert replies[0] == t(HE, "bot.summary.done")
            miriam = person_where(service, phone=PHONE)
            assert miriam is not None and miriam.id in members_of(service, group_id)

            # Someone already registered joins with the English word and the code as typed.
            other = "+972525551999"
            for body in ["הצטרפות", "2", "יוסף", "1", "1", "1940", "0", "דלג", "1", "1"]:
                await sms(service, fake_twilio, body, phone=other)
            yosef = person_where(service, phone=other)
            assert yosef is not None and yosef.id not in members_of(service, group_id)
            replies = await sms(service, fake_twilio, "join scouts-n", phone=other)
            assert replies[0] == t(HE, "bot.group.joined", group="צופים צפון")
            assert yosef.id in members_of(service, group_id)
            # A code nobody has changes nothing.
            before = members_of(service, group_id)
            assert len(before) == 3  # the coordinator, Miriam and Yosef
            replies = await sms(service, fake_twilio, "JOIN nosuch", phone=other)
            assert replies and t(HE, "bot.group.joined", group="צופים צפון") not in replies
            assert members_of(service, group_id) == before
        finally:
            await service.stop()

    run(scenario)


def test_joining_by_start_code_on_telegram_and_a_coordinator_takes_a_member_out(
    settings: Settings,
    session: Session,
    directory: Directory,
    authority: Authority,
    fake_telegram: FakeTelegram,
) -> None:
    group_id = make_group(session, authority)
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=None, port=port)

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            noa = fake_telegram.new_user("נועה")
            chat = noa.id

            async def press(label: str) -> list[dict[str, Any]]:
                message = fake_telegram.last_sent(chat)
                return await tg(
                    service, fake_telegram, chat, fake_telegram.press(noa, message, label)
                )

            async def say(update: dict[str, Any]) -> list[dict[str, Any]]:
                return await tg(service, fake_telegram, chat, update)

            await say(fake_telegram.start_command(noa, "SCOUTS-N"))
            with service.ctx.sessions() as s:
                draft = s.scalars(
                    select(Conversation.draft).where(
                        Conversation.channel == Channel.TELEGRAM, Conversation.address == str(chat)
                    )
                ).one()
            assert draft["group"] == "scouts-n" and draft["authority"] == "kiryat-tamar"
            await press("עברית")
            await press(t(HE, "bot.who.resident"))
            await say(fake_telegram.text(noa, "נועה לוי"))
            await say(fake_telegram.contact(noa, "+972525557301"))
            await say(fake_telegram.location(noa, 31.6243, 34.7695))  # in kt-north
            await say(fake_telegram.text(noa, "1950"))
            await press(t(HE, "bot.choice.none"))  # a multiple choice: then "done"
            await press(t(HE, "bot.nav.done"))
            await press(t(HE, "bot.choice.skip"))
            await press(t(HE, "bot.choice.agree"))
            sent = await press(t(HE, "bot.summary.confirm"))
            assert sent[0]["text"] == t(HE, "bot.summary.done")
            person = person_where(service, telegram_chat_id=chat)
            assert person is not None and person.id in members_of(service, group_id)

            # The coordinator, on a chat verified as hers, lists the members and takes Noa out.
            amit = fake_telegram.new_user("עמית")
            with service.ctx.sessions() as s:
                staff = s.scalars(select(StaffMember).where(StaffMember.phone == COORDINATOR)).one()
                staff.telegram_chat_id = amit.id
                s.commit()
            sent = await tg(service, fake_telegram, amit.id, fake_telegram.command(amit, "members"))
            assert sent[-1]["text"] == t(HE, "officer.members.head", group="צופים צפון", count=2)
            listing = fake_telegram.last_sent(amit.id)
            await tg(
                service, fake_telegram, amit.id, fake_telegram.press(amit, listing, "נועה לוי")
            )
            confirm = fake_telegram.last_sent(amit.id)
            assert confirm["text"] == t(
                HE, "officer.members.confirm", name="נועה לוי", group="צופים צפון", code="scouts-n"
            )
            sent = await tg(
                service,
                fake_telegram,
                amit.id,
                fake_telegram.press(amit, confirm, t(HE, "officer.members.yes")),
            )
            assert sent[-1]["text"] == t(
                HE, "officer.members.removed", name="נועה לוי", group="צופים צפון"
            )
            assert person.id not in members_of(service, group_id)

            # Someone who is not staff gets the polite refusal and nothing changes.
            sent = await say(fake_telegram.command(noa, "members"))
            assert sent[0]["text"].startswith(t(HE, "staff.not_authorized"))
        finally:
            await service.stop()

    run(scenario)


def test_an_officer_marks_a_resource_busy_from_telegram(
    settings: Settings,
    session: Session,
    directory: Directory,
    authority: Authority,
    fake_telegram: FakeTelegram,
) -> None:
    north = session.scalars(
        select(Zone).where(Zone.authority_id == authority.id, Zone.code == "kt-north")
    ).one()
    save_resource(
        session,
        authority=authority,
        zone=north,
        code="gen-1",
        kind=ResourceKind.GENERATOR,
        name="גנרטור",
        actor="test",
    )
    rina = fake_telegram.new_user("רינה")
    officer = add_staff(
        session,
        name="רינה",
        phone=normalise_phone("052-555-1000", region="IL"),
        authority=authority,
        role=StaffRole.OFFICER,
        actor="test",
    )
    officer.telegram_chat_id = rina.id
    session.commit()
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=None, port=port)

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            sent = await tg(
                service, fake_telegram, rina.id, fake_telegram.text(rina, "/resource gen-1 busy")
            )
            state = t(HE, "resources.state.in_use")
            assert sent[-1]["text"] == t(
                HE, "officer.resource.set", name="גנרטור", code="gen-1", state=state
            )
            sent = await tg(
                service, fake_telegram, rina.id, fake_telegram.text(rina, "/resource gen-1")
            )
            assert sent[-1]["text"] == t(HE, "officer.resource.usage")
            with service.ctx.sessions() as s:
                generator = s.scalars(select(Resource)).one()
                assert generator.state == ResourceState.IN_USE
                assert generator.state_changed_by == f"telegram:staff:{officer.id}"
            # A resident cannot.
            stranger = fake_telegram.new_user("Someone")
            sent = await tg(
                service,
                fake_telegram,
                stranger.id,
                fake_telegram.text(stranger, "/resource gen-1 available"),
            )
            assert sent[0]["text"].startswith(t(HE, "staff.not_authorized"))
            with service.ctx.sessions() as s:
                assert s.scalars(select(Resource.state)).one() == ResourceState.IN_USE
        finally:
            await service.stop()

    run(scenario)
