"""``hosen serve``: the webhooks for Telegram and Twilio, the Telegram bot, the outbox worker and
the scheduler (scheduled drills, escalation sweeps; one active across all processes)."""

from __future__ import annotations

import argparse

from hosen.context import CommandError, Context
from hosen.limits import (
    HEAD_TIMEOUT_SECONDS,
    KEEP_ALIVE_SECONDS,
    MAX_BODY_BYTES,
    MAX_CONNECTIONS,
    bounded_httptools,
    raise_open_files_limit,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not send the outbox from this process (run `hosen worker` elsewhere)",
    )
    serve.add_argument(
        "--no-inbox",
        action="store_true",
        help="do not process stored inbound messages here (run `hosen inbox` elsewhere)",
    )
    serve.add_argument(
        "--no-scheduler",
        action="store_true",
        help="do not offer the scheduler here (scheduled drills, escalation sweeps)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        help=f"connections served at once; beyond them 503 ({MAX_CONNECTIONS})",
    )
    serve.add_argument(
        "--max-body",
        type=int,
        default=MAX_BODY_BYTES,
        metavar="BYTES",
        help=f"largest request body; larger ones get 413 unread ({MAX_BODY_BYTES})",
    )
    serve.set_defaults(handler=run_serve)


def run_serve(ctx: Context, args: argparse.Namespace) -> int:
    import uvicorn

    from hosen.app import build_app

    settings = ctx.settings
    if settings.telegram_enabled and settings.public_url and not settings.telegram_webhook_secret:
        raise CommandError(
            "HOSEN_TELEGRAM_WEBHOOK_SECRET: required for the Telegram webhook (HOSEN_PUBLIC_URL is set)"
        )
    mode = "webhook" if settings.public_url else "polling"
    summary = settings.channel_summary()
    if settings.telegram_enabled:
        summary += f" (Telegram by {mode})"
    if settings.sms_enabled and settings.public_url is None:
        summary += " (inbound SMS refused: Twilio signatures need HOSEN_PUBLIC_URL)"
    if settings.hash_key is None:
        summary += "; HOSEN_HASH_KEY unset: digests of phones are keyed for this process only"
    print(f"hosen serve on http://{args.host}:{args.port}: {summary}", flush=True)
    app = build_app(
        ctx,
        run_worker=not args.no_worker,
        run_scheduler=not args.no_scheduler,
        run_processor=not getattr(args, "no_inbox", False),
        freeze_heap=True,
        max_body=args.max_body,
    )
    raise_open_files_limit(args.max_connections)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        log_config=None,  # hosen.logs configured logging for every command
        # llhttp's parser in C and libuv's loop: a webhook's HTTP costs a fraction of h11's
        # pure-Python parsing and asyncio's selector loop (docs/performance.md, "Inbound").
        http=bounded_httptools(HEAD_TIMEOUT_SECONDS),
        loop="auto",  # uvloop where it is installed (a dependency, but not on Windows)
        limit_concurrency=args.max_connections,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    return 0
