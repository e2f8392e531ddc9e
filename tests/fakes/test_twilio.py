"""The real twilio client (async and sync) against FakeTwilio, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp import web
from pydantic import SecretStr
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from config.settings import Settings
from dispatch.clients import make_twilio_sync_client, open_twilio_client
from fakes.twilio import SIGNATURE_HEADER, FakeTwilio
from tests.loopback_server import serve

pytestmark = pytest.mark.e2e
T = TypeVar("T")
DANA = "+972501234567"


def with_client(settings: Settings, body: Callable[[Client], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_twilio_client(settings) as client:
            return await body(client)

    return asyncio.run(run())


def test_create_and_fetch(fake_twilio: FakeTwilio, fake_settings: Settings) -> None:
    async def body(client: Client) -> tuple[Any, Any]:
        created = await client.messages.create_async(
            to=DANA, from_=fake_twilio.phone_number, body="תרגיל: האם אתם בסדר? השיבו 1 או 2"
        )
        fetched = await client.messages(created.sid).fetch_async()
        return created, fetched

    created, fetched = with_client(fake_settings, body)
    assert created.sid.startswith("SM") and len(created.sid) == 34
    assert created.status == "queued" and created.num_segments == "1"
    assert created.direction == "outbound-api" and created.account_sid == fake_twilio.account_sid
    assert fetched.sid == created.sid and fetched.body == created.body
    assert fake_twilio.last_sent(DANA)["body"].startswith("תרגיל")


def test_segments_are_counted_like_a_carrier(
    fake_twilio: FakeTwilio, fake_settings: Settings
) -> None:
    async def body(client: Client) -> list[str]:
        texts = ["a" * 160, "a" * 161, "א" * 70, "א" * 71]
        sent = [
            await client.messages.create_async(to=DANA, from_=fake_twilio.phone_number, body=t)
            for t in texts
        ]
        return [m.num_segments for m in sent]

    assert with_client(fake_settings, body) == ["1", "2", "1", "2"]


def test_wrong_auth_token_is_401(fake_twilio: FakeTwilio, fake_settings: Settings) -> None:
    wrong = fake_settings.model_copy(update={"twilio_auth_token": SecretStr("0" * 32)})
    with pytest.raises(TwilioRestException) as caught:
        with_client(
            wrong,
            lambda c: c.messages.create_async(to=DANA, from_=fake_twilio.phone_number, body="x"),
        )
    assert caught.value.status == 401 and caught.value.code == 20003
    assert fake_twilio.sent == []


@pytest.mark.parametrize(
    ("kwargs", "code", "violation"),
    [
        ({"body": "x", "smart_encoded": "perhaps"}, 20001, "not true or false"),
        ({"body": "x", "status_callback": "not a url"}, 20001, "not an absolute http(s) URL"),
        ({}, 21602, "none of 'Body'"),
        ({"body": "x", "to": "0501234567"}, 21211, "not an E.164 number"),
        ({"body": "x", "from_": "+972559999999"}, 21606, "not a number of this account"),
        ({"body": "x" * 1601}, 21617, "1600"),
    ],
    ids=["bad-boolean", "bad-uri", "no-body", "not-e164", "foreign-sender", "too-long"],
)
def test_bad_requests_are_refused_and_recorded(
    fake_twilio: FakeTwilio,
    fake_settings: Settings,
    kwargs: dict[str, Any],
    code: int,
    violation: str,
) -> None:
    arguments = {"to": DANA, "from_": fake_twilio.phone_number, **kwargs}
    with pytest.raises(TwilioRestException) as caught:
        with_client(fake_settings, lambda c: c.messages.create_async(**arguments))
    assert caught.value.status == 400 and caught.value.code == code
    assert any(violation in v for v in fake_twilio.violations), fake_twilio.violations
    fake_twilio.violations.clear()  # provoked on purpose


def test_unknown_parameter_is_a_violation(fake_twilio: FakeTwilio, fake_settings: Settings) -> None:
    async def body(client: Client) -> Any:
        return await client.api.request_async(
            "POST",
            f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json",
            data={"To": DANA, "From": fake_twilio.phone_number, "Body": "x", "Colour": "red"},
        )

    response = with_client(fake_settings, body)
    assert response.status_code == 400
    assert fake_twilio.violations == ["create: unknown parameter 'Colour'"]
    fake_twilio.violations.clear()


@pytest.mark.parametrize(
    ("configure", "code"),
    [("unsubscribed", 21610), ("invalid_numbers", 21211), ("landlines", 21614)],
)
def test_permanent_failures_per_number(
    fake_twilio: FakeTwilio, fake_settings: Settings, configure: str, code: int
) -> None:
    getattr(fake_twilio, configure).add(DANA)
    with pytest.raises(TwilioRestException) as caught:
        with_client(
            fake_settings,
            lambda c: c.messages.create_async(to=DANA, from_=fake_twilio.phone_number, body="x"),
        )
    assert caught.value.code == code
    assert fake_twilio.violations == []  # Hosen did nothing wrong; the number is bad


def test_sync_client_and_list(fake_twilio: FakeTwilio, fake_settings: Settings) -> None:
    client = make_twilio_sync_client(fake_settings)
    first = client.messages.create(to=DANA, from_=fake_twilio.phone_number, body="one")
    client.messages.create(to="+972501234568", from_=fake_twilio.phone_number, body="two")
    listed = client.messages.list(to=DANA)
    assert [m.sid for m in listed] == [first.sid]


async def _receiver(auth_token: str) -> tuple[web.AppRunner, str, list[tuple[str, dict[str, str]]]]:
    """A webhook endpoint that checks signatures the way Hosen's SMS endpoints must."""
    received: list[tuple[str, dict[str, str]]] = []
    validator = RequestValidator(auth_token)

    async def handle(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not validator.validate(
            str(request.url), form, request.headers.get(SIGNATURE_HEADER, "")
        ):
            return web.Response(status=403)
        received.append((request.path, form))
        return web.Response(status=204)

    runner, base = await serve(handle, "/sms/inbound", "/sms/status")
    return runner, base, received


def test_inbound_sms_is_signed_and_forgeries_are_not(fake_twilio: FakeTwilio) -> None:
    async def run() -> list[int]:
        runner, base, received = await _receiver(fake_twilio.auth_token)
        try:
            codes = [
                await fake_twilio.send_inbound_async(f"{base}/sms/inbound", from_=DANA, body="1"),
                await fake_twilio.send_inbound_async(
                    f"{base}/sms/inbound", from_=DANA, body="2", signing="forged"
                ),
                await fake_twilio.send_inbound_async(
                    f"{base}/sms/inbound", from_=DANA, body="3", signing="none"
                ),
                await fake_twilio.send_inbound_async(
                    f"{base}/sms/inbound",
                    from_=DANA,
                    body="4",
                    signature_url="https://hosen.example/sms/inbound",
                ),
            ]
            ((path, form),) = received
            assert path == "/sms/inbound" and form["Body"] == "1" and form["From"] == DANA
            assert form["To"] == fake_twilio.phone_number and form["SmsStatus"] == "received"
            assert form["MessageSid"].startswith("SM") and form["NumSegments"] == "1"
            return codes
        finally:
            await runner.cleanup()

    assert asyncio.run(run()) == [204, 403, 403, 403]


def test_status_callbacks_are_signed(fake_twilio: FakeTwilio, fake_settings: Settings) -> None:
    fake_twilio.undeliverable["+972501234568"] = 30003

    async def run() -> list[dict[str, str]]:
        runner, base, received = await _receiver(fake_twilio.auth_token)
        try:
            async with open_twilio_client(fake_settings) as client:
                delivered = await client.messages.create_async(
                    to=DANA,
                    from_=fake_twilio.phone_number,
                    body="x",
                    status_callback=f"{base}/sms/status",
                )
                await client.messages.create_async(
                    to="+972501234568",
                    from_=fake_twilio.phone_number,
                    body="x",
                    status_callback=f"{base}/sms/status",
                )
            assert await fake_twilio.send_status_async(delivered.sid, "delivered") == 204
            for _ in range(6000):  # the undeliverable one's callbacks run on the fake's loop
                if len(received) == 3:
                    break
                await asyncio.sleep(0.01)
            return [form for _, form in received]
        finally:
            await runner.cleanup()

    forms = asyncio.run(run())
    statuses = sorted((f["To"], f["MessageStatus"], f.get("ErrorCode")) for f in forms)
    assert statuses == [
        (DANA, "delivered", None),
        ("+972501234568", "sent", None),
        ("+972501234568", "undelivered", "30003"),
    ]
    assert fake_twilio.last_sent(DANA)["status"] == "delivered"


def test_an_unreachable_status_callback_is_recorded_not_raised(
    fake_twilio: FakeTwilio, fake_settings: Settings
) -> None:
    fake_twilio.auto_status = ("sent",)
    closed = "http://127.0.0.1:9/sms/status"  # discard port: nothing listens

    async def run() -> None:
        async with open_twilio_client(fake_settings) as client:
            await client.messages.create_async(
                to=DANA, from_=fake_twilio.phone_number, body="x", status_callback=closed
            )
        for _ in range(6000):
            if fake_twilio.callbacks:
                return
            await asyncio.sleep(0.01)

    asyncio.run(run())
    assert [(url, code) for url, _, code in fake_twilio.callbacks] == [(closed, 0)]
