"""One-time codes that prove a typed phone number belongs to the person who typed it.

A code is six random digits (``secrets``) sent by SMS to the number; only a salted scrypt hash
of it is stored, with its expiry. Five wrong answers lock it. Sends are rate-limited per number
and per requester (the chat that asked), so the service cannot be used to flood a number with
texts. Every send, confirmation and lock is audited with the number masked and never the code.

This module decides and records; sending the SMS is the caller's (through the outbox, in the
same transaction). Every function takes ``session`` and leaves the commit to its caller.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from registry import audit
from registry.db import Base, UTCDateTime
from registry.errors import RegistryError
from registry.phones import Phone, mask_phone

DIGITS = 6
VALID_FOR = timedelta(minutes=10)
MAX_WRONG = 5
RESEND_AFTER = timedelta(seconds=60)
WINDOW = timedelta(hours=1)
SENDS_PER_PHONE = 3  # in WINDOW: a number gets at most this many codes an hour
SENDS_PER_REQUESTER = 5  # in WINDOW: one chat cannot spread texts over many numbers either
# scrypt's cost: about 15 ms a check here, so guessing all million codes of a stolen hash
# offline costs hours, while a code lives ten minutes.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class PhoneCode(Base):
    """One code sent to one number at one requester's request."""

    __tablename__ = "phone_code"
    __table_args__ = (
        Index("ix_phone_code_phone_sent", "phone", "sent_at"),
        Index("ix_phone_code_requester_sent", "requester", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20))
    # Who asked: "telegram:<chat id>" or "sms:<phone>"; the code counts only from there.
    requester: Mapped[str] = mapped_column(String(60))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    code_hash: Mapped[str] = mapped_column(String(120))  # "salt$scrypt", both hex
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    wrong: Mapped[int] = mapped_column(SmallInteger, default=0)
    # Set once the code can no longer be used: confirmed, locked, or replaced by a newer one.
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replaced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outbox_id: Mapped[int | None] = mapped_column(Integer)  # the SMS that carried it


class CodeRefused(RegistryError):
    """No code can be sent now; ``key`` says why (a catalog message), ``params`` for it."""


class Check(StrEnum):
    CONFIRMED = "confirmed"
    WRONG = "wrong"
    LOCKED = "locked"  # this was the fifth wrong answer, or the code was locked already
    EXPIRED = "expired"
    NONE = "none"  # no code was sent to this number for this requester


@dataclass(frozen=True)
class Issued:
    record: PhoneCode
    code: str = field(repr=False)  # for the SMS only: never logged, never stored


@dataclass(frozen=True)
class Checked:
    result: Check
    left: int = 0  # wrong answers left before the lock


def requester_of(channel: str, address: str) -> str:
    return f"{channel}:{address}"


def issue(
    session: Session,
    *,
    phone: Phone,
    requester: str,
    now: datetime,
    person_id: int | None = None,
    actor: str,
) -> Issued:
    """A new code for ``phone``, replacing any earlier one of this requester's for it.

    Raises :class:`CodeRefused` for a landline (``phone.code_landline``), a resend sooner than
    a minute (``phone.code_wait``, with ``seconds``) or too many sends in the hour, to this
    number or from this requester (``phone.code_too_many``).
    """
    if not phone.can_receive_sms:
        raise CodeRefused("phone.code_landline")
    since = now - WINDOW
    last = session.scalar(
        select(func.max(PhoneCode.sent_at)).where(
            PhoneCode.phone == phone.e164, PhoneCode.requester == requester
        )
    )
    if last is not None and now - last < RESEND_AFTER:
        wait = RESEND_AFTER - (now - last)
        raise CodeRefused("phone.code_wait", seconds=max(1, int(wait.total_seconds())))
    to_phone = _count(session, PhoneCode.phone == phone.e164, since=since)
    from_requester = _count(session, PhoneCode.requester == requester, since=since)
    if to_phone >= SENDS_PER_PHONE or from_requester >= SENDS_PER_REQUESTER:
        audit.record(
            session,
            actor=actor,
            action="phone_code.refused",
            at=now,
            phone=mask_phone(phone.e164),
            requester=requester,
        )
        raise CodeRefused("phone.code_too_many")
    session.execute(
        update(PhoneCode)
        .where(
            PhoneCode.phone == phone.e164,
            PhoneCode.requester == requester,
            PhoneCode.confirmed_at.is_(None),
            PhoneCode.locked_at.is_(None),
            PhoneCode.replaced_at.is_(None),
        )
        .values(replaced_at=now)
        .execution_options(synchronize_session=False)
    )
    code = "".join(secrets.choice("0123456789") for _ in range(DIGITS))
    record = PhoneCode(
        phone=phone.e164,
        requester=requester,
        person_id=person_id,
        code_hash=_hash(code),
        sent_at=now,
        expires_at=now + VALID_FOR,
        wrong=0,
    )
    session.add(record)
    session.flush()
    _audit(session, "phone_code.send", record, actor=actor, now=now)
    return Issued(record=record, code=code)


def check(
    session: Session, *, phone: str, requester: str, answer: str, now: datetime, actor: str
) -> Checked:
    """Compare an answer with the latest code this requester asked for this number."""
    record = session.scalar(
        select(PhoneCode)
        .where(PhoneCode.phone == phone, PhoneCode.requester == requester)
        .order_by(PhoneCode.id.desc())
        .limit(1)
    )
    if record is None or record.replaced_at is not None or record.confirmed_at is not None:
        return Checked(Check.NONE)
    if record.locked_at is not None:
        return Checked(Check.LOCKED)
    if now >= record.expires_at:
        return Checked(Check.EXPIRED)
    digits = "".join(ch for ch in answer if ch.isdigit())
    if len(digits) == DIGITS and _matches(digits, record.code_hash):
        record.confirmed_at = now
        _audit(session, "phone_code.confirm", record, actor=actor, now=now)
        return Checked(Check.CONFIRMED)
    record.wrong += 1
    if record.wrong >= MAX_WRONG:
        record.locked_at = now
        _audit(session, "phone_code.lock", record, actor=actor, now=now)
        return Checked(Check.LOCKED)
    return Checked(Check.WRONG, left=MAX_WRONG - record.wrong)


def _audit(session: Session, action: str, record: PhoneCode, *, actor: str, now: datetime) -> None:
    """An audit entry for a code: the number masked, who asked, which code; never the code."""
    audit.record(
        session,
        actor=actor,
        action=action,
        person_id=record.person_id,
        at=now,
        phone=mask_phone(record.phone),
        requester=record.requester,
        code_id=record.id,
    )


def _count(session: Session, where: ColumnElement[bool], *, since: datetime) -> int:
    query = select(func.count()).select_from(PhoneCode).where(where, PhoneCode.sent_at > since)
    return int(session.scalar(query) or 0)


def _hash(code: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(code.encode(), salt=salt, **_SCRYPT)
    return f"{salt.hex()}${digest.hex()}"


def _matches(code: str, stored: str) -> bool:
    salt_hex, _, digest_hex = stored.partition("$")
    digest = hashlib.scrypt(code.encode(), salt=bytes.fromhex(salt_hex), **_SCRYPT)
    return hmac.compare_digest(digest.hex(), digest_hex)
