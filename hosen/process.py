"""The long-running commands as processes: their CPU priority and their liveness.

``--nice N`` lowers the process's priority, so that on a shared machine the webhooks'
acknowledgements come before processing and sending. ``--heartbeat FILE`` touches FILE every
few seconds from the event loop (or the scheduler's loop) that does the work, so a process whose
loop is stuck stops beating; the same command with ``--check`` exits 0 when the last beat is
recent and 1 when it is not (or there is none), printing one line either way: a container's
health check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from pathlib import Path

from hosen.context import CommandError

BEAT_EVERY = 5.0  # seconds between beats
STALE_AFTER = 60.0  # no beat for this long: the process is stuck (or gone)


def add_nice_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        metavar="N",
        help="lower this process's CPU priority by N (0-19), so the webhooks come first",
    )


def apply_nice(niceness: int) -> None:
    if not 0 <= niceness <= 19:
        raise CommandError("--nice must be between 0 and 19")
    if niceness:
        os.nice(niceness)


def add_heartbeat_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--heartbeat",
        type=Path,
        metavar="FILE",
        help=f"touch FILE every {BEAT_EVERY:.0f} s while running (for health checks)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 0 if FILE of --heartbeat was touched in the last {STALE_AFTER:.0f} s, else 1",
    )


def beat(path: Path | None) -> None:
    if path is not None:
        path.touch()


async def beat_until(path: Path | None, stop: asyncio.Event) -> None:
    """Beat every few seconds until ``stop`` is set."""
    if path is None:
        return
    while not stop.is_set():
        beat(path)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=BEAT_EVERY)


def check(path: Path | None, *, stale_after: float = STALE_AFTER) -> int:
    """The health check: 0 when ``path`` was touched within ``stale_after`` seconds."""
    if path is None:
        print("--check needs --heartbeat FILE")
        return 2
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: no heartbeat at {path} yet")
        return 1
    if age > stale_after:
        print(f"unhealthy: last heartbeat {age:.0f} s ago")
        return 1
    print(f"healthy: last heartbeat {age:.0f} s ago")
    return 0
