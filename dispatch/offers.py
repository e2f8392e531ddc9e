"""Offers: each volunteer is told the role or the buddy pair the assignment engine gave them, and
answers.

The engine's change rows (:class:`~registry.assignment.models.AssignmentChange`) are this
module's to-do list. A new or re-ranked seat becomes an :class:`AssignmentOffer`; a volunteer is
asked one seat at a time (their role first, then their residents, primary before backup), so that
one answer on SMS can only mean one seat. An offer says what the role means (the profile's
``duties``), or the resident's first name, street and, on Telegram only and only when the resident
consented to share their needs with their volunteer, the help they may need (never in an SMS).

Accept and decline are two buttons on Telegram (``o:<offer>:yes|no``) and two numbers on SMS:
:data:`ACCEPT_NUMBER` and :data:`DECLINE_NUMBER`, which no check-in, task or menu uses (a check-in
is answered "1"/"2"), so a number can never answer the wrong question, whatever else is open. The
buttons carry those numbers themselves, so a Telegram offer that falls back to SMS keeps them.

Accepting confirms the seat (a resident is then told their buddy's first name). Declining re-plans
that seat alone (``registry.assignment.store.decline_buddy``/``decline_role``: everyone else's
seats stay as they are) and the volunteer it goes to is asked at once. An offer nobody answers is
reminded after the authority's ``offer_reminder`` and re-planned ``offer_expiry`` after that: the
timers are rows (``due_at``), moved by :func:`sweep_offers` on the injected clock. A released seat
is withdrawn, and its volunteer told if they had been asked. Nothing here commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from config.profile import Profile, Timings
from dispatch.campaigns import first_name, for_channel
from dispatch.escalation import channel_for
from dispatch.models import OutboxMessage, Priority
from dispatch.outbox import enqueue
from dispatch.senders import choice_from_reply
from registry import audit
from registry.assignment.models import (
    OPEN_OFFER,
    PENDING_OFFER,
    AssignmentChange,
    AssignmentOffer,
    OfferState,
)
from registry.assignment.store import NotDeclinable, decline_buddy, decline_role
from registry.models import (
    ACTIVE_ASSIGNMENT,
    AssignmentStatus,
    Authority,
    BuddyAssignment,
    Channel,
    ConsentKind,
    Person,
    PersonStatus,
    RoleAssignment,
    Shelter,
    Zone,
)

ACCEPT, DECLINE = "yes", "no"
ACCEPT_NUMBER, DECLINE_NUMBER = "7", "8"
OFFER_KIND = "offer"  # the outbox kind of an offer and its reminder
NOTICE_KIND = "notice"  # released, expired, and a resident told their buddy's name
SWEEP_BATCH = 500
ANSWER_WINDOW = timedelta(days=14)  # how far back a number is matched to an offer message


@dataclass(frozen=True)
class Swept:
    notified: int = 0  # change rows turned into offers (or release notices)
    offered: int = 0
    reminded: int = 0
    expired: int = 0

    def total(self) -> int:
        return self.notified + self.offered + self.reminded + self.expired


# --- the sweep -------------------------------------------------------------------------------


def sweep_offers(
    session: Session, *, profile: Profile, now: datetime, limit: int = SWEEP_BATCH
) -> Swept:
    """One round: expire and remind what is due, turn new changes into offers, send the next
    offer of every volunteer who has none open."""
    expired, reminded = _remind_and_expire(session, profile=profile, now=now, limit=limit)
    notified = notify_changes(session, profile=profile, now=now, limit=limit)
    offered = send_queued(session, profile=profile, now=now, limit=limit)
    return Swept(notified=notified, offered=offered, reminded=reminded, expired=expired)


def notify_changes(
    session: Session,
    *,
    profile: Profile,
    now: datetime,
    limit: int = SWEEP_BATCH,
    ids: Iterable[int] | None = None,
) -> int:
    """The engine's changes not yet acted on (or only ``ids``): a new or re-ranked seat is
    queued to be offered, a released one withdrawn (and its volunteer told, if asked before)."""
    query = select(AssignmentChange).where(AssignmentChange.notified_at.is_(None))
    if ids is not None:
        query = query.where(AssignmentChange.id.in_(list(ids)))
    changes = list(session.scalars(query.order_by(AssignmentChange.id).limit(limit)))
    for change in changes:
        told, confirmed = _withdraw(
            session, kind=change.kind, assignment_id=change.assignment_id, now=now
        )
        if change.action in ("new", "rank"):
            session.add(
                AssignmentOffer(
                    kind=change.kind,
                    assignment_id=change.assignment_id,
                    volunteer_id=change.volunteer_id,
                    state=OfferState.QUEUED.value,
                    created_at=now,
                )
            )
        elif change.action == "released":
            if told:
                _tell_released(session, change=change, profile=profile, now=now)
            if confirmed and change.kind == "buddy":
                # The resident was told this buddy's name: they are told it no longer holds.
                _tell_resident_released(session, change=change, now=now)
        change.notified_at = now
    session.flush()
    return len(changes)


def _withdraw(
    session: Session, *, kind: str, assignment_id: int, now: datetime
) -> tuple[bool, bool]:
    """Withdraw the seat's pending offers; whether its volunteer had been asked or had accepted,
    and whether they had accepted (a buddy's resident was then told their name)."""
    offers = list(
        session.scalars(
            select(AssignmentOffer).where(
                AssignmentOffer.kind == kind,
                AssignmentOffer.assignment_id == assignment_id,
                AssignmentOffer.state.in_((*PENDING_OFFER, OfferState.CONFIRMED.value)),
            )
        )
    )
    told = confirmed = False
    for offer in offers:
        told = told or offer.state != OfferState.QUEUED.value
        confirmed = confirmed or offer.state == OfferState.CONFIRMED.value
        if offer.state != OfferState.CONFIRMED.value:
            offer.state, offer.due_at = OfferState.WITHDRAWN.value, None
    return told, confirmed


def send_queued(
    session: Session,
    *,
    profile: Profile,
    now: datetime,
    limit: int = SWEEP_BATCH,
    volunteers: Iterable[int] | None = None,
) -> int:
    """Send the next queued offer of each volunteer (or only ``volunteers``) with none open."""
    busy = select(AssignmentOffer.volunteer_id).where(AssignmentOffer.state.in_(OPEN_OFFER))
    query = select(AssignmentOffer).where(
        AssignmentOffer.state == OfferState.QUEUED.value, AssignmentOffer.volunteer_id.not_in(busy)
    )
    if volunteers is not None:
        query = query.where(AssignmentOffer.volunteer_id.in_(list(volunteers)))
    # Their role first, then their residents in the order they were planned.
    queued = session.scalars(
        query.order_by(
            AssignmentOffer.volunteer_id, AssignmentOffer.kind.desc(), AssignmentOffer.id
        ).limit(limit * 4)
    )
    firsts: dict[int, AssignmentOffer] = {}
    for offer in queued:
        firsts.setdefault(offer.volunteer_id, offer)
    sent = 0
    for offer in list(firsts.values())[:limit]:
        if _offer(session, offer=offer, profile=profile, now=now):
            sent += 1
    return sent


def _offer(session: Session, *, offer: AssignmentOffer, profile: Profile, now: datetime) -> bool:
    seat = _seat(session, offer)
    volunteer = session.get(Person, offer.volunteer_id)
    if seat is None or volunteer is None or volunteer.status == PersonStatus.ERASED:
        offer.state, offer.due_at = OfferState.WITHDRAWN.value, None
        return False
    channel = channel_for(session, volunteer)
    if channel == Channel.NONE or not volunteer.reachable:
        # Nobody can ask them: someone else is planned for the seat, as after no answer.
        offer.state, offer.due_at = OfferState.EXPIRED.value, None
        _replan(session, offer=offer, profile=profile, actor="offers:unreachable", now=now)
        return False
    text = offer_text(session, offer=offer, volunteer=volunteer, channel=channel, profile=profile)
    _send(session, offer=offer, volunteer=volunteer, channel=channel, text=text, now=now)
    offer.state, offer.channel, offer.offered_at = OfferState.OFFERED.value, channel.value, now
    offer.due_at = now + timedelta(minutes=_timings(session, profile, volunteer).offer_reminder)
    return True


def _remind_and_expire(
    session: Session, *, profile: Profile, now: datetime, limit: int
) -> tuple[int, int]:
    due = list(
        session.scalars(
            select(AssignmentOffer)
            .where(AssignmentOffer.state.in_(OPEN_OFFER), AssignmentOffer.due_at <= now)
            .order_by(AssignmentOffer.due_at, AssignmentOffer.id)
            .limit(limit)
        )
    )
    expired = reminded = 0
    for offer in due:
        volunteer = session.get(Person, offer.volunteer_id)
        seat = _seat(session, offer)
        if volunteer is None or seat is None:
            offer.state, offer.due_at = OfferState.WITHDRAWN.value, None
            continue
        if offer.state == OfferState.OFFERED.value and volunteer.reachable:
            channel = Channel(offer.channel or channel_for(session, volunteer).value)
            if channel != Channel.NONE:
                body = offer_text(
                    session, offer=offer, volunteer=volunteer, channel=channel, profile=profile
                )
                text = f"{t(volunteer.language, 'assign.offer.reminder')}\n{body}"
                _send(
                    session, offer=offer, volunteer=volunteer, channel=channel, text=text, now=now
                )
                offer.state, offer.reminded_at = OfferState.REMINDED.value, now
                expiry = _timings(session, profile, volunteer).offer_expiry
                offer.due_at = now + timedelta(minutes=expiry)
                reminded += 1
                continue
        offer.state, offer.due_at = OfferState.EXPIRED.value, None
        _notice(session, person=volunteer, key="assign.offer.expired", now=now)
        _replan(session, offer=offer, profile=profile, actor="offers:expired", now=now)
        expired += 1
    return expired, reminded


# --- answers ---------------------------------------------------------------------------------


def offer_choice(session: Session, *, person: Person, text: str, now: datetime) -> str | None:
    """The offer button an SMS (or typed) number stands for: only the numbers of the latest offer
    sent to this person (answered already or not: a second "7" is told so, not taken for a menu
    choice), so "1" is never an offer's and "7" never a check-in's."""
    latest = session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.person_id == person.id,
            OutboxMessage.kind == OFFER_KIND,
            OutboxMessage.created_at >= now - ANSWER_WINDOW,
        )
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
    if latest is None or not latest.buttons:
        return None
    data = choice_from_reply(text, latest.buttons)
    parsed = _parse(data) if data else None
    if parsed is None:
        return None
    offer = session.get(AssignmentOffer, parsed[0])
    if offer is None or offer.volunteer_id != person.id:
        return None
    return data


def take_offer_answer(
    session: Session,
    *,
    person: Person,
    channel: Channel,
    data: str,
    profile: Profile,
    now: datetime,
) -> bool:
    """Accept or decline (``o:<offer>:yes|no``); the acknowledgement is queued. Always True:
    an offer button is never the conversation engine's, even a stale or forged one."""
    parsed = _parse(data)
    offer = session.get(AssignmentOffer, parsed[0]) if parsed else None
    seat = _seat(session, offer) if offer is not None else None
    if (
        parsed is not None
        and offer is not None
        and offer.volunteer_id == person.id
        and offer.state == (OfferState.CONFIRMED if parsed[1] == ACCEPT else OfferState.DECLINED)
    ):
        # The same answer again (a reminder crossed their first one): nothing changes.
        _ack(session, person=person, channel=channel, key="assign.offer.already", now=now)
        return True
    if (
        parsed is None
        or offer is None
        or offer.volunteer_id != person.id
        or offer.state not in OPEN_OFFER
        or seat is None
    ):
        _ack(session, person=person, channel=channel, key="assign.offer.gone", now=now)
        return True
    offer.answered_at, offer.due_at = now, None
    if parsed[1] == ACCEPT:
        offer.state = OfferState.CONFIRMED.value
        seat.status, seat.updated_at = AssignmentStatus.CONFIRMED, now
        audit.record(
            session, actor=f"person:{person.id}", action=f"{offer.kind}.confirm",
            person_id=person.id, at=now, assignment_id=offer.assignment_id,
        )  # fmt: skip
        if isinstance(seat, BuddyAssignment):
            resident = session.get(Person, seat.resident_id)
            name = first_name(resident.name if resident else None, person.language)
            _ack(session, person=person, channel=channel, key="assign.offer.accepted_buddy",
                 now=now, name=name)  # fmt: skip
            if resident is not None and resident.status == PersonStatus.ACTIVE:
                _notice(
                    session, person=resident, key="assign.offer.resident_buddy", now=now,
                    name=first_name(person.name, resident.language),
                )  # fmt: skip
        else:
            role = _role_name(profile, seat.role_code, person.language)
            _ack(session, person=person, channel=channel, key="assign.offer.accepted_role",
                 now=now, role=role)  # fmt: skip
    else:
        offer.state = OfferState.DECLINED.value
        _ack(session, person=person, channel=channel, key="assign.offer.declined", now=now)
        _replan(session, offer=offer, profile=profile, actor=f"person:{person.id}", now=now)
    # Their next seat, if one waits.
    send_queued(session, profile=profile, now=now, volunteers=[person.id])
    return True


def _replan(
    session: Session, *, offer: AssignmentOffer, profile: Profile, actor: str, now: datetime
) -> None:
    """That seat alone is planned again; the volunteer it goes to is asked now."""
    decline = decline_buddy if offer.kind == "buddy" else decline_role
    try:
        result = decline(
            session, assignment_id=offer.assignment_id, profile=profile, actor=actor,
            reason=f"offer {offer.state}", now=now,
        )  # fmt: skip
    except NotDeclinable:
        return  # the seat was released meanwhile
    notify_changes(session, profile=profile, now=now, ids=[c.change_id for c in result.changes])
    asked = {c.volunteer_id for c in result.changes if c.action in ("new", "rank")}
    if asked:
        send_queued(session, profile=profile, now=now, volunteers=asked)


def _parse(data: str) -> tuple[int, str] | None:
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != "o" or not parts[1].isdecimal():
        return None
    if parts[2] not in (ACCEPT, DECLINE):
        return None
    return int(parts[1]), parts[2]


# --- texts -----------------------------------------------------------------------------------


def offer_text(
    session: Session,
    *,
    offer: AssignmentOffer,
    volunteer: Person,
    channel: Channel,
    profile: Profile,
) -> str:
    """What the volunteer is asked, in their language (without the answer buttons)."""
    language = volunteer.language
    seat = _seat(session, offer)
    if isinstance(seat, RoleAssignment):
        role = profile.role(seat.role_code) if _has_role(profile, seat.role_code) else None
        lines = [
            t(language, "assign.offer.role", role=_role_name(profile, seat.role_code, language),
              place=_place(session, seat, language)),
        ]  # fmt: skip
        if role is not None and role.duties is not None:
            lines.append(t(language, "assign.offer.duties", duties=role.duties.get(language)))
        return "\n".join(lines)
    assert isinstance(seat, BuddyAssignment)
    resident = session.get(Person, seat.resident_id)
    assert resident is not None
    key = "assign.offer.buddy_primary" if seat.rank == 1 else "assign.offer.buddy_backup"
    street = street_of(resident.address) or _zone_name(session, resident.zone_id, language)
    lines = [t(language, key, name=first_name(resident.name, language), street=street)]
    needs = shared_needs(session, resident=resident) if channel == Channel.TELEGRAM else []
    if needs:
        words = ", ".join(t(language, f"bot.needs.{flag}") for flag in needs)
        lines.append(t(language, "assign.offer.needs", needs=words))
    return "\n".join(lines)


def shared_needs(session: Session, *, resident: Person) -> list[str]:
    """The resident's needs their buddy may be told: only with their health-data consent in
    force (its text: "only emergency staff and your volunteer see them"); the read is audited."""
    from registry.people import has_consent

    if not has_consent(session, resident, ConsentKind.HEALTH_DATA):
        return []
    needs = audit.read_needs(session, resident, actor="offers", purpose="buddy offer")
    return needs.flags() if needs is not None else []


def street_of(address: str | None) -> str:
    """The street of an address, without the house or flat number ("Herzl 5, apt 3": Herzl)."""
    words = (address or "").replace(",", " , ").split()
    numbered = [i for i, word in enumerate(words) if any(ch.isdigit() for ch in word)]
    if numbered and numbered[0] == 0:  # "12 Herzl St": the words after the number
        rest = words[1:]
        words = rest[
            : next((i for i, w in enumerate(rest) if w == "," or w[0].isdigit()), len(rest))
        ]
    elif numbered:
        words = words[: numbered[0]]
    return " ".join(w for w in words if w != ",").strip()


def offer_buttons(offer_id: int, language: Language) -> list[list[dict[str, str]]]:
    return [
        [
            {"text": t(language, "assign.offer.accept"), "data": f"o:{offer_id}:{ACCEPT}",
             "n": ACCEPT_NUMBER},
            {"text": t(language, "assign.offer.decline"), "data": f"o:{offer_id}:{DECLINE}",
             "n": DECLINE_NUMBER},
        ]
    ]  # fmt: skip


def _send(
    session: Session,
    *,
    offer: AssignmentOffer,
    volunteer: Person,
    channel: Channel,
    text: str,
    now: datetime,
) -> None:
    buttons = offer_buttons(offer.id, volunteer.language)
    message = enqueue(
        session,
        channel=channel,
        address=(volunteer.phone if channel == Channel.SMS else str(volunteer.telegram_chat_id))
        or "",
        text=for_channel(text, buttons, channel),
        person_id=volunteer.id,
        priority=Priority.ROUTINE,
        kind=OFFER_KIND,
        due_at=now,
    )
    message.buttons = buttons  # with their own SMS numbers (see the module's docstring)


def _ack(
    session: Session, *, person: Person, channel: Channel, key: str, now: datetime, **params: str
) -> None:
    _notice(session, person=person, key=key, now=now, channel=channel, kind="ack", **params)


def _notice(
    session: Session,
    *,
    person: Person,
    key: str,
    now: datetime,
    channel: Channel | None = None,
    kind: str = NOTICE_KIND,
    **params: str,
) -> None:
    if not person.reachable:
        return
    channel = channel or channel_for(session, person)
    if channel == Channel.NONE:
        return
    address = person.phone if channel == Channel.SMS else str(person.telegram_chat_id)
    if not address:
        return
    enqueue(
        session,
        channel=channel,
        address=address,
        text=t(person.language, key, **params),
        person_id=person.id,
        priority=Priority.INTERACTIVE if kind == "ack" else Priority.ROUTINE,
        kind=kind,
        due_at=now,
    )


def _tell_released(
    session: Session, *, change: AssignmentChange, profile: Profile, now: datetime
) -> None:
    volunteer = session.get(Person, change.volunteer_id)
    if volunteer is None:
        return
    if change.kind == "buddy":
        row = session.get(BuddyAssignment, change.assignment_id)
        resident = session.get(Person, row.resident_id) if row is not None else None
        name = first_name(resident.name if resident else None, volunteer.language)
        _notice(session, person=volunteer, key="assign.offer.released_buddy", now=now, name=name)
    else:
        role_row = session.get(RoleAssignment, change.assignment_id)
        if role_row is None:
            return
        role = _role_name(profile, role_row.role_code, volunteer.language)
        _notice(session, person=volunteer, key="assign.offer.released_role", now=now, role=role)


def _tell_resident_released(session: Session, *, change: AssignmentChange, now: datetime) -> None:
    """A released buddy's resident, who had been told their name: that name no longer holds
    (first name only, in the resident's language); a new buddy's name comes when one accepts."""
    row = session.get(BuddyAssignment, change.assignment_id)
    resident = session.get(Person, row.resident_id) if row is not None else None
    volunteer = session.get(Person, change.volunteer_id)
    if resident is None or resident.status != PersonStatus.ACTIVE:
        return
    name = first_name(volunteer.name if volunteer else None, resident.language)
    _notice(session, person=resident, key="assign.buddy_changed.released", now=now, name=name)


def _seat(session: Session, offer: AssignmentOffer) -> BuddyAssignment | RoleAssignment | None:
    """The offer's assignment while it is live, else None."""
    row: BuddyAssignment | RoleAssignment | None
    if offer.kind == "buddy":
        row = session.get(BuddyAssignment, offer.assignment_id)
        holder = row.volunteer_id if row is not None else None
    else:
        row = session.get(RoleAssignment, offer.assignment_id)
        holder = row.person_id if row is not None else None
    if row is None or row.status not in ACTIVE_ASSIGNMENT or holder != offer.volunteer_id:
        return None
    return row


def _has_role(profile: Profile, code: str) -> bool:
    return any(role.code == code for role in profile.roles)


def _role_name(profile: Profile, code: str, language: Language) -> str:
    return profile.role(code).names.get(language) if _has_role(profile, code) else code


def _place(session: Session, seat: RoleAssignment, language: Language) -> str:
    if seat.shelter_id is not None:
        shelter = session.get(Shelter, seat.shelter_id)
        if shelter is not None:
            return shelter.name
    if seat.zone_id is not None:
        return _zone_name(session, seat.zone_id, language)
    return t(language, "assign.offer.town_wide")


def _zone_name(session: Session, zone_id: int | None, language: Language) -> str:
    zone = session.get(Zone, zone_id) if zone_id is not None else None
    if zone is None:
        return ""
    return str((zone.names or {}).get(language.value) or zone.name)


def _timings(session: Session, profile: Profile, person: Person) -> Timings:
    authority = session.get(Authority, person.authority_id)
    for candidate in profile.authorities:
        if authority is not None and candidate.code == authority.code:
            return candidate.timings
    return Timings()


# --- what the officer sees -------------------------------------------------------------------


def answers(session: Session) -> dict[str, int]:
    """How many offers stand in each state (the demo's and the officer's summary)."""
    counts: dict[str, int] = defaultdict(int)
    for (state,) in session.execute(select(AssignmentOffer.state)):
        counts[state] += 1
    return dict(counts)


__all__ = [
    "ACCEPT_NUMBER",
    "DECLINE_NUMBER",
    "Swept",
    "answers",
    "notify_changes",
    "offer_choice",
    "send_queued",
    "sweep_offers",
    "take_offer_answer",
]


@dataclass(frozen=True)
class ZoneCoverage:
    """Residents who may need help in one zone, by where their best buddy seat stands."""

    zone: str
    confirmed: int  # a buddy has accepted
    offered: int  # a buddy is planned and asked (or about to be), no acceptance yet
    none: int  # no buddy planned


def coverage_by_zone(session: Session, *, authority_id: int) -> list[ZoneCoverage]:
    """Buddy coverage per zone: confirmed against offered (the demo's and the officer's view)."""
    residents = dict(
        session.execute(
            select(Person.id, Person.zone_id).where(
                Person.authority_id == authority_id,
                Person.needs_help.is_(True),
                Person.status.in_((PersonStatus.ACTIVE, PersonStatus.PAUSED)),
            )
        ).all()
    )
    best: dict[int, int] = {}  # resident -> 2 confirmed, 1 offered
    for resident_id, status in session.execute(
        select(BuddyAssignment.resident_id, BuddyAssignment.status)
        .join(Person, Person.id == BuddyAssignment.resident_id)
        .where(
            Person.authority_id == authority_id,
            BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
        )
    ):
        level = 2 if status == AssignmentStatus.CONFIRMED else 1
        best[resident_id] = max(best.get(resident_id, 0), level)
    zones = dict(
        session.execute(select(Zone.id, Zone.code).where(Zone.authority_id == authority_id)).all()
    )
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for resident_id, zone_id in residents.items():
        level = best.get(resident_id, 0)
        counts[zones.get(zone_id, "-") if zone_id else "-"][2 - level] += 1
    return [
        ZoneCoverage(zone=zone, confirmed=c[0], offered=c[1], none=c[2])
        for zone, c in sorted(counts.items())
    ]
