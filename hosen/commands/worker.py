"""``hosen worker``: one outbox worker. Start several on PostgreSQL; on SQLite exactly one."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

from hosen.context import CommandError, Context
from hosen.heap import freeze_startup_heap
from hosen.process import add_heartbeat_options, add_nice_option, apply_nice, beat_until, check


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = subparsers.add_parser("worker")
    worker.add_argument(
        "--once", action="store_true", help="one claim→send→record round, then exit"
    )
    worker.add_argument("--id", help="this worker's name in leases (default: host:pid:random)")
    worker.add_argument(
        "--lease",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a claimed message stays with this worker if it dies (default 60)",
    )
    add_nice_option(worker)
    add_heartbeat_options(worker)
    worker.set_defaults(handler=run_worker)


async def _start_when_free(worker: Any, *, patience: float) -> None:
    """On SQLite a crashed worker's lease must run out first: wait for it, within reason."""
    from dispatch.worker import AnotherWorkerRunning

    deadline = time.monotonic() + patience
    while True:
        try:
            await worker.start()
            return
        except AnotherWorkerRunning:
            if time.monotonic() > deadline:
                raise
            print("another worker holds the SQLite lease; waiting for it to expire", flush=True)
            await asyncio.sleep(1.0)


def run_worker(ctx: Context, args: argparse.Namespace) -> int:
    if args.check:
        return check(args.heartbeat)
    from dispatch.senders import build_senders
    from dispatch.worker import AnotherWorkerRunning, Worker, WorkerConfig

    senders = build_senders(ctx.settings)
    if not senders:
        raise CommandError(f"no channel is configured: {ctx.settings.channel_summary()}")
    if args.lease <= 0:
        raise CommandError("--lease must be positive")
    apply_nice(args.nice)
    config = WorkerConfig(lease_seconds=args.lease, sweep_every=min(5.0, args.lease / 3))
    worker = Worker(
        sessions=ctx.sessions,
        senders=senders,
        settings=ctx.settings,
        worker_id=args.id,
        config=config,
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
        await _start_when_free(worker, patience=2 * args.lease + 1)
        freeze_startup_heap()
        print(f"worker {worker.worker_id} running; {ctx.settings.channel_summary()}", flush=True)
        with worker.wake_on_enqueue():  # its own follow-ups (the next channel) go at once
            await asyncio.gather(worker.run(stop), beat_until(args.heartbeat, stop))
        return 0

    try:
        return asyncio.run(main())
    except AnotherWorkerRunning as exc:
        raise CommandError(str(exc)) from None
