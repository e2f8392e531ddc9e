"""The console's session: one signed cookie, and the CSRF token every form carries.

The cookie holds a random nonce, the reader's language, the phone a sign-in code was asked for
(before sign-in) and, once signed in, the staff member's id and when they signed in. It is
signed with ``HOSEN_CONSOLE_SECRET`` (itsdangerous), HttpOnly and SameSite=Strict; a sign-in
older than ``HOSEN_CONSOLE_SESSION_HOURS`` by the injected clock no longer counts. The CSRF
token is a keyed digest of the nonce: a page of another site cannot read it, so it cannot post a
form in an officer's name. Signing in draws a new nonce (no session fixation).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from config.languages import DEFAULT_LANGUAGE, Language

COOKIE = "hosen_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class ConsoleSession:
    nonce: str
    language: Language = DEFAULT_LANGUAGE
    staff_id: int | None = None
    signed_in_at: float | None = None  # seconds since the epoch, by the service's clock
    pending_phone: str | None = None  # E.164: a sign-in code was asked for this number

    @classmethod
    def fresh(cls, language: Language = DEFAULT_LANGUAGE) -> ConsoleSession:
        return cls(nonce=secrets.token_urlsafe(18), language=language)

    def signed_in(self, staff_id: int, now: datetime) -> ConsoleSession:
        return ConsoleSession(
            nonce=secrets.token_urlsafe(18),
            language=self.language,
            staff_id=staff_id,
            signed_in_at=now.timestamp(),
        )

    def with_language(self, language: Language) -> ConsoleSession:
        return replace(self, language=language)

    def waiting_for_code(self, phone: str) -> ConsoleSession:
        return replace(self, pending_phone=phone, staff_id=None, signed_in_at=None)


class Sessions:
    """Reads and writes the cookie; checks expiry and CSRF tokens."""

    def __init__(self, *, secret: str, lifetime: timedelta) -> None:
        self._serializer = URLSafeSerializer(secret, salt="hosen.console.session")
        self._csrf_key = hashlib.sha256(f"csrf:{secret}".encode()).digest()
        self.lifetime = lifetime

    def load(self, raw: str | None, *, now: datetime) -> ConsoleSession | None:
        """The session in the cookie, or None when there is none or it was tampered with. A
        sign-in past its lifetime is dropped (the rest of the session stays)."""
        if not raw:
            return None
        try:
            data: dict[str, Any] = self._serializer.loads(raw)
            session = ConsoleSession(
                nonce=str(data["n"]),
                language=Language(data.get("l", DEFAULT_LANGUAGE.value)),
                staff_id=int(data["s"]) if data.get("s") is not None else None,
                signed_in_at=float(data["t"]) if data.get("t") is not None else None,
                pending_phone=str(data["p"]) if data.get("p") else None,
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if session.staff_id is not None and not self.current(session, now=now):
            return replace(session, staff_id=None, signed_in_at=None)
        return session

    def current(self, session: ConsoleSession, *, now: datetime) -> bool:
        if session.signed_in_at is None:
            return False
        age = now.timestamp() - session.signed_in_at
        return 0 <= age < self.lifetime.total_seconds()

    def dump(self, session: ConsoleSession) -> str:
        data: dict[str, Any] = {"n": session.nonce, "l": session.language.value}
        if session.staff_id is not None:
            data["s"], data["t"] = session.staff_id, session.signed_in_at
        if session.pending_phone:
            data["p"] = session.pending_phone
        return str(self._serializer.dumps(data))

    def csrf_token(self, session: ConsoleSession) -> str:
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, session: ConsoleSession | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(self.csrf_token(session), token)
