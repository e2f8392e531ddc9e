"""The inbox processor's batches, on SQLite and PostgreSQL: a batch's plain check-in answers are
written in a few statements, and everything the person sees and the officer reads is what the
per-message path gives; a sender's messages keep their order inside a batch; a crash mid-batch
leaves every row to be processed once; two processors never take the same row."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog, Inbound
from bots.inbound import Delivery, accept, handle_inbound
from bots.processor import InboxProcessor, ProcessorConfig, claim, decoders
from config.i18n import t
from config.languages import Language
from dispatch.campaigns import Audience, marked, start_drill_checkin
from dispatch.models import (
    Alert,
    AlertKind,
    Answer,
    Campaign,
    CampaignMode,
    CampaignRecipient,
    CampaignStatus,
    InboundMessage,
    OutboxMessage,
    OutboxStatus,
)
from fakes.town import insert_reachable_residents
from registry.db import make_engine, make_sessionmaker, unit_of_work
from registry.models import Authority, Channel, Person, PersonStatus
from registry.phones import normalise_phone
from registry.profile_sync import Directory
from registry.staff import StaffRole, add_staff
from tests.bots.chat import Clock

CHAT_BASE = 810_000
PREFIX = "+97250"
LANGUAGES = ("he", "ar", "en", "ru", "am", "he")  # resident n and n + 6 speak the same
_keys = iter(range(1, 1_000_000))


def phone(n: int) -> str:
    return f"{PREFIX}{n:07d}"


def town(
    sessions: sessionmaker[Session], directory: Directory, clock: Clock, count: int, checkins: int
) -> list[int]:
    """``count`` residents (even ones on Telegram) and ``checkins`` drill check-ins to all of
    them, sent; returns the campaign ids, latest last."""
    campaigns = []
    with unit_of_work(sessions) as session:
        authority = session.merge(directory.authorities["kiryat-tamar"])
        insert_reachable_residents(
            session,
            authority_id=authority.id,
            count=count,
            on_telegram=lambda n: n % 2 == 0,
            chat_base=CHAT_BASE,
            phone_prefix=PREFIX,
            languages=LANGUAGES,
            now=clock.now,
        )
        for _ in range(checkins):
            campaign = start_drill_checkin(
                session,
                authority=authority,
                audience=Audience(),
                started_by="test",
                now=clock.tick(60),
            )
            campaigns.append(campaign.id)
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.campaign_id.in_(campaigns))
            .values(status=OutboxStatus.SENT, sent_at=clock.now, attempts=1)
        )
    clock.tick(60)
    return campaigns


def person_of(session: Session, n: int) -> Person:
    found = session.scalar(select(Person).where(Person.phone == phone(n)))
    assert found is not None
    return found


def reply(n: int, text: str | None = None, button: str | None = None) -> Delivery:
    """Resident ``n``'s message, as the webhook decodes it (Telegram for even ``n``)."""
    key = next(_keys)
    if n % 2 == 0:
        chat = CHAT_BASE + n
        payload: dict[str, Any]
        if button is not None:
            payload = {
                "update_id": key,
                "callback_query": {
                    "id": str(key),
                    "from": {"id": chat, "is_bot": False, "first_name": "R"},
                    "message": {
                        "message_id": 1,
                        "date": 1_790_000_000,
                        "chat": {"id": chat, "type": "private"},
                    },
                    "chat_instance": "1",
                    "data": button,
                },
            }
        else:
            payload = {
                "update_id": key,
                "message": {
                    "message_id": key,
                    "date": 1_790_000_000,
                    "chat": {"id": chat, "type": "private"},
                    "from": {"id": chat, "is_bot": False, "first_name": "R"},
                    "text": text,
                },
            }
        inbound = Inbound(channel=Channel.TELEGRAM, address=str(chat), text=text, button=button)
        return Delivery(provider_key=f"tg:{key}", inbound=inbound, payload=payload)
    assert button is None
    params = {"MessageSid": f"SM{key:032x}", "From": phone(n), "Body": text or "", "NumMedia": "0"}
    inbound = Inbound(channel=Channel.SMS, address=phone(n), text=text)
    return Delivery(provider_key=f"sms:SM{key:032x}", inbound=inbound, payload=params)


def one_at_a_time(
    sessions: sessionmaker[Session], dialog: Dialog, clock: Clock, deliveries: list[Delivery]
) -> None:
    """The per-message path: each message stored and processed in its own unit of work."""
    for delivery in deliveries:
        with unit_of_work(sessions) as session:
            handle_inbound(session, delivery=delivery, dialog=dialog, now=clock.tick(1))


def stored(sessions: sessionmaker[Session], clock: Clock, deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        with unit_of_work(sessions) as session:
            accept(session, delivery=delivery, now=clock.tick(1))


def processor(
    sessions: sessionmaker[Session], dialog: Dialog, clock: Clock, **config: Any
) -> InboxProcessor:
    return InboxProcessor(
        sessions=sessions, dialog=dialog, clock=lambda: clock.now, config=ProcessorConfig(**config)
    )


def seen_by(session: Session, n: int) -> dict[str, Any]:
    """What resident ``n`` was told and what the officers' records say about them."""
    person = person_of(session, n)
    told = session.execute(
        select(OutboxMessage.kind, OutboxMessage.channel, OutboxMessage.text)
        .where(OutboxMessage.person_id == person.id, OutboxMessage.kind != "checkin")
        .order_by(OutboxMessage.id)
    ).all()
    answers = session.execute(
        select(CampaignRecipient.campaign_id, CampaignRecipient.answer, CampaignRecipient.step)
        .where(CampaignRecipient.person_id == person.id)
        .order_by(CampaignRecipient.campaign_id)
    ).all()
    checkins = session.execute(
        select(OutboxMessage.campaign_id, OutboxMessage.status)
        .where(OutboxMessage.person_id == person.id, OutboxMessage.kind == "checkin")
        .order_by(OutboxMessage.campaign_id)
    ).all()
    alerts = session.execute(
        select(Alert.kind, Alert.state, Alert.resolved_at.is_(None))
        .where(Alert.person_id == person.id)
        .order_by(Alert.id)
    ).all()
    return {
        # Twins differ only in their names ("Resident 3", "Resident 9"), which menus quote.
        "told": [
            (kind, channel, text.replace(person.name or "?", "NAME"))
            for kind, channel, text in told
        ],
        "answers": [tuple(row) for row in answers],
        "checkins": [tuple(row) for row in checkins],
        "alerts": [tuple(row) for row in alerts],
        "status": person.status,
    }


# What residents 0-5 (and their twins 6-11) send, one list per resident, in order.
Script = Callable[[list[int]], dict[int, list[tuple[str | None, str | None]]]]


def _twins_agree(
    sessions: sessionmaker[Session],
    dialog: Dialog,
    clock: Clock,
    messages: dict[int, list[tuple[str | None, str | None]]],
) -> list[Any]:
    """Residents 0-5 send their messages one at a time; their twins 6-11 send the same, all
    stored first and processed by one batch. Returns the batch's results."""
    one_at_a_time(
        sessions,
        dialog,
        clock,
        [reply(n, text, button) for n, said in messages.items() for text, button in said],
    )
    stored(
        sessions,
        clock,
        [reply(n + 6, text, button) for n, said in messages.items() for text, button in said],
    )
    done = processor(sessions, dialog, clock).step()
    with sessions() as session:
        for n in messages:
            alone, batched = seen_by(session, n), seen_by(session, n + 6)
            for key, value in alone.items():
                assert batched[key] == value, (n, key, batched[key], value)
    return done


def test_a_batch_answers_exactly_as_one_message_at_a_time(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    first, latest = town(sessions, directory, clock, count=14, checkins=2)
    with unit_of_work(sessions) as session:
        # Residents 5 and 11 were given up on in the latest check-in: on the unreached list.
        for n in (5, 11):
            person = person_of(session, n)
            session.execute(
                update(CampaignRecipient)
                .where(
                    CampaignRecipient.person_id == person.id,
                    CampaignRecipient.campaign_id == latest,
                )
                .values(answer=Answer.NO_ANSWER, step=3)
            )
            session.add(
                Alert(
                    campaign_id=latest,
                    person_id=person.id,
                    kind=AlertKind.UNREACHED,
                    created_at=clock.now,
                )
            )
    messages: dict[int, list[tuple[str | None, str | None]]] = {
        0: [(None, f"c:{first}:ok")],  # the older check-in's button: both are answered
        1: [("1", None)],  # SMS number: the latest check-in's first button
        2: [("ok", None)],
        3: [("כן", None)],
        4: [("1", None)],
        5: [("да", None)],  # a late answer that takes them off the unreached list
    }
    done = _twins_agree(sessions, dialog, clock, messages)
    assert len(done) == 6 and all(d.processed for d in done)
    with sessions() as session:
        for n in range(6, 12):
            person = person_of(session, n)
            seen = seen_by(session, n)
            ok = marked(person.language, CampaignMode.DRILL, t(person.language, "dispatch.ack.ok"))
            assert [text for kind, _, text in seen["told"]] == [ok]
            assert [answer for _, answer, _ in seen["answers"]] == [Answer.OK, Answer.OK]
            assert {status for _, status in seen["checkins"]} == {OutboxStatus.READ}
        assert seen_by(session, 11)["alerts"] == [(AlertKind.UNREACHED, "open", False)]
        # Resident 12 and 13 said nothing: untouched.
        assert {a for _, a, _ in seen_by(session, 12)["answers"]} == {Answer.PENDING}
        # Both paths stamp an acknowledgement with the reply's time on the injected clock.
        stamps = session.execute(
            select(OutboxMessage.created_at, OutboxMessage.due_at).where(
                OutboxMessage.kind == "ack"
            )
        ).all()
        assert len(stamps) == 12 and all(made == due for made, due in stamps)


def test_the_batch_path_takes_plain_answers_in_bulk_and_leaves_the_rest(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    [campaign] = town(sessions, directory, clock, count=6, checkins=1)
    stored(
        sessions,
        clock,
        [reply(0, button=f"c:{campaign}:ok"), reply(1, "1"), reply(2, "help"), reply(3, "hello")],
    )
    work = processor(sessions, dialog, clock)
    ids = work.claim()
    done, rest, _ = work.process_quick(ids)
    assert sorted(done) == ids[:2] and rest == ids[2:]  # help and words: one at a time
    with sessions() as session:
        processed = session.scalars(
            select(InboundMessage.id).where(InboundMessage.processed_at.is_not(None))
        ).all()
        assert sorted(processed) == ids[:2]


def test_a_senders_messages_keep_their_order_inside_a_batch(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    town(sessions, directory, clock, count=12, checkins=1)
    messages: dict[int, list[tuple[str | None, str | None]]] = {
        0: [("hello", None), ("1", None)],  # a dialog step first: the "1" is the dialog's
        1: [("1", None), ("STOP", None)],  # the answer, then the opt-out
        2: [("ok", None), ("help", None), ("1", None)],
        3: [("help", None), ("ok", None)],  # help stands: a later OK does not erase it
        4: [("כן", None), ("כן", None)],
    }
    done = _twins_agree(sessions, dialog, clock, messages)
    assert len(done) == sum(len(said) for said in messages.values())  # one batch took them all
    assert all(d.processed for d in done)
    with sessions() as session:
        person = person_of(session, 7)
        seen = seen_by(session, 7)
        ok = marked(person.language, CampaignMode.DRILL, t(person.language, "dispatch.ack.ok"))
        # The answer first, then the opt-out (Twilio itself answers STOP).
        assert [text for _, _, text in seen["told"]] == [ok]
        assert seen["status"] == PersonStatus.OPTED_OUT
        assert seen_by(session, 9)["answers"][0][1] == Answer.HELP


def test_help_in_a_batch_is_pushed_once_and_acknowledged_truthfully(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    [campaign] = town(sessions, directory, clock, count=6, checkins=1)
    with unit_of_work(sessions) as session:
        kt = session.merge(directory.authorities["kiryat-tamar"])
        add_staff(
            session,
            name="Dana Levi",
            phone=normalise_phone("+972525550301", region="IL"),
            authority=kt,
            role=StaffRole.OFFICER,
            actor="test",
            now=clock.now,
        )
    stored(
        sessions,
        clock,
        [reply(0, button=f"c:{campaign}:help"), reply(1, "1"), reply(2, "ok"), reply(3, "עזרה")],
    )
    done = processor(sessions, dialog, clock).drain()
    assert len(done) == 4 and all(d.processed for d in done)
    with sessions() as session:
        pushes = session.scalars(
            select(OutboxMessage.text).where(OutboxMessage.kind == "alert")
        ).all()

        # One help push per resident asking for help. This town has no buddies, so each also has
        # a "no buddy" push of its own, which says she asked for help, not that she was silent.
        def middle(key: str) -> str:  # the words of a push between its phone and its number
            return t(Language.HE, key, name="\0", place="\0", phone="\0", alert="\0").split("\0")[3]

        asked, silent = (
            middle("dispatch.owned.push_no_buddy_help"),
            middle("dispatch.owned.push_no_buddy"),
        )
        assert len(pushes) == 4
        assert sum(asked in text for text in pushes) == 2
        assert not any(silent in text for text in pushes)
        for n, key in ((0, "dispatch.ack.help"), (1, "dispatch.ack.ok"), (2, "dispatch.ack.ok")):
            person = person_of(session, n)
            acks = session.scalars(
                select(OutboxMessage.text).where(
                    OutboxMessage.person_id == person.id, OutboxMessage.kind == "ack"
                )
            ).all()
            assert acks == [marked(person.language, CampaignMode.DRILL, t(person.language, key))]
        helped = session.scalars(
            select(Alert.person_id).where(Alert.kind == AlertKind.HELP).order_by(Alert.person_id)
        ).all()
        assert helped == [person_of(session, 0).id, person_of(session, 3).id]


def test_a_closed_check_in_and_a_stranger_are_answered_honestly(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    [campaign] = town(sessions, directory, clock, count=14, checkins=1)
    with unit_of_work(sessions) as session:
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign)
            .values(status=CampaignStatus.CLOSED, closed_at=clock.now)
        )
        # Resident 13 was never asked: nobody's answer of theirs may land in the check-in.
        person = person_of(session, 13)
        session.execute(
            CampaignRecipient.__table__.delete().where(CampaignRecipient.person_id == person.id)
        )
        session.execute(
            OutboxMessage.__table__.delete().where(OutboxMessage.person_id == person.id)
        )
    _twins_agree(sessions, dialog, clock, {1: [("1", None)], 2: [("ok", None)]})
    stored(sessions, clock, [reply(13, "1")])
    processor(sessions, dialog, clock).drain()
    with sessions() as session:
        person = person_of(session, 7)
        late = marked(
            person.language, CampaignMode.DRILL, t(person.language, "dispatch.ack.late_ok")
        )
        assert [text for _, _, text in seen_by(session, 7)["told"]] == [late]
        stranger = seen_by(session, 13)
        assert stranger["answers"] == [] and all(kind != "ack" for kind, _, _ in stranger["told"])


def test_a_crash_mid_batch_leaves_every_row_to_be_processed_once(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    [campaign] = town(sessions, directory, clock, count=20, checkins=1)
    stored(sessions, clock, [reply(n, "1" if n % 3 else "ok") for n in range(20)])
    crashing = processor(sessions, dialog, clock, lease_seconds=30)
    ids = crashing.claim()
    assert len(ids) == 20

    def dies(session: Session) -> None:
        raise ConnectionError("the process died before its commit")

    event.listen(sessions, "before_commit", dies)
    try:
        done, rest, _ = crashing.process_quick(ids)
    finally:
        event.remove(sessions, "before_commit", dies)
    assert done == {} and rest == ids
    with sessions() as session:
        assert session.scalar(select(func.count()).where(OutboxMessage.kind == "ack")) == 0
        assert (
            session.scalar(
                select(func.count()).where(
                    CampaignRecipient.campaign_id == campaign,
                    CampaignRecipient.answer != Answer.PENDING,
                )
            )
            == 0
        )
    # Another processor takes the rows only once the dead one's lease has run out.
    other = processor(sessions, dialog, clock)
    assert other.drain() == []
    clock.tick(31)
    assert sorted(d.inbox_id for d in other.drain() if d.processed) == ids
    # The first one comes back (its batch committed this time would be a second processing):
    # nothing is left for it.
    assert crashing.drain() == []
    with sessions() as session:
        assert session.scalar(select(func.count()).where(OutboxMessage.kind == "ack")) == 20
        answered = session.scalars(
            select(CampaignRecipient.answer).where(CampaignRecipient.campaign_id == campaign)
        ).all()
        assert set(answered) == {Answer.OK} and len(answered) == 20


def test_a_batch_whose_lease_was_taken_over_writes_nothing(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    town(sessions, directory, clock, count=4, checkins=1)
    stored(sessions, clock, [reply(n, "1") for n in range(4)])
    slow = processor(sessions, dialog, clock, lease_seconds=10)
    ids = slow.claim()
    clock.tick(11)  # it stalled past its lease, and another took the rows
    fast = processor(sessions, dialog, clock)
    assert [d.processed for d in fast.drain()] == [True] * 4
    done, _, _ = slow.process_quick(ids)
    assert done == {}
    with sessions() as session:
        assert session.scalar(select(func.count()).where(OutboxMessage.kind == "ack")) == 4


# --- several processors on PostgreSQL -----------------------------------------------------------


def test_two_processors_on_postgresql_never_take_the_same_row(
    engine: Any, sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers")
    town(sessions, directory, clock, count=160, checkins=1)
    # Resident 1 writes twice: while one processor holds the first, the second waits for it.
    stored(sessions, clock, [reply(1, "1"), reply(3, "ok"), reply(1, "STOP")])
    a = processor(sessions, dialog, clock)
    b = processor(sessions, dialog, clock)
    with unit_of_work(sessions) as held:
        mine = claim(
            held,
            holder=a.holder,
            now=clock.now,
            limit=1,
            lease=timedelta(seconds=60),
            skip_locked=True,
        )
        theirs = b.claim()
        assert len(mine) == 1 and len(theirs) == 1 and set(mine) != set(theirs)
    with unit_of_work(sessions) as session:
        session.execute(update(InboundMessage).values(lease_until=None, leased_by=None))
    stored(sessions, clock, [reply(n, "1" if n % 2 else "ok") for n in range(4, 160)])
    results: list[int] = []
    start = threading.Barrier(2)

    def serve() -> None:
        own = make_engine(engine.url.render_as_string(hide_password=False))
        try:
            work = processor(make_sessionmaker(own), dialog, clock, batch=20)
            start.wait()
            results.extend(d.inbox_id for d in work.drain() if d.processed)
        finally:
            own.dispose()

    threads = [threading.Thread(target=serve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(set(results)) == 159  # each processed exactly once
    with sessions() as session:
        acks = session.execute(
            select(OutboxMessage.person_id, func.count())
            .where(OutboxMessage.kind == "ack")
            .group_by(OutboxMessage.person_id)
        ).all()
        assert len(acks) == 158 and {count for _, count in acks} == {1}
        # Resident 1's answer came first, then their STOP.
        assert person_of(session, 1).status == PersonStatus.OPTED_OUT


def _authority(session: Session, directory: Directory) -> Authority:
    return session.merge(directory.authorities["kiryat-tamar"])


def test_a_message_to_be_parked_keeps_its_place_before_a_plain_answer(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    town(sessions, directory, clock, count=4, checkins=1)
    stored(sessions, clock, [reply(1, "hello")])
    for _ in range(2):  # claimed, then the process died, twice
        assert processor(sessions, dialog, clock, max_attempts=2, lease_seconds=5).claim()
        clock.tick(6)
    stored(sessions, clock, [reply(1, "1")])
    done = processor(sessions, dialog, clock, max_attempts=2).step()
    assert [(d.parked, d.processed) for d in done] == [(True, False), (False, True)]
    with sessions() as session:
        person = person_of(session, 1)
        ok = marked(person.language, CampaignMode.DRILL, t(person.language, "dispatch.ack.ok"))
        # "Write again" goes to the number (the sender is not known as a person there), then
        # the answer's acknowledgement.
        told = session.scalars(
            select(OutboxMessage.text)
            .where(OutboxMessage.address == phone(1), OutboxMessage.kind != "checkin")
            .order_by(OutboxMessage.id)
        ).all()
        assert told == [t("he", "bot.error.internal"), ok]


def test_two_processors_divide_a_burst_each_row_once_each_sender_in_order(
    engine: Any, sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> None:
    """Two processors, engines of their own, step in rounds over one inbox (PostgreSQL): each
    round both claim at once. Every row is processed once; each sender's rows in the order they
    came; each processor takes a full batch every round but the last; and no row is decoded by
    both (neither repeats what the other decides)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers")
    senders, batch = 60, 20
    town(sessions, directory, clock, count=senders, checkins=1)
    # Three messages each, one sender's after another: a plain answer, then words for the
    # dialog. A batch's boundary falls inside a sender's three, so one processor holds their
    # first while the other's claim meets the rest.
    stored(
        sessions, clock, [reply(n, said) for n in range(senders) for said in ("1", "STOP", "hello")]
    )
    url = engine.url.render_as_string(hide_password=False)
    lock = threading.Lock()
    ticks = iter(range(1, 1_000_000))

    def ticking() -> Any:
        with lock:  # a clock that moves at every reading: processed_at orders what was done
            return clock.now + timedelta(microseconds=next(ticks))

    decoded: dict[str, list[str]] = {"a": [], "b": []}
    processed: dict[str, list[int]] = {"a": [], "b": []}
    rounds, start = 10, threading.Barrier(2)

    def serve(name: str) -> None:
        own = make_engine(url)
        base = decoders(region=dialog.region)

        def recording(channel: Channel) -> Callable[[dict[str, Any]], Any]:
            def decode(payload: dict[str, Any]) -> Any:
                key = payload.get("MessageSid") or payload.get("update_id")
                decoded[name].append(f"sms:{key}" if channel == Channel.SMS else f"tg:{key}")
                return base[channel](payload)

            return decode

        try:
            work = InboxProcessor(
                sessions=make_sessionmaker(own),
                dialog=dialog,
                clock=ticking,
                config=ProcessorConfig(batch=batch),
                decode={channel: recording(channel) for channel in base},
            )
            for _ in range(rounds):
                start.wait()  # both claim at once, every round
                processed[name].extend(d.inbox_id for d in work.step() if d.processed)
        finally:
            own.dispose()

    threads = [threading.Thread(target=serve, args=(name,)) for name in processed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with sessions() as session:
        rows = session.execute(
            select(
                InboundMessage.id,
                InboundMessage.provider_key,
                InboundMessage.sender,
                InboundMessage.processed_at,
            ).order_by(InboundMessage.id)
        ).all()
        a, b = processed["a"], processed["b"]
        assert sorted(a + b) == [row.id for row in rows] and not set(a) & set(b)
        by_sender: dict[str, list[Any]] = {}
        for row in rows:
            by_sender.setdefault(row.sender, []).append(row.processed_at)
        assert len(by_sender) == senders
        for times in by_sender.values():
            assert times == sorted(times) and len(set(times)) == 3, times
        # While 40 rows wait, each claim takes 20 but for at most two whose sender's first is
        # in the other's hands: at least 18 each for three rounds.
        assert min(len(a), len(b)) >= 3 * (batch - 2), (len(a), len(b))
        key_of = {row.id: row.provider_key for row in rows}
        assert set(decoded["a"]) == {key_of[i] for i in a}
        assert set(decoded["b"]) == {key_of[i] for i in b}
        acks = session.execute(
            select(OutboxMessage.person_id, func.count())
            .where(OutboxMessage.kind == "ack")
            .group_by(OutboxMessage.person_id)
        ).all()
        assert len(acks) == senders and {count for _, count in acks} == {1}
        assert {person_of(session, n).status for n in range(senders)} == {PersonStatus.OPTED_OUT}
