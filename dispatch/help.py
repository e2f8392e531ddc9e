"""Help alerts: every call for help has an owner, and one nobody takes climbs.

A resident's "I need help" (an answer to a check-in) or a request for help at any time becomes a
help alert (``Alert`` of a kind in ``HELP_KINDS``). :func:`raise_help` pushes it at once, through
the outbox, to the first officer on duty of the resident's authority, with one button (Telegram)
or one number (SMS) to take it. The alert's ``due_at`` is its timer: while it stays open,
:func:`run_alert_climbs` (the scheduler's sweep) sends it to the next officer after the
authority's ``alert_climb_after``, and after as long again to all of them.

A resident nobody can be sent to (``NO_BUDDY``) and a visit that could not reach them
(``NOT_REACHED``) are owned the same way (:func:`raise_owned`): one push, one take button, one
climb. Taking, closing ("done") and giving up ("could not help") are audited. The resident hears that
someone is on the way only when a named person has accepted: the officer who takes the alert, or
the volunteer who accepts the visit (first name only, :func:`tell_on_the_way`). SMS texts carry
no medical detail: the resident's own words and what they need go to Telegram only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from dispatch.escalation import campaign_text, place_of, send_to
from dispatch.models import (
    HELP_KINDS,
    OWNED_KINDS,
    Alert,
    AlertKind,
    AlertState,
    Campaign,
    ChannelGate,
    HelpNeed,
    Priority,
    Task,
    TaskReason,
    TaskStatus,
)
from dispatch.outbox import enqueue
from registry import audit
from registry.models import Authority, Channel, Person
from registry.staff import StaffMember, StaffRole, language_of

log = logging.getLogger("hosen.help")

ALERT_BUTTON = "officer.alert"  # Telegram callback data officer.alert:<id>:take|done|fail
LAST_RUNG = 2  # 0: the first officer, 1: the next one, 2: all of them
SWEEP_BATCH = 200


# --- who is on duty ------------------------------------------------------------------------------


def officers_on_duty(session: Session, *, authority_id: int) -> list[StaffMember]:
    """Active officers (then administrators) of the authority or the whole cluster, in a stable
    order: the first gets a new alert, the next one gets it when it climbs."""
    members = session.scalars(
        select(StaffMember)
        .where(
            StaffMember.active.is_(True),
            StaffMember.role.in_((StaffRole.OFFICER, StaffRole.ADMIN)),
            or_(StaffMember.authority_id == authority_id, StaffMember.authority_id.is_(None)),
        )
        .order_by(StaffMember.id)
    ).all()
    return sorted(members, key=lambda m: (m.role != StaffRole.OFFICER, m.id))


def _address(session: Session, member: StaffMember) -> tuple[Channel, str]:
    """The officer's Telegram chat, unless Telegram is down and they have a phone: an alert waits
    for nobody's provider (the channel-down notice goes the same way, dispatch.outages)."""
    if member.telegram_chat_id is not None:
        gate = session.get(ChannelGate, Channel.TELEGRAM)
        if gate is None or gate.down_since is None or not member.phone:
            return Channel.TELEGRAM, str(member.telegram_chat_id)
    return Channel.SMS, member.phone


def _first(name: str | None) -> str:
    return (name or "").split(" ")[0][:30]


# --- raising and pushing -------------------------------------------------------------------------


def open_help_alert(session: Session, *, resident_id: int) -> Alert | None:
    """The resident's help alert that is still open or taken, if any (there is at most one)."""
    return session.scalars(
        select(Alert)
        .where(
            Alert.person_id == resident_id,
            Alert.kind.in_(HELP_KINDS),
            Alert.state.in_((AlertState.OPEN, AlertState.TAKEN)),
        )
        .order_by(Alert.id.desc())
        .limit(1)
    ).first()


def raise_help(
    session: Session,
    *,
    resident: Person,
    campaign: Campaign | None,
    kind: AlertKind,
    now: datetime,
    need: HelpNeed | None = None,
    detail: str | None = None,
) -> Alert:
    """A help alert for ``resident``, pushed at once to the first officer on duty (the caller
    commits). While one is open or taken for them (two check-ins answered "help" at once, a
    second message asking again), that one stands: the new words are added to it, and nobody
    is pushed twice."""
    assert kind in HELP_KINDS
    existing = open_help_alert(session, resident_id=resident.id)
    if existing is not None:
        words = detail.strip() if detail else ""
        if words and words not in (existing.detail or ""):
            existing.detail = " | ".join(filter(None, [existing.detail, words]))[:500]
        if existing.need in (None, HelpNeed.OTHER) and need not in (None, HelpNeed.OTHER):
            existing.need = need
        return existing
    alert = Alert(
        campaign_id=campaign.id if campaign else None,
        person_id=resident.id,
        kind=kind,
        created_at=now,
        state=AlertState.OPEN,
        climb=0,
        need=need,
        detail=detail.strip()[:500] if detail and detail.strip() else None,
    )
    session.add(alert)
    session.flush()
    _push_rung(session, alert=alert, resident=resident, now=now)
    return alert


def _push_rung(session: Session, *, alert: Alert, resident: Person, now: datetime) -> None:
    """Send the alert to the officers of its current rung and set the timer for the next."""
    officers = officers_on_duty(session, authority_id=resident.authority_id)
    authority = session.get(Authority, resident.authority_id)
    after = timedelta(seconds=authority.alert_climb_after if authority else 600)
    if not officers:
        # Nobody to push to: the alert waits on /status, the console and `hosen help list`, and
        # the sweep looks again after the climb time (an officer may have come on duty).
        log.warning("%s alert %s: no officer on duty to push it to", alert.kind.value, alert.id)
        alert.due_at = now + after
        return
    rung = min(alert.climb, LAST_RUNG)
    if rung < len(officers) and rung < LAST_RUNG:
        targets = [officers[rung]]
    else:
        targets, rung = officers, LAST_RUNG
    for member in targets:
        _push(session, alert=alert, resident=resident, member=member, now=now)
    alert.climb = rung + 1
    alert.due_at = now + after if rung < LAST_RUNG else None


def _push(
    session: Session, *, alert: Alert, resident: Person, member: StaffMember, now: datetime
) -> None:
    channel, address = _address(session, member)
    language = language_of(session, member)
    lines = [_push_text(session, alert=alert, resident=resident, language=language)]
    if alert.climb > 0:
        minutes = max(1, round((now - alert.created_at).total_seconds() / 60))
        lines.insert(0, t(language, "dispatch.alert.climbed", minutes=minutes))
    if alert.later_ok_at is not None:
        lines.append(t(language, "dispatch.answered.mark"))
    if channel == Channel.TELEGRAM:
        # Never by SMS: what they need and their own words may be health data.
        if alert.need is not None:
            lines.append(t(language, f"dispatch.need.{alert.need.value}"))
        if alert.detail:
            lines.append(f"“{alert.detail}”")
    buttons = [[(t(language, "dispatch.alert.take"), f"{ALERT_BUTTON}:{alert.id}:take")]]
    from dispatch.campaigns import for_channel

    text = "\n".join(lines)
    rows = [[{"text": label, "data": data} for label, data in row] for row in buttons]
    enqueue(
        session,
        channel=channel,
        address=address,
        text=for_channel(text, rows, channel),
        buttons=buttons,
        priority=Priority.INTERACTIVE,
        kind="alert",
        campaign_id=alert.campaign_id,
        due_at=now,
        now=now,
    )


def _push_text(session: Session, *, alert: Alert, resident: Person, language: Language) -> str:
    """What the officer reads first: the kind of alert, who, where, and its number."""
    fields = {
        "alert": alert.id,
        "name": resident.name or "?",
        "place": place_of(session, resident, language),
        "phone": resident.phone or "-",
    }
    if alert.kind == AlertKind.NO_BUDDY:
        # The visit nobody can make was for a call for help, or for silence: say which is true.
        asked = session.scalars(
            select(Alert.id)
            .where(
                Alert.person_id == resident.id,
                Alert.kind.in_(HELP_KINDS),
                Alert.state.in_((AlertState.OPEN, AlertState.TAKEN)),
            )
            .limit(1)
        ).first()
        key = "push_no_buddy_help" if asked is not None else "push_no_buddy"
        return t(language, f"dispatch.owned.{key}", **fields)
    if alert.kind == AlertKind.NOT_REACHED:
        task = session.get(Task, alert.task_id) if alert.task_id is not None else None
        visitor = session.get(Person, task.volunteer_id) if task is not None else None
        following = session.scalars(
            select(Task)
            .where(
                Task.resident_id == resident.id,
                Task.id > (alert.task_id or 0),
                Task.status.in_((TaskStatus.OFFERED, TaskStatus.ACCEPTED)),
            )
            .order_by(Task.id.desc())
            .limit(1)
        ).first()
        going = session.get(Person, following.volunteer_id) if following is not None else None
        fields["visitor"] = (visitor.name if visitor else None) or "?"
        if going is not None:
            return t(language, "dispatch.not_reached.push_next", next=going.name or "?", **fields)
        return t(language, "dispatch.not_reached.push_nobody", **fields)
    return t(language, f"dispatch.alert.push_{alert.kind.value}", **fields)


def raise_owned(
    session: Session,
    *,
    resident: Person,
    campaign_id: int | None,
    kind: AlertKind,
    now: datetime,
    task_id: int | None = None,
    push: bool = True,
) -> Alert:
    """A "no buddy" or "could not reach" alert, owned as a help alert is: pushed at once to the
    first officer on duty with a take button, climbing while nobody takes it (``push=False``: the
    caller pushes it with :func:`push_owned` once it knows more). A "no buddy" while one for the
    same resident and check-in is open is that one (nobody is pushed twice for it). The caller
    commits."""
    assert kind in OWNED_KINDS and kind not in HELP_KINDS
    if kind == AlertKind.NO_BUDDY:
        existing = session.scalars(
            select(Alert)
            .where(
                Alert.person_id == resident.id,
                Alert.campaign_id.is_(None)
                if campaign_id is None
                else Alert.campaign_id == campaign_id,
                Alert.kind == AlertKind.NO_BUDDY,
                Alert.state.in_((AlertState.OPEN, AlertState.TAKEN)),
            )
            .limit(1)
        ).first()
        if existing is not None:
            return existing
    alert = Alert(
        campaign_id=campaign_id,
        person_id=resident.id,
        kind=kind,
        task_id=task_id,
        created_at=now,
        state=AlertState.OPEN,
        climb=0,
    )
    session.add(alert)
    session.flush()
    if push:
        push_owned(session, alert=alert, resident=resident, now=now)
    return alert


def push_owned(session: Session, *, alert: Alert, resident: Person, now: datetime) -> bool:
    """Push an owned alert to its first rung; False when no officer is on duty to push it to (it
    waits on the officers' list), so that nobody is told the emergency team has been told."""
    _push_rung(session, alert=alert, resident=resident, now=now)
    return alert.climb > 0


def run_alert_climbs(session: Session, *, now: datetime) -> int:
    """Push every open owned alert whose timer is due to its next rung; returns how many."""
    query = (
        select(Alert)
        .where(Alert.state == AlertState.OPEN, Alert.due_at <= now)
        .order_by(Alert.due_at, Alert.id)
        .limit(SWEEP_BATCH)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    alerts = session.scalars(query).all()
    for alert in alerts:
        resident = session.get(Person, alert.person_id) if alert.person_id else None
        if resident is None:
            alert.due_at = None
            continue
        _push_rung(session, alert=alert, resident=resident, now=now)
    return len(alerts)


# --- the resident hears the truth ----------------------------------------------------------------


def tell_on_the_way(
    session: Session,
    *,
    resident: Person,
    name: str | None,
    campaign: Campaign | None,
    now: datetime,
) -> None:
    """Tell a resident who asked for help that a person who accepted is on the way (first name)."""
    first = _first(name)
    key = "dispatch.ack.help_taken" if first else "dispatch.ack.help_taken_unnamed"
    send_to(
        session,
        person=resident,
        text=campaign_text(campaign, resident.language, key, volunteer=first),
        buttons=None,
        priority=Priority.INTERACTIVE,
        kind="ack",
        campaign_id=campaign.id if campaign else None,
        now=now,
    )


# --- the resident says "I'm OK" after asking for help ------------------------------------------


def said_ok_after_help(session: Session, *, answered_at: dict[int, datetime]) -> set[int]:
    """Residents (id -> when) answered a check-in "I'm OK": an owned alert of theirs that is open
    or taken stays as it is (its owner, its climb: the officer decides whether help is still
    needed), but it records the answer, which the officers' lists show, and the officers who
    know of it are told once: its owner, else those it was pushed to. Returns the residents
    whose help alert (``HELP_KINDS``) is open. The caller commits."""
    ids = sorted(answered_at)
    still_open: set[int] = set()
    for start in range(0, len(ids), 2000):
        for alert in session.scalars(
            select(Alert)
            .where(
                Alert.person_id.in_(ids[start : start + 2000]),
                Alert.kind.in_(OWNED_KINDS),
                Alert.state.in_((AlertState.OPEN, AlertState.TAKEN)),
            )
            .order_by(Alert.id)
        ):
            assert alert.person_id is not None
            if alert.kind in HELP_KINDS:
                still_open.add(alert.person_id)
            if alert.later_ok_at is not None:
                continue  # told already
            now = answered_at[alert.person_id]
            alert.later_ok_at = now
            resident = session.get(Person, alert.person_id)
            if resident is not None:
                for member in _who_knows(session, alert=alert, resident=resident):
                    _tell_said_ok(session, alert=alert, resident=resident, member=member, now=now)
    return still_open


def _who_knows(session: Session, *, alert: Alert, resident: Person) -> list[StaffMember]:
    """The officer who owns the alert; else the officers it has been pushed to so far."""
    if alert.owner_staff_id is not None:
        owner = session.get(StaffMember, alert.owner_staff_id)
        return [owner] if owner is not None and owner.active else []
    officers = officers_on_duty(session, authority_id=resident.authority_id)
    return officers if alert.climb > LAST_RUNG else officers[: alert.climb]


def _tell_said_ok(
    session: Session, *, alert: Alert, resident: Person, member: StaffMember, now: datetime
) -> None:
    from dispatch.campaigns import for_channel

    channel, address = _address(session, member)
    language = language_of(session, member)
    text = t(language, "dispatch.answered.officer", alert=alert.id, name=resident.name or "?")
    enqueue(
        session,
        channel=channel,
        address=address,
        text=for_channel(text, None, channel),
        priority=Priority.INTERACTIVE,
        kind="alert",
        campaign_id=alert.campaign_id,
        due_at=now,
        now=now,
    )


def reaches(session: Session, person: Person) -> bool:
    """Whether a message to ``person`` goes out at all (what :func:`send_to` needs): a landline
    resident without Telegram or SMS is told nothing in writing, so nobody may say they were."""
    from dispatch.escalation import channel_for

    return person.reachable and channel_for(session, person) != Channel.NONE


# --- help at any time ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HelpRequest:
    """A recorded request: its alert, and the visit task (None: it waits in the officers' queue)."""

    alert: Alert
    task: Task | None


def request_help(
    session: Session,
    *,
    resident: Person,
    need: HelpNeed,
    detail: str | None,
    now: datetime,
    channel: Channel | None = None,
) -> HelpRequest:
    """A resident asks for help outside any check-in (by words, or the menu's entry).

    Recorded as a help alert pushed to the officers on duty (and climbing), with a visit task for
    the resident's buddy, else a coordinator of the resident's group; with neither it waits in
    the officers' queue. The resident is told the truth: the team has the request (and the
    emergency numbers), never that someone is coming. The caller commits."""
    from dispatch.escalation import choose_visitor, resident_group_visitor, send_visit

    alert = raise_help(
        session,
        resident=resident,
        campaign=None,
        kind=AlertKind.HELP_REQUEST,
        now=now,
        need=need,
        detail=detail,
    )
    task = None
    if choose_visitor(session, resident_id=resident.id, now=now) or resident_group_visitor(
        session, resident=resident, now=now
    ):
        task = send_visit(
            session, campaign=None, resident=resident, reason=TaskReason.HELP, now=now
        )
    if task is not None:
        alert.task_id = task.id
    send_to(
        session,
        person=resident,
        text=t(resident.language, "dispatch.ack.help"),
        buttons=None,
        priority=Priority.INTERACTIVE,
        kind="ack",
        campaign_id=None,
        now=now,
        channel=channel,
    )
    return HelpRequest(alert=alert, task=task)


def describe_request(
    session: Session, *, alert_id: int, need: HelpNeed | None, detail: str | None
) -> bool:
    """The resident says more about a request already pushed (the kind they chose when asked,
    or a few words): the kind replaces "other", the words are added. Only while the request is
    open or taken; returns whether it was updated. The caller commits."""
    alert = session.get(Alert, alert_id)
    if alert is None or alert.kind not in HELP_KINDS:
        return False
    if alert.state not in (AlertState.OPEN, AlertState.TAKEN):
        return False
    if need is not None and need != HelpNeed.OTHER and alert.need in (None, HelpNeed.OTHER):
        alert.need = need
    words = detail.strip() if detail else ""
    if words and words not in (alert.detail or ""):
        alert.detail = " | ".join(filter(None, [alert.detail, words]))[:500]
    return True


# --- officers act on an alert --------------------------------------------------------------------


class AlertAction:
    TAKE = "take"
    DONE = "done"
    FAIL = "fail"


@dataclass(frozen=True)
class Handled:
    """What happened to an officer's action: ``key`` of ``dispatch.alert.*`` to tell them."""

    key: str
    alert: Alert | None
    resident: Person | None = None
    owner: str = ""


def resident_of(session: Session, alert_id: int) -> tuple[Alert, Person] | None:
    alert = session.get(Alert, alert_id)
    if alert is None or alert.kind not in OWNED_KINDS or alert.person_id is None:
        return None
    resident = session.get(Person, alert.person_id)
    return (alert, resident) if resident is not None else None


def handle(
    session: Session, *, alert_id: int, action: str, member: StaffMember, now: datetime
) -> Handled:
    """An officer takes, closes or gives up an owned alert (already authorized; audited here)."""
    found = resident_of(session, alert_id)
    if found is None:
        return Handled("gone", None)
    alert, resident = found
    actor = f"staff:{member.id}"
    if action == AlertAction.TAKE:
        if alert.state == AlertState.TAKEN and alert.owner_staff_id == member.id:
            return Handled("yours", alert, resident)
        if alert.state != AlertState.OPEN:
            return Handled("taken_by", alert, resident, owner=owner_name(session, alert))
        alert.state, alert.owner_staff_id, alert.taken_at, alert.due_at = (
            AlertState.TAKEN,
            member.id,
            now,
            None,
        )
        audit.record(
            session, actor=actor, action="help.take", person_id=resident.id, at=now, alert=alert.id
        )
        if alert.kind in HELP_KINDS:  # who asked for help hears who took it; a silent one, not
            campaign = session.get(Campaign, alert.campaign_id) if alert.campaign_id else None
            tell_on_the_way(
                session, resident=resident, name=member.name, campaign=campaign, now=now
            )
        return Handled("yours", alert, resident)
    if action not in (AlertAction.DONE, AlertAction.FAIL):
        return Handled("gone", alert)
    if alert.state not in (AlertState.OPEN, AlertState.TAKEN):
        return Handled("gone", alert)
    done = action == AlertAction.DONE
    alert.state = AlertState.DONE if done else AlertState.FAILED
    alert.owner_staff_id = alert.owner_staff_id or member.id
    alert.taken_at = alert.taken_at or now
    alert.resolved_at, alert.due_at = now, None
    audit.record(
        session,
        actor=actor,
        action="help.done" if done else "help.failed",
        person_id=resident.id,
        at=now,
        alert=alert.id,
    )
    return Handled("closed_done" if done else "closed_failed", alert, resident)


def owner_name(session: Session, alert: Alert) -> str:
    if alert.owner_staff_id is not None:
        member = session.get(StaffMember, alert.owner_staff_id)
        return member.name if member else "?"
    if alert.owner_person_id is not None:
        person = session.get(Person, alert.owner_person_id)
        return (person.name if person else None) or "?"
    return ""


# --- the volunteer sent to the resident ----------------------------------------------------------


def volunteer_accepted(session: Session, *, task: Task, volunteer: Person, now: datetime) -> None:
    """The volunteer accepted a help visit: an alert nobody had taken is theirs (it stops
    climbing); one an officer took stays the officer's."""
    alert = open_help_alert(session, resident_id=task.resident_id)
    if alert is not None and alert.state == AlertState.OPEN:
        alert.state, alert.owner_person_id, alert.taken_at, alert.due_at = (
            AlertState.TAKEN,
            volunteer.id,
            now,
            None,
        )


def volunteer_finished(
    session: Session, *, task: Task, volunteer: Person, done: bool, now: datetime
) -> None:
    """The volunteer reported the help visit: done closes an alert that was theirs; "could not
    reach" gives it back to the officers at once (open again, climbing from the first)."""
    alert = open_help_alert(session, resident_id=task.resident_id)
    if alert is None or alert.owner_person_id != volunteer.id:
        return
    if done:
        alert.state, alert.resolved_at, alert.due_at = AlertState.DONE, now, None
        return
    alert.state, alert.owner_person_id, alert.taken_at = AlertState.OPEN, None, None
    alert.climb, alert.due_at = 0, now


# --- the officers' list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenHelp:
    alert_id: int
    kind: AlertKind
    state: AlertState
    resident: str
    zone: str
    age_seconds: float
    owner: str
    need: HelpNeed | None
    later_ok_at: datetime | None = None  # the resident has since answered a check-in "I'm OK"


def open_help(
    session: Session, *, authority_id: int | None, now: datetime, language: Language
) -> list[OpenHelp]:
    """Owned alerts (help, no buddy, could not reach) not yet closed, oldest first, with their
    age and owner ("" for nobody)."""
    query = (
        select(Alert, Person)
        .join(Person, Person.id == Alert.person_id)
        .where(Alert.kind.in_(OWNED_KINDS), Alert.state.in_((AlertState.OPEN, AlertState.TAKEN)))
        .order_by(Alert.created_at, Alert.id)
    )
    if authority_id is not None:
        query = query.where(Person.authority_id == authority_id)
    return [
        OpenHelp(
            alert_id=alert.id,
            kind=alert.kind,
            state=alert.state,
            resident=person.name or "?",
            zone=place_of(session, person, language, address=False),
            age_seconds=(now - alert.created_at).total_seconds(),
            owner=owner_name(session, alert),
            need=alert.need,
            later_ok_at=alert.later_ok_at,
        )
        for alert, person in session.execute(query).all()
    ]
