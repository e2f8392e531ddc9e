"""The real python-telegram-bot client against FakeTelegram, over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp import web
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from fakes.telegram import SECRET_TOKEN_HEADER, FakeTelegram
from tests.loopback_server import serve

pytestmark = pytest.mark.e2e
T = TypeVar("T")

KEYBOARD = InlineKeyboardMarkup(
    [
        [InlineKeyboardButton("אני בסדר", callback_data="c:1:ok")],
        [InlineKeyboardButton("צריך עזרה", callback_data="c:1:help")],
    ]
)


def with_bot(fake: FakeTelegram, body: Callable[[Bot], Awaitable[T]]) -> T:
    async def run() -> T:
        async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as bot:
            return await body(bot)

    return asyncio.run(run())


def test_send_message_with_inline_keyboard(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user("Dana")

    async def body(bot: Bot) -> Any:
        return await bot.send_message(dana.id, "תרגיל: האם אתם בסדר?", reply_markup=KEYBOARD)

    message = with_bot(fake_telegram, body)
    assert message.chat.id == dana.id and message.chat.first_name == "Dana"
    assert message.reply_markup == KEYBOARD
    stored = fake_telegram.last_sent(dana.id)
    assert stored["text"] == "תרגיל: האם אתם בסדר?"
    assert stored["reply_markup"]["inline_keyboard"][1][0]["callback_data"] == "c:1:help"
    method, params = fake_telegram.sent[-1]
    assert method == "sendMessage" and params["chat_id"] == dana.id  # decoded from the form


def test_message_ids_count_per_chat_including_the_persons_own(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user()
    fake_telegram.text(dana, "hi")  # message 1, from Dana

    async def body(bot: Bot) -> list[int]:
        return [(await bot.send_message(dana.id, f"m{i}")).message_id for i in range(2)]

    assert with_bot(fake_telegram, body) == [2, 3]


def test_get_updates_round_trip_and_offset_confirms(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user("Dana", language_code="ar")
    fake_telegram.enqueue(
        fake_telegram.start_command(dana, "group-scouts-7"),
        fake_telegram.contact(dana, "+972501234567"),
        fake_telegram.location(dana, 31.61, 34.76),
    )

    async def body(bot: Bot) -> tuple[tuple[Update, ...], tuple[Update, ...]]:
        first = await bot.get_updates(timeout=0)
        second = await bot.get_updates(offset=first[-1].update_id + 1, timeout=0)
        return first, second

    first, second = with_bot(fake_telegram, body)
    start, contact, location = first
    assert start.message is not None and start.message.text == "/start group-scouts-7"
    assert start.message.entities[0].type == "bot_command"
    assert contact.message is not None and contact.message.contact is not None
    assert contact.message.contact.user_id == dana.id
    assert location.message is not None and location.message.location is not None
    assert location.message.location.latitude == pytest.approx(31.61)
    assert second == ()
    assert fake_telegram.pending_updates == []


def test_long_poll_returns_as_soon_as_an_update_arrives(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user()

    async def body(bot: Bot) -> tuple[Update, ...]:
        before = fake_telegram.polls
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await _until(lambda: fake_telegram.polls > before)  # the poll is waiting at the fake
        fake_telegram.enqueue(fake_telegram.text(dana, "שלום"))
        return await asyncio.wait_for(poll, 10)

    (update,) = with_bot(fake_telegram, body)
    assert update.message is not None and update.message.text == "שלום"


def test_a_second_poller_terminates_the_first(fake_telegram: FakeTelegram) -> None:
    async def body(bot: Bot) -> None:
        before = fake_telegram.polls
        first = asyncio.create_task(bot.get_updates(timeout=30))
        # The first poll must be waiting at the fake before the second arrives (a fixed pause
        # was too short on a busy machine: the first then came second and simply waited).
        await _until(lambda: fake_telegram.polls > before)
        async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as other_instance:
            await other_instance.get_updates(timeout=0)
        with pytest.raises(Conflict):
            await asyncio.wait_for(first, 10)

    with_bot(fake_telegram, body)


def test_callback_query_edit_and_answer(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user()

    async def body(bot: Bot) -> None:
        sent = await bot.send_message(dana.id, "בדיקה", reply_markup=KEYBOARD)
        fake_telegram.enqueue(
            fake_telegram.callback(dana, fake_telegram.last_sent(dana.id), "c:1:ok")
        )
        (update,) = await bot.get_updates()
        query = update.callback_query
        assert query is not None and query.data == "c:1:ok" and query.message is not None
        assert query.message.message_id == sent.message_id
        assert await bot.answer_callback_query(query.id, text="תודה")
        with pytest.raises(BadRequest, match=r"(?i)query is too old"):
            await bot.answer_callback_query(query.id)
        await bot.edit_message_text("תודה, סומן: בסדר", chat_id=dana.id, message_id=sent.message_id)
        with pytest.raises(BadRequest, match="not modified"):
            await bot.edit_message_text(
                "תודה, סומן: בסדר", chat_id=dana.id, message_id=sent.message_id
            )

    with_bot(fake_telegram, body)
    final = fake_telegram.last_sent(dana.id)
    assert final["text"] == "תודה, סומן: בסדר" and "reply_markup" not in final  # keyboard gone
    assert next(iter(fake_telegram.callback_answers.values()))["text"] == "תודה"


def test_press_requires_an_existing_button(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user()
    with_bot(fake_telegram, lambda bot: bot.send_message(dana.id, "?", reply_markup=KEYBOARD))
    message = fake_telegram.last_sent(dana.id)
    assert fake_telegram.press(dana, message, "צריך עזרה")["callback_query"]["data"] == "c:1:help"
    with pytest.raises(AssertionError, match="no button"):
        fake_telegram.callback(dana, message, "c:9:ok")
    stale = fake_telegram.callback(dana, message, "c:9:ok", check_button=False)
    assert stale["callback_query"]["data"] == "c:9:ok"


def test_reply_keyboard_is_tracked_per_chat(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user()
    share = ReplyKeyboardMarkup(
        [[KeyboardButton("שיתוף מספר", request_contact=True)]], one_time_keyboard=True
    )

    async def body(bot: Bot) -> None:
        await bot.send_message(dana.id, "מה המספר שלך?", reply_markup=share)
        assert fake_telegram.reply_keyboards[dana.id]["keyboard"][0][0]["request_contact"] is True
        await bot.send_message(dana.id, "תודה", reply_markup=ReplyKeyboardRemove())

    with_bot(fake_telegram, body)
    assert dana.id not in fake_telegram.reply_keyboards


def test_edited_sticker_photo_and_group_updates_parse(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user()
    group = fake_telegram.new_group("צופים קריית תמר")
    original = fake_telegram.text(dana, "Dana Levi")
    fake_telegram.enqueue(
        fake_telegram.edited(original, "Dana Cohen"),
        fake_telegram.sticker(dana),
        fake_telegram.photo(dana, caption="my street"),
        fake_telegram.text(dana, "/status@hosen_test_bot", chat=group),
        fake_telegram.contact(dana, "+972501234568", contact_user_id=None, first_name="Mum"),
    )
    edited, sticker, photo, in_group, other_contact = with_bot(
        fake_telegram, lambda bot: bot.get_updates()
    )
    assert edited.edited_message is not None and edited.edited_message.text == "Dana Cohen"
    assert sticker.message is not None and sticker.message.sticker is not None
    assert (
        photo.message is not None and photo.message.photo and photo.message.caption == "my street"
    )
    assert in_group.effective_chat is not None and in_group.effective_chat.type == "group"
    assert other_contact.message is not None and other_contact.message.contact is not None
    assert other_contact.message.contact.user_id is None


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda bot: bot._post("sendMessage", {"text": "no chat"}),
            "missing required field 'chat_id'",
        ),
        (
            lambda bot: bot._post("sendMessage", {"chat_id": 1, "text": "x", "colour": "red"}),
            "unknown field 'colour'",
        ),
        (
            lambda bot: bot._post(
                "sendMessage", {"chat_id": 1, "text": "x", "disable_notification": "loud"}
            ),
            "expected Boolean",
        ),
        (
            lambda bot: bot._post("sendMesage", {"chat_id": 1, "text": "x"}),
            "no such Bot API method",
        ),
        (
            lambda bot: bot._post(
                "sendMessage",
                {
                    "chat_id": 1,
                    "text": "x",
                    "reply_markup": {"inline_keyboard": [[{"text": "a", "callbak_data": "b"}]]},
                },
            ),
            "unknown field 'callbak_data' in InlineKeyboardButton",
        ),
    ],
    ids=["missing-required", "unknown-field", "wrong-type", "unknown-method", "nested-typo"],
)
def test_spec_violations_are_refused_and_recorded(
    fake_telegram: FakeTelegram, call: Callable[[Bot], Awaitable[Any]], expected: str
) -> None:
    fake_telegram.new_user(user_id=1)
    with pytest.raises((BadRequest, InvalidToken)):
        with_bot(fake_telegram, call)
    assert any(expected in v for v in fake_telegram.violations), fake_telegram.violations
    fake_telegram.violations.clear()  # provoked on purpose


def test_json_body_is_checked_strictly(fake_telegram: FakeTelegram) -> None:
    async def post(body: dict[str, Any]) -> dict[str, Any]:
        url = f"{fake_telegram.base_url}{fake_telegram.token}/sendMessage"
        async with fake_telegram.client.post(url, json=body) as response:
            return dict(await response.json())

    dana = fake_telegram.new_user()
    ok = fake_telegram.run(post({"chat_id": dana.id, "text": "hi"}))
    bad = fake_telegram.run(post({"chat_id": dana.id, "text": 5}))
    assert ok["ok"] is True and ok["result"]["text"] == "hi"
    assert bad == {"ok": False, "error_code": 400, "description": bad["description"]}
    assert "expected String" in bad["description"]
    fake_telegram.violations.clear()


def test_multipart_form_is_accepted(fake_telegram: FakeTelegram) -> None:
    """python-telegram-bot switches to multipart when a call carries a file; same checks."""
    from aiohttp import FormData

    dana = fake_telegram.new_user()

    async def post(fields: dict[str, str]) -> dict[str, Any]:
        form = FormData(default_to_multipart=True)
        for name, value in fields.items():
            form.add_field(name, value)
        url = f"{fake_telegram.base_url}{fake_telegram.token}/sendMessage"
        async with fake_telegram.client.post(url, data=form) as response:
            return dict(await response.json())

    markup = json.dumps({"inline_keyboard": [[{"text": "OK", "callback_data": "c:1:ok"}]]})
    ok = fake_telegram.run(post({"chat_id": str(dana.id), "text": "hi", "reply_markup": markup}))
    assert (
        ok["ok"] is True and ok["result"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "OK"
    )
    bad = fake_telegram.run(post({"chat_id": "not-a-number-or-@name", "text": "hi", "bogus": "1"}))
    assert bad["ok"] is False and "unknown field 'bogus'" in bad["description"]
    fake_telegram.violations.clear()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"text": "<b>bold</i>"}, "can't parse entities"),
        ({"text": "a < b"}, "can't parse entities"),
        ({"text": "x" * 4097}, "too long"),
        (
            {
                "text": "x",
                "reply_markup": InlineKeyboardMarkup(
                    [[InlineKeyboardButton("x", callback_data="d" * 65)]]
                ),
            },
            "BUTTON_DATA_INVALID",
        ),
        (
            {
                "text": "x",
                "reply_markup": InlineKeyboardMarkup(
                    [[InlineKeyboardButton("map", url="shelter 4")]]
                ),
            },
            "button URL",
        ),
        (
            {
                "text": "x",
                "reply_markup": InlineKeyboardMarkup(
                    [[InlineKeyboardButton("", callback_data="c:1:ok")]]
                ),
            },
            "non-empty",
        ),
    ],
    ids=[
        "unbalanced-html",
        "bare-lt",
        "too-long",
        "callback-data-65-bytes",
        "bad-url",
        "empty-label",
    ],
)
def test_telegram_rules_beyond_the_spec(
    fake_telegram: FakeTelegram, kwargs: dict[str, Any], error: str
) -> None:
    dana = fake_telegram.new_user()
    with pytest.raises(BadRequest, match=f"(?i){error}"):
        with_bot(
            fake_telegram,
            lambda bot: bot.send_message(
                dana.id, parse_mode="HTML" if "<" in kwargs["text"] else None, **kwargs
            ),
        )
    assert fake_telegram.violations == []  # valid per spec, refused by Telegram's own rules


def test_html_is_parsed_into_entities(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user()
    message = with_bot(
        fake_telegram,
        lambda bot: bot.send_message(dana.id, "<b>תרגיל</b> &amp; בדיקה", parse_mode="HTML"),
    )
    assert message.text == "תרגיל & בדיקה"
    assert message.entities[0].type == "bold" and message.entities[0].length == 5


def test_markdown_v2_must_be_escaped(fake_telegram: FakeTelegram) -> None:
    from telegram.helpers import escape_markdown

    dana = fake_telegram.new_user()
    name = "Dana (Levi) - 1.5!"
    text = f"*תרגיל* שלום {escape_markdown(name, version=2)}"
    message = with_bot(
        fake_telegram, lambda bot: bot.send_message(dana.id, text, parse_mode="MarkdownV2")
    )
    assert message.text == f"תרגיל שלום {name}"
    with pytest.raises(BadRequest, match=r"(?i)reserved"):
        with_bot(
            fake_telegram,
            lambda bot: bot.send_message(dana.id, f"שלום {name}", parse_mode="MarkdownV2"),
        )


def test_blocked_and_unknown_chats(fake_telegram: FakeTelegram) -> None:
    fake_telegram.blocked.add(555)
    fake_telegram.missing_chats.add(556)
    with pytest.raises(Forbidden, match="blocked by the user"):
        with_bot(fake_telegram, lambda bot: bot.send_message(555, "x"))
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        with_bot(fake_telegram, lambda bot: bot.send_message(556, "x"))


def test_wrong_token_is_unauthorized(fake_telegram: FakeTelegram) -> None:
    async def run() -> None:
        async with Bot("1:wrong", base_url=fake_telegram.base_url) as bot:
            await bot.get_me()

    with pytest.raises(InvalidToken):
        asyncio.run(run())


def test_commands_chat_action_and_get_chat(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user("Dana")

    async def body(bot: Bot) -> None:
        assert await bot.set_my_commands(
            [("start", "התחלה"), ("status", "מצב")], language_code="he"
        )
        assert [c.command for c in await bot.get_my_commands(language_code="he")] == [
            "start",
            "status",
        ]
        assert await bot.send_chat_action(dana.id, "typing")
        chat = await bot.get_chat(dana.id)
        assert chat.first_name == "Dana"
        with pytest.raises(BadRequest):
            await bot.set_my_commands([("Start!", "bad")])

    with_bot(fake_telegram, body)


async def _webhook_receiver(secret: str) -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        if request.headers.get(SECRET_TOKEN_HEADER) != secret:
            return web.Response(status=403)
        received.append(await request.json())
        return web.Response(status=200)

    runner, base = await serve(handle, "/telegram/webhook")
    return runner, f"{base}/telegram/webhook", received


def test_webhook_post_carries_the_secret_token(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user()

    async def run() -> None:
        runner, url, received = await _webhook_receiver("s3cret-token")
        try:
            update = fake_telegram.text(dana, "שלום")
            assert (
                await fake_telegram.post_webhook_async(url, update, secret_token="s3cret-token")
                == 200
            )
            assert await fake_telegram.post_webhook_async(url, update, secret_token="wrong") == 403
            assert await fake_telegram.post_webhook_async(url, update) == 403
            assert received == [json.loads(json.dumps(update))]
            async with Bot(fake_telegram.token, base_url=fake_telegram.base_url) as bot:
                await bot.set_webhook(url, secret_token="s3cret-token")
                with pytest.raises(Conflict):
                    await bot.get_updates()
                assert (await bot.get_webhook_info()).url == url
                assert await fake_telegram.deliver_async(fake_telegram.text(dana, "again")) == 200
                await bot.delete_webhook()
            assert await fake_telegram.deliver_async(fake_telegram.text(dana, "queued")) is None
        finally:
            await runner.cleanup()

    asyncio.run(run())
    assert len(fake_telegram.pending_updates) == 1


def test_application_polls_and_answers(fake_telegram: FakeTelegram) -> None:
    """A python-telegram-bot Application in polling mode, end to end through the fake."""
    dana = fake_telegram.new_user("Dana")

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        payload = context.args[0] if context.args else "-"
        await context.bot.send_message(
            update.effective_chat.id, f"ברוכה הבאה ({payload})", reply_markup=KEYBOARD
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        await query.edit_message_text(f"נרשם: {query.data}")

    async def run() -> None:
        app = (
            Application.builder()
            .token(fake_telegram.token)
            .base_url(fake_telegram.base_url)
            .build()
        )
        app.add_handler(CommandHandler("start", start))
        app.add_handler(CallbackQueryHandler(pressed))
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0, timeout=1)
            fake_telegram.enqueue(fake_telegram.start_command(dana, "scouts"))
            await _until(lambda: bool(fake_telegram.sent_to(dana.id)))
            fake_telegram.enqueue(
                fake_telegram.press(dana, fake_telegram.last_sent(dana.id), "צריך עזרה")
            )
            await _until(lambda: fake_telegram.last_sent(dana.id).get("edit_date") is not None)
            await app.updater.stop()
            await app.stop()

    asyncio.run(run())
    assert fake_telegram.last_sent(dana.id)["text"] == "נרשם: c:1:help"
    assert fake_telegram.calls("deleteWebhook")  # PTB clears any webhook before polling


async def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait for the bot's reply (an event from another task, not a timer under test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_without_history_nothing_is_kept() -> None:
    """The benchmarks' mode: answers stay realistic, memory does not grow with recipients."""
    with FakeTelegram(keep_history=False) as fake:

        async def body(bot: Bot) -> list[int]:
            return [(await bot.send_message(100 + i, "x")).message_id for i in range(3)]

        assert with_bot(fake, body) == [1, 2, 3]
        assert fake.sent == [] and fake.sent_to(100) == [] and fake._chats == {}
        assert fake.traffic.accepted == 3 and fake.violations == []


def test_replies_quote_an_existing_message(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user()
    asked = fake_telegram.text(dana, "מה המצב?")["message"]["message_id"]

    async def body(bot: Bot) -> None:
        reply = await bot.send_message(dana.id, "הכול בסדר", reply_to_message_id=asked)
        assert reply.reply_to_message is not None and reply.reply_to_message.text == "מה המצב?"
        with pytest.raises(BadRequest, match=r"(?i)replied not found"):
            await bot.send_message(dana.id, "x", reply_to_message_id=9999)

    with_bot(fake_telegram, body)


def test_a_method_in_the_webhook_answer_is_checked_and_run(fake_telegram: FakeTelegram) -> None:
    """Bot API "Making requests when getting updates": the webhook may answer with a call."""
    dana = fake_telegram.new_user()
    with_bot(fake_telegram, lambda bot: bot.send_message(dana.id, "?", reply_markup=KEYBOARD))
    message = fake_telegram.last_sent(dana.id)
    answers: list[dict[str, Any]] = []

    async def run() -> None:
        async def handle(request: web.Request) -> web.Response:
            return web.json_response(answers.pop(0))

        runner, base = await serve(handle, "/hook")
        url = f"{base}/hook"
        try:
            press = fake_telegram.callback(dana, message, "c:1:ok")
            query_id = press["callback_query"]["id"]
            answers.append({"method": "answerCallbackQuery", "callback_query_id": query_id})
            assert await fake_telegram.post_webhook_async(url, press) == 200
            assert query_id in fake_telegram.callback_answers
            # A call that breaks the spec is refused and recorded, like any other request.
            answers.append({"method": "answerCallbackQuery", "show_alert": "yes"})
            assert await fake_telegram.post_webhook_async(url, fake_telegram.text(dana, "x")) == 200
            answers.append({"method": "sendPigeon", "chat_id": dana.id})
            assert await fake_telegram.post_webhook_async(url, fake_telegram.text(dana, "y")) == 200
        finally:
            await runner.cleanup()

    asyncio.run(run())
    assert len(fake_telegram.violations) >= 2
    assert any("sendPigeon" in v for v in fake_telegram.violations)
    assert any("callback_query_id" in v for v in fake_telegram.violations)
    fake_telegram.violations.clear()  # provoked on purpose
