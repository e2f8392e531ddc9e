"""``hosen resources add|list|import|set-state``: the community's generators, vehicles,
accessible shelters, community centres and water, with their owner or contact, capacity and
state (available, in use, out of service). Staff also mark a state from the bot:
``/resource CODE available|busy|out``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from config.i18n import t
from config.languages import Language
from hosen.commands.groups import _phone, _zone, run_import
from hosen.context import CommandError, Context
from registry.db import unit_of_work
from registry.resources import (
    ResourceKind,
    ResourceState,
    find_resource,
    list_resources,
    parse_state,
    save_resource,
    set_state,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser("resources")
    sub = cmd.add_subparsers(dest="resources_command", required=True)

    add = sub.add_parser("add", help="add a resource, or update the one with this --code")
    add.add_argument("--code", required=True, help="a short code of your own, e.g. gen-north-1")
    add.add_argument("--name", required=True)
    add.add_argument("--kind", required=True, choices=[k.value for k in ResourceKind])
    add.add_argument("--zone", required=True)
    add.add_argument("--contact-name", help="its owner or contact")
    add.add_argument("--contact-phone")
    add.add_argument("--capacity", type=int, help="seats, people, kW, litres: what fits the kind")
    add.add_argument("--state", choices=[s.value for s in ResourceState])
    add.add_argument("--authority")
    add.set_defaults(handler=add_command)

    ls = sub.add_parser("list", help="the resources, by zone and kind, with their state")
    ls.add_argument("--authority")
    ls.add_argument("--zone")
    ls.add_argument("--kind", choices=[k.value for k in ResourceKind])
    ls.add_argument("--lang", choices=[x.value for x in Language], default="en")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_command)

    imp = sub.add_parser("import", help="a CSV of resources, row by row")
    imp.add_argument("file", type=Path)
    imp.add_argument("--authority")
    imp.add_argument("--dry-run", action="store_true")
    imp.add_argument("--lang", choices=[x.value for x in Language], default="en")
    imp.add_argument("--report", type=Path)
    imp.set_defaults(handler=import_command)

    state = sub.add_parser("set-state", help="mark a resource available, in use or out of service")
    state.add_argument("code")
    state.add_argument("state", help="available | in_use (busy) | out_of_service (out)")
    state.add_argument("--authority")
    state.set_defaults(handler=set_state_command)


def add_command(ctx: Context, args: argparse.Namespace) -> int:
    phone = _phone(ctx, args.contact_phone, "--contact-phone") if args.contact_phone else None
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        resource, created = save_resource(
            session,
            authority=authority,
            zone=_zone(session, authority, args.zone),
            code=args.code,
            kind=ResourceKind(args.kind),
            name=args.name,
            contact_name=args.contact_name,
            contact_phone=phone,
            capacity=args.capacity,
            state=ResourceState(args.state) if args.state else None,
            actor=ctx.actor,
        )
        print(f"resource {resource.code} {'created' if created else 'updated'}: {resource.state}")
    return 0


def list_command(ctx: Context, args: argparse.Namespace) -> int:
    language = Language(args.lang)
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        zone = _zone(session, authority, args.zone) if args.zone else None
        kind = ResourceKind(args.kind) if args.kind else None
        rows = [
            {
                "code": r.code,
                "name": r.name,
                "kind": r.kind.value,
                "zone": zone_code,
                "contact_name": r.contact_name,
                "contact_phone": r.contact_phone,
                "capacity": r.capacity,
                "state": r.state.value,
                "state_changed_at": r.state_changed_at.isoformat(),
            }
            for r, zone_code in list_resources(session, authority=authority, zone=zone, kind=kind)
        ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        kind_name = t(language, f"resources.kind.{row['kind']}")
        state = t(language, f"resources.state.{row['state']}")
        capacity = row["capacity"] if row["capacity"] is not None else "-"
        contact = " ".join(str(v) for v in (row["contact_name"], row["contact_phone"]) if v) or "-"
        print(
            f"{row['code']:<16} {row['zone']:<12} {kind_name:<20} {capacity!s:>6}  {state:<14} "
            f"{row['name']}  ({contact})"
        )
    print(f"{len(rows)} resources")
    return 0


def import_command(ctx: Context, args: argparse.Namespace) -> int:
    return run_import(ctx, path=args.file, kind="resources", args=args)


def set_state_command(ctx: Context, args: argparse.Namespace) -> int:
    state = parse_state(args.state)
    if state is None:
        raise CommandError(f"unknown state {args.state!r}: available, in_use or out_of_service")
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        resource = find_resource(session, authority_id=authority.id, code=args.code)
        if resource is None:
            raise CommandError(f"no resource {args.code!r} in {authority.code}")
        changed = set_state(session, resource=resource, state=state, actor=ctx.actor)
    print(f"{args.code}: {state.value}" + ("" if changed else " (already)"))
    return 0
