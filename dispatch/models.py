"""The dispatcher's tables: the outbox every outbound message passes through, and the inbox that
stores every inbound update before it is acted on.

This is the contract shared by bots/ (conversation replies) and the campaign workers: one
outbound path, one audit trail, one set of rate limits.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

import registry.staff  # noqa: F401  (the staff table a help alert's owner refers to)
from registry.db import Base, JSONType, UTCDateTime, utcnow
from registry.models import Channel, enum_type


class Priority(IntEnum):
    """Lower goes first. Interactive replies are never starved by a large campaign."""

    INTERACTIVE = 0
    EMERGENCY = 1
    DRILL = 2
    ROUTINE = 3


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # claimed by a worker under a lease
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"  # the provider confirmed delivery (Twilio status callback)
    READ = "read"  # answered / read
    FAILED = "failed"  # permanently failed on this channel (a fallback row may follow)
    CANCELLED = "cancelled"


class OutboxMessage(Base):
    """One message to one person on one channel. Workers claim due rows under a lease."""

    __tablename__ = "outbox"
    __table_args__ = (
        # Exactly the claim's filter and order, so a claim reads the first rows of the index
        # instead of sorting every queued row of a large campaign.
        Index("ix_outbox_due", "status", "channel", "priority", "risk_rank", "due_at", "id"),
        Index("ix_outbox_person", "person_id"),
        Index("ix_outbox_provider_id", "provider_id"),
        # A campaign's messages, and the latest one to each person of a page of the lists.
        Index("ix_outbox_campaign_person", "campaign_id", "person_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    channel: Mapped[Channel] = mapped_column(enum_type(Channel))
    # Telegram chat id or E.164 phone, copied at enqueue time so a worker needs no join.
    address: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
    # Choices as [[{"text": ..., "data": ...}, ...], ...] rows; Telegram renders inline buttons.
    buttons: Mapped[list[list[dict[str, str]]] | None] = mapped_column(JSONType)
    priority: Mapped[int] = mapped_column(SmallInteger, default=Priority.ROUTINE)
    # Within one priority, lower goes first: a campaign sets it from the person's needs at
    # enqueue time so the most at-risk residents are messaged first.
    risk_rank: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    kind: Mapped[str] = mapped_column(
        String(24), default="reply"
    )  # reply | checkin | task | announcement ...
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[OutboxStatus] = mapped_column(
        enum_type(OutboxStatus), default=OutboxStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(64))
    provider_id: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


_WAITING = "processed_at IS NULL AND parked_at IS NULL"


class InboundMessage(Base):
    """Every inbound Telegram update or SMS, stored before it is acted on.

    ``provider_key`` is ``tg:<update_id>`` or ``sms:<MessageSid>``: a redelivered webhook hits the
    unique key and is acknowledged without being stored or processed again. The webhook answers
    as soon as the row is committed; ``bots.processor`` then claims unprocessed rows under a lease
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), one sender's rows in the order they came.

    A row is waiting while ``processed_at`` and ``parked_at`` are both empty; ``lease_until`` is
    when a claim (or, after a failure, the back-off) runs out. ``sender`` is a digest of channel
    and address, so one person's messages are kept in order without another copy of their phone;
    rows that are not messages from a person have none and are not the processor's: Twilio
    receipts (``smsstatus:``, waiting for their message's sid while unprocessed) and the claims of
    calls' callbacks (``voice:``), which make a repeated callback act once
    (:mod:`dispatch.callbacks`). ``parked_at``: processing failed ``attempts`` times; left for a human.
    """

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("provider_key"),
        # The processor's claim reads only the rows still waiting: the oldest, then their
        # senders' earlier ones. Processed rows, kept for the record, are in neither index.
        Index(
            "ix_inbox_waiting",
            "id",
            sqlite_where=text(f"{_WAITING} AND sender IS NOT NULL"),
            postgresql_where=text(f"{_WAITING} AND sender IS NOT NULL"),
        ),
        Index(
            "ix_inbox_sender_waiting",
            "sender",
            "id",
            sqlite_where=text(_WAITING),
            postgresql_where=text(_WAITING),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    provider_key: Mapped[str] = mapped_column(String(80))
    channel: Mapped[Channel] = mapped_column(enum_type(Channel))
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("person.id", ondelete="SET NULL"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    error: Mapped[str | None] = mapped_column(String(200))
    sender: Mapped[str | None] = mapped_column(String(32), index=True)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(64))
    parked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChannelGate(Base):
    """One row per channel: the shared send-rate reservation, the provider-imposed pause, and
    the circuit breaker.

    Every worker reserves its send slots here (``next_slot_at`` moves forward by one slot per
    message), so the configured rate holds across all workers together; a ``RetryAfter`` or a
    429 sets ``paused_until`` and every worker stops claiming for that channel until then.
    ``failures`` counts transient failures since the channel last answered (from
    ``failing_since``); too many for too long and the channel is down (``down_since``): only
    one probe send goes out at a time (at ``probe_at``), until one is answered.
    """

    __tablename__ = "channel_gate"

    channel: Mapped[Channel] = mapped_column(enum_type(Channel), primary_key=True)
    next_slot_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pauses: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    down_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChatGate(Base):
    """The earliest time the next message may go to one chat (Telegram: 1 a second per chat)."""

    __tablename__ = "chat_gate"

    channel: Mapped[Channel] = mapped_column(enum_type(Channel), primary_key=True)
    address: Mapped[str] = mapped_column(String(40), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class BlockReason(StrEnum):
    BLOCKED = "blocked"  # the user blocked the bot or deactivated the account
    CHAT_NOT_FOUND = "chat_not_found"
    UNSUBSCRIBED = "unsubscribed"  # Twilio 21610: the number replied STOP
    INVALID_NUMBER = "invalid_number"  # Twilio 21211
    LANDLINE = "landline"  # Twilio 21614: not a mobile number
    UNDELIVERABLE = "undeliverable"  # the carrier reported the number unreachable


class ChannelBlock(Base):
    """A channel that must not be used for one person any more, and why.

    Written when a provider answers with a permanent error; the worker skips straight to the
    next channel for that person, and the drill report lists the numbers that bounced.
    """

    __tablename__ = "channel_block"

    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[Channel] = mapped_column(enum_type(Channel), primary_key=True)
    reason: Mapped[BlockReason] = mapped_column(enum_type(BlockReason))
    address: Mapped[str] = mapped_column(String(40))
    blocked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProcessLease(Base):
    """A named lock held by one process under a lease it renews (a heartbeat).

    Used where only one process may act: the single SQLite worker and the one active scheduler
    when the database has no advisory locks. A holder that dies simply stops renewing.
    """

    __tablename__ = "process_lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(80))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignKind(StrEnum):
    CHECKIN = "checkin"  # "are you OK?" with answers and an escalation ladder
    TASKS = "tasks"  # task assignment: buddies get their home-visit tasks
    ANNOUNCEMENT = "announcement"  # one-way message


class CampaignMode(StrEnum):
    DRILL = "drill"
    EMERGENCY = "emergency"


class CampaignStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class Campaign(Base):
    """One check-in, task assignment or announcement, started by an officer or the scheduler."""

    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authority.id"), index=True)
    kind: Mapped[CampaignKind] = mapped_column(enum_type(CampaignKind))
    mode: Mapped[CampaignMode] = mapped_column(enum_type(CampaignMode))
    status: Mapped[CampaignStatus] = mapped_column(
        enum_type(CampaignStatus), default=CampaignStatus.ACTIVE
    )
    # What the officer asked for (zones, needs, roles, groups ...), kept for the report.
    audience: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # An announcement's own words (the officer's); check-ins use the catalog templates.
    text: Mapped[str | None] = mapped_column(Text)
    started_by: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The escalation ladder, in seconds after the start: reminder, buddy's visit, unreached.
    reminder_after: Mapped[int] = mapped_column(Integer, default=15 * 60)
    visit_after: Mapped[int] = mapped_column(Integer, default=45 * 60)
    unreached_after: Mapped[int] = mapped_column(Integer, default=120 * 60)
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    # Phone calls in the ladder (the authority's, when the campaign started): see dispatch.calls.
    calls: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    call_retry_after: Mapped[int] = mapped_column(Integer, default=10 * 60, server_default="600")
    call_retries: Mapped[int] = mapped_column(SmallInteger, default=2, server_default="2")


class Answer(StrEnum):
    PENDING = "pending"
    OK = "ok"
    HELP = "help"
    FREE_TEXT = "free_text"  # an answer a person must read
    NO_ANSWER = "no_answer"  # the ladder ran out: on the officer's unreached list


class CampaignRecipient(Base):
    """One person in one campaign: the answer, and the escalation timer (``next_step_at``)."""

    __tablename__ = "campaign_recipient"
    __table_args__ = (
        UniqueConstraint("campaign_id", "person_id"),
        Index("ix_campaign_recipient_timer", "next_step_at"),
        Index("ix_campaign_recipient_person", "person_id"),
        # The console's board (counts by zone and answer, the answers curve) and its lists
        # (one answer, a zone, most at risk first) read this index without the table.
        Index(
            "ix_campaign_recipient_board",
            "campaign_id",
            "answer",
            "zone_id",
            "risk_rank",
            "person_id",
            "answered_at",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    zone_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[Channel] = mapped_column(enum_type(Channel))  # the first channel tried
    risk_rank: Mapped[int] = mapped_column(SmallInteger, default=0)
    answer: Mapped[Answer] = mapped_column(enum_type(Answer), default=Answer.PENDING)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answer_text: Mapped[str | None] = mapped_column(String(500))  # free text, for a human
    needs_human: Mapped[bool] = mapped_column(Boolean, default=False)
    # 0 nothing yet, 1 reminded, 2 buddy sent, 3 on the unreached list.
    step: Mapped[int] = mapped_column(SmallInteger, default=0)
    next_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TaskStatus(StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DONE = "done"
    NOT_REACHED = "not_reached"  # the volunteer went and could not reach the person
    CANCELLED = "cancelled"


class TaskReason(StrEnum):
    HELP = "help"  # the resident asked for help
    NO_ANSWER = "no_answer"  # silence after the reminder
    NO_CHANNEL = "no_channel"  # no channel reaches the resident (landline, blocked)
    ASSIGNED = "assigned"  # a task-assignment campaign


class Task(Base):
    """A home visit: "please check on <name> at <address>", for a buddy or a group coordinator."""

    __tablename__ = "visit_task"
    __table_args__ = (
        Index("ix_visit_task_volunteer_status", "volunteer_id", "status"),
        Index("ix_visit_task_resident", "resident_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign.id", ondelete="SET NULL"), index=True
    )
    resident_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    # Who gets the task: the buddy, or the coordinator of a youth group for its members.
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("community_group.id", ondelete="SET NULL")
    )
    reason: Mapped[TaskReason] = mapped_column(enum_type(TaskReason))
    status: Mapped[TaskStatus] = mapped_column(enum_type(TaskStatus), default=TaskStatus.OFFERED)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AlertKind(StrEnum):
    HELP = "help"  # a resident answered a check-in "I need help"
    HELP_REQUEST = "help_request"  # a resident asked for help outside any check-in
    UNREACHED = "unreached"  # the ladder ran out
    FREE_TEXT = "free_text"  # an answer a person must read
    NO_BUDDY = "no_buddy"  # a visit was needed and nobody could be given the task
    NOT_REACHED = "not_reached"  # the volunteer went and could not reach the resident


# A resident's call for help (the resident hears who is on the way when it is taken).
HELP_KINDS = (AlertKind.HELP, AlertKind.HELP_REQUEST)
# Alerts that are pushed to the officers on duty, owned, and climb while nobody takes them: help,
# and a resident nobody can be sent to or the visitor could not reach.
OWNED_KINDS = (*HELP_KINDS, AlertKind.NO_BUDDY, AlertKind.NOT_REACHED)


class AlertState(StrEnum):
    OPEN = "open"  # nobody has taken it yet (a help alert climbs while it stays open)
    TAKEN = "taken"  # an officer took it, or the volunteer sent to the resident accepted
    DONE = "done"
    FAILED = "failed"  # "could not help": the officer closed it without helping


class HelpNeed(StrEnum):
    """What a resident asking for help needs (a help request's kind)."""

    MEDICINE = "medicine"
    FOOD = "food"
    TRANSPORT = "transport"
    POWER = "power"  # electricity for a medical device
    CHECK_ON_ME = "check_on_me"
    OTHER = "other"


class Alert(Base):
    """Something an officer must look at now: the officer's list in ``hosen campaign status``.

    An alert of ``OWNED_KINDS`` (help, no buddy, could not reach) is owned: it is pushed to the
    officers on duty, ``state`` says whether somebody has it, ``owner_staff_id`` (an officer) or ``owner_person_id`` (the
    volunteer who accepted the visit) who, and ``due_at`` is its climbing timer: when it passes
    with the alert still open, the sweep sends it to the next officer (``climb`` counts the
    rungs already pushed), and then to all of them.
    """

    __tablename__ = "officer_alert"
    __table_args__ = (Index("ix_officer_alert_due", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    kind: Mapped[AlertKind] = mapped_column(enum_type(AlertKind))
    task_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[AlertState] = mapped_column(
        enum_type(AlertState), default=AlertState.OPEN, server_default=AlertState.OPEN.value
    )
    owner_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    owner_person_id: Mapped[int | None] = mapped_column(
        ForeignKey("person.id", ondelete="SET NULL")
    )
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    climb: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    need: Mapped[HelpNeed | None] = mapped_column(enum_type(HelpNeed))
    # The resident's own words with a help answer or request: for the officer on Telegram or the
    # console, never in an SMS (it may be health data).
    detail: Mapped[str | None] = mapped_column(String(500))
    # A help alert's resident answered a check-in "I'm OK" after asking for help: shown to the
    # officers, who decide (the alert stays open, with its owner and its climb).
    later_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DrillSchedule(Base):
    """A drill that starts on a schedule (a crontab line in the municipality's time zone).

    ``pending_since`` is set when the time came inside the authority's quiet hours: the sweep
    starts the drill once they end, so a restart in between loses nothing.
    """

    __tablename__ = "drill_schedule"

    id: Mapped[int] = mapped_column(primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authority.id"), index=True)
    cron: Mapped[str] = mapped_column(String(80))
    audience: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_campaign_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CallOutcome(StrEnum):
    """How one phone call ended, as the drill report counts it."""

    PENDING = "pending"  # placed, not ended yet
    WELL = "well"  # answered, pressed 1
    HELP = "help"  # answered, pressed 2
    NO_KEY = "no_key"  # someone picked up and pressed nothing (not silence: somebody is there)
    MACHINE = "machine"  # an answering machine or a fax
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"  # the call could not be placed or connected
    # answered while Hosen's database was away: told "we will call again", and called again
    UNSERVED = "unserved"


# Outcomes after which the same call is tried again (``Campaign.call_retries`` times).
RETRIED_OUTCOMES = (
    CallOutcome.MACHINE,
    CallOutcome.BUSY,
    CallOutcome.NO_ANSWER,
    CallOutcome.UNSERVED,
)


class VoiceCall(Base):
    """One phone call, outbound (an outbox row of channel VOICE, once Twilio took it) or inbound
    (someone called the Hosen number).

    ``ended_at`` empty: the call is in progress (the concurrent-calls cap counts these).
    ``prompts`` is how many times the question was asked (the Gather is said twice).
    """

    __tablename__ = "voice_call"
    __table_args__ = (
        Index("ux_voice_call_sid", "call_sid", unique=True),  # one row a call
        Index("ux_voice_call_outbox", "outbox_id", unique=True),
        Index("ix_voice_call_open", "ended_at"),
        Index("ix_voice_call_campaign", "campaign_id", "person_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    outbox_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    call_sid: Mapped[str | None] = mapped_column(String(64))
    inbound: Mapped[bool] = mapped_column(Boolean, default=False)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    zone_id: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(SmallInteger, default=1)
    status: Mapped[str] = mapped_column(String(24), default="queued")  # Twilio's CallStatus
    answered_by: Mapped[str | None] = mapped_column(String(24))
    outcome: Mapped[CallOutcome] = mapped_column(
        enum_type(CallOutcome), default=CallOutcome.PENDING
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
