"""``hosen serve`` as an operator starts it: with no channel configured it still starts and says so."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import AnyHttpUrl

from config.settings import Settings
from hosen.commands.serve import run_serve
from hosen.context import CommandError, Context

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_serve_starts_without_channels_and_says_which_are_off(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSEN_")}
    env["HOSEN_DATABASE_URL"] = f"sqlite:///{tmp_path / 'hosen.sqlite3'}"
    process = subprocess.Popen(
        [sys.executable, "-m", "hosen", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "Telegram off" in first and "SMS off" in first, first
        for _ in range(100):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["database"] == "up"
        assert answer.json()["spool"]["pending"] == 0
        # Without Twilio settings the SMS webhook refuses everything rather than trusting it.
        refused = httpx.post(f"http://127.0.0.1:{port}/sms/inbound", data={"From": "+972525551234"})
        assert refused.status_code == 403
    finally:
        process.terminate()
        process.communicate(timeout=10)  # also closes the pipes


def test_webhook_mode_needs_a_secret(unit_settings: Settings) -> None:
    settings = unit_settings.model_copy(
        update={
            "telegram_token": "123:" + "x" * 35,
            "public_url": AnyHttpUrl("https://hosen.example.org"),
        }
    )
    with pytest.raises(CommandError, match="HOSEN_TELEGRAM_WEBHOOK_SECRET"):
        run_serve(
            Context(settings=settings),
            argparse.Namespace(host="127.0.0.1", port=8000, no_worker=True),
        )


def test_serve_runs_one_scheduler(database_url: str, engine: object, sessions: object) -> None:
    """The serving process offers the scheduler; it takes the lock and runs the sweeps."""
    import asyncio

    from hosen.app import build_app

    settings = Settings(database_url=database_url, _env_file=None)  # type: ignore[call-arg]
    ctx = Context(settings=settings)
    app = build_app(ctx, run_worker=False, run_bot=False)
    runtime = app.state.runtime

    async def serve_briefly() -> set[str]:
        async with app.router.lifespan_context(app):
            for _ in range(200):
                if runtime.scheduler is not None and runtime.scheduler.active:
                    break
                await asyncio.sleep(0.05)
            assert runtime.scheduler.active, "the only serving process holds the scheduler lock"
            return {job.id for job in runtime.scheduler.scheduler.get_jobs()}

    try:
        jobs = asyncio.run(serve_briefly())
        assert {"sweep", "reload"} <= jobs
        assert not runtime.scheduler.active, "stopped with the server"
    finally:
        ctx.close()
