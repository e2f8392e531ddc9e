"""What an officer sees: a campaign's live status, the drill report at close, and a CSV export.

Every recipient is counted once in each of two views, so both add up to the audience:

- *outcome* (:data:`OUTCOMES`): answered OK, needs help, wrote a message, seen by a buddy who
  went (no answer, but a visit was reported done), still waiting (the ladder goes on), or not
  reached (the ladder ran out, or the check-in was closed first);
- *delivery* (:data:`DELIVERIES`): the furthest any of the campaign's messages to that person
  got (delivered > sent > in the queue > failed on every channel; no channel at all), so a
  Telegram failure followed by a delivered SMS counts once, as delivered.

Everything here is data (codes, numbers, UTC times); the officer's words come from the
``[report]`` tables of the catalogs where it is shown (``hosen.report_html``, the CLI).
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session, aliased

from config.i18n import t
from config.languages import Language
from dispatch.calls import CALL_KIND, call_counts
from dispatch.escalation import close_visits
from dispatch.models import (
    HELP_KINDS,
    Alert,
    AlertKind,
    Answer,
    BlockReason,
    Campaign,
    CampaignKind,
    CampaignRecipient,
    CampaignStatus,
    ChannelBlock,
    OutboxMessage,
    OutboxStatus,
    Task,
    TaskStatus,
)
from registry.models import ACTIVE_ASSIGNMENT, BuddyAssignment, Channel, Person, Zone
from registry.spreadsheet import SafeWriter

_DELIVERY_RANK = case(
    (OutboxMessage.status == OutboxStatus.READ, 5),
    (OutboxMessage.status == OutboxStatus.DELIVERED, 4),
    (OutboxMessage.status == OutboxStatus.SENT, 3),
    (OutboxMessage.status == OutboxStatus.SENDING, 2),
    (OutboxMessage.status == OutboxStatus.QUEUED, 1),
    else_=0,
)
DELIVERY_NAMES = {5: "delivered", 4: "delivered", 3: "sent", 2: "queued", 1: "queued", 0: "failed"}
SMS_BOUNCES = ("invalid_number", "landline", "unsubscribed", "undeliverable")
# A number that is wrong is the registry's to fix; one whose holder replied STOP is not.
NUMBER_PROBLEMS = ("invalid_number", "landline", "undeliverable")
OPTED_OUT = BlockReason.UNSUBSCRIBED.value
UNUSABLE = "unusable"  # a number a municipal list gave that could not be used (phone_to_fix)

# Each recipient is in exactly one outcome and one delivery state.
OUTCOMES = ("ok", "help", "free_text", "visited", "waiting", "unreached")
DELIVERIES = ("delivered", "sent", "queued", "failed", "no_channel")
# risk_rank (lower: more at risk, see dispatch.campaigns.risk_rank) to the officer's priority.
PRIORITIES = ((20, "high"), (27, "medium"))


def priority_of(risk_rank: int) -> str:
    """``high``, ``medium`` or ``normal``: who to go to first, without saying why."""
    return next((name for limit, name in PRIORITIES if risk_rank <= limit), "normal")


@dataclass
class Counts:
    recipients: int = 0
    queued: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    no_channel: int = 0
    ok: int = 0
    help: int = 0
    free_text: int = 0
    no_answer: int = 0  # gave no answer: waiting, seen by a buddy, or not reached
    unreached: int = 0  # the ladder ran out (or the check-in closed) and nobody saw them
    visited: int = 0  # no answer, but a buddy went and reported them seen
    waiting: int = 0  # no answer yet, the ladder goes on

    def add(
        self, delivery: str | None, answer: Answer, count: int, *, visited: bool = False
    ) -> None:
        self.recipients += count
        if delivery is None:
            self.no_channel += count
        else:
            setattr(self, delivery, getattr(self, delivery) + count)
        outcome = outcome_of(answer, visited=visited)
        setattr(self, outcome, getattr(self, outcome) + count)
        if answer not in (Answer.OK, Answer.HELP, Answer.FREE_TEXT):
            self.no_answer += count

    def outcomes(self) -> dict[str, int]:
        """Outcome -> people; adds up to ``recipients``."""
        return {name: getattr(self, name) for name in OUTCOMES}

    def deliveries(self) -> dict[str, int]:
        """How far the message got -> people; adds up to ``recipients``."""
        return {name: getattr(self, name) for name in DELIVERIES}

    @property
    def accounted(self) -> int:
        """Answered, or seen by a buddy."""
        return self.ok + self.help + self.free_text + self.visited


def outcome_of(answer: Answer | str, *, visited: bool) -> str:
    """The one outcome (of :data:`OUTCOMES`) of a recipient's answer and visits."""
    answer = Answer(answer)
    if answer in (Answer.OK, Answer.HELP, Answer.FREE_TEXT):
        return answer.value
    if visited:
        return "visited"
    return "unreached" if answer == Answer.NO_ANSWER else "waiting"


@dataclass
class Status:
    campaign_id: int
    kind: str
    mode: str
    status: str
    started_at: str
    closed_at: str | None
    total: Counts
    zones: dict[str, Counts] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    # The ladder's steps, in seconds after the start: reminder, visit, unreached.
    ladder: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _delivery_per_person(session: Session, campaign_id: int) -> Any:
    return (
        select(
            OutboxMessage.person_id.label("person_id"),
            func.max(_DELIVERY_RANK).label("rank"),
        )
        .where(
            OutboxMessage.campaign_id == campaign_id,
            OutboxMessage.kind.in_(("checkin", "announcement")),
        )
        .group_by(OutboxMessage.person_id)
        .subquery()
    )


def _visited(campaign_id: int) -> Any:
    """Residents of the campaign a visitor reported seen (a visit task done)."""
    return (
        select(Task.resident_id.label("person_id"))
        .where(Task.campaign_id == campaign_id, Task.status == TaskStatus.DONE)
        .distinct()
        .subquery()
    )


def zone_names(session: Session, *, authority_id: int, language: Language | str) -> dict[str, str]:
    """Zone code -> the zone's name in ``language``, for one authority."""
    return {
        zone.code: zone.name_in(language)
        for zone in session.scalars(select(Zone).where(Zone.authority_id == authority_id))
    }


def live_status(session: Session, *, campaign: Campaign) -> Status:
    """Counts by delivery and outcome, overall and per zone, plus tasks and open alerts."""
    best = _delivery_per_person(session, campaign.id)
    seen = _visited(campaign.id)
    visited = seen.c.person_id.is_not(None)
    rows = session.execute(
        select(Zone.code, best.c.rank, CampaignRecipient.answer, visited, func.count())
        .select_from(CampaignRecipient)
        .outerjoin(best, best.c.person_id == CampaignRecipient.person_id)
        .outerjoin(seen, seen.c.person_id == CampaignRecipient.person_id)
        .outerjoin(Zone, Zone.id == CampaignRecipient.zone_id)
        .where(CampaignRecipient.campaign_id == campaign.id)
        .group_by(Zone.code, best.c.rank, CampaignRecipient.answer, visited)
    ).all()
    status = Status(
        campaign_id=campaign.id,
        kind=campaign.kind.value,
        mode=campaign.mode.value,
        status=campaign.status.value,
        started_at=campaign.started_at.isoformat(),
        closed_at=campaign.closed_at.isoformat() if campaign.closed_at else None,
        total=Counts(),
        ladder={
            "reminder": campaign.reminder_after,
            "visit": campaign.visit_after,
            "unreached": campaign.unreached_after,
        },
    )
    for zone, rank, answer, was_seen, count in sorted(
        rows, key=lambda r: (r[0] or "", r[1] if r[1] is not None else -1)
    ):
        delivery = DELIVERY_NAMES[rank] if rank is not None else None
        status.total.add(delivery, Answer(answer), count, visited=bool(was_seen))
        status.zones.setdefault(zone or "-", Counts()).add(
            delivery, Answer(answer), count, visited=bool(was_seen)
        )
    status.tasks = {
        str(s): n
        for s, n in session.execute(
            select(Task.status, func.count())
            .where(Task.campaign_id == campaign.id)
            .group_by(Task.status)
        )
    }
    status.alerts = {
        str(k): n
        for k, n in session.execute(
            select(Alert.kind, func.count())
            .where(Alert.campaign_id == campaign.id, Alert.resolved_at.is_(None))
            .group_by(Alert.kind)
        )
    }
    return status


@dataclass
class DrillReport:
    campaign_id: int
    mode: str
    recipients: int
    answered: int
    response_rate: float
    time_to_answer_seconds: dict[str, float | None]
    # Everyone not accounted for yet (see :func:`not_accounted_for`), most at risk first.
    unreached: list[dict[str, Any]]
    # Numbers the registry must fix (wrong, a landline, undeliverable, unusable on the list).
    bounced_numbers: list[dict[str, Any]]
    tasks: dict[str, int]
    status: dict[str, Any]
    # Every help answer of the campaign and what became of it (see :func:`help_outcomes`).
    help: list[dict[str, Any]] = field(default_factory=list)
    # People who replied STOP to SMS: their choice, not a number to fix.
    opted_out: list[dict[str, Any]] = field(default_factory=list)
    # "active" or "closed", and when (UTC, ISO 8601), so a reader never guesses.
    state: str = "active"
    started_at: str = ""
    closed_at: str | None = None
    # Phone calls per zone code and outcome (see :func:`dispatch.calls.call_counts`).
    calls: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def help_outcomes(session: Session, *, campaign_id: int | None) -> list[dict[str, Any]]:
    """Each help alert of a campaign (None: help asked outside any campaign), oldest first: who,
    where, its state (open, taken, done, failed: "could not help"), who took it (an officer or
    the volunteer who went) and when, when it was closed (seconds after it was raised, and the
    UTC times)."""
    from registry.staff import StaffMember

    rows = session.execute(
        select(Alert, Person.name, Zone.code)
        .join(Person, Person.id == Alert.person_id)
        .outerjoin(Zone, Zone.id == Person.zone_id)
        .where(Alert.campaign_id == campaign_id, Alert.kind.in_(HELP_KINDS))
        .order_by(Alert.created_at, Alert.id)
    ).all()
    outcomes = []
    for alert, name, zone in rows:
        owner, role = "", ""
        if alert.owner_staff_id is not None:
            member = session.get(StaffMember, alert.owner_staff_id)
            owner, role = (member.name if member else "?"), "officer"
        elif alert.owner_person_id is not None:
            person = session.get(Person, alert.owner_person_id)
            owner, role = ((person.name if person else None) or "?"), "volunteer"

        def after(at: datetime | None, raised: datetime = alert.created_at) -> float | None:
            return (at - raised).total_seconds() if at is not None else None

        outcomes.append(
            {
                "alert": alert.id,
                "kind": alert.kind.value,
                "resident": name or "?",
                "zone": zone,
                "need": alert.need.value if alert.need else None,
                "state": alert.state.value,
                "owner": owner or None,
                "owner_role": role or None,
                "raised_at": alert.created_at.isoformat(),
                "taken_at": alert.taken_at.isoformat() if alert.taken_at else None,
                "closed_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
                "taken_after_seconds": after(alert.taken_at),
                "closed_after_seconds": after(alert.resolved_at),
                "climbed": alert.climb,
            }
        )
    return outcomes


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def _next_step(
    campaign: Campaign,
    *,
    outcome: str,
    step: int,
    next_at: datetime | None,
    channel: Channel,
    visit: str | None,
    phone: str | None,
    address: str | None,
) -> tuple[str, datetime | None]:
    """What happens next for someone not accounted for, and when: the ladder's next step while
    it runs; once it has run out, what the officer can still do."""
    if outcome == "waiting" and campaign.status == CampaignStatus.ACTIVE:
        if visit in (TaskStatus.OFFERED.value, TaskStatus.ACCEPTED.value):
            return "wait_buddy", next_at
        if step == 0 and channel != Channel.NONE:
            return "reminder", next_at
        if step <= 1:
            return "visit", next_at
        return "unreached", next_at
    if visit in (TaskStatus.OFFERED.value, TaskStatus.ACCEPTED.value):
        return "wait_buddy", None
    if phone:
        return "call", None
    if address:
        return "visit_address", None
    return "find", None


def not_accounted_for(session: Session, *, campaign: Campaign) -> list[dict[str, Any]]:
    """Everyone who has neither answered nor been seen by a buddy, most at risk first: phone,
    address, buddy (the visitor sent, else the primary buddy), priority, what the ladder has
    done so far (``step``), the last message (``last_attempt``: when it was sent, or was due) and what comes
    next (``next_step``, ``next_at``). ``state`` is ``waiting`` while the ladder goes on,
    ``unreached`` once it ran out or the check-in was closed."""
    seen = _visited(campaign.id)
    rows = session.execute(
        select(CampaignRecipient, Person, Zone.code)
        .join(Person, Person.id == CampaignRecipient.person_id)
        .outerjoin(seen, seen.c.person_id == CampaignRecipient.person_id)
        .outerjoin(Zone, Zone.id == CampaignRecipient.zone_id)
        .where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.answer.in_((Answer.NO_ANSWER, Answer.PENDING)),
            seen.c.person_id.is_(None),
        )
        .order_by(CampaignRecipient.risk_rank, Zone.code, Person.id)
    ).all()
    ids = [recipient.person_id for recipient, _, _ in rows]
    visits: dict[int, tuple[str, int]] = {}  # the latest visit task: status, visitor
    buddies: dict[int, int] = {}  # resident -> primary buddy
    last: dict[int, tuple[datetime, str]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for resident_id, task_status, volunteer_id in session.execute(
            select(Task.resident_id, Task.status, Task.volunteer_id)
            .where(Task.campaign_id == campaign.id, Task.resident_id.in_(chunk))
            .order_by(Task.id)
        ):
            visits[resident_id] = (str(task_status), volunteer_id)
        for resident_id, volunteer_id in session.execute(
            select(BuddyAssignment.resident_id, BuddyAssignment.volunteer_id)
            .where(
                BuddyAssignment.resident_id.in_(chunk),
                BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
            )
            .order_by(BuddyAssignment.rank.desc())
        ):
            buddies[resident_id] = volunteer_id  # rank 1 is read last and wins
        for person_id, at, channel in session.execute(
            select(
                OutboxMessage.person_id,
                func.coalesce(OutboxMessage.sent_at, OutboxMessage.due_at),
                OutboxMessage.channel,
            )
            .where(
                OutboxMessage.campaign_id == campaign.id,
                OutboxMessage.person_id.in_(chunk),
                OutboxMessage.kind.in_(("checkin", "reminder")),
            )
            .order_by(OutboxMessage.id)
        ):
            if person_id is not None:
                last[person_id] = (at, str(channel))
    visitor_ids = {v for _, v in visits.values()} | set(buddies.values())
    visitors = {
        p.id: p
        for start in range(0, len(visitor_ids), 500)
        for p in session.scalars(
            select(Person).where(Person.id.in_(sorted(visitor_ids)[start : start + 500]))
        )
    }
    people = []
    for recipient, person, zone in rows:
        outcome = outcome_of(recipient.answer, visited=False)
        visit_status, visitor_id = visits.get(person.id, (None, None))
        buddy = visitors.get(visitor_id or buddies.get(person.id, -1))
        phone = person.phone
        ladder = recipient.step if outcome == "waiting" or recipient.step >= 3 else -1
        next_step, next_at = _next_step(
            campaign,
            outcome=outcome,
            step=recipient.step,
            next_at=recipient.next_step_at,
            channel=recipient.channel,
            visit=visit_status,
            phone=phone,
            address=person.address,
        )
        attempt = last.get(person.id)
        people.append(
            {
                "person_id": person.id,
                "name": person.name,
                "zone": zone,
                "address": person.address,
                "phone": phone,
                "buddy": buddy.name if buddy else None,
                "buddy_phone": buddy.phone if buddy else None,
                "priority": priority_of(recipient.risk_rank),
                "state": outcome,
                "channel": str(recipient.channel),
                # 0 message sent, 1 reminded, 2 buddy sent, 3 the whole ladder;
                # -1: the check-in was closed before the ladder ran out.
                "step": ladder,
                "visit": visit_status,
                "last_attempt": attempt[0].isoformat() if attempt else None,
                "last_channel": attempt[1] if attempt else None,
                "next_step": next_step,
                "next_at": next_at.isoformat() if next_at else None,
            }
        )
    return people


def number_problems(
    session: Session, *, campaign_id: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The recipients' numbers to fix in the registry, and, apart, those who opted out of SMS.

    A number to fix: SMS answered that it is not valid, a landline, or undeliverable, or the
    municipal list gave one that could not be used at all (``phone_to_fix``)."""
    fix: list[dict[str, Any]] = []
    opted: list[dict[str, Any]] = []
    for pid, name, zone, address, reason in session.execute(
        select(Person.id, Person.name, Zone.code, ChannelBlock.address, ChannelBlock.reason)
        .join(CampaignRecipient, CampaignRecipient.person_id == ChannelBlock.person_id)
        .join(Person, Person.id == ChannelBlock.person_id)
        .outerjoin(Zone, Zone.id == Person.zone_id)
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            ChannelBlock.channel == Channel.SMS,
            ChannelBlock.reason.in_(SMS_BOUNCES),
        )
        .order_by(Zone.code, Person.id)
    ):
        row = {
            "person_id": pid,
            "name": name,
            "zone": zone,
            "channel": Channel.SMS.value,
            "address": address,
            "reason": str(reason),
        }
        (opted if str(reason) == OPTED_OUT else fix).append(row)
    blocked = {row["person_id"] for row in fix}
    for pid, name, zone, value in session.execute(
        select(Person.id, Person.name, Zone.code, Person.phone_to_fix)
        .join(CampaignRecipient, CampaignRecipient.person_id == Person.id)
        .outerjoin(Zone, Zone.id == Person.zone_id)
        .where(CampaignRecipient.campaign_id == campaign_id, Person.phone_to_fix.is_not(None))
        .order_by(Zone.code, Person.id)
    ):
        if pid not in blocked:
            fix.append(
                {
                    "person_id": pid,
                    "name": name,
                    "zone": zone,
                    "channel": Channel.SMS.value,
                    "address": value,
                    "reason": UNUSABLE,
                }
            )
    return fix, opted


def drill_report(session: Session, *, campaign: Campaign) -> DrillReport:
    """Response rate, time to answer, who is not accounted for, the numbers to fix, and what
    became of every call for help."""
    status = live_status(session, campaign=campaign)
    answered_rows = session.execute(
        select(CampaignRecipient.answered_at).where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.answered_at.is_not(None),
        )
    ).scalars()
    seconds = sorted((at - campaign.started_at).total_seconds() for at in answered_rows if at)
    bounced, opted_out = number_problems(session, campaign_id=campaign.id)
    answered = status.total.ok + status.total.help + status.total.free_text
    total = status.total.recipients
    return DrillReport(
        campaign_id=campaign.id,
        mode=campaign.mode.value,
        recipients=total,
        answered=answered,
        response_rate=round(answered / total, 4) if total else 0.0,
        time_to_answer_seconds={
            "p50": percentile(seconds, 0.5),
            "p90": percentile(seconds, 0.9),
            "p99": percentile(seconds, 0.99),
        },
        unreached=not_accounted_for(session, campaign=campaign),
        bounced_numbers=bounced,
        tasks=status.tasks,
        status=status.as_dict(),
        help=help_outcomes(session, campaign_id=campaign.id),
        opted_out=opted_out,
        state=campaign.status.value,
        started_at=campaign.started_at.isoformat(),
        closed_at=campaign.closed_at.isoformat() if campaign.closed_at else None,
        calls=call_counts(session, campaign_id=campaign.id),
    )


def close_campaign(session: Session, *, campaign: Campaign, now: datetime) -> DrillReport:
    """Stop the ladder and cancel what is still queued; the silent go on the unreached list.

    Home visits end with it (:func:`dispatch.escalation.close_visits`), except an accepted
    visit to someone nobody has accounted for, and every visit for someone who asked for help.
    Help alerts are not the campaign's: they stay open, with their owner, and go on climbing."""
    if campaign.status == CampaignStatus.ACTIVE:
        campaign.status = CampaignStatus.CLOSED
        campaign.closed_at = now
        # Offered visits are withdrawn (their visitors told); a visit under way stays open.
        close_visits(session, campaign=campaign, now=now)
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.campaign_id == campaign.id,
                OutboxMessage.status == OutboxStatus.QUEUED,
                # A call waiting to be placed (or tried again) rings nobody after the close.
                OutboxMessage.kind.in_(("checkin", "reminder", "announcement", CALL_KIND)),
            )
            .values(status=OutboxStatus.CANCELLED)
            .execution_options(synchronize_session=False)
        )
        # Silent people a buddy went to and saw are accounted for: not on the unreached list.
        seen = _visited(campaign.id)
        pending = session.scalars(
            select(CampaignRecipient.person_id)
            .outerjoin(seen, seen.c.person_id == CampaignRecipient.person_id)
            .where(
                CampaignRecipient.campaign_id == campaign.id,
                CampaignRecipient.answer == Answer.PENDING,
                seen.c.person_id.is_(None),
            )
        ).all()
        session.execute(
            update(CampaignRecipient)
            .where(CampaignRecipient.campaign_id == campaign.id)
            .values(next_step_at=None)
            .execution_options(synchronize_session=False)
        )
        if campaign.kind == CampaignKind.CHECKIN and pending:
            for start in range(0, len(pending), 500):
                session.execute(
                    update(CampaignRecipient)
                    .where(
                        CampaignRecipient.campaign_id == campaign.id,
                        CampaignRecipient.person_id.in_(pending[start : start + 500]),
                    )
                    .values(answer=Answer.NO_ANSWER)
                    .execution_options(synchronize_session=False)
                )
            already = set(
                session.scalars(
                    select(Alert.person_id).where(
                        Alert.campaign_id == campaign.id, Alert.kind == AlertKind.UNREACHED
                    )
                )
            )
            session.add_all(
                Alert(
                    campaign_id=campaign.id, person_id=pid, kind=AlertKind.UNREACHED, created_at=now
                )
                for pid in pending
                if pid not in already
            )
    return drill_report(session, campaign=campaign)


CSV_FIELDS = (
    "person_id",
    "name",
    "zone",
    "channel",
    "delivery",
    "answer",
    "answered_at",
    "step",
    "needs_human",
    "task",
    "zone_name",
    "phone",
    "address",
    "buddy",
    "buddy_phone",
    "priority",
    "outcome",
)
BOM = "\ufeff"  # Excel reads a CSV as UTF-8 (Hebrew, Arabic, Amharic) only after one


def export_csv(
    session: Session,
    *,
    campaign: Campaign,
    language: Language | str | None = None,
    local: tzinfo | None = None,
    bom: bool = False,
) -> str:
    """One line per recipient: who, where, phone and address, the buddy, how far the message
    got, the answer and outcome, the visit.

    ``language``: headers and values in the officer's words, zone names in that language (None:
    stable codes, for programs). ``local``: times in that zone (else UTC). ``bom``: start with
    a byte-order mark, for a file Excel opens. Cells a spreadsheet would run as formulas are
    neutralised (:class:`registry.spreadsheet.SafeWriter`)."""
    best = _delivery_per_person(session, campaign.id)
    seen = _visited(campaign.id)
    tasks: dict[int, str] = defaultdict(str)
    for resident_id, task_status in session.execute(
        select(Task.resident_id, Task.status)
        .where(Task.campaign_id == campaign.id)
        .order_by(Task.id)
    ):
        tasks[resident_id] = str(task_status)
    names = zone_names(
        session, authority_id=campaign.authority_id, language=language or Language.EN
    )
    buddies: dict[int, Person] = {}
    Buddy = aliased(Person)
    for resident_id, buddy in session.execute(
        select(BuddyAssignment.resident_id, Buddy)
        .join(Buddy, Buddy.id == BuddyAssignment.volunteer_id)
        .join(CampaignRecipient, CampaignRecipient.person_id == BuddyAssignment.resident_id)
        .where(
            CampaignRecipient.campaign_id == campaign.id,
            BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
        )
        .order_by(BuddyAssignment.rank.desc())
    ):
        buddies[resident_id] = buddy  # rank 1 is read last and wins

    def word(table: str, code: str) -> str:
        return t(language, f"report.{table}.{code}") if language and code else code

    out = io.StringIO()
    if bom:
        out.write(BOM)
    writer = SafeWriter(out)
    writer.writerow([word("csv", name) for name in CSV_FIELDS])
    query = (
        select(
            CampaignRecipient,
            Person.name,
            Person.phone,
            Person.address,
            Zone.code,
            best.c.rank,
            seen.c.person_id.is_not(None),
        )
        .join(Person, Person.id == CampaignRecipient.person_id)
        .outerjoin(best, best.c.person_id == CampaignRecipient.person_id)
        .outerjoin(seen, seen.c.person_id == CampaignRecipient.person_id)
        .outerjoin(Zone, Zone.id == CampaignRecipient.zone_id)
        .where(CampaignRecipient.campaign_id == campaign.id)
        .order_by(CampaignRecipient.person_id)
    )
    for recipient, name, phone, address, zone, rank, was_seen in session.execute(query):
        pid = recipient.person_id
        answered_at = recipient.answered_at
        if answered_at is not None and local is not None:
            when = answered_at.astimezone(local).strftime("%Y-%m-%d %H:%M")
        else:
            when = answered_at.isoformat() if answered_at else ""
        visitor = buddies.get(pid)
        writer.writerow(
            [
                pid,
                name or "",
                zone or "",
                word("channel", str(recipient.channel)),
                word("delivery", DELIVERY_NAMES[rank] if rank is not None else "no_channel"),
                word("answer", str(recipient.answer)),
                when,
                recipient.step,
                (t(language, "report.csv.yes") if language else "yes")
                if recipient.needs_human
                else "",
                word("task", tasks.get(pid, "")),
                names.get(zone or "", ""),
                phone or "",
                address or "",
                (visitor.name or "") if visitor else "",
                (visitor.phone or "") if visitor else "",
                word("priority", priority_of(recipient.risk_rank)),
                word("outcome", outcome_of(recipient.answer, visited=bool(was_seen))),
            ]
        )
    return out.getvalue()


def task_counts(tasks: dict[str, int]) -> str:
    order = [s.value for s in TaskStatus]
    counter = Counter(tasks)
    return ", ".join(f"{name} {counter[name]}" for name in order if counter[name])
