"""``hosen gaps [--zone Z] [--json] [--html FILE] [--lang L]``: per zone, the needs, the answers
and the gaps with their true causes, in the officer's language (``registry.gaps``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sqlalchemy import select

from config.languages import Language
from hosen.context import CommandError, Context
from hosen.gaps_report import as_html, as_text
from registry.db import unit_of_work, utcnow
from registry.gaps import needs_answers_gaps
from registry.models import Zone


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser("gaps")
    cmd.add_argument("--authority", help="authority code (default: the profile's first)")
    cmd.add_argument("--zone", help="one zone only")
    cmd.add_argument(
        "--lang",
        choices=[x.value for x in Language],
        default=Language.EN.value,
        help="the officer's language (default: en)",
    )
    out = cmd.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the map as JSON")
    out.add_argument("--html", type=Path, metavar="FILE", help="write the map as an HTML page")
    cmd.set_defaults(handler=gaps_command)


def gaps_command(ctx: Context, args: argparse.Namespace) -> int:
    language = Language(args.lang)
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        zone = None
        if args.zone:
            zone = session.scalar(
                select(Zone).where(Zone.authority_id == authority.id, Zone.code == args.zone)
            )
            if zone is None:
                raise CommandError(f"unknown zone {args.zone!r} in {authority.code}")
        needs_map = needs_answers_gaps(
            session,
            authority=authority,
            profile=ctx.profile,
            now=utcnow(),
            language=language,
            zone=zone,
        )
        name = ctx.profile.authority(authority.code).names.get(language)
    if args.json:
        print(json.dumps(needs_map.as_json(), ensure_ascii=False, indent=2))
    elif args.html:
        try:
            args.html.write_text(as_html(needs_map, name), encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {args.html}: {exc.strerror or exc}") from None
        print(f"needs, answers and gaps: {args.html}")
    else:
        print(as_text(needs_map, name))
    return 0
