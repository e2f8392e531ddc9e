"""Keyed digests of identifiers (a phone, a Telegram chat id) for where a copy would be too much.

An unkeyed hash of a phone number is no protection: Israel's mobile numbers are a few hundred
million, and a laptop hashes them all in seconds. A digest here is an HMAC-SHA256 under
``HOSEN_HASH_KEY``, which lives in the environment, never in the database. Without it (tests,
the demo) a random key is made for the process, so digests still work within one process but do
not match across processes or restarts: production sets the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from registry.models import Channel

# The process's key: random until use_key sets the configured one at start.
_KEY = {"key": secrets.token_bytes(32), "configured": False}


def use_key(key: str) -> None:
    """Key every digest of this process with ``key`` (``HOSEN_HASH_KEY``)."""
    _KEY.update(key=key.encode(), configured=True)


def keyed() -> bool:
    """Whether digests use the configured key (else a random one of this process)."""
    return bool(_KEY["configured"])


def digest(text: str) -> str:
    """A 32-hex-digit keyed digest of ``text``; the same text gives the same digest."""
    key = _KEY["key"]
    assert isinstance(key, bytes)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


def sender_key(channel: Channel, address: str) -> str:
    """The inbox's key for one sender (their order, their erasure): never a copy of the phone."""
    return digest(f"{channel.value}:{address}")
