"""The bare-client ceiling: how fast the real clients can send through the loopback fakes.

No database, no Hosen code in the loop: python-telegram-bot's ``Bot.send_message`` and twilio's
``messages.create_async`` driven by a plain async loop with bounded concurrency, against the
fakes running in a process of their own (so client and fake do not share one interpreter
lock). Also a naive one-by-one ``await bot.send_message`` loop, as a user's script would do it.
The dispatcher's end-to-end benchmark is compared against these numbers.

Run: ``python bench/fakes_ceiling.py [-n 5000] [--concurrency 16,64,128] [--repeat 3]``.
Prints a table of sends a second (median of the repeats, and the spread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from telegram import Bot, InlineKeyboardMarkup
from telegram.request import HTTPXRequest

from config.settings import Settings
from dispatch.clients import open_twilio_client
from fakes.remote import RemoteFakes, configure, spawn_fakes, traffic

TEXT = "תרגיל: האם אתם בסדר? השיבו 1 - בסדר, 2 - צריך עזרה"


async def _bounded(total: int, concurrency: int, send: Callable[[int], Awaitable[object]]) -> float:
    """Run ``send(i)`` for i in range(total), ``concurrency`` at a time; sends a second."""
    next_index = iter(range(total))

    async def worker() -> None:
        for i in next_index:
            await send(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def telegram_concurrent(
    fakes: RemoteFakes,
    total: int,
    concurrency: int,
    *,
    text: str = TEXT,
    reply_markup: InlineKeyboardMarkup | None = None,
) -> float:
    """``Bot.send_message`` of one text (and keyboard, built once) to ``total`` chats."""
    request = HTTPXRequest(connection_pool_size=concurrency, pool_timeout=30, read_timeout=30)
    async with Bot(
        fakes.telegram_token, base_url=f"{fakes.telegram_url}/bot", request=request
    ) as bot:
        return await _bounded(
            total,
            concurrency,
            lambda i: bot.send_message(1_000_000 + i, text, reply_markup=reply_markup),
        )


async def telegram_naive(
    fakes: RemoteFakes,
    total: int,
    *,
    text: str = TEXT,
    reply_markup: InlineKeyboardMarkup | None = None,
) -> float:
    """A default ``Bot`` awaiting one ``send_message`` after another, as a user's script would."""
    async with Bot(fakes.telegram_token, base_url=f"{fakes.telegram_url}/bot") as bot:
        started = time.perf_counter()
        for i in range(total):
            await bot.send_message(1_000_000 + i, text, reply_markup=reply_markup)
        return total / (time.perf_counter() - started)


async def raw_http(
    url: str,
    total: int,
    concurrency: int,
    form: dict[str, str],
    auth: tuple[str, str] | None = None,
) -> float:
    """The fake's own ceiling: a plain aiohttp client posting the same form (no SDK)."""
    headers = {"Authorization": aiohttp.encode_basic_auth(*auth)} if auth else {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def send(i: int) -> object:
            async with session.post(url, data=form) as response:
                assert response.status < 300, await response.text()
                return await response.read()

        return await _bounded(total, concurrency, send)


async def twilio_concurrent(
    fakes: RemoteFakes, total: int, concurrency: int, *, body: str = TEXT
) -> float:
    settings = Settings(
        twilio_account_sid=fakes.twilio_account_sid,
        twilio_auth_token=fakes.twilio_auth_token,
        twilio_from=fakes.twilio_phone_number,
        twilio_api_url=fakes.twilio_url,  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )
    async with open_twilio_client(settings, timeout=30) as client:

        async def send(i: int) -> object:
            return await client.messages.create_async(
                to=f"+97250{1_000_000 + i:07d}", from_=fakes.twilio_phone_number, body=body
            )

        return await _bounded(total, concurrency, send)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="messages per run (default 5000)")
    parser.add_argument("--naive-n", type=int, default=1000, help="messages for the naive loop")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    rows: list[tuple[str, str, list[float]]] = []
    with spawn_fakes("--no-history") as fakes:
        for level in levels:
            rates = [
                asyncio.run(telegram_concurrent(fakes, args.n, level)) for _ in range(args.repeat)
            ]
            rows.append(("telegram Bot.send_message", f"{level}", rates))
        rates = [asyncio.run(telegram_naive(fakes, args.naive_n)) for _ in range(args.repeat)]
        rows.append(("telegram naive one-by-one loop", "1", rates))
        for level in levels:
            rates = [
                asyncio.run(twilio_concurrent(fakes, args.n, level)) for _ in range(args.repeat)
            ]
            rows.append(("twilio messages.create_async", f"{level}", rates))
        telegram_form = {
            "chat_id": "1000",
            "text": TEXT,
            "reply_markup": json.dumps(
                {"inline_keyboard": [[{"text": "OK", "callback_data": "c:1:ok"}]]}
            ),
        }
        url = f"{fakes.telegram_url}/bot{fakes.telegram_token}/sendMessage"
        rates = [asyncio.run(raw_http(url, args.n, 64, telegram_form)) for _ in range(args.repeat)]
        rows.append(("raw aiohttp -> FakeTelegram", "64", rates))
        twilio_form = {"To": "+972501000000", "From": fakes.twilio_phone_number, "Body": TEXT}
        url = f"{fakes.twilio_url}/2010-04-01/Accounts/{fakes.twilio_account_sid}/Messages.json"
        auth = (fakes.twilio_account_sid, fakes.twilio_auth_token)
        rates = [
            asyncio.run(raw_http(url, args.n, 64, twilio_form, auth)) for _ in range(args.repeat)
        ]
        rows.append(("raw aiohttp -> FakeTwilio", "64", rates))
        seen_telegram = traffic(fakes.telegram_url)
        seen_twilio = traffic(fakes.twilio_url)
        configure(fakes.telegram_url, reset_traffic=True)

    load = os.getloadavg()[0]
    print(
        f"bare-client ceiling, n={args.n} (naive n={args.naive_n}), {args.repeat} repeats, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the end (shared machine: noisy)"
    )
    print(f"{'client':<32} {'concurrency':>11} {'median/s':>9} {'min/s':>8} {'max/s':>8}")
    for name, level, rates in rows:
        print(
            f"{name:<32} {level:>11} {statistics.median(rates):>9.0f} "
            f"{min(rates):>8.0f} {max(rates):>8.0f}"
        )
    print(
        f"fake counters: telegram accepted {seen_telegram['accepted']}, "
        f"429s {seen_telegram['throttled_429']}; twilio accepted {seen_twilio['accepted']}, "
        f"429s {seen_twilio['throttled_429']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
