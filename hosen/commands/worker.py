"""``hosen worker``: one outbox worker. Start several on PostgreSQL; on SQLite exactly one."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from hosen.context import CommandError, Context


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="send the outbox: campaign messages, bot replies, tasks (Ctrl-C stops it cleanly)",
    )
    worker.add_argument(
        "--once", action="store_true", help="one claim→send→record round, then exit"
    )
    worker.add_argument("--id", help="this worker's name in leases (default: host:pid:random)")
    worker.set_defaults(handler=run_worker)


def run_worker(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.senders import build_senders
    from dispatch.worker import AnotherWorkerRunning, Worker

    senders = build_senders(ctx.settings)
    if not senders:
        raise CommandError(f"no channel is configured: {ctx.settings.channel_summary()}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    worker = Worker(
        sessions=ctx.sessions, senders=senders, settings=ctx.settings, worker_id=args.id
    )

    async def main() -> int:
        if args.once:
            async with worker:
                handled = await worker.run_once()
            print(f"{handled} messages handled")
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(f"worker {worker.worker_id} running; {ctx.settings.channel_summary()}", flush=True)
        await worker.run(stop)
        return 0

    try:
        return asyncio.run(main())
    except AnotherWorkerRunning as exc:
        raise CommandError(str(exc)) from None
