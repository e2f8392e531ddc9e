"""A PostgreSQL server of a test's own, which the test may stop, start and restart for real.

The shared server at 127.0.0.1:5432 serves every suite on the machine, so a test must not restart
it. This one is made with the same installation's ``initdb`` in a temporary directory, listens on
a free loopback port, trusts local connections and is removed afterwards. As root (CI runs as
root) the server runs as the ``postgres`` user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian layout), or None."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """``with PrivatePostgres() as server:`` ... ``server.url`` ... ``server.restart()``."""

    def __init__(self, *, crash_safe_commits: bool = False) -> None:
        """``crash_safe_commits``: a commit is in the WAL before it returns, so it survives
        :meth:`crash` (otherwise commits are asynchronous, for speed)."""
        self.crash_safe_commits = crash_safe_commits
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL installation under /usr/lib/postgresql")
        self.bin = bin_dir
        self.port = _free_port()
        self.home = Path(tempfile.mkdtemp(prefix="hosen-pg-"))
        self.data = self.home / "data"
        self.user: str | None = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.home, entry.pw_uid, entry.pw_gid)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def __enter__(self) -> PrivatePostgres:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

    def start(self) -> None:
        # fsync off: a crash of the server (not of the machine) keeps what it wrote.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.home} "
            "-c fsync=off -c full_page_writes=off"
        )
        if not self.crash_safe_commits:
            options += " -c synchronous_commit=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.home / "log"),
            "-w", "start",
        )  # fmt: skip
        self.wait_ready()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def crash(self) -> None:
        """Stop the server as a crash would (``-m immediate``: no shutdown checkpoint, every
        connection cut); the next start runs crash recovery."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        """Stop the server (every connection is cut) and start it again."""
        self.stop()
        self.start()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        engine = create_engine(self.url)
        try:
            while True:
                try:
                    with engine.connect() as conn:
                        conn.execute(text("SELECT 1"))
                    return
                except OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            engine.dispose()
