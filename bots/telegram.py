"""The Telegram edge: updates from the webhook or from python-telegram-bot's poller into the inbox.

Two ways in, one store: long polling (``getUpdates``, through the ``Application``'s one handler)
or the webhook (``POST /telegram/webhook``, mounted by :mod:`hosen.app`). Either way an update is
stored in the inbox as Telegram sent it (:func:`store_update`, through
:class:`bots.intake.Intake`) and, once committed, acknowledged; what an update is, its secret
header and its decoding are the Telegram channel's (:mod:`dispatch.channels.telegram`);
``bots.processor`` acts on it after. Replies are not sent from here: they are outbox rows the
dispatcher's worker sends. The one direct call is ``answerCallbackQuery``, Telegram's
acknowledgement of a button press, made in the background as soon as the press is stored.

Polling must not stall silently: every successful ``getUpdates`` is noted by
:class:`PollWatch`, and :func:`keep_polling` restarts the updater when none succeeded for too long.

Run it with ``hosen serve`` (polling unless HOSEN_PUBLIC_URL is set, then webhook).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from telegram import BotCommand, Update
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler
from telegram.request import HTTPXRequest

from bots.intake import DatabaseUnavailable, Intake
from bots.spool import SpoolFull
from config.i18n import t
from config.languages import ALL_LANGUAGES, Language
from config.settings import Settings
from dispatch.channels.telegram import (
    SECRET_HEADER,
    arrival_from_json,
    button_press_id,
    from_telegram,
)
from dispatch.clients import quiet_token_leaking_loggers, telegram_api_urls

log = logging.getLogger("hosen.telegram")

POLL_TIMEOUT = 30  # seconds a getUpdates long poll may hang waiting for news
# What the bot asks Telegram for (the rest, e.g. chat_member, it has no use for).
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]
Clock = Callable[[], datetime]


@dataclass
class PollWatch:
    """When ``getUpdates`` last succeeded; a poller silent for ``stall_after`` seconds is stuck."""

    clock: Clock
    stall_after: float = 3 * POLL_TIMEOUT
    last_success: datetime | None = None
    restarts: int = 0

    def mark(self) -> None:
        self.last_success = self.clock()

    def stalled(self) -> bool:
        if self.last_success is None:
            return False
        return (self.clock() - self.last_success).total_seconds() > self.stall_after


class WatchedRequest(HTTPXRequest):
    """The request object for ``getUpdates``: notes every answered poll in the :class:`PollWatch`."""

    def __init__(self, watch: PollWatch, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watch = watch

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        status, body = await super().do_request(*args, **kwargs)
        if status == 200:
            self.watch.mark()
        return status, body


class Poller(Protocol):
    """What :func:`keep_polling` needs of python-telegram-bot's ``Updater``."""

    @property
    def running(self) -> bool: ...

    async def stop(self) -> None: ...

    async def start_polling(self, **kwargs: Any) -> Any: ...


async def restart_if_stalled(updater: Poller, watch: PollWatch) -> bool:
    """One watchdog check: restart the updater when polling has gone quiet. True if it did."""
    if not watch.stalled():
        return False
    log.warning("telegram polling silent for over %ss: restarting it", watch.stall_after)
    if updater.running:
        await updater.stop()
    await start_polling(updater)
    watch.restarts += 1
    watch.mark()  # a fresh period for the restarted poller to prove itself
    return True


async def start_polling(updater: Poller) -> None:
    await updater.start_polling(
        timeout=POLL_TIMEOUT, allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False
    )


async def keep_polling(
    updater: Poller,
    watch: PollWatch,
    *,
    stop: asyncio.Event,
    every: float = 10.0,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Check the poller every ``every`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            await restart_if_stalled(updater, watch)
        except Exception as exc:  # keep watching: the next check tries again
            log.error("telegram polling restart failed: %s", type(exc).__name__)
        if sleep is not None:
            await sleep(every)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


class CallbackAnswers:
    """``answerCallbackQuery`` calls in the background, a few at a time.

    A few at a time because httpx's connection pool costs time quadratic in the requests queued
    inside it (hundreds of button presses a second made it the webhook's largest cost); queued
    here instead, they wait for free.
    """

    def __init__(self, concurrency: int = 8) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def answer(self, bot: Any, query_id: str) -> None:
        task = asyncio.create_task(self._answer(bot, query_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, bot: Any, query_id: str) -> None:
        async with self._slots:
            try:
                await bot.answer_callback_query(query_id)
            except TelegramError as exc:  # an old query cannot be answered; nothing to do
                log.info("callback answer failed: %s", type(exc).__name__)


@dataclass
class TelegramInbound:
    """The one handler (polling mode): every update, whatever its kind, is stored in the inbox."""

    intake: Intake
    handled: int = field(default=0)
    _answers: CallbackAnswers = field(default_factory=CallbackAnswers)

    async def __call__(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Store one update; acknowledge a button press in the background."""
        if isinstance(update, Update):
            data = update.to_dict()
            new = await store_update(data, self.intake)
            query_id = button_press_id(data)
            if new and query_id is not None:
                # Not awaited: the next update need not wait for this round trip.
                self._answers.answer(update.get_bot(), query_id)
            self.handled += 1


async def store_update(data: Any, intake: Intake) -> bool | None:
    """Store one update in the inbox: True if new, False if already stored, None if it is not
    an update."""
    arrival = arrival_from_json(data)
    if arrival is None:
        return None
    return await intake.store(arrival)


async def _log_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    log.error("telegram handler error: %s", type(context.error).__name__)


def build_application(
    *,
    settings: Settings,
    intake: Intake,
    clock: Clock,
    watch: PollWatch | None = None,
    polling: bool = True,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The python-telegram-bot Application with Hosen's handler, pointed at HOSEN_TELEGRAM_API_URL."""
    if settings.telegram_token is None:
        raise ValueError("HOSEN_TELEGRAM_TOKEN is not set")
    quiet_token_leaking_loggers()
    base_url, base_file_url = telegram_api_urls(settings)
    builder = (
        ApplicationBuilder()
        .token(settings.telegram_token.get_secret_value())
        .base_url(base_url)
        .base_file_url(base_file_url)
    )
    if polling:
        watch = watch or PollWatch(clock=clock)
        builder = builder.get_updates_request(
            WatchedRequest(watch, read_timeout=POLL_TIMEOUT + 10, connect_timeout=10)
        )
    else:
        builder = builder.updater(None)
    application = builder.build()
    application.add_handler(TypeHandler(Update, TelegramInbound(intake)))
    application.add_error_handler(_log_error)
    return application


COMMANDS = ("start", "status", "update", "language", "stop", "delete", "help")


async def publish_commands(bot: Any) -> None:
    """Telegram's command menu, described in each language (English for everyone else)."""
    for language in ALL_LANGUAGES:
        commands = [BotCommand(name, t(language, f"bot.commands.{name}")) for name in COMMANDS]
        code = None if language == Language.EN else language.value
        await bot.set_my_commands(commands, language_code=code)


def webhook_endpoint(
    *, secret: str | None, intake: Intake
) -> Callable[[Request], Awaitable[Response]]:
    """``POST /telegram/webhook``: check the secret header, store the update, answer 200
    (a button press is answered in the same response).

    The update goes straight to the inbox as Telegram sent it, rather than through the
    Application's handler machinery: the acknowledgement waits for the commit and nothing else.
    """

    async def telegram_webhook(request: Request) -> Response:
        if not from_telegram(request.headers.get(SECRET_HEADER, "").encode(), secret):
            return Response(status_code=403)
        try:
            data = await request.json()
        except ValueError:
            return Response(status_code=400)
        # Spooled like an SMS while the database is away, although Telegram redelivers after
        # an error answer: it delivers a bot's updates in order and retries the failed one with
        # growing pauses, holding back every later update meanwhile, so relying on it would
        # delay everyone's answers for minutes after the database returned. With the spool
        # full, 503 leaves the update with Telegram, which tries again later.
        try:
            stored = await store_update(data, intake)
        except (SpoolFull, DatabaseUnavailable):
            return Response(status_code=503)
        if stored is None:
            return Response(status_code=400)
        query_id = button_press_id(data)
        if query_id is not None:
            # The button press is answered in this response, not with a request of our own:
            # "If you're using webhooks, you can perform a request to the Bot API while sending
            # an answer to the webhook" (Bot API, "Making requests when getting updates").
            return JSONResponse({"method": "answerCallbackQuery", "callback_query_id": query_id})
        return Response(status_code=200)

    return telegram_webhook
