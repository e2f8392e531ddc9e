"""Limits at the edge, on a real uvicorn server on loopback running the real app: oversized
bodies get 413 without being read, slow clients are cut off, deep JSON gets 400. Waits are
bounded; nothing is asserted about how long anything took."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from hosen.app import build_app
from hosen.context import Context
from hosen.limits import (
    MAX_BODY_BYTES,
    bounded_h11,
    bounded_httptools,
    raise_open_files_limit,
    too_deep,
)

pytestmark = pytest.mark.db

FIFTY_MB = 50 * 1024 * 1024
SECRET = "limits-" + "Ab3" * 10 + "xyzXYZ789"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(
    app: Any,
    *,
    max_connections: int = 20,
    head_timeout: float = 0.5,
    http: Callable[[float], type[Any]] = bounded_httptools,
) -> Iterator[int]:
    """The app on a real uvicorn server, as ``hosen serve`` runs it (httptools on uvloop), in a
    thread."""
    port = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        log_config=None,
        http=http(head_timeout),
        loop="auto",
        limit_concurrency=max_connections,
        timeout_keep_alive=1,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(6000):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def app(
    settings: Settings, sessions: sessionmaker[Session], fake_telegram: FakeTelegram
) -> Iterator[Any]:
    """The real app in Telegram webhook mode (the bot talks to the fake)."""
    wired = settings_for_fakes(settings, telegram=fake_telegram).model_copy(
        update={
            "public_url": AnyHttpUrl("http://127.0.0.1:9"),
            "telegram_webhook_secret": SecretStr(SECRET),
        }
    )
    ctx = Context(settings=wired)
    application = build_app(
        ctx, run_worker=False, run_processor=False, run_scheduler=False, body_timeout=0.5
    )
    yield application
    ctx.close()


def _wait_for_telegram(app: Any) -> None:
    for _ in range(6000):
        if app.state.runtime.telegram_ready.is_set():
            return
        time.sleep(0.01)
    raise AssertionError("the bot did not come up")


def exchange(
    port: int, head: bytes, body: Iterable[bytes], *, wait_first: float = 0.0
) -> tuple[int, int]:
    """Send a request head, then the body piece by piece until the server answers; the status
    and how many body bytes went out."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        select.select([sock], [], [], wait_first)
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: stop sending
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split()[1]), sent


def test_json_depth_counts_containers_not_brackets_in_strings() -> None:
    assert not too_deep(b'{"a": [1, {"b": "[[[{{{"}]}', 3)
    assert too_deep(b'{"a": [1, {"b": {"c": []}}]}', 3)
    assert not too_deep(b'"[[[["', 1) and not too_deep(b"not json", 1)
    assert not too_deep(b'["\\"[[[", "\\\\", {"a": "]]"}]', 2)  # escapes inside strings
    assert too_deep(b'\\"' + b"[" * 40 + b"]" * 40, 32)  # a quote escaped outside a string
    assert too_deep(b"[" * 20 + b"]" * 40 + b"[" * 20, 32)  # unbalanced: no JSON either
    assert too_deep(b"[" * 100 + b"]" * 100, 32)
    assert too_deep(b"[" * 100_000 + b"]" * 100_000, 32)  # past Python's recursion limit


def test_a_50_mb_body_is_refused_with_413_before_it_is_read(app: Any) -> None:
    with serving(app) as port:
        for path in ("/sms/inbound", "/telegram/webhook", "/sms/status"):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {FIFTY_MB}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
            ).encode()
            status, sent = exchange(port, head, [b"x" * 65536] * 800, wait_first=5.0)
            assert (status, sent) == (413, 0), path


def test_a_50_mb_chunked_body_is_cut_off_at_the_limit_without_holding_it(app: Any) -> None:
    piece = b"x" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    head = (
        b"POST /sms/inbound HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    with serving(app) as port:
        tracemalloc.start()
        try:
            status, sent = exchange(port, head, [chunk] * (FIFTY_MB // len(piece)))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert status == 413
    assert sent < FIFTY_MB // 4  # answered long before the body was all sent
    assert peak < 8 * MAX_BODY_BYTES + 4 * 1024 * 1024, peak  # nowhere near 50 MB


def test_deeply_nested_json_is_a_400_not_a_500(app: Any) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    update = '{"update_id": 1, "message": ' + nested + "}"
    with serving(app) as port:
        _wait_for_telegram(app)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/telegram/webhook",
            content=update.encode(),
            headers={
                "content-type": "application/json",
                "x-telegram-bot-api-secret-token": SECRET,
            },
            timeout=10,
        )
        assert answer.status_code == 400
        unsigned = httpx.post(  # not worth a look: refused unread
            f"http://127.0.0.1:{port}/telegram/webhook",
            content=update.encode(),
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert unsigned.status_code == 403
        utf16 = httpx.post(  # a parser would read it; the depth check reads UTF-8 only
            f"http://127.0.0.1:{port}/telegram/webhook",
            content=json.dumps({"update_id": 3}).encode("utf-16"),
            headers={
                "content-type": "application/json",
                "x-telegram-bot-api-secret-token": SECRET,
            },
            timeout=10,
        )
        assert utf16.status_code == 400
        ordinary = httpx.post(
            f"http://127.0.0.1:{port}/telegram/webhook",
            content=json.dumps({"update_id": 2}).encode(),
            headers={
                "content-type": "application/json",
                "x-telegram-bot-api-secret-token": SECRET,
            },
            timeout=10,
        )
        assert ordinary.status_code == 200


@pytest.mark.parametrize("http", [bounded_httptools, bounded_h11], ids=["httptools", "h11"])
def test_silent_and_slow_clients_are_cut_off_and_health_answers(
    app: Any, http: Callable[[float], type[Any]]
) -> None:
    with serving(app, max_connections=20, head_timeout=0.5, http=http) as port:
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        trickling = socket.create_connection(("127.0.0.1", port))
        trickling.sendall(b"POST /sms/inbound HTTP/1.1\r\nHost: x\r\n")  # never finishes
        try:
            for sock in [*silent, trickling]:  # each is closed by the server, in bounded time
                sock.settimeout(20)
                assert sock.recv(1) == b""
        finally:
            for sock in [*silent, trickling]:
                sock.close()
        # A body that stops coming is cut off too (its own deadline, 0.5 s here).
        with socket.create_connection(("127.0.0.1", port)) as slow_body:
            slow_body.sendall(
                b"POST /sms/inbound HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nFrom=%2B"
            )
            slow_body.settimeout(20)
            assert slow_body.recv(64).split()[1] == b"408"
        answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert answer.status_code == 200


def test_limit_concurrency_answers_503_beyond_it(app: Any) -> None:
    async def scenario(port: int) -> set[int]:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        try:
            async with httpx.AsyncClient() as client:
                answer = await client.get(f"http://127.0.0.1:{port}/health", timeout=5)
            return {answer.status_code}
        finally:
            for sock in held:
                sock.close()

    with serving(app, max_connections=5, head_timeout=30) as port:
        assert asyncio.run(scenario(port)) == {503}


def test_only_the_consoles_upload_reads_its_own_body(app: Any) -> None:
    """The list upload bounds its body itself (a signed-in officer's file, streamed to disk):
    someone not signed in is answered before a byte of it is read, and every other console
    form still gets the edge's 413."""
    with serving(app) as port:
        for path, wanted in (("/console/import", 303), ("/console/language", 413)):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {FIFTY_MB}\r\n"
                "Content-Type: multipart/form-data; boundary=x\r\n\r\n"
            ).encode()
            status, sent = exchange(port, head, [b"x" * 65536] * 800, wait_first=5.0)
            assert (status, sent) == (wanted, 0), path


def test_kept_alive_connection_gets_its_head_deadline_again_after_a_response(app: Any) -> None:
    """A connection that sent one request and then nothing is closed like a silent one."""
    with (
        serving(app, max_connections=20, head_timeout=0.5) as port,
        socket.create_connection(("127.0.0.1", port)) as sock,
    ):
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(20)
        received = b""
        while not received.endswith(b"}"):  # the JSON body of /health
            chunk = sock.recv(4096)
            assert chunk, "closed before the answer"
            received += chunk
        assert received.split()[1] == b"200"
        assert sock.recv(1) == b""  # then closed: no second request head came


def test_open_files_limit_is_raised_for_the_connections() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(soft + 10, hard) if hard != resource.RLIM_INFINITY else soft + 10
    try:
        assert raise_open_files_limit(wanted - 256, spare=256) >= wanted
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[1] == hard  # the hard one untouched
        assert raise_open_files_limit(1, spare=0) >= wanted  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
