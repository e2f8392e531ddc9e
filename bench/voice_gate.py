"""The voice gate: calls a second and calls in progress at once, against the Twilio fake.

The real ``hosen serve`` app (uvicorn, its voice webhooks) and one outbox worker with the real
twilio client place calls to the in-process Twilio fake, which plays each call (it fetches the
TwiML, the callee answers after ``--ring`` seconds, the status callback ends the call). Each run
queues its calls at once and sends until every call has ended.

Columns: ``limit/s`` the configured calls a second (``HOSEN_VOICE_RATE_PER_SECOND``);
``achieved/s`` the calls the fake saw created a second, between its first and its last (the
fake's clock); ``of limit`` that against the limit; ``peak/s`` the most calls created within
any one second; ``over`` the calls that made some one-second window exceed the limit, counted
at their arrival at the fake; ``sent over`` the same counted at the moment each call's request
left the worker (the twilio client's report, on the same monotonic clock): the gate's own
guarantee, whatever the fake's process does before it counts an arrival; ``cap``
the concurrent-calls cap (``HOSEN_VOICE_MAX_CALLS``) and ``at once`` the most calls the fake
had in progress together.

Run: ``python bench/voice_gate.py [--ring 0.3] [--db sqlite]``. A SQLite file under ``var/``
(deleted after). The machine is shared: a busy moment shows as a lower rate, never as more.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import multiprocessing
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn
from pydantic import AnyHttpUrl, SecretStr

from bench.dispatch_e2e import anything_open, database
from config.settings import Settings
from dispatch.channels.base import Outgoing, SendResult
from dispatch.channels.voice import VoiceSender
from dispatch.clients import request_leaving
from dispatch.outbox import enqueue
from dispatch.senders import build_senders
from dispatch.worker import Worker
from fakes.twilio import FakeTwilio
from fakes.twilio_voice import Callee
from hosen.app import build_app
from hosen.context import build_context
from registry.db import unit_of_work, utcnow
from registry.models import Channel

# (calls a second, concurrent-calls cap, calls)
RUNS = ((1.0, 10, 20), (5.0, 10, 100), (10.0, 20, 150), (10.0, 4, 60))


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class WatchedVoice(VoiceSender):
    """The real voice sender, noting when each call's request left (``time.monotonic``)."""

    def __init__(self, sender: VoiceSender) -> None:
        super().__init__(sender.make_client, from_=sender.from_, public_url=sender.public_url)
        self.left: list[float] = []

    async def send(self, message: Outgoing) -> SendResult:
        pacer = request_leaving.get()

        def leaving() -> None:
            self.left.append(time.monotonic())
            if pacer is not None:
                pacer()

        request_leaving.set(leaving)
        try:
            return await super().send(message)
        finally:
            request_leaving.set(pacer)


def over_limit(created: list[float], limit: float) -> int:
    """Calls created while ``limit`` or more others had been created within the second before."""
    allowed = int(limit)
    return sum(
        1
        for i, at in enumerate(created)
        if i - bisect.bisect_right(created, at - 1.0, 0, i) >= allowed
    )


def peak(created: list[float]) -> int:
    return max(
        (i - bisect.bisect_left(created, at - 1.0, 0, i) + 1 for i, at in enumerate(created)),
        default=0,
    )


def _fake_process(
    account: tuple[str, str, int], ring: float, done: Any, answers: multiprocessing.Queue[Any]
) -> None:
    """The Twilio fake in a process of its own (it must not share the worker's interpreter
    lock: its clock is the one that counts); it reports its calls when ``done`` is set."""
    sid, token, port = account
    fake = FakeTwilio(account_sid=sid, auth_token=token, port=port).start()
    fake.voice.default = Callee(answer="human", keys=["1"])
    fake.voice.ring_seconds = ring
    done.wait()
    answers.put(
        {
            "created": sorted(fake.voice.created),
            "max_active": fake.voice.max_active,
            "ended": sum(call.ended.is_set() for call in fake.voice.placed),
            "violations": len(fake.violations),
        }
    )
    fake.stop()


async def one_run(url: str, rate: float, cap: int, count: int, ring: float) -> dict[str, float]:
    account = ("AC" + secrets.token_hex(16), secrets.token_hex(16), _port())
    done, answers = multiprocessing.Event(), multiprocessing.Queue()
    child = multiprocessing.Process(target=_fake_process, args=(account, ring, done, answers))
    child.start()
    fake_url = f"http://127.0.0.1:{account[2]}"
    await asyncio.sleep(1.0)  # the fake starts listening
    port = _port()
    settings = Settings(
        database_url=url,
        twilio_account_sid=account[0],
        twilio_auth_token=SecretStr(account[1]),
        twilio_from="+972559000001",  # the fake's own number
        twilio_api_url=AnyHttpUrl(fake_url),
        public_url=AnyHttpUrl(f"http://127.0.0.1:{port}"),
        voice_rate_per_second=rate,
        voice_max_calls=cap,
        _env_file=None,  # type: ignore[call-arg]
    )
    ctx = build_context(settings)
    app = build_app(ctx, run_worker=False, run_processor=False, run_scheduler=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    with unit_of_work(ctx.sessions) as session:
        for n in range(count):
            enqueue(
                session,
                channel=Channel.VOICE,
                address=f"+9728{n:07d}",
                text="checkin",
                kind="call",
                due_at=utcnow(),
            )
    senders = build_senders(settings)
    voice = senders[Channel.VOICE]
    assert isinstance(voice, VoiceSender)
    watched = senders[Channel.VOICE] = WatchedVoice(voice)
    worker = Worker(sessions=ctx.sessions, senders=senders, settings=settings)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + 10 * count / rate + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        if not await asyncio.to_thread(anything_open, ctx.sessions) and not await asyncio.to_thread(
            _calls_open, ctx.sessions
        ):
            break
    stop.set()
    await running
    server.should_exit = True
    await serving
    ctx.engine.dispose()
    done.set()
    report = answers.get(timeout=30)
    child.join(timeout=30)
    created = report["created"]
    span = created[-1] - created[0] if len(created) > 1 else 0.0
    achieved = (len(created) - 1) / span if span else 0.0
    return {
        "limit": rate,
        "calls": len(created),
        "achieved": achieved,
        "of_limit": achieved / rate,
        "peak": peak(created),
        "over": over_limit(created, rate),
        "sent_over": over_limit(sorted(watched.left), rate),
        "cap": cap,
        "at_once": report["max_active"],
        "violations": report["violations"],
    }


def _calls_open(sessions: Any) -> bool:
    from sqlalchemy import func, select

    from dispatch.models import VoiceCall

    with sessions() as session:
        return bool(session.scalar(select(func.count()).where(VoiceCall.ended_at.is_(None))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ring", type=float, default=0.3, help="seconds a call rings")
    args = parser.parse_args()
    rows = []
    with database("sqlite") as url:
        for rate, cap, count in RUNS:
            rows.append(asyncio.run(one_run(url, rate, cap, count, args.ring)))
    print(
        f"{'limit/s':>8} {'calls':>6} {'achieved/s':>11} {'of limit':>9} {'peak/s':>7} "
        f"{'over':>5} {'sent over':>10} {'cap':>4} {'at once':>8} {'spec violations':>16}"
    )
    for row in rows:
        print(
            f"{row['limit']:>8.1f} {row['calls']:>6.0f} {row['achieved']:>11.2f} "
            f"{100 * row['of_limit']:>8.1f}% {row['peak']:>7.0f} {row['over']:>5.0f} "
            f"{row['sent_over']:>10.0f} "
            f"{row['cap']:>4.0f} {row['at_once']:>8.0f} {row['violations']:>16.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
