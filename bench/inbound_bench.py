"""Inbound under load: replies to a check-in arriving as Telegram webhook updates and signed
Twilio posts at a constant rate, against the real ``hosen serve``.

For each database (a SQLite file under ``var/``, a scratch PostgreSQL database at
``HOSEN_BENCH_POSTGRES_URL``, dropped at the end) it builds a town of ``rate × seconds``
residents (half on Telegram, half on SMS), starts a drill check-in for all of them (its messages
marked as already sent), starts the loopback fakes (``fakes.remote.spawn_fakes``) and
``python -m hosen serve`` in child processes, then a load generator, a third process, answers the
check-in once per resident: button presses "I'm OK" and typed replies on Telegram (with the
webhook secret), "1", "כן", "ok"... by SMS (signed with ``X-Twilio-Signature``).

The generator is open loop: request i starts at ``t0 + i / rate`` whatever happened to the
earlier ones, and its latency is measured from that scheduled time, so a stalled server shows
up as latency rather than as a politely lower rate (no coordinated omission). Reported per
database: acknowledgement latency p50 / p95 / p99 / max, non-2xx answers and errors, then how
long after the last request every reply was processed and matched to its campaign (the
recipients' answers in the database), the processing lag (stored → processed) and the server's
CPU seconds. The generator, the server and the fakes share the machine's cores: read the load
average printed with the table.

Run: ``python bench/inbound_bench.py [--rate 500] [--seconds 20] [--db sqlite,postgresql]``.
``--code DIR`` runs another checkout's server, with its own ``.venv`` if it has one (main's, for
"before"); ``--py-spy`` samples the server (and ``hosen inbox``) with py-spy, if installed, into
``var/spy-*.txt`` and prints the functions by share of the samples. The last table has each run's
server CPU a reply. ``--idle SECONDS`` first measures what the serving processes cost while
nothing arrives and nothing is due (the outbox worker's idle lanes, the processor's polls).

``--processor-only N`` leaves the server out: the same town, check-in and replies are stored in
the inbox as the webhooks store them, and one inbox processor, in a process of its own, drains
them; it prints wall time, CPU time and CPU a reply, its own and (PostgreSQL) that of the
server backends serving it. ``--code DIR`` runs another checkout's
processor (main's, for "before") on the same data; ``--profile`` adds a cProfile of the drain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# HOSEN_BENCH_CODE: run another checkout's code (main's, for "before") with this script.
sys.path.insert(
    0, os.environ.get("HOSEN_BENCH_CODE") or str(Path(__file__).resolve().parent.parent)
)

from sqlalchemy import event, func, select, update

from bench.dispatch_e2e import database
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.models import (
    Answer,
    CampaignRecipient,
    InboundMessage,
    OutboxMessage,
    OutboxStatus,
)
from fakes.remote import RemoteFakes, spawn_fakes
from fakes.town import insert_reachable_residents
from registry.db import make_engine, make_sessionmaker, utcnow
from registry.profile_sync import sync_sample_profile

ROOT = Path(__file__).resolve().parent.parent
SMS_REPLIES = ("1", "כן", "ok", "1", "בסדר", "да")
TELEGRAM_TEXTS = ("1", "ok", "כן")
CHAT_BASE = 5_000_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(url: str, people: int) -> tuple[int, list[dict[str, Any]]]:
    """The town, the check-in (as if sent), and who will answer how."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = utcnow()
    with sessions() as session:
        authority = sync_sample_profile(session)
        session.commit()
        insert_reachable_residents(
            session,
            authority_id=authority.id,
            count=people,
            on_telegram=lambda n: n % 2 == 0,
            chat_base=CHAT_BASE,
            now=now,
        )
        campaign = start_drill_checkin(
            session,
            authority=authority,
            audience=Audience(),
            started_by="bench",
            now=now - timedelta(minutes=1),
        )
        # The check-in went out before the replies come in: the worker has nothing to resend.
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.campaign_id == campaign.id)
            .values(status=OutboxStatus.SENT, sent_at=now, attempts=1)
        )
        session.commit()
        campaign_id = campaign.id
    engine.dispose()
    replies = []
    for n in range(people):
        if n % 2 == 0:
            chat = CHAT_BASE + n
            if n % 4 == 0:
                replies.append({"telegram": chat, "data": f"c:{campaign_id}:ok"})
            else:
                replies.append({"telegram": chat, "text": TELEGRAM_TEXTS[n % 3]})
        else:
            replies.append({"sms": f"+97250{n:07d}", "text": SMS_REPLIES[n % len(SMS_REPLIES)]})
    # Interleave the channels the way real replies arrive: in no particular order.
    order = list(range(people))
    rng = random.Random(7)
    rng.shuffle(order)
    return campaign_id, [replies[i] for i in order]


# --- the load generator (a process of its own) -------------------------------------------------


def _requests(spec: dict[str, Any]) -> list[tuple[str, bytes, dict[str, str]]]:
    """Every request, built before the clock starts (signing costs time, not part of the test)."""
    from twilio.request_validator import RequestValidator

    base, validator = spec["base"], RequestValidator(spec["auth_token"])
    built = []
    for i, reply in enumerate(spec["replies"]):
        if "telegram" in reply:
            chat = {"id": reply["telegram"], "type": "private", "first_name": "R"}
            user = {"id": reply["telegram"], "is_bot": False, "first_name": "R"}
            if "data" in reply:
                update = {
                    "update_id": 10_000_000 + i,
                    "callback_query": {
                        "id": str(900_000_000 + i),
                        "from": user,
                        "message": {
                            "message_id": 1,
                            "date": 1_790_000_000,
                            "chat": chat,
                            "text": "[DRILL] are you OK?",
                        },
                        "chat_instance": "1",
                        "data": reply["data"],
                    },
                }
            else:
                update = {
                    "update_id": 10_000_000 + i,
                    "message": {
                        "message_id": 2 + i,
                        "date": 1_790_000_000,
                        "chat": chat,
                        "from": user,
                        "text": reply["text"],
                    },
                }
            headers = {
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": spec["secret"],
            }
            built.append((f"{base}/telegram/webhook", json.dumps(update).encode(), headers))
        else:
            params = {
                "MessageSid": f"SM{i:032x}",
                "AccountSid": spec["account_sid"],
                "From": reply["sms"],
                "To": spec["to"],
                "Body": reply["text"],
                "NumMedia": "0",
            }
            signature = validator.compute_signature(f"{base}/sms/inbound", params)
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            }
            built.append((f"{base}/sms/inbound", urlencode(params).encode(), headers))
    return built


async def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    requests = _requests(spec)
    rate = float(spec["rate"])
    latencies: list[float] = [float("nan")] * len(requests)
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    samples: list[str] = []
    # Idle connections are let go before the server's keep-alive (5 s) closes them, as a
    # provider's client would: no request is sent on a connection the server is closing.
    connector = aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=3.0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        began = time.perf_counter()
        wall = time.time()

        async def one(i: int, scheduled: float) -> None:
            url, body, headers = requests[i]
            try:
                async with client.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    statuses[answer.status] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                if len(samples) < 5:
                    samples.append(f"{type(exc).__name__}: {exc}"[:200])
                return
            latencies[i] = (time.perf_counter() - scheduled) * 1000

        tasks = []
        late = 0.0
        for i in range(len(requests)):
            scheduled = began + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late = max(late, -delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        sent_until = time.time()
        await asyncio.gather(*tasks)
    return {
        "latencies": [x for x in latencies if x == x],
        "statuses": dict(statuses),
        "errors": dict(errors),
        "error_samples": samples,
        "started": wall,
        "sent_until": sent_until,
        "generator_late_ms": late * 1000,
        "generator_cpu": time.process_time(),
    }


# --- the processor alone (a process of its own, so it can run another checkout's code) -------


def _stored_arrivals(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The replies as the webhooks store them: (provider key, channel, address, payload)."""
    stored = []
    for i, (url, body, _headers) in enumerate(_requests(spec)):
        if url.endswith("/telegram/webhook"):
            update = json.loads(body)
            chat = (update.get("message") or update["callback_query"]["message"])["chat"]["id"]
            stored.append(
                {
                    "key": f"tg:{update['update_id']}",
                    "channel": "telegram",
                    "address": str(chat),
                    "payload": update,
                }
            )
        else:
            from urllib.parse import parse_qsl

            params = dict(parse_qsl(body.decode()))
            stored.append(
                {
                    "key": f"sms:{params['MessageSid']}",
                    "channel": "sms",
                    "address": params["From"],
                    "payload": params,
                }
            )
        del i
    return stored


def process_main(spec_path: str) -> None:
    """Store every reply in the inbox, then drain it with one processor: wall and CPU time."""
    import cProfile
    import pstats

    from bots.dialog import Dialog
    from bots.inbound import Arrival, accept_many
    from bots.processor import InboxProcessor
    from config.profile import DEFAULT_PROFILE_PATH, load_profile
    from registry.models import Channel

    spec = json.loads(Path(spec_path).read_text())
    engine = make_engine(spec["url"])
    sessions = make_sessionmaker(engine)
    arrivals = [
        Arrival(
            provider_key=a["key"],
            channel=Channel(a["channel"]),
            address=a["address"],
            payload=a["payload"],
        )
        for a in _stored_arrivals(spec)
    ]
    now = utcnow()
    with sessions() as session:
        for start in range(0, len(arrivals), 1000):
            accept_many(session, arrivals=arrivals[start : start + 1000], now=now)
        session.commit()
    dialog = Dialog(profile=load_profile(DEFAULT_PROFILE_PATH), region="IL")
    processor = InboxProcessor(sessions=sessions, dialog=dialog)
    # PostgreSQL's share: the CPU of the server processes (backends) serving this process.
    backends: list[int] = []
    if engine.dialect.name == "postgresql":
        engine.dispose()

        @event.listens_for(engine, "connect")
        def _backend(dbapi: Any, _record: Any) -> None:
            with dbapi.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backends.append(cursor.fetchone()[0])
            dbapi.commit()

        with engine.connect():
            pass
    server_cpu = sum(_cpu_seconds(pid) for pid in backends)
    profiler = cProfile.Profile() if spec.get("profile") else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    done = processor.drain(rounds=100_000)
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server_cpu = sum(_cpu_seconds(pid) for pid in backends) - server_cpu
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
    engine.dispose()
    print(
        json.dumps(
            {
                "processed": sum(d.processed for d in done),
                "wall": wall,
                "cpu": cpu,
                "db_cpu": server_cpu,
            }
        ),
        flush=True,
    )


def run_processor_only(kind: str, *, people: int, code: Path, profile: bool) -> dict[str, Any]:
    """Prepare a town and a check-in, store ``people`` replies, drain them in a child process
    running ``code`` (a checkout of the project: this one, or main's for "before")."""
    with database(kind) as url:
        campaign_id, replies = prepare(url, people)
        spec = {
            "url": url,
            "base": "https://hosen.example.org",
            "secret": "s",
            "auth_token": "t",
            "account_sid": "AC" + "0" * 32,
            "to": "+15005550006",
            "rate": 1.0,
            "replies": replies,
            "profile": profile,
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(spec, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSEN_")}
        env["PYTHONPATH"] = str(code)
        env["HOSEN_BENCH_CODE"] = str(code)
        child = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--process", f.name],
            cwd=code,
            env=env,
            capture_output=True,
            text=True,
        )
        os.unlink(f.name)
        if child.returncode != 0:
            raise RuntimeError(child.stderr[-3000:])
        if profile:
            print(child.stderr, file=sys.stderr)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        answered, waiting, parked = _progress(url, campaign_id)
    return {
        "db": kind,
        "people": people,
        "answered": answered,
        "waiting": waiting,
        "parked": parked,
        **result,
    }


def generate_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    try:  # the generator's own CPU is the machine's too: the cheaper loop where there is one
        import uvloop

        result = uvloop.run(_generate(spec))
    except ImportError:
        result = asyncio.run(_generate(spec))
    print(json.dumps(result), flush=True)


# --- the run ---------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_ready(base: str, secret: str, server: subprocess.Popen[bytes]) -> None:
    """/health answers, and the bot is initialised (an empty update is accepted)."""
    probe = json.dumps({"update_id": 1}).encode()
    for _ in range(600):
        if server.poll() is not None:
            raise RuntimeError(f"hosen serve exited with {server.returncode}")
        try:
            request = urllib.request.Request(
                f"{base}/telegram/webhook",
                data=probe,
                headers={
                    "Content-Type": "application/json",
                    "X-Telegram-Bot-Api-Secret-Token": secret,
                },
            )
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError("hosen serve did not come up")


def _progress(url: str, campaign_id: int) -> tuple[int, int, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            # Waiting first: on PostgreSQL each statement sees its own snapshot, and a batch
            # committed between the two counts must not leave "none waiting" beside an answer
            # count taken before it (answers only grow, so read after they are all in).
            waiting = conn.scalar(
                select(func.count()).where(
                    InboundMessage.processed_at.is_(None),
                    InboundMessage.parked_at.is_(None),
                    InboundMessage.sender.is_not(None),
                )
            )
            answered = conn.scalar(
                select(func.count()).where(
                    CampaignRecipient.campaign_id == campaign_id,
                    CampaignRecipient.answer != Answer.PENDING,
                )
            )
            parked = conn.scalar(select(func.count()).where(InboundMessage.parked_at.is_not(None)))
            return int(answered or 0), int(waiting or 0), int(parked or 0)
    finally:
        engine.dispose()


def _lags(url: str) -> list[float]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(InboundMessage.received_at, InboundMessage.processed_at).where(
                    InboundMessage.sender.is_not(None), InboundMessage.processed_at.is_not(None)
                )
            ).all()
    finally:
        engine.dispose()
    return sorted((p - r).total_seconds() for r, p in rows if p is not None and r is not None)


def _pct(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(share * 1000) - 1]


def _spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling a process (its threads on the CPU only) into collapsed stacks."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
         "--nolineno", "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _stop_spy(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


def summarise_stacks(path: Path, *, top: int = 40) -> str:
    """The functions of a py-spy collapsed-stack file by share of the samples: inclusive
    (anywhere on the stack) and self (the frame on the CPU)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        threads[frames[0]] += count
    if not total:
        return f"{path}: no samples"
    lines = [f"{path}: {total} samples on the CPU"]
    lines.append(
        "by thread root: "
        + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in threads.most_common(6))
    )
    lines.append("inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines.append("self:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top // 2)]
    return "\n".join(lines)


def run(
    kind: str,
    *,
    rate: float,
    seconds: float,
    drain_limit: float,
    layout: str,
    spy: bool = False,
    code: Path = ROOT,
    idle: float = 0.0,
) -> dict[str, Any]:
    """One run against ``hosen serve`` of the checkout ``code`` (its own ``.venv`` if it has
    one: main's, for "before")."""
    python = code / ".venv" / "bin" / "python"
    server_python = str(python) if python.exists() else sys.executable
    people = int(rate * seconds)
    with database(kind) as url:
        campaign_id, replies = prepare(url, people)
        fakes: RemoteFakes = spawn_fakes("--no-history")
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        secret = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSEN_")}
        env.update(
            {
                "PYTHONPATH": str(code),
                "HOSEN_DATABASE_URL": url,
                "HOSEN_TELEGRAM_TOKEN": fakes.telegram_token,
                "HOSEN_TELEGRAM_API_URL": fakes.telegram_url,
                "HOSEN_TELEGRAM_WEBHOOK_SECRET": secret,
                "HOSEN_TWILIO_ACCOUNT_SID": fakes.twilio_account_sid,
                "HOSEN_TWILIO_AUTH_TOKEN": fakes.twilio_auth_token,
                "HOSEN_TWILIO_FROM": fakes.twilio_phone_number,
                "HOSEN_TWILIO_API_URL": fakes.twilio_url,
                "HOSEN_PUBLIC_URL": base,
            }
        )
        log_path = ROOT / "var" / f"bench-inbound-{kind}-{layout}.log"
        log_path.parent.mkdir(exist_ok=True)
        serve = [server_python, "-m", "hosen", "serve", "--port", str(port)]
        helpers: list[subprocess.Popen[bytes]] = []
        with open(log_path, "wb") as log_file:
            if layout == "separate":
                # The production layout (docker-compose.yml): the web process only answers
                # webhooks; the inbox processor and the outbox worker run beside it, at a lower
                # priority, so the acknowledgements never wait behind their work.
                serve += ["--no-inbox", "--no-worker"]
                for command in (["inbox", "--nice", "10"], ["worker"]):
                    prefix = ["nice", "-n", "10"] if command[0] == "worker" else []
                    helpers.append(
                        subprocess.Popen(
                            [*prefix, server_python, "-m", "hosen", *command],
                            cwd=code,
                            env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=log_file,
                        )
                    )
            server = subprocess.Popen(
                serve, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=log_file
            )
            try:
                _wait_ready(base, secret, server)
                time.sleep(1.0)  # let start-up work (command menu, first sweep) settle
                idle_share = float("nan")
                if idle:
                    # Nothing arriving, nothing to send: what the serving processes cost
                    # doing nothing (the outbox worker's idle lanes, the processor's polls).
                    idle_before = _cpu_seconds(server.pid) + sum(
                        _cpu_seconds(h.pid) for h in helpers
                    )
                    time.sleep(idle)
                    idle_after = _cpu_seconds(server.pid) + sum(
                        _cpu_seconds(h.pid) for h in helpers
                    )
                    idle_share = (idle_after - idle_before) / idle
                spies = []
                if spy:
                    for name, process in [("serve", server)] + [("inbox", h) for h in helpers[:1]]:
                        out = ROOT / "var" / f"spy-{kind}-{layout}-{name}.txt"
                        spies.append((out, _spy(process.pid, out)))
                spec = {
                    "base": base,
                    "secret": secret,
                    "auth_token": fakes.twilio_auth_token,
                    "account_sid": fakes.twilio_account_sid,
                    "to": fakes.twilio_phone_number,
                    "rate": rate,
                    "replies": replies,
                }
                with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                    json.dump(spec, f)
                load_before = os.getloadavg()[0]
                cpu_before = _cpu_seconds(server.pid)
                helper_before = sum(_cpu_seconds(h.pid) for h in helpers)
                generator = subprocess.run(
                    [sys.executable, __file__, "--generate", f.name],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                os.unlink(f.name)
                report = json.loads(generator.stdout.strip().splitlines()[-1])
                cpu_load = _cpu_seconds(server.pid) - cpu_before
                helper_load = sum(_cpu_seconds(h.pid) for h in helpers) - helper_before
                load_during = os.getloadavg()[0]
                deadline = time.time() + drain_limit
                answered = waiting = parked = 0
                while time.time() < deadline:
                    answered, waiting, parked = _progress(url, campaign_id)
                    if waiting == 0:
                        break
                    time.sleep(0.25)
                done_at = time.time()
                cpu_total = _cpu_seconds(server.pid) - cpu_before
                helper_total = sum(_cpu_seconds(h.pid) for h in helpers) - helper_before
                for out, process in spies:
                    _stop_spy(process)
                    print(summarise_stacks(out), file=sys.stderr, flush=True)
            finally:
                for helper in helpers:
                    helper.terminate()
                    helper.wait(timeout=20)
                server.terminate()
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
                fakes.stop()
        lags = _lags(url)
    latencies = sorted(report["latencies"])
    ok = sum(n for code, n in report["statuses"].items() if 200 <= int(code) < 300)
    return {
        "db": kind,
        "layout": layout,
        "sent": people,
        "ok": ok,
        "other": people - ok - sum(report["errors"].values()),
        "errors": sum(report["errors"].values()),
        "error_kinds": report["errors"],
        "error_samples": report["error_samples"],
        "p50": _pct(latencies, 0.50),
        "p95": _pct(latencies, 0.95),
        "p99": _pct(latencies, 0.99),
        "max": max(latencies, default=float("nan")),
        "late": report["generator_late_ms"],
        "answered": answered,
        "waiting": waiting,
        "parked": parked,
        "drained_after": done_at - report["sent_until"],
        "lag_p50": _pct(lags, 0.5),
        "lag_p99": _pct(lags, 0.99),
        "processed_rate": len(lags) / max(done_at - report["started"], 1e-9),
        "server_cpu_load": cpu_load,
        "server_cpu_total": cpu_total,
        "inbox_cpu_load": helper_load,
        "inbox_cpu_total": helper_total,
        "generator_cpu": report["generator_cpu"],
        "idle_share": idle_share,
        "load_before": load_before,
        "load_during": load_during,
        "log": str(log_path.relative_to(ROOT)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="replies a second (500)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the load (20)")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--drain-limit", type=float, default=300.0, help="seconds to wait")
    parser.add_argument(
        "--layout",
        default="in-process,separate",
        help="in-process: `hosen serve` processes what it stores and sends the replies; "
        "separate: `hosen serve --no-inbox --no-worker` beside `hosen inbox` and `hosen worker` "
        "at nice 10, as in docker-compose.yml (default: both)",
    )
    parser.add_argument(
        "--processor-only",
        type=int,
        metavar="N",
        help="no server: store N replies in the inbox, then time one processor draining them",
    )
    parser.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="the checkout whose server (or, with --processor-only, processor) runs, with its "
        "own .venv if it has one (e.g. main's, for before)",
    )
    parser.add_argument("--profile", action="store_true", help="with --processor-only: cProfile")
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="sample the server (and `hosen inbox`) with py-spy during the load and the drain; "
        "collapsed stacks in var/spy-*.txt, a summary on stderr",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before the load, measure the serving processes' CPU while nothing happens",
    )
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    parser.add_argument("--process", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate_main(args.generate)
        return
    if args.process:
        process_main(args.process)
        return
    if args.processor_only:
        print(
            "| db | code | replies | matched | wall s | CPU s | CPU ms / reply "
            "| database server CPU ms / reply | replies / s | load average |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for kind in [k.strip() for k in args.db.split(",") if k.strip()]:
            r = run_processor_only(
                kind, people=args.processor_only, code=args.code.resolve(), profile=args.profile
            )
            print(
                f"| {kind} | {args.code} | {r['processed']} | {r['answered']} | {r['wall']:.2f} "
                f"| {r['cpu']:.2f} | {1000 * r['cpu'] / max(r['processed'], 1):.2f} "
                f"| {1000 * r['db_cpu'] / max(r['processed'], 1):.2f} "
                f"| {r['processed'] / max(r['wall'], 1e-9):.0f} | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )
        return
    print(
        f"inbound: {args.rate:.0f} replies/s for {args.seconds:.0f} s, half Telegram webhook "
        "updates (button presses and typed replies), half signed Twilio posts; open loop, "
        "latency from each request's scheduled time.\n"
        f"Server (hosen serve: webhooks, inbox processor, outbox worker, scheduler), fakes and "
        f"load generator are separate processes sharing {os.cpu_count()} cores.",
        flush=True,
    )
    results = []
    layouts = [x.strip() for x in args.layout.split(",") if x.strip()]
    kinds = [k.strip() for k in args.db.split(",") if k.strip()]
    for kind, layout in [(k, x) for k in kinds for x in layouts]:
        result = run(
            kind,
            rate=args.rate,
            seconds=args.seconds,
            drain_limit=args.drain_limit,
            layout=layout,
            spy=args.py_spy,
            code=args.code.resolve(),
            idle=args.idle,
        )
        results.append(result)
        r = result
        if args.idle:
            print(
                f"\n{r['db']}, {r['layout']}: idle for {args.idle:.0f} s, the serving processes "
                f"used {100 * r['idle_share']:.1f}% of a core"
            )
        print(
            f"\n{r['db']}, processor {r['layout']}: {r['sent']} replies, 2xx {r['ok']}, other {r['other']}, "
            f"errors {r['errors']} {r['error_kinds'] or ''} {r['error_samples'] or ''}; load average {r['load_before']:.1f} before, "
            f"{r['load_during']:.1f} after the load"
        )
        print("| acknowledgement | p50 | p95 | p99 | max |")
        print("|---|---|---|---|---|")
        print(
            f"| ms from scheduled send | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} "
            f"| {r['max']:.1f} |"
        )
        print(
            f"matched to the campaign: {r['answered']} of {r['sent']} (waiting {r['waiting']}, "
            f"parked {r['parked']}); all processed {r['drained_after']:.1f} s after the last "
            f"request; stored → processed p50 {r['lag_p50']:.2f} s, p99 {r['lag_p99']:.2f} s; "
            f"{r['processed_rate']:.0f} processed/s overall"
        )
        print(
            f"CPU seconds during the load / until drained: hosen serve {r['server_cpu_load']:.1f}"
            f" / {r['server_cpu_total']:.1f}, processes beside it {r['inbox_cpu_load']:.1f} / "
            f"{r['inbox_cpu_total']:.1f}; generator CPU {r['generator_cpu']:.1f} s; generator behind schedule "
            f"at most {r['late']:.1f} ms; server log {r['log']}",
            flush=True,
        )
    print(
        "\n| db | layout | code | 2xx | non-2xx | errors | ack p50 ms | p95 | p99 | max "
        "| all matched after last request, s | server CPU ms / reply (webhooks / all) "
        "| load average |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        replies = max(r["sent"], 1)
        matched = (
            f"{r['drained_after']:.1f}" if r["answered"] == r["sent"] else
            f"{r['answered']} of {r['sent']} matched"
        )  # fmt: skip
        print(
            f"| {r['db']} | {r['layout']} | {args.code} | {r['ok']} | {r['other']} "
            f"| {r['errors']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['max']:.1f} "
            f"| {matched} | {1000 * r['server_cpu_load'] / replies:.2f} / "
            f"{1000 * (r['server_cpu_total'] + r['inbox_cpu_total']) / replies:.2f} "
            f"| {r['load_before']:.1f}–{r['load_during']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
