"""``hosen groups add|list|show|members|import|unaffiliated``: the communities and their leaders.

Groups are youth movements, building, kindergarten and school committees, community centres and
national service. Each has a join code people use to join ("/start CODE" on Telegram, "JOIN CODE"
by SMS), adult coordinators with a phone, and members. ``unaffiliated`` lists everyone registered
who belongs to no group, for outreach; its ``--csv`` opens in a spreadsheet (UTF-8 with BOM,
formulas neutralised). Reads of names and phones are audited.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from hosen.context import CommandError, Context
from registry import audit, groups
from registry.community_lists import CommunityListKind, CommunityReport, import_community_list
from registry.db import unit_of_work, utcnow
from registry.errors import InvalidPhone
from registry.importer import ListUnreadable
from registry.models import Authority, Group, GroupKind, Person, Zone
from registry.phones import Phone, normalise_phone
from registry.spreadsheet import SafeWriter

SHOWN_PROBLEMS = 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser("groups")
    sub = cmd.add_subparsers(dest="groups_command", required=True)

    add = sub.add_parser("add", help="create a group, or update the one with this --code")
    add.add_argument("--name", required=True)
    add.add_argument("--kind", required=True, choices=[k.value for k in GroupKind])
    add.add_argument(
        "--code", help="its join code (3-32 letters, digits, - or _); default: made up"
    )
    add.add_argument(
        "--zone", action="append", default=[], help="a zone it serves (repeat; none: all)"
    )
    add.add_argument("--authority", help="authority code (default: the profile's first)")
    add.add_argument("--coordinator-phone", help="an adult coordinator's mobile phone")
    add.add_argument("--coordinator-name", default="", help="the coordinator's name")
    add.add_argument("--coordinator-born", type=int, help="the coordinator's year of birth")
    add.set_defaults(handler=add_group)

    ls = sub.add_parser("list", help="the groups, with zones, coordinators and member counts")
    ls.add_argument("--authority")
    ls.add_argument("--zone", help="only groups serving this zone")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_command)

    show = sub.add_parser("show", help="one group: kind, zones, join code, coordinators")
    show.add_argument("code", help="the group's join code")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_command)

    members = sub.add_parser("members", help="a group's members; add or take out by phone")
    members.add_argument("code", help="the group's join code")
    change = members.add_mutually_exclusive_group()
    change.add_argument("--add", metavar="PHONE", help="put this registered person in the group")
    change.add_argument("--remove", metavar="PHONE", help="take this person out of the group")
    members.add_argument("--json", action="store_true")
    members.set_defaults(handler=members_command)

    imp = sub.add_parser(
        "import", help="a CSV of groups (with coordinators) or of members, row by row"
    )
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--members",
        action="store_true",
        help="the file lists members (join code, phone, role) instead of groups",
    )
    imp.add_argument("--authority")
    imp.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    imp.add_argument(
        "--lang", choices=[x.value for x in Language], default="en", help="the report's language"
    )
    imp.add_argument("--report", type=Path, help="write the row-by-row report to this JSON file")
    imp.set_defaults(handler=import_command)

    una = sub.add_parser("unaffiliated", help="everyone registered who belongs to no group")
    una.add_argument("--authority")
    una.add_argument("--zone")
    una.add_argument("--csv", type=Path, help="write a spreadsheet (UTF-8 with BOM) here")
    una.add_argument("--json", action="store_true")
    una.set_defaults(handler=unaffiliated_command)


def _phone(ctx: Context, text: str, option: str) -> Phone:
    try:
        return normalise_phone(text, region=ctx.settings.default_region)
    except InvalidPhone as exc:
        raise CommandError(f"{option} {text!r}: {exc}") from None


def _zone(session: Session, authority: Authority, code: str) -> Zone:
    zone = session.scalar(select(Zone).where(Zone.authority_id == authority.id, Zone.code == code))
    if zone is None:
        raise CommandError(f"unknown zone {code!r} in {authority.code}")
    return zone


def _group(session: Session, code: str) -> Group:
    group = groups.find_group(session, code)
    if group is None:
        raise CommandError(f"no group with the join code {code!r}")
    return group


def add_group(ctx: Context, args: argparse.Namespace) -> int:
    phone = (
        _phone(ctx, args.coordinator_phone, "--coordinator-phone")
        if args.coordinator_phone
        else None
    )
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        zones = [_zone(session, authority, code) for code in args.zone]
        group, created = groups.save_group(
            session,
            authority=authority,
            name=args.name,
            kind=GroupKind(args.kind),
            zones=zones,
            code=args.code,
            actor=ctx.actor,
        )
        if phone is not None:
            groups.add_coordinator(
                session,
                group=group,
                name=args.coordinator_name,
                phone=phone,
                birth_year=args.coordinator_born,
                actor=ctx.actor,
            )
        verb = "created" if created else "updated"
        print(f"group {group.name!r} {verb}; join code {group.join_code}")
        print(f"  Telegram: /start {group.join_code}   SMS: JOIN {group.join_code}")
    return 0


def _summary_json(summary: groups.GroupSummary) -> dict[str, Any]:
    group = summary.group
    return {
        "code": group.join_code,
        "name": group.name,
        "kind": group.kind.value,
        "zones": summary.zones,
        "coordinators": summary.coordinators,
        "members": summary.members,
    }


def list_command(ctx: Context, args: argparse.Namespace) -> int:
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        zone = _zone(session, authority, args.zone) if args.zone else None
        rows = [
            _summary_json(s) for s in groups.list_groups(session, authority=authority, zone=zone)
        ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        zones = ",".join(row["zones"]) or "*"
        heads = ", ".join(row["coordinators"]) or "-"
        print(
            f"{row['code']:<12} {row['kind']:<22} {zones:<24} {row['members']:>5}  "
            f"{row['name']}  (coordinators: {heads})"
        )
    print(f"{len(rows)} groups")
    return 0


def show_command(ctx: Context, args: argparse.Namespace) -> int:
    with unit_of_work(ctx.sessions) as session:
        group = _group(session, args.code)
        authority = session.get(Authority, group.authority_id)
        assert authority is not None
        summary = next(
            s for s in groups.list_groups(session, authority=authority) if s.group.id == group.id
        )
        row = {**_summary_json(summary), "authority": authority.code}
    if args.json:
        print(json.dumps(row, ensure_ascii=False, indent=2))
        return 0
    print(f"{row['name']} ({row['kind']}, {row['authority']})")
    print(
        f"  join code:    {row['code']}  (Telegram: /start {row['code']}; SMS: JOIN {row['code']})"
    )
    print(f"  zones:        {', '.join(row['zones']) or 'the whole authority'}")
    print(f"  coordinators: {', '.join(row['coordinators']) or 'none yet'}")
    print(f"  members:      {row['members']}")
    return 0


def members_command(ctx: Context, args: argparse.Namespace) -> int:
    with unit_of_work(ctx.sessions) as session:
        group = _group(session, args.code)
        change = args.add or args.remove
        if change:
            phone = _phone(ctx, change, "--add" if args.add else "--remove")
            person = session.scalar(
                select(Person).where(
                    Person.authority_id == group.authority_id, Person.phone == phone.e164
                )
            )
            if person is None:
                raise CommandError(
                    f"nobody registered with {phone.e164}; send them the join code {group.join_code}"
                )
            if args.add:
                done = groups.add_member(session, group=group, person=person, actor=ctx.actor)
                print("added" if done else "already a member")
            else:
                done = groups.remove_member(session, group=group, person=person, actor=ctx.actor)
                print("taken out" if done else "not a member")
            return 0
        rows = groups.members(session, group, year=utcnow().year)
        audit.record(
            session,
            actor=ctx.actor,
            action="group.members.read",
            group_id=group.id,
            shown=len(rows),
        )
    data = [
        {
            "id": m.person_id,
            "name": m.name,
            "phone": m.phone,
            "zone": m.zone,
            "coordinator": m.coordinator,
            "minor": m.minor,
            "status": m.status.value,
        }
        for m in rows
    ]
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    for m in data:
        role = "coordinator" if m["coordinator"] else ("minor" if m["minor"] else "")
        print(
            f"{m['id']:>6}  {m['phone'] or '-':<14} {m['zone'] or '-':<12} {role:<12} {m['name']}"
        )
    print(f"{len(data)} members")
    return 0


def run_import(
    ctx: Context, *, path: Path, kind: CommunityListKind, args: argparse.Namespace
) -> int:
    """Shared by ``groups import`` and ``resources import``: read, import, print the report."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    language = Language(args.lang)
    session = ctx.sessions()
    try:
        authority = ctx.authority(session, args.authority)
        report = import_community_list(
            session,
            data=data,
            kind=kind,
            authority=authority,
            region=ctx.settings.default_region,
            actor=ctx.actor,
            dry_run=args.dry_run,
        )
        if args.dry_run:
            session.rollback()
        else:
            session.commit()
    except ListUnreadable as exc:  # the whole file: said in the officer's language
        session.rollback()
        raise CommandError(exc.render(language)) from None
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    print_report(report, language)
    if args.report:
        args.report.write_text(
            json.dumps(report.as_json(language), ensure_ascii=False, indent=1), encoding="utf-8"
        )
        print(f"row-by-row report: {args.report}")
    return 0


def print_report(report: CommunityReport, language: Language) -> None:
    totals = report.totals
    outcome = {o: t(language, f"community_lists.outcome.{o}") for o in totals if o != "rows"}
    counts = ", ".join(f"{outcome[o]} {n}" for o, n in totals.items() if o != "rows")
    print(f"{report.kind}: {totals['rows']} rows ({report.encoding}): {counts}")
    if report.ignored_columns:
        print(f"  columns not read: {', '.join(report.ignored_columns)}")
    lines = list(report.problem_lines(language))
    for line in lines[:SHOWN_PROBLEMS]:
        print(f"  {line}")
    if len(lines) > SHOWN_PROBLEMS:
        print(f"  … {len(lines) - SHOWN_PROBLEMS} more (see --report)")
    if report.dry_run:
        print("dry run: nothing was written")


def import_command(ctx: Context, args: argparse.Namespace) -> int:
    return run_import(ctx, path=args.file, kind="members" if args.members else "groups", args=args)


UNAFFILIATED_COLUMNS = ("id", "name", "phone", "zone", "language", "volunteer", "may need help")


def unaffiliated_command(ctx: Context, args: argparse.Namespace) -> int:
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        zone = _zone(session, authority, args.zone) if args.zone else None
        zones: dict[int, str] = {
            zone_id: code
            for zone_id, code in session.execute(
                select(Zone.id, Zone.code).where(Zone.authority_id == authority.id)
            )
        }
        people = groups.unaffiliated(session, authority=authority, zone=zone)
        rows = [
            (
                p.id,
                p.name or "",
                p.phone or "",
                zones.get(p.zone_id, "") if p.zone_id else "",
                p.language.value,
                p.is_volunteer,
                p.needs_help,
            )
            for p in people
        ]
        audit.record(
            session,
            actor=ctx.actor,
            action="groups.unaffiliated",
            authority_id=authority.id,
            zone=args.zone,
            shown=len(rows),
        )
    if args.csv:
        out = io.StringIO(newline="")
        writer = SafeWriter(out)
        writer.writerow(UNAFFILIATED_COLUMNS)
        for row in rows:
            writer.writerow(
                ["yes" if cell is True else "no" if cell is False else cell for cell in row]
            )
        try:
            args.csv.write_text(out.getvalue(), encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise CommandError(f"cannot write {args.csv}: {exc.strerror or exc}") from None
        print(f"{len(rows)} people who belong to no group: {args.csv}")
        return 0
    if args.json:
        keys = ("id", "name", "phone", "zone", "language", "volunteer", "needs_help")
        data = [dict(zip(keys, row, strict=True)) for row in rows]
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    for row in rows:
        print(f"{row[0]:>6}  {row[2] or '-':<14} {row[3] or '-':<12} {row[1]}")
    print(f"{len(rows)} people who belong to no group")
    return 0
