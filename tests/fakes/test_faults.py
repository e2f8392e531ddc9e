"""Fault injection and rate limits: deterministic, and seen by the real clients as they would
see the real providers misbehave."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from telegram import Bot
from telegram.error import Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.request import HTTPXRequest
from twilio.base.exceptions import TwilioRestException

from config.settings import Settings
from dispatch.clients import open_twilio_client
from fakes.faults import Faults, RateLimits, Traffic
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry.models import Channel


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_faults_are_repeatable_with_a_seed() -> None:
    def run(seed: int) -> list[str]:
        faults = Faults(
            seed=seed, server_error_rate=0.1, timeout_rate=0.05, throttle_burst_rate=0.01
        )
        return [faults.decide("sendMessage") for _ in range(2000)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    counts = Counter(run(7))
    assert 150 < counts["server_error"] < 250 and 60 < counts["timeout"] < 140
    assert counts["throttled"] > 0


def test_a_throttle_burst_covers_consecutive_requests() -> None:
    faults = Faults(throttle_burst_rate=0.05, throttle_burst_length=4, seed=11)
    outcomes = [faults.decide("x") for _ in range(400)]
    first = outcomes.index("throttled")
    assert outcomes[first : first + 4] == ["throttled"] * 4
    forced = Faults()
    forced.throttle_next(3)
    assert [forced.decide("x") for _ in range(5)] == ["throttled"] * 3 + ["pass"] * 2


def test_faults_only_hit_the_chosen_methods() -> None:
    faults = Faults(server_error_rate=1.0, methods=frozenset({"sendMessage"}))
    assert faults.decide("getUpdates") == "pass"
    assert faults.decide("sendMessage") == "server_error"


def test_recipients_are_picked_stably_in_proportion() -> None:
    faults = Faults(seed=3)
    picked = [n for n in range(10_000) if faults.picks("blocked", n, 0.1)]
    assert 900 < len(picked) < 1100
    assert picked == [n for n in range(10_000) if Faults(seed=3).picks("blocked", n, 0.1)]
    assert not faults.picks("blocked", 1, 0.0)


def test_telegram_rate_limits_with_a_manual_clock() -> None:
    clock = ManualClock()
    limits = RateLimits.telegram(clock=clock)
    assert [limits.admit(chat) for chat in range(30)] == [0] * 30
    assert limits.admit(30) == 1  # 31st message within the second: the bot's limit
    clock.now += 1 / 30
    assert limits.admit(30) == 0
    assert limits.admit(5) == 1  # chat 5 had its message this second
    clock.now += 1
    assert limits.admit(5) == 0
    group = -100
    assert [limits.admit(group, group=True) for _ in range(20)] == [0] * 20
    clock.now += 1
    assert limits.admit(group, group=True) == 3  # 20 a minute: the next slot in 3 s


def test_a_strict_window_refuses_the_31st_message_inside_any_second() -> None:
    """A token bucket forgives a message a hair early; the strict window does not."""
    clock = ManualClock()
    bucket, strict = (
        RateLimits.twilio(30, clock=clock),
        RateLimits.twilio(30, clock=clock, strict=True),
    )
    answers: dict[str, list[int]] = {"bucket": [], "strict": []}
    for n in range(31):
        clock.now = 1000.0 + n / 30 - (1e-4 if n == 30 else 0.0)  # the 31st: 0.1 ms early
        answers["bucket"].append(bucket.admit(n))
        answers["strict"].append(strict.admit(n))
    assert answers["bucket"] == [0] * 31
    assert answers["strict"] == [0] * 30 + [1]
    clock.now = 1001.0 + 1e-6  # just past a second after the first one
    assert strict.admit("late") == 0


def test_traffic_counts_rates() -> None:
    clock = ManualClock()
    traffic = Traffic(clock=clock)
    for _ in range(11):
        traffic.count("request")
        traffic.count("accepted")
        clock.now += 0.1
    traffic.count("throttled")
    summary = traffic.summary()
    assert summary["requests"] == 11 and summary["throttled_429"] == 1
    assert summary["rate_per_second"] == pytest.approx(10.0)
    assert traffic.peak_per_second() == 10


def _bot(fake: FakeTelegram, read_timeout: float = 5.0) -> Bot:
    return Bot(fake.token, base_url=fake.base_url, request=HTTPXRequest(read_timeout=read_timeout))


@pytest.mark.e2e
def test_telegram_faults_reach_python_telegram_bot(fake_telegram: FakeTelegram) -> None:
    dana = fake_telegram.new_user()

    async def run() -> None:
        # Only the two sends the fake holds are given a short read timeout: a 0.3 s one on
        # every call timed out the ordinary answers too, on a busy machine.
        async with _bot(fake_telegram) as bot:
            fake_telegram.faults = Faults(server_error_rate=1.0)
            for _ in range(2):  # a 502 from the proxy and a 500 from the API
                with pytest.raises(NetworkError):
                    await bot.send_message(dana.id, "x")
            fake_telegram.faults = Faults(timeout_rate=1.0, hold_seconds=5)
            with pytest.raises(TimedOut):
                await bot.send_message(dana.id, "never sent", read_timeout=0.3)
            fake_telegram.faults = Faults(lost_reply_rate=1.0, hold_seconds=5)
            with pytest.raises(TimedOut):
                await bot.send_message(dana.id, "sent, reply lost", read_timeout=0.3)
            fake_telegram.faults = Faults()
            fake_telegram.faults.throttle_next(1)
            with pytest.raises(RetryAfter) as caught:
                await bot.send_message(dana.id, "x")
            assert caught.value.retry_after == 1
            fake_telegram.faults = Faults(blocked_rate=1.0)
            with pytest.raises(Forbidden, match="blocked"):
                await bot.send_message(dana.id, "x")

    asyncio.run(run())
    assert [m["text"] for m in fake_telegram.sent_to(dana.id)] == ["sent, reply lost"]
    traffic = fake_telegram.traffic
    assert (traffic.server_errors, traffic.timeouts, traffic.lost_replies, traffic.throttled) == (
        2,
        1,
        1,
        1,
    )


@pytest.mark.e2e
def test_telegram_rate_limit_answers_retry_after(fake_telegram: FakeTelegram) -> None:
    clock = ManualClock()
    fake_telegram.limits = RateLimits.telegram(clock=clock)
    dana = fake_telegram.new_user()

    async def run() -> None:
        async with _bot(fake_telegram) as bot:
            await bot.send_message(dana.id, "first")
            with pytest.raises(RetryAfter):
                await bot.send_message(dana.id, "second, too soon")
            clock.now += 1
            await bot.send_message(dana.id, "second")

    asyncio.run(run())
    assert fake_telegram.traffic.throttled == 1 and fake_telegram.traffic.accepted == 2


@pytest.mark.e2e
def test_twilio_faults_and_limits_reach_the_twilio_client(
    fake_twilio: FakeTwilio, fake_settings: Settings
) -> None:
    clock = ManualClock()
    sender = fake_twilio.phone_number

    async def run() -> list[int]:
        codes: list[int] = []
        async with open_twilio_client(fake_settings) as client:
            for faults in (
                Faults(server_error_rate=1.0),
                Faults(server_error_rate=1.0),
                Faults(throttle_burst_rate=1.0),
                Faults(unsubscribed_rate=1.0),
                Faults(landline_rate=1.0),
                Faults(invalid_number_rate=1.0),
            ):
                fake_twilio.faults = faults
                with pytest.raises(TwilioRestException) as caught:
                    await client.messages.create_async(to="+972501234567", from_=sender, body="x")
                codes.append(caught.value.code)
            fake_twilio.faults = Faults()
            fake_twilio.limits = RateLimits.twilio(1, clock=clock)
            await client.messages.create_async(to="+972501234567", from_=sender, body="x")
            with pytest.raises(TwilioRestException) as caught:
                await client.messages.create_async(to="+972501234568", from_=sender, body="x")
            codes.append(caught.value.code)
        return codes

    assert asyncio.run(run()) == [20503, 20500, 20429, 21610, 21614, 21211, 20429]
    assert fake_twilio.traffic.throttled == 2 and fake_twilio.traffic.accepted == 1


@pytest.mark.e2e
def test_the_sms_sender_reads_twilios_retry_after(
    fake_twilio: FakeTwilio, fake_settings: Settings
) -> None:
    """twilio's exception has no headers: the transport keeps a 429's Retry-After for the
    sender, and a send in another task never sees it."""
    from dispatch.senders import Outgoing, RateLimited, Sent, build_senders

    sender = build_senders(fake_settings)[Channel.SMS]

    async def run() -> list[object]:
        await sender.start()
        try:
            fake_twilio.faults = Faults(throttle_burst_rate=1.0, retry_after=3)
            message = Outgoing(id=1, channel=Channel.SMS, address="+972501234567", text="x")
            throttled = await sender.send(message)
            fake_twilio.faults = Faults()
            sent = await sender.send(message)
            return [throttled, type(sent)]
        finally:
            await sender.close()

    assert asyncio.run(run()) == [RateLimited(retry_after=3.0), Sent]
