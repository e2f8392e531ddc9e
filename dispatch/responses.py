"""Answers to campaigns and tasks: the one entry point bots/ calls before its conversation engine.

``take_campaign_reply`` understands
* Telegram buttons: ``c:<campaign>:ok|help`` (check-in) and ``t:<task>:accept|done|fail``;
* SMS (or typed) "1", "2", ...: mapped through the buttons of the latest campaign or task message
  the person was sent (the same numbers the SMS showed);
* an ``answer`` (OK or help) that bots/ read from the person's words, in any language;
* anything else typed after a check-in: kept word for word and flagged for a human.

An answer to a check-in answers every check-in still open for that person (two campaigns asking
"are you OK?" get the same answer). With none open, it counts for the person's latest check-in
even when it comes late (after the ladder ran out or the campaign was closed): a late "I'm OK"
still takes someone off the unreached list, and the person is told the check-in has ended.

:func:`take_checkin_answers` is the same "I'm OK" for a whole batch of replies at once (the inbox
processor's set-based path): what it needs is read with :func:`open_checkins`,
:func:`latest_kinds` and :func:`latest_campaign_buttons` for every person of the batch in one
statement each, and the answers, what they withdraw
(:func:`dispatch.escalation.withdraw_for_answers`, shared with every other path) and the
acknowledgements are written in a few statements for the whole batch. It writes exactly what
:func:`take_campaign_reply` writes for an OK to open check-ins; everything else (help, tasks,
late answers, free text) keeps the per-message path.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from config.i18n import t
from dispatch.campaigns import MESSAGE_KINDS, marked
from dispatch.escalation import (
    Answered,
    next_visit,
    raise_alert,
    send_to,
    send_visit,
    withdraw_for_answers,
)
from dispatch.help import (
    open_help_alert,
    push_owned,
    raise_help,
    raise_owned,
    tell_on_the_way,
    volunteer_accepted,
    volunteer_finished,
)
from dispatch.models import (
    Alert,
    AlertKind,
    Answer,
    Campaign,
    CampaignKind,
    CampaignRecipient,
    CampaignStatus,
    OutboxMessage,
    OutboxStatus,
    Priority,
    Task,
    TaskReason,
    TaskStatus,
)
from dispatch.senders import choice_from_reply
from registry.bulk import among, bulk_insert, bulk_update
from registry.models import Channel, Person

# How far back a number or a word is matched to a campaign message.
REPLY_WINDOW = timedelta(days=3)
# Answers still waiting for the person: a check-in they have not answered, or whose ladder ran out.
UNANSWERED = (Answer.PENDING, Answer.NO_ANSWER)


def take_campaign_reply(
    session: Session,
    *,
    person: Person,
    channel: Channel,
    text: str | None = None,
    callback_data: str | None = None,
    answer: Answer | None = None,
    now: datetime,
) -> bool:
    """Handle ``text``, ``callback_data`` or a word ``answer`` if it answers a campaign or a task;
    True if it did.

    ``answer`` is what bots/ read from the person's words (OK or help, in any language); ``text``
    is kept with a help answer for the officer. The caller (bots/) commits. When True, the
    acknowledgement is already in the outbox and the conversation engine must not answer as well.
    """
    data = callback_data
    if data is None and text:
        data = _data_from_buttons(session, person=person, text=text, now=now)
    if data is not None:
        if data.startswith("c:"):
            return _answer_checkin(session, person=person, channel=channel, data=data, now=now)
        if data.startswith("t:"):
            return _answer_task(session, person=person, channel=channel, data=data, now=now)
        return False
    if answer in (Answer.OK, Answer.HELP):
        assert answer is not None
        return _answer_by_word(
            session, person=person, channel=channel, answer=answer, text=text, now=now
        )
    if text and text.strip():
        return _free_text(session, person=person, channel=channel, text=text, now=now)
    return False


def _latest_campaign_message(
    session: Session, *, person: Person, now: datetime
) -> OutboxMessage | None:
    return session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.person_id == person.id,
            OutboxMessage.kind.in_(MESSAGE_KINDS),
            OutboxMessage.created_at >= now - REPLY_WINDOW,
        )
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()


def _checkins(
    session: Session, *, person_id: int, now: datetime, open_only: bool
) -> list[tuple[CampaignRecipient, Campaign]]:
    """The person's recent check-ins, latest first; ``open_only``: active and not yet answered."""
    query = (
        select(CampaignRecipient, Campaign)
        .join(Campaign, Campaign.id == CampaignRecipient.campaign_id)
        .where(
            CampaignRecipient.person_id == person_id,
            Campaign.kind == CampaignKind.CHECKIN,
            Campaign.started_at >= now - REPLY_WINDOW,
        )
        .order_by(Campaign.started_at.desc(), Campaign.id.desc())
    )
    if open_only:
        query = query.where(
            Campaign.status == CampaignStatus.ACTIVE, CampaignRecipient.answer.in_(UNANSWERED)
        )
    return [(recipient, campaign) for recipient, campaign in session.execute(query).all()]


def has_open_checkin(session: Session, *, person: Person, now: datetime) -> bool:
    """Whether a check-in is waiting for this person's answer (so their "help" answers it)."""
    return bool(_checkins(session, person_id=person.id, now=now, open_only=True))


def _data_from_buttons(session: Session, *, person: Person, text: str, now: datetime) -> str | None:
    latest = _latest_campaign_message(session, person=person, now=now)
    if latest is not None and latest.buttons:
        return choice_from_reply(text, latest.buttons)
    return None


def _answer_by_word(
    session: Session,
    *,
    person: Person,
    channel: Channel,
    answer: Answer,
    text: str | None,
    now: datetime,
) -> bool:
    """OK or help in words: every open check-in of the person, else their latest (a late answer)."""
    answered = _checkins(session, person_id=person.id, now=now, open_only=True)
    if not answered:
        answered = _checkins(session, person_id=person.id, now=now, open_only=False)[:1]
    if not answered:
        return False
    _answer_all(
        session,
        person=person,
        channel=channel,
        answered=answered,
        answer=answer,
        now=now,
        words=text if answer == Answer.HELP else None,
    )
    return True


def _answer_all(
    session: Session,
    *,
    person: Person,
    channel: Channel,
    answered: list[tuple[CampaignRecipient, Campaign]],
    answer: Answer,
    now: datetime,
    words: str | None = None,
) -> None:
    """Record one answer for these check-ins and acknowledge it once, truthfully."""
    for recipient, campaign in answered:
        record_answer(
            session,
            recipient=recipient,
            campaign=campaign,
            person=person,
            answer=answer,
            now=now,
            words=words,
        )
    campaign = answered[0][1]
    if answer == Answer.HELP:
        key = "dispatch.ack.help"
    elif open_help_alert(session, resident_id=person.id) is not None:
        key = "dispatch.answered.help_open"  # glad, and the truth: the request is still open
    elif all(c.status == CampaignStatus.CLOSED for _, c in answered):
        key = "dispatch.ack.late_ok"  # honest: the check-in is over, the answer still counts
    else:
        key = "dispatch.ack.ok"
    _ack(session, person=person, channel=channel, campaign=campaign, key=key, now=now)


def _parse(data: str) -> tuple[int, str] | None:
    parts = data.split(":")
    if len(parts) != 3 or not parts[1].isdecimal():
        return None
    return int(parts[1]), parts[2]


def _ack(
    session: Session,
    *,
    person: Person,
    channel: Channel,
    campaign: Campaign | None,
    key: str,
    now: datetime,
    **params: str,
) -> None:
    text = t(person.language, key, **params)
    if campaign is not None:
        text = marked(person.language, campaign.mode, text)
    send_to(
        session,
        person=person,
        text=text,
        buttons=None,
        priority=Priority.INTERACTIVE,
        kind="ack",
        campaign_id=campaign.id if campaign else None,
        now=now,
        channel=channel if channel != Channel.NONE else None,
    )


def _answer_checkin(
    session: Session, *, person: Person, channel: Channel, data: str, now: datetime
) -> bool:
    parsed = _parse(data)
    if parsed is None or parsed[1] not in (Answer.OK.value, Answer.HELP.value):
        return True  # ours, but malformed: nothing to do, nothing for the bot either
    campaign_id, value = parsed
    recipient = session.scalars(
        select(CampaignRecipient).where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.person_id == person.id,
        )
    ).first()
    campaign = session.get(Campaign, campaign_id)
    if recipient is None or campaign is None:
        return True
    # The same answer for every other check-in still open for them: "1" means "I'm OK" to all.
    others = [
        (other, other_campaign)
        for other, other_campaign in _checkins(
            session, person_id=person.id, now=now, open_only=True
        )
        if other.id != recipient.id
    ]
    _answer_all(
        session,
        person=person,
        channel=channel,
        answered=[(recipient, campaign), *others],
        answer=Answer(value),
        now=now,
    )
    return True


def record_answer(
    session: Session,
    *,
    recipient: CampaignRecipient,
    campaign: Campaign,
    person: Person,
    answer: Answer,
    now: datetime,
    text: str | None = None,
    words: str | None = None,
) -> None:
    """Store an answer, stop the ladder, mark the messages answered; help sends the buddy now.

    ``text``: a free-text answer for a human; ``words``: what the person wrote with a help answer
    (kept for the officer, never sent by SMS)."""
    previous = recipient.answer
    # A request for help is never erased by a later "OK": the visit stands, the officer decides.
    if previous != Answer.HELP:
        recipient.answer = answer
    if recipient.answered_at is None:
        recipient.answered_at = now
    recipient.next_step_at = None
    if text is not None:
        recipient.answer_text = text[:500]
        recipient.needs_human = True
    elif words is not None and words.strip():
        recipient.answer_text = words.strip()[:500]
    if previous == Answer.NO_ANSWER:
        # A late answer takes the person off the unreached list.
        resolve_unreached(session, campaign_id=campaign.id, person_id=person.id, now=now)
    # What the answer withdraws (reminders, calls, silence visits): one rule for every path.
    withdraw_for_answers(
        session,
        answered=[Answered(campaign.id, person.id, now)],
        ok=answer == Answer.OK and previous != Answer.OK,
    )
    if answer == Answer.HELP and previous != Answer.HELP:
        raise_help(
            session,
            resident=person,
            campaign=campaign,
            kind=AlertKind.HELP,
            now=now,
            detail=words,
        )
        send_visit(session, campaign=campaign, resident=person, reason=TaskReason.HELP, now=now)
    if text is not None:
        raise_alert(
            session, campaign_id=campaign.id, person_id=person.id, kind=AlertKind.FREE_TEXT, now=now
        )


def _free_text(
    session: Session, *, person: Person, channel: Channel, text: str, now: datetime
) -> bool:
    """Words we cannot read right after a check-in are an answer for a human to read."""
    latest_any = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.person_id == person.id)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
    # Only when the last thing we sent this person was the check-in itself: otherwise they are
    # talking to the bot, and the conversation engine should have their words.
    if latest_any is None or latest_any.kind not in ("checkin", "reminder"):
        return False
    if latest_any.campaign_id is None or latest_any.created_at < now - REPLY_WINDOW:
        return False
    recipient = session.scalars(
        select(CampaignRecipient).where(
            CampaignRecipient.campaign_id == latest_any.campaign_id,
            CampaignRecipient.person_id == person.id,
        )
    ).first()
    campaign = session.get(Campaign, latest_any.campaign_id)
    if recipient is None or campaign is None:
        return False
    record_answer(
        session,
        recipient=recipient,
        campaign=campaign,
        person=person,
        answer=Answer.FREE_TEXT,
        now=now,
        text=text.strip(),
    )
    _ack(
        session,
        person=person,
        channel=channel,
        campaign=campaign,
        key="dispatch.ack.free_text",
        now=now,
    )
    return True


def _answer_task(
    session: Session, *, person: Person, channel: Channel, data: str, now: datetime
) -> bool:
    parsed = _parse(data)
    task = session.get(Task, parsed[0]) if parsed else None
    campaign = session.get(Campaign, task.campaign_id) if task and task.campaign_id else None
    if (
        parsed is None
        or task is None
        or task.volunteer_id != person.id
        or task.status not in (TaskStatus.OFFERED, TaskStatus.ACCEPTED)
        or parsed[1] not in ("accept", "done", "fail")
    ):
        withdrawn = (
            task is not None
            and task.status == TaskStatus.CANCELLED
            and campaign is not None
            and campaign.status != CampaignStatus.ACTIVE
        )
        _ack(
            session,
            person=person,
            channel=channel,
            campaign=campaign,
            key="dispatch.close.gone" if withdrawn else "dispatch.task.gone",
            now=now,
        )
        return True
    action = parsed[1]
    resident = session.get(Person, task.resident_id)
    if action == "accept":
        task.status = TaskStatus.ACCEPTED
        task.accepted_at = now
        _ack(
            session,
            person=person,
            channel=channel,
            campaign=campaign,
            key="dispatch.task.ack_accept",
            now=now,
        )
        if task.reason == TaskReason.HELP and resident is not None:
            # Close the loop: a named person has accepted, and only now is the resident told so.
            volunteer_accepted(session, task=task, volunteer=person, now=now)
            tell_on_the_way(
                session, resident=resident, name=person.name, campaign=campaign, now=now
            )
        return True
    task.closed_at = now
    if task.reason == TaskReason.HELP:
        volunteer_finished(session, task=task, volunteer=person, done=action == "done", now=now)
    if action == "done":
        task.status = TaskStatus.DONE
        _checked(session, task=task, now=now)
        _ack(
            session,
            person=person,
            channel=channel,
            campaign=campaign,
            key="dispatch.task.ack_done",
            now=now,
        )
    else:
        task.status = TaskStatus.NOT_REACHED
        # Pushed once the visit has moved on: the officer reads who goes next, or nobody.
        alert = (
            raise_owned(
                session,
                resident=resident,
                campaign_id=task.campaign_id,
                kind=AlertKind.NOT_REACHED,
                task_id=task.id,
                now=now,
                push=False,
            )
            if resident is not None
            else raise_alert(
                session,
                campaign_id=task.campaign_id,
                person_id=None,
                kind=AlertKind.NOT_REACHED,
                task_id=task.id,
                now=now,
            )
        )
        next_visit(session, task=task, now=now)
        session.flush()
        told = resident is not None and push_owned(session, alert=alert, resident=resident, now=now)
        # "The municipality has been told" only once an officer is pushed; else the list.
        _ack(
            session,
            person=person,
            channel=channel,
            campaign=campaign,
            key="dispatch.task.ack_not_reached" if told else "dispatch.not_reached.ack_listed",
            now=now,
        )
    return True


def _checked(session: Session, *, task: Task, now: datetime) -> None:
    """A buddy saw the resident: the ladder stops, nobody asks or calls them again, and any
    unreached alert is resolved."""
    if task.campaign_id is None:
        return
    withdraw_for_answers(
        session, answered=[Answered(task.campaign_id, task.resident_id, now)], ok=False
    )
    session.execute(
        update(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id == task.campaign_id,
            CampaignRecipient.person_id == task.resident_id,
        )
        .values(next_step_at=None)
        .execution_options(synchronize_session=False)
    )
    resolve_unreached(session, campaign_id=task.campaign_id, person_id=task.resident_id, now=now)


def resolve_unreached(session: Session, *, campaign_id: int, person_id: int, now: datetime) -> None:
    """The person has been accounted for: their unreached alert, if any, is resolved."""
    session.execute(
        update(Alert)
        .where(
            Alert.campaign_id == campaign_id,
            Alert.person_id == person_id,
            Alert.kind == AlertKind.UNREACHED,
            Alert.resolved_at.is_(None),
        )
        .values(resolved_at=now)
        .execution_options(synchronize_session=False)
    )


# --- a batch of "I'm OK" answers at once ---------------------------------------------------------

# Ids per statement in an IN list (SQLite allows 32,766 parameters; PostgreSQL 65,535).
CHUNK = 2000


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[start : start + CHUNK] for start in range(0, len(ids), CHUNK)]


@dataclass(frozen=True)
class OpenCheckin:
    """One check-in still waiting for a person's answer (as :func:`_checkins` with open_only)."""

    recipient_id: int
    campaign: Campaign
    answer: Answer
    answered_at: datetime | None


def open_checkins(
    session: Session, *, person_ids: Collection[int], since: datetime
) -> dict[int, list[OpenCheckin]]:
    """Each person's open check-ins started after ``since``, latest first (one statement)."""
    found: dict[int, list[OpenCheckin]] = {}
    for chunk in _chunks(sorted(person_ids)):
        rows = session.execute(
            select(
                CampaignRecipient.person_id,
                CampaignRecipient.id,
                CampaignRecipient.answer,
                CampaignRecipient.answered_at,
                Campaign,
            )
            .join(Campaign, Campaign.id == CampaignRecipient.campaign_id)
            .where(
                among(session, CampaignRecipient.person_id, chunk),
                Campaign.kind == CampaignKind.CHECKIN,
                Campaign.started_at >= since,
                Campaign.status == CampaignStatus.ACTIVE,
                CampaignRecipient.answer.in_(UNANSWERED),
            )
            .order_by(Campaign.started_at.desc(), Campaign.id.desc())
        ).all()
        for person_id, recipient_id, answer, answered_at, campaign in rows:
            found.setdefault(person_id, []).append(
                OpenCheckin(recipient_id, campaign, Answer(answer), answered_at)
            )
    return found


def latest_kinds(session: Session, *, person_ids: Collection[int]) -> dict[int, str]:
    """The kind of the latest message sent to each person (a bot "reply", a "checkin"...)."""
    kinds: dict[int, str] = {}
    for chunk in _chunks(sorted(person_ids)):
        latest = (
            select(func.max(OutboxMessage.id))
            .where(among(session, OutboxMessage.person_id, chunk))
            .group_by(OutboxMessage.person_id)
        )
        for person_id, kind in session.execute(
            select(OutboxMessage.person_id, OutboxMessage.kind).where(OutboxMessage.id.in_(latest))
        ):
            if person_id is not None:
                kinds[person_id] = kind
    return kinds


def latest_campaign_buttons(
    session: Session, *, person_ids: Collection[int], since: datetime
) -> dict[int, tuple[list[list[dict[str, str]]] | None, datetime]]:
    """The buttons and creation time of each person's latest campaign message created after
    ``since`` (what an SMS "1" answers, as :func:`_data_from_buttons` reads it)."""
    buttons: dict[int, tuple[list[list[dict[str, str]]] | None, datetime]] = {}
    for chunk in _chunks(sorted(person_ids)):
        latest = (
            select(func.max(OutboxMessage.id))
            .where(
                among(session, OutboxMessage.person_id, chunk),
                OutboxMessage.kind.in_(MESSAGE_KINDS),
                OutboxMessage.created_at >= since,
            )
            .group_by(OutboxMessage.person_id)
        )
        for person_id, rows, created_at in session.execute(
            select(OutboxMessage.person_id, OutboxMessage.buttons, OutboxMessage.created_at).where(
                OutboxMessage.id.in_(latest)
            )
        ):
            if person_id is not None:
                buttons[person_id] = (rows, created_at)
    return buttons


@dataclass(frozen=True)
class CheckinAnswer:
    """One reply that says "I'm OK" to every check-in open for its person."""

    person: Person
    channel: Channel  # the channel it came by: the acknowledgement goes back on it
    address: str  # the person's address on that channel
    answered: list[OpenCheckin]  # the first one's campaign marks the acknowledgement
    now: datetime  # when the person wrote


def take_checkin_answers(session: Session, *, answers: Sequence[CheckinAnswer]) -> int:
    """Record "I'm OK" for each of ``answers`` and acknowledge each once; returns the
    acknowledgements queued. The caller commits.

    No person may appear twice, and every check-in answered must be open (active, its answer
    pending or given up on): that is when an OK needs no per-message decision, and the writes
    are those of :func:`record_answer` and :func:`_ack` for an OK.
    """
    if not answers:
        return 0
    from dispatch.campaigns import for_channel

    recipients: list[dict[str, object]] = []
    answered: list[Answered] = []
    acks: list[dict[str, object]] = []
    for reply in answers:
        person = reply.person
        for checkin in reply.answered:
            recipients.append(
                {"id": checkin.recipient_id, "answered_at": checkin.answered_at or reply.now}
            )
            answered.append(Answered(checkin.campaign.id, person.id, reply.now))
            if checkin.answer == Answer.NO_ANSWER:
                resolve_unreached(
                    session, campaign_id=checkin.campaign.id, person_id=person.id, now=reply.now
                )
    bulk_update(
        session,
        CampaignRecipient,
        recipients,
        same={"answer": Answer.OK, "next_step_at": None},
    )
    help_open = withdraw_for_answers(session, answered=answered, ok=True)
    for reply in answers:
        person = reply.person
        if reply.channel == Channel.NONE or not person.reachable:
            continue
        campaign = reply.answered[0].campaign
        key = "dispatch.answered.help_open" if person.id in help_open else "dispatch.ack.ok"
        text = marked(person.language, campaign.mode, t(person.language, key))
        acks.append(
            {
                "person_id": person.id,
                "channel": reply.channel,
                "address": reply.address,
                "text": for_channel(text, None, reply.channel),
                "buttons": None,
                "priority": int(Priority.INTERACTIVE),
                "risk_rank": 0,
                "kind": "ack",
                "campaign_id": campaign.id,
                "status": OutboxStatus.QUEUED,
                "attempts": 0,
                "due_at": reply.now,
                "created_at": reply.now,
            }
        )
    bulk_insert(session, OutboxMessage, acks)
    return len(acks)


__all__ = [
    "CheckinAnswer",
    "OpenCheckin",
    "has_open_checkin",
    "latest_campaign_buttons",
    "latest_kinds",
    "open_checkins",
    "record_answer",
    "take_campaign_reply",
    "take_checkin_answers",
]
