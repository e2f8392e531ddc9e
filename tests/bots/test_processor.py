"""Store, acknowledge, then process: the webhooks answer once a message is committed, and the
inbox processor acts on it after, on SQLite and PostgreSQL. Time is moved, never waited for."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from bots.dialog import Dialog, Inbound
from bots.inbound import Delivery, accept
from bots.processor import InboxProcessor, ProcessorConfig, claim
from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.models import InboundMessage, OutboxMessage
from hosen.app import build_app
from hosen.context import Context
from registry.db import make_engine, make_sessionmaker, unit_of_work
from registry.models import Channel
from registry.profile_sync import Directory
from tests.bots.chat import Clock

TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://hosen.example.org"
DANA = "+972525551234"
OMER = "+972525554321"


def sms(sid: str, body: str, sender: str = DANA) -> Delivery:
    params = {"MessageSid": sid, "From": sender, "Body": body, "NumMedia": "0"}
    return Delivery(
        provider_key=f"sms:{sid}",
        inbound=Inbound(channel=Channel.SMS, address=sender, text=body),
        payload=params,
    )


def store(sessions: sessionmaker[Session], clock: Clock, *deliveries: Delivery) -> None:
    for delivery in deliveries:
        with unit_of_work(sessions) as session:
            accept(session, delivery=delivery, now=clock.tick(1))


def replies(sessions: sessionmaker[Session], address: str = DANA) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage.text)
                .where(OutboxMessage.address == address)
                .order_by(OutboxMessage.id)
            )
        )


def inbox(sessions: sessionmaker[Session]) -> list[InboundMessage]:
    with sessions() as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def processor(
    sessions: sessionmaker[Session], dialog: Dialog, clock: Clock, **config: Any
) -> InboxProcessor:
    return InboxProcessor(
        sessions=sessions,
        dialog=dialog,
        clock=lambda: clock.now,
        config=ProcessorConfig(**config),
    )


# --- the webhook answers before anything is processed -----------------------------------------


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "twilio_account_sid": "AC" + "0" * 32,
            "twilio_auth_token": SecretStr(TOKEN),
            "twilio_from": "+972500000000",
            "public_url": AnyHttpUrl(PUBLIC),
        }
    )


@pytest.fixture
def served(
    app_settings: Settings, sessions: sessionmaker[Session], directory: Directory, clock: Clock
) -> Iterator[tuple[httpx.AsyncClient, InboxProcessor]]:
    """The real app without its lifespan: no processor task runs, the test drains by hand."""
    ctx = Context(settings=app_settings)
    app = build_app(ctx, clock=lambda: clock.now, run_worker=False, run_bot=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC)
    processor = app.state.runtime.processor
    processor.clock = lambda: clock.now
    yield client, processor
    ctx.close()


async def post_sms(
    client: httpx.AsyncClient, sid: str, body: str, *, token: str = TOKEN
) -> httpx.Response:
    params = {"MessageSid": sid, "From": DANA, "To": "+972500000000", "Body": body}
    signature = RequestValidator(token).compute_signature(f"{PUBLIC}/sms/inbound", params)
    return await client.post("/sms/inbound", data=params, headers={"X-Twilio-Signature": signature})


def test_the_webhook_acknowledges_a_stored_message_before_processing_it(
    served: tuple[httpx.AsyncClient, InboxProcessor], sessions: sessionmaker[Session]
) -> None:
    client, processor = served
    answer = asyncio.run(post_sms(client, "SM1", "JOIN"))
    assert answer.status_code == 200 and "<Response>" in answer.text
    [row] = inbox(sessions)
    assert row.provider_key == "sms:SM1" and row.processed_at is None and row.sender
    assert replies(sessions) == []  # nothing answered yet: only stored
    [done] = processor.drain()
    assert done.processed
    [row] = inbox(sessions)
    assert row.processed_at is not None and row.leased_by is None
    assert len(replies(sessions)) == 1  # the language question


def test_a_redelivered_sms_is_acknowledged_and_stored_once(
    served: tuple[httpx.AsyncClient, InboxProcessor], sessions: sessionmaker[Session]
) -> None:
    client, processor = served

    async def twice() -> list[int]:
        first = await post_sms(client, "SM7", "JOIN")
        again = await post_sms(client, "SM7", "JOIN")
        return [first.status_code, again.status_code]

    assert asyncio.run(twice()) == [200, 200]
    assert len(inbox(sessions)) == 1
    processor.drain()
    assert asyncio.run(post_sms(client, "SM7", "JOIN")).status_code == 200  # after processing
    assert processor.drain() == []
    assert len(replies(sessions)) == 1


def test_a_forged_sms_is_refused_before_anything_is_stored(
    served: tuple[httpx.AsyncClient, InboxProcessor], sessions: sessionmaker[Session]
) -> None:
    client, _ = served
    assert asyncio.run(post_sms(client, "SM9", "JOIN", token="not-the-token")).status_code == 403
    assert inbox(sessions) == []


def test_the_same_delivery_racing_in_is_stored_once(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    start = threading.Barrier(4)
    stored: list[bool] = []

    def deliver() -> None:
        start.wait()
        with unit_of_work(sessions) as session:
            stored.append(accept(session, delivery=sms("SMrace", "JOIN"), now=clock.now))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(stored) == [False, False, False, True]
    processor(sessions, dialog, clock).drain()
    assert len(inbox(sessions)) == 1 and len(replies(sessions)) == 1


# --- a crash loses nothing ------------------------------------------------------------------


def test_messages_stored_before_a_crash_are_processed_after_the_restart(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    store(sessions, clock, sms("SM1", "JOIN"), sms("SM2", "hello", OMER))
    # The first process claimed both and died before processing them (no commit after claim).
    dead = processor(sessions, dialog, clock, lease_seconds=30)
    assert len(dead.claim()) == 2
    restarted = processor(sessions, dialog, clock, lease_seconds=30)
    assert restarted.drain() == []  # still leased to the dead one
    clock.tick(31)
    done = restarted.drain()
    assert sorted(d.inbox_id for d in done if d.processed) == [r.id for r in inbox(sessions)]
    assert all(r.processed_at is not None and r.attempts == 2 for r in inbox(sessions))
    assert len(replies(sessions)) == 1 and len(replies(sessions, OMER)) == 1


def test_a_late_processor_does_not_process_a_row_taken_over_after_its_lease(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    store(sessions, clock, sms("SM1", "JOIN"))
    slow = processor(sessions, dialog, clock, lease_seconds=30)
    [claimed] = slow.claim()
    clock.tick(31)
    assert [d.processed for d in processor(sessions, dialog, clock).drain()] == [True]
    assert not slow.process_one(claimed).processed  # no longer its row
    assert len(replies(sessions)) == 1


# --- one sender in order; a poison message neither blocks others nor loops ----------------------


class FussyDialog(Dialog):
    """Fails on the word ``boom`` (always, or the first ``fails`` times)."""

    fails = 1_000

    def respond(self, session: Session, conversation: Any, inbound: Inbound, **kw: Any) -> Any:
        if inbound.text == "boom" and self.fails > 0:
            self.fails -= 1
            raise RuntimeError("something broke")
        return super().respond(session, conversation, inbound, **kw)


def test_one_senders_messages_are_processed_in_order(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    store(sessions, clock, sms("SM1", "JOIN"), sms("SM2", "hi", OMER), sms("SM3", "3"))
    first = processor(sessions, dialog, clock, batch=1)
    other = processor(sessions, dialog, clock)
    taken = first.claim()
    assert len(taken) == 1  # Dana's first
    # Omer's only: Dana's second waits for her first, even for another process.
    [omer] = other.claim()
    assert omer not in taken and other.claim() == []
    for inbox_id in taken:
        first.process_one(inbox_id)
    other.process_one(omer)
    assert [d.processed for d in other.drain()] == [True]
    # JOIN asked the language, "3" answered it: the second reply is in the chosen language.
    answers = replies(sessions)
    assert len(answers) == 2 and answers[0] != answers[1]


def test_a_poison_message_is_retried_then_parked_and_others_go_on(
    sessions: sessionmaker[Session],
    directory: Directory,
    dialog: Dialog,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fussy = FussyDialog(profile=dialog.profile, region="IL")
    store(sessions, clock, sms("SM1", "boom"), sms("SM2", "JOIN", OMER), sms("SM3", "JOIN"))
    work = processor(sessions, fussy, clock, max_attempts=3, backoff_base=10)
    caplog.set_level(logging.INFO)
    done = work.drain()
    # Dana's JOIN came in the same batch as her failed message: it is given back, unprocessed,
    # to wait behind it.
    assert [(d.processed, d.failed) for d in done] == [
        (False, "RuntimeError"),
        (True, None),
        (False, None),
    ]
    first = inbox(sessions)[0]
    assert first.error == "RuntimeError" and first.attempts == 1 and first.parked_at is None
    assert inbox(sessions)[2].attempts == 0 and inbox(sessions)[2].leased_by is None
    assert work.drain() == []  # backing off; Dana's JOIN waits behind her first message
    clock.tick(10)
    assert [d.failed for d in work.drain()] == ["RuntimeError", None]  # her JOIN held again
    clock.tick(20)
    [parked] = work.drain()[:1]
    assert parked.parked
    first = inbox(sessions)[0]
    assert first.parked_at is not None and first.error == "parked: RuntimeError"
    assert replies(sessions)[0] == t(Language.HE, "bot.error.internal")
    assert all(r.processed_at is not None for r in inbox(sessions)[1:])  # her JOIN went on
    assert len(replies(sessions)) == 2
    logged = caplog.text
    assert "RuntimeError" in logged
    assert DANA not in logged and "boom" not in logged and "something broke" not in logged


def test_a_message_that_succeeds_on_retry_is_processed_once(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    fussy = FussyDialog(profile=dialog.profile, region="IL")
    fussy.fails = 1
    store(sessions, clock, sms("SM1", "boom"))
    work = processor(sessions, fussy, clock, backoff_base=1)
    assert [d.failed for d in work.drain()] == ["RuntimeError"]
    clock.tick(1)
    assert [d.processed for d in work.drain()] == [True]
    [row] = inbox(sessions)
    assert row.processed_at is not None and row.parked_at is None and row.attempts == 2
    assert replies(sessions) and replies(sessions)[0] != t(Language.HE, "bot.error.internal")


def test_a_message_that_kills_its_processor_ends_parked(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    store(sessions, clock, sms("SM1", "JOIN"))
    for _ in range(2):  # claimed, then the process died, twice
        assert processor(sessions, dialog, clock, max_attempts=2, lease_seconds=5).claim()
        clock.tick(6)
    [done] = processor(sessions, dialog, clock, max_attempts=2).drain()
    assert done.parked and inbox(sessions)[0].parked_at is not None


# --- several processes on PostgreSQL ---------------------------------------------------------


def test_processes_claim_disjoint_rows_on_postgresql(
    engine: Any, sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers")
    senders = [f"+97252555{n:04d}" for n in range(40)]
    store(sessions, clock, *(sms(f"SM{n}", "JOIN", phone) for n, phone in enumerate(senders)))
    # Process A has claimed and not yet committed: B skips A's locked rows instead of waiting.
    a = processor(sessions, dialog, clock, batch=15)
    b = processor(sessions, dialog, clock, batch=100)
    with unit_of_work(sessions) as held:
        mine = claim(
            held,
            holder=a.holder,
            now=clock.now,
            limit=15,
            lease=timedelta(seconds=60),
            skip_locked=True,
        )
        theirs = b.claim()
        assert len(mine) == 15 and len(theirs) == 25 and not set(mine) & set(theirs)
    # Four processes (engines of their own) drain a larger inbox concurrently (the rows claimed
    # above come back too: storing moved the clock past their lease).
    more = [f"+97252556{n:04d}" for n in range(200)]
    store(sessions, clock, *(sms(f"SMb{n}", "JOIN", phone) for n, phone in enumerate(more)))
    results: list[int] = []
    start = threading.Barrier(4)

    def serve() -> None:
        own = make_engine(engine.url.render_as_string(hide_password=False))
        try:
            work = processor(make_sessionmaker(own), dialog, clock, batch=10)
            start.wait()
            results.extend(d.inbox_id for d in work.drain() if d.processed)
        finally:
            own.dispose()

    threads = [threading.Thread(target=serve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(set(results)) == 240  # each processed exactly once
    with sessions() as session:
        replied = session.scalar(
            select(func.count(func.distinct(OutboxMessage.address))).where(
                OutboxMessage.address.in_(senders + more)
            )
        )
        assert replied == 240


# --- the intake: group commit -------------------------------------------------------------------


def test_the_intake_commits_concurrent_webhooks_together_and_tells_each_if_new(
    sessions: sessionmaker[Session], directory: Directory, clock: Clock
) -> None:
    from bots.inbound import arrival_of
    from bots.intake import Intake, WriteTurns

    woken: list[int] = []
    intake = Intake(
        sessions=sessions,
        clock=lambda: clock.now,
        stored=lambda: woken.append(1),
        turns=WriteTurns(),
    )
    deliveries = [sms(f"SM{n % 30}", "1", f"+97252555{n % 30:04d}") for n in range(60)]

    async def all_at_once() -> list[bool]:
        return list(await asyncio.gather(*(intake.store(arrival_of(d)) for d in deliveries)))

    try:
        new = asyncio.run(all_at_once())
    finally:
        intake.close()
    assert sum(new) == 30 and len(woken) == 30  # each key new exactly once
    assert intake.rows == 60 and intake.batches < 60  # several requests shared a commit
    rows = inbox(sessions)
    assert len(rows) == 30 and all(r.processed_at is None and r.sender for r in rows)
