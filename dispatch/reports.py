"""What an officer sees: a campaign's live status, the drill report at close, and a CSV export.

Delivery per recipient is the furthest any of the campaign's messages to that person got
(answered > delivered > sent > in the queue > failed), so a Telegram failure followed by a
delivered SMS counts once, as delivered.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from dispatch.calls import call_counts
from dispatch.models import (
    HELP_KINDS,
    Alert,
    AlertKind,
    Answer,
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    ChannelBlock,
    OutboxMessage,
    OutboxStatus,
    Task,
    TaskStatus,
)
from registry.models import Channel, Person, Zone
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
    no_answer: int = 0  # still silent (pending) or on the unreached list
    unreached: int = 0

    def add(self, delivery: str | None, answer: Answer, count: int) -> None:
        self.recipients += count
        if delivery is None:
            self.no_channel += count
        else:
            setattr(self, delivery, getattr(self, delivery) + count)
        if answer == Answer.OK:
            self.ok += count
        elif answer == Answer.HELP:
            self.help += count
        elif answer == Answer.FREE_TEXT:
            self.free_text += count
        else:
            self.no_answer += count
            if answer == Answer.NO_ANSWER:
                self.unreached += count


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


def live_status(session: Session, *, campaign: Campaign) -> Status:
    """Counts by delivery and answer, overall and per zone, plus tasks and open alerts."""
    best = _delivery_per_person(session, campaign.id)
    rows = session.execute(
        select(Zone.code, best.c.rank, CampaignRecipient.answer, func.count())
        .select_from(CampaignRecipient)
        .outerjoin(best, best.c.person_id == CampaignRecipient.person_id)
        .outerjoin(Zone, Zone.id == CampaignRecipient.zone_id)
        .where(CampaignRecipient.campaign_id == campaign.id)
        .group_by(Zone.code, best.c.rank, CampaignRecipient.answer)
    ).all()
    status = Status(
        campaign_id=campaign.id,
        kind=campaign.kind.value,
        mode=campaign.mode.value,
        status=campaign.status.value,
        started_at=campaign.started_at.isoformat(),
        closed_at=campaign.closed_at.isoformat() if campaign.closed_at else None,
        total=Counts(),
    )
    for zone, rank, answer, count in sorted(rows, key=lambda r: (r[0] or "", r[1] or -1)):
        delivery = DELIVERY_NAMES[rank] if rank is not None else None
        status.total.add(delivery, Answer(answer), count)
        status.zones.setdefault(zone or "-", Counts()).add(delivery, Answer(answer), count)
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
    unreached: list[dict[str, Any]]
    bounced_numbers: list[dict[str, Any]]
    tasks: dict[str, int]
    status: dict[str, Any]
    # Every help answer of the campaign and what became of it (see :func:`help_outcomes`).
    help: list[dict[str, Any]] = field(default_factory=list)
    # Phone calls per zone and outcome (see :func:`dispatch.calls.call_counts`).
    calls: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def help_outcomes(session: Session, *, campaign_id: int | None) -> list[dict[str, Any]]:
    """Each help alert of a campaign (None: help asked outside any campaign), oldest first: who,
    its state, who took it and when, when it was closed (seconds after it was raised)."""
    from registry.staff import StaffMember

    rows = session.execute(
        select(Alert, Person.name)
        .join(Person, Person.id == Alert.person_id)
        .where(Alert.campaign_id == campaign_id, Alert.kind.in_(HELP_KINDS))
        .order_by(Alert.created_at, Alert.id)
    ).all()
    outcomes = []
    for alert, name in rows:
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
                "state": alert.state.value,
                "owner": owner or None,
                "owner_role": role or None,
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


def drill_report(session: Session, *, campaign: Campaign) -> DrillReport:
    """Response rate, time to answer, who was not reached, and the numbers to fix."""
    status = live_status(session, campaign=campaign)
    answered_rows = session.execute(
        select(CampaignRecipient.answered_at).where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.answered_at.is_not(None),
        )
    ).scalars()
    seconds = sorted((at - campaign.started_at).total_seconds() for at in answered_rows if at)
    unreached = [
        {"person_id": pid, "name": name, "zone": zone, "address": address, "phone": phone}
        for pid, name, zone, address, phone in session.execute(
            select(Person.id, Person.name, Zone.code, Person.address, Person.phone)
            .join(CampaignRecipient, CampaignRecipient.person_id == Person.id)
            .outerjoin(Zone, Zone.id == Person.zone_id)
            .where(
                CampaignRecipient.campaign_id == campaign.id,
                CampaignRecipient.answer.in_((Answer.NO_ANSWER, Answer.PENDING)),
            )
            .order_by(Zone.code, Person.id)
        )
    ]
    bounced = [
        {"person_id": pid, "channel": str(channel), "address": address, "reason": str(reason)}
        for pid, channel, address, reason in session.execute(
            select(
                ChannelBlock.person_id,
                ChannelBlock.channel,
                ChannelBlock.address,
                ChannelBlock.reason,
            )
            .join(CampaignRecipient, CampaignRecipient.person_id == ChannelBlock.person_id)
            .where(
                CampaignRecipient.campaign_id == campaign.id,
                ChannelBlock.channel == Channel.SMS,
                ChannelBlock.reason.in_(SMS_BOUNCES),
            )
            .order_by(ChannelBlock.person_id)
        )
    ]
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
        unreached=unreached,
        bounced_numbers=bounced,
        tasks=status.tasks,
        status=status.as_dict(),
        help=help_outcomes(session, campaign_id=campaign.id),
        calls=call_counts(session, campaign_id=campaign.id),
    )


def close_campaign(session: Session, *, campaign: Campaign, now: datetime) -> DrillReport:
    """Stop the ladder and cancel what is still queued; the silent go on the unreached list."""
    if campaign.status == CampaignStatus.ACTIVE:
        campaign.status = CampaignStatus.CLOSED
        campaign.closed_at = now
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.campaign_id == campaign.id,
                OutboxMessage.status == OutboxStatus.QUEUED,
                OutboxMessage.kind.in_(("checkin", "reminder", "announcement")),
            )
            .values(status=OutboxStatus.CANCELLED)
            .execution_options(synchronize_session=False)
        )
        pending = session.scalars(
            select(CampaignRecipient.person_id).where(
                CampaignRecipient.campaign_id == campaign.id,
                CampaignRecipient.answer == Answer.PENDING,
            )
        ).all()
        session.execute(
            update(CampaignRecipient)
            .where(CampaignRecipient.campaign_id == campaign.id)
            .values(next_step_at=None)
            .execution_options(synchronize_session=False)
        )
        if campaign.kind.value == "checkin" and pending:
            session.execute(
                update(CampaignRecipient)
                .where(
                    CampaignRecipient.campaign_id == campaign.id,
                    CampaignRecipient.answer == Answer.PENDING,
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
)


def export_csv(session: Session, *, campaign: Campaign) -> str:
    """One line per recipient: who, where, how far the message got, the answer, the visit."""
    best = _delivery_per_person(session, campaign.id)
    tasks: dict[int, str] = defaultdict(str)
    for resident_id, task_status in session.execute(
        select(Task.resident_id, Task.status)
        .where(Task.campaign_id == campaign.id)
        .order_by(Task.id)
    ):
        tasks[resident_id] = str(task_status)
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.writerow(CSV_FIELDS)
    query = (
        select(
            CampaignRecipient.person_id,
            Person.name,
            Zone.code,
            CampaignRecipient.channel,
            best.c.rank,
            CampaignRecipient.answer,
            CampaignRecipient.answered_at,
            CampaignRecipient.step,
            CampaignRecipient.needs_human,
        )
        .join(Person, Person.id == CampaignRecipient.person_id)
        .outerjoin(best, best.c.person_id == CampaignRecipient.person_id)
        .outerjoin(Zone, Zone.id == CampaignRecipient.zone_id)
        .where(CampaignRecipient.campaign_id == campaign.id)
        .order_by(CampaignRecipient.person_id)
    )
    for pid, name, zone, channel, rank, answer, answered_at, step, needs_human in session.execute(
        query
    ):
        writer.writerow(
            [
                pid,
                name or "",
                zone or "",
                str(channel),
                DELIVERY_NAMES[rank] if rank is not None else "no_channel",
                str(answer),
                answered_at.isoformat() if answered_at else "",
                step,
                "yes" if needs_human else "",
                tasks.get(pid, ""),
            ]
        )
    return out.getvalue()


def task_counts(tasks: dict[str, int]) -> str:
    order = [s.value for s in TaskStatus]
    counter = Counter(tasks)
    return ", ".join(f"{name} {counter[name]}" for name in order if counter[name])
