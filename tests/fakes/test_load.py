"""Open-loop webhook load with latency percentiles."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiohttp import web

from fakes.load import LatencyReport, open_loop
from fakes.telegram import SECRET_TOKEN_HEADER, FakeTelegram
from fakes.twilio import FakeTwilio
from tests.loopback_server import serve


def test_percentiles() -> None:
    report = LatencyReport(
        sent=100,
        statuses=Counter({200: 100}),
        errors=0,
        duration=1.0,
        latencies_ms=tuple(float(ms) for ms in range(1, 101)),
    )
    assert report.percentile(0.5) == pytest.approx(50, abs=1)
    assert report.percentile(0.99) == pytest.approx(99, abs=1)
    assert report.rate == 100
    assert "p99 99" in report.row()


def test_open_loop_counts_statuses_and_errors() -> None:
    async def send(i: int) -> int:
        if i % 10 == 9:
            raise ConnectionRefusedError
        return 200 if i % 2 else 403

    report = asyncio.run(open_loop(send, rate=10_000, total=50))
    assert report.errors == 5 and report.statuses == Counter({403: 25, 200: 20})


async def _receiver() -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        ok = request.headers.get(SECRET_TOKEN_HEADER, "s") == "s"
        return web.Response(status=200 if ok else 403)

    runner, base = await serve(handle, "/hook")
    return runner, f"{base}/hook"


@pytest.mark.e2e
def test_webhook_and_inbound_load(fake_telegram: FakeTelegram, fake_twilio: FakeTwilio) -> None:
    dana = fake_telegram.new_user()
    updates = [fake_telegram.text(dana, str(i)) for i in range(40)]

    async def run() -> tuple[LatencyReport, LatencyReport]:
        runner, url = await _receiver()
        try:
            telegram = await fake_telegram.webhook_load_async(
                url, updates, rate=400, secret_token="s"
            )
            sms = await fake_twilio.inbound_load_async(url, [("+972501234567", "1")] * 40, rate=400)
            return telegram, sms
        finally:
            await runner.cleanup()

    telegram, sms = asyncio.run(run())
    assert telegram.statuses == Counter({200: 40}) and sms.statuses == Counter({200: 40})
    assert len(telegram.latencies_ms) == 40
