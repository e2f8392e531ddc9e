"""``hosen scheduler``: scheduled drills and the periodic sweeps. Run one or more: exactly one is
active at a time, the others stand by (see dispatch.scheduler)."""

from __future__ import annotations

import argparse
import signal
import threading

from hosen.context import Context
from hosen.process import add_heartbeat_options, beat, check


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scheduler = subparsers.add_parser("scheduler")
    scheduler.add_argument("--sweep-every", type=int, default=15, metavar="SECONDS")
    add_heartbeat_options(scheduler)
    scheduler.set_defaults(handler=run_scheduler)


def run_scheduler(ctx: Context, args: argparse.Namespace) -> int:
    if args.check:
        return check(args.heartbeat)
    from dispatch.scheduler import DispatchScheduler

    scheduler = DispatchScheduler(
        sessions=ctx.sessions,
        profile=ctx.profile,
        zone=ctx.settings.zone_info,
        sweep_seconds=args.sweep_every,
        retention=ctx.retention,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"scheduler {scheduler.holder} started (standing by until it holds the lock)", flush=True)
    try:
        while not stop.is_set():
            scheduler.tick()
            beat(args.heartbeat)
            stop.wait(5.0)
    finally:
        scheduler.stop()
    return 0
