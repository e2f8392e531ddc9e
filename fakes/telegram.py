"""A loopback fake of the Telegram Bot API for tests, the demo and the benchmarks.

:class:`FakeTelegram` serves ``/bot<token>/<method>`` on 127.0.0.1 and checks every request
against the official spec (``fakes/specs/telegram_bot_api.json``): the method exists, required
fields are present, no field is unknown and every value has the right type, in JSON bodies as in
the URL-encoded or multipart forms python-telegram-bot sends. A request that breaks the spec is
answered the way Telegram answers (``{"ok": false, "error_code": 400, "description": ...}``) and
recorded in :attr:`FakeTelegram.violations`, which the ``fake_telegram`` pytest fixture turns
into a failed test.

Reproduced realistically: getMe; getUpdates (long poll, ``offset`` confirming updates,
``limit``, ``allowed_updates``, 409 while a webhook is set or when a newer poll takes over);
setWebhook / deleteWebhook / getWebhookInfo; sendMessage (a full Message with per-chat
message ids, HTML and MarkdownV2 checked and turned into entities, text and callback-data
limits), editMessageText,
editMessageReplyMarkup (including "message is not modified"), answerCallbackQuery (once per
query), sendChatAction, setMyCommands / getMyCommands / deleteMyCommands, getChat. Blocked
users (403) and unknown chats (400) are configurable per chat. Tests build realistic updates
(text, ``/start`` payloads, contact and location shares, button presses, edits, stickers,
photos, group messages) and deliver them through getUpdates or as webhook POSTs carrying
``X-Telegram-Bot-Api-Secret-Token``; a Bot API call in the webhook's JSON answer (``{"method":
"answerCallbackQuery", ...}``) is checked against the spec and run, as Telegram runs it.

Deliberately NOT reproduced: files and media uploads (sendPhoto and friends answer
"not reproduced" and count as a violation), legacy Markdown (kept as sent), MarkdownV2's
nesting rules and custom emoji, inline mode, payments, business and forum features, group administration, message
deletion, webhook retries by Telegram after a failed POST, the HTTPS requirement and port
whitelist of setWebhook (the fake accepts http:// loopback URLs), expiry of callback queries
after some minutes, and Telegram's exact (unpublished) flood-control arithmetic.

Faults and limits, off by default, switch on at runtime: ``fake.faults = Faults(...)`` (5xx,
held requests, lost replies, 429 bursts, a stable fraction of chats that blocked the bot or do
not exist; see ``fakes.faults``) and ``fake.limits = RateLimits.telegram()`` (30 messages a
second per bot, 1 a second per chat, 20 a minute per group, answered with 429 and
``retry_after``). ``fake.traffic`` counts requests, accepted messages, 429s and per-second
rates for the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, ClassVar, Literal

from aiohttp import web
from aiohttp.web_request import FileField

from fakes.load import LatencyReport, open_loop
from fakes.loopback import LoopbackServer
from fakes.telegram_spec import BotApiSpec, load_spec

JSON = dict[str, Any]

SECRET_TOKEN_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFAULT_ALLOWED_UPDATES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Methods that post a message into a chat: the ones Telegram's rate limits count.
SENDING_METHODS = frozenset(
    {
        "sendMessage",
        "forwardMessage",
        "copyMessage",
        "sendPhoto",
        "sendDocument",
        "sendSticker",
        "sendLocation",
        "sendContact",
        "sendPoll",
    }
)
_BAD_GATEWAY = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
MAX_TEXT = 4096
MAX_CALLBACK_DATA_BYTES = 64
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_BOT_COMMAND_AT_START = re.compile(r"^/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?")
_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
        "tg-time",
    }
)
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


class BotApiError(Exception):
    """An error answer, shaped like Telegram's."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets and text limits."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class TelegramUser:
    """A person on Telegram, as the fake's update builders use them."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None

    def to_json(self) -> JSON:
        data: JSON = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for name in ("last_name", "username", "language_code"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    def private_chat(self) -> JSON:
        chat: JSON = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name is not None:
            chat["last_name"] = self.last_name
        if self.username is not None:
            chat["username"] = self.username
        return chat


@dataclass(frozen=True)
class Call:
    """One accepted Bot API call, with its parameters decoded to JSON values."""

    method: str
    params: JSON

    def __iter__(self) -> Any:  # so `method, params = call` works, as for a tuple
        return iter((self.method, self.params))


class FakeTelegram(LoopbackServer):
    """The Bot API on 127.0.0.1. See the module docstring for what it does and does not do.

    Point python-telegram-bot at it with ``Bot(token, base_url=fake.base_url,
    base_file_url=fake.base_file_url)`` or set ``HOSEN_TELEGRAM_API_URL=fake.url``.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        bot_username: str = "hosen_test_bot",
        strict_chats: bool = False,
        keep_history: bool = True,
        clock: Callable[[], float] = time.time,
        spec: BotApiSpec | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        bot_id = 7_000_000_000 + secrets.randbelow(1_000_000)
        self.token = token or f"{bot_id}:{secrets.token_urlsafe(26)[:35]}"
        self.bot_user: JSON = {
            "id": int(self.token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": "Hosen",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.spec = spec or load_spec()
        self.strict_chats = strict_chats
        self.keep_history = keep_history
        self.clock = clock

        self.violations: list[str] = []
        self.sent: list[Call] = []
        # Called on the fake's loop with each Message the bot sends (simulated people listen).
        self.on_message: list[Callable[[JSON], None]] = []
        self.method_counts: Counter[str] = Counter()
        self.blocked: set[int] = set()
        # Chats whose sends hang, never processed (a provider call stuck in flight: see
        # :meth:`_trickle`).
        self.hung: set[int] = set()
        self.missing_chats: set[int] = set()
        self.callback_answers: dict[str, JSON] = {}
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.webhook: JSON | None = None
        # The reply keyboard each chat's client shows now (the last one sent, until removed).
        self.reply_keyboards: dict[int, JSON] = {}

        self._chats: dict[int, JSON] = {}
        self._messages: dict[int, dict[int, JSON]] = {}
        self._next_message_id: dict[int, int] = {}
        self._updates: list[JSON] = []
        self._update_ids = itertools.count(10_000 + secrets.randbelow(1_000_000))
        self._user_ids = itertools.count(100_000_000 + secrets.randbelow(100_000_000))
        self._group_ids = itertools.count(4_000_000_000 + secrets.randbelow(1_000_000))
        self._query_ids = itertools.count(1)
        self._message_ids = itertools.count(1)  # without history: one sequence for all chats
        self._open_queries: dict[str, JSON] = {}
        self._allowed_updates: frozenset[str] = DEFAULT_ALLOWED_UPDATES
        self._update_event: asyncio.Event | None = None
        self._poll_generation = 0
        self._closing = False
        self._implementations = self._methods()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """python-telegram-bot's ``base_url`` for this fake (the token is appended by PTB)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    # -- server ------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        self._update_event = asyncio.Event()
        app = web.Application(client_max_size=60 * 1024 * 1024)
        self.add_control_routes(app)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        return app

    async def on_shutdown(self) -> None:
        self._closing = True
        if self._update_event is not None:
            self._update_event.set()

    @property
    def requests(self) -> int:
        """HTTP requests received so far (any method, any answer)."""
        return self.traffic.requests

    @property
    def polls(self) -> int:
        """getUpdates calls that have reached the point of waiting (or answering) so far."""
        with self._lock:
            return self._poll_generation

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.traffic.count("request")
        if request.match_info["token"] != self.token:
            return _answer(BotApiError(401, "Unauthorized").body(), 401)
        name = self.spec.method_name(request.match_info["method"])
        if name is None:
            self._violation(f"{request.match_info['method']}: no such Bot API method")
            return _answer(BotApiError(404, "Not Found").body(), 404)
        try:
            params, form = await _read_params(request)
        except BotApiError as error:
            self._violation(f"{name}: {error.description}")
            return _answer(error.body(), error.code)
        problems = self.spec.check_request(name, params, form=form)
        if problems:
            for problem in problems:
                self._violation(problem)
            return _answer(BotApiError(400, "Bad Request: " + "; ".join(problems)).body(), 400)
        params = self._decode(name, params) if form else params
        self.method_counts[name] += 1
        faults = self.faults
        if name in SENDING_METHODS and str(params.get("chat_id")) in {str(c) for c in self.hung}:
            return await self._trickle(request, faults.hold_seconds)
        outcome = faults.decide(name)
        if outcome == "server_error":
            self.traffic.count(outcome)
            if self.traffic.server_errors % 2:
                return web.Response(status=502, text=_BAD_GATEWAY, content_type="text/html")
            return _answer(BotApiError(500, "Internal Server Error").body(), 500)
        if outcome == "timeout":
            self.traffic.count(outcome)
            await self.hold(faults.hold_seconds)
            return _answer(BotApiError(504, "Gateway Timeout").body(), 504)
        if outcome == "throttled":
            return self._too_many(faults.retry_after)
        try:
            refused = await self.before_method(name, params)
            if refused is not None:
                raise refused
            result = await self._call(name, params)
        except BotApiError as error:
            if error.code == 429:
                self.traffic.count("throttled")
            else:
                self.traffic.count("refused")
            return _answer(error.body(), error.code)
        if name in SENDING_METHODS:
            self.traffic.count("lost_reply" if outcome == "lost_reply" else "accepted")
            for listener in list(self.on_message):
                listener(result)
        if outcome == "lost_reply":
            await self.hold(faults.hold_seconds)
        return _answer({"ok": True, "result": result}, 200)

    async def _trickle(self, request: web.Request, seconds: float) -> web.StreamResponse:
        """A call that hangs however patient the client is: the answer's head at once, then a
        byte of JSON whitespace now and then (every read comes within the client's read
        timeout), and after ``seconds`` a 504; the message is never processed."""
        self.traffic.count("timeout")
        response = web.StreamResponse(status=504, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0 and not self._closing:
            await response.write(b" ")
            await self.hold(min(left, 2.0))
        await response.write(json.dumps(BotApiError(504, "Gateway Timeout").body()).encode())
        await response.write_eof()
        return response

    def _too_many(self, retry_after: int) -> web.Response:
        self.traffic.count("throttled")
        error = BotApiError(
            429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
        )
        return _answer(error.body(), 429)

    async def before_method(self, method: str, params: JSON) -> BotApiError | None:
        """Telegram's rate limits, when :attr:`limits` is set: an error to answer, or None."""
        if self.limits is None or method not in SENDING_METHODS:
            return None
        chat_id = params.get("chat_id")
        group = isinstance(chat_id, int) and chat_id < 0
        retry_after = self.limits.admit(chat_id, group=group)
        if retry_after:
            return BotApiError(
                429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
            )
        return None

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def _decode(self, method: str, params: JSON) -> JSON:
        """Form values (all strings) to the JSON values the spec types say they stand for."""
        fields = self.spec.methods[method]
        decoded: JSON = {}
        for name, value in params.items():
            types = fields[name].types
            decoded[name] = _decode_form_value(value, types)
        return decoded

    async def _call(self, method: str, params: JSON) -> Any:
        if method == "getUpdates":
            return await self._get_updates(params)
        implementation = self._implementations.get(method)
        if implementation is None:
            self._violation(f"{method}: valid, but not reproduced by FakeTelegram")
            raise BotApiError(400, f"Bad Request: {method} is not reproduced by the fake")
        with self._lock:
            result = implementation(params)
            if self.keep_history and method not in ("getMe", "getWebhookInfo", "getChat"):
                self.sent.append(Call(method, params))
        return result

    def _methods(self) -> dict[str, Callable[[JSON], Any]]:
        return {
            "getMe": lambda _: self.bot_user,
            "logOut": lambda _: True,
            "close": lambda _: True,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getChat": self._get_chat,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
        }

    # -- chats and messages ------------------------------------------------------------------

    def _chat_for(self, chat_id: int | str) -> JSON:
        if isinstance(chat_id, str):
            if chat_id.lstrip("-").isdecimal():
                chat_id = int(chat_id)
            else:
                raise BotApiError(400, "Bad Request: chat not found")
        faults = self.faults
        if chat_id in self.blocked or faults.picks("blocked", chat_id, faults.blocked_rate):
            raise BotApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id in self.missing_chats or faults.picks(
            "missing", chat_id, faults.missing_chat_rate
        ):
            raise BotApiError(400, "Bad Request: chat not found")
        chat = self._chats.get(chat_id)
        if chat is None:
            if self.strict_chats or chat_id <= 0:
                raise BotApiError(400, "Bad Request: chat not found")
            chat = {"id": chat_id, "type": "private", "first_name": f"Person {chat_id}"}
            if self.keep_history:  # a benchmark's 100,000 recipients need not stay in memory
                self._chats[chat_id] = chat
        return chat

    def _new_message_id(self, chat_id: int) -> int:
        if not self.keep_history:
            return next(self._message_ids)
        next_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = next_id + 1
        return next_id

    def _store(self, message: JSON) -> None:
        if self.keep_history:
            self._messages.setdefault(message["chat"]["id"], {})[message["message_id"]] = message

    def _send_message(self, params: JSON) -> JSON:
        chat = self._chat_for(params["chat_id"])
        text, entities = _parse_text(params["text"], params.get("parse_mode"))
        if "entities" in params:
            entities = params["entities"]
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            _check_inline_keyboard(markup)
        reply_to = self._replied_message(chat, params.get("reply_parameters"))
        message: JSON = {
            "message_id": self._new_message_id(chat["id"]),
            "from": self.bot_user,
            "chat": chat,
            "date": int(self.clock()),
            "text": text,
        }
        if entities:
            message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            # Telegram echoes only inline keyboards; reply keyboards live on the client.
            message["reply_markup"] = markup
        elif isinstance(markup, dict) and "keyboard" in markup:
            self.reply_keyboards[chat["id"]] = markup
        elif isinstance(markup, dict) and markup.get("remove_keyboard"):
            self.reply_keyboards.pop(chat["id"], None)
        self._store(message)
        return message

    def _replied_message(self, chat: JSON, reply: JSON | None) -> JSON | None:
        """The message a reply quotes (without its own reply, as Telegram nests one level)."""
        if reply is None:
            return None
        chat_id = str(reply.get("chat_id", chat["id"]))
        found = self._messages.get(int(chat_id) if chat_id.lstrip("-").isdecimal() else 0, {})
        message = found.get(reply["message_id"])
        if message is None:
            if reply.get("allow_sending_without_reply") or not self.keep_history:
                return None
            raise BotApiError(400, "Bad Request: message to be replied not found")
        return {k: v for k, v in message.items() if k != "reply_to_message"}

    def _find_own_message(self, params: JSON) -> JSON:
        if "inline_message_id" in params:
            raise BotApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        if "chat_id" not in params or "message_id" not in params:
            raise BotApiError(400, "Bad Request: message identifier is not specified")
        chat = self._chat_for(params["chat_id"])
        message = self._messages.get(chat["id"], {}).get(int(params["message_id"]))
        if message is None:
            raise BotApiError(400, "Bad Request: message to edit not found")
        if not message["from"].get("is_bot"):
            raise BotApiError(400, "Bad Request: message can't be edited")
        return message

    def _edit_message_text(self, params: JSON) -> JSON:
        message = self._find_own_message(params)
        text, entities = _parse_text(params["text"], params.get("parse_mode"))
        markup = params.get("reply_markup")
        if markup is not None:
            _check_inline_keyboard(markup)
        if text == message.get("text") and markup == message.get("reply_markup"):
            raise BotApiError(400, _NOT_MODIFIED)
        edited = {k: v for k, v in message.items() if k not in ("reply_markup", "entities")}
        edited.update(text=text, edit_date=int(self.clock()))
        if entities:
            edited["entities"] = entities
        if markup is not None:
            edited["reply_markup"] = markup
        self._store(edited)
        return edited

    def _edit_message_reply_markup(self, params: JSON) -> JSON:
        message = self._find_own_message(params)
        markup = params.get("reply_markup")
        if markup is not None:
            _check_inline_keyboard(markup)
        if markup == message.get("reply_markup"):
            raise BotApiError(400, _NOT_MODIFIED)
        edited = {k: v for k, v in message.items() if k != "reply_markup"}
        edited["edit_date"] = int(self.clock())
        if markup is not None:
            edited["reply_markup"] = markup
        self._store(edited)
        return edited

    def _answer_callback_query(self, params: JSON) -> bool:
        query_id = params["callback_query_id"]
        if query_id not in self._open_queries:
            raise BotApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        if len(params.get("text", "")) > 200:
            raise BotApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        del self._open_queries[query_id]
        self.callback_answers[query_id] = params
        return True

    def _send_chat_action(self, params: JSON) -> bool:
        self._chat_for(params["chat_id"])
        if params["action"] not in CHAT_ACTIONS:
            raise BotApiError(400, "Bad Request: wrong parameter action in request")
        return True

    @staticmethod
    def _command_key(params: JSON) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.get("language_code", "")

    def _set_my_commands(self, params: JSON) -> bool:
        commands = params["commands"]
        if len(commands) > 100:
            raise BotApiError(400, "Bad Request: too many commands")
        for command in commands:
            if not _COMMAND.match(command["command"]):
                raise BotApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command["description"]) <= 256:
                raise BotApiError(400, "Bad Request: command description is empty or too long")
        self.commands[self._command_key(params)] = commands
        return True

    def _get_my_commands(self, params: JSON) -> list[JSON]:
        return self.commands.get(self._command_key(params), [])

    def _delete_my_commands(self, params: JSON) -> bool:
        self.commands.pop(self._command_key(params), None)
        return True

    def _get_chat(self, params: JSON) -> JSON:
        chat = dict(self._chat_for(params["chat_id"]))
        chat.update(
            accent_color_id=0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        return chat

    # -- webhook -----------------------------------------------------------------------------

    def _set_webhook(self, params: JSON) -> bool:
        url = params["url"]
        if url == "":
            self.webhook = None
            return True
        if not url.startswith(("https://", "http://")):
            raise BotApiError(
                400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
            )
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.match(secret):
            raise BotApiError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = {"url": url, "secret_token": secret}
        if "allowed_updates" in params:
            self._set_allowed_updates(params["allowed_updates"])
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self._wake_pollers()
        return True

    def _delete_webhook(self, params: JSON) -> bool:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _get_webhook_info(self, params: JSON) -> JSON:
        info: JSON = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook and self._allowed_updates != DEFAULT_ALLOWED_UPDATES:
            info["allowed_updates"] = sorted(self._allowed_updates)
        return info

    def _set_allowed_updates(self, allowed: list[str]) -> None:
        # An empty list means "the default set", as with Telegram.
        self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_ALLOWED_UPDATES

    # -- getUpdates --------------------------------------------------------------------------

    async def _get_updates(self, params: JSON) -> list[JSON]:
        if self.webhook is not None:
            raise BotApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        limit = max(1, min(100, int(params.get("limit", 100))))
        timeout = max(0, int(params.get("timeout", 0)))
        with self._lock:
            if "allowed_updates" in params:
                self._set_allowed_updates(params["allowed_updates"])
            offset = params.get("offset")
            if offset is not None:
                self._confirm(int(offset))
            self._poll_generation += 1
            generation = self._poll_generation
        deadline = asyncio.get_running_loop().time() + timeout
        event = self._update_event
        assert event is not None
        event.set()  # an older poll still waiting learns it was superseded
        while True:
            with self._lock:
                if generation != self._poll_generation:
                    raise BotApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that "
                        "only one bot instance is running",
                    )
                ready = [u for u in self._updates if self._is_allowed(u)][:limit]
                if ready or self._closing or self.webhook is not None:
                    return ready
                event.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return []

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            del self._updates[: max(0, len(self._updates) + offset)]
        else:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]

    def _is_allowed(self, update: JSON) -> bool:
        kind = next(k for k in update if k != "update_id")
        return kind in self._allowed_updates

    def _wake_pollers(self) -> None:
        if self._update_event is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._update_event.set)

    # -- delivering updates ------------------------------------------------------------------

    def enqueue(self, *updates: JSON) -> None:
        """Queue updates for the bot's next getUpdates (callable from any thread)."""
        with self._lock:
            self._updates.extend(updates)
        self._wake_pollers()

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates queued and not yet confirmed by a getUpdates offset."""
        with self._lock:
            return list(self._updates)

    def post_webhook(self, url: str, update: JSON, *, secret_token: str | None = None) -> int:
        """POST ``update`` to a webhook as Telegram does; returns the HTTP status.

        Blocks the calling thread: from async code running the webhook receiver on the same
        loop, use :meth:`post_webhook_async`.
        """
        return self.run(self._post_update(url, update, secret_token))

    async def post_webhook_async(
        self, url: str, update: JSON, *, secret_token: str | None = None
    ) -> int:
        """:meth:`post_webhook` for async callers (the POST runs on the fake's loop)."""
        return await self.run_async(self._post_update(url, update, secret_token))

    async def _post_update(self, url: str, update: JSON, secret_token: str | None) -> int:
        headers = {"Content-Type": "application/json"}
        if secret_token is not None:
            headers[SECRET_TOKEN_HEADER] = secret_token
        status, content_type, body = await self.post_for_answer(
            url, headers=headers, data=json.dumps(update).encode()
        )
        if 200 <= status < 300 and content_type == "application/json" and body:
            await self._method_in_answer(body)
        return status

    async def _method_in_answer(self, body: bytes) -> None:
        """A Bot API call carried in the webhook's answer, run as Telegram runs it.

        "If you're using webhooks, you can perform a request to the Bot API while sending an
        answer to the webhook ... Specify the method to be invoked in the method parameter"
        (Bot API, "Making requests when getting updates"). Its result never reaches the bot,
        so a refused call is only recorded among the violations when the request was malformed.
        """
        try:
            answer = json.loads(body)
        except ValueError:
            self._violation("webhook answer: JSON content type, but not JSON")
            return
        if not isinstance(answer, dict) or "method" not in answer:
            return  # an ordinary body: Telegram ignores it
        params = {k: v for k, v in answer.items() if k != "method"}
        name = self.spec.method_name(str(answer["method"]))
        if name is None:
            self._violation(f"webhook answer: {answer['method']}: no such Bot API method")
            return
        problems = self.spec.check_request(name, params, form=False)
        if problems:
            for problem in problems:
                self._violation(f"webhook answer: {problem}")
            return
        self.traffic.count("request")
        self.method_counts[name] += 1
        with contextlib.suppress(BotApiError):  # the bot never learns the outcome
            await self._call(name, params)

    def webhook_load(
        self, url: str, updates: Sequence[JSON], *, rate: float, secret_token: str | None = None
    ) -> LatencyReport:
        """POST ``updates`` to a webhook at ``rate`` a second (open loop); latencies measured."""
        return self.run(self._webhook_load(url, updates, rate, secret_token), timeout=None)

    async def webhook_load_async(
        self, url: str, updates: Sequence[JSON], *, rate: float, secret_token: str | None = None
    ) -> LatencyReport:
        return await self.run_async(self._webhook_load(url, updates, rate, secret_token))

    async def _webhook_load(
        self, url: str, updates: Sequence[JSON], rate: float, secret_token: str | None
    ) -> LatencyReport:
        return await open_loop(
            lambda i: self._post_update(url, updates[i], secret_token),
            rate=rate,
            total=len(updates),
        )

    def deliver(self, update: JSON) -> int | None:
        """Deliver as Telegram would: to the webhook set by the bot, else into getUpdates.

        Returns the webhook's HTTP status, or None when the update was queued.
        """
        webhook = self.webhook
        if webhook is None:
            self.enqueue(update)
            return None
        return self.post_webhook(webhook["url"], update, secret_token=webhook["secret_token"])

    async def deliver_async(self, update: JSON) -> int | None:
        webhook = self.webhook
        if webhook is None:
            self.enqueue(update)
            return None
        return await self.post_webhook_async(
            webhook["url"], update, secret_token=webhook["secret_token"]
        )

    # -- what the bot sent -------------------------------------------------------------------

    def sent_to(self, chat_id: int) -> list[JSON]:
        """The bot's messages in ``chat_id``, oldest first, as they are now (edits applied)."""
        with self._lock:
            messages = self._messages.get(chat_id, {})
            return [m for m in messages.values() if m["from"].get("is_bot")]

    def last_sent(self, chat_id: int) -> JSON:
        """The bot's latest message in ``chat_id`` (AssertionError if there is none)."""
        messages = self.sent_to(chat_id)
        assert messages, f"the bot sent nothing to chat {chat_id}"
        return messages[-1]

    def calls(self, method: str) -> list[JSON]:
        """The parameters of every accepted call of ``method``, oldest first."""
        with self._lock:
            return [call.params for call in self.sent if call.method == method]

    # -- building updates --------------------------------------------------------------------

    def new_user(
        self,
        first_name: str = "Dana",
        *,
        language_code: str | None = "he",
        last_name: str | None = None,
        username: str | None = None,
        user_id: int | None = None,
    ) -> TelegramUser:
        """A new person, with a private chat with the bot (chat id == user id)."""
        user = TelegramUser(
            id=user_id if user_id is not None else next(self._user_ids),
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
        )
        with self._lock:
            self._chats[user.id] = user.private_chat()
        return user

    def new_group(self, title: str = "Scouts Kiryat Tamar") -> JSON:
        """A group chat the bot is a member of; pass it as ``chat=`` to the builders."""
        chat: JSON = {"id": -next(self._group_ids), "type": "group", "title": title}
        with self._lock:
            self._chats[chat["id"]] = chat
        return chat

    def _incoming(self, user: TelegramUser, chat: JSON | None, **content: Any) -> JSON:
        chat = chat or user.private_chat()
        with self._lock:
            self._chats.setdefault(chat["id"], chat)
            message: JSON = {
                "message_id": self._new_message_id(chat["id"]),
                "from": user.to_json(),
                "chat": chat,
                "date": int(self.clock()),
                **content,
            }
            self._store(message)
        return message

    def _update(self, **content: JSON) -> JSON:
        update: JSON = {"update_id": next(self._update_ids), **content}
        problems = self.spec.check_object("Update", update)
        if problems:  # a defect of the fake's builders, not of the code under test
            raise AssertionError(f"FakeTelegram built an invalid update: {problems}")
        return update

    def text(self, user: TelegramUser, text: str, *, chat: JSON | None = None) -> JSON:
        """A text message from ``user`` (a leading ``/command`` gets its bot_command entity)."""
        content: JSON = {"text": text}
        command = _BOT_COMMAND_AT_START.match(text)
        if command:
            content["entities"] = [
                {"type": "bot_command", "offset": 0, "length": utf16_len(command.group(0))}
            ]
        return self._update(message=self._incoming(user, chat, **content))

    def command(self, user: TelegramUser, command: str, payload: str | None = None) -> JSON:
        """``/command`` or ``/command payload`` (a deep link's ``/start <payload>``)."""
        text = f"/{command.lstrip('/')}" + (f" {payload}" if payload else "")
        return self.text(user, text)

    def start_command(self, user: TelegramUser, payload: str | None = None) -> JSON:
        """What the app sends when someone opens ``t.me/<bot>?start=<payload>`` or taps Start."""
        return self.command(user, "start", payload)

    def contact(
        self,
        user: TelegramUser,
        phone_number: str,
        *,
        contact_user_id: int | Literal["sender"] | None = "sender",
        first_name: str | None = None,
    ) -> JSON:
        """A shared contact. By default the sender's own (``user_id`` == sender's id), as the
        "share my phone number" keyboard button sends it; pass another id, or None for a
        contact that is not on Telegram."""
        contact: JSON = {"phone_number": phone_number, "first_name": first_name or user.first_name}
        owner = user.id if contact_user_id == "sender" else contact_user_id
        if owner is not None:
            contact["user_id"] = owner
        return self._update(message=self._incoming(user, None, contact=contact))

    def location(self, user: TelegramUser, latitude: float, longitude: float) -> JSON:
        location = {"latitude": latitude, "longitude": longitude}
        return self._update(message=self._incoming(user, None, location=location))

    def sticker(self, user: TelegramUser, emoji: str = "👍") -> JSON:
        sticker = {
            "file_id": f"CAACAgIAAxk{secrets.token_hex(12)}",
            "file_unique_id": f"AgAD{secrets.token_hex(6)}",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
        }
        return self._update(message=self._incoming(user, None, sticker=sticker))

    def photo(self, user: TelegramUser, caption: str | None = None) -> JSON:
        unique = secrets.token_hex(6)
        sizes = [
            {
                "file_id": f"AgACAgQAAxk{unique}{size}",
                "file_unique_id": f"AQAD{unique}{size}",
                "width": size,
                "height": size * 3 // 4,
                "file_size": size * 40,
            }
            for size in (90, 320, 800)
        ]
        content: JSON = {"photo": sizes}
        if caption is not None:
            content["caption"] = caption
        return self._update(message=self._incoming(user, None, **content))

    def edited(self, update: JSON, new_text: str) -> JSON:
        """The person edited the text message carried by ``update``."""
        message = dict(update["message"])
        message.update(text=new_text, edit_date=int(self.clock()))
        message.pop("entities", None)
        return self._update(edited_message=message)

    def callback(
        self, user: TelegramUser, message: JSON, data: str, *, check_button: bool = True
    ) -> JSON:
        """``user`` pressed the inline button carrying ``data`` under the bot's ``message``.

        ``message`` is one of :meth:`sent_to`'s. With ``check_button`` (the default) the data
        must be on one of that message's buttons now, as only existing buttons can be pressed;
        pass False to simulate a press on an old keyboard the client still shows.
        """
        if check_button and data not in _callback_datas(message):
            raise AssertionError(
                f"no button with callback_data {data!r} on message {message['message_id']}: "
                f"{sorted(_callback_datas(message))}"
            )
        query_id = f"{next(self._query_ids)}{secrets.randbelow(10**9):09d}"
        query: JSON = {
            "id": query_id,
            "from": user.to_json(),
            "message": message,
            "chat_instance": str(abs(hash((self.token, message["chat"]["id"])))),
            "data": data,
        }
        with self._lock:
            self._open_queries[query_id] = query
        return self._update(callback_query=query)

    def press(self, user: TelegramUser, message: JSON, button_text: str) -> JSON:
        """``user`` pressed the button labelled ``button_text`` under ``message``."""
        for row in message.get("reply_markup", {}).get("inline_keyboard", []):
            for button in row:
                if button["text"] == button_text and "callback_data" in button:
                    return self.callback(user, message, button["callback_data"])
        raise AssertionError(f"no button {button_text!r} on message {message['message_id']}")


_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


def _answer(body: JSON, status: int) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )


async def _read_params(request: web.Request) -> tuple[JSON, bool]:
    """The request's parameters and whether they came as a form (string values)."""
    params: JSON = dict(request.query)
    if not request.can_read_body:
        return params, True
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError as exc:
            raise BotApiError(400, "Bad Request: can't parse JSON object") from exc
        if not isinstance(body, dict):
            raise BotApiError(400, "Bad Request: JSON object expected")
        params.update(body)
        return params, False
    form = await request.post()
    for name in form:
        values = form.getall(name)
        if len(values) > 1:
            raise BotApiError(400, f"Bad Request: parameter {name!r} given {len(values)} times")
        value = values[0]
        if isinstance(value, FileField):
            params[name] = value.file.read()  # an upload: an InputFile part
        else:
            params[name] = value if isinstance(value, str) else bytes(value)
    return params, True


def _decode_form_value(value: Any, types: Iterable[str]) -> Any:
    if not isinstance(value, str):
        return value
    kinds = set(types)
    if "Integer" in kinds and re.fullmatch(r"-?\d+", value):
        return int(value)
    if "Float" in kinds:
        try:
            return float(value)
        except ValueError:
            pass
    if "Boolean" in kinds and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if kinds - {"Integer", "Float", "Boolean", "String", "InputFile"}:
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, dict | list):
            return decoded
    return value


def _callback_datas(message: Mapping[str, Any]) -> set[str]:
    keyboard = message.get("reply_markup", {}).get("inline_keyboard", [])
    return {b["callback_data"] for row in keyboard for b in row if "callback_data" in b}


def _check_inline_keyboard(markup: JSON) -> None:
    for row in markup.get("inline_keyboard", []):
        for button in row:
            actions = [name for name in _BUTTON_ACTIONS if name in button]
            if not actions:
                raise BotApiError(
                    400,
                    "Bad Request: can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard",
                )
            if not button["text"]:
                raise BotApiError(400, "Bad Request: text must be non-empty")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise BotApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            url = button.get("url")
            if url is not None and not re.match(r"^(https?|tg)://\S+$", url):
                raise BotApiError(
                    400, f"Bad Request: inline keyboard button URL '{url}' is invalid"
                )


def _parse_text(text: str, parse_mode: str | None) -> tuple[str, list[JSON]]:
    """The text as the recipient sees it and its entities; limits checked like Telegram."""
    entities: list[JSON] = []
    if parse_mode is not None and parse_mode.upper() == "HTML":
        text, entities = _parse_html(text)
    elif parse_mode is not None and parse_mode.lower() == "markdownv2":
        text, entities = _parse_markdown_v2(text)
    elif parse_mode is not None and parse_mode.lower() != "markdown":
        raise BotApiError(400, f"Bad Request: unsupported parse_mode {parse_mode!r}")
    if not text.strip():
        raise BotApiError(400, "Bad Request: message text is empty")
    if utf16_len(text) > MAX_TEXT:
        raise BotApiError(400, "Bad Request: message is too long")
    return text, entities


class _TelegramHtml(HTMLParser):
    """Telegram's HTML subset: known tags only, balanced, entities unescaped."""

    _KINDS: ClassVar[dict[str, str]] = {
        "b": "bold",
        "strong": "bold",
        "i": "italic",
        "em": "italic",
        "u": "underline",
        "ins": "underline",
        "s": "strikethrough",
        "strike": "strikethrough",
        "del": "strikethrough",
        "span": "spoiler",
        "tg-spoiler": "spoiler",
        "a": "text_link",
        "code": "code",
        "pre": "pre",
        "blockquote": "blockquote",
        "tg-emoji": "custom_emoji",
        "tg-time": "date_time",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""
        self.open: list[tuple[str, int, JSON]] = []
        self.entities: list[JSON] = []
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS:
            self.error = f'Unsupported start tag "{tag}"'
            return
        extra: JSON = {}
        if tag == "a":
            href = dict(attrs).get("href")
            if not href:
                self.error = "Can't find end tag corresponding to start tag a"
                return
            extra["url"] = href
        self.open.append((tag, utf16_len(self.text), extra))

    def handle_endtag(self, tag: str) -> None:
        if not self.open:
            self.error = f'Unexpected end tag "{tag}"'
            return
        if self.open[-1][0] != tag:
            self.error = f'Can\'t find end tag corresponding to start tag "{self.open[-1][0]}"'
            return
        name, offset, extra = self.open.pop()
        length = utf16_len(self.text) - offset
        if length:
            self.entities.append(
                {"type": self._KINDS[name], "offset": offset, "length": length, **extra}
            )

    def handle_data(self, data: str) -> None:
        self.text += data


def _parse_html(text: str) -> tuple[str, list[JSON]]:
    if re.search(r"<(?![A-Za-z/])", text) or re.search(
        r"&(?!(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);)", text
    ):
        # Telegram refuses a bare "<" or "&" that does not start a tag or a known entity.
        raise BotApiError(400, "Bad Request: can't parse entities: unescaped < or & in HTML text")
    parser = _TelegramHtml()
    parser.feed(text)
    parser.close()
    if parser.error is None and parser.open:
        parser.error = f'Can\'t find end tag corresponding to start tag "{parser.open[-1][0]}"'
    if parser.error is not None:
        raise BotApiError(400, f"Bad Request: can't parse entities: {parser.error}")
    return parser.text, sorted(parser.entities, key=lambda e: (e["offset"], -e["length"]))


_MD_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD_TOGGLES = (("```", "pre"), ("||", "spoiler"), ("__", "underline"), ("`", "code"))
_MD_SINGLE = {"*": "bold", "_": "italic", "~": "strikethrough"}


def _parse_markdown_v2(text: str) -> tuple[str, list[JSON]]:
    """MarkdownV2 as Telegram reads it (without nesting rules or custom emoji): every reserved
    character outside an entity marker must be escaped, and every entity closed."""
    out: list[str] = []
    entities: list[JSON] = []
    open_: dict[str, int] = {}  # entity kind -> offset where it started
    link_start: int | None = None
    i = 0

    def offset() -> int:
        return utf16_len("".join(out))

    def fail(reason: str) -> BotApiError:
        return BotApiError(400, f"Bad Request: can't parse entities: {reason}")

    def toggle(kind: str) -> None:
        if kind in open_:
            start = open_.pop(kind)
            if offset() > start:
                entities.append({"type": kind, "offset": start, "length": offset() - start})
        else:
            open_[kind] = offset()

    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 == len(text):
                raise fail("Character '\\' is reserved and must be escaped with the preceding '\\'")
            out.append(text[i + 1])
            i += 2
            continue
        code = "code" in open_ or "pre" in open_
        marker = next((m for m, _ in _MD_TOGGLES if text.startswith(m, i)), None)
        if marker is not None and (not code or marker in ("`", "```")):
            kind = dict(_MD_TOGGLES)[marker]
            if marker == "```" and kind not in open_:
                end_of_line = text.find("\n", i)
                i = len(text) if end_of_line < 0 else end_of_line + 1  # skip the language tag
                toggle(kind)
                continue
            toggle(kind)
            i += len(marker)
            continue
        if code:
            out.append(char)
            i += 1
            continue
        if char in _MD_SINGLE:
            toggle(_MD_SINGLE[char])
        elif char == "[" and link_start is None:
            link_start = offset()
        elif char == "]" and link_start is not None and text.startswith("(", i + 1):
            close = text.find(")", i + 2)
            if close < 0:
                raise fail("Can't find end of a URL")
            entities.append(
                {
                    "type": "text_link",
                    "offset": link_start,
                    "length": offset() - link_start,
                    "url": text[i + 2 : close],
                }
            )
            link_start = None
            i = close + 1
            continue
        elif char == ">" and (i == 0 or text[i - 1] == "\n"):
            pass  # a blockquote line
        elif char in _MD_RESERVED:
            raise fail(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        else:
            out.append(char)
        i += 1
    if open_ or link_start is not None:
        kind = next(iter(open_), "text_link")
        raise fail(f"Can't find end of {kind} entity")
    return "".join(out), sorted(entities, key=lambda e: (e["offset"], -e["length"]))
