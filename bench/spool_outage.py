"""A burst of SMS replies while the database crashes and comes back: is any reply lost?

A PostgreSQL server of the benchmark's own (``tests.private_postgres``: the shared server is
never stopped) and a real ``hosen serve --no-worker --no-scheduler`` in a child process. An
open-loop load of signed Twilio posts (``--rate`` a second for ``--seconds``) runs from this
process; ``--crash-at`` seconds in, the server is stopped as a crash would stop it (``pg_ctl stop
-m immediate``) and started again ``--down`` seconds later (crash recovery included). Then the
benchmark waits for ``/health`` to show the spool drained and counts: replies sent, accepted
(2xx), refused (any other answer, or none), spooled and replayed (the server's own counters),
lost (accepted but not in the inbox: must be 0) and the time from the database's return (its
``pg_ctl start`` done) to the spool's drain.

Run: ``python bench/spool_outage.py [--rate 100] [--seconds 20] [--crash-at 5] [--down 8]
[--spool-after 5]``. The machine is shared: the drain time is noisy, the counts are not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
from sqlalchemy import select
from twilio.request_validator import RequestValidator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dispatch.models import InboundMessage
from hosen import migrations
from registry.db import make_engine, make_sessionmaker
from registry.profile_sync import sync_sample_profile
from tests.private_postgres import PrivatePostgres

TOKEN = "bench-twilio-auth-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def burst(
    base: str, *, rate: float, seconds: float, outage: asyncio.Task[float]
) -> tuple[int, int, list[str]]:
    """Post the replies on schedule (open loop); (sent, accepted, sids accepted). aiohttp, not
    httpx: with hundreds of requests held open during the outage, httpx's own cost per
    connection made the load generator, not the server, the bottleneck."""
    validator = RequestValidator(TOKEN)
    accepted: list[str] = []
    answers: dict[str, int] = {}
    # Twilio opens as many connections as it has messages to post: no client-side pool limit.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=15.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def one(n: int) -> None:
            sid = f"SMbench{n:06d}"
            params = {
                "MessageSid": sid,
                "From": f"+9725255{n % 2000:05d}",
                "To": "+972500000000",
                "Body": "1",
            }
            signature = validator.compute_signature(f"{base}/sms/inbound", params)
            try:
                async with client.post(
                    f"{base}/sms/inbound", data=params, headers={"X-Twilio-Signature": signature}
                ) as answer:
                    await answer.read()
                    outcome = str(answer.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            answers[outcome] = answers.get(outcome, 0) + 1
            if outcome.startswith("2"):
                accepted.append(sid)

        tasks = []
        start = time.monotonic()
        total = int(rate * seconds)
        for n in range(total):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    print("answers:", ", ".join(f"{k} x{v}" for k, v in sorted(answers.items())))
    await outage
    return total, len(accepted), accepted


async def crash(server: PrivatePostgres, *, at: float, down: float) -> float:
    """Crash the server ``at`` seconds in, start it ``down`` seconds later; when it is back."""
    await asyncio.sleep(at)
    await asyncio.to_thread(server.crash)
    await asyncio.sleep(down)
    await asyncio.to_thread(server.start)
    return time.monotonic()


async def watch_drain(base: str, back: asyncio.Task[float], *, timeout: float = 300.0) -> float:
    """Look at ``/health`` every 50 ms from the start; the first moment after the database's
    return at which the server sees it up with nothing spooled."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=5.0) as client:
        while True:
            try:
                health = (await client.get("/health")).json()
            except httpx.HTTPError:
                health = {}
            seen = time.monotonic()
            spool = health.get("spool") or {}
            if back.done() and health.get("database") == "up" and spool.get("pending") == 0:
                return seen
            if seen > deadline:
                raise SystemExit(f"the spool did not drain: {health}")
            await asyncio.sleep(0.05)


async def counters(base: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=base, timeout=5.0) as client:
        return dict((await client.get("/health")).json())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="replies a second (100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the burst (20)")
    parser.add_argument("--crash-at", type=float, default=5.0, help="seconds in (5)")
    parser.add_argument("--down", type=float, default=8.0, help="seconds the server is down (8)")
    parser.add_argument(
        "--spool-after", type=float, default=5.0, help="HOSEN_SPOOL_AFTER_SECONDS (5)"
    )
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    with PrivatePostgres(crash_safe_commits=True) as server, tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(server.url)
        migrations.upgrade(engine)
        sessions = make_sessionmaker(engine)
        with sessions() as session:
            sync_sample_profile(session)
            session.commit()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSEN_")}
        env.update(
            HOSEN_DATABASE_URL=server.url,
            HOSEN_TWILIO_ACCOUNT_SID="AC" + "0" * 32,
            HOSEN_TWILIO_AUTH_TOKEN=TOKEN,
            HOSEN_TWILIO_FROM="+972500000000",
            HOSEN_PUBLIC_URL=base,
            HOSEN_SPOOL_DIR=str(Path(tmp) / "spool"),
            HOSEN_SPOOL_AFTER_SECONDS=str(args.spool_after),
        )
        command = [sys.executable, "-m", "hosen", "serve", "--port", str(port)]
        command += ["--no-worker", "--no-scheduler"]
        log = Path(tmp) / "serve.log"
        with log.open("wb") as err:
            serve = subprocess.Popen(command, cwd=root, env=env, stdout=err, stderr=err)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=1.0)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or serve.poll() is not None:
                        raise SystemExit(log.read_text()) from None
                    time.sleep(0.2)

            async def run() -> tuple[int, int, list[str], float, float, dict[str, object]]:
                outage = asyncio.create_task(crash(server, at=args.crash_at, down=args.down))
                watcher = asyncio.create_task(watch_drain(base, outage))
                sent, accepted, sids = await burst(
                    base, rate=args.rate, seconds=args.seconds, outage=outage
                )
                done = await watcher
                health = await counters(base)
                return sent, accepted, sids, outage.result(), done, health

            sent, accepted, sids, back, done, health = asyncio.run(run())
        finally:
            serve.terminate()
            serve.wait(30)
        engine.dispose()
        engine = make_engine(server.url)
        with make_sessionmaker(engine)() as session:
            stored = set(
                session.scalars(
                    select(InboundMessage.provider_key).where(
                        InboundMessage.provider_key.startswith("sms:SMbench")
                    )
                )
            )
        engine.dispose()
        lines = log.read_text(errors="replace").splitlines()
    lost = sum(1 for sid in sids if f"sms:{sid}" not in stored)
    spool = health["spool"]
    assert isinstance(spool, dict)
    rows = [
        ("replies sent", str(sent)),
        ("accepted (2xx)", str(accepted)),
        ("refused (non-2xx or no answer)", str(sent - accepted)),
        ("spooled", str(spool["spooled"])),
        ("replayed", str(spool["replayed"])),
        ("in the inbox", str(len(stored))),
        ("lost (accepted, not in the inbox)", str(lost)),
        ("database back -> spool drained", f"{done - back:.2f} s"),
        ("server log lines / tracebacks", f"{len(lines)} / {sum('Traceback' in x for x in lines)}"),
    ]
    print(
        f"rate {args.rate:g}/s for {args.seconds:g} s; database crashed at {args.crash_at:g} s, "
        f"down {args.down:g} s; spool after {args.spool_after:g} s"
    )
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
