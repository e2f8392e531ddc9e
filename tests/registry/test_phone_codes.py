"""One-time codes: hashed at rest, ten minutes, five wrong answers lock, sends limited."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import phone_codes
from registry.models import AuditEntry
from registry.phone_codes import Check, CodeRefused, PhoneCode, check, issue
from registry.phones import normalise_phone

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
PHONE = normalise_phone("052-555-1234", region="IL")
ME = "telegram:4242"


def send(
    session: Session, *, at: datetime = NOW, requester: str = ME, phone: object = PHONE
) -> str:
    return issue(session, phone=phone, requester=requester, now=at, actor="t").code  # type: ignore[arg-type]


def answer(session: Session, code: str, *, at: datetime = NOW, requester: str = ME) -> Check:
    return check(
        session, phone=PHONE.e164, requester=requester, answer=code, now=at, actor="t"
    ).result


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_the_code_is_stored_only_as_a_salted_hash(session: Session) -> None:
    code = send(session)
    assert len(code) == 6 and code.isdigit()
    record = session.scalars(select(PhoneCode)).one()
    assert code not in record.code_hash and record.expires_at == NOW + timedelta(minutes=10)
    other = send(session, requester="telegram:1")
    records = session.scalars(select(PhoneCode).order_by(PhoneCode.id)).all()
    # Two codes (even equal ones) never share a hash: each has its own salt.
    assert records[0].code_hash.split("$")[0] != records[1].code_hash.split("$")[0]
    assert answer(session, other, requester="telegram:1") == Check.CONFIRMED


def test_the_right_code_confirms_once_and_only_for_who_asked(session: Session) -> None:
    code = send(session)
    assert answer(session, code, requester="telegram:1") == Check.NONE
    assert answer(session, f" {code[:3]} {code[3:]} ") == Check.CONFIRMED
    assert answer(session, code) == Check.NONE  # used up


def test_a_code_expires_after_ten_minutes(session: Session) -> None:
    code = send(session)
    assert answer(session, code, at=NOW + timedelta(minutes=10)) == Check.EXPIRED
    fresh = send(session, at=NOW + timedelta(minutes=11))
    assert answer(session, code, at=NOW + timedelta(minutes=11)) in (Check.WRONG, Check.CONFIRMED)
    assert answer(session, fresh, at=NOW + timedelta(minutes=12)) in (Check.CONFIRMED, Check.NONE)


def test_five_wrong_codes_lock_it_and_are_audited(session: Session) -> None:
    code = send(session)
    left = [
        check(session, phone=PHONE.e164, requester=ME, answer=wrong_code(code), now=NOW, actor="t")
        for _ in range(5)
    ]
    assert [c.result for c in left] == [Check.WRONG] * 4 + [Check.LOCKED]
    assert [c.left for c in left[:4]] == [4, 3, 2, 1]
    # Locked: even the right code is refused now.
    assert answer(session, code) == Check.LOCKED
    actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions == ["phone_code.send", "phone_code.lock"]
    lock = session.scalars(select(AuditEntry).where(AuditEntry.action == "phone_code.lock")).one()
    assert PHONE.e164 not in str(lock.detail) and code not in str(lock.detail)


def test_a_new_code_replaces_the_old_one(session: Session) -> None:
    first = send(session)
    second = send(session, at=NOW + timedelta(minutes=2))
    if first != second:
        assert answer(session, first, at=NOW + timedelta(minutes=2)) == Check.WRONG
    assert answer(session, second, at=NOW + timedelta(minutes=2)) == Check.CONFIRMED


def test_resends_are_limited_per_number_and_per_requester(session: Session) -> None:
    send(session)
    with pytest.raises(CodeRefused) as soon:
        send(session, at=NOW + timedelta(seconds=20))
    assert soon.value.key == "phone.code_wait" and soon.value.params == {"seconds": 40}
    send(session, at=NOW + timedelta(minutes=1))
    send(session, at=NOW + timedelta(minutes=2))
    with pytest.raises(CodeRefused) as many:
        send(session, at=NOW + timedelta(minutes=3))
    assert many.value.key == "phone.code_too_many"
    # Another chat cannot send to that number either: the number's own limit is reached.
    with pytest.raises(CodeRefused):
        send(session, at=NOW + timedelta(minutes=3), requester="telegram:1")
    # An hour after the first, one more may go.
    send(session, at=NOW + timedelta(minutes=61))
    # One chat cannot spread texts over many numbers.
    spammer = "telegram:666"
    for n in range(phone_codes.SENDS_PER_REQUESTER):
        send(session, requester=spammer, phone=normalise_phone(f"052-555-9{n:03d}", region="IL"))
    with pytest.raises(CodeRefused) as spread:
        send(session, requester=spammer, phone=normalise_phone("052-555-9999", region="IL"))
    assert spread.value.key == "phone.code_too_many"
    refused = session.scalars(select(AuditEntry).where(AuditEntry.action == "phone_code.refused"))
    assert {e.detail["requester"] for e in refused} == {ME, "telegram:1", spammer}


def test_a_landline_gets_no_code(session: Session) -> None:
    with pytest.raises(CodeRefused) as landline:
        send(session, phone=normalise_phone("08-6123456", region="IL"))
    assert landline.value.key == "phone.code_landline"


def test_the_code_is_never_logged(session: Session, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    session.get_bind().echo = True  # even the SQL echo: only the hash is written
    try:
        code = send(session)
        answer(session, code)
        session.commit()
    finally:
        session.get_bind().echo = False
    assert caplog.records and code not in caplog.text
