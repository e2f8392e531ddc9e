"""Between the dialog and the registry: a confirmed draft becomes a registered person, a person
becomes a draft again to edit, a person's status is put in words, and erasure reaches what the
bots kept. Every function takes the caller's session and never commits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, tuple_, update
from sqlalchemy.orm import Session

from bots.consent import CONSENT_VERSIONS, consent_text
from bots.models import Conversation
from bots.words import clean
from config.i18n import t
from config.languages import Language
from config.profile import Profile
from dispatch import outbox
from dispatch.models import InboundMessage, OutboxMessage, Priority
from registry import audit, groups, people, phone_codes, rules
from registry.digests import sender_key
from registry.errors import InvalidPhone
from registry.models import (
    ACTIVE_ASSIGNMENT,
    NEED_FLAGS,
    Authority,
    BuddyAssignment,
    Channel,
    ConsentGiver,
    ConsentKind,
    Group,
    Person,
    PersonStatus,
    PhoneKind,
    PhoneSource,
    RoleAssignment,
    Source,
    Zone,
)
from registry.phones import Phone, normalise_phone
from registry.rules import distance_m

# Draft keys starting with "_" are bookkeeping; this one lists consents given in this dialog.
NEW_CONSENTS = "_new_consents"
# A shared location farther than this from every zone's centre is not in the municipality.
ZONE_REACH_M = 20_000.0
# The outbox kind of the SMS that carries a one-time code.
CODE_KIND = "phone_code"
# How the draft's phone is known (a PhoneSource value): "contact", "code" or "typed".
PHONE_SOURCE = "phone_source"


class Refused(Exception):
    """The draft cannot be registered as it is; ``key`` is the catalog message saying why."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Enrolled:
    person: Person
    created: bool
    landline: bool  # their phone cannot take SMS: they will be reached through a buddy


def person_at(session: Session, channel: Channel, address: str) -> Person | None:
    """The live person a chat id or phone belongs to."""
    if channel == Channel.TELEGRAM and address.lstrip("-").isdecimal():
        key = Person.telegram_chat_id == int(address)
    else:
        key = Person.phone == address
    return session.scalar(
        select(Person).where(key, Person.status != PersonStatus.ERASED).order_by(Person.id)
    )


def enrol(
    session: Session,
    *,
    draft: dict[str, Any],
    channel: Channel,
    address: str,
    language: Language,
    profile: Profile,
    region: str,
    current: Person | None,
    actor: str,
    now: datetime,
) -> Enrolled:
    """Register (or update) the person a confirmed draft describes, with its new consents."""
    family = draft.get("who") == "family"
    telegram = channel == Channel.TELEGRAM
    authority_code = draft.get("authority") or profile.authorities[0].code
    authority = session.scalar(select(Authority).where(Authority.code == authority_code))
    if authority is None:
        raise Refused("bot.error.choice")
    zone = session.scalar(
        select(Zone).where(Zone.authority_id == authority.id, Zone.code == draft.get("zone"))
    )
    phone_text = draft.get("phone") or (None if telegram else address)
    try:
        phone = normalise_phone(phone_text, region=region) if phone_text else None
    except InvalidPhone:
        raise Refused("phone.invalid") from None
    chat_id = int(address) if telegram and not family else None
    volunteer = draft.get("who") in ("volunteer", "both")
    resident = draft.get("who") in ("resident", "both", "family")
    avail = draft.get("avail", "both")
    # Without the health-data consent no need is kept, whatever was ticked.
    needs = set(draft.get("needs", [])) if draft.get("health") else set()
    if family:
        reach = Channel.SMS if phone and phone.can_receive_sms else Channel.NONE
    else:
        reach = channel
    details = people.PersonDetails(
        name=draft.get("name"),
        phone=phone,
        phone_source=_phone_source(draft, telegram=telegram, family=family),
        telegram_chat_id=chat_id,
        language=language,
        channel=reach,
        birth_year=draft.get("birth_year"),
        zone=zone,
        lat=draft.get("lat"),
        lon=draft.get("lon"),
        volunteer=people.VolunteerDetails(
            skills=tuple(draft.get("skills", [])),
            languages=tuple(draft.get("langs", [])),
            available_routine=avail in ("both", "routine"),
            available_emergency=avail in ("both", "emergency"),
            has_vehicle=bool(draft.get("vehicle")),
            checkin_capacity=int(draft.get("capacity", rules.DEFAULT_CHECKIN_CAPACITY)),
        )
        if volunteer
        else None,
        needs=people.NeedsDetails(
            **{flag: flag in needs for flag in NEED_FLAGS},
            emergency_contact_name=draft.get("ec_name"),
            emergency_contact_phone=draft.get("ec_phone"),
        )
        if resident
        else None,
    )
    source = Source.TELEGRAM if telegram else Source.SMS
    # A typed number someone else holds is left out by the registry, and nothing is said:
    # telling them would reveal that the number is registered.
    registration = people.register_person(
        session,
        authority=authority,
        details=details,
        source=source,
        actor=actor,
        now=now,
        known=current,
    )
    person = registration.person
    giver = ConsentGiver.FAMILY if family else ConsentGiver.SELF
    for kind_value in draft.get(NEW_CONSENTS, []):
        kind = ConsentKind(kind_value)
        if kind == ConsentKind.HEALTH_DATA and not draft.get("health"):
            continue
        guardian = kind == ConsentKind.GUARDIAN
        people.record_consent(
            session,
            person=person,
            kind=kind,
            version=CONSENT_VERSIONS[kind],
            language=language,
            text=consent_text(kind, language),
            channel=source,
            given_by=ConsentGiver.GUARDIAN if guardian else giver,
            guardian_name=draft.get("guardian") if guardian else None,
            actor=actor,
            now=now,
        )
    group = find_group(session, draft.get("group") or "")
    if group is not None:
        join_group(session, person, group)
    landline = phone is not None and phone.kind == PhoneKind.LANDLINE
    return Enrolled(person=person, created=registration.created, landline=landline)


def _phone_source(draft: dict[str, Any], *, telegram: bool, family: bool) -> PhoneSource:
    """How the draft's phone is known: the SMS sender's own number is proven by the carrier;
    on Telegram, the dialog says (a shared contact or a confirmed code); anything else is typed."""
    if family:
        return PhoneSource.TYPED
    if not telegram:
        return PhoneSource.SMS
    try:
        return PhoneSource(draft.get(PHONE_SOURCE) or PhoneSource.TYPED)
    except ValueError:
        return PhoneSource.TYPED


def link_telegram(
    session: Session,
    *,
    phone: str,
    chat_id: int,
    region: str,
    proof: PhoneSource,
    actor: str,
    now: datetime,
) -> Person | None:
    """Their own, proven number is already registered (say by SMS): this chat is theirs too.

    Only a record whose number is trusted is theirs; one that merely typed it is not (their
    registration, when confirmed, takes the number from it).
    """
    known = session.scalar(
        select(Person)
        .where(Person.phone == phone, Person.status != PersonStatus.ERASED)
        .order_by(Person.id)
    )
    if known is None or not known.phone_trusted:
        return None
    authority = session.get(Authority, known.authority_id)
    assert authority is not None
    registration = people.register_person(
        session,
        authority=authority,
        details=people.PersonDetails(
            phone=normalise_phone(phone, region=region),
            phone_source=proof,
            telegram_chat_id=chat_id,
            channel=Channel.TELEGRAM,
        ),
        source=Source.TELEGRAM,
        actor=actor,
        now=now,
    )
    return registration.person


def send_phone_code(
    session: Session,
    *,
    phone: Phone,
    channel: Channel,
    address: str,
    language: Language,
    actor: str,
    now: datetime,
) -> None:
    """Text a one-time code to a typed number, through the outbox, in the person's language.

    Raises :class:`~registry.phone_codes.CodeRefused` (a landline, a resend too soon, too many).
    The SMS says only the code and how long it lasts: no name, nothing of the registration.
    """
    issued = phone_codes.issue(
        session,
        phone=phone,
        requester=phone_codes.requester_of(channel.value, address),
        now=now,
        actor=actor,
    )
    message = outbox.enqueue(
        session,
        channel=Channel.SMS,
        address=phone.e164,
        text=t(language, "phone.code_sms", code=issued.code),
        priority=Priority.INTERACTIVE,
        kind=CODE_KIND,
        due_at=now,
    )
    session.flush()
    issued.record.outbox_id = message.id


def confirm_phone_code(
    session: Session,
    *,
    phone: str,
    channel: Channel,
    address: str,
    answer: str,
    actor: str,
    now: datetime,
) -> phone_codes.Checked:
    """Check a typed code; once confirmed, the texts that carried codes to the number are emptied
    (the hash was all we kept; the sent SMS need not keep the code either)."""
    checked = phone_codes.check(
        session,
        phone=phone,
        requester=phone_codes.requester_of(channel.value, address),
        answer=answer,
        now=now,
        actor=actor,
    )
    if checked.result == phone_codes.Check.CONFIRMED:
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.kind == CODE_KIND,
                OutboxMessage.address == phone,
                OutboxMessage.status.in_(outbox.FINISHED),
            )
            .values(text="")
            .execution_options(synchronize_session=False)
        )
    return checked


def draft_from(session: Session, person: Person, *, actor: str) -> dict[str, Any]:
    """A draft holding the person's current answers, to edit one of them (the read is audited)."""
    authority = session.get(Authority, person.authority_id)
    zone = session.get(Zone, person.zone_id) if person.zone_id else None
    if person.is_volunteer and person.needs_help:
        who = "both"
    elif person.needs_help:
        who = "resident"
    else:
        who = "volunteer"
    draft: dict[str, Any] = {
        "language": person.language.value,
        "who": who,
        "name": person.name,
        "phone": person.phone,
        PHONE_SOURCE: person.phone_source.value if person.phone_source else None,
        "authority": authority.code if authority else None,
        "zone": zone.code if zone else None,
        "birth_year": person.birth_year,
        "consent": "given",
    }
    volunteer = person.volunteer
    if volunteer is not None:
        if volunteer.available_routine and volunteer.available_emergency:
            avail = "both"
        elif volunteer.available_emergency:
            avail = "emergency"
        else:
            avail = "routine"
        draft.update(
            skills=list(volunteer.skills),
            langs=list(volunteer.languages),
            avail=avail,
            vehicle=volunteer.has_vehicle,
            capacity=volunteer.checkin_capacity,
        )
    if person.needs_help:
        needs = audit.read_needs(session, person, actor=actor, purpose="self_update")
        draft["needs"] = needs.flags() if needs else []
        draft["ec_name"] = needs.emergency_contact_name if needs else None
        draft["ec_phone"] = needs.emergency_contact_phone if needs else None
    if people.has_consent(session, person, ConsentKind.HEALTH_DATA):
        draft["health"] = "given"
    if people.has_consent(session, person, ConsentKind.GUARDIAN):
        draft["guardian"] = "given"
    return draft


def status_text(session: Session, person: Person, language: Language, profile: Profile) -> str:
    """Who they are registered as, their role and buddies, in a few short lines."""
    lang = language
    if person.is_volunteer and person.needs_help:
        who = t(lang, "bot.who.both")
    elif person.needs_help:
        who = t(lang, "bot.who.resident")
    else:
        who = t(lang, "bot.who.volunteer")
    zone = session.get(Zone, person.zone_id) if person.zone_id else None
    zone_name = zone_label(profile, zone, lang) if zone else "-"
    lines = [
        t(lang, "bot.status.registered", name=person.name or "-", who=who, zone=zone_name),
        t(lang, f"bot.status.state_{person.status.value}"),
    ]
    if person.is_volunteer:
        role = session.scalar(
            select(RoleAssignment).where(
                RoleAssignment.person_id == person.id,
                RoleAssignment.status.in_(ACTIVE_ASSIGNMENT),
            )
        )
        if role is None:
            lines.append(t(lang, "bot.status.no_role"))
        else:
            try:
                role_name = profile.role(role.role_code).names.get(lang)
            except KeyError:
                role_name = role.role_code
            lines.append(t(lang, f"bot.status.role_{role.status.value}", role=role_name))
        checks_on = session.scalars(
            select(BuddyAssignment.id).where(
                BuddyAssignment.volunteer_id == person.id,
                BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
            )
        ).all()
        lines.append(t(lang, "bot.status.checks_on", count=len(checks_on)))
    if person.needs_help:
        buddy = session.scalar(
            select(BuddyAssignment.id).where(
                BuddyAssignment.resident_id == person.id,
                BuddyAssignment.status.in_(ACTIVE_ASSIGNMENT),
            )
        )
        lines.append(t(lang, "bot.status.has_buddy" if buddy else "bot.status.no_buddy"))
    return "\n".join(lines)


def zone_label(profile: Profile, zone: Zone, language: Language) -> str:
    for authority in profile.authorities:
        for candidate in authority.zones:
            if candidate.code == zone.code:
                return candidate.names.get(language)
    return zone.name


def nearest_zone(profile: Profile, lat: float, lon: float) -> tuple[str, str] | None:
    """The authority and zone whose centre is closest to a shared location, or None when the
    location is not a place on Earth or is farther than :data:`ZONE_REACH_M` from every zone
    (a phone without a fix sends 0,0; a forged update sends anything)."""
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    best: tuple[float, str, str] | None = None
    for authority in profile.authorities:
        for zone in authority.zones:
            if zone.lat is None or zone.lon is None:
                continue
            distance = distance_m(lat, lon, zone.lat, zone.lon)
            if distance <= ZONE_REACH_M and (best is None or distance < best[0]):
                best = (distance, authority.code, zone.code)
    return None if best is None else (best[1], best[2])


def find_group(session: Session, join_code: str) -> Group | None:
    return groups.find_group(session, clean(join_code))


def join_group(session: Session, person: Person, group: Group) -> bool:
    """Put the person in the group; False when it is another authority's group."""
    if person.authority_id != group.authority_id:
        return False
    groups.add_member(session, group=group, person=person, actor="bot")
    return True


def erase(
    session: Session, person: Person, *, actor: str, now: datetime, by_staff: bool = False
) -> None:
    """Erase the person and everything kept about them wherever it is: their registry fields,
    the inbound messages they sent (found by person and by sender digest: a sign-up's first
    messages came before the person existed), the texts and addresses of messages sent to them,
    their free-text answers and every conversation of theirs (the caller deletes the one it is
    holding). Erasure by staff also cancels what was still to be sent to them."""
    held = {c for c in session.identity_map.values() if isinstance(c, Conversation)}
    addresses = addresses_of(session, person)
    people.erase(session, person, actor=actor, now=now)
    outbox.forget_person(
        session,
        person_id=person.id,
        addresses=[address for _, address in addresses],
        keep_queued=not by_staff,
    )
    senders = [sender_key(channel, address) for channel, address in addresses]
    session.execute(
        update(InboundMessage)
        .where(or_(InboundMessage.person_id == person.id, InboundMessage.sender.in_(senders)))
        .values(payload={}, sender=None)
        .execution_options(synchronize_session="fetch")
    )
    session.execute(
        delete(Conversation)
        .where(
            or_(
                Conversation.person_id == person.id,
                tuple_(Conversation.channel, Conversation.address).in_(addresses),
            ),
            Conversation.id.not_in([c.id for c in held if c.id is not None]),
        )
        .execution_options(synchronize_session=False)
    )


def addresses_of(session: Session, person: Person) -> list[tuple[Channel, str]]:
    """Every (channel, address) the person wrote from or was written to."""
    found: set[tuple[Channel, str]] = set()
    if person.phone:
        found.add((Channel.SMS, person.phone))
    if person.telegram_chat_id is not None:
        found.add((Channel.TELEGRAM, str(person.telegram_chat_id)))
    rows = session.execute(
        select(Conversation.channel, Conversation.address).where(
            Conversation.person_id == person.id
        )
    )
    found.update((channel, address) for channel, address in rows)
    return sorted(found)
