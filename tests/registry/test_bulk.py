"""The bulk update and upsert paths (driver-level SQL per dialect), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.models import ChatGate, OutboxMessage, OutboxStatus
from dispatch.outbox import enqueue
from registry.bulk import bulk_insert, bulk_update, bulk_upsert
from registry.models import AuditEntry, Channel

pytestmark = pytest.mark.db

AT = datetime(2026, 11, 22, 9, 30, 15, 123456, tzinfo=UTC)


def _queue(sessions: sessionmaker[Session], count: int) -> list[int]:
    with sessions() as session:
        rows = [
            enqueue(session, channel=Channel.SMS, address=f"+97250000000{n}", text=f"t{n}")
            for n in range(count)
        ]
        session.flush()
        for row in rows:
            row.status = OutboxStatus.SENDING
            row.leased_by = "worker-1"
            row.attempts = 1
        session.commit()
        return [row.id for row in rows]


def test_update_writes_each_rows_own_values_and_the_shared_ones_and_nothing_else(
    sessions: sessionmaker[Session],
) -> None:
    first, second, untouched = _queue(sessions, 3)
    with sessions() as session:
        bulk_update(
            session,
            OutboxMessage,
            [
                {"id": second, "provider_id": "SM-b", "due_at": AT + timedelta(seconds=1)},
                {"id": first, "provider_id": "SM-a", "due_at": AT},
            ],
            same={"status": OutboxStatus.SENT, "sent_at": AT, "leased_by": None},
        )
        session.commit()
    with sessions() as session:
        rows = {row.id: row for row in session.scalars(select(OutboxMessage))}
    assert [
        (rows[i].provider_id, rows[i].due_at, rows[i].status, rows[i].sent_at, rows[i].leased_by)
        for i in (first, second)
    ] == [
        ("SM-a", AT, OutboxStatus.SENT, AT, None),
        ("SM-b", AT + timedelta(seconds=1), OutboxStatus.SENT, AT, None),
    ]
    assert rows[first].attempts == 1 and rows[first].text == "t0", "other columns kept"
    left = rows[untouched]
    assert (left.status, left.provider_id, left.leased_by) == (
        OutboxStatus.SENDING,
        None,
        "worker-1",
    )


def test_update_without_shared_values_and_with_nothing_to_update(
    sessions: sessionmaker[Session],
) -> None:
    (only,) = _queue(sessions, 1)
    with sessions() as session:
        bulk_update(session, OutboxMessage, [])
        bulk_update(session, OutboxMessage, [{"id": only, "last_error": None, "attempts": 3}])
        session.commit()
    with sessions() as session:
        row = session.get_one(OutboxMessage, only)
        assert (row.attempts, row.last_error, row.status) == (3, None, OutboxStatus.SENDING)


def test_upsert_inserts_new_keys_and_updates_existing_ones(
    sessions: sessionmaker[Session],
) -> None:
    later = AT + timedelta(seconds=5)
    with sessions() as session:
        for rows in (
            [(Channel.TELEGRAM, "1", AT), (Channel.TELEGRAM, "2", AT)],
            [(Channel.TELEGRAM, "2", later), (Channel.SMS, "2", AT)],
        ):
            bulk_upsert(
                session,
                ChatGate,
                [{"channel": c, "address": a, "next_at": at} for c, a, at in rows],
                conflict=["channel", "address"],
            )
            session.commit()
    with sessions() as session:
        gates = {
            (gate.channel, gate.address): gate.next_at for gate in session.scalars(select(ChatGate))
        }
    assert gates == {
        (Channel.TELEGRAM, "1"): AT,
        (Channel.TELEGRAM, "2"): later,
        (Channel.SMS, "2"): AT,
    }


def test_insert_writes_shared_and_equal_json_values_each_as_its_row_has_it(
    sessions: sessionmaker[Session],
) -> None:
    """One detail object shared by many rows, equal ones apart, and different ones: each row
    reads back its own (the shared object is encoded once, never mixed up with another)."""
    shared = {"kind": "registration", "version": "v1"}
    details = [shared, {"kind": "health_data", "version": "v1"}, shared, dict(shared), {}, shared]
    details.append({"fields": ["language", "name"], "source": "import"})
    with sessions() as session:
        bulk_insert(
            session,
            AuditEntry,
            [
                {"actor": "t", "action": "x", "person_id": None, "at": AT, "detail": detail}
                for detail in details
            ],
        )
        found = session.scalars(
            select(AuditEntry.detail).where(AuditEntry.actor == "t").order_by(AuditEntry.id)
        ).all()
        session.rollback()
    assert found == details
