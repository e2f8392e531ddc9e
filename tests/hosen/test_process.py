"""The heartbeat file behind the health checks of `hosen worker|inbox|scheduler`."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from hosen.cli import main
from hosen.process import STALE_AFTER, beat_until, check


def test_check_says_healthy_only_for_a_recent_beat(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hosen.beat"
    assert check(path) == 1
    assert "no heartbeat" in capsys.readouterr().out

    async def one_beat() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(beat_until(path, stop))
        await asyncio.sleep(0)  # the first beat is at once
        stop.set()
        await task

    asyncio.run(one_beat())
    assert check(path) == 0
    assert capsys.readouterr().out.startswith("healthy")
    old = time.time() - STALE_AFTER - 5
    os.utime(path, (old, old))
    assert check(path) == 1
    assert capsys.readouterr().out.startswith("unhealthy: last heartbeat")


@pytest.mark.parametrize("command", ["worker", "inbox", "scheduler"])
def test_each_long_running_command_checks_its_heartbeat(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--check` answers from the file alone: no database, no channel needed."""
    monkeypatch.setenv("HOSEN_DATABASE_URL", f"sqlite:///{tmp_path / 'nowhere' / 'x.sqlite3'}")
    path = tmp_path / "hosen.beat"
    assert main([command, "--heartbeat", str(path), "--check"]) == 1
    path.touch()
    assert main([command, "--heartbeat", str(path), "--check"]) == 0
    assert main([command, "--check"]) == 2


def test_a_niceness_out_of_range_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOSEN_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite3'}")
    assert main(["inbox", "--once", "--nice", "25"]) == 2
    assert capsys.readouterr().err == "hosen: error: --nice must be between 0 and 19\n"
