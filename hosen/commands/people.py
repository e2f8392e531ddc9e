"""``hosen people list|show|erase|confirm-phone``: what the registry knows, for municipal staff.

Every read is audited (``people list`` too: names and phones are personal data), ``erase``
removes a person's data everywhere it is kept (``bots.enrolment.erase``), and ``confirm-phone``
records that staff checked a typed number is the person's own.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.settings import Settings
from hosen.commands.registry_lists import add_summary_command
from hosen.context import CommandError, Context
from registry import audit, people
from registry.assignment.stored import stored_assignments
from registry.db import unit_of_work, utcnow
from registry.errors import InvalidPhone
from registry.models import Person, PersonStatus, Zone
from registry.phones import normalise_phone


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    people = subparsers.add_parser("people")
    sub = people.add_subparsers(dest="people_command", required=True)

    ls = sub.add_parser("list", help="list people")
    ls.add_argument("--authority", help="authority code (default: the profile's first)")
    ls.add_argument("--zone", help="zone code")
    kind = ls.add_mutually_exclusive_group()
    kind.add_argument("--volunteers", action="store_true", help="volunteers only")
    kind.add_argument("--residents", action="store_true", help="residents who may need help only")
    ls.add_argument(
        "--phone-to-fix",
        action="store_true",
        help="only people whose listed phone could not be used (staff to fix; reached by a buddy)",
    )
    ls.add_argument("--limit", type=int, default=50, help="at most this many (0: all)")
    ls.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    ls.set_defaults(handler=list_people)

    show = sub.add_parser("show", help="one person in full (the read of health data is audited)")
    show.add_argument("who", help="person id or phone number")
    show.add_argument("--authority", help="authority code (default: the profile's first)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_person)

    erase = sub.add_parser(
        "erase", help="erase a person's data everywhere (asks for confirmation; audited)"
    )
    erase.add_argument("who", help="person id or phone number")
    erase.add_argument("--authority", help="authority code (default: the profile's first)")
    erase.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    erase.set_defaults(handler=erase_person)

    confirm = sub.add_parser(
        "confirm-phone",
        help="record that staff checked the person holds their phone (a number typed, not proven)",
    )
    confirm.add_argument("who", help="person id or phone number")
    confirm.add_argument("--authority", help="authority code (default: the profile's first)")
    confirm.set_defaults(handler=confirm_phone)

    add_summary_command(sub)


def summary(person: Person, zone_code: str | None) -> dict[str, Any]:
    return {
        "id": person.id,
        "name": person.name,
        "phone": person.phone,
        "phone_kind": person.phone_kind.value,
        "phone_to_fix": person.phone_to_fix,
        "language": person.language.value,
        "channel": person.channel.value,
        "zone": zone_code,
        "volunteer": person.is_volunteer,
        "needs_help": person.needs_help,
        "status": person.status.value,
    }


def list_people(ctx: Context, args: argparse.Namespace) -> int:
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        query = (
            select(Person, Zone.code)
            .outerjoin(Zone, Person.zone_id == Zone.id)
            .where(Person.authority_id == authority.id, Person.status != PersonStatus.ERASED)
            .order_by(Person.id)
        )
        if args.zone:
            known = session.scalars(
                select(Zone.code).where(Zone.authority_id == authority.id).order_by(Zone.code)
            ).all()
            if args.zone not in known:
                raise CommandError(
                    f"unknown zone {args.zone!r} in {authority.code} (known: {', '.join(known)})"
                )
            query = query.where(Zone.code == args.zone)
        if args.volunteers:
            query = query.where(Person.is_volunteer.is_(True))
        if args.residents:
            query = query.where(Person.needs_help.is_(True))
        if args.phone_to_fix:
            query = query.where(Person.phone_to_fix.is_not(None))
        if args.limit:
            query = query.limit(args.limit)
        rows = [summary(person, zone) for person, zone in session.execute(query)]
        audit.record(
            session,
            actor=ctx.actor,
            action="people.list",
            authority_id=authority.id,
            shown=len(rows),
            zone=args.zone,
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"{'id':>6}  {'name':<28} {'phone':<14} {'lang':<4} {'channel':<8} {'zone':<14} kind")
    for row in rows:
        kind = "/".join(
            k for k, on in (("volunteer", row["volunteer"]), ("resident", row["needs_help"])) if on
        )
        print(
            f"{row['id']:>6}  {(row['name'] or '')[:28]:<28} {row['phone'] or '-':<14} {row['language']:<4} "
            f"{row['channel']:<8} {row['zone'] or '-':<14} {kind}"
            + (f"  phone to fix: {row['phone_to_fix']}" if row["phone_to_fix"] else "")
        )
    print(f"{len(rows)} shown")
    return 0


def find_person(session: Session, settings: Settings, authority_id: int, who: str) -> Person:
    if who.isdecimal() and len(who) < 9:
        person = session.get(Person, int(who))
    else:
        try:
            phone = normalise_phone(who, region=settings.default_region).e164
        except InvalidPhone as exc:
            raise CommandError(f"{who!r}: {exc}") from None
        person = session.scalar(
            select(Person).where(Person.authority_id == authority_id, Person.phone == phone)
        )
    if person is None or person.authority_id != authority_id:
        raise CommandError(f"no person {who!r} in this authority")
    return person


def show_person(ctx: Context, args: argparse.Namespace) -> int:
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        person = find_person(session, ctx.settings, authority.id, args.who)
        zone = session.get(Zone, person.zone_id) if person.zone_id else None
        data = summary(person, zone.code if zone else None)
        data.update(
            phone_source=person.phone_source.value if person.phone_source else None,
            phone_verified=person.phone_verified_at is not None,
            phone_disputed=person.phone_disputed_at is not None,
            birth_year=person.birth_year,
            address=person.address,
            telegram=person.telegram_chat_id is not None,
        )
        if person.volunteer is not None:
            v = person.volunteer
            data["volunteer_profile"] = {
                "skills": v.skills,
                "languages": v.languages,
                "available_routine": v.available_routine,
                "available_emergency": v.available_emergency,
                "has_vehicle": v.has_vehicle,
                "checkin_capacity": v.checkin_capacity,
            }
        needs = audit.read_needs(session, person, actor=ctx.actor, purpose="people show")
        if needs is not None:
            data["needs"] = needs.flags()
            data["emergency_contact"] = needs.emergency_contact_name
        # Role and buddies as stored, each with its status (proposed, confirmed, declined).
        stored = stored_assignments(session, person_id=person.id)
        if person.is_volunteer:
            data["role"] = stored["roles"]
            data["checks_on"] = stored["checks_on"]
        if person.needs_help:
            data["buddies"] = stored["buddies"]
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for key, value in data.items():
            if key in ("role", "checks_on", "buddies"):
                print(f"{key:>20}: {_assignments(key, value)}")
            else:
                print(f"{key:>20}: {value}")
    return 0


def erase_person(ctx: Context, args: argparse.Namespace) -> int:
    from bots.enrolment import erase

    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        person = find_person(session, ctx.settings, authority.id, args.who)
        if person.status == PersonStatus.ERASED:
            print(f"person #{person.id} was erased already")
            return 0
        if not args.yes:
            answer = input(f"Erase person #{person.id} everywhere? This cannot be undone [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing was erased")
                return 1
        erase(session, person, actor=ctx.actor, now=utcnow(), by_staff=True)
        print(f"person #{person.id} erased")
    return 0


def _assignments(kind: str, rows: list[dict[str, Any]]) -> str:
    """One line per stored assignment: who or what, rank, distance and its status."""
    if not rows:
        return "none"
    parts = []
    for row in rows:
        if kind == "role":
            place = row["shelter"] or row["zone"] or "town-wide"
            parts.append(f"{row['role']} ({place}) {row['status']}{_offer(row)}")
            continue
        who = row.get("resident_id", row.get("volunteer_id"))
        rank = "primary" if row["rank"] == 1 else "backup"
        metres = f"{row['distance_m']} m" if row["distance_m"] is not None else "same zone"
        parts.append(f"{row['name']} (#{who}) {rank}, {metres}, {row['status']}{_offer(row)}")
    return "; ".join(parts)


def _offer(row: dict[str, Any]) -> str:
    """Where the seat's offer stands, when one was made (offered, reminded, declined...)."""
    return f" (offer {row['offer']})" if row.get("offer") else ""


def confirm_phone(ctx: Context, args: argparse.Namespace) -> int:
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        person = find_person(session, ctx.settings, authority.id, args.who)
        if person.phone is None:
            raise CommandError(f"person {person.id} has no phone to confirm")
        changed = people.confirm_phone(session, person, actor=ctx.actor)
    print(f"person {person.id}: phone " + ("confirmed" if changed else "was already proven"))
    return 0
