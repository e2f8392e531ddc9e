"""Fault injection, rate limits and traffic counters shared by the two fakes.

A provider misbehaves in a handful of ways a dispatcher must survive, and the benchmarks and
reliability tests switch them on at runtime (``fake.faults = Faults(...)``,
``fake.limits = RateLimits(...)``):

- a fraction of requests answered 5xx, held past the client's timeout (never processed), or
  processed with the reply held back (the message went out, the client saw a timeout: the
  source of at-least-once duplicates);
- bursts of 429 answers with ``retry_after``;
- recipients that fail permanently (blocked the bot, chat not found; unsubscribed, invalid or
  landline numbers), chosen by a stable hash of the recipient so a retry meets the same fate;
- real rate-limit enforcement with token buckets (Telegram: 30 messages a second per bot and
  about one a second per chat; Twilio: the account's messages per second), or, for the whole
  bot or account, a strict sliding window (``strict=True``: the 31st message inside any one
  second is refused, however evenly the 30 before it were spread).

Everything random is drawn from ``random.Random(seed)``, so a run is repeatable when its
requests arrive in the same order.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["pass", "server_error", "timeout", "lost_reply", "throttled"]


@dataclass
class Faults:
    """What fraction of requests fail and how. All rates are in [0, 1]; zero means never."""

    seed: int = 0
    server_error_rate: float = 0.0
    timeout_rate: float = 0.0
    lost_reply_rate: float = 0.0
    # Chance that a request starts a burst of 429s covering it and the next ones.
    throttle_burst_rate: float = 0.0
    throttle_burst_length: int = 20
    retry_after: int = 1
    # How long a "timeout" holds the connection (longer than any client's read timeout).
    hold_seconds: float = 30.0
    # Methods (Telegram) or operations ("create", "fetch", "list" for Twilio) the faults hit;
    # None means all.
    methods: frozenset[str] | None = None
    # Per recipient, stable: Telegram chats that blocked the bot or do not exist ...
    blocked_rate: float = 0.0
    missing_chat_rate: float = 0.0
    # ... and Twilio numbers that are unsubscribed, invalid, landlines, or never delivered.
    unsubscribed_rate: float = 0.0
    invalid_number_rate: float = 0.0
    landline_rate: float = 0.0
    undeliverable_rate: float = 0.0

    _rng: random.Random = field(init=False, repr=False)
    _burst_left: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def decide(self, operation: str) -> Outcome:
        """The fate of one request (draws from the seeded generator)."""
        if self.methods is not None and operation not in self.methods:
            return "pass"
        with self._lock:
            if self._burst_left > 0:
                self._burst_left -= 1
                return "throttled"
            draw = self._rng.random()
            for outcome, rate in (
                ("server_error", self.server_error_rate),
                ("timeout", self.timeout_rate),
                ("lost_reply", self.lost_reply_rate),
            ):
                if draw < rate:
                    return outcome  # type: ignore[return-value]
                draw -= rate
            if draw < self.throttle_burst_rate:
                self._burst_left = max(0, self.throttle_burst_length - 1)
                return "throttled"
            return "pass"

    def throttle_next(self, requests: int) -> None:
        """Answer the next ``requests`` requests with 429, whatever the rates say."""
        with self._lock:
            self._burst_left = requests

    def picks(self, kind: str, recipient: object, rate: float) -> bool:
        """Whether ``recipient`` is among the ``rate`` fraction marked ``kind`` (stable)."""
        if rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{kind}:{recipient}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < rate


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def wait(self, now: float) -> float:
        """Refill up to ``now``; 0.0 if a token is there, else the seconds until one is."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        # the epsilon keeps float rounding (30 x 1/30 s = 0.999...) from refusing a due token
        return 0.0 if self.tokens >= 1 - 1e-9 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


@dataclass
class SlidingWindow:
    """At most ``limit`` messages inside any ``window`` seconds, counted exactly: a provider
    stricter than a token bucket, which forgives a message that arrives a hair early."""

    limit: int
    window: float = 1.0
    accepted: deque[float] = field(default_factory=deque)

    def wait(self, now: float) -> float:
        """0.0 if a message may go at ``now``, else the seconds until one may."""
        while self.accepted and self.accepted[0] <= now - self.window:
            self.accepted.popleft()
        if len(self.accepted) < self.limit:
            return 0.0
        return self.accepted[0] + self.window - now

    def take(self, now: float) -> None:
        self.accepted.append(now)


@dataclass
class RateLimits:
    """Token buckets for the whole bot/account and for each recipient. None: no limit.

    Telegram's published limits: about 30 messages a second to different chats, about one a
    second in one chat (short bursts tolerated) and 20 a minute in a group.
    """

    per_sender: float | None = None
    sender_burst: float | None = None
    per_recipient: float | None = None
    recipient_burst: float = 1.0
    per_group_per_minute: float | None = None
    clock: Callable[[], float] = time.monotonic
    # The whole bot's / account's limit counted in a sliding one-second window, not a bucket.
    strict: bool = False

    _buckets: dict[object, TokenBucket] = field(default_factory=dict, init=False, repr=False)
    _window: SlidingWindow | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def telegram(
        cls,
        *,
        per_chat_burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        strict: bool = False,
    ) -> RateLimits:
        """Telegram's limits: 30/s per bot, 1/s per chat, 20/min per group."""
        return cls(
            per_sender=30.0,
            per_recipient=1.0,
            recipient_burst=per_chat_burst,
            per_group_per_minute=20.0,
            clock=clock,
            strict=strict,
        )

    @classmethod
    def twilio(
        cls,
        messages_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        strict: bool = False,
    ) -> RateLimits:
        """An account sending ``messages_per_second`` (no per-recipient limit)."""
        return cls(
            per_sender=messages_per_second,
            sender_burst=messages_per_second,
            clock=clock,
            strict=strict,
        )

    def admit(self, recipient: object, *, group: bool = False) -> int:
        """0 if a message to ``recipient`` may go now (and count it), else ``retry_after`` (s)."""
        now = self.clock()
        with self._lock:
            buckets = []
            if group and self.per_group_per_minute is not None:
                rate = self.per_group_per_minute / 60
                buckets.append(
                    self._bucket(("group", recipient), rate, self.per_group_per_minute, now)
                )
            elif self.per_recipient is not None:
                buckets.append(
                    self._bucket(
                        ("recipient", recipient), self.per_recipient, self.recipient_burst, now
                    )
                )
            window = None
            if self.per_sender is not None and self.strict:
                if self._window is None:
                    self._window = SlidingWindow(limit=max(1, int(self.per_sender)))
                window = self._window
            elif self.per_sender is not None:
                burst = self.sender_burst if self.sender_burst is not None else self.per_sender
                buckets.append(self._bucket(("sender",), self.per_sender, burst, now))
            wait = max((bucket.wait(now) for bucket in buckets), default=0.0)
            if window is not None:
                wait = max(wait, window.wait(now))
            if wait > 0:
                return max(1, math.ceil(wait))
            for bucket in buckets:
                bucket.take()
            if window is not None:
                window.take(now)
            return 0

    def _bucket(self, key: object, rate: float, burst: float, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, max(1.0, burst), max(1.0, burst), now)
        return bucket


class Traffic:
    """Counters the benchmarks read: requests, outcomes, accepted messages per second."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.requests = 0
        self.accepted = 0
        self.throttled = 0
        self.server_errors = 0
        self.timeouts = 0
        self.lost_replies = 0
        self.refused = 0
        self.per_second: Counter[int] = Counter()
        self.first: float | None = None
        self.last: float | None = None
        self._lock = threading.Lock()

    def count(self, outcome: Outcome | Literal["accepted", "refused", "request"]) -> None:
        with self._lock:
            if outcome == "request":
                self.requests += 1
            elif outcome == "accepted" or outcome == "lost_reply":
                now = self.clock()
                self.accepted += 1
                self.first = now if self.first is None else self.first
                self.last = now
                self.per_second[int(now)] += 1
                if outcome == "lost_reply":
                    self.lost_replies += 1
            elif outcome == "throttled":
                self.throttled += 1
            elif outcome == "server_error":
                self.server_errors += 1
            elif outcome == "timeout":
                self.timeouts += 1
            elif outcome == "refused":
                self.refused += 1

    def rate(self) -> float:
        """Accepted messages a second between the first and the last one."""
        with self._lock:
            if self.first is None or self.last is None or self.last <= self.first:
                return float(self.accepted)
            return (self.accepted - 1) / (self.last - self.first)

    def peak_per_second(self) -> int:
        """The most messages accepted within one whole clock second."""
        with self._lock:
            return max(self.per_second.values(), default=0)

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "throttled_429": self.throttled,
            "server_errors_5xx": self.server_errors,
            "timeouts": self.timeouts,
            "lost_replies": self.lost_replies,
            "refused_4xx": self.refused,
            "rate_per_second": round(self.rate(), 1),
            "peak_per_second": self.peak_per_second(),
        }
