"""Limits at the edge, before anything of the application runs: how big a request body may be,
how long a client may take to send its request, how many connections are served, and how deeply
a JSON body may nest.

- :class:`EdgeLimits` (ASGI middleware) reads every request body itself: a body announced larger
  than ``max_body`` by its Content-Length is refused with 413 before a byte of it is read; one
  that grows past it while streaming (chunked) is refused with 413 as soon as it does, so memory
  never holds more than ``max_body``; a body that is not all there ``body_timeout`` seconds after
  the request began gets 408; a JSON body nested deeper than ``max_json_depth`` gets 400 (Python's
  parser would recurse until it fails). What passes is handed to the application unchanged.
- :func:`bounded_httptools` (what ``hosen serve`` runs) and :func:`bounded_h11` are uvicorn's
  HTTP/1.1 protocols with a deadline for the request head: uvicorn itself waits forever for a
  client that connects and sends nothing, or a byte a minute, so a thousand such connections
  would hold a thousand sockets. Past ``head_timeout`` such a connection is closed.
- ``hosen serve`` also sets uvicorn's ``limit_concurrency`` (503 beyond it) and
  ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

P = TypeVar("P", H11Protocol, HttpToolsProtocol)

MAX_BODY_BYTES = 256 * 1024  # Twilio's webhooks are a few KB; a Telegram update tens at most
BODY_TIMEOUT_SECONDS = 20.0
HEAD_TIMEOUT_SECONDS = 10.0
MAX_JSON_DEPTH = 32  # a Telegram update nests about 6 deep
MAX_CONNECTIONS = 2048  # see docs/performance.md, "Inbound": what the limit protects
KEEP_ALIVE_SECONDS = 5


_STRING = re.compile(rb'"[^"]*"')  # a string literal, once escapes are gone
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_A_BRACKET = bytes(set(range(256)) - set(b"[]{}"))


def too_deep(body: bytes, limit: int) -> bool:
    """Whether a UTF-8 JSON body nests arrays and objects more than ``limit`` deep.

    Without parsing (a parse would build every object of an attacker's body, and recurse),
    all at C speed: escapes go, then strings, then everything but the brackets; each pass of removing every "[]" then takes one level off the deepest nesting,
    so whatever is left after ``limit`` passes nests deeper than that (or does not balance,
    which is no JSON either). Brackets that a JSON parser would read as structure are never
    hidden by this: before the first character a parser would refuse, both see the same.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case, at once
    # Escaped backslashes, then escaped quotes (left to right, as a parser pairs them): what is
    # left of a quote then opens or closes a string.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = _STRING.sub(b"", unescaped).translate(_SQUARE, _NOT_A_BRACKET)
    too_many = b"[" * (limit + 1)  # that many in a row is too deep at once
    for _ in range(limit):
        if not shape:
            return False
        if too_many in shape:
            return True
        shape = shape.replace(b"[]", b"")
    return bool(shape)


def utf8_json(body: bytes) -> bool:
    """JSON exchanged between systems is UTF-8 (RFC 8259); the depth check reads only that."""
    return json.detect_encoding(body) in ("utf-8", "utf-8-sig")


@dataclass
class EdgeLimits:
    """ASGI middleware: bounded request bodies (size, time, JSON depth)."""

    app: ASGIApp
    max_body: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT_SECONDS
    max_json_depth: int = MAX_JSON_DEPTH
    # Which JSON requests are worth the depth check (tens of milliseconds for the worst 256 KiB):
    # those the application would parse. Others it refuses unread, so checking them would only
    # hand an attacker a way to spend our time.
    parsed: Callable[[dict[bytes, bytes]], bool] = lambda headers: True
    # Requests whose route reads and bounds its own body, size and time, as it streams it to
    # disk (the console's list upload): they pass unread.
    streamed: Callable[[Scope], bool] = lambda scope: False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if self.streamed(scope):
            await self.app(scope, receive, send)
            return
        headers = {key.lower(): value for key, value in scope["headers"]}
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(send, 400, "bad Content-Length")
                return
            if int(declared) > self.max_body:
                await _refuse(send, 413, "body too large")  # not a byte of it read
                return
        body = await self._read(receive, send)
        if body is None:
            return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip()
        if content_type == b"application/json" and self.parsed(headers):
            if not utf8_json(body):
                await _refuse(send, 400, "JSON must be UTF-8")
                return
            if too_deep(body, self.max_json_depth):
                await _refuse(send, 400, "JSON nested too deeply")
                return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after refusing it (413 too large, 408 too slow)."""
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout=deadline - loop.time())
            except TimeoutError:
                await _refuse(send, 408, "request body too slow")
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _refuse(send, 413, "body too large")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the client's disconnect, when it comes

    return replayed


async def _refuse(send: Send, status: int, reason: str) -> None:
    body = json.dumps({"error": reason}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def bounded_h11(head_timeout: float = HEAD_TIMEOUT_SECONDS) -> type[H11Protocol]:
    """uvicorn's h11 protocol (pure Python), closing connections that have not sent a request
    head in time."""
    return _bounded(H11Protocol, head_timeout)


def bounded_httptools(head_timeout: float = HEAD_TIMEOUT_SECONDS) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol (llhttp, in C: what ``hosen serve`` runs), closing
    connections that have not sent a request head in time."""
    return _bounded(HttpToolsProtocol, head_timeout)


def _bounded(base: type[P], head_timeout: float) -> type[P]:
    """``base`` with a deadline for each request head: armed when a connection opens and after
    each response, disarmed once a request head has been read (both protocols start a new
    ``cycle`` then; the body has its own deadline, :class:`EdgeLimits`)."""

    class Bounded(base):  # type: ignore[valid-type,misc]
        _head_deadline: asyncio.TimerHandle | None = None
        _waiting_since: Any = None  # the cycle that was current when the deadline was armed

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_deadline is not None and self.cycle is not self._waiting_since:
                self._disarm()  # a request head arrived: the body has its own deadline

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._waiting_since = self.cycle
            self._head_deadline = self.loop.call_later(head_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _too_slow(self) -> None:
            self._head_deadline = None
            if self.cycle is self._waiting_since and not self.transport.is_closing():
                self.transport.close()

    Bounded.__name__ = Bounded.__qualname__ = f"Bounded{base.__name__}"
    return Bounded


def raise_open_files_limit(connections: int, *, spare: int = 256) -> int:
    """Let this process hold ``connections`` sockets and ``spare`` other descriptors (database,
    spool, log files): the soft limit on open files is raised towards the hard one, as far as
    needed. Many systems start services with a soft limit of 1,024. Returns the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return int(soft)
