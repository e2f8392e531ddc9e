"""What the security checks cost: a staff PIN check (scrypt), the JSON depth check on the
worst bodies the edge admits, and the memory a refused 50 MB body takes.

Run: ``python bench/edge_costs.py [--repeat 7]``. Prints a table: the median of the repeats
and the spread (the machine is shared: read ratios, not absolutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hosen.limits import MAX_BODY_BYTES, MAX_JSON_DEPTH, EdgeLimits, too_deep
from registry.staff import _pin_matches, hash_pin


def timed(action: Callable[[], object], repeat: int, number: int = 1) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            action()
        runs.append((time.perf_counter() - start) / number * 1000)
    return statistics.median(runs), max(runs) - min(runs)


def refused_body_peak(total: int, piece: int = 65536) -> int:
    """Peak traced memory while EdgeLimits refuses a streamed body of ``total`` bytes."""
    import asyncio

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("the application must not see a refused body")

    limits = EdgeLimits(app, max_body=MAX_BODY_BYTES)
    sent = 0

    async def receive() -> dict[str, object]:
        nonlocal sent
        sent += piece
        fresh = b"x" * piece  # a new buffer each time, as a server hands them over
        return {"type": "http.request", "body": fresh, "more_body": sent < total}

    async def send(message: dict[str, object]) -> None:
        return None

    scope = {"type": "http", "method": "POST", "headers": []}
    tracemalloc.start()
    asyncio.run(limits(scope, receive, send))  # type: ignore[arg-type]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    stored = hash_pin("482913")
    update = json.dumps({"update_id": 1, "message": {"text": "x" * 4000, "chat": {"id": 1}}})
    bodies = {
        "a 4 KB Telegram update": update.encode(),
        "256 KiB nested 131,072 deep": b"[" * 131072 + b"]" * 131072,
        "256 KiB of 87,000 []": b"[" + b"[]," * 87000 + b"[]]",
        "256 KiB of strings with brackets": json.dumps(['a\\"[' * 10] * 4000).encode(),
    }
    print(f"{'what':<40} {'median ms':>10} {'spread ms':>10}")
    median, spread = timed(lambda: _pin_matches(stored, "482913"), args.repeat)
    print(f"{'staff PIN check (scrypt n=2^14)':<40} {median:>10.2f} {spread:>10.2f}")
    for name, body in bodies.items():
        median, spread = timed(
            lambda body=body: too_deep(body, MAX_JSON_DEPTH), args.repeat, number=5
        )
        print(f"{'JSON depth: ' + name:<40} {median:>10.2f} {spread:>10.2f}")
    peak = refused_body_peak(50 * 1024 * 1024)
    print(f"{'refusing a streamed 50 MB body: peak KiB':<40} {peak / 1024:>10.0f}")
    print(
        f"(the limit is {MAX_BODY_BYTES // 1024} KiB; a body read whole would peak at 51,200 KiB)"
    )


if __name__ == "__main__":
    main()
