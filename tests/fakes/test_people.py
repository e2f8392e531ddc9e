"""Simulated people answer check-ins through the fakes, on a compressible clock."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import Forbidden
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from config.settings import Settings
from dispatch.clients import open_twilio_client
from fakes.people import (
    Answer,
    Delay,
    Intent,
    People,
    Persona,
    SeenMessage,
    default_responder,
)
from fakes.telegram import FakeTelegram
from fakes.twilio import SIGNATURE_HEADER, FakeTwilio
from tests.loopback_server import serve

pytestmark = pytest.mark.e2e

CHECK_IN = InlineKeyboardMarkup(
    [
        [
            InlineKeyboardButton("אני בסדר", callback_data="c:7:ok"),
            InlineKeyboardButton("צריך עזרה", callback_data="c:7:help"),
        ]
    ]
)


def test_delays_are_long_tailed_around_the_median() -> None:
    rng = random.Random(1)
    delays = sorted(Delay(median=120, sigma=1.0).draw(rng) for _ in range(2001))
    assert 100 < delays[1000] < 140
    assert delays[1800] > 3 * delays[1000]  # the 90th percentile is far out


def test_default_responder() -> None:
    telegram = SeenMessage("telegram", "?", (("OK", "c:7:ok"), ("Help", "c:7:help")), {})
    assert default_responder("help", telegram) == Answer(callback_data="c:7:help")
    assert default_responder("ok", SeenMessage("telegram", "thanks", (), {})) is None
    assert default_responder("ok", SeenMessage("sms", "? 1/2", (), {})) == Answer(text="1")
    wrong = default_responder("wrong_number", SeenMessage("sms", "?", (), {}))
    assert wrong is not None and wrong.text and "Wrong number" in wrong.text


def test_telegram_people_press_their_buttons_when_time_advances(
    fake_telegram: FakeTelegram,
) -> None:
    people = People(telegram=fake_telegram, manual=True, seed=4)
    fine = people.add_telegram(Persona("ok", Delay(median=60)))
    needs_help = people.add_telegram(Persona("help", Delay(median=600)))
    silent = people.add_telegram(Persona("silent"), chat_id=777_000_001)
    assert silent.address == 777_000_001
    blocked = people.add_telegram(Persona("blocked"))

    async def run() -> None:
        async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as bot:
            for person in (fine, needs_help, silent):
                await bot.send_message(
                    person.address, "תרגיל: האם אתם בסדר?", reply_markup=CHECK_IN
                )
                await bot.send_message(person.address, "(no buttons: nothing to answer)")
            with pytest.raises(Forbidden):
                await bot.send_message(blocked.address, "תרגיל", reply_markup=CHECK_IN)

    asyncio.run(run())
    assert fake_telegram.pending_updates == []
    answered = 0
    for _ in range(200):  # ten simulated hours, one three-minute step at a time
        answered += people.advance(180)
    assert answered == 2 and people.waiting == 0
    presses = {
        u["callback_query"]["from"]["id"]: u["callback_query"]["data"]
        for u in fake_telegram.pending_updates
    }
    assert presses == {fine.address: "c:7:ok", needs_help.address: "c:7:help"}
    assert {r.intent for r in people.reactions} == {"ok", "help"}
    people.close()


async def _sms_receiver(auth_token: str) -> tuple[web.AppRunner, str, list[dict[str, str]]]:
    received: list[dict[str, str]] = []
    validator = RequestValidator(auth_token)

    async def handle(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not validator.validate(
            str(request.url), form, request.headers.get(SIGNATURE_HEADER, "")
        ):
            return web.Response(status=403)
        received.append(form)
        return web.Response(status=200)

    runner, base = await serve(handle, "/sms/inbound")
    return runner, f"{base}/sms/inbound", received


def test_sms_people_answer_on_a_compressed_clock(
    fake_twilio: FakeTwilio, fake_settings: Settings
) -> None:
    """time_scale=10,000: answers with a 60 s median arrive within milliseconds."""

    def responder(intent: Intent, message: SeenMessage) -> Answer | None:
        if "1" not in message.text:
            return None  # not a check-in
        return default_responder(intent, message)

    async def run() -> list[dict[str, str]]:
        runner, url, received = await _sms_receiver(fake_twilio.auth_token)
        people = People(
            twilio=fake_twilio, sms_webhook_url=url, responder=responder, time_scale=10_000, seed=2
        )
        phones = {
            "+972501000001": people.add_sms(Persona("ok", Delay(median=60)), "+972501000001"),
            "+972501000002": people.add_sms(Persona("help", Delay(median=60)), "+972501000002"),
            "+972501000003": people.add_sms(
                Persona("wrong_number", Delay(median=60)), "+972501000003"
            ),
            "+972501000004": people.add_sms(Persona("landline"), "+972501000004"),
        }
        try:
            async with open_twilio_client(fake_settings) as client:
                for phone in phones:
                    try:
                        await client.messages.create_async(
                            to=phone,
                            from_=fake_twilio.phone_number,
                            body="תרגיל: בסדר? השיבו 1 או 2",
                        )
                    except TwilioRestException as error:
                        assert phone == "+972501000004" and error.code == 21614
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while len(received) < 3 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            return received
        finally:
            people.close()
            await runner.cleanup()

    received = asyncio.run(run())
    answers = {form["From"]: form["Body"] for form in received}
    assert answers["+972501000001"] == "1" and answers["+972501000002"] == "2"
    assert "Wrong number" in answers["+972501000003"]
    assert set(answers) == {"+972501000001", "+972501000002", "+972501000003"}


def test_a_person_answers_once_until_reset(fake_telegram: FakeTelegram) -> None:
    people = People(telegram=fake_telegram, manual=True)
    person = people.add_telegram(Persona("ok", Delay(median=1, sigma=0.01)))

    async def send(bot_text: str) -> None:
        async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as bot:
            await bot.send_message(person.address, bot_text, reply_markup=CHECK_IN)

    asyncio.run(send("check-in"))
    asyncio.run(send("reminder"))  # already answering: ignored
    assert people.advance(10) == 1
    asyncio.run(send("another reminder"))  # answered: ignored
    assert people.advance(10) == 0
    people.reset()
    asyncio.run(send("next drill"))
    assert people.advance(10) == 1


def test_personas_drawn_from_a_mix_are_repeatable(fake_telegram: FakeTelegram) -> None:
    def kinds(seed: int) -> list[str]:
        people = People(telegram=fake_telegram, manual=True, seed=seed)
        return [people.draw_persona().kind for _ in range(500)]

    assert kinds(1) == kinds(1)
    assert 350 < kinds(1).count("ok") < 450


def test_the_people_fixture_joins_the_fakes(fake_telegram: FakeTelegram, people: People) -> None:
    person = people.add_telegram(Persona("help", Delay(median=5, sigma=0.01)))

    async def send() -> None:
        async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as bot:
            await bot.send_message(person.address, "?", reply_markup=CHECK_IN)

    asyncio.run(send())
    assert people.advance(60) == 1
    (update,) = fake_telegram.pending_updates
    assert update["callback_query"]["data"] == "c:7:help"


def test_close_drops_answers_not_given_yet(fake_telegram: FakeTelegram) -> None:
    people = People(telegram=fake_telegram, time_scale=1.0)  # real time: an hour away
    person = people.add_telegram(Persona("ok", Delay(median=3600, sigma=0.01)))

    async def send() -> None:
        async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as bot:
            await bot.send_message(person.address, "?", reply_markup=CHECK_IN)

    asyncio.run(send())
    assert people.waiting == 1
    people.close()
    assert people.waiting == 0 and fake_telegram.on_message == []
