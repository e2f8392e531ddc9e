"""A small HTTP server on a free loopback port, for tests that need something at the other end:
a webhook receiver for a fake provider, or a provider that never answers a client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler, *paths: str) -> tuple[web.AppRunner, str]:
    """Answer POSTs to ``paths`` with ``handler``; returns the runner (``await
    runner.cleanup()`` when done) and the base URL, ``http://127.0.0.1:<port>``."""
    app = web.Application()
    for path in paths:
        app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
