"""Benchmark: how soon the officers' live board shows check-in replies arriving at 500 a second.

Run from the repository root::

    python bench/console_live_bench.py                          # SQLite and PostgreSQL
    python bench/console_live_bench.py --db postgresql --rate 500 --seconds 20 --people 50000

For each database it builds a town of ``--people`` reachable residents and a drill check-in to
all of them (its messages marked as sent), registers an officer, and starts the loopback fakes
and the real ``python -m hosen serve`` (with ``--layout separate``, the production layout:
``hosen serve --no-inbox --no-worker`` beside ``hosen inbox`` and ``hosen worker``), exactly as
``bench/inbound_bench.py`` does. Two more processes then run at once:

* the load generator of ``inbound_bench.py``: ``--rate × --seconds`` residents answer the
  check-in (Telegram webhook updates and signed Twilio posts, open loop);
* an observer, the officer's browser: it signs in through the console's own sign-in (the code
  read from the outbox) and polls ``/console/board/live?campaign=N`` as the board page does
  (htmx ``hx-trigger="every 1s"`` with ``hx-swap="outerHTML"``: the next request 1 s after the
  previous fragment arrived), noting for each fragment when it arrived and the number of
  recipients accounted for (answered OK, help or in words).

A third task reads the database every 100 ms: how many recipients are accounted for, i.e. when
each answer was committed and visible to any reader ("committed → on the board": the board's
own lag, up to 0.1 s understated by that sampling).

Afterwards the replies are ranked by their inbound row's ``processed_at`` (set by the inbox
processor in the transaction that records the answer): the k-th one processed is shown by the
first fragment that counts at least k accounted for. The lag of a reply is that fragment's
arrival minus its ``processed_at`` ("processed → on the board"); a second column measures from
the reply's scheduled send time ("sent → on the board", which adds the webhook and the inbox
processor's queue). Every reply is counted, not a sample. The server,
the fakes, the generator and the observer share the machine: read the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from bench.dispatch_e2e import database
from bench.inbound_bench import _cpu_seconds, _free_port, _pct, _wait_ready, prepare
from dispatch.models import Answer, CampaignRecipient, InboundMessage, OutboxMessage
from fakes.remote import RemoteFakes, spawn_fakes
from registry.db import make_engine, make_sessionmaker, unit_of_work

ROOT = Path(__file__).resolve().parent.parent
OFFICER = "+972525551000"
POLL_SECONDS = 1.0  # hx-trigger="every 1s" in hosen/console/templates/board_live.html
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
ACCOUNTED = re.compile(r'data-total="(ok|help|free_text)">([^<]*)<')


def add_officer(url: str) -> None:
    from registry.models import Authority
    from registry.phones import normalise_phone
    from registry.staff import StaffRole, add_staff

    engine = make_engine(url)
    with unit_of_work(make_sessionmaker(engine)) as session:
        add_staff(
            session,
            name="Bench officer",
            phone=normalise_phone(OFFICER, region="IL"),
            authority=session.scalars(select(Authority).order_by(Authority.id)).first(),
            role=StaffRole.OFFICER,
            actor="bench",
        )
    engine.dispose()


def _digits(text: str) -> int:
    return int(re.sub(r"[^0-9]", "", text) or 0)


async def observe(base: str, url: str, campaign_id: int, stop: asyncio.Event) -> dict[str, Any]:
    """Sign in as the officer, then poll the live fragment until ``stop`` (plus two polls)."""
    import httpx

    engine = make_engine(url)
    fragments: list[tuple[float, int]] = []  # (arrived, accounted for)
    took: list[float] = []
    refused: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as browser:
        page = await browser.get("/console/sign-in")
        await browser.post(
            "/console/sign-in", data={"csrf": CSRF.search(page.text)[1], "phone": OFFICER}
        )
        with engine.connect() as conn:
            sent = conn.scalars(
                select(OutboxMessage.text)
                .where(OutboxMessage.kind == "console_code")
                .order_by(OutboxMessage.id.desc())
            ).first()
        page = await browser.get("/console/sign-in/code")
        code = re.search(r"\d{6}", sent or "")
        done = await browser.post(
            "/console/sign-in/code",
            data={"csrf": CSRF.search(page.text)[1], "code": code[0] if code else ""},
        )
        assert done.status_code == 303, done.text
        path = f"/console/board/live?campaign={campaign_id}"
        headers = {"HX-Request": "true", "HX-Target": "live", "HX-Current-URL": f"{base}/console"}
        after_stop = 0
        while after_stop < 3:
            began = time.time()
            answer = await browser.get(path, headers=headers)
            arrived = time.time()
            took.append(arrived - began)
            if answer.status_code == 200:
                fragments.append(
                    (arrived, sum(_digits(count) for _, count in ACCOUNTED.findall(answer.text)))
                )
            else:
                # htmx keeps polling after an error and leaves the board as it was.
                refused[answer.status_code] = refused.get(answer.status_code, 0) + 1
            if stop.is_set():
                after_stop += 1
            await asyncio.sleep(POLL_SECONDS)
    engine.dispose()
    return {"fragments": fragments, "took": took, "refused": refused}


def run(
    kind: str, *, people: int, rate: float, seconds: float, layout: str, drain: float
) -> dict[str, Any]:
    replying = int(rate * seconds)
    with database(kind) as url:
        built = time.perf_counter()
        campaign_id, replies = prepare(url, people)
        add_officer(url)
        built = time.perf_counter() - built
        fakes: RemoteFakes = spawn_fakes("--no-history")
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        secret = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSEN_")}
        env.update(
            {
                "PYTHONPATH": str(ROOT),
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
        log_path = ROOT / "var" / f"bench-console-live-{kind}-{layout}.log"
        log_path.parent.mkdir(exist_ok=True)
        serve = [sys.executable, "-m", "hosen", "serve", "--port", str(port)]
        helpers: list[subprocess.Popen[bytes]] = []
        with open(log_path, "wb") as log_file:
            if layout == "separate":
                serve += ["--no-inbox", "--no-worker"]
                for command in (["inbox", "--nice", "10"], ["worker"]):
                    prefix = ["nice", "-n", "10"] if command[0] == "worker" else []
                    helpers.append(
                        subprocess.Popen(
                            [*prefix, sys.executable, "-m", "hosen", *command],
                            cwd=ROOT,
                            env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=log_file,
                        )
                    )
            server = subprocess.Popen(
                serve, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file
            )
            try:
                _wait_ready(base, secret, server)
                time.sleep(1.0)
                spec = {
                    "base": base,
                    "secret": secret,
                    "auth_token": fakes.twilio_auth_token,
                    "account_sid": fakes.twilio_account_sid,
                    "to": fakes.twilio_phone_number,
                    "rate": rate,
                    "replies": replies[:replying],
                }
                with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                    json.dump(spec, f)
                load_before = os.getloadavg()[0]
                cpu_before = _cpu_seconds(server.pid)
                helper_before = sum(_cpu_seconds(h.pid) for h in helpers)
                report, seen = asyncio.run(
                    _load_and_observe(f.name, base, url, campaign_id, replying, drain)
                )
                os.unlink(f.name)
                load_after = os.getloadavg()[0]
                server_cpu = _cpu_seconds(server.pid) - cpu_before
                helper_cpu = sum(_cpu_seconds(h.pid) for h in helpers) - helper_before
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
        answered, processing, inbox = _answers(url, campaign_id)
    fragments: list[tuple[float, int]] = seen["fragments"]
    counts = [count for _, count in fragments]
    started = float(report["started"])
    sent_at = {i: started + i / rate for i in range(replying)}
    lags, sent_lags, missing = [], [], 0
    shown_counts = _running_max(counts)
    for k, (processed_at, index) in enumerate(answered, start=1):
        shown = bisect.bisect_left(shown_counts, k)
        if shown >= len(fragments):
            missing += 1
            continue
        arrived = fragments[shown][0]
        lags.append(arrived - processed_at)
        if index is not None and index in sent_at:
            sent_lags.append(arrived - sent_at[index])
    # Committed → on the board: the k-th answer visible in the database against the first
    # fragment counting k (both counts only grow).
    committed = seen["committed"]
    committed_counts = _running_max([count for _, count in committed])
    visible_lags = []
    for k in range(1, (shown_counts[-1] if shown_counts else 0) + 1):
        at = bisect.bisect_left(committed_counts, k)
        shown = bisect.bisect_left(shown_counts, k)
        if at < len(committed) and shown < len(fragments):
            visible_lags.append(max(0.0, fragments[shown][0] - committed[at][0]))
    visible_lags.sort()
    lags.sort()
    sent_lags.sort()
    processing.sort()
    span = max(1e-9, float(report["sent_until"]) - started)
    return {
        "db": kind,
        "layout": layout,
        "people": people,
        "built": built,
        "sent": replying,
        "achieved": replying / span,
        "answered": len(answered),
        "inbox": inbox,
        "statuses": report["statuses"],
        "errors": report["errors"],
        "missing": missing,
        "lags": lags,
        "visible_lags": visible_lags,
        "sent_lags": sent_lags,
        "processing": processing,
        "polls": len(fragments),
        "refused": seen["refused"],
        "poll_took": sorted(seen["took"]),
        "load_before": load_before,
        "load_after": load_after,
        "server_cpu": server_cpu,
        "helper_cpu": helper_cpu,
    }


def _running_max(values: list[int]) -> list[int]:
    out, top = [], 0
    for value in values:
        top = max(top, value)
        out.append(top)
    return out


async def watch_database(
    url: str, campaign_id: int, stop: asyncio.Event
) -> list[tuple[float, int]]:
    """Every 100 ms, how many recipients the database counts accounted for (committed): when
    each answer became visible to any reader, the board's query included."""
    engine = make_engine(url)
    seen: list[tuple[float, int]] = []
    accounted = select(func.count()).where(
        CampaignRecipient.campaign_id == campaign_id,
        CampaignRecipient.answer.in_((Answer.OK, Answer.HELP, Answer.FREE_TEXT)),
    )
    try:
        while not stop.is_set():
            with engine.connect() as conn:
                count = int(conn.scalar(accounted) or 0)
            seen.append((time.time(), count))
            await asyncio.sleep(0.1)
    finally:
        engine.dispose()
    return seen


async def _load_and_observe(
    spec_path: str, base: str, url: str, campaign_id: int, replying: int, drain: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    stop = asyncio.Event()
    watcher = asyncio.create_task(observe(base, url, campaign_id, stop))
    database_watcher = asyncio.create_task(watch_database(url, campaign_id, stop))
    await asyncio.sleep(2.0)  # signed in and polling before the first reply
    generator = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "inbound_bench.py"),
        "--generate",
        spec_path,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await generator.communicate()
    report = json.loads(out.decode().strip().splitlines()[-1])
    # Wait until every reply is on the board (or --drain seconds pass), then a few more polls.
    deadline = time.time() + drain
    engine = make_engine(url)
    while time.time() < deadline:
        with engine.connect() as conn:
            done = conn.scalar(
                select(func.count()).where(
                    CampaignRecipient.campaign_id == campaign_id,
                    CampaignRecipient.answer != Answer.PENDING,
                )
            )
        if int(done or 0) >= replying:
            break
        await asyncio.sleep(0.5)
    engine.dispose()
    stop.set()
    seen = await watcher
    seen["committed"] = await database_watcher
    return report, seen


def _answers(
    url: str, campaign_id: int
) -> tuple[list[tuple[float, int | None]], list[float], dict[str, int]]:
    """The answers in the order the inbox processor finished their replies: (the reply's
    ``processed_at`` as epoch seconds, its index in the generator's schedule), one a recipient
    who answered; each reply's stored → processed seconds; and how many replies were stored
    and processed."""
    engine = make_engine(url)
    with engine.connect() as conn:
        answered = select(CampaignRecipient.person_id).where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.answered_at.is_not(None),
        )
        inbound = conn.execute(
            select(
                InboundMessage.person_id,
                InboundMessage.provider_key,
                InboundMessage.received_at,
                InboundMessage.processed_at,
            ).where(InboundMessage.processed_at.is_not(None))
        ).all()
        people = set(conn.scalars(answered))
        stored = conn.scalar(select(func.count()).select_from(InboundMessage))
    engine.dispose()
    first: dict[int, tuple[float, int | None]] = {}
    processing = []
    for person_id, key, received, processed in inbound:
        index = _index_of(key)
        if index is None or processed is None:
            continue
        if received is not None:
            processing.append((processed - received).total_seconds())
        at = _epoch(processed)
        if person_id in people and (person_id not in first or at < first[person_id][0]):
            first[person_id] = (at, index)
    # The k-th answer recorded is on the board once a fragment counts k accounted for (a
    # batch's replies share one processed_at and one commit).
    done = sorted(first.values(), key=lambda pair: pair[0])
    return done, processing, {"stored": int(stored or 0) - 1, "processed": len(processing)}


def _index_of(key: str) -> int | None:
    """The generator's index of a stored reply (None for anything else, e.g. the start-up
    probe)."""
    index = None
    if key.startswith("tg:"):
        index = int(key[3:]) - 10_000_000
    elif key.startswith("sms:SM"):
        index = int(key[6:], 16)
    return index if index is not None and index >= 0 else None


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=50_000, help="the check-in's audience")
    parser.add_argument("--rate", type=float, default=500.0, help="replies a second (500)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the load (20)")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--layout", default="separate", help="separate (default) or in-process")
    parser.add_argument(
        "--drain", type=float, default=180.0, help="seconds to wait for every answer (180)"
    )
    args = parser.parse_args()
    print(
        f"console live board: {args.people:,} recipients, {args.rate:.0f} replies/s for "
        f"{args.seconds:.0f} s; observer polls /console/board/live every {POLL_SECONDS:.0f} s "
        f"after each fragment, as the page does; {os.cpu_count()} cores shared by all processes",
        flush=True,
    )
    for kind in [k.strip() for k in args.db.split(",") if k.strip()]:
        for layout in [x.strip() for x in args.layout.split(",") if x.strip()]:
            r = run(
                kind,
                people=args.people,
                rate=args.rate,
                seconds=args.seconds,
                layout=layout,
                drain=args.drain,
            )
            print(
                f"\n{kind}, {layout}: {r['sent']:,} replies sent at {r['achieved']:.0f}/s "
                f"(town of {r['people']:,} built in {r['built']:.0f} s), {r['answered']:,} "
                f"matched, {r['missing']} never seen on the board; {r['polls']} fragments "
                f"(refused: {r['refused'] or 'none'}); "
                f"load average {r['load_before']:.1f} before, {r['load_after']:.1f} after"
            )
            print(
                f"webhook answers {r['statuses']}, errors {r['errors'] or 'none'}; inbox: {r['inbox']['stored']:,} stored, "
                f"{r['inbox']['processed']:,} processed"
            )
            print("| seconds | p50 | p95 | max |")
            print("|---|---:|---:|---:|")
            for name, values in (
                ("committed → on the board", r["visible_lags"]),
                ("processed → on the board", r["lags"]),
                ("sent → on the board", r["sent_lags"]),
                ("stored → processed (inbox)", r["processing"]),
                ("one fragment's request", r["poll_took"]),
            ):
                print(
                    f"| {name} | {_pct(values, 0.5):.2f} | {_pct(values, 0.95):.2f} "
                    f"| {max(values, default=float('nan')):.2f} |"
                )
            print(
                f"CPU seconds: hosen serve {r['server_cpu']:.1f}, inbox + worker "
                f"{r['helper_cpu']:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
