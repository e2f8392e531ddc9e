"""Officer and coordinator commands over Telegram and SMS, before any resident conversation.

A message starting with ``/drill``, ``/emergency``, ``/status``, ``/unreached``, ``/close``,
``/tasks``, ``/take``, ``/done``, ``/failed`` or (from staff) ``/language`` goes here, and so does
every answer inside a flow one of them started. Each answer is checked with
:func:`registry.staff.authorize` first: the sender must be active staff behind a verified chat or
phone, allowed the action, for their own authority (or group); the check is audited either way,
and anyone else gets the polite ``staff.not_authorized`` and nothing happens.

The flow is one table of steps, :data:`STEPS` (the resident dialog's shape): each row says what
its step asks, the choices it offers, the free text it takes, what it stores in the typed
:class:`OfficerDraft` and who may answer it. A choice is taken by its button, its number (digits
of any script), its label or its keyword, in the officer's language or English, on every step
(:func:`bots.steps.choice_named`, shared with the resident dialog); the emergency's second
confirmation shows its word without a number, so only the typed word sends it. The draft is kept
in the sender's bots conversation (key ``_officer``), so a restart loses nothing. Telegram buttons
arrive as ``officer.<step>:<value>``. Staff are written to in their own language
(``StaffMember.language``, changed with ``/language``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from bots import community
from bots.models import Conversation
from bots.steps import Answer, Invalid, choice_named, choices_named, tolerant
from bots.words import CARRIER_HELP, CARRIER_OPT_IN, CARRIER_OPT_OUT, clean, fold, number_in
from config.i18n import t
from config.languages import ALL_LANGUAGES, DEFAULT_LANGUAGE, Language
from config.profile import Profile
from config.settings import Settings
from dispatch import escalation
from dispatch import help as help_alerts
from dispatch.campaigns import Audience, CampaignError, Ladder, start_campaign
from dispatch.channels.base import Choice, Prompt, Request
from dispatch.channels.sms import MAX_SMS_SEGMENTS
from dispatch.estimate import Estimate, estimate_campaign, quiet_hours_of, unconfigured_warnings
from dispatch.help import ALERT_BUTTON, AlertAction
from dispatch.models import (
    Campaign,
    CampaignKind,
    CampaignMode,
    CampaignStatus,
    OutboxMessage,
    Priority,
    Task,
    TaskStatus,
)
from dispatch.outbox import enqueue
from dispatch.reports import close_campaign, live_status, not_accounted_for
from dispatch.segments import count_segments
from dispatch.senders import choice_from_reply
from registry.models import Authority, Channel, Group, GroupMember, Person, PersonStatus, Zone
from registry.staff import (
    CoordinatedGroup,
    NotAuthorized,
    StaffAction,
    StaffMember,
    StaffRole,
    authorities_of,
    authorize,
    find_staff,
    language_of,
    record_refusal,
    set_language,
)

STATE = "_officer"
PREFIX = "officer."
COMMANDS: dict[str, StaffAction | None] = {
    "/drill": StaffAction.START_CAMPAIGN,
    "/emergency": StaffAction.START_CAMPAIGN,
    "/status": StaffAction.VIEW_CAMPAIGN,
    "/unreached": StaffAction.VIEW_UNREACHED,
    "/close": StaffAction.CLOSE_CAMPAIGN,
    "/tasks": StaffAction.MANAGE_GROUP_TASKS,
    "/take": StaffAction.HANDLE_HELP,
    "/done": StaffAction.HANDLE_HELP,
    "/failed": StaffAction.HANDLE_HELP,
    "/language": None,  # any staff member, for themselves
    community.MEMBERS: StaffAction.MANAGE_GROUP_MEMBERS,
    community.RESOURCE: StaffAction.MARK_RESOURCE,
}
# A help alert's actions, typed: "/take 12", "/done 12", "/failed 12".
ALERT_COMMANDS = {"/take": AlertAction.TAKE, "/done": AlertAction.DONE, "/failed": AlertAction.FAIL}
# Also a resident's own commands (their status and menu, their language): staff's only when
# staff send them.
SHARED_WITH_BOTS = frozenset({"/status", "/language"})
MAX_LIST = 40  # lines of a Telegram list (unreached people, tasks)
MAX_TEXT = 600  # an announcement's text
OPEN_TASK = (TaskStatus.OFFERED, TaskStatus.ACCEPTED)
CARRIER_WORDS = CARRIER_OPT_OUT | CARRIER_OPT_IN | CARRIER_HELP
DONE = "done"  # the multi-choice button that ends a selection


class OfficerStep(StrEnum):
    """Where a staff member's flow stands (the ``step`` of :class:`OfficerDraft`)."""

    IDLE = ""
    AUDIENCE = "audience"
    ZONES = "zones"
    TEMPLATE = "template"
    TEXT = "text"
    CONFIRM = "confirm"
    AGAIN = "again"  # an emergency's second, typed confirmation
    TASK = "task"  # a coordinator picks a home visit...
    GIVE = "give"  # ...and the member who goes
    ALERT = "alert"  # a help alert just taken: done, or could not help
    LANGUAGE = "language"
    MEMBER = "member"  # a coordinator picks a member of their groups...
    UNMEMBER = "unmember"  # ...and confirms taking them out


class Who(StrEnum):
    RESIDENTS = "residents"
    EVERYONE = "everyone"
    ZONES = "zones"  # residents of chosen zones


class OfficerDraft(BaseModel):
    """What a staff member's flow has been given so far (JSON keys as they have always been)."""

    model_config = ConfigDict(extra="ignore")

    step: OfficerStep = OfficerStep.IDLE
    mode: CampaignMode | None = None
    who: Who | None = None
    zones: list[str] = Field(default_factory=list)
    kind: CampaignKind | None = None
    text: str | None = None
    campaign: int | None = None  # the campaign they last started: /status and /close show it
    offered: list[str] = Field(default_factory=list)  # the choices of a list, for SMS numbers
    member: str | None = None  # "group-person" picked to take out of a group

    @classmethod
    def load(cls, data: object) -> OfficerDraft:
        return tolerant(cls, data)

    def dump(self) -> dict[str, Any] | None:
        """The JSON to keep, or None when nothing is (no flow, no campaign of theirs)."""
        if self.step == OfficerStep.IDLE and self.campaign is None:
            return None
        return self.model_dump(mode="json", exclude_none=True)

    def rest(self) -> None:
        """The flow ends; the campaign they last started is still theirs to look at."""
        campaign = self.campaign
        for name, info in type(self).model_fields.items():
            setattr(self, name, info.get_default(call_default_factory=True))
        self.campaign = campaign

    @property
    def audience(self) -> Audience:
        return Audience(zones=tuple(self.zones), residents_only=self.who != Who.EVERYONE)


def command_of(text: str | None) -> str | None:
    """The staff command a text starts with (``/drill@HosenBot`` too), or ``None``."""
    words = (text or "").strip().split()
    if not words:
        return None
    word = words[0].split("@", 1)[0].lower()
    return word if word in COMMANDS else None


def _draft_of(conversation: Conversation | None) -> OfficerDraft:
    return OfficerDraft.load(conversation.draft.get(STATE) if conversation is not None else None)


@dataclass
class Desk:
    """One staff message being answered."""

    session: Session
    conversation: Conversation
    channel: Channel
    address: str
    language: Language
    profile: Profile
    settings: Settings
    now: datetime
    member: StaffMember | None
    draft: OfficerDraft
    replies: list[Prompt] = field(default_factory=list)
    authority: Authority | None = None
    groups: list[int] = field(default_factory=list)  # the groups whose tasks they may hand out

    def save(self) -> None:
        kept = self.draft.dump()
        if kept is None:
            self.conversation.draft.pop(STATE, None)
        else:
            self.conversation.draft[STATE] = kept
        flag_modified(self.conversation, "draft")
        self.conversation.updated_at = self.now

    def say(
        self, key: str, *, step: str = "", choices: tuple[Choice, ...] = (), **params: Any
    ) -> None:
        text = t(self.language, f"officer.{key}", **params)
        self.replies.append(
            Prompt(text=text, step=f"{PREFIX}{step}" if step else "", choices=choices)
        )

    def refuse(self) -> None:
        unknown = self.member is None and self.channel == Channel.TELEGRAM
        requests = (Request.CONTACT,) if unknown else ()
        text = t(self.language, "staff.not_authorized")
        if requests:
            text = f"{text}\n{t(self.language, 'officer.verify_hint')}"
        self.replies.append(Prompt(text=text, requests=requests))


def claims(
    session: Session,
    *,
    conversation: Conversation | None,
    channel: Channel,
    address: str,
    text: str | None,
    button: str | None,
) -> bool:
    """Whether a message is staff business (else the bots' dialog carries on)."""
    command = command_of(text)
    if button and button.startswith(PREFIX):
        return True
    if command is None:
        in_flow = _draft_of(conversation).step != OfficerStep.IDLE
        # STOP and HELP always belong to the bots, whatever the officer was doing.
        if text and fold(text) in CARRIER_WORDS:
            return False
        return (
            in_flow
            or _pushed_alert(session, channel=channel, address=address, text=text) is not None
        )
    if command in SHARED_WITH_BOTS:
        return find_staff(session, channel=channel, address=address) is not None
    return True


def decisive(conversation: Conversation | None, text: str | None) -> bool:
    """Whether this message may start or close a campaign: by SMS it needs the PIN every time.

    Any answer at a drill's confirmation or an emergency's second one counts (a "no" too: the
    PIN is asked before the answer is read, never after).
    """
    if command_of(text) == "/close":
        return True
    if conversation is None or command_of(text) is not None:
        return False
    draft = _draft_of(conversation)
    return draft.step == OfficerStep.AGAIN or (
        draft.step == OfficerStep.CONFIRM and draft.mode == CampaignMode.DRILL
    )


def language_for(
    session: Session, conversation: Conversation | None, channel: Channel, address: str
) -> Language:
    """The language to answer a message in: a staff member's own, else the conversation's."""
    member = find_staff(session, channel=channel, address=address)
    if member is not None:
        return language_of(session, member)
    return (conversation.language if conversation else None) or DEFAULT_LANGUAGE


def respond(
    session: Session,
    *,
    conversation: Conversation,
    channel: Channel,
    address: str,
    text: str | None,
    button: str | None,
    profile: Profile,
    settings: Settings,
    now: datetime,
) -> list[Prompt]:
    """Answer a message :func:`claims` found to be staff business."""
    member = find_staff(session, channel=channel, address=address)
    language = (
        language_of(session, member)
        if member is not None
        else conversation.language or DEFAULT_LANGUAGE
    )
    desk = Desk(
        session,
        conversation,
        channel,
        address,
        language,
        profile,
        settings,
        now,
        member,
        _draft_of(conversation),
    )
    desk.authority = _authority_of(session, member)
    _respond(desk, command_of(text), _button_of(button), text)
    desk.save()
    return desk.replies


def _button_of(button: str | None) -> tuple[str, str] | None:
    """(step, value) of an ``officer.<step>:<value>`` button."""
    if not button or not button.startswith(PREFIX):
        return None
    step, _, value = button[len(PREFIX) :].partition(":")
    return step, value


def _respond(
    desk: Desk, command: str | None, button: tuple[str, str] | None, text: str | None
) -> None:
    on_alert = _alert_action(desk, command, button, text)
    if on_alert is not None:
        return _on_alert(desk, *on_alert)
    if command is not None:
        return _command(desk, command, text)
    if button is not None:
        step, value = button
        row = STEPS.get(OfficerStep(step)) if step in _STEP_VALUES else None
        if row is None or not (row.standalone or step == desk.draft.step):
            # An old keyboard's button: the question that stands now, again.
            return _ask_current(desk)
        return _answer(desk, OfficerStep(step), value=value, text=None)
    return _answer(desk, desk.draft.step, value=None, text=text)


def _command(desk: Desk, command: str, text: str | None) -> None:
    if command == "/tasks":
        if not _may_manage_tasks(desk):
            return None
        return _list_tasks(desk)
    if command == "/language":
        if not _is_staff(desk):
            return None
        return _ask(desk, OfficerStep.LANGUAGE)
    if command == community.MEMBERS:
        desk.draft.rest()
        if not community.may_manage_members(desk):
            return None
        return community.ask_members(desk)
    action = COMMANDS[command]
    assert action is not None
    if not _authorized(desk, action):
        return None
    assert desk.authority is not None
    if command in ("/drill", "/emergency"):
        desk.draft.rest()
        desk.draft.mode = CampaignMode.DRILL if command == "/drill" else CampaignMode.EMERGENCY
        return _ask(desk, OfficerStep.AUDIENCE)
    if command == "/status":
        return _status(desk, desk.authority)
    if command == "/unreached":
        return _unreached(desk, desk.authority)
    if command == community.RESOURCE:
        return community.resource(desk, text)
    return _close(desk, desk.authority)


def _answer(desk: Desk, step: OfficerStep, *, value: str | None, text: str | None) -> None:
    """An answer to ``step``: who may give it, what it says, and where it goes (every step)."""
    if step == OfficerStep.IDLE:
        if _authorized(desk, StaffAction.START_CAMPAIGN):
            desk.say("desk.help")
        desk.draft.rest()
        return None
    row = STEPS[step]
    if not row.guard(desk):
        return None
    try:
        answer = _understand(desk, step, row, value, text)
    except Invalid:
        return row.refused(desk)
    return row.take(desk, answer)


def _understand(
    desk: Desk, step: OfficerStep, row: Row, value: str | None, text: str | None
) -> Answer:
    """What the message says to this step: the one rule every step follows."""
    if value is not None:  # a button's value, as it came (it may be forged)
        if row.standalone:
            return Answer(choice=value)  # the row checks it against what is open now
        offered = {choice.value for choice in row.choices(desk)}
        if value in offered or (row.multi and value == DONE):
            return Answer(choice=value)
        raise Invalid("bot.error.choice")
    choices = row.choices(desk)

    def named(part: str) -> str | None:
        return choice_named(
            part,
            choices,
            language=desk.language,
            english=lambda: _in_english(desk, row),
            numbered=row.numbered,
        )

    if row.multi:
        return Answer(many=frozenset(choices_named(text, named)))
    picked = named(text or "")
    if picked is not None:
        return Answer(choice=picked)
    if row.text is not None:
        return row.text(desk, text or "")
    raise Invalid("bot.error.choice")


def _in_english(desk: Desk, row: Row) -> tuple[Choice, ...]:
    saved, desk.language = desk.language, Language.EN
    try:
        return row.choices(desk)
    finally:
        desk.language = saved


def _ask(desk: Desk, step: OfficerStep) -> None:
    desk.draft.step = step
    STEPS[step].ask(desk)


def _ask_current(desk: Desk) -> None:
    if desk.draft.step == OfficerStep.IDLE:
        return _answer(desk, OfficerStep.IDLE, value=None, text=None)
    if not STEPS[desk.draft.step].guard(desk):
        return None
    return _ask(desk, desk.draft.step)


# --- who may answer ------------------------------------------------------------------------------


def _authorized(desk: Desk, action: StaffAction) -> bool:
    """Authorize (and audit) ``action`` for the member's authority; refuse politely if not."""
    try:
        desk.member = authorize(
            desk.session,
            channel=desk.channel,
            address=desk.address,
            action=action,
            authority_id=desk.authority.id if desk.authority else None,
            now=desk.now,
        )
    except NotAuthorized:
        desk.draft = OfficerDraft()
        desk.refuse()
        return False
    return True


def _may_run_campaigns(desk: Desk) -> bool:
    return _authorized(desk, StaffAction.START_CAMPAIGN)


def _is_staff(desk: Desk) -> bool:
    if desk.member is None:
        desk.draft.rest()
        desk.refuse()
        return False
    return True


def _may_manage_tasks(desk: Desk) -> bool:
    """Coordinators for their groups; officers and admins for every group of their authority."""
    groups: list[int | None] = [*_groups_of(desk.session, desk.member)] or [None]
    allowed: list[int] = []
    for group_id in groups:
        try:
            authorize(
                desk.session,
                channel=desk.channel,
                address=desk.address,
                action=StaffAction.MANAGE_GROUP_TASKS,
                authority_id=desk.authority.id if desk.authority else None,
                group_id=group_id,
                now=desk.now,
            )
        except NotAuthorized:
            continue
        if group_id is not None:
            allowed.append(group_id)
    member = desk.member
    if not allowed and not (member is not None and member.role != StaffRole.COORDINATOR):
        desk.draft.rest()
        desk.refuse()
        return False
    if not allowed:  # officers and admins see every group of their authority
        allowed = list(
            desk.session.scalars(
                select(Group.id).where(
                    Group.authority_id == (desk.authority.id if desk.authority else -1)
                )
            )
        )
    desk.groups = allowed
    return True


# --- help alerts: take, done, could not help ----------------------------------------------------


def _pushed_alert(
    session: Session, *, channel: Channel, address: str, text: str | None
) -> str | None:
    """The button an SMS number answers when the latest message with choices to this staff phone
    was a help alert's push ("1" takes it); None otherwise. Messages without choices in between
    (the PIN prompt that held this very number) do not hide the push."""
    if number_in(text) is None or find_staff(session, channel=channel, address=address) is None:
        return None
    recent = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.channel == channel, OutboxMessage.address == address)
        .order_by(OutboxMessage.id.desc())
        .limit(5)
    )
    latest = next((message for message in recent if message.buttons), None)
    if latest is None or latest.kind != "alert":
        return None
    return choice_from_reply(clean(text), latest.buttons)


def _alert_action(
    desk: Desk, command: str | None, button: tuple[str, str] | None, text: str | None
) -> tuple[int | None, str] | None:
    """(alert id, action) when the message acts on a help alert outside the step table: its
    push's button or number by SMS, or a typed ``/take 12``."""
    if command in ALERT_COMMANDS:
        _, _, argument = (text or "").strip().partition(" ")
        return number_in(argument), ALERT_COMMANDS[command]
    data: str | None = None
    if button is not None and button[0] == OfficerStep.ALERT:
        data = button[1]
    elif command is None and button is None and desk.draft.step != OfficerStep.ALERT:
        pushed = _pushed_alert(desk.session, channel=desk.channel, address=desk.address, text=text)
        data = pushed.removeprefix(f"{ALERT_BUTTON}:") if pushed else None
    return _alert_data(data) if data is not None else None


def _alert_data(data: str) -> tuple[int | None, str]:
    alert_id, _, action = data.partition(":")
    return (int(alert_id) if alert_id.isdecimal() else None), action


def _on_alert(desk: Desk, alert_id: int | None, action: str) -> None:
    found = help_alerts.resident_of(desk.session, alert_id) if alert_id is not None else None
    desk.draft.rest()
    if found is None:
        return desk.replies.append(Prompt(text=t(desk.language, "dispatch.alert.gone")))
    alert, resident = found
    try:
        member = authorize(
            desk.session,
            channel=desk.channel,
            address=desk.address,
            action=StaffAction.HANDLE_HELP,
            authority_id=resident.authority_id,
            now=desk.now,
        )
    except NotAuthorized:
        return desk.refuse()
    desk.member = member
    handled = help_alerts.handle(
        desk.session, alert_id=alert.id, action=action, member=member, now=desk.now
    )
    if handled.key != "yours":
        return desk.replies.append(
            Prompt(text=_alert_text(desk, handled.key, alert.id, handled.owner))
        )
    desk.draft.offered = [f"{alert.id}:{AlertAction.DONE}", f"{alert.id}:{AlertAction.FAIL}"]
    return _ask(desk, OfficerStep.ALERT)


def _alert_text(desk: Desk, key: str, alert_id: int, owner: str = "") -> str:
    found = help_alerts.resident_of(desk.session, alert_id)
    resident = found[1] if found else None
    return t(
        desk.language,
        f"dispatch.alert.{key}",
        alert=alert_id,
        name=(resident.name if resident else None) or "?",
        place=escalation.place_of(desk.session, resident, desk.language) if resident else "-",
        phone=(resident.phone if resident else None) or "-",
        owner=owner or "?",
    )


def _alert_choices(desk: Desk) -> tuple[Choice, ...]:
    labels = {AlertAction.DONE: "dispatch.alert.done", AlertAction.FAIL: "dispatch.alert.fail"}
    return tuple(
        Choice(value, t(desk.language, labels[value.partition(":")[2]]))
        for value in desk.draft.offered
        if value.partition(":")[2] in labels
    )


def _ask_alert(desk: Desk) -> None:
    choices = _alert_choices(desk)
    if not choices:  # an old or damaged row: nothing to ask
        desk.draft.rest()
        return desk.say("desk.help")
    alert_id = _alert_data(choices[0].value)[0] or 0
    desk.replies.append(
        Prompt(text=_alert_text(desk, "yours", alert_id), step=f"{PREFIX}alert", choices=choices)
    )
    return None


def _take_alert(desk: Desk, answer: Answer) -> None:
    return _on_alert(desk, *_alert_data(answer.choice or ""))


def _open_help(desk: Desk, authority: Authority) -> None:
    """Open help of the authority, oldest first, with its age and owner (nothing when none)."""
    rows = help_alerts.open_help(
        desk.session, authority_id=authority.id, now=desk.now, language=desk.language
    )
    if not rows:
        return None
    head = t(desk.language, "dispatch.alert.list_head", count=len(rows))
    lines = [
        t(
            desk.language,
            "dispatch.alert.list_line",
            alert=row.alert_id,
            name=row.resident,
            zone=row.zone,
            age=duration(desk.language, row.age_seconds),
            owner=row.owner or t(desk.language, "dispatch.alert.nobody"),
        )
        + (f" · {t(desk.language, 'dispatch.answered.mark')}" if row.later_ok_at else "")
        for row in rows
    ]
    desk.replies.append(Prompt(text=fitting(desk, head, lines)))
    return None


def _authority_of(session: Session, member: StaffMember | None) -> Authority | None:
    if member is None:
        return None
    authorities = authorities_of(session, member)
    return authorities[0] if authorities else None


# --- /drill and /emergency ---------------------------------------------------------------------


def _zone_name(desk: Desk, authority: Authority, code: str) -> str:
    for entry in desk.profile.authorities:
        if entry.code == authority.code:
            for zone in entry.zones:
                if zone.code == code:
                    return zone.names.get(desk.language)
    return code


def _zone_codes(desk: Desk) -> list[str]:
    if desk.authority is None:
        return []
    return list(
        desk.session.scalars(
            select(Zone.code).where(Zone.authority_id == desk.authority.id).order_by(Zone.code)
        )
    )


def _audience_choices(desk: Desk) -> tuple[Choice, ...]:
    return tuple(Choice(w.value, t(desk.language, f"officer.audience.{w.value}")) for w in Who)


def _zone_choices(desk: Desk) -> tuple[Choice, ...]:
    authority = desk.authority
    assert authority is not None
    return tuple(Choice(code, _zone_name(desk, authority, code)) for code in _zone_codes(desk))


def _template_choices(desk: Desk) -> tuple[Choice, ...]:
    return tuple(
        Choice(kind, t(desk.language, f"officer.template.{kind}"))
        for kind in (CampaignKind.CHECKIN.value, CampaignKind.ANNOUNCEMENT.value)
    )


def _confirm_choices(desk: Desk) -> tuple[Choice, ...]:
    return (
        Choice("yes", t(desk.language, "officer.confirm.yes")),
        Choice("no", t(desk.language, "officer.confirm.no")),
    )


def _again_choices(desk: Desk) -> tuple[Choice, ...]:
    return (Choice("send", t(desk.language, "officer.confirm.word")),)


def _language_choices(desk: Desk) -> tuple[Choice, ...]:
    return tuple(Choice(x.value, t(x, "bot.language.name")) for x in ALL_LANGUAGES)


def _asks(key: str, step: OfficerStep) -> Callable[[Desk], None]:
    """A step whose question is one catalog text with the row's choices."""

    def ask(desk: Desk) -> None:
        desk.say(key, step=step.value, choices=STEPS[step].choices(desk))

    return ask


def _ask_zones(desk: Desk) -> None:
    desk.replies.append(
        Prompt(
            text=t(desk.language, "officer.audience.pick_zones"),
            step=f"{PREFIX}{OfficerStep.ZONES.value}",
            choices=_zone_choices(desk),
            multi=True,
            selected=frozenset(desk.draft.zones),
        )
    )


def _take_audience(desk: Desk, answer: Answer) -> None:
    who = Who(answer.picked)
    desk.draft.who = Who.EVERYONE if who == Who.EVERYONE else Who.RESIDENTS
    desk.draft.zones = []
    return _ask(desk, OfficerStep.ZONES if who == Who.ZONES else OfficerStep.TEMPLATE)


def _take_zones(desk: Desk, answer: Answer) -> None:
    """Zones toggled one button at a time until "done", or all at once by SMS ("1 3")."""
    if answer.many is not None:
        desk.draft.zones = sorted(answer.many)
        return _ask(desk, OfficerStep.TEMPLATE)
    if answer.choice == DONE:
        if not desk.draft.zones:
            return _ask(desk, OfficerStep.ZONES)
        return _ask(desk, OfficerStep.TEMPLATE)
    desk.draft.zones = sorted(set(desk.draft.zones) ^ {answer.picked})
    return _ask(desk, OfficerStep.ZONES)


def _take_template(desk: Desk, answer: Answer) -> None:
    desk.draft.kind = CampaignKind(answer.picked)
    if desk.draft.kind == CampaignKind.ANNOUNCEMENT:
        return _ask(desk, OfficerStep.TEXT)
    return _ask(desk, OfficerStep.CONFIRM)


def _announcement_text(desk: Desk, text: str) -> Answer:
    """The announcement as written, line breaks kept; control characters (a NUL cannot even be
    stored on PostgreSQL) dropped."""
    kept = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) != "Cc").strip()
    if not kept:
        raise Invalid("officer.template.text")
    return Answer(text=kept[:MAX_TEXT])


def _take_text(desk: Desk, answer: Answer) -> None:
    desk.draft.text = answer.text
    return _ask(desk, OfficerStep.CONFIRM)


def _take_confirm(desk: Desk, answer: Answer) -> None:
    if answer.choice == "no":
        desk.draft.rest()
        return desk.say("cancelled")
    if desk.draft.mode == CampaignMode.EMERGENCY:
        return _ask(desk, OfficerStep.AGAIN)
    return _start(desk)


def _take_again(desk: Desk, answer: Answer) -> None:
    return _start(desk)


def _cancel(desk: Desk) -> None:
    """Anything but the word at an emergency's second confirmation: nothing is sent."""
    desk.draft.rest()
    desk.say("cancelled")


def _estimate(desk: Desk) -> Estimate:
    assert desk.authority is not None and desk.draft.kind is not None
    assert desk.draft.mode is not None
    return estimate_campaign(
        desk.session,
        authority=desk.authority,
        audience=desk.draft.audience,
        kind=desk.draft.kind,
        mode=desk.draft.mode,
        settings=desk.settings,
        now=desk.now,
        text=desk.draft.text,
        profile=desk.profile,
    )


def duration(language: Language, seconds: float) -> str:
    if seconds < 90:
        return t(language, "officer.duration.seconds", seconds=max(1, round(seconds)))
    return t(language, "officer.duration.minutes", minutes=round(seconds / 60))


def _complete(desk: Desk) -> bool:
    """Whether the draft holds what a confirmation needs (an old or damaged row may not)."""
    draft = desk.draft
    return (
        desk.authority is not None
        and draft.mode is not None
        and draft.kind is not None
        and (draft.kind != CampaignKind.ANNOUNCEMENT or bool(draft.text))
    )


def _confirm(desk: Desk) -> None:
    if not _complete(desk):
        desk.draft.rest()
        return desk.say("desk.help")
    authority = desk.authority
    assert authority is not None and desk.draft.mode is not None and desk.draft.kind is not None
    estimate = _estimate(desk)
    desk.say(
        "confirm.summary",
        what=t(desk.language, f"officer.what.{desk.draft.mode.value}_{desk.draft.kind.value}"),
        people=estimate.recipients,
    )
    zones = ", ".join(
        f"{_zone_name(desk, authority, code)} {count}" for code, count in estimate.zones.items()
    )
    desk.say("confirm.zones", zones=zones or "-")
    if estimate.quiet_hours:
        quiet = quiet_hours_of(desk.profile, authority)
        desk.say("confirm.quiet", start=f"{quiet.start:%H:%M}", end=f"{quiet.end:%H:%M}")
    for warning in unconfigured_warnings(
        estimate,
        language=desk.language,
        kind=desk.draft.kind,
        ladder=Ladder.of(authority),
    ):
        desk.replies.append(Prompt(text=warning))
    desk.say(
        "confirm.cost",
        step=OfficerStep.CONFIRM.value,
        choices=_confirm_choices(desk),
        telegram=estimate.telegram,
        sms=estimate.sms,
        none=estimate.no_channel,
        segments=estimate.sms_segments,
        duration=duration(desk.language, estimate.seconds),
    )
    return None


def _ask_again(desk: Desk) -> None:
    word = t(desk.language, "officer.confirm.word")
    # Shown without a number on SMS: only the typed word sends a real emergency.
    desk.replies.append(
        Prompt(
            text=t(desk.language, "officer.confirm.again", word=word),
            step=f"{PREFIX}{OfficerStep.AGAIN.value}",
            choices=_again_choices(desk),
            numbered=False,
        )
    )


def _start(desk: Desk) -> None:
    draft, member, authority = desk.draft, desk.member, desk.authority
    if not _complete(desk) or member is None or authority is None:
        draft.rest()
        return desk.say("desk.help")
    assert draft.kind is not None and draft.mode is not None
    try:
        campaign = start_campaign(
            desk.session,
            authority=authority,
            kind=draft.kind,
            mode=draft.mode,
            audience=draft.audience,
            started_by=f"staff:{member.id}",
            now=desk.now,
            text=draft.text,
        )
    except CampaignError:
        draft.rest()
        return desk.say("failed")
    draft.rest()
    draft.campaign = campaign.id
    desk.say("started", campaign=campaign.id, people=campaign.recipients)
    return None


def _reask(desk: Desk) -> None:
    return _ask(desk, desk.draft.step)


# --- /language ----------------------------------------------------------------------------------


def _take_language(desk: Desk, answer: Answer) -> None:
    member = desk.member
    assert member is not None
    chosen = Language(answer.picked)
    set_language(
        desk.session,
        member=member,
        language=chosen,
        actor=f"{desk.channel.value}:staff:{member.id}",
        now=desk.now,
    )
    desk.language = chosen
    desk.draft.rest()
    desk.replies.append(Prompt(text=t(chosen, "officer.desk.language_set")))
    return None


# --- /status, /unreached, /close ---------------------------------------------------------------


def _current(desk: Desk, authority: Authority, *, active_only: bool = False) -> Campaign | None:
    """The campaign this officer last started, else the authority's latest (active) one."""
    chosen = desk.draft.campaign
    campaign = desk.session.get(Campaign, chosen) if chosen else None
    mine = campaign is not None and campaign.authority_id == authority.id
    if mine and (not active_only or campaign.status == CampaignStatus.ACTIVE):  # type: ignore[union-attr]
        return campaign
    query = select(Campaign).where(Campaign.authority_id == authority.id)
    if active_only:
        query = query.where(Campaign.status == CampaignStatus.ACTIVE)
    return desk.session.scalars(query.order_by(Campaign.id.desc()).limit(1)).first()


def _status(desk: Desk, authority: Authority) -> None:
    _campaign_status(desk, authority)
    _open_help(desk, authority)


def _campaign_status(desk: Desk, authority: Authority) -> None:
    """Where everyone stands, in the report's own outcomes (``campaign status``): a resident a
    buddy went to and saw is accounted for, not silent."""
    campaign = _current(desk, authority)
    if campaign is None:
        return desk.say("no_campaign")
    status = live_status(desk.session, campaign=campaign)
    total, tasks = status.total, status.tasks
    outcomes: dict[str, Any] = total.outcomes()  # ok, help, free_text, visited, waiting, ...
    desk.say(
        "accounted.status",
        campaign=campaign.id,
        what=t(desk.language, f"officer.what.{campaign.mode.value}_{campaign.kind.value}"),
        state=t(desk.language, f"officer.state.{campaign.status.value}"),
        people=total.recipients,
        delivered=total.delivered,
        open=sum(tasks.get(s.value, 0) for s in OPEN_TASK),
        done=tasks.get(TaskStatus.DONE.value, 0),
        failed=tasks.get(TaskStatus.NOT_REACHED.value, 0),
        **outcomes,
    )


def fitting(desk: Desk, head: str, lines: list[str]) -> str:
    """``head`` and as many lines as fit (``MAX_SMS_SEGMENTS`` by SMS; ``MAX_LIST`` lines on
    Telegram)."""
    text = head
    for shown, line in enumerate(lines):
        more = t(desk.language, "officer.more", count=len(lines) - shown)
        candidate = f"{text}\n{line}"
        too_long = (
            count_segments(f"{candidate}\n{more}") > MAX_SMS_SEGMENTS
            if desk.channel == Channel.SMS
            else shown >= MAX_LIST
        )
        if too_long:
            return f"{text}\n{more}"
        text = candidate
    return text


def _unreached(desk: Desk, authority: Authority) -> None:
    """Everyone the report lists as not accounted for (neither answered nor seen by a buddy),
    most at risk first."""
    campaign = _current(desk, authority)
    if campaign is None:
        return desk.say("no_campaign")
    people = not_accounted_for(desk.session, campaign=campaign)
    if not people:
        return desk.say("accounted.everyone", campaign=campaign.id)
    head = t(desk.language, "officer.unreached.head", campaign=campaign.id, count=len(people))
    # Names and zones only: what the officer needs to send someone, never a word about needs.
    lines = [
        f"{p['name'] or '?'} – {_zone_name(desk, authority, p['zone']) if p['zone'] else '-'}"
        for p in people
    ]
    desk.replies.append(Prompt(text=fitting(desk, head, lines)))


def _close(desk: Desk, authority: Authority) -> None:
    campaign = _current(desk, authority, active_only=True)
    if campaign is None:
        return desk.say("no_campaign")
    report = close_campaign(desk.session, campaign=campaign, now=desk.now)
    p50 = report.time_to_answer_seconds.get("p50")
    desk.draft.rest()
    desk.say(
        "closed",
        campaign=campaign.id,
        answered=report.answered,
        people=report.recipients,
        rate=round(100 * report.response_rate),
        unreached=len(report.unreached),
        median=duration(desk.language, p50) if p50 is not None else "-",
        bounced=len(report.bounced_numbers),
    )


# --- coordinators: /tasks ----------------------------------------------------------------------


def _groups_of(session: Session, member: StaffMember | None) -> list[int]:
    if member is None:
        return []
    return list(
        session.scalars(
            select(CoordinatedGroup.group_id)
            .where(CoordinatedGroup.staff_id == member.id)
            .order_by(CoordinatedGroup.group_id)
        )
    )


def open_tasks(session: Session, *, group_ids: list[int]) -> list[Task]:
    """Open home visits of these groups: given to the group, or to one of its members."""
    members = select(GroupMember.person_id).where(GroupMember.group_id.in_(group_ids))
    return list(
        session.scalars(
            select(Task)
            .where(
                Task.status.in_(OPEN_TASK),
                or_(Task.group_id.in_(group_ids), Task.volunteer_id.in_(members)),
            )
            .order_by(Task.id)
        )
    )


def _task_label(desk: Desk, task: Task) -> str:
    resident = desk.session.get(Person, task.resident_id)
    volunteer = desk.session.get(Person, task.volunteer_id)
    status = t(desk.language, f"officer.tasks.{task.status.value}")
    return (
        f"{(resident.name if resident else None) or '?'} – "
        f"{(volunteer.name if volunteer else None) or '?'} ({status})"
    )


def _list_tasks(desk: Desk) -> None:
    """The open home visits of the groups they manage, to hand one to a member."""
    tasks = open_tasks(desk.session, group_ids=desk.groups)
    if not tasks:
        desk.draft.rest()
        return desk.say("tasks.none")
    choices = [Choice(str(task.id), _task_label(desk, task)) for task in tasks[:MAX_LIST]]
    return _offer(
        desk, OfficerStep.TASK, fitting_choices(desk, choices), "tasks.head", count=len(tasks)
    )


def _task_choices(desk: Desk) -> tuple[Choice, ...]:
    """The list offered last (the tasks' labels as they are now)."""
    choices = []
    for value in desk.draft.offered:
        task = desk.session.get(Task, int(value)) if value.isdecimal() else None
        if task is not None:
            choices.append(Choice(value, _task_label(desk, task)))
    return tuple(choices)


def _member_choices(desk: Desk) -> tuple[Choice, ...]:
    choices = []
    for value in desk.draft.offered:
        person_id = value.partition("-")[2]
        person = desk.session.get(Person, int(person_id)) if person_id.isdecimal() else None
        if person is not None:
            choices.append(Choice(value, person.name or "?"))
    return tuple(choices)


def _forged(desk: Desk, named: str) -> bool:
    """A task outside what this member manages (a forged or stale button): refused, and audited
    as refused whatever the groups they do manage."""
    if not (named.isdecimal() and _outside(desk.session, int(named), desk.groups)):
        return False
    record_refusal(
        desk.session,
        channel=desk.channel,
        address=desk.address,
        member=desk.member,
        reason="group",
        now=desk.now,
        action=StaffAction.MANAGE_GROUP_TASKS.value,
        task_id=int(named),
    )
    desk.draft.rest()
    desk.refuse()
    return True


def _take_task(desk: Desk, answer: Answer) -> None:
    value = answer.picked
    if _forged(desk, value):
        return None
    tasks = {task.id: task for task in open_tasks(desk.session, group_ids=desk.groups)}
    if value.isdecimal() and int(value) in tasks:
        return _ask_member(desk, tasks[int(value)])
    return _list_tasks(desk)  # a task no longer open: the list as it is now


def _take_give(desk: Desk, answer: Answer) -> None:
    task_id, _, person_id = answer.picked.partition("-")
    if _forged(desk, task_id):
        return None
    tasks = {task.id: task for task in open_tasks(desk.session, group_ids=desk.groups)}
    task = tasks.get(int(task_id)) if task_id.isdecimal() else None
    desk.draft.rest()
    if task is not None and person_id.isdecimal():
        return _give(desk, task, int(person_id))
    return desk.say("tasks.gone")


def _tasks_gone(desk: Desk) -> None:
    """A number that is no longer on the list: the list is used up or stale."""
    desk.draft.rest()
    desk.say("tasks.gone")


def _ask_give(desk: Desk) -> None:
    task_id = desk.draft.offered[0].partition("-")[0] if desk.draft.offered else ""
    tasks = {task.id: task for task in open_tasks(desk.session, group_ids=desk.groups)}
    task = tasks.get(int(task_id)) if task_id.isdecimal() else None
    if task is None:
        return _tasks_gone(desk)
    return _ask_member(desk, task)


def _outside(session: Session, task_id: int, groups: list[int]) -> bool:
    """Whether the task exists and belongs to none of ``groups``."""
    task = session.get(Task, task_id)
    return task is not None and task.group_id not in groups


def fitting_choices(desk: Desk, choices: list[Choice]) -> list[Choice]:
    """By SMS, as many choices as a numbered list of ``MAX_SMS_SEGMENTS`` segments holds."""
    if desk.channel != Channel.SMS:
        return choices
    kept: list[Choice] = []
    for choice in choices:
        lines = [f"{n} {c.label}" for n, c in enumerate([*kept, choice], 1)]
        if count_segments("\n".join(lines)) > MAX_SMS_SEGMENTS:
            break
        kept.append(choice)
    return kept


def _offer(desk: Desk, step: OfficerStep, choices: list[Choice], key: str, **params: Any) -> None:
    """Ask with buttons, and remember the choices for an SMS answer by number."""
    desk.draft.step = step
    desk.draft.offered = [c.value for c in choices]
    desk.say(key, step=step.value, choices=tuple(choices), **params)


def _members(desk: Desk, group_ids: list[int]) -> list[Person]:
    return list(
        desk.session.scalars(
            select(Person)
            .join(GroupMember, GroupMember.person_id == Person.id)
            .where(GroupMember.group_id.in_(group_ids), Person.status == PersonStatus.ACTIVE)
            .order_by(Person.name, Person.id)
            .distinct()
        )
    )


def _ask_member(desk: Desk, task: Task) -> None:
    choices = [
        Choice(f"{task.id}-{person.id}", person.name or "?")
        for person in _members(desk, desk.groups)[:MAX_LIST]
    ]
    _offer(desk, OfficerStep.GIVE, fitting_choices(desk, choices), "tasks.pick")


def _give(desk: Desk, task: Task, person_id: int) -> None:
    member = next((p for p in _members(desk, desk.groups) if p.id == person_id), None)
    resident = desk.session.get(Person, task.resident_id)
    if member is None or resident is None:
        return desk.say("tasks.gone")
    # A minor never visits alone: the dispatcher's rule sends the group's adult coordinator along.
    visitor = escalation.visitor_for(desk.session, person=member, now=desk.now)
    if visitor is None:
        return desk.say("tasks.nobody", name=member.name or "?")
    task.volunteer_id = visitor.person.id
    task.group_id = visitor.group_id or task.group_id
    task.status = TaskStatus.OFFERED
    task.accepted_at = None
    campaign = desk.session.get(Campaign, task.campaign_id) if task.campaign_id else None
    escalation.send_to(
        desk.session,
        person=visitor.person,
        text=escalation.visit_text(
            desk.session, campaign=campaign, visitor=visitor, resident=resident
        ),
        buttons=escalation.task_buttons(visitor.person.language, task.id),
        priority=Priority.INTERACTIVE,
        kind="task",
        campaign_id=task.campaign_id,
        now=desk.now,
    )
    desk.say("tasks.given", name=visitor.person.name or "?")


def tell_officers(session: Session, *, key: str, now: datetime, **params: object) -> int:
    """A short notice (``officer.outage.*``) to every active officer, through the outbox: on
    Telegram if their chat is verified, else by SMS, in their own language.
    Returns the notices queued."""
    members = session.scalars(
        select(StaffMember).where(
            StaffMember.role == StaffRole.OFFICER, StaffMember.active.is_(True)
        )
    ).all()
    for member in members:
        if member.telegram_chat_id is not None:
            channel, address = Channel.TELEGRAM, str(member.telegram_chat_id)
        else:
            channel, address = Channel.SMS, member.phone
        enqueue(
            session,
            channel=channel,
            address=address,
            text=t(language_of(session, member), f"officer.outage.{key}", **params),
            due_at=now,
        )
    return len(members)


@dataclass(frozen=True)
class Row:
    """One step of the officers' flow, all of it.

    ``ask`` puts the step's question in the replies; ``choices`` are what a button, a number, a
    label or a keyword names (buttons on Telegram, numbered on SMS unless ``numbered`` is False);
    ``text`` takes free text (or raises :class:`Invalid`); ``take`` stores the answer in the draft
    and asks what comes next; ``guard`` says whether this sender may answer it (and refuses, audited,
    when not); ``refused`` answers what the step cannot take (by default, its question again).
    ``standalone`` buttons carry all they need (a task's id), so they count whatever the step.
    """

    ask: Callable[[Desk], None]
    take: Callable[[Desk, Answer], None]
    choices: Callable[[Desk], tuple[Choice, ...]]
    guard: Callable[[Desk], bool] = _may_run_campaigns
    text: Callable[[Desk, str], Answer] | None = None
    refused: Callable[[Desk], None] = _reask
    multi: bool = False
    numbered: bool = True
    standalone: bool = False


# The officers' flow, one row a step.
STEPS: dict[OfficerStep, Row] = {
    OfficerStep.AUDIENCE: Row(
        ask=_asks("audience.ask", OfficerStep.AUDIENCE),
        choices=_audience_choices,
        take=_take_audience,
    ),
    OfficerStep.ZONES: Row(ask=_ask_zones, choices=_zone_choices, multi=True, take=_take_zones),
    OfficerStep.TEMPLATE: Row(
        ask=_asks("template.ask", OfficerStep.TEMPLATE),
        choices=_template_choices,
        take=_take_template,
    ),
    OfficerStep.TEXT: Row(
        ask=_asks("template.text", OfficerStep.TEXT),
        choices=lambda desk: (),
        text=_announcement_text,
        take=_take_text,
    ),
    OfficerStep.CONFIRM: Row(ask=_confirm, choices=_confirm_choices, take=_take_confirm),
    OfficerStep.AGAIN: Row(
        ask=_ask_again,
        choices=_again_choices,
        numbered=False,
        take=_take_again,
        refused=_cancel,
    ),
    OfficerStep.TASK: Row(
        ask=_list_tasks,
        choices=_task_choices,
        guard=_may_manage_tasks,
        standalone=True,
        take=_take_task,
        refused=_tasks_gone,
    ),
    OfficerStep.GIVE: Row(
        ask=_ask_give,
        choices=_member_choices,
        guard=_may_manage_tasks,
        standalone=True,
        take=_take_give,
        refused=_tasks_gone,
    ),
    # Only staff see the alert again (each action is then authorized for the resident's authority).
    OfficerStep.ALERT: Row(
        ask=_ask_alert, choices=_alert_choices, guard=_is_staff, take=_take_alert
    ),
    OfficerStep.LANGUAGE: Row(
        ask=_asks("desk.language_ask", OfficerStep.LANGUAGE),
        choices=_language_choices,
        guard=_is_staff,
        take=_take_language,
    ),
    OfficerStep.MEMBER: Row(
        ask=community.ask_members,
        choices=community.member_choices,
        guard=community.may_manage_members,
        take=community.take_member,
        refused=community.gone,
    ),
    OfficerStep.UNMEMBER: Row(
        ask=community.ask_unmember,
        choices=community.unmember_choices,
        guard=community.may_manage_members,
        take=community.take_unmember,
    ),
}
_STEP_VALUES = frozenset(step.value for step in OfficerStep if step != OfficerStep.IDLE)
