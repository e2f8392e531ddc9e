"""The fakes in a process of their own, for benchmarks and the demo.

In one process the fakes and the client under measurement would share one interpreter lock, and
the benchmark would measure that lock. :func:`spawn_fakes` starts ``python -m fakes`` as a child
process and returns where it listens and with which credentials; :func:`traffic` and
:func:`configure` read its counters and switch its faults and limits over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RemoteFakes:
    """A running ``python -m fakes`` child process."""

    process: subprocess.Popen[str]
    telegram_url: str
    telegram_token: str
    twilio_url: str
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_phone_number: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> RemoteFakes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn_fakes(*args: str) -> RemoteFakes:
    """Start both fakes in a child process (extra command-line ``args`` for ``python -m fakes``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        process.stdout.close()
        raise RuntimeError(f"python -m fakes exited with {process.returncode}")
    info = json.loads(line)
    return RemoteFakes(process=process, **info)


def _request(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.load(response)
        return result


def traffic(fake_url: str) -> dict[str, Any]:
    """The traffic counters of the fake at ``fake_url``."""
    return _request(f"{fake_url}/_fake/traffic")


def configure(fake_url: str, **settings: Any) -> dict[str, Any]:
    """Set ``faults`` / ``limits`` (dicts of their fields, or None) or ``reset_traffic=True``."""
    return _request(f"{fake_url}/_fake/config", settings)
