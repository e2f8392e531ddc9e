"""What the officers' console shows: the live board of a campaign, the help queue and the lists
to act on (who is still unreached, who asked for help), read in a few grouped queries.

Every count here is a count of ``campaign_recipient`` rows by their answer, so a zone's states
add up to the zone's audience and the zones add up to the campaign's. Nothing is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Integer, Select, cast, func, literal, select
from sqlalchemy.orm import Session

from dispatch.models import (
    HELP_KINDS,
    OWNED_KINDS,
    Alert,
    AlertState,
    Answer,
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    HelpNeed,
    OutboxMessage,
    Task,
)
from registry.db import UTCDateTime
from registry.models import (
    ACTIVE_ASSIGNMENT,
    BuddyAssignment,
    Consent,
    ConsentKind,
    Person,
    Shelter,
    Zone,
)
from registry.staff import StaffMember


class BoardState(StrEnum):
    """Where one recipient stands; every recipient is in exactly one."""

    OK = "ok"
    HELP = "help"
    FREE_TEXT = "free_text"  # answered in words a person must read
    WAITING = "waiting"  # no answer yet, the ladder still running
    UNREACHED = "unreached"  # the ladder ran out


STATE_OF: dict[Answer, BoardState] = {
    Answer.OK: BoardState.OK,
    Answer.HELP: BoardState.HELP,
    Answer.FREE_TEXT: BoardState.FREE_TEXT,
    Answer.PENDING: BoardState.WAITING,
    Answer.NO_ANSWER: BoardState.UNREACHED,
}
ACCOUNTED = (BoardState.OK, BoardState.HELP, BoardState.FREE_TEXT)


@dataclass
class ZoneCounts:
    zone_id: int | None
    counts: dict[BoardState, int] = field(default_factory=lambda: dict.fromkeys(BoardState, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def accounted(self) -> int:
        return sum(self.counts[state] for state in ACCOUNTED)

    @property
    def share(self) -> float:
        """The share accounted for (answered in any way), 0..1."""
        return self.accounted / self.total if self.total else 0.0


@dataclass
class BoardCounts:
    total: ZoneCounts
    zones: list[ZoneCounts]


def campaigns_of(session: Session, *, authority_ids: list[int], limit: int = 10) -> list[Campaign]:
    """The authorities' campaigns, running ones first, then the latest closed ones."""
    return list(
        session.scalars(
            select(Campaign)
            .where(Campaign.authority_id.in_(authority_ids))
            .order_by((Campaign.status == CampaignStatus.ACTIVE).desc(), Campaign.id.desc())
            .limit(limit)
        )
    )


def board_counts(session: Session, *, campaign: Campaign) -> BoardCounts:
    """Recipients per zone per state, in one grouped query."""
    total = ZoneCounts(zone_id=None)
    zones: dict[int | None, ZoneCounts] = {}
    for zone_id, answer, count in session.execute(
        select(CampaignRecipient.zone_id, CampaignRecipient.answer, func.count())
        .where(CampaignRecipient.campaign_id == campaign.id)
        .group_by(CampaignRecipient.zone_id, CampaignRecipient.answer)
    ):
        state = STATE_OF[Answer(answer)]
        zones.setdefault(zone_id, ZoneCounts(zone_id=zone_id)).counts[state] += count
        total.counts[state] += count
    ordered = sorted(zones.values(), key=lambda z: (z.zone_id is None, z.zone_id or 0))
    return BoardCounts(total=total, zones=ordered)


# --- the ladder ---------------------------------------------------------------------------------


class Rung(StrEnum):
    SENT = "sent"
    REMINDER = "reminder"
    VISIT = "visit"
    UNREACHED = "unreached"


@dataclass(frozen=True)
class LadderStep:
    rung: Rung
    at: datetime
    passed: bool


def ladder_of(campaign: Campaign, *, now: datetime) -> list[LadderStep]:
    """The check-in's steps with their times; ``passed`` for those already reached."""
    start = campaign.started_at
    times = [
        (Rung.SENT, start),
        (Rung.REMINDER, start + timedelta(seconds=campaign.reminder_after)),
        (Rung.VISIT, start + timedelta(seconds=campaign.visit_after)),
        (Rung.UNREACHED, start + timedelta(seconds=campaign.unreached_after)),
    ]
    end = campaign.closed_at or now
    return [LadderStep(rung, at, at <= end) for rung, at in times]


def answer_curve(
    session: Session, *, campaign: Campaign, now: datetime, points: int = 60
) -> list[tuple[float, int]]:
    """The cumulative number of answers over the seconds since the start, at ``points`` even
    steps up to now (or the close), starting at (0, 0)."""
    end = campaign.closed_at or now
    span = max(1.0, (end - campaign.started_at).total_seconds())
    bins = [0] * (points + 1)
    # Counted per whole second in the database (a few thousand rows at most, not one per answer).
    offset = cast(
        _seconds_since(session, CampaignRecipient.answered_at, campaign.started_at), Integer
    )
    for second, count in session.execute(
        select(offset, func.count())
        .where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.answered_at.is_not(None),
        )
        .group_by(offset)
    ):
        index = min(points, max(0, math.ceil(float(second) * points / span)))
        bins[index] += count
    curve, running = [], 0
    for index, count in enumerate(bins):
        running += count
        curve.append((span * index / points, running))
    return curve


def _seconds_since(session: Session, column: Any, start: datetime) -> Any:
    """SQL for the seconds from ``start`` to ``column`` (a UTC timestamp), on either database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", column - literal(start, UTCDateTime))
    # SQLite keeps UTC timestamps as text ("2026-11-22 09:00:00.000000"); julianday reads it.
    stamp = start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return (func.julianday(column) - func.julianday(literal(stamp))) * 86400.0


# --- the map ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    zone_id: int | None
    code: str
    name: str
    lat: float
    lon: float
    kind: str  # "zone" or "shelter"
    capacity: int = 0


def places_of(session: Session, *, authority_id: int, language: str) -> list[Place]:
    """The authority's zones and shelters that have coordinates."""
    places = [
        Place(zone.id, zone.code, zone.name_in(language), zone.lat, zone.lon, "zone")
        for zone in session.scalars(
            select(Zone).where(Zone.authority_id == authority_id).order_by(Zone.id)
        )
        if zone.lat is not None and zone.lon is not None
    ]
    places += [
        Place(s.zone_id, s.code, s.name, s.lat, s.lon, "shelter", s.capacity)
        for s in session.scalars(
            select(Shelter).where(Shelter.authority_id == authority_id).order_by(Shelter.id)
        )
        if s.lat is not None and s.lon is not None
    ]
    return places


# --- the help queue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    alert_id: int
    kind: str
    state: AlertState
    created_at: datetime
    person_id: int
    resident: str
    zone_id: int | None
    phone: str | None
    address: str | None
    need: HelpNeed | None
    words: str | None
    health_consent: bool
    owner: str
    owner_staff_id: int | None
    campaign_id: int | None
    later_ok_at: datetime | None = None  # the resident has since answered a check-in "I'm OK"


def queue_version(session: Session, *, authority_ids: list[int]) -> str:
    """Changes whenever an owned alert (help, no buddy, could not reach) appears, changes hands or is closed: a cheap way for
    the page to know it must redraw."""
    row = session.execute(
        select(
            func.count(),
            func.max(Alert.id),
            func.max(Alert.taken_at),
            func.max(Alert.climb),
            func.max(Alert.later_ok_at),
        )
        .join(Person, Person.id == Alert.person_id)
        .where(
            Alert.kind.in_(OWNED_KINDS),
            Alert.state.in_((AlertState.OPEN, AlertState.TAKEN)),
            Person.authority_id.in_(authority_ids),
        )
    ).one()
    count, last, taken, climb, later_ok = row
    closed = session.scalar(
        select(func.max(Alert.resolved_at))
        .join(Person, Person.id == Alert.person_id)
        .where(Alert.kind.in_(OWNED_KINDS), Person.authority_id.in_(authority_ids))
    )
    stamp = [str(count), str(last), str(taken), str(climb), str(closed), str(later_ok)]
    return "-".join(part.replace(" ", "T") for part in stamp)


def open_help_count(session: Session, *, authority_ids: list[int]) -> int:
    """How many owned alerts (help, no buddy, could not reach) of the authorities are open or
    taken."""
    counted = session.scalar(
        select(func.count())
        .select_from(Alert)
        .join(Person, Person.id == Alert.person_id)
        .where(
            Alert.kind.in_(OWNED_KINDS),
            Alert.state.in_((AlertState.OPEN, AlertState.TAKEN)),
            Person.authority_id.in_(authority_ids),
        )
    )
    return int(counted or 0)


def help_queue(
    session: Session, *, authority_ids: list[int], person_ids: set[int] | None = None
) -> list[QueueRow]:
    """Every open or taken owned alert (help, no buddy, could not reach) of the authorities, oldest first (``person_ids``: only
    these residents, for a coordinator's groups)."""
    query = (
        select(Alert, Person)
        .join(Person, Person.id == Alert.person_id)
        .where(
            Alert.kind.in_(OWNED_KINDS),
            Alert.state.in_((AlertState.OPEN, AlertState.TAKEN)),
            Person.authority_id.in_(authority_ids),
        )
        .order_by(Alert.created_at, Alert.id)
    )
    if person_ids is not None:
        query = query.where(Person.id.in_(person_ids or {-1}))
    rows = session.execute(query).all()
    ids = [person.id for _, person in rows]
    consented = set(
        session.scalars(
            select(Consent.person_id).where(
                Consent.person_id.in_(ids or [-1]),
                Consent.kind == ConsentKind.HEALTH_DATA,
                Consent.withdrawn_at.is_(None),
            )
        )
    )
    staff = {
        m.id: m.name
        for m in session.scalars(
            select(StaffMember).where(
                StaffMember.id.in_([a.owner_staff_id for a, _ in rows if a.owner_staff_id] or [-1])
            )
        )
    }
    volunteers = dict(
        session.execute(
            select(Person.id, Person.name).where(
                Person.id.in_([a.owner_person_id for a, _ in rows if a.owner_person_id] or [-1])
            )
        ).all()
    )
    out = []
    for alert, person in rows:
        owner = ""
        if alert.owner_staff_id is not None:
            owner = staff.get(alert.owner_staff_id, "?")
        elif alert.owner_person_id is not None:
            owner = volunteers.get(alert.owner_person_id) or "?"
        out.append(
            QueueRow(
                alert_id=alert.id,
                kind=alert.kind.value,
                state=alert.state,
                created_at=alert.created_at,
                person_id=person.id,
                resident=person.name or "?",
                zone_id=person.zone_id,
                phone=person.phone,
                address=person.address,
                need=alert.need,
                words=alert.detail,
                health_consent=person.id in consented,
                owner=owner,
                owner_staff_id=alert.owner_staff_id,
                campaign_id=alert.campaign_id,
                later_ok_at=alert.later_ok_at,
            )
        )
    return out


# --- lists to act on ----------------------------------------------------------------------------


class ListKind(StrEnum):
    UNREACHED = "unreached"  # no answer yet or the ladder ran out
    HELP = "help"  # answered "I need help"


LIST_ANSWERS: dict[ListKind, tuple[Answer, ...]] = {
    ListKind.UNREACHED: (Answer.NO_ANSWER, Answer.PENDING),
    ListKind.HELP: (Answer.HELP,),
}


class NextAction(StrEnum):
    REMINDER = "reminder"  # the reminder goes out at ``at``
    VISIT = "visit"  # the buddy is sent at ``at``
    UNREACHED = "unreached"  # on the unreached list at ``at``
    VISIT_OFFERED = "visit_offered"  # a volunteer was asked to go, not yet accepted
    VISIT_ACCEPTED = "visit_accepted"  # a volunteer is on the way
    VISIT_DONE = "visit_done"
    CALL = "call"  # call the resident, then send someone
    TAKE_ALERT = "take_alert"  # a help alert waits for an officer
    HELP_TAKEN = "help_taken"  # someone took the help alert


@dataclass(frozen=True)
class ListRow:
    person_id: int
    name: str
    zone_id: int | None
    phone: str | None
    address: str | None
    priority: int  # risk rank: lower is more at risk
    answer: Answer
    buddy: str | None
    buddy_phone: str | None
    last_channel: str | None
    last_status: str | None
    last_at: datetime | None
    next_action: NextAction
    next_at: datetime | None
    helper: str | None  # the volunteer or officer of the next action


@dataclass(frozen=True)
class ActionList:
    rows: list[ListRow]
    total: int


def action_list(
    session: Session,
    *,
    campaign: Campaign,
    kind: ListKind,
    zone_id: int | None = None,
    limit: int | None = 200,
    offset: int = 0,
) -> ActionList:
    """The recipients of ``kind``, most at risk first, with what a caller needs to act: phone,
    address, buddy, the last message and what happens next. ``limit``/``offset`` page it
    (``limit=None``: every one, for the printed sheet and the CSV); ``total`` counts them all."""
    where = [
        CampaignRecipient.campaign_id == campaign.id,
        CampaignRecipient.answer.in_(LIST_ANSWERS[kind]),
    ]
    if zone_id is not None:
        where.append(CampaignRecipient.zone_id == zone_id)
    # Count and page from ix_campaign_recipient_board alone; only the page's rows are joined to
    # their people and their last message.
    counted = session.scalar(select(func.count()).select_from(CampaignRecipient).where(*where))
    total = int(counted or 0)
    order = (CampaignRecipient.zone_id, CampaignRecipient.risk_rank, CampaignRecipient.person_id)
    page = select(CampaignRecipient.id).where(*where).order_by(*order).offset(offset)
    if limit is not None:
        page = page.limit(limit)
    found = session.execute(
        select(
            CampaignRecipient.person_id,
            CampaignRecipient.zone_id,
            CampaignRecipient.risk_rank,
            CampaignRecipient.answer,
            CampaignRecipient.step,
            CampaignRecipient.next_step_at,
            Person.name,
            Person.phone,
            Person.address,
        )
        .join(Person, Person.id == CampaignRecipient.person_id)
        .where(CampaignRecipient.id.in_(page.scalar_subquery()))
        .order_by(*order)
    ).all()
    # The page's people for the lookups below: a page's few hundred ids, or for a whole list
    # (the printed sheet, the CSV: thousands) the list's own condition, so that no statement
    # carries thousands of bound ids.
    people: People = (
        _chunks([row.person_id for row in found])
        if limit is not None
        else [select(CampaignRecipient.person_id).where(*where)]
    )
    buddies = _buddies(session, people)
    last = _last_messages(session, campaign.id, people)
    tasks = _tasks(session, campaign.id, people)
    alerts = _alerts(session, campaign.id, people)
    active = campaign.status == CampaignStatus.ACTIVE
    rows = []
    for person_id, zone, rank, answer, step, next_at, name, phone, address in found:
        buddy = buddies.get(person_id)
        message = last.get(person_id)
        action, at, helper = _next_action(
            Answer(answer), step, next_at, active, tasks.get(person_id), alerts.get(person_id)
        )
        rows.append(
            ListRow(
                person_id=person_id,
                name=name or "?",
                zone_id=zone,
                phone=phone,
                address=address,
                priority=rank,
                answer=Answer(answer),
                buddy=buddy[0] if buddy else None,
                buddy_phone=buddy[1] if buddy else None,
                last_channel=message[0] if message else None,
                last_status=message[1] if message else None,
                last_at=message[2] if message else None,
                next_action=action,
                next_at=at,
                helper=helper,
            )
        )
    return ActionList(rows=rows, total=total)


def _chunks(ids: list[int], size: int = 900) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


People = list[list[int]] | list[Select[Any]]


def _buddies(session: Session, people: People) -> dict[int, tuple[str, str | None]]:
    """Each resident's first-ranked active buddy: name and phone."""
    found: dict[int, tuple[int, str, str | None]] = {}
    for chunk in people:
        for resident_id, rank, name, phone in session.execute(
            select(BuddyAssignment.resident_id, BuddyAssignment.rank, Person.name, Person.phone)
            .join(Person, Person.id == BuddyAssignment.volunteer_id)
            .where(
                BuddyAssignment.resident_id.in_(chunk),
                BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
            )
        ):
            if resident_id not in found or rank < found[resident_id][0]:
                found[resident_id] = (rank, name or "?", phone)
    return {pid: (name, phone) for pid, (_, name, phone) in found.items()}


def _last_messages(
    session: Session, campaign_id: int, people: People
) -> dict[int, tuple[str, str, datetime]]:
    """The latest message of the campaign to each person: channel, status, when (found through
    ix_outbox_campaign_person)."""
    found: dict[int, tuple[str, str, datetime]] = {}
    for chunk in people:
        latest = (
            select(func.max(OutboxMessage.id))
            .where(OutboxMessage.campaign_id == campaign_id, OutboxMessage.person_id.in_(chunk))
            .group_by(OutboxMessage.person_id)
        )
        for person_id, channel, status, created, sent in session.execute(
            select(
                OutboxMessage.person_id,
                OutboxMessage.channel,
                OutboxMessage.status,
                OutboxMessage.created_at,
                OutboxMessage.sent_at,
            ).where(OutboxMessage.id.in_(latest))
        ):
            if person_id is not None:
                found[person_id] = (str(channel), str(status), sent or created)
    return found


def _tasks(session: Session, campaign_id: int, people: People) -> dict[int, tuple[str, str]]:
    """Each resident's latest visit task of the campaign: status and the volunteer's name."""
    found: dict[int, tuple[str, str]] = {}
    for chunk in people:
        for resident_id, status, name in session.execute(
            select(Task.resident_id, Task.status, Person.name)
            .join(Person, Person.id == Task.volunteer_id)
            .where(Task.campaign_id == campaign_id, Task.resident_id.in_(chunk))
            .order_by(Task.id)
        ):
            found[resident_id] = (str(status), name or "?")
    return found


def _alerts(session: Session, campaign_id: int, people: People) -> dict[int, tuple[str, str]]:
    """Each resident's help alert of the campaign: its state and its owner's name."""
    found: dict[int, tuple[str, str]] = {}
    for chunk in people:
        for person_id, state, staff_name, volunteer_name in session.execute(
            select(Alert.person_id, Alert.state, StaffMember.name, Person.name)
            .outerjoin(StaffMember, StaffMember.id == Alert.owner_staff_id)
            .outerjoin(Person, Person.id == Alert.owner_person_id)
            .where(
                Alert.campaign_id == campaign_id,
                Alert.kind.in_(HELP_KINDS),
                Alert.person_id.in_(chunk),
            )
            .order_by(Alert.id)
        ):
            if person_id is not None:
                found[person_id] = (str(state), staff_name or volunteer_name or "")
    return found


def _next_action(
    answer: Answer,
    step: int,
    next_step_at: datetime | None,
    active: bool,
    task: tuple[str, str] | None,
    alert: tuple[str, str] | None,
) -> tuple[NextAction, datetime | None, str | None]:
    if answer == Answer.HELP and alert is not None:
        state, owner = alert
        if state == AlertState.OPEN.value:
            return NextAction.TAKE_ALERT, None, None
        if state == AlertState.TAKEN.value:
            return NextAction.HELP_TAKEN, None, owner or None
    if task is not None:
        status, volunteer = task
        if status == "offered":
            return NextAction.VISIT_OFFERED, None, volunteer
        if status == "accepted":
            return NextAction.VISIT_ACCEPTED, None, volunteer
        if status == "done":
            return NextAction.VISIT_DONE, None, volunteer
    if answer == Answer.PENDING and active:
        steps = {0: NextAction.REMINDER, 1: NextAction.VISIT, 2: NextAction.UNREACHED}
        if step in steps and next_step_at is not None:
            return steps[step], next_step_at, None
    return NextAction.CALL, None, None
