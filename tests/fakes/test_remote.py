"""The fakes in their own process (``python -m fakes``), as the benchmarks and the demo use them."""

from __future__ import annotations

import asyncio

import pytest
from telegram import Bot
from telegram.error import NetworkError

from fakes.remote import configure, spawn_fakes, traffic

pytestmark = pytest.mark.e2e


def test_spawned_fakes_serve_and_report_traffic() -> None:
    with spawn_fakes("--no-history") as fakes:

        async def send() -> int:
            async with Bot(fakes.telegram_token, base_url=f"{fakes.telegram_url}/bot") as bot:
                return (await bot.send_message(42, "hi")).message_id

        assert asyncio.run(send()) == 1
        assert traffic(fakes.telegram_url)["accepted"] == 1
        configure(fakes.telegram_url, faults={"server_error_rate": 1.0}, reset_traffic=True)
        with pytest.raises(NetworkError):
            asyncio.run(send())
        counters = traffic(fakes.telegram_url)
        assert counters["server_errors_5xx"] == 1 and counters["accepted"] == 0
        assert fakes.twilio_account_sid.startswith("AC")


def test_faults_from_the_command_line() -> None:
    with spawn_fakes("--no-history", "--faults", '{"server_error_rate": 1.0}') as fakes:

        async def send() -> None:
            async with Bot(fakes.telegram_token, base_url=f"{fakes.telegram_url}/bot") as bot:
                await bot.send_message(42, "hi")

        with pytest.raises(NetworkError):
            asyncio.run(send())
