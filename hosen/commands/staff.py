"""``hosen staff add|list|remove|pin``: who may run drills and emergencies, and coordinate groups.

``pin`` sets a staff member's SMS PIN: typed twice at a prompt (never on the command line, where
other users and the shell history could read it), read from standard input when that is not a
terminal, or generated with ``--generate`` and printed once.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from sqlalchemy import select

from config.languages import ALL_LANGUAGES, Language
from hosen.context import CommandError, Context
from registry.db import unit_of_work
from registry.errors import InvalidPhone, RegistryError
from registry.groups import find_group
from registry.models import Authority
from registry.phones import Phone, normalise_phone
from registry.staff import (
    StaffMember,
    StaffRole,
    add_staff,
    generate_pin,
    remove_staff,
    set_pin,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    staff = subparsers.add_parser("staff")
    sub = staff.add_subparsers(dest="staff_command", required=True)

    add = sub.add_parser("add", help="register a staff member (again: update them)")
    add.add_argument(
        "--phone", required=True, help="their mobile phone; commands are accepted only from it"
    )
    add.add_argument("--name", required=True)
    add.add_argument("--authority", help="authority code; omit for a cluster-wide administrator")
    add.add_argument("--role", required=True, choices=[r.value for r in StaffRole])
    add.add_argument(
        "--group", action="append", default=[], help="join code of a group they coordinate"
    )
    add.add_argument(
        "--lang",
        choices=[language.value for language in ALL_LANGUAGES],
        help="the language the bots write to them in (a new member: he; they can change it "
        "with /language)",
    )
    add.set_defaults(handler=add_member)

    ls = sub.add_parser("list", help="list staff")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_members)

    rm = sub.add_parser("remove", help="revoke a staff member")
    rm.add_argument("--phone", required=True)
    rm.set_defaults(handler=remove_member)

    pin = sub.add_parser(
        "pin", help="set a staff member's SMS PIN (asked at a prompt; unlocks a locked PIN)"
    )
    pin.add_argument("--phone", required=True)
    pin.add_argument(
        "--generate", action="store_true", help="make up a random PIN and print it once"
    )
    pin.set_defaults(handler=set_member_pin)


def _phone(ctx: Context, text: str) -> Phone:
    try:
        phone = normalise_phone(text, region=ctx.settings.default_region)
    except InvalidPhone as exc:
        raise CommandError(f"--phone {text!r}: {exc}") from None
    return phone


def add_member(ctx: Context, args: argparse.Namespace) -> int:
    phone = _phone(ctx, args.phone)
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority) if args.authority else None
        groups = []
        for code in args.group:
            group = find_group(session, code)
            if group is None:
                raise CommandError(f"--group {code!r}: no such group")
            groups.append(group)
        member = add_staff(
            session,
            name=args.name,
            phone=phone,
            authority=authority,
            role=StaffRole(args.role),
            groups=groups,
            language=Language(args.lang) if args.lang else None,
            actor=ctx.actor,
        )
        where = authority.code if authority else "the whole cluster"
        print(
            f"staff #{member.id}: {member.role.value} for {where}; commands accepted from {phone.e164};"
            f" writes to them in {member.language.value}"
        )
    return 0


def list_members(ctx: Context, args: argparse.Namespace) -> int:
    with unit_of_work(ctx.sessions) as session:
        rows = session.execute(
            select(StaffMember, Authority.code)
            .outerjoin(Authority, StaffMember.authority_id == Authority.id)
            .where(StaffMember.active)
            .order_by(StaffMember.id)
        ).all()
        data = [
            {
                "id": m.id,
                "name": m.name,
                "phone": m.phone,
                "role": m.role.value,
                "authority": code or "*",
                "telegram_verified": m.telegram_chat_id is not None,
                "language": m.language.value,
            }
            for m, code in rows
        ]
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    for row in data:
        telegram = "telegram ✓" if row["telegram_verified"] else "telegram -"
        print(
            f"{row['id']:>4}  {row['role']:<12} {row['authority']:<14} {row['phone']:<14} {telegram}  "
            f"{row['language']}  {row['name']}"
        )
    print(f"{len(data)} staff")
    return 0


def remove_member(ctx: Context, args: argparse.Namespace) -> int:
    phone = _phone(ctx, args.phone)
    with unit_of_work(ctx.sessions) as session:
        removed = remove_staff(session, phone=phone, actor=ctx.actor)
    print("removed" if removed else "no active staff member with that phone")
    return 0 if removed else 1


def _typed_pin() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    first = getpass.getpass("PIN: ")
    if getpass.getpass("PIN again: ") != first:
        raise CommandError("the two PINs differ; nothing was changed")
    return first


def set_member_pin(ctx: Context, args: argparse.Namespace) -> int:
    phone = _phone(ctx, args.phone)
    with unit_of_work(ctx.sessions) as session:
        member = session.scalar(
            select(StaffMember).where(StaffMember.phone == phone.e164, StaffMember.active)
        )
        if member is None:
            raise CommandError(f"--phone {phone.e164}: no active staff member with that phone")
        pin = generate_pin() if args.generate else _typed_pin()
        try:
            set_pin(session, member=member, pin=pin, actor=ctx.actor)
        except RegistryError as exc:
            raise CommandError(str(exc)) from None
    if args.generate:
        print(f"PIN for staff #{member.id}: {pin} (shown once; give it to them in person)")
    else:
        print(f"PIN set for staff #{member.id}")
    return 0
