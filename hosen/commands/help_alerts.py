"""``hosen help list``: the owned alerts still open (help, no buddy, could not reach; not done,
not given up), oldest first, with their age, who owns them and their kind. An alert nobody owns
is the one to act on."""

from __future__ import annotations

import argparse
import json

from hosen.context import CommandError, Context
from registry.db import unit_of_work, utcnow


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_parser = subparsers.add_parser(
        "help", help="help alerts: who asked for help, since when, and who has it"
    )
    actions = help_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="open help alerts, oldest first, with age and owner")
    listing.add_argument("--authority", metavar="CODE", help="only this authority's residents")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.set_defaults(handler=list_help)


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def list_help(ctx: Context, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from config.languages import Language
    from dispatch.help import open_help
    from registry.models import Authority

    now = utcnow()
    with unit_of_work(ctx.sessions) as session:
        authority_id = None
        if args.authority:
            authority_id = session.scalar(
                select(Authority.id).where(Authority.code == args.authority)
            )
            if authority_id is None:
                raise CommandError(f"no authority {args.authority!r}")
        rows = open_help(session, authority_id=authority_id, now=now, language=Language.EN)
    if args.json:
        for row in rows:
            print(
                json.dumps(
                    {
                        "alert": row.alert_id,
                        "kind": row.kind.value,
                        "state": row.state.value,
                        "resident": row.resident,
                        "zone": row.zone,
                        "age_seconds": round(row.age_seconds),
                        "owner": row.owner or None,
                        "need": row.need.value if row.need else None,
                        "later_ok_at": row.later_ok_at.isoformat() if row.later_ok_at else None,
                    },
                    ensure_ascii=False,
                )
            )
        return 0
    if not rows:
        print("no open help")
        return 0
    print(f"{'alert':>6}  {'age':>6}  {'state':<6}  {'owner':<20}  resident (zone)  kind")
    for row in rows:
        owner = row.owner or "NOBODY"
        print(
            f"{row.alert_id:>6}  {_age(row.age_seconds):>6}  {row.state.value:<6}  "
            f"{owner[:20]:<20}  {row.resident} ({row.zone})  {row.kind.value}"
            + ("  [since answered OK]" if row.later_ok_at else "")
        )
    return 0
