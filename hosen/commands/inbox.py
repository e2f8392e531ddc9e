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
    inbox.set_defaults(handler=run_inbox)


def run_inbox(ctx: Context, args: argparse.Namespace) -> int:
    if args.check:
        return check(args.heartbeat)
    from bots.dialog import Dialog
    from bots.processor import InboxProcessor, ProcessorConfig

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
