"""The ASGI application ``hosen serve`` runs: the webhooks, and in-process the Telegram bot, the
inbox processor and the dispatcher's outbox worker.

Routes: ``POST /sms/inbound``, ``POST /sms/status``, ``/voice/...`` (Twilio; see
:mod:`bots.voice`), ``POST /telegram/webhook`` (Telegram, webhook mode), ``GET /health`` (JSON:
the database's state and the spool's depth) and the officers' web console under ``/console``
(:mod:`hosen.console`).
The inbound routes store the message and answer at once (into the local spool while the
database is away; its replayer runs here too); the inbox processor (:mod:`bots.processor`) acts
on it after. At start-up, when
HOSEN_TELEGRAM_TOKEN is set, the bot starts polling (or, with HOSEN_PUBLIC_URL set, registers its
webhook); when any channel is configured, one outbox worker sends the replies and campaign
messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram.error import TelegramError

from bots.dialog import Dialog
from bots.flood import DEFAULT_POLICY, FloodPolicy
from bots.intake import Intake, WriteTurns
from bots.processor import InboxProcessor, ProcessorConfig
from bots.sms import SmsWebhooks
from bots.spool import Replayer, spool_of
from bots.telegram import (
    ALLOWED_UPDATES,
    PollWatch,
    build_application,
    keep_polling,
    publish_commands,
    start_polling,
    webhook_endpoint,
)
from bots.voice import VoiceWebhooks
from config.settings import Settings, reveal
from dispatch.channels.telegram import SECRET_HEADER, from_telegram
from dispatch.channels.voice import Voices
from hosen.console import console_routes
from hosen.console.import_page import UPLOAD_PATH
from hosen.context import Context
from hosen.heap import freeze_startup_heap
from hosen.limits import BODY_TIMEOUT_SECONDS, MAX_BODY_BYTES, EdgeLimits
from registry.db import utcnow

log = logging.getLogger("hosen.serve")


@dataclass
class Runtime:
    """What runs beside the HTTP endpoints; kept so tests and shutdown can reach it."""

    telegram: Any = None
    watch: PollWatch | None = None
    worker: Any = None
    scheduler: Any = None
    processor: InboxProcessor | None = None
    intake: Intake | None = None
    replayer: Replayer | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    telegram_ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def webhook_mode(self) -> bool:
        return self.telegram is not None and self.telegram.updater is None


def build_app(
    ctx: Context,
    *,
    clock: Callable[[], datetime] = utcnow,
    run_worker: bool = True,
    run_bot: bool = True,
    run_scheduler: bool = True,
    run_processor: bool = True,
    flood: FloodPolicy = DEFAULT_POLICY,
    freeze_heap: bool = False,
    max_body: int = MAX_BODY_BYTES,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
) -> Starlette:
    """The app; ``run_processor=False`` leaves stored messages to another process (or a test's
    ``app.state.runtime.processor.drain()``). ``freeze_heap``: this process is the server and
    nothing else (``hosen serve``), so what start-up built is frozen (:mod:`hosen.heap`)."""
    settings = ctx.settings
    dialog = Dialog(profile=ctx.profile, region=settings.default_region, settings=settings)
    runtime = Runtime()
    # SQLite has one writer: in this process, the webhooks' inserts and the processor take turns.
    turns = WriteTurns() if ctx.engine.dialect.name == "sqlite" else None
    processor = InboxProcessor(
        sessions=ctx.sessions,
        dialog=dialog,
        clock=clock,
        flood=flood,
        turns=turns,
        # On SQLite a webhook's insert waits for the processor's transaction in progress:
        # smaller batches keep that wait short (a batch of plain answers is ~0.5 ms a reply).
        config=ProcessorConfig(batch=40) if turns is not None else ProcessorConfig(),
    )
    runtime.processor = processor
    spool = spool_of(settings, clock=clock)
    intake = Intake(
        sessions=ctx.sessions,
        clock=clock,
        stored=processor.wake,
        turns=turns,
        spool=spool,
        spool_after=settings.spool_after_seconds,
    )
    processor.busy = intake.busy
    runtime.intake = intake
    runtime.replayer = Replayer(
        spool=spool,
        sessions=ctx.sessions,
        database=intake.database,
        write_turn=turns.urgent if turns else None,
        replayed=processor.wake,
    )
    sms = SmsWebhooks(settings=settings, sessions=ctx.sessions, clock=clock, intake=intake)
    calls = VoiceWebhooks(
        settings=settings,
        sessions=ctx.sessions,
        clock=clock,
        voices=Voices(ctx.profile.voice, str(settings.public_url or "").rstrip("/")),
        spool=spool,  # a call's keys and status wait here too while the database is away
        database=intake.database,
    )
    webhook_mode = settings.public_url is not None
    if run_bot and settings.telegram_enabled:
        runtime.watch = PollWatch(clock=clock)
        runtime.telegram = build_application(
            settings=settings,
            intake=intake,
            clock=clock,
            watch=runtime.watch,
            polling=not webhook_mode,
        )

    telegram_endpoint = (
        webhook_endpoint(secret=reveal(settings.telegram_webhook_secret), intake=intake)
        if runtime.telegram is not None
        else None
    )

    async def telegram_webhook(request: Request) -> Response:
        if telegram_endpoint is None or not runtime.webhook_mode:
            return Response(status_code=404)
        return await telegram_endpoint(request)

    async def health(request: Request) -> Response:
        """The database as this process last saw it (looked at every two seconds) and the
        spool; 503 when the spool takes nothing more (the webhooks are refusing messages)."""
        kept = intake.spool
        spool = await asyncio.to_thread(kept.status) if kept else None
        database = intake.database
        body: dict[str, Any] = {
            "database": "up" if database.up else "down",
            "database_down_seconds": round(database.down_for(), 1),
        }
        if kept is not None and spool is not None:
            body["spool"] = {
                "pending": spool.pending,
                "bytes": spool.bytes,
                "max_bytes": spool.max_bytes,
                "oldest": spool.oldest.isoformat() if spool.oldest else None,
                "full": spool.full,
                "spooled": kept.spooled,  # since this process started
                "replayed": kept.replayed,
            }
        return JSONResponse(body, status_code=503 if spool is not None and spool.full else 200)

    async def replay_spool() -> None:
        assert runtime.replayer is not None
        await runtime.replayer.run(runtime.stop)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if run_processor:
            runtime.tasks.append(asyncio.create_task(processor.run(runtime.stop)))
        # Whoever takes the webhooks replays their spool: with or without the processor.
        runtime.tasks.append(asyncio.create_task(replay_spool()))
        await _start(
            ctx,
            runtime,
            run_worker=run_worker,
            run_scheduler=run_scheduler,
            write_turn=turns.background if turns is not None else None,
        )
        if freeze_heap:
            freeze_startup_heap()
        try:
            yield
        finally:
            await _stop(runtime)

    app = Starlette(
        routes=[
            Route("/sms/inbound", sms.inbound, methods=["POST"]),
            Route("/sms/status", sms.status, methods=["POST"]),
            Route("/voice/call/{outbox:int}", calls.call, methods=["POST"]),
            Route("/voice/call/{outbox:int}/keys", calls.keys, methods=["POST"]),
            Route("/voice/call/{outbox:int}/status", calls.status, methods=["POST"]),
            Route("/voice/inbound", calls.inbound, methods=["POST"]),
            Route("/voice/inbound/keys", calls.inbound_keys, methods=["POST"]),
            Route("/voice/prompts/{recordings}/{prompt}.wav", calls.prompt, methods=["GET"]),
            Route("/telegram/webhook", telegram_webhook, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            *console_routes(ctx, clock=clock),
        ],
        # Every request body is bounded before any route sees it (hosen.limits).
        middleware=[
            Middleware(
                EdgeLimits,
                max_body=max_body,
                body_timeout=body_timeout,
                parsed=lambda headers: from_telegram(
                    headers.get(SECRET_HEADER.lower().encode(), b""),
                    reveal(settings.telegram_webhook_secret),
                ),
                streamed=lambda scope: scope["path"] == UPLOAD_PATH and scope["method"] == "POST",
            )
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app


async def _start(
    ctx: Context,
    runtime: Runtime,
    *,
    run_worker: bool,
    run_scheduler: bool,
    write_turn: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
) -> None:
    if runtime.telegram is not None:
        # In the background: Telegram being unreachable must not keep SMS and the worker down.
        runtime.tasks.append(asyncio.create_task(_bring_up_telegram(ctx.settings, runtime)))
    if run_worker:
        await _start_worker(ctx, runtime, write_turn=write_turn)
    if run_scheduler:
        runtime.tasks.append(asyncio.create_task(_keep_scheduler(ctx, runtime)))


async def _keep_scheduler(ctx: Context, runtime: Runtime, *, every: float = 5.0) -> None:
    """Scheduled drills and the escalation sweeps. Every serving process offers one; a lock in
    the database lets exactly one be active, the others stand by and take over if it dies."""
    from dispatch.scheduler import DispatchScheduler

    scheduler = DispatchScheduler(
        sessions=ctx.sessions,
        profile=ctx.profile,
        zone=ctx.settings.zone_info,
        retention=ctx.retention,
    )
    runtime.scheduler = scheduler
    try:
        while not runtime.stop.is_set():
            try:
                await asyncio.to_thread(scheduler.tick)
            except Exception as exc:  # the database is away: stand by and try again
                log.warning("scheduler standing by: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.stop.wait(), timeout=every)
    finally:
        await asyncio.to_thread(scheduler.stop)


async def _bring_up_telegram(settings: Settings, runtime: Runtime, *, retry: float = 5.0) -> None:
    """Start the bot (webhook or polling), retrying with back-off until it works or we stop."""
    application = runtime.telegram
    while not runtime.stop.is_set():
        try:
            await _start_telegram(settings, runtime)
        except (TelegramError, OSError) as exc:
            log.warning("telegram not started (%s); retrying in %.0fs", type(exc).__name__, retry)
            with contextlib.suppress(Exception):
                if application.running:
                    await application.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.stop.wait(), timeout=retry)
            retry = min(retry * 2, 120.0)
            continue
        runtime.telegram_ready.set()
        if not runtime.webhook_mode:
            assert runtime.watch is not None
            await keep_polling(application.updater, runtime.watch, stop=runtime.stop)
        return


async def _start_telegram(settings: Settings, runtime: Runtime) -> None:
    application = runtime.telegram
    await application.initialize()  # a no-op once it has worked
    if not application.running:
        await application.start()
    try:
        await publish_commands(application.bot)
    except TelegramError as exc:  # a menu is a nicety: never a reason not to start
        log.warning("telegram command menu not set: %s", type(exc).__name__)
    if runtime.webhook_mode:
        url = str(settings.public_url).rstrip("/") + "/telegram/webhook"
        await application.bot.set_webhook(
            url=url,
            secret_token=reveal(settings.telegram_webhook_secret),
            allowed_updates=ALLOWED_UPDATES,
        )
        return
    await application.bot.delete_webhook()
    await start_polling(application.updater)
    assert runtime.watch is not None
    runtime.watch.mark()


async def _start_worker(
    ctx: Context,
    runtime: Runtime,
    *,
    write_turn: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
) -> None:
    from dispatch.senders import build_senders
    from dispatch.worker import AnotherWorkerRunning, Worker

    senders = build_senders(ctx.settings)
    if not senders:
        return
    # On SQLite the worker takes the same turns as the processor: behind the webhooks.
    worker = Worker(
        sessions=ctx.sessions, senders=senders, settings=ctx.settings, write_turn=write_turn
    )
    try:
        await worker.start()
    except AnotherWorkerRunning as exc:
        log.warning("outbox worker not started here: %s", exc)
        return
    runtime.worker = worker

    async def work() -> None:
        # A reply the processor queued, a campaign started from the console: sent at once,
        # not at the idle lanes' next look.
        with worker.wake_on_enqueue():
            await worker.run(runtime.stop)

    runtime.tasks.append(asyncio.create_task(work()))


async def _stop(runtime: Runtime) -> None:
    runtime.stop.set()
    for task in runtime.tasks:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)
    if runtime.intake is not None:
        await asyncio.to_thread(runtime.intake.close)
        if runtime.intake.spool is not None:
            runtime.intake.spool.close()  # what is left is replayed by the next process
    if runtime.worker is not None:
        with contextlib.suppress(Exception):
            await runtime.worker.close()
    application = runtime.telegram
    if application is not None:
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
        await application.shutdown()  # a no-op if it never started
