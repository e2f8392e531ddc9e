"""End to end: the real ``hosen serve`` app (uvicorn), the real python-telegram-bot Application and
twilio clients, talking over loopback HTTP to the Telegram and Twilio fakes. Replies travel the
one outbound path: outbox rows sent by the dispatcher's worker."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from bots.flood import FloodPolicy
from bots.models import Conversation
from bots.processor import InboxProcessor
from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.models import InboundMessage, OutboxMessage, OutboxStatus
from dispatch.senders import build_senders
from dispatch.worker import Worker
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from hosen.app import build_app
from hosen.context import Context, build_context
from registry.models import Consent, ConsentKind, Person, PersonStatus
from registry.profile_sync import Directory

pytestmark = pytest.mark.e2e
PHONE = "+972525551234"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Service:
    """``hosen serve`` running in this test's event loop, plus the inbox processor and the worker,
    which the test drives."""

    ctx: Context
    server: uvicorn.Server
    task: asyncio.Task[None]
    worker: Worker
    processor: InboxProcessor

    @property
    def url(self) -> str:
        return str(self.ctx.settings.public_url or "").rstrip("/") or (
            f"http://127.0.0.1:{self.server.config.port}"
        )

    async def flush(self) -> None:
        """Process what the webhooks stored, then send everything the outbox holds (the worker's
        claim → send → record rounds)."""
        await asyncio.to_thread(self.processor.drain)
        for _ in range(20):
            if not await self.worker.run_once():
                return

    async def stop(self) -> None:
        await self.worker.close()
        self.server.should_exit = True
        await self.task
        self.ctx.engine.dispose()


async def start_service(settings: Settings, port: int) -> Service:
    ctx = build_context(settings)
    # A test types faster than any person: the flood limit is lifted (it has tests of its own).
    app = build_app(
        ctx,
        run_worker=False,
        run_processor=False,
        flood=FloodPolicy(burst=1000, per_second=1000),
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(6000):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    if settings.telegram_enabled:  # the bot comes up in the background: wait for it
        await asyncio.wait_for(app.state.runtime.telegram_ready.wait(), timeout=20)
    worker = Worker(sessions=ctx.sessions, senders=build_senders(settings), settings=settings)
    await worker.start()
    return Service(ctx, server, task, worker, app.state.runtime.processor)


def service_settings(
    settings: Settings,
    *,
    telegram: FakeTelegram | None,
    twilio: FakeTwilio | None,
    port: int,
    webhook: bool = True,
) -> Settings:
    faked = settings_for_fakes(settings, telegram=telegram, twilio=twilio)
    return faked.model_copy(
        update={
            "public_url": AnyHttpUrl(f"http://127.0.0.1:{port}") if webhook else None,
            "telegram_webhook_secret": SecretStr(f"e2e-{secrets.token_hex(16)}"),
            # Rates high enough that a test does not wait for the per-chat limit.
            "telegram_rate_per_second": 1000.0,
            "telegram_rate_per_chat_per_second": 1000.0,
            "sms_rate_per_second": 1000.0,
        }
    )


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


async def sms(service: Service, fake: FakeTwilio, body: str, phone: str = PHONE) -> list[str]:
    """The person texts ``body``; returns the SMS bodies Hosen sent back."""
    before = len(fake.sent_to(phone))
    status = await fake.send_inbound_async(f"{service.url}/sms/inbound", from_=phone, body=body)
    assert status == 200
    await service.flush()
    return [str(m["body"]) for m in fake.sent_to(phone)[before:]]


async def tg(
    service: Service, fake: FakeTelegram, chat_id: int, update: dict[str, Any]
) -> list[dict[str, Any]]:
    """Telegram delivers ``update`` to the webhook; returns the bot's messages that followed."""
    before = len(fake.sent_to(chat_id))
    assert await fake.deliver_async(update) == 200
    await service.flush()
    return fake.sent_to(chat_id)[before:]


def person_where(service: Service, **where: Any) -> Person | None:
    with service.ctx.sessions() as session:
        query = select(Person).options(selectinload(Person.volunteer), selectinload(Person.needs))
        for name, value in where.items():
            query = query.where(getattr(Person, name) == value)
        return session.scalar(query)


def test_an_elderly_resident_registers_in_hebrew_by_sms(
    settings: Settings, directory: Directory, fake_twilio: FakeTwilio, log_secrets: list[str]
) -> None:
    log_secrets += [PHONE, "מרים אבוקסיס", "+972545550101"]
    fake_twilio.auto_status = ("sent", "delivered")  # Twilio reports delivery to /sms/status
    # As with the real Twilio, reports come a moment after the send (a report that overtook the
    # worker's own record of the send would find no row: see the report to the integrator).
    fake_twilio.status_delay = 0.3
    port = _free_port()
    config = service_settings(settings, telegram=None, twilio=fake_twilio, port=port)

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            replies = await sms(service, fake_twilio, "הצטרפות")
            assert replies[-1].startswith(t(Language.HE, "bot.who.prompt"))
            for body in [
                "2",
                "מרים אבוקסיס",
                "1",
                "2",
                "1941",
                "1 2",
                "רות",
                "054-555-0101",
                "1",
                "1",
            ]:
                replies = await sms(service, fake_twilio, body)
                assert replies, body
            assert replies[0].startswith(t(Language.HE, "bot.summary.prompt", summary="")[:8])
            replies = await sms(service, fake_twilio, "1")
            assert replies[0] == t(Language.HE, "bot.summary.done")
            person = person_where(service, phone=PHONE)
            assert person is not None and person.name == "מרים אבוקסיס" and person.needs_help
            assert person.needs is not None and person.needs.lives_alone and person.needs.mobility
            assert person.language == Language.HE
            with service.ctx.sessions() as session:
                kinds = set(
                    session.scalars(select(Consent.kind).where(Consent.person_id == person.id))
                )
                assert kinds == {ConsentKind.REGISTRATION, ConsentKind.HEALTH_DATA}
            # Every reply went out by the real twilio client, and each fits in three segments.
            assert all(int(m["num_segments"]) <= 3 for m in fake_twilio.sent_to(PHONE))
            # Twilio's signed delivery reports reach /sms/status and mark the replies delivered.
            for _ in range(3000):
                with service.ctx.sessions() as session:
                    states = set(session.scalars(select(OutboxMessage.status)))
                if states == {OutboxStatus.DELIVERED}:
                    break
                await asyncio.sleep(0.02)
            assert states == {OutboxStatus.DELIVERED}
            assert {code for _, _, code in fake_twilio.callbacks} == {200}
        finally:
            await service.stop()

    run(scenario)


def test_an_arabic_volunteer_registers_on_telegram_with_contact_and_location(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram, log_secrets: list[str]
) -> None:
    # Neither the bot token nor anything personal may reach the logs.
    log_secrets += ["+972525557777", "عمر خليل", "972525557777"]
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=None, port=port)
    ar = Language.AR

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            assert fake_telegram.webhook is not None  # hosen serve registered its webhook
            menus = {
                c.get("language_code"): c["commands"] for c in fake_telegram.calls("setMyCommands")
            }
            assert set(menus) == {None, "he", "ar", "ru", "am"}
            assert {"command": "delete", "description": t(ar, "bot.commands.delete")} in menus["ar"]
            omar = fake_telegram.new_user("عمر", language_code="ar")
            chat = omar.id

            pressed: list[str] = []

            async def press(label: str) -> list[dict[str, Any]]:
                message = fake_telegram.last_sent(chat)
                update = fake_telegram.press(omar, message, label)
                pressed.append(update["callback_query"]["id"])
                return await tg(service, fake_telegram, chat, update)

            async def say(update: dict[str, Any]) -> list[dict[str, Any]]:
                return await tg(service, fake_telegram, chat, update)

            sent = await say(fake_telegram.start_command(omar))
            assert "reply_markup" in sent[-1]
            await press(t(ar, "bot.language.name"))
            await press(t(ar, "bot.who.volunteer"))
            await say(fake_telegram.text(omar, "عمر خليل"))
            # A contact that is not his own is refused.
            sent = await say(fake_telegram.contact(omar, "+972525550000", contact_user_id=12345))
            assert sent[0]["text"] == t(ar, "bot.phone.not_own")
            await say(fake_telegram.contact(omar, "+972525557777"))
            await press("كريات تمار")
            assert fake_telegram.reply_keyboards.get(chat) is not None  # "send my location"
            await say(fake_telegram.location(omar, 31.6243, 34.7695))
            await say(fake_telegram.text(omar, "1990"))
            await press("إسعاف أولي")
            await press(t(ar, "bot.nav.done"))
            await press("العربية")
            await press("עברית")
            await press(t(ar, "bot.nav.done"))
            await press(t(ar, "bot.avail.both"))
            await press(t(ar, "bot.choice.yes"))
            await press("3")
            await press(t(ar, "bot.choice.agree"))
            sent = await press(t(ar, "bot.summary.confirm"))
            assert sent[0]["text"] == t(ar, "bot.summary.done")
            person = person_where(service, telegram_chat_id=chat)
            assert person is not None and person.phone == "+972525557777"
            assert person.lat == 31.6243 and person.language == ar
            assert person.volunteer is not None and person.volunteer.skills == ["first_aid"]
            assert sorted(person.volunteer.languages) == ["ar", "he"]
            with service.ctx.sessions() as session:
                zone_code = session.scalar(select(Person).where(Person.id == person.id)).zone.code  # type: ignore[union-attr]
                assert zone_code == "kt-north"
            # Status, then a change of language.
            status_update = fake_telegram.command(omar, "status")
            sent = await say(status_update)
            assert sent[0]["text"].startswith("عمر خليل")
            # Telegram redelivers an update it thinks was lost: acknowledged, not answered twice.
            assert await say(status_update) == []
            await say(fake_telegram.command(omar, "language"))
            sent = await press("English")
            assert sent[0]["text"] == t(Language.EN, "bot.language.changed")
            # Every button press was answered, in the webhook's own response (the fake runs a
            # call carried there as Telegram does, after checking it against the spec).
            assert len(pressed) >= 10
            assert set(pressed) <= set(fake_telegram.callback_answers)
        finally:
            await service.stop()

    run(scenario)


def test_a_forged_or_unsigned_webhook_changes_nothing(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram, fake_twilio: FakeTwilio
) -> None:
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=fake_twilio, port=port)

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            url = f"{service.url}/sms/inbound"
            for signing in ("forged", "none"):
                status = await fake_twilio.send_inbound_async(
                    url, from_=PHONE, body="JOIN", signing=signing
                )  # type: ignore[arg-type]
                assert status == 403
            status = await fake_twilio.send_inbound_async(
                url, from_=PHONE, body="JOIN", signature_url="http://attacker.example/sms/inbound"
            )
            assert status == 403
            user = fake_telegram.new_user("Eve")
            hook = f"{service.url}/telegram/webhook"
            assert (
                await fake_telegram.post_webhook_async(
                    hook, fake_telegram.start_command(user), secret_token="wrong"
                )
                == 403
            )
            assert (
                await fake_telegram.post_webhook_async(hook, fake_telegram.start_command(user))
                == 403
            )
            with service.ctx.sessions() as session:
                assert session.scalar(select(func.count()).select_from(InboundMessage)) == 0
                assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        finally:
            await service.stop()

    run(scenario)


def test_a_restart_mid_registration_and_a_redelivered_sms(
    settings: Settings, directory: Directory, fake_twilio: FakeTwilio
) -> None:
    port = _free_port()
    config = service_settings(settings, telegram=None, twilio=fake_twilio, port=port)

    async def scenario() -> None:
        first = await start_service(config, port)
        try:
            for body in ["הצטרפות", "2", "מרים", "1"]:
                await sms(first, fake_twilio, body)
            # Twilio retries a webhook: the same MessageSid is acknowledged, not processed again.
            url = f"{first.url}/sms/inbound"
            for _ in range(2):
                assert (
                    await fake_twilio.send_inbound_async(
                        url, from_=PHONE, body="2", message_sid="SM" + "a" * 32
                    )
                    == 200
                )
            await first.flush()
        finally:
            await first.stop()
        second = await start_service(config, port)
        try:
            replies = await sms(second, fake_twilio, "1941")
            assert any(r.startswith(t(Language.HE, "bot.needs.prompt")) for r in replies)
            for body in ["0", "דלג", "1"]:
                await sms(second, fake_twilio, body)
            replies = await sms(second, fake_twilio, "1")
            assert replies[0] == t(Language.HE, "bot.summary.done")
            person = person_where(second, phone=PHONE)
            assert person is not None and person.zone_id is not None
        finally:
            await second.stop()

    run(scenario)


def test_one_person_on_both_channels_then_opt_out_and_erasure(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram, fake_twilio: FakeTwilio
) -> None:
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=fake_twilio, port=port)

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            for body in ["הצטרפות", "2", "מרים", "1", "2", "1941", "0", "דלג", "1", "1"]:
                await sms(service, fake_twilio, body)
            miriam = fake_telegram.new_user("מרים")
            chat = miriam.id
            await tg(service, fake_telegram, chat, fake_telegram.start_command(miriam))
            await tg(
                service,
                fake_telegram,
                chat,
                fake_telegram.press(miriam, fake_telegram.last_sent(chat), "עברית"),
            )
            await tg(
                service,
                fake_telegram,
                chat,
                fake_telegram.press(
                    miriam, fake_telegram.last_sent(chat), t(Language.HE, "bot.who.resident")
                ),
            )
            await tg(service, fake_telegram, chat, fake_telegram.text(miriam, "מרים"))
            sent = await tg(service, fake_telegram, chat, fake_telegram.contact(miriam, PHONE))
            with service.ctx.sessions() as session:
                assert session.scalar(select(func.count()).select_from(Person)) == 1
            # Already registered by SMS: Telegram now shows her menu.
            assert sent[-1]["text"] == t(Language.HE, "bot.menu.prompt")
            # STOP by SMS (a carrier word: Twilio answers it, Hosen stays silent).
            assert await sms(service, fake_twilio, "STOP") == []
            assert person_where(service, phone=PHONE).status == PersonStatus.OPTED_OUT  # type: ignore[union-attr]
            assert await sms(service, fake_twilio, "מה שלומכם") == []
            # Delete my data, from Telegram.
            await tg(service, fake_telegram, chat, fake_telegram.command(miriam, "delete"))
            sent = await tg(
                service,
                fake_telegram,
                chat,
                fake_telegram.press(
                    miriam, fake_telegram.last_sent(chat), t(Language.HE, "bot.choice.yes")
                ),
            )
            assert sent[0]["text"] == t(Language.HE, "bot.delete.done")
            with service.ctx.sessions() as session:
                person = session.scalars(select(Person)).one()
                assert person.status == PersonStatus.ERASED and person.phone is None
                assert person.telegram_chat_id is None and person.name is None
        finally:
            await service.stop()

    run(scenario)


def test_polling_mode_answers_through_get_updates(
    settings: Settings, directory: Directory, fake_telegram: FakeTelegram
) -> None:
    port = _free_port()
    config = service_settings(
        settings, telegram=fake_telegram, twilio=None, port=port, webhook=False
    )

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            assert fake_telegram.webhook is None
            dana = fake_telegram.new_user("Dana")
            fake_telegram.enqueue(fake_telegram.start_command(dana))
            for _ in range(3000):
                await service.flush()
                if fake_telegram.sent_to(dana.id):
                    break
                await asyncio.sleep(0.02)
            assert fake_telegram.last_sent(dana.id)["text"].startswith(
                t(Language.HE, "bot.language.prompt")
            )
            runtime = service.server.config.app.state.runtime  # type: ignore[attr-defined]
            assert runtime.watch is not None and runtime.watch.last_success is not None
        finally:
            await service.stop()

    run(scenario)


def test_sms_keeps_working_while_telegram_is_unreachable(
    settings: Settings, directory: Directory, fake_twilio: FakeTwilio
) -> None:
    port = _free_port()
    nowhere = _free_port()  # nothing listens there: Telegram is "down"
    config = service_settings(settings, telegram=None, twilio=fake_twilio, port=port).model_copy(
        update={
            "telegram_token": SecretStr("123456:" + "A" * 35),
            "telegram_api_url": AnyHttpUrl(f"http://127.0.0.1:{nowhere}"),
        }
    )

    async def scenario() -> None:
        ctx = build_context(config)
        app = build_app(ctx, run_worker=False, run_processor=False)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical")
        )
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(6000):
                if server.started:
                    break
                await asyncio.sleep(0.01)
            worker = Worker(
                sessions=ctx.sessions,
                senders=build_senders(config.model_copy(update={"telegram_token": None})),
                settings=config,
            )
            await worker.start()
            service = Service(ctx, server, task, worker, app.state.runtime.processor)
            replies = await sms(service, fake_twilio, "JOIN")
            assert replies and not app.state.runtime.telegram_ready.is_set()
            await worker.close()
        finally:
            server.should_exit = True
            await task
            ctx.engine.dispose()

    run(scenario)


def test_a_typed_phone_is_confirmed_by_a_code_sent_through_twilio(
    settings: Settings,
    directory: Directory,
    fake_telegram: FakeTelegram,
    fake_twilio: FakeTwilio,
    log_secrets: list[str],
) -> None:
    """The code goes out by the real twilio client to the Twilio fake (checked against the
    Messages API spec), in the person's language, one segment; typed back on Telegram, it
    proves the number. Neither the code nor the number reaches the logs."""
    phone = "+972525558888"
    log_secrets += [phone, "972525558888"]
    port = _free_port()
    config = service_settings(settings, telegram=fake_telegram, twilio=fake_twilio, port=port)
    ru = Language.RU

    async def scenario() -> None:
        service = await start_service(config, port)
        try:
            olga = fake_telegram.new_user("Ольга", language_code="ru")
            chat = olga.id

            async def press(label: str) -> list[dict[str, Any]]:
                update = fake_telegram.press(olga, fake_telegram.last_sent(chat), label)
                return await tg(service, fake_telegram, chat, update)

            await tg(service, fake_telegram, chat, fake_telegram.start_command(olga))
            await press(t(ru, "bot.language.name"))
            await press(t(ru, "bot.who.volunteer"))
            await tg(service, fake_telegram, chat, fake_telegram.text(olga, "Ольга Петрова"))
            sent = await tg(service, fake_telegram, chat, fake_telegram.text(olga, "052-555-8888"))
            assert sent[-1]["text"] == t(ru, "bot.phone_code.prompt")
            texts = fake_twilio.sent_to(phone)
            assert len(texts) == 1 and int(texts[0]["num_segments"]) == 1
            body = str(texts[0]["body"])
            code = "".join(ch for ch in body if ch.isdigit())[:6]
            log_secrets.append(code)
            assert body == t(ru, "phone.code_sms", code=code)
            sent = await tg(service, fake_telegram, chat, fake_telegram.text(olga, code))
            assert sent[0]["text"] == t(ru, "bot.phone_code.confirmed")
            with service.ctx.sessions() as session:
                conversation_draft = session.scalar(
                    select(Conversation.draft).where(Conversation.address == str(chat))
                )
            assert conversation_draft is not None
            assert conversation_draft["phone"] == phone
            assert conversation_draft["phone_source"] == "code"
            with service.ctx.sessions() as session:
                stored = session.scalars(
                    select(OutboxMessage.text).where(OutboxMessage.address == phone)
                ).all()
            assert stored == [""]  # sent and confirmed: the text no longer holds the code
        finally:
            await service.stop()

    run(scenario)
