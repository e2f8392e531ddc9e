"""Campaigns: a check-in ("are you OK?"), a task assignment or an announcement to many people.

Starting one resolves its audience ONCE into one ``campaign_recipient`` row and one outbox row
per person, written with core bulk inserts in the caller's transaction together with the
campaign row: either the whole campaign is queued, or nothing is. Texts come from the
``[dispatch]`` tables of the message catalogs in the person's language, with only the person's
own first name filled in — never a word about their needs. A drill's every message starts with
the drill marker of its language; an emergency's never does.

Within a campaign the most at-risk residents are messaged first: ``risk_rank`` (lower first) is
computed here from the needs flags and copied onto each outbox row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from dispatch.models import (
    Campaign,
    CampaignKind,
    CampaignMode,
    CampaignRecipient,
    ChannelBlock,
    OutboxMessage,
    OutboxStatus,
    Priority,
)
from registry.models import (
    ACTIVE_ASSIGNMENT,
    NEED_FLAGS,
    Authority,
    Channel,
    GroupMember,
    Person,
    PersonStatus,
    PhoneKind,
    ResidentNeeds,
    RoleAssignment,
    Zone,
)

Buttons = list[list[dict[str, str]]]

# How much each need moves a resident up the queue. Only the sum is kept (as ``risk_rank``).
RISK_WEIGHTS: dict[str, int] = {
    "powered_medical_equipment": 5,
    "bedridden": 5,
    "mobility": 3,
    "cognitive": 3,
    "lives_alone": 2,
    "no_shelter_access": 2,
    "sight": 1,
    "hearing": 1,
    "regular_medication": 1,
    "young_children": 1,
}
LOWEST_RISK = 30
MESSAGE_KINDS = ("checkin", "reminder", "announcement", "task", "task_list")


class CampaignError(Exception):
    """The campaign cannot be started or changed as asked; ``str()`` says why."""


@dataclass(frozen=True)
class Audience:
    """Who a campaign is for. Every given dimension narrows it (zones AND needs AND ...);
    within one dimension any value matches. Nothing given: everyone in the authority."""

    zones: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()
    residents_only: bool = False  # people registered as possibly needing help
    volunteers_only: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "zones": list(self.zones),
            "needs": list(self.needs),
            "roles": list(self.roles),
            "groups": list(self.groups),
            "residents_only": self.residents_only,
            "volunteers_only": self.volunteers_only,
        }


@dataclass(frozen=True)
class Ladder:
    """The escalation timings of a check-in, after its start."""

    reminder_after: timedelta = timedelta(minutes=15)
    visit_after: timedelta = timedelta(minutes=45)
    unreached_after: timedelta = timedelta(hours=2)
    # Phone calls (dispatch.calls): whether the check-in calls, and how unanswered calls retry.
    calls: bool = False
    call_retry_after: timedelta = timedelta(minutes=10)
    call_retries: int = 2

    def __post_init__(self) -> None:
        if not (self.reminder_after < self.visit_after < self.unreached_after):
            raise CampaignError("the ladder must grow: reminder < visit < unreached")

    @classmethod
    def of(cls, authority: Authority) -> Ladder:
        """The authority's own ladder (its profile's ``timings``)."""
        return cls(
            reminder_after=timedelta(seconds=authority.reminder_after),
            visit_after=timedelta(seconds=authority.visit_after),
            unreached_after=timedelta(seconds=authority.unreached_after),
            calls=authority.calls,
            call_retry_after=timedelta(seconds=authority.call_retry_after),
            call_retries=authority.call_retries,
        )


@dataclass
class Recipient:
    person_id: int
    name: str | None
    language: Language
    zone_id: int | None
    telegram_chat_id: int | None
    phone: str | None
    phone_kind: PhoneKind
    risk_rank: int
    blocked: set[Channel] = field(default_factory=set)

    def first_channel(self) -> Channel:
        if self.telegram_chat_id is not None and Channel.TELEGRAM not in self.blocked:
            return Channel.TELEGRAM
        if self.phone and self.phone_kind != PhoneKind.LANDLINE and Channel.SMS not in self.blocked:
            return Channel.SMS
        return Channel.NONE

    def callable(self) -> bool:
        return bool(self.phone) and Channel.VOICE not in self.blocked

    def address(self, channel: Channel) -> str:
        if channel == Channel.TELEGRAM:
            return str(self.telegram_chat_id)
        return self.phone or ""


# --- texts -------------------------------------------------------------------------------------


def first_name(name: str | None, language: Language | str) -> str:
    """Only the first name goes into a text: short for SMS, and nothing more than needed."""
    parts = (name or "").split()
    return parts[0][:30] if parts else t(language, "dispatch.checkin.no_name")


def marked(language: Language | str, mode: CampaignMode, text: str) -> str:
    """A drill's text starts with the drill marker in the same language; an emergency's never."""
    if mode == CampaignMode.DRILL:
        return f"{t(language, 'dispatch.drill_marker')} {text}"
    return text


def checkin_buttons(language: Language | str, campaign_id: int) -> Buttons:
    return [
        [
            {"text": t(language, "dispatch.checkin.ok"), "data": f"c:{campaign_id}:ok"},
            {"text": t(language, "dispatch.checkin.help"), "data": f"c:{campaign_id}:help"},
        ]
    ]


def for_channel(text: str, buttons: Buttons | None, channel: Channel) -> str:
    """SMS carries its choices in the text; Telegram shows buttons."""
    # Imported here: dispatch.senders loads the Telegram and HTTP clients, which reading a
    # campaign (`hosen campaign status`, the reports) does not need.
    from dispatch.senders import numbered_choices

    return numbered_choices(text, buttons) if channel == Channel.SMS else text


def checkin_message(
    *,
    language: Language | str,
    name: str | None,
    campaign_id: int,
    mode: CampaignMode,
    channel: Channel,
    reminder: bool = False,
) -> tuple[str, Buttons]:
    key = "dispatch.checkin.reminder" if reminder else "dispatch.checkin.text"
    text = marked(language, mode, t(language, key, name=first_name(name, language)))
    buttons = checkin_buttons(language, campaign_id)
    return for_channel(text, buttons, channel), buttons


def text_for_channel(
    session: Session, *, message: OutboxMessage, person: Person, channel: Channel
) -> tuple[str, Buttons | None]:
    """The text and buttons of ``message`` written for another channel (the fallback)."""
    from dispatch.senders import numbered_choices  # see for_channel

    if channel == Channel.SMS and message.channel != Channel.SMS:
        return numbered_choices(message.text, message.buttons), message.buttons
    return message.text, message.buttons


def priority_for(mode: CampaignMode) -> Priority:
    return Priority.EMERGENCY if mode == CampaignMode.EMERGENCY else Priority.DRILL


# --- audience ------------------------------------------------------------------------------


def risk_rank(flags: Iterable[str]) -> int:
    return max(0, LOWEST_RISK - sum(RISK_WEIGHTS.get(flag, 0) for flag in flags))


def resolve_audience(
    session: Session, *, authority: Authority, audience: Audience
) -> list[Recipient]:
    """Every active person the audience names, with the channel data a message needs."""
    unknown_needs = set(audience.needs) - set(NEED_FLAGS)
    if unknown_needs:
        raise CampaignError(
            f"unknown need {sorted(unknown_needs)[0]!r} (known: {', '.join(NEED_FLAGS)})"
        )
    flag_columns = [getattr(ResidentNeeds, flag) for flag in NEED_FLAGS]
    query = (
        select(
            Person.id,
            Person.name,
            Person.language,
            Person.zone_id,
            Person.telegram_chat_id,
            Person.phone,
            Person.phone_kind,
            *flag_columns,
        )
        .outerjoin(ResidentNeeds, ResidentNeeds.person_id == Person.id)
        .where(Person.authority_id == authority.id, Person.status == PersonStatus.ACTIVE)
    )
    if audience.zones:
        zone_ids = list(
            session.scalars(
                select(Zone.id).where(
                    Zone.authority_id == authority.id, Zone.code.in_(audience.zones)
                )
            )
        )
        if len(zone_ids) != len(set(audience.zones)):
            raise CampaignError(f"unknown zone among {', '.join(audience.zones)}")
        query = query.where(Person.zone_id.in_(zone_ids))
    if audience.needs:
        query = query.where(
            or_(*(getattr(ResidentNeeds, flag).is_(True) for flag in audience.needs))
        )
    if audience.roles:
        query = query.where(
            Person.id.in_(
                select(RoleAssignment.person_id).where(
                    RoleAssignment.role_code.in_(audience.roles),
                    RoleAssignment.status.in_(ACTIVE_ASSIGNMENT),
                )
            )
        )
    if audience.groups:
        query = query.where(
            Person.id.in_(
                select(GroupMember.person_id).where(GroupMember.group_id.in_(audience.groups))
            )
        )
    if audience.residents_only:
        query = query.where(Person.needs_help.is_(True))
    if audience.volunteers_only:
        query = query.where(Person.is_volunteer.is_(True))
    blocked: dict[int, set[Channel]] = {}
    for person_id, channel in session.execute(
        select(ChannelBlock.person_id, ChannelBlock.channel)
        .join(Person, Person.id == ChannelBlock.person_id)
        .where(Person.authority_id == authority.id)
    ):
        blocked.setdefault(person_id, set()).add(Channel(channel))
    recipients = []
    for row in session.execute(query.order_by(Person.id)):
        flags = [flag for flag, on in zip(NEED_FLAGS, row[7:], strict=True) if on]
        recipients.append(
            Recipient(
                person_id=row.id,
                name=row.name,
                language=Language(row.language),
                zone_id=row.zone_id,
                telegram_chat_id=row.telegram_chat_id,
                phone=row.phone,
                phone_kind=PhoneKind(row.phone_kind),
                risk_rank=risk_rank(flags),
                blocked=blocked.get(row.id, set()),
            )
        )
    return recipients


# --- start / close -------------------------------------------------------------------------


def start_campaign(
    session: Session,
    *,
    authority: Authority,
    kind: CampaignKind,
    mode: CampaignMode,
    audience: Audience,
    started_by: str,
    now: datetime,
    text: str | None = None,
    ladder: Ladder | None = None,
) -> Campaign:
    """Create the campaign and queue its messages in bulk, in the caller's transaction."""
    if kind == CampaignKind.ANNOUNCEMENT and not (text and text.strip()):
        raise CampaignError("an announcement needs its text")
    if kind != CampaignKind.ANNOUNCEMENT and text:
        raise CampaignError("only an announcement takes a text; check-ins use the catalog")
    ladder = ladder or Ladder.of(authority)
    campaign = Campaign(
        authority_id=authority.id,
        kind=kind,
        mode=mode,
        audience=audience.describe(),
        text=text.strip() if text else None,
        started_by=started_by,
        started_at=now,
        reminder_after=int(ladder.reminder_after.total_seconds()),
        visit_after=int(ladder.visit_after.total_seconds()),
        unreached_after=int(ladder.unreached_after.total_seconds()),
        calls=ladder.calls and kind == CampaignKind.CHECKIN,
        call_retry_after=int(ladder.call_retry_after.total_seconds()),
        call_retries=ladder.call_retries,
    )
    session.add(campaign)
    session.flush()
    if kind == CampaignKind.TASKS:
        from dispatch import escalation

        campaign.recipients = escalation.assign_buddy_tasks(
            session, campaign=campaign, audience=audience, now=now
        )
        return campaign
    recipients = resolve_audience(session, authority=authority, audience=audience)
    _queue(session, campaign=campaign, recipients=recipients, now=now)
    campaign.recipients = len(recipients)
    return campaign


def start_drill_checkin(
    session: Session,
    *,
    authority: Authority,
    audience: Audience,
    started_by: str,
    now: datetime,
    ladder: Ladder | None = None,
) -> Campaign:
    """The rehearsal most often run: an "are you OK?" drill, in the caller's transaction."""
    return start_campaign(
        session,
        authority=authority,
        kind=CampaignKind.CHECKIN,
        mode=CampaignMode.DRILL,
        audience=audience,
        started_by=started_by,
        now=now,
        ladder=ladder,
    )


def _queue(
    session: Session, *, campaign: Campaign, recipients: Sequence[Recipient], now: datetime
) -> None:
    priority = int(priority_for(campaign.mode))
    first_step = now + timedelta(seconds=campaign.reminder_after)
    is_checkin = campaign.kind == CampaignKind.CHECKIN
    recipient_rows: list[dict[str, Any]] = []
    outbox_rows: list[dict[str, Any]] = []
    for person in recipients:
        channel = person.first_channel()
        if campaign.calls and channel == Channel.NONE and person.callable():
            # A landline (or a phone nothing else reaches) is called first.
            channel = Channel.VOICE
        recipient_rows.append(
            {
                "campaign_id": campaign.id,
                "person_id": person.person_id,
                "zone_id": person.zone_id,
                "channel": channel,
                "risk_rank": person.risk_rank,
                "answer": "pending",
                "needs_human": False,
                "step": 0,
                # No channel at all: the ladder jumps to the buddy's visit at the next sweep.
                "next_step_at": (now if channel == Channel.NONE else first_step)
                if is_checkin
                else None,
            }
        )
        if channel == Channel.NONE:
            continue
        if channel == Channel.VOICE:
            outbox_rows.append(
                {
                    "person_id": person.person_id,
                    "channel": channel,
                    "address": person.address(channel),
                    "text": "checkin",  # the call's script: see dispatch.calls.place_call
                    "buttons": None,
                    "priority": priority,
                    "risk_rank": person.risk_rank,
                    "kind": "call",
                    "campaign_id": campaign.id,
                    "status": OutboxStatus.QUEUED,
                    "attempts": 0,
                    "due_at": now,
                    "created_at": now,
                }
            )
            continue
        if is_checkin:
            text, buttons = checkin_message(
                language=person.language,
                name=person.name,
                campaign_id=campaign.id,
                mode=campaign.mode,
                channel=channel,
            )
        else:
            text = marked(person.language, campaign.mode, campaign.text or "")
            buttons = None
        outbox_rows.append(
            {
                "person_id": person.person_id,
                "channel": channel,
                "address": person.address(channel),
                "text": text,
                "buttons": buttons,
                "priority": priority,
                "risk_rank": person.risk_rank,
                "kind": campaign.kind.value if not is_checkin else "checkin",
                "campaign_id": campaign.id,
                "status": OutboxStatus.QUEUED,
                "attempts": 0,
                "due_at": now,
                "created_at": now,
            }
        )
    for chunk in _chunks(recipient_rows, 5000):
        session.execute(insert(CampaignRecipient), chunk)
    for chunk in _chunks(outbox_rows, 5000):
        session.execute(insert(OutboxMessage), chunk)


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id}")
    return campaign
