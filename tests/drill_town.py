"""A drill as the demo plays it, on the database and the injected clock, for the report tests.

A synthetic town (``fakes.town``) with its buddies assigned, a drill check-in to every
resident who may need help, the messages delivered (one number invalid, one holder who replied
STOP), answers by button and in free words, and the ladder run by its own sweep at the
reminder, the visit and the unreached times, with buddies who accept their visits and report
them done. Every step goes through the dispatcher's own functions, as the worker and the bot
would call them; the test reads the report at any point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.profile import Profile
from dispatch.campaigns import Audience, start_drill_checkin
from dispatch.escalation import run_escalations
from dispatch.models import (
    BlockReason,
    Campaign,
    CampaignRecipient,
    ChannelBlock,
    OutboxMessage,
    OutboxStatus,
    Task,
    TaskReason,
    TaskStatus,
)
from dispatch.responses import take_campaign_reply
from fakes.town import generate_town, load_town
from registry.assignment.store import assign_authority
from registry.models import Authority, Channel, Person
from registry.profile_sync import Directory


@dataclass
class DrillTown:
    sessions: sessionmaker[Session]
    campaign_id: int
    started: datetime
    recipients: list[int]
    invalid_number: int = 0
    opted_out: int = 0
    ok: set[int] = field(default_factory=set)
    help: set[int] = field(default_factory=set)
    free_text: set[int] = field(default_factory=set)
    visited: set[int] = field(default_factory=set)  # silent residents a buddy reported seen

    def at(self, minutes: float) -> datetime:
        return self.started + timedelta(minutes=minutes)

    def campaign(self, session: Session) -> Campaign:
        return session.get_one(Campaign, self.campaign_id)


def build_town(
    sessions: sessionmaker[Session],
    *,
    profile: Profile,
    directory: Directory,
    authority: Authority,
    started: datetime,
    size: int = 400,
) -> DrillTown:
    """The town, its buddies, and a drill check-in started at ``started``, every message out."""
    with sessions() as session:
        town = generate_town(profile, size=size, seed=7, authorities=[authority.code])
        load_town(session, town, directory, now=started)
        session.commit()
        fresh = session.get_one(Authority, authority.id)
        assign_authority(session, authority=fresh, profile=profile, actor="test", now=started)
        campaign = start_drill_checkin(
            session,
            authority=fresh,
            audience=Audience(residents_only=True),
            started_by="test",
            now=started,
        )
        session.commit()
        drill = DrillTown(
            sessions=sessions,
            campaign_id=campaign.id,
            started=started,
            recipients=list(
                session.scalars(
                    select(CampaignRecipient.person_id)
                    .where(CampaignRecipient.campaign_id == campaign.id)
                    .order_by(CampaignRecipient.person_id)
                )
            ),
        )
        # The worker's part: everything delivered, but one wrong number and one STOP.
        messages = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.campaign_id == campaign.id)
            .order_by(OutboxMessage.person_id)
        ).all()
        by_sms = [m for m in messages if m.channel == Channel.SMS]
        assert len(by_sms) >= 2, "the town needs residents reached by SMS"
        for message in messages:
            message.status = OutboxStatus.DELIVERED
        for message, reason in zip(
            by_sms[:2], (BlockReason.INVALID_NUMBER, BlockReason.UNSUBSCRIBED), strict=True
        ):
            message.status = OutboxStatus.FAILED
            assert message.person_id is not None
            session.add(
                ChannelBlock(
                    person_id=message.person_id,
                    channel=Channel.SMS,
                    reason=reason,
                    address=message.address,
                    blocked_at=started,
                )
            )
        drill.invalid_number = by_sms[0].person_id or 0
        drill.opted_out = by_sms[1].person_id or 0
        session.commit()
    return drill


def answer(drill: DrillTown, *, minutes: float) -> None:
    """Half answer "I'm OK" by button, two "I need help", one writes free words."""
    with drill.sessions() as session:
        reachable = [
            pid
            for pid, channel in session.execute(
                select(CampaignRecipient.person_id, CampaignRecipient.channel)
                .where(CampaignRecipient.campaign_id == drill.campaign_id)
                .order_by(CampaignRecipient.person_id)
            )
            if channel == Channel.TELEGRAM
        ]
        plan = [("help", p) for p in reachable[:2]] + [("text", reachable[2])]
        plan += [("ok", p) for p in reachable[3 : 3 + len(drill.recipients) // 2]]
        for what, pid in plan:
            person = session.get_one(Person, pid)
            if what == "text":
                took = take_campaign_reply(
                    session,
                    person=person,
                    channel=Channel.TELEGRAM,
                    text="I am at my daughter's in Haifa",
                    now=drill.at(minutes),
                )
                drill.free_text.add(pid)
            else:
                took = take_campaign_reply(
                    session,
                    person=person,
                    channel=Channel.TELEGRAM,
                    callback_data=f"c:{drill.campaign_id}:{what}",
                    now=drill.at(minutes),
                )
                (drill.help if what == "help" else drill.ok).add(pid)
            assert took
        session.commit()


def sweep(drill: DrillTown, *, minutes: float) -> None:
    with drill.sessions() as session:
        while run_escalations(session, now=drill.at(minutes)):
            pass
        session.commit()


def visit(drill: DrillTown, *, minutes: float, share: int = 2) -> None:
    """Every ``share``-th visitor with a visit accepts it and reports it done; every help visit
    is accepted and done."""
    with drill.sessions() as session:
        tasks = session.scalars(
            select(Task)
            .where(Task.campaign_id == drill.campaign_id, Task.status == TaskStatus.OFFERED)
            .order_by(Task.id)
        ).all()
        chosen = [
            task for n, task in enumerate(tasks) if task.reason == TaskReason.HELP or n % share == 0
        ]
        for task in chosen:
            visitor = session.get_one(Person, task.volunteer_id)
            channel = Channel.TELEGRAM if visitor.telegram_chat_id else Channel.SMS
            for action in ("accept", "done"):
                assert take_campaign_reply(
                    session,
                    person=visitor,
                    channel=channel,
                    callback_data=f"t:{task.id}:{action}",
                    now=drill.at(minutes),
                )
            if task.reason != TaskReason.HELP:
                drill.visited.add(task.resident_id)
        session.commit()
