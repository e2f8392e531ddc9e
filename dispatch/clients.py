"""The production python-telegram-bot and twilio clients, built from the operator's settings.

The API bases come from ``HOSEN_TELEGRAM_API_URL`` and ``HOSEN_TWILIO_API_URL``, so the same
code talks to Telegram and Twilio in production and to the loopback fakes (``fakes/``) in tests,
the demo and the benchmarks. Only the edges (bots/ and the channel senders) use these clients.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from aiohttp import TraceConfig, TraceRequestChunkSentParams, encode_basic_auth
from telegram import Bot
from telegram.request import HTTPXRequest
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from config.settings import TOKEN_LEAKING_LOGGERS, Settings, SettingsError

# httpx logs every request URL at INFO, and a Bot API URL contains the bot token;
# python-telegram-bot's Bot logs its API URL (token included) and every call's parameters and
# answers (people's messages) at DEBUG.


# The Retry-After of the last 429 this task's twilio calls got: twilio's exception carries the
# status and the error code, not the headers. A context variable, so sends running side by
# side (one task each) never read each other's answer.
twilio_retry_after: ContextVar[float | None] = ContextVar("twilio_retry_after", default=None)
# Called at the moment a request's bytes are written to its connection, by the twilio client
# (aiohttp) and by the Telegram bot's (httpx): set by the worker around a paced send. The
# provider counts a message from when its request arrives, not from when the worker let it go,
# and the event loop may run other work in between.
request_leaving: ContextVar[Callable[[], None] | None] = ContextVar("request_leaving", default=None)


async def _chunk_sent(
    _session: object, _context: object, _params: TraceRequestChunkSentParams
) -> None:
    # aiohttp awaits this right before it writes the body (with the headers) to the socket,
    # with no other task run in between.
    leaving = request_leaving.get()
    if leaving is not None:
        leaving()


def _departures() -> TraceConfig:
    trace = TraceConfig()
    trace.on_request_chunk_sent.append(_chunk_sent)
    return trace


async def _httpcore_trace(event: str, _info: dict[str, Any]) -> None:
    # httpcore awaits this once the request line and headers are written to the connection
    # (HTTP/1.1 or HTTP/2): the provider cannot have seen the request before this moment.
    if event.endswith(".send_request_headers.complete"):
        leaving = request_leaving.get()
        if leaving is not None:
            leaving()


async def _trace_departure(request: httpx.Request) -> None:
    request.extensions["trace"] = _httpcore_trace


class DepartingHTTPXRequest(HTTPXRequest):
    """python-telegram-bot's httpx transport, reporting when each request leaves
    (:data:`request_leaving`): an httpx request hook asks httpcore to trace the request, and
    the trace's "headers written" event is the departure."""

    def __init__(self, **kwargs: Any) -> None:
        httpx_kwargs = dict(kwargs.pop("httpx_kwargs", None) or {})
        hooks = dict(httpx_kwargs.get("event_hooks") or {})
        hooks["request"] = [*hooks.get("request", []), _trace_departure]
        httpx_kwargs["event_hooks"] = hooks
        super().__init__(httpx_kwargs=httpx_kwargs, **kwargs)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """An HTTP ``Retry-After`` value in seconds: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def quiet_token_leaking_loggers() -> None:
    """Raise the loggers that would print the bot token or message texts to WARNING.

    Call it before building any ``telegram.Bot`` or ``Application`` (the Bot logs its URL when
    it is constructed); :func:`make_telegram_bot` does.
    """
    for name in TOKEN_LEAKING_LOGGERS:
        logger = logging.getLogger(name)
        # The logger's own level, not the one it inherits: logging configured after this call
        # (``hosen worker`` builds its bot, then sets the root logger to INFO) must not open it
        # again. A level set higher on purpose is kept.
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def telegram_api_urls(settings: Settings) -> tuple[str, str]:
    """python-telegram-bot's ``base_url`` and ``base_file_url`` for ``HOSEN_TELEGRAM_API_URL``.

    For an ``ApplicationBuilder``: ``.base_url(urls[0]).base_file_url(urls[1])``.
    """
    root = str(settings.telegram_api_url).rstrip("/")
    return f"{root}/bot", f"{root}/file/bot"


def make_telegram_bot(
    settings: Settings,
    *,
    connection_pool_size: int = 64,
    read_timeout: float = 10.0,
    pool_timeout: float = 10.0,
) -> Bot:
    """A ``telegram.Bot`` for ``HOSEN_TELEGRAM_TOKEN`` at ``HOSEN_TELEGRAM_API_URL``.

    Not yet initialised: use ``async with bot:`` or ``await bot.initialize()``. The connection
    pool is sized for concurrent sends (PTB's default Bot allows one connection at a time).
    """
    if settings.telegram_token is None:
        raise SettingsError("HOSEN_TELEGRAM_TOKEN: required to talk to Telegram")
    quiet_token_leaking_loggers()
    base_url, base_file_url = telegram_api_urls(settings)
    request = DepartingHTTPXRequest(
        connection_pool_size=connection_pool_size,
        read_timeout=read_timeout,
        pool_timeout=pool_timeout,
    )
    return Bot(
        settings.telegram_token.get_secret_value(),
        base_url=base_url,
        base_file_url=base_file_url,
        request=request,
    )


def _twilio_credentials(settings: Settings) -> tuple[str, str]:
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        raise SettingsError(
            "HOSEN_TWILIO_ACCOUNT_SID / HOSEN_TWILIO_AUTH_TOKEN: required to send SMS"
        )
    return settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value()


def _point_at_api(client: Client, settings: Settings) -> Client:
    # The Messages resource lives on the "api" domain; its base_url is the only place the
    # host is named, so replacing it moves every Messages call to HOSEN_TWILIO_API_URL.
    client.api.base_url = str(settings.twilio_api_url).rstrip("/")
    return client


class AsyncTwilioHttp(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's aiohttp transport with two corrections and one addition.

    twilio passes ``timeout=None`` on every call, which aiohttp reads as "no timeout at all", so
    the client-wide timeout is applied here; and the credentials travel as an ``Authorization``
    header, because aiohttp deprecates the ``BasicAuth`` object twilio would build. A 429's
    ``Retry-After`` is kept in :data:`twilio_retry_after` for the caller (the SMS sender).
    """

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = encode_basic_auth(auth[0], auth[1])
        response: Response = await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )
        if response.status_code == 429:
            twilio_retry_after.set(retry_after_seconds((response.headers or {}).get("Retry-After")))
        return response


def make_twilio_client(settings: Settings, *, timeout: float = 10.0) -> Client:
    """An asynchronous twilio ``Client``: ``await client.messages.create_async(...)``.

    Must be called with an event loop running (its aiohttp session binds to that loop);
    close it with ``await client.http_client.close()``, or use :func:`open_twilio_client`.
    """
    account_sid, auth_token = _twilio_credentials(settings)
    http_client = AsyncTwilioHttp(timeout=timeout, trace_configs=[_departures()])
    client = Client(account_sid, auth_token, account_sid=account_sid, http_client=http_client)
    return _point_at_api(client, settings)


@asynccontextmanager
async def open_twilio_client(settings: Settings, *, timeout: float = 10.0) -> AsyncIterator[Client]:
    """:func:`make_twilio_client` whose HTTP session is closed on exit."""
    client = make_twilio_client(settings, timeout=timeout)
    try:
        yield client
    finally:
        await client.http_client.close()


def make_twilio_sync_client(settings: Settings, *, timeout: float = 10.0) -> Client:
    """A blocking twilio ``Client`` (requests), for the CLI and scripts."""
    account_sid, auth_token = _twilio_credentials(settings)
    http_client = TwilioHttpClient(timeout=timeout)
    client = Client(account_sid, auth_token, account_sid=account_sid, http_client=http_client)
    return _point_at_api(client, settings)
