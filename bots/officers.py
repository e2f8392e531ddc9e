"""Officer and coordinator commands over Telegram and SMS, before any resident conversation.

A message starting with ``/drill``, ``/emergency``, ``/status``, ``/unreached``, ``/close`` or
``/tasks`` (and every answer inside a flow one of them started) goes here. Each step asks
:func:`registry.staff.authorize` first: the sender must be active staff behind a verified chat or
phone, allowed the action, for their own authority (or group); the check is audited either way,
and anyone else gets the polite ``staff.not_authorized`` and nothing happens.

``/drill`` and ``/emergency`` build a campaign step by step (audience, template, an announcement's
text), then show :func:`dispatch.estimate.estimate_campaign`'s numbers and wait for a
confirmation; an emergency needs a second, explicit one. The flow's state is kept in the
sender's bots conversation (draft key ``_officer``), so a restart loses nothing. Prompt steps are
``officer.*``: Telegram buttons arrive as ``officer.<step>:<value>``, SMS answers by number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from bots import community
from bots.models import Conversation
from bots.prompts import Choice, Prompt, Request
from bots.words import CARRIER_HELP, CARRIER_OPT_IN, CARRIER_OPT_OUT, clean, fold, number_in
from config.i18n import t
from config.languages import DEFAULT_LANGUAGE, Language
from config.profile import Profile
from config.settings import Settings
from dispatch import escalation
from dispatch import help as help_alerts
from dispatch.campaigns import Audience, CampaignError, start_campaign
from dispatch.estimate import Estimate, estimate_campaign, quiet_hours_of
from dispatch.help import ALERT_BUTTON, AlertAction
from dispatch.models import (
    Answer,
    Campaign,
    CampaignKind,
    CampaignMode,
    CampaignRecipient,
    CampaignStatus,
    OutboxMessage,
    Priority,
    Task,
    TaskStatus,
)
from dispatch.outbox import enqueue
from dispatch.reports import close_campaign, live_status
from dispatch.segments import count_segments
from dispatch.senders import choice_from_reply
from registry.models import Authority, Channel, GroupMember, Person, PersonStatus, Zone
from registry.staff import (
    CoordinatedGroup,
    NotAuthorized,
    StaffAction,
    StaffMember,
    StaffRole,
    authorities_of,
    authorize,
    find_staff,
    record_refusal,
)

STATE = "_officer"
PREFIX = "officer."
COMMANDS: dict[str, StaffAction] = {
    "/drill": StaffAction.START_CAMPAIGN,
    "/emergency": StaffAction.START_CAMPAIGN,
    "/status": StaffAction.VIEW_CAMPAIGN,
    "/unreached": StaffAction.VIEW_UNREACHED,
    "/close": StaffAction.CLOSE_CAMPAIGN,
    "/tasks": StaffAction.MANAGE_GROUP_TASKS,
    "/take": StaffAction.HANDLE_HELP,
    "/done": StaffAction.HANDLE_HELP,
    "/failed": StaffAction.HANDLE_HELP,
    community.MEMBERS: StaffAction.MANAGE_GROUP_MEMBERS,
    community.RESOURCE: StaffAction.MARK_RESOURCE,
}
# A help alert's actions, typed: "/take 12", "/done 12", "/failed 12".
ALERT_COMMANDS = {"/take": AlertAction.TAKE, "/done": AlertAction.DONE, "/failed": AlertAction.FAIL}
# Also a resident's own command (their status and menu): staff's only when staff send it.
SHARED_WITH_BOTS = frozenset({"/status"})
MAX_SMS_SEGMENTS = 3
MAX_LIST = 40  # lines of a Telegram list (unreached people, tasks)
OPEN_TASK = (TaskStatus.OFFERED, TaskStatus.ACCEPTED)
CARRIER_WORDS = CARRIER_OPT_OUT | CARRIER_OPT_IN | CARRIER_HELP


def command_of(text: str | None) -> str | None:
    """The staff command a text starts with (``/drill@HosenBot`` too), or ``None``."""
    words = (text or "").strip().split()
    if not words:
        return None
    word = words[0].split("@", 1)[0].lower()
    return word if word in COMMANDS else None


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
    replies: list[Prompt]

    @property
    def state(self) -> dict[str, Any]:
        state = self.conversation.draft.get(STATE)
        return state if isinstance(state, dict) else {}

    def keep(self, state: dict[str, Any] | None) -> None:
        if state is None:
            self.conversation.draft.pop(STATE, None)
        else:
            self.conversation.draft[STATE] = state
        flag_modified(self.conversation, "draft")
        self.conversation.updated_at = self.now

    def say(
        self, key: str, *, step: str = "", choices: tuple[Choice, ...] = (), **params: Any
    ) -> None:
        text = t(self.language, f"officer.{key}", **params)
        self.replies.append(
            Prompt(text=text, step=f"{PREFIX}{step}" if step else "", choices=choices)
        )

    def refuse(self, member: StaffMember | None) -> None:
        requests = (Request.CONTACT,) if member is None and self.channel == Channel.TELEGRAM else ()
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
        state = conversation.draft.get(STATE) if conversation is not None else None
        in_flow = isinstance(state, dict) and bool(state.get("step"))
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
    state = conversation.draft.get(STATE) if conversation is not None else None
    if not isinstance(state, dict) or command_of(text) is not None:
        return False
    step = state.get("step")
    return step == "again" or (step == "confirm" and state.get("mode") == CampaignMode.DRILL.value)


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
    command = command_of(text)
    answer = button[len(PREFIX) :] if button and button.startswith(PREFIX) else None
    language = conversation.language or DEFAULT_LANGUAGE
    desk = Desk(session, conversation, channel, address, language, profile, settings, now, [])
    member = find_staff(session, channel=channel, address=address)
    on_alert = _alert_action(desk, command, answer, text)
    if on_alert is not None:
        _on_alert(desk, member, *on_alert)
        return desk.replies
    authority = _authority_of(session, member)
    if community.handles(command, answer, desk.state.get("step")):
        community.respond(desk, member, authority.id if authority else None, command, answer, text)
        return desk.replies
    in_tasks = command is None and answer is None and desk.state.get("step") in ("task", "give")
    if command == "/tasks" or (answer or "").startswith(("task", "give")) or in_tasks:
        _tasks(desk, member, authority, command, answer, text)
        return desk.replies
    action = COMMANDS[command] if command else StaffAction.START_CAMPAIGN
    try:
        member = authorize(
            session,
            channel=channel,
            address=address,
            action=action,
            authority_id=authority.id if authority else None,
            now=now,
        )
    except NotAuthorized:
        desk.keep(None)
        desk.refuse(member)
        return desk.replies
    assert authority is not None
    if command in ("/drill", "/emergency"):
        mode = CampaignMode.DRILL if command == "/drill" else CampaignMode.EMERGENCY
        desk.keep({"step": "audience", "mode": mode.value, "campaign": desk.state.get("campaign")})
        _ask_audience(desk)
    elif command == "/status":
        _status(desk, authority)
    elif command == "/unreached":
        _unreached(desk, authority)
    elif command == "/close":
        _close(desk, authority)
    else:
        _answer(desk, member, authority, answer, text)
    return desk.replies


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
    desk: Desk, command: str | None, answer: str | None, text: str | None
) -> tuple[int | None, str] | None:
    """(alert id, action) when the message acts on a help alert: its button, its number by SMS,
    or a typed ``/take 12``."""
    if command in ALERT_COMMANDS:
        _, _, argument = (text or "").strip().partition(" ")
        return number_in(argument), ALERT_COMMANDS[command]
    data: str | None = None
    if answer is not None and answer.startswith("alert:"):
        data = answer.removeprefix("alert:")
    elif command is None and answer is None:
        if desk.state.get("step") == "alert":
            offered, typed = desk.state.get("offered") or [], number_in(text)
            if typed is not None and 1 <= typed <= len(offered):
                data = offered[typed - 1]
        else:
            pushed = _pushed_alert(
                desk.session, channel=desk.channel, address=desk.address, text=text
            )
            data = pushed.removeprefix(f"{ALERT_BUTTON}:") if pushed else None
    if data is None:
        return None
    alert_id, _, action = data.partition(":")
    return (int(alert_id) if alert_id.isdecimal() else None), action


def _on_alert(desk: Desk, member: StaffMember | None, alert_id: int | None, action: str) -> None:
    found = help_alerts.resident_of(desk.session, alert_id) if alert_id is not None else None
    desk.keep({"campaign": desk.state.get("campaign")} if desk.state.get("campaign") else None)
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
        return desk.refuse(member)
    handled = help_alerts.handle(
        desk.session, alert_id=alert.id, action=action, member=member, now=desk.now
    )
    text = t(
        desk.language,
        f"dispatch.alert.{handled.key}",
        alert=alert.id,
        name=resident.name or "?",
        place=escalation.place_of(desk.session, resident, desk.language),
        phone=resident.phone or "-",
        owner=handled.owner or "?",
    )
    if handled.key != "yours":
        return desk.replies.append(Prompt(text=text))
    choices = (
        Choice(f"{alert.id}:{AlertAction.DONE}", t(desk.language, "dispatch.alert.done")),
        Choice(f"{alert.id}:{AlertAction.FAIL}", t(desk.language, "dispatch.alert.fail")),
    )
    desk.keep(
        {
            "step": "alert",
            "offered": [c.value for c in choices],
            "campaign": desk.state.get("campaign"),
        }
    )
    desk.replies.append(Prompt(text=text, step=f"{PREFIX}alert", choices=choices))


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
        for row in rows
    ]
    desk.replies.append(Prompt(text=fitting(desk, head, lines)))


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


def _zone_codes(desk: Desk, authority: Authority) -> list[str]:
    return list(
        desk.session.scalars(
            select(Zone.code).where(Zone.authority_id == authority.id).order_by(Zone.code)
        )
    )


def _ask_audience(desk: Desk) -> None:
    choices = tuple(
        Choice(value, t(desk.language, f"officer.audience.{value}"))
        for value in ("residents", "everyone", "zones")
    )
    desk.say("audience.ask", step="audience", choices=choices)


def _ask_zones(desk: Desk, authority: Authority, selected: list[str]) -> None:
    choices = tuple(
        Choice(code, _zone_name(desk, authority, code)) for code in _zone_codes(desk, authority)
    )
    desk.replies.append(
        Prompt(
            text=t(desk.language, "officer.audience.pick_zones"),
            step=f"{PREFIX}zones",
            choices=choices,
            multi=True,
            selected=frozenset(selected),
        )
    )


def _ask_template(desk: Desk) -> None:
    choices = (
        Choice("checkin", t(desk.language, "officer.template.checkin")),
        Choice("announcement", t(desk.language, "officer.template.announcement")),
    )
    desk.say("template.ask", step="template", choices=choices)


def _pick(desk: Desk, step: str, choices: list[str], answer: str | None, text: str | None) -> str:
    """The choice an answer names: a button ``step:value``, or a number or a value typed."""
    if answer is not None:
        answered_step, _, value = answer.partition(":")
        return value if answered_step == step and value in choices else ""
    number = number_in(text)
    if number is not None and 1 <= number <= len(choices):
        return choices[number - 1]
    typed = (text or "").strip().lower()
    return typed if typed in choices else ""


def _audience(state: dict[str, Any]) -> Audience:
    zones = tuple(state.get("zones") or ())
    return Audience(zones=zones, residents_only=state.get("who") != "everyone")


def _answer(
    desk: Desk, member: StaffMember, authority: Authority, answer: str | None, text: str | None
) -> None:
    state = dict(desk.state)
    step = state.get("step")
    if step == "audience":
        value = _pick(desk, "audience", ["residents", "everyone", "zones"], answer, text)
        if not value:
            return _ask_audience(desk)
        state["who"] = "everyone" if value == "everyone" else "residents"
        state["zones"] = []
        state["step"] = "zones" if value == "zones" else "template"
        desk.keep(state)
        if value == "zones":
            return _ask_zones(desk, authority, [])
        return _ask_template(desk)
    if step == "zones":
        codes = _zone_codes(desk, authority)
        chosen = set(state.get("zones") or [])
        if answer is not None:  # Telegram: each tap toggles a zone; "done" goes on
            answered_step, _, value = answer.partition(":")
            if answered_step == "zones" and value in codes:
                chosen ^= {value}
                state["zones"] = sorted(chosen)
                desk.keep(state)
                return _ask_zones(desk, authority, state["zones"])
            if not (answered_step == "zones" and value == "done" and chosen):
                return _ask_zones(desk, authority, sorted(chosen))
        else:  # SMS: the zones' numbers, e.g. "1 3"
            numbers = [number_in(n) for n in (text or "").replace(",", " ").split()]
            if not numbers or not all(n is not None and 1 <= n <= len(codes) for n in numbers):
                return _ask_zones(desk, authority, sorted(chosen))
            chosen = {codes[n - 1] for n in numbers if n is not None}
        state["zones"] = sorted(chosen)
        state["step"] = "template"
        desk.keep(state)
        return _ask_template(desk)
    if step == "template":
        value = _pick(desk, "template", ["checkin", "announcement"], answer, text)
        if not value:
            return _ask_template(desk)
        state["kind"] = value
        state["step"] = "text" if value == "announcement" else "confirm"
        desk.keep(state)
        if value == "announcement":
            return desk.say("template.text")
        return _confirm(desk, authority, state)
    if step == "text":
        if not (text and text.strip()) or answer is not None:
            return desk.say("template.text")
        state["text"] = text.strip()[:600]
        state["step"] = "confirm"
        desk.keep(state)
        return _confirm(desk, authority, state)
    if step == "confirm":
        value = _pick(desk, "confirm", ["yes", "no"], answer, text)
        if value == "no":
            desk.keep({"campaign": state.get("campaign")})
            return desk.say("cancelled")
        if value != "yes":
            return _confirm(desk, authority, state)
        if state.get("mode") == CampaignMode.EMERGENCY.value:
            state["step"] = "again"
            desk.keep(state)
            return _ask_again(desk, state)
        return _start(desk, member, authority, state)
    if step == "again":
        word = t(desk.language, "officer.confirm.word")
        if _pick(desk, "again", ["send"], answer, None) or fold(text or "") == fold(word):
            return _start(desk, member, authority, state)
        desk.keep({"campaign": state.get("campaign")})
        return desk.say("cancelled")
    desk.keep({"campaign": state.get("campaign")} if state.get("campaign") else None)
    desk.say("help")


def _estimate(desk: Desk, authority: Authority, state: dict[str, Any]) -> Estimate:
    return estimate_campaign(
        desk.session,
        authority=authority,
        audience=_audience(state),
        kind=CampaignKind(state["kind"]),
        mode=CampaignMode(state["mode"]),
        settings=desk.settings,
        now=desk.now,
        text=state.get("text"),
        profile=desk.profile,
    )


def duration(language: Language, seconds: float) -> str:
    if seconds < 90:
        return t(language, "officer.duration.seconds", seconds=max(1, round(seconds)))
    return t(language, "officer.duration.minutes", minutes=round(seconds / 60))


def _confirm(desk: Desk, authority: Authority, state: dict[str, Any]) -> None:
    estimate = _estimate(desk, authority, state)
    mode, kind = state["mode"], state["kind"]
    desk.say(
        "confirm.summary",
        what=t(desk.language, f"officer.what.{mode}_{kind}"),
        people=estimate.recipients,
    )
    zones = ", ".join(
        f"{_zone_name(desk, authority, code)} {count}" for code, count in estimate.zones.items()
    )
    desk.say("confirm.zones", zones=zones or "-")
    if estimate.quiet_hours:
        quiet = quiet_hours_of(desk.profile, authority)
        desk.say("confirm.quiet", start=f"{quiet.start:%H:%M}", end=f"{quiet.end:%H:%M}")
    choices = (
        Choice("yes", t(desk.language, "officer.confirm.yes")),
        Choice("no", t(desk.language, "officer.confirm.no")),
    )
    desk.say(
        "confirm.cost",
        step="confirm",
        choices=choices,
        telegram=estimate.telegram,
        sms=estimate.sms,
        none=estimate.no_channel,
        segments=estimate.sms_segments,
        duration=duration(desk.language, estimate.seconds),
    )


def _ask_again(desk: Desk, state: dict[str, Any]) -> None:
    word = t(desk.language, "officer.confirm.word")
    desk.say("confirm.again", step="again", choices=(Choice("send", word),), word=word)


def _start(desk: Desk, member: StaffMember, authority: Authority, state: dict[str, Any]) -> None:
    try:
        campaign = start_campaign(
            desk.session,
            authority=authority,
            kind=CampaignKind(state["kind"]),
            mode=CampaignMode(state["mode"]),
            audience=_audience(state),
            started_by=f"staff:{member.id}",
            now=desk.now,
            text=state.get("text"),
        )
    except CampaignError:
        desk.keep({"campaign": state.get("campaign")})
        return desk.say("failed")
    desk.keep({"campaign": campaign.id})
    desk.say("started", campaign=campaign.id, people=campaign.recipients)


# --- /status, /unreached, /close ---------------------------------------------------------------


def _current(desk: Desk, authority: Authority, *, active_only: bool = False) -> Campaign | None:
    """The campaign this officer last started, else the authority's latest (active) one."""
    chosen = desk.state.get("campaign")
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
    campaign = _current(desk, authority)
    if campaign is None:
        return desk.say("no_campaign")
    status = live_status(desk.session, campaign=campaign)
    total, tasks = status.total, status.tasks
    desk.say(
        "status",
        campaign=campaign.id,
        what=t(desk.language, f"officer.what.{campaign.mode.value}_{campaign.kind.value}"),
        state=t(desk.language, f"officer.state.{campaign.status.value}"),
        people=total.recipients,
        delivered=total.delivered,
        ok=total.ok,
        help=total.help,
        silent=total.no_answer,
        none=total.no_channel,
        open=sum(tasks.get(s.value, 0) for s in OPEN_TASK),
        done=tasks.get(TaskStatus.DONE.value, 0),
        failed=tasks.get(TaskStatus.NOT_REACHED.value, 0),
    )


def fitting(desk: Desk, head: str, lines: list[str]) -> str:
    """``head`` and as many lines as fit (3 SMS segments; ``MAX_LIST`` lines on Telegram)."""
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
    campaign = _current(desk, authority)
    if campaign is None:
        return desk.say("no_campaign")
    # Names and zones only: what the officer needs to send someone, never a word about needs.
    rows = desk.session.execute(
        select(Person.name, Zone.code)
        .join(CampaignRecipient, CampaignRecipient.person_id == Person.id)
        .outerjoin(Zone, Zone.id == CampaignRecipient.zone_id)
        .where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.answer.in_((Answer.PENDING, Answer.NO_ANSWER)),
        )
        .order_by(Zone.code, Person.name)
    ).all()
    if not rows:
        return desk.say("unreached.none", campaign=campaign.id)
    head = t(desk.language, "officer.unreached.head", campaign=campaign.id, count=len(rows))
    lines = [
        f"{name or '?'} – {_zone_name(desk, authority, code) if code else '-'}"
        for name, code in rows
    ]
    desk.replies.append(Prompt(text=fitting(desk, head, lines)))


def _close(desk: Desk, authority: Authority) -> None:
    campaign = _current(desk, authority, active_only=True)
    if campaign is None:
        return desk.say("no_campaign")
    report = close_campaign(desk.session, campaign=campaign, now=desk.now)
    p50 = report.time_to_answer_seconds.get("p50")
    desk.keep(None)
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


def _tasks(
    desk: Desk,
    member: StaffMember | None,
    authority: Authority | None,
    command: str | None,
    answer: str | None,
    text: str | None,
) -> None:
    groups: list[int | None] = [*_groups_of(desk.session, member)] or [None]
    allowed: list[int] = []
    for group_id in groups:
        try:
            authorize(
                desk.session,
                channel=desk.channel,
                address=desk.address,
                action=StaffAction.MANAGE_GROUP_TASKS,
                authority_id=authority.id if authority else None,
                group_id=group_id,
                now=desk.now,
            )
        except NotAuthorized:
            continue
        if group_id is not None:
            allowed.append(group_id)
    if not allowed and not (member is not None and member.role.value != "coordinator"):
        return desk.refuse(member)
    if not allowed:  # officers and admins see every group of their authority
        from registry.models import Group

        allowed = list(
            desk.session.scalars(
                select(Group.id).where(Group.authority_id == (authority.id if authority else -1))
            )
        )
    tasks = {task.id: task for task in open_tasks(desk.session, group_ids=allowed)}
    step, _, value = (answer or "").partition(":")
    state = desk.state
    if answer is None and command is None and state.get("step") in ("task", "give"):
        # By SMS: the number of a choice in the list we sent last.
        offered, typed = state.get("offered") or [], number_in(text)
        if typed is None or not 1 <= typed <= len(offered):
            desk.keep({"campaign": state.get("campaign")})
            return desk.say("tasks.gone")
        step, value = state["step"], offered[typed - 1]
    named = value.partition("-")[0] if step in ("task", "give") else ""
    if named.isdecimal() and _outside(desk.session, int(named), allowed):
        # A task outside what this member manages (a forged or stale button): refused, and
        # audited as refused whatever the groups they do manage.
        record_refusal(
            desk.session,
            channel=desk.channel,
            address=desk.address,
            member=member,
            reason="group",
            now=desk.now,
            action=StaffAction.MANAGE_GROUP_TASKS.value,
            task_id=int(named),
        )
        desk.keep({"campaign": state.get("campaign")})
        return desk.refuse(member)
    if step == "task" and value.isdecimal() and int(value) in tasks:
        return _ask_member(desk, tasks[int(value)], allowed)
    if step == "give":
        task_id, _, person_id = value.partition("-")
        task = tasks.get(int(task_id)) if task_id.isdecimal() else None
        desk.keep({"campaign": state.get("campaign")})
        if task is not None and person_id.isdecimal():
            return _give(desk, task, int(person_id), allowed)
        return desk.say("tasks.gone")
    if not tasks:
        return desk.say("tasks.none")
    choices = []
    for task in list(tasks.values())[:MAX_LIST]:
        resident = desk.session.get(Person, task.resident_id)
        volunteer = desk.session.get(Person, task.volunteer_id)
        status = t(desk.language, f"officer.tasks.{task.status.value}")
        label = (
            f"{(resident.name if resident else None) or '?'} – "
            f"{(volunteer.name if volunteer else None) or '?'} ({status})"
        )
        choices.append(Choice(str(task.id), label))
    _offer(desk, "task", _fitting_choices(desk, choices), "tasks.head", count=len(tasks))


def _outside(session: Session, task_id: int, groups: list[int]) -> bool:
    """Whether the task exists and belongs to none of ``groups``."""
    task = session.get(Task, task_id)
    return task is not None and task.group_id not in groups


def _fitting_choices(desk: Desk, choices: list[Choice]) -> list[Choice]:
    """By SMS, as many choices as a three-segment numbered list holds."""
    if desk.channel != Channel.SMS:
        return choices
    kept: list[Choice] = []
    for choice in choices:
        lines = [f"{n} {c.label}" for n, c in enumerate([*kept, choice], 1)]
        if count_segments("\n".join(lines)) > MAX_SMS_SEGMENTS:
            break
        kept.append(choice)
    return kept


def _offer(desk: Desk, step: str, choices: list[Choice], key: str, **params: Any) -> None:
    """Ask with buttons, and remember the choices for an SMS answer by number."""
    desk.keep(
        {
            "step": step,
            "offered": [c.value for c in choices],
            "campaign": desk.state.get("campaign"),
        }
    )
    desk.say(key, step=step, choices=tuple(choices), **params)


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


def _ask_member(desk: Desk, task: Task, group_ids: list[int]) -> None:
    choices = [
        Choice(f"{task.id}-{person.id}", person.name or "?")
        for person in _members(desk, group_ids)[:MAX_LIST]
    ]
    _offer(desk, "give", _fitting_choices(desk, choices), "tasks.pick")


def _give(desk: Desk, task: Task, person_id: int, group_ids: list[int]) -> None:
    member = next((p for p in _members(desk, group_ids) if p.id == person_id), None)
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
    Telegram if their chat is verified, else by SMS, in the language they talk to the bot in.
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
        language = session.scalar(
            select(Conversation.language).where(
                Conversation.channel == channel, Conversation.address == address
            )
        )
        enqueue(
            session,
            channel=channel,
            address=address,
            text=t(language or DEFAULT_LANGUAGE, f"officer.outage.{key}", **params),
            due_at=now,
        )
    return len(members)
