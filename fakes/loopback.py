"""A small aiohttp server on 127.0.0.1 that runs in a thread of its own, with its own event loop.

Both fakes build on it so that the same object works from a plain synchronous test, from async
code running on another loop (a bot's ``Application``, a dispatcher worker) and from a benchmark
script: the server never shares the caller's loop, so a caller that blocks cannot stall it and a
caller's loop that is busy cannot stall the fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import ClientSession, ClientTimeout, web

from fakes.faults import Faults, RateLimits, Traffic

T = TypeVar("T")


class LoopbackServer:
    """Start with :meth:`start` (or ``with``/``async with``), stop with :meth:`stop`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None
        self._stopped = threading.Event()
        self._lock = threading.RLock()
        self._shutting_down: asyncio.Event | None = None
        # Switched at runtime by tests and benchmarks (see fakes.faults); off by default.
        self.faults = Faults()
        self.limits: RateLimits | None = None
        self.traffic = Traffic()

    # -- to be provided by the concrete fake --------------------------------------------------

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def on_shutdown(self) -> None:
        """Wake long-running handlers so the server can close quickly."""

    def add_control_routes(self, app: web.Application) -> None:
        """``GET /_fake/traffic`` and ``POST /_fake/config``, for a fake in another process."""
        app.router.add_get("/_fake/traffic", self._traffic_route)
        app.router.add_post("/_fake/config", self._config_route)

    async def _traffic_route(self, request: web.Request) -> web.Response:
        return web.json_response(self.traffic.summary())

    async def _config_route(self, request: web.Request) -> web.Response:
        """Body: ``{"faults": {...Faults fields} | null, "limits": {...RateLimits fields} |
        null, "reset_traffic": bool}``; keys left out keep their current setting."""
        body = await request.json()
        if "faults" in body:
            fields = dict(body["faults"] or {})
            if fields.get("methods") is not None:
                fields["methods"] = frozenset(fields["methods"])
            self.faults = Faults(**fields)
        if "limits" in body:
            self.limits = RateLimits(**body["limits"]) if body["limits"] else None
        if body.get("reset_traffic"):
            self.traffic = Traffic()
        return web.json_response(self.traffic.summary())

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without a trailing slash."""
        if self._runner is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._loop

    def start(self) -> Self:
        """Bind a free port (unless one was given) and serve in a background thread."""
        if self._thread is not None:
            return self
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # pragma: no cover - reported to start()
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._stopped.set()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        app = self.build_app()
        # access logs would fill a benchmark's output and could carry tokens in URLs
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._client = ClientSession(timeout=ClientTimeout(total=30))
        self._shutting_down = asyncio.Event()

    async def hold(self, seconds: float) -> None:
        """Keep a request waiting (a simulated timeout), but never past the server's stop."""
        assert self._shutting_down is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._shutting_down.wait(), seconds)

    async def _close(self) -> None:
        if self._shutting_down is not None:
            self._shutting_down.set()
        await self.on_shutdown()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Stop serving and join the thread. Safe to call twice."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None
        self._runner = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- running work on the fake's own loop ---------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        """Run ``coro`` on the fake's loop and wait for it (from any thread but the fake's)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the fake's loop without blocking the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    @property
    def client(self) -> ClientSession:
        """The fake's own HTTP client, for webhook and callback posts (use on the fake's loop)."""
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._client

    async def post(
        self, url: str, *, headers: dict[str, str], json: Any = None, data: Any = None
    ) -> int:
        """POST to the application under test and return its status code."""
        status, _, _ = await self.post_for_answer(url, headers=headers, json=json, data=data)
        return status

    async def post_for_answer(
        self, url: str, *, headers: dict[str, str], json: Any = None, data: Any = None
    ) -> tuple[int, str, bytes]:
        """POST to the application under test: its status code, content type and body."""
        async with self.client.post(url, headers=headers, json=json, data=data) as response:
            body = await response.read()
            return response.status, response.content_type, body
