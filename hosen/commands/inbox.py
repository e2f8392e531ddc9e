"""``hosen inbox``: process the inbound messages the webhooks stored, in a process of its own.

Every ``hosen serve`` runs one inbox processor in-process unless started with ``--no-inbox``.
Under heavy load (a drill's replies arriving by the hundred a second) processing belongs in
processes of its own: the webhooks then answer Telegram and Twilio without waiting for the
processor's share of the interpreter, and ``--nice`` lets the operating system prefer them. Any
number may run on PostgreSQL (rows are claimed with SKIP LOCKED); on SQLite they take turns.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from hosen.context import CommandError, Context
from hosen.heap import freeze_startup_heap
from hosen.process import add_heartbeat_options, add_nice_option, apply_nice, beat_until, check


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inbox = subparsers.add_parser("inbox")
    inbox.add_argument("--once", action="store_true", help="process what is waiting, then exit")
    add_nice_option(inbox)
    inbox.add_argument(
        "--poll",
        type=float,
        default=0.2,
        metavar="SECONDS",
        help="how often to look for new messages when idle (default 0.2)",
    )
    add_heartbeat_options(inbox)
    inbox.add_argument(
        "--status",
        action="store_true",
        help="show the database's state, the messages waiting in the inbox and in the spool",
    )
    inbox.add_argument(
        "--replay-spool",
        action="store_true",
        help="move what the webhooks spooled (HOSEN_SPOOL_DIR) into the inbox once the "
        "database answers, then exit (a running `hosen serve` does this for its own)",
    )
    inbox.add_argument(
        "--batch",
        type=int,
        default=200,
        metavar="N",
        help="with --replay-spool: messages per transaction (default 200)",
    )
    inbox.set_defaults(handler=run_inbox)


def run_inbox(ctx: Context, args: argparse.Namespace) -> int:
    if args.check:
        return check(args.heartbeat)
    from bots.dialog import Dialog
    from bots.processor import InboxProcessor, ProcessorConfig

    if args.status:
        return show_status(ctx)
    if args.replay_spool:
        return replay_spool(ctx, batch=args.batch)
    if args.poll <= 0:
        raise CommandError("--poll must be positive")
    apply_nice(args.nice)
    settings = ctx.settings
    dialog = Dialog(profile=ctx.profile, region=settings.default_region, settings=settings)
    processor = InboxProcessor(
        sessions=ctx.sessions, dialog=dialog, config=ProcessorConfig(poll_every=args.poll)
    )
    if args.once:
        done = processor.drain()
        print(f"{sum(d.processed for d in done)} processed, {sum(d.parked for d in done)} parked")
        return 0

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        freeze_startup_heap()
        print(f"inbox processor {processor.holder} running", flush=True)
        await asyncio.gather(processor.run(stop), beat_until(args.heartbeat, stop))
        return 0

    return asyncio.run(main())


def show_status(ctx: Context) -> int:
    """What an operator asks during an outage: is the database there, how much is waiting."""
    from sqlalchemy import func, select

    from bots.spool import scan, unavailable_reason
    from dispatch.models import InboundMessage

    pending, size = scan(ctx.settings.spool_dir)
    limit = ctx.settings.spool_max_bytes
    print(f"spool {ctx.settings.spool_dir}: {pending} messages waiting, {size} of {limit} bytes")
    try:
        with ctx.sessions() as session:
            waiting = session.scalar(
                select(func.count()).where(InboundMessage.processed_at.is_(None))
            )
    except Exception as exc:
        print(f"database: down ({unavailable_reason(exc)})")
        return 1
    print(f"database: up; inbox: {waiting} messages not yet processed")
    return 0


def replay_spool(ctx: Context, *, batch: int) -> int:
    """Replay the spool of processes that are gone, waiting for the database if need be."""
    import time

    from bots.spool import DatabaseState, Replayer, spool_of
    from registry.db import utcnow

    if batch <= 0:
        raise CommandError("--batch must be positive")
    spool = spool_of(ctx.settings, clock=utcnow)
    replayer = Replayer(spool=spool, sessions=ctx.sessions, database=DatabaseState())
    moved = 0
    pause = 0.5
    while True:
        try:
            moved += replayer.step(batch=batch)
            break
        except Exception as exc:
            replayer.database.failed(exc)
            time.sleep(pause)  # the database is away: look again, Ctrl-C stops
            pause = min(pause * 2, 5.0)
    print(f"{moved} replayed from {ctx.settings.spool_dir}", flush=True)
    return 0
