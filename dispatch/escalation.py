"""The escalation ladder and home-visit tasks.

A check-in recipient's timer is its ``next_step_at``: a row with a due time, so a restart loses
nothing. :func:`run_escalations` (the sweep) moves each silent recipient one step:

0 → 1  after T1: a reminder, on the next channel when there is one (a missed Telegram message is
       often a phone without data: SMS may get through);
1 → 2  after T2: a home-visit task for the resident's buddy ("please check on <name> at
       <address>": name and address only, never a word about needs), with accept / done /
       could-not-reach buttons (``t:<task>:accept|done|fail``);
2 → 3  after T3: the officer's unreached list (an alert).

"I need help" skips the ladder: a task for the buddy and an alert at once. A buddy who is a
minor never gets a home visit alone: the task goes to an adult coordinator of the minor's group,
who goes together with them. With nobody to send, the officer gets a "no buddy" alert.

An answer stops the ladder: :func:`withdraw_for_answers` is the one rule for what it withdraws
(a reminder or a call still queued; on "I'm OK", the visits sent for the resident's silence),
shared by every path an answer takes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from dispatch.models import (
    HELP_KINDS,
    OWNED_KINDS,
    Alert,
    AlertKind,
    Answer,
    Campaign,
    CampaignKind,
    CampaignRecipient,
    CampaignStatus,
    ChannelBlock,
    OutboxMessage,
    OutboxStatus,
    Priority,
    Task,
    TaskReason,
    TaskStatus,
)
from dispatch.outbox import enqueue
from registry import rules
from registry.models import (
    ACTIVE_ASSIGNMENT,
    Authority,
    BuddyAssignment,
    Channel,
    Group,
    GroupMember,
    Person,
    PersonStatus,
    PhoneKind,
    Zone,
)

SWEEP_BATCH = 1000


# --- sending to one person -------------------------------------------------------------------


def dead_channels(session: Session, person_ids: Sequence[int]) -> dict[int, set[Channel]]:
    """The channels a provider declared dead, for each of ``person_ids`` that has any."""
    dead: dict[int, set[Channel]] = {}
    for start in range(0, len(person_ids), 500):
        for person_id, channel in session.execute(
            select(ChannelBlock.person_id, ChannelBlock.channel).where(
                ChannelBlock.person_id.in_(person_ids[start : start + 500])
            )
        ):
            dead.setdefault(person_id, set()).add(Channel(channel))
    return dead


def channel_for(
    session: Session, person: Person, *, blocked: set[Channel] | None = None
) -> Channel:
    """The first channel that still reaches ``person`` (Telegram, then SMS), or NONE.

    ``blocked``: the person's dead channels when the caller already has them (a sweep loads
    them for its whole batch)."""
    if blocked is None:
        blocked = dead_channels(session, [person.id]).get(person.id, set())
    if person.telegram_chat_id is not None and Channel.TELEGRAM not in blocked:
        return Channel.TELEGRAM
    if person.can_receive_sms and Channel.SMS not in blocked:
        return Channel.SMS
    return Channel.NONE


def send_to(
    session: Session,
    *,
    person: Person,
    text: str,
    buttons: list[list[dict[str, str]]] | None,
    priority: Priority,
    kind: str,
    campaign_id: int | None,
    now: datetime,
    channel: Channel | None = None,
) -> OutboxMessage | None:
    """Queue one message on the person's best channel (or ``channel``); None if none reaches."""
    from dispatch.campaigns import for_channel

    channel = channel or channel_for(session, person)
    if channel == Channel.NONE or not person.reachable:
        return None
    address = person.phone if channel == Channel.SMS else str(person.telegram_chat_id)
    assert address is not None
    return enqueue(
        session,
        channel=channel,
        address=address,
        text=for_channel(text, buttons, channel),
        person_id=person.id,
        buttons=[[(b["text"], b["data"]) for b in row] for row in buttons] if buttons else None,
        priority=priority,
        kind=kind,
        campaign_id=campaign_id,
        due_at=now,
        now=now,
    )


def campaign_text(campaign: Campaign | None, language: Language, key: str, **params: str) -> str:
    from dispatch.campaigns import marked

    text = t(language, key, **params)
    return marked(language, campaign.mode, text) if campaign is not None else text


# --- who visits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visitor:
    person: Person  # who gets the task
    group_id: int | None = None  # set when a coordinator gets it for a group member
    member: Person | None = None  # the minor buddy going with the coordinator


def is_minor(person: Person, now: datetime) -> bool:
    return rules.is_minor(person.birth_year, now.year)


def choose_visitor(
    session: Session, *, resident_id: int, now: datetime, exclude: frozenset[int] = frozenset()
) -> Visitor | None:
    """The resident's buddy (primary, then backup); a minor buddy's adult coordinator. Nobody in
    ``exclude`` (the people who already went and could not reach the resident)."""
    assignments = session.scalars(
        select(BuddyAssignment)
        .where(
            BuddyAssignment.resident_id == resident_id,
            BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
        )
        .order_by(BuddyAssignment.rank)
    ).all()
    for assignment in assignments:
        buddy = session.get(Person, assignment.volunteer_id)
        if buddy is None or buddy.status != PersonStatus.ACTIVE or buddy.id in exclude:
            continue
        if not is_minor(buddy, now):
            if channel_for(session, buddy) != Channel.NONE:
                return Visitor(person=buddy)
            continue
        coordinator = _adult_coordinator(session, member=buddy, now=now)
        if coordinator is not None and coordinator.person.id not in exclude:
            return coordinator
    return None


def visit_would_go(
    session: Session, *, resident_id: int, campaign_id: int | None, now: datetime
) -> bool:
    """Whether a silence visit for the resident would go to someone now (the campaign's visit
    already under way, or a buddy :func:`choose_visitor` finds); False when :func:`send_visit`
    would raise a "no buddy" alert instead. What a call's goodbye may promise."""
    under_way = session.scalar(
        select(Task.id)
        .where(
            Task.resident_id == resident_id,
            Task.campaign_id == campaign_id,
            Task.status.in_((TaskStatus.OFFERED, TaskStatus.ACCEPTED)),
        )
        .limit(1)
    )
    return (
        under_way is not None
        or choose_visitor(session, resident_id=resident_id, now=now) is not None
    )


def resident_group_visitor(
    session: Session, *, resident: Person, now: datetime, exclude: frozenset[int] = frozenset()
) -> Visitor | None:
    """An adult coordinator of a group the resident belongs to (when they have no buddy)."""
    found = _adult_coordinator(session, member=resident, now=now)
    if found is None or found.person.id in exclude:
        return None
    return Visitor(person=found.person, group_id=found.group_id)


def visitor_for(session: Session, *, person: Person, now: datetime) -> Visitor | None:
    """Who goes when ``person`` is handed a visit: they themselves if an adult we can reach;
    a minor goes only with their group's adult coordinator (who then gets the task)."""
    if not is_minor(person, now):
        return Visitor(person=person) if channel_for(session, person) != Channel.NONE else None
    return _adult_coordinator(session, member=person, now=now)


def _adult_coordinator(session: Session, *, member: Person, now: datetime) -> Visitor | None:
    groups = session.scalars(
        select(GroupMember.group_id).where(GroupMember.person_id == member.id)
    ).all()
    for group_id in groups:
        coordinators = session.scalars(
            select(Person)
            .join(GroupMember, GroupMember.person_id == Person.id)
            .where(
                GroupMember.group_id == group_id,
                GroupMember.is_coordinator.is_(True),
                Person.id != member.id,
                Person.status == PersonStatus.ACTIVE,
            )
            .order_by(Person.id)
        ).all()
        for coordinator in coordinators:
            if not is_minor(coordinator, now) and channel_for(session, coordinator) != Channel.NONE:
                return Visitor(person=coordinator, group_id=group_id, member=member)
    return None


def place_of(
    session: Session, resident: Person, language: Language | str, *, address: bool = True
) -> str:
    """Where to go: the address, or at least the zone's name in the reader's language."""
    if address and resident.address:
        return resident.address
    zone = session.get(Zone, resident.zone_id) if resident.zone_id else None
    return zone.name_in(language) if zone else "?"


def task_buttons(language: Language, task_id: int) -> list[list[dict[str, str]]]:
    return [
        [
            {"text": t(language, "dispatch.task.accept"), "data": f"t:{task_id}:accept"},
            {"text": t(language, "dispatch.task.done"), "data": f"t:{task_id}:done"},
            {"text": t(language, "dispatch.task.not_reached"), "data": f"t:{task_id}:fail"},
        ]
    ]


def visit_text(
    session: Session, *, campaign: Campaign | None, visitor: Visitor, resident: Person
) -> str:
    language = visitor.person.language
    params = {"name": resident.name or "?", "address": place_of(session, resident, language)}
    if visitor.member is not None:
        return campaign_text(
            campaign,
            language,
            "dispatch.task.visit_with",
            member=visitor.member.name or "?",
            **params,
        )
    return campaign_text(campaign, language, "dispatch.task.visit", **params)


def send_visit(
    session: Session,
    *,
    campaign: Campaign | None,
    resident: Person,
    reason: TaskReason,
    now: datetime,
    exclude: frozenset[int] = frozenset(),
) -> Task | None:
    """A home-visit task for the resident's buddy, sent at once; an alert if nobody can go.

    ``exclude``: people who already went and could not reach the resident (the visit moves down
    the ladder: backup buddy, a coordinator, then the officers)."""
    # One visit at a time: the campaign's own, or any visit for help already under way.
    same_visit = Task.campaign_id == (campaign.id if campaign else None)
    if reason == TaskReason.HELP:
        same_visit = or_(same_visit, Task.reason == TaskReason.HELP)
    open_task = session.scalars(
        select(Task).where(
            Task.resident_id == resident.id,
            same_visit,
            Task.status.in_((TaskStatus.OFFERED, TaskStatus.ACCEPTED)),
        )
    ).first()
    if open_task is not None:
        if reason == TaskReason.HELP and open_task.reason != TaskReason.HELP:
            open_task.reason = TaskReason.HELP  # the visit is now for someone who asked for help
        return open_task
    visitor = choose_visitor(session, resident_id=resident.id, now=now, exclude=exclude)
    if visitor is None and (reason == TaskReason.HELP or exclude):
        visitor = resident_group_visitor(session, resident=resident, now=now, exclude=exclude)
    if visitor is None:
        raise_alert(
            session,
            campaign_id=campaign.id if campaign else None,
            person_id=resident.id,
            kind=AlertKind.NO_BUDDY,
            now=now,
        )
        return None
    task = Task(
        campaign_id=campaign.id if campaign else None,
        resident_id=resident.id,
        volunteer_id=visitor.person.id,
        group_id=visitor.group_id,
        reason=reason,
        status=TaskStatus.OFFERED,
        created_at=now,
    )
    session.add(task)
    session.flush()
    send_to(
        session,
        person=visitor.person,
        text=visit_text(session, campaign=campaign, visitor=visitor, resident=resident),
        buttons=task_buttons(visitor.person.language, task.id),
        priority=Priority.INTERACTIVE,  # few and urgent: ahead of any bulk campaign
        kind="task",
        campaign_id=campaign.id if campaign else None,
        now=now,
    )
    return task


def next_visit(session: Session, *, task: Task, now: datetime) -> Task | None:
    """A visitor could not reach the resident: the visit goes to the next person on the ladder
    who has not gone yet (None, with a "no buddy" alert, when nobody is left; None as well
    once the campaign is closed, unless the resident asked for help)."""
    resident = session.get(Person, task.resident_id)
    if resident is None or resident.status != PersonStatus.ACTIVE:
        return None
    went = frozenset(
        session.scalars(
            select(Task.volunteer_id).where(
                Task.resident_id == task.resident_id, Task.campaign_id == task.campaign_id
            )
        )
    )
    campaign = session.get(Campaign, task.campaign_id) if task.campaign_id else None
    if (
        campaign is not None
        and campaign.status != CampaignStatus.ACTIVE
        and task.reason != TaskReason.HELP
    ):
        # A closed check-in sends nobody new: the resident stays on the officers' list.
        return None
    if campaign is not None and task.reason in SILENCE_REASONS:
        answer = session.scalar(
            select(CampaignRecipient.answer).where(
                CampaignRecipient.campaign_id == campaign.id,
                CampaignRecipient.person_id == task.resident_id,
            )
        )
        if answer == Answer.OK:
            return (
                None  # they answered "I'm OK" meanwhile: nobody else is sent on a needless errand
            )
    return send_visit(
        session, campaign=campaign, resident=resident, reason=task.reason, now=now, exclude=went
    )


def raise_alert(
    session: Session,
    *,
    campaign_id: int | None,
    person_id: int | None,
    kind: AlertKind,
    now: datetime,
    task_id: int | None = None,
) -> Alert:
    """An alert on the officers' list; a "no buddy" or "could not reach" one about a resident is
    also owned: pushed to the officer on duty and climbing (:func:`dispatch.help.raise_owned`)."""
    resident = session.get(Person, person_id) if person_id is not None else None
    if resident is not None and kind in OWNED_KINDS and kind not in HELP_KINDS:
        from dispatch.help import raise_owned

        return raise_owned(
            session, resident=resident, campaign_id=campaign_id, kind=kind, now=now, task_id=task_id
        )
    alert = Alert(
        campaign_id=campaign_id, person_id=person_id, kind=kind, task_id=task_id, created_at=now
    )
    session.add(alert)
    return alert


# --- the ladder --------------------------------------------------------------------------------


def run_escalations(session: Session, *, now: datetime, limit: int | None = None) -> int:
    """Move due, still-silent check-in recipients one step up the ladder (at most ``limit``,
    default ``SWEEP_BATCH``); returns how many."""
    query = (
        select(CampaignRecipient, Campaign)
        .join(Campaign, Campaign.id == CampaignRecipient.campaign_id)
        .where(
            CampaignRecipient.next_step_at <= now,
            Campaign.status == CampaignStatus.ACTIVE,
        )
        .order_by(CampaignRecipient.next_step_at, CampaignRecipient.id)
        .limit(limit or SWEEP_BATCH)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=CampaignRecipient)
    rows = session.execute(query).all()
    # The batch's residents and their dead channels in a few queries, not several per
    # recipient (each of which would also flush the rows queued just before it).
    person_ids = sorted({recipient.person_id for recipient, _ in rows})
    residents: list[Person] = []  # held, so the session's identity map keeps them for get()
    for start in range(0, len(person_ids), 500):
        residents += session.scalars(
            select(Person).where(Person.id.in_(person_ids[start : start + 500]))
        ).all()
    dead = dead_channels(session, person_ids)
    for recipient, campaign in rows:
        step_up(
            session,
            recipient=recipient,
            campaign=campaign,
            now=now,
            blocked=dead.get(recipient.person_id, set()),
        )
    return len(rows)


def step_up(
    session: Session,
    *,
    recipient: CampaignRecipient,
    campaign: Campaign,
    now: datetime,
    blocked: set[Channel] | None = None,
) -> None:
    if recipient.answer != Answer.PENDING or campaign.kind != CampaignKind.CHECKIN:
        recipient.next_step_at = None
        return
    resident = session.get(Person, recipient.person_id)
    if resident is None or resident.status != PersonStatus.ACTIVE:
        recipient.next_step_at = None
        return
    started = campaign.started_at
    if recipient.step == 0 and recipient.channel != Channel.NONE:
        _remind(
            session,
            recipient=recipient,
            campaign=campaign,
            resident=resident,
            now=now,
            blocked=blocked,
        )
        recipient.step = 1
        recipient.next_step_at = started + timedelta(seconds=campaign.visit_after)
    elif recipient.step <= 1:
        if _call_first(session, recipient=recipient, campaign=campaign, resident=resident, now=now):
            return
        reason = (
            TaskReason.NO_CHANNEL if recipient.channel == Channel.NONE else TaskReason.NO_ANSWER
        )
        climb_to_visit(
            session,
            recipient=recipient,
            campaign=campaign,
            resident=resident,
            reason=reason,
            now=now,
        )
    else:
        recipient.answer = Answer.NO_ANSWER
        recipient.step = 3
        recipient.next_step_at = None
        raise_alert(
            session,
            campaign_id=campaign.id,
            person_id=resident.id,
            kind=AlertKind.UNREACHED,
            now=now,
        )


def climb_to_visit(
    session: Session,
    *,
    recipient: CampaignRecipient,
    campaign: Campaign,
    resident: Person,
    reason: TaskReason,
    now: datetime,
) -> None:
    """The buddy's home visit, and the unreached list's timer."""
    send_visit(session, campaign=campaign, resident=resident, reason=reason, now=now)
    recipient.step = 2
    recipient.next_step_at = max(
        now, campaign.started_at + timedelta(seconds=campaign.unreached_after)
    )


def _call_first(
    session: Session,
    *,
    recipient: CampaignRecipient,
    campaign: Campaign,
    resident: Person,
    now: datetime,
) -> bool:
    """When the campaign calls and the resident was not called yet: a phone call before the
    visit (:mod:`dispatch.calls`; its outcome climbs to the visit). True when a call was queued."""
    from dispatch import calls

    if not campaign.calls or not calls.callable_person(session, resident):
        return False
    if calls.calls_tried(session, campaign_id=campaign.id, person_id=resident.id):
        return False
    calls.place_call(
        session, campaign=campaign, person=resident, now=now, risk_rank=recipient.risk_rank
    )
    recipient.step = 1
    recipient.next_step_at = calls.call_deadline(campaign, now)
    return True


def _remind(
    session: Session,
    *,
    recipient: CampaignRecipient,
    campaign: Campaign,
    resident: Person,
    now: datetime,
    blocked: set[Channel] | None = None,
) -> None:
    from dispatch.campaigns import checkin_message, priority_for

    if blocked is None:
        blocked = dead_channels(session, [resident.id]).get(resident.id, set())
    channel = channel_for(session, resident, blocked=blocked)
    # The same or the next channel: if Telegram went unanswered and SMS is possible, use SMS.
    if (
        channel == Channel.TELEGRAM
        and resident.can_receive_sms
        and Channel.SMS not in blocked
        and resident.phone_kind != PhoneKind.LANDLINE
    ):
        channel = Channel.SMS
    if channel == Channel.NONE:
        return
    text, buttons = checkin_message(
        language=resident.language,
        name=resident.name,
        campaign_id=campaign.id,
        mode=campaign.mode,
        channel=channel,
        reminder=True,
    )
    address = resident.phone if channel == Channel.SMS else str(resident.telegram_chat_id)
    assert address is not None
    enqueue(
        session,
        channel=channel,
        address=address,
        text=text,
        person_id=resident.id,
        buttons=[[(b["text"], b["data"]) for b in row] for row in buttons],
        priority=priority_for(campaign.mode),
        kind="reminder",
        campaign_id=campaign.id,
        due_at=now,
        now=now,
    ).risk_rank = recipient.risk_rank


def no_channel_left(
    session: Session, *, message: OutboxMessage, person: Person, now: datetime
) -> None:
    """Every channel to ``person`` failed for ``message``: a check-in becomes a home visit."""
    if message.campaign_id is None:
        return
    campaign = session.get(Campaign, message.campaign_id)
    if campaign is None:
        return
    if message.kind == "task":
        # The visitor cannot be reached: the officer must find someone else.
        raise_alert(
            session, campaign_id=campaign.id, person_id=person.id, kind=AlertKind.NO_BUDDY, now=now
        )
        return
    recipient = session.scalars(
        select(CampaignRecipient).where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.person_id == person.id,
        )
    ).first()
    if recipient is None or campaign.kind != CampaignKind.CHECKIN:
        return
    if recipient.answer == Answer.PENDING and recipient.step < 2:
        if _call_first(session, recipient=recipient, campaign=campaign, resident=person, now=now):
            return
        climb_to_visit(
            session,
            recipient=recipient,
            campaign=campaign,
            resident=person,
            reason=TaskReason.NO_CHANNEL,
            now=now,
        )


# --- task assignment campaigns -----------------------------------------------------------------


def assign_buddy_tasks(
    session: Session, *, campaign: Campaign, audience: object, now: datetime
) -> int:
    """A task-assignment campaign: every buddy gets a home visit for each of their residents.

    Adults get their tasks themselves (one message with buttons, or a list); a minor's tasks go
    to the adult coordinator of their group, all of a group's tasks in one list.
    """
    from dispatch.campaigns import Audience, resolve_audience

    assert isinstance(audience, Audience)
    volunteers = {
        r.person_id
        for r in resolve_audience(
            session,
            authority=_authority(session, campaign.authority_id),
            audience=audience,
        )
    }
    assignments = session.execute(
        select(BuddyAssignment.resident_id, BuddyAssignment.volunteer_id)
        .join(Person, Person.id == BuddyAssignment.resident_id)
        .where(
            BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
            BuddyAssignment.rank == 1,
            Person.status == PersonStatus.ACTIVE,
            Person.authority_id == campaign.authority_id,
        )
        .order_by(BuddyAssignment.volunteer_id, BuddyAssignment.resident_id)
    ).all()
    lists: dict[tuple[int, int | None], list[tuple[Task, Person, Person | None]]] = defaultdict(
        list
    )
    count = 0
    for resident_id, volunteer_id in assignments:
        if volunteer_id not in volunteers:
            continue
        volunteer = session.get(Person, volunteer_id)
        resident = session.get(Person, resident_id)
        if volunteer is None or resident is None:
            continue
        if is_minor(volunteer, now):
            visitor = _adult_coordinator(session, member=volunteer, now=now)
            if visitor is None:
                raise_alert(
                    session,
                    campaign_id=campaign.id,
                    person_id=resident.id,
                    kind=AlertKind.NO_BUDDY,
                    now=now,
                )
                continue
        else:
            visitor = Visitor(person=volunteer)
        task = Task(
            campaign_id=campaign.id,
            resident_id=resident.id,
            volunteer_id=visitor.person.id,
            group_id=visitor.group_id,
            reason=TaskReason.ASSIGNED,
            status=TaskStatus.OFFERED,
            created_at=now,
        )
        session.add(task)
        lists[(visitor.person.id, visitor.group_id)].append((task, resident, visitor.member))
        count += 1
    session.flush()
    for (visitor_id, group_id), tasks in lists.items():
        visitor_person = session.get(Person, visitor_id)
        assert visitor_person is not None
        send_task_list(
            session,
            campaign=campaign,
            visitor=visitor_person,
            group_id=group_id,
            tasks=tasks,
            now=now,
        )
    return count


def send_task_list(
    session: Session,
    *,
    campaign: Campaign,
    visitor: Person,
    group_id: int | None,
    tasks: list[tuple[Task, Person, Person | None]],
    now: datetime,
) -> None:
    """One task: the visit message with its three buttons. Several: one list, with "done" and
    "could not reach" for each visit (buttons, or two numbers each by SMS)."""
    from dispatch.campaigns import priority_for

    language = visitor.language
    if len(tasks) == 1 and group_id is None:
        task, resident, _ = tasks[0]
        send_to(
            session,
            person=visitor,
            text=visit_text(
                session, campaign=campaign, visitor=Visitor(visitor), resident=resident
            ),
            buttons=task_buttons(language, task.id),
            priority=priority_for(campaign.mode),
            kind="task",
            campaign_id=campaign.id,
            now=now,
        )
        return
    group = session.get(Group, group_id) if group_id else None
    title = group.name if group else (visitor.name or "").split(" ")[0]
    lines = [campaign_text(campaign, language, "dispatch.task.list", group=title)]
    buttons: list[list[dict[str, str]]] = []
    channel = channel_for(session, visitor)
    done, failed = t(language, "dispatch.task.done"), t(language, "dispatch.task.not_reached")
    for number, (task, resident, member) in enumerate(tasks, start=1):
        place = place_of(session, resident, language)
        with_member = f" ({member.name})" if member is not None and member.name else ""
        if channel == Channel.SMS:
            # SMS: the numbered choices are the list itself, two for each visit ("3" marks the
            # second visit done, "4" says it could not reach them).
            label = f"{resident.name or '?'}, {place}{with_member}: {done}"
            fail_label = f"{resident.name or '?'}: {failed}"
        else:
            lines.append(f"{number}. {resident.name or '?'}, {place}{with_member}")
            label = f"✓ {number}. {resident.name or '?'}"[:60]
            fail_label = f"✗ {number}. {failed}"[:60]
        buttons.append(
            [
                {"text": label, "data": f"t:{task.id}:done"},
                {"text": fail_label, "data": f"t:{task.id}:fail"},
            ]
        )
    send_to(
        session,
        person=visitor,
        text="\n".join(lines),
        buttons=buttons,
        priority=priority_for(campaign.mode),
        kind="task_list",
        campaign_id=campaign.id,
        now=now,
        channel=channel,
    )


def _authority(session: Session, authority_id: int) -> Authority:
    authority = session.get(Authority, authority_id)
    assert authority is not None
    return authority


# --- the check-in closes -------------------------------------------------------------------------

TASK_MESSAGE_KINDS = ("task", "task_list")
CLOSE_NOTICE_KIND = "notice"  # not a campaign message: a late "1" still answers the offer


@dataclass(frozen=True)
class ClosedVisits:
    """What closing a campaign did to its home visits."""

    withdrawn: int  # offered (or no longer needed) visits, cancelled
    under_way: int  # accepted visits to residents not accounted for, kept open
    told: int  # visitors told (a visit they never received is withdrawn silently)


def _task_ids(buttons: list[list[dict[str, str]]] | None) -> set[int]:
    ids = set()
    for row in buttons or ():
        for button in row:
            parts = button.get("data", "").split(":")
            if len(parts) == 3 and parts[0] == "t" and parts[1].isdigit():
                ids.add(int(parts[1]))
    return ids


def close_visits(session: Session, *, campaign: Campaign, now: datetime) -> ClosedVisits:
    """The campaign closes: no visit of it may look live unless it still matters.

    - A visit offered and not accepted is withdrawn (cancelled); its visitor is told so, and
      whether the resident answered or is on the officers' list (an offer still waiting in the
      queue is cancelled with it, and nobody is told about a visit they never heard of).
    - An accepted visit to a resident nobody has accounted for stays open: the visitor may be at
      the door. They are told the check-in is closed and that their report still counts (it
      takes the resident off the unreached list); the report says "wait for the buddy's report".
    - An accepted visit to a resident who answered is withdrawn, and the visitor told why.
    - A visit for someone who asked for help is not the campaign's to end: it stays as it is,
      like the help alert, which keeps its owner and its climb.
    """
    tasks = session.scalars(
        select(Task)
        .where(
            Task.campaign_id == campaign.id,
            Task.status.in_((TaskStatus.OFFERED, TaskStatus.ACCEPTED)),
            Task.reason != TaskReason.HELP,
        )
        .order_by(Task.id)
    ).all()
    if not tasks:
        return ClosedVisits(withdrawn=0, under_way=0, told=0)
    answered = set(
        session.scalars(
            select(CampaignRecipient.person_id).where(
                CampaignRecipient.campaign_id == campaign.id,
                CampaignRecipient.answer.in_((Answer.OK, Answer.HELP, Answer.FREE_TEXT)),
            )
        )
    )
    keep = {
        task.id
        for task in tasks
        if task.status == TaskStatus.ACCEPTED and task.resident_id not in answered
    }
    ending = {task.id for task in tasks} - keep
    # Offers still waiting in the queue: cancelled, unless they also carry a visit that stays.
    unheard: set[int] = set()
    for message in session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.campaign_id == campaign.id,
            OutboxMessage.kind.in_(TASK_MESSAGE_KINDS),
            OutboxMessage.status == OutboxStatus.QUEUED,
        )
    ):
        ids = _task_ids(message.buttons)
        if ids and ids <= ending:
            message.status = OutboxStatus.CANCELLED
            unheard |= ids
    notices: dict[int, list[Task]] = defaultdict(list)
    told = 0
    for task in tasks:
        if task.id in ending:
            task.status, task.closed_at = TaskStatus.CANCELLED, now
            if task.id not in unheard:
                notices[task.volunteer_id].append(task)
            continue
        visitor = session.get(Person, task.volunteer_id)
        resident = session.get(Person, task.resident_id)
        if visitor is None or resident is None:
            continue
        language = visitor.language
        sent = send_to(
            session,
            person=visitor,
            text=campaign_text(
                campaign, language, "dispatch.close.under_way", name=resident.name or "?"
            ),
            buttons=[task_buttons(language, task.id)[0][1:]],  # done, could not reach
            priority=Priority.INTERACTIVE,
            kind="task",
            campaign_id=campaign.id,
            now=now,
        )
        told += sent is not None
    for visitor_id, withdrawn in notices.items():
        visitor = session.get(Person, visitor_id)
        if visitor is None:
            continue
        language = visitor.language
        # A task list's round ends as one list; a buddy's visits are told one by one.
        listed = [task for task in withdrawn if task.reason == TaskReason.ASSIGNED]
        texts = (
            [campaign_text(campaign, language, "dispatch.close.withdrawn_list")] if listed else []
        )
        for task in withdrawn:
            if task.reason != TaskReason.ASSIGNED:
                resident = session.get(Person, task.resident_id)
                key = (
                    "dispatch.close.withdrawn_answered"
                    if task.resident_id in answered
                    else "dispatch.close.withdrawn_unreached"
                )
                name = (resident.name if resident else None) or "?"
                texts.append(campaign_text(campaign, language, key, name=name))
        for text in texts:
            sent = send_to(
                session,
                person=visitor,
                text=text,
                buttons=None,
                priority=Priority.INTERACTIVE,
                kind=CLOSE_NOTICE_KIND,
                campaign_id=campaign.id,
                now=now,
            )
            told += sent is not None
    return ClosedVisits(withdrawn=len(ending), under_way=len(keep), told=told)


# --- what an answer withdraws --------------------------------------------------------------------

# Sent messages an answer has answered: they are marked read.
ANSWERED_KINDS = ("checkin", "reminder")
# Queued messages an answer makes pointless: a reminder not sent yet, a call not placed yet.
WITHDRAWN_KINDS = ("reminder", "call")
# Visits the ladder sent because the resident was silent: an "I'm OK" ends their reason.
SILENCE_REASONS = (TaskReason.NO_ANSWER, TaskReason.NO_CHANNEL)
# Ids per statement in an IN list (well under SQLite's and PostgreSQL's parameter limits).
ANSWERED_CHUNK = 2000


@dataclass(frozen=True)
class Answered:
    """One check-in answered (or its resident seen): the campaign, the resident, when."""

    campaign_id: int
    person_id: int
    at: datetime


def withdraw_for_answers(session: Session, *, answered: Sequence[Answered], ok: bool) -> set[int]:
    """What answers to check-ins withdraw, for one or many at once: the one definition for every
    way an answer comes (a button, an SMS number, words, a key pressed in a call, the inbox's
    batch of OKs, a buddy's "done, all OK").

    - Sent check-ins and reminders are read; a reminder not sent yet and a call not placed yet
      are cancelled (nobody is asked again, no phone rings, after they answered).
    - ``ok`` ("I'm OK") also ends the visits the ladder sent for their silence: an offer not yet
      accepted is withdrawn and its visitor told why (an offer still in the queue is cancelled
      with it, unheard); a visitor who accepted is told the resident has since answered, and
      may still look in (their report still counts).
    - ``ok`` from a resident whose help alert is open changes nothing of the alert's state or
      owner (the officer decides): the alert shows the answer and its officers are told once
      (:func:`dispatch.help.said_ok_after_help`).

    A few statements for the whole set; visits and help alerts are read only for its residents
    (and are few). Returns the residents whose help alert is still open. The caller commits.
    """
    if not answered:
        return set()
    pairs = {(a.campaign_id, a.person_id) for a in answered}
    person_ids = sorted({person_id for _, person_id in pairs})
    campaign_ids = sorted({campaign_id for campaign_id, _ in pairs})
    chunks = [
        person_ids[start : start + ANSWERED_CHUNK]
        for start in range(0, len(person_ids), ANSWERED_CHUNK)
    ]
    read: list[int] = []
    cancelled: list[int] = []
    for chunk in chunks:
        for message_id, campaign_id, person_id, kind, status in session.execute(
            select(
                OutboxMessage.id,
                OutboxMessage.campaign_id,
                OutboxMessage.person_id,
                OutboxMessage.kind,
                OutboxMessage.status,
            ).where(
                OutboxMessage.person_id.in_(chunk),
                OutboxMessage.campaign_id.in_(campaign_ids),
                OutboxMessage.kind.in_(sorted({*ANSWERED_KINDS, *WITHDRAWN_KINDS})),
                OutboxMessage.status.in_(
                    (OutboxStatus.SENT, OutboxStatus.DELIVERED, OutboxStatus.QUEUED)
                ),
            )
        ):
            if (campaign_id, person_id) not in pairs:
                continue
            if status == OutboxStatus.QUEUED:
                if kind in WITHDRAWN_KINDS:
                    cancelled.append(message_id)
            elif kind in ANSWERED_KINDS:
                read.append(message_id)
    # The statuses again: a worker may have claimed a reminder or a call meanwhile.
    for ids, status, was in (
        (read, OutboxStatus.READ, (OutboxStatus.SENT, OutboxStatus.DELIVERED)),
        (cancelled, OutboxStatus.CANCELLED, (OutboxStatus.QUEUED,)),
    ):
        for start in range(0, len(ids), ANSWERED_CHUNK):
            session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id.in_(ids[start : start + ANSWERED_CHUNK]),
                    OutboxMessage.status.in_(was),
                )
                .values(status=status)
                .execution_options(synchronize_session=False)
            )
    if not ok:
        return set()
    at: dict[tuple[int | None, int], datetime] = {
        (a.campaign_id, a.person_id): a.at for a in answered
    }
    tasks = [
        task
        for chunk in chunks
        for task in session.scalars(
            select(Task)
            .where(
                Task.resident_id.in_(chunk),
                Task.campaign_id.in_(campaign_ids),
                Task.status.in_((TaskStatus.OFFERED, TaskStatus.ACCEPTED)),
                Task.reason.in_(SILENCE_REASONS),
            )
            .order_by(Task.id)
        )
        if (task.campaign_id, task.resident_id) in pairs
    ]
    if tasks:
        _visits_answered(session, tasks=tasks, at=at)
    from dispatch.help import said_ok_after_help

    latest: dict[int, datetime] = {}
    for (_, person_id), when in at.items():
        latest[person_id] = max(when, latest.get(person_id, when))
    return said_ok_after_help(session, answered_at=latest)


def _visits_answered(
    session: Session, *, tasks: Sequence[Task], at: dict[tuple[int | None, int], datetime]
) -> None:
    """The resident answered "I'm OK": their silence visits end or are told (see above)."""
    offered = {task.id for task in tasks if task.status == TaskStatus.OFFERED}
    unheard: set[int] = set()
    if offered:
        for message in session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.campaign_id.in_(sorted({task.campaign_id for task in tasks})),
                OutboxMessage.kind.in_(TASK_MESSAGE_KINDS),
                OutboxMessage.status == OutboxStatus.QUEUED,
            )
        ):
            ids = _task_ids(message.buttons)
            if ids and ids <= offered:
                message.status = OutboxStatus.CANCELLED
                unheard |= ids
    for task in tasks:
        now = at[(task.campaign_id, task.resident_id)]
        campaign = session.get(Campaign, task.campaign_id) if task.campaign_id else None
        visitor = session.get(Person, task.volunteer_id)
        resident = session.get(Person, task.resident_id)
        name = (resident.name if resident else None) or "?"
        if task.id in offered:
            task.status, task.closed_at = TaskStatus.CANCELLED, now
            if task.id in unheard:
                continue
            key = "dispatch.answered.withdrawn"
        else:
            # A notice, not a new offer: the offer's own buttons (or SMS numbers) still report
            # the visit, and closing the campaign does not take this message back unsent.
            key = "dispatch.answered.under_way"
        if visitor is None:
            continue
        send_to(
            session,
            person=visitor,
            text=campaign_text(campaign, visitor.language, key, name=name),
            buttons=None,
            priority=Priority.INTERACTIVE,
            kind=CLOSE_NOTICE_KIND,
            campaign_id=task.campaign_id,
            now=now,
        )
