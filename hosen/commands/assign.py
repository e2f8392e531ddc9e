"""``hosen assign``: give roles and buddies, and say what recruitment would close the gaps.

Prints coverage, the changes written (new, re-ranked and released assignments, which the
dispatcher will ask each volunteer to confirm) and the gap report per zone. ``--dry-run`` plans and
prints without writing; ``--json`` prints one JSON document instead of the table.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from sqlalchemy import select

from config.languages import Language
from hosen.commands.people import find_person
from hosen.context import Context
from registry.assignment.explain import explain_person
from registry.assignment.report import GapLine, gap_lines
from registry.assignment.store import AssignmentResult, assign_authority
from registry.db import unit_of_work, utcnow
from registry.models import Shelter


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    assign = subparsers.add_parser("assign")
    assign.add_argument("--authority", help="authority code (default: the profile's first)")
    assign.add_argument("--dry-run", action="store_true", help="plan and print, write nothing")
    assign.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    assign.add_argument(
        "--prove-walking",
        action="store_true",
        help="prove the buddies' walking the least over every pair within reach, however large "
        "the town (small towns always get the proof; about 7 s more at 100,000 people)",
    )
    assign.add_argument(
        "--explain",
        metavar="PHONE",
        help="say why this person (phone or id) got what they got; writes nothing",
    )
    assign.add_argument(
        "--language",
        choices=[language.value for language in Language],
        default=Language.EN.value,
        help="language of the gap report (default: en)",
    )
    assign.set_defaults(handler=run_assign)


def run_assign(ctx: Context, args: argparse.Namespace) -> int:
    if args.explain:
        return run_explain(ctx, args)
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        result = assign_authority(
            session,
            authority=authority,
            profile=ctx.profile,
            actor=ctx.actor,
            dry_run=args.dry_run,
            prove_walking=args.prove_walking,
        )
        shelters = {
            row.id: row.name
            for row in session.execute(
                select(Shelter.id, Shelter.name).where(Shelter.authority_id == authority.id)
            )
        }
        code = authority.code
    lines = gap_lines(
        buddy_gaps=result.buddy_gaps,
        open_seats=result.roles.open_seats,
        zone_codes=result.zone_codes,
        shelter_names=shelters,
        tier_of_role=result.tier_of_role,
        profile=ctx.profile,
        authority=ctx.profile.authority(code),
        language=Language(args.language),
    )
    document = as_json(result, lines, authority=code, dry_run=args.dry_run)
    if args.json:
        print(_dumps(document))
    else:
        print_table(document)
    return 0


def as_json(
    result: AssignmentResult, lines: list[GapLine], *, authority: str, dry_run: bool
) -> dict[str, Any]:
    c = result.buddies.coverage
    buddy_changes = Counter(change.kind for change in result.buddies.changes)
    role_changes = Counter(change.kind for change in result.roles.changes)
    return {
        "authority": authority,
        "dry_run": dry_run,
        "run_id": result.run_id,
        "buddies": {
            "residents": c.residents,
            "covered": c.covered,
            "with_backup": c.with_backup,
            "weighted": c.weighted,
            "weighted_total": c.weighted_total,
            "distance_m": c.distance_m,
            "walking_proven": result.buddies.walking_proven,
            "same_zone_guesses": c.guessed_pairs,
            "pairs": len(result.buddies.pairs),
            "unassigned": {str(k): v for k, v in result.buddies.unassigned.items()},
        },
        "roles": {
            "seats": result.roles.seats,
            "filled": result.roles.filled,
            "holders": len(result.roles.holders),
            "open": [
                {
                    "role": s.quota.role_code,
                    "zone": result.zone_codes.get(s.quota.zone_id) if s.quota.zone_id else None,
                    "shelter_id": s.quota.shelter_id,
                    "tier": result.tier_of_role.get(s.quota.role_code),
                    "open": s.open,
                    "reason": s.reason.value,
                    "eligible": s.eligible,
                    "engaged": s.engaged,
                    "engaged_tiers": list(s.engaged_tiers),
                }
                for s in result.roles.open_seats
            ],
        },
        "tiers": [
            {"tier": r.number, "kind": r.kind, "what": r.what, "demand": r.demand, "met": r.met}
            for r in result.tiers
        ],
        "changes": {
            "buddy": {k: buddy_changes.get(k, 0) for k in ("new", "rank", "released")},
            "role": {k: role_changes.get(k, 0) for k in ("new", "released")},
            "to_confirm": [
                {
                    "change_id": ch.change_id,
                    "kind": ch.kind,
                    "action": ch.action,
                    "assignment_id": ch.assignment_id,
                    "volunteer_id": ch.volunteer_id,
                }
                for ch in result.changes
                if ch.action != "released"
            ],
        },
        "gaps": [
            {
                "zone": line.zone,
                "kind": line.kind,
                "cause": line.cause,
                "count": line.count,
                "text": line.text,
            }
            for line in lines
        ],
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
    }


def _dumps(value: Any, indent: str = "") -> str:
    """JSON indented by two spaces, except that each item of a list takes one compact line: a
    first run in a town of 100,000 lists some 20,000 changes, which the standard library's indenting
    encoder (pure Python) takes a second to write; its compact encoder is in C."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = (
            f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_dumps(v, inner)}"
            for k, v in value.items()
        )
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value:
        lines = (inner + json.dumps(item, ensure_ascii=False) for item in value)
        return "[\n" + ",\n".join(lines) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def print_table(doc: dict[str, Any]) -> None:
    b, r, ch = doc["buddies"], doc["roles"], doc["changes"]
    title = f"{doc['authority']}: assignment" + (
        " (dry run: nothing written)" if doc["dry_run"] else ""
    )
    print(title)
    average = b["distance_m"] / max(1, b["pairs"] - b["same_zone_guesses"])
    print(
        f"  buddies   {b['covered']:,} of {b['residents']:,} residents have a buddy "
        f"({_percent(b['covered'], b['residents'])}; priority-weighted "
        f"{_percent(b['weighted'], b['weighted_total'])}), {b['with_backup']:,} also a backup"
    )
    print(
        f"            walking {b['distance_m'] / 1000:,.1f} km in all, {average:,.0f} m on average"
        f"{' (proven least)' if b['walking_proven'] else ''}; "
        f"{b['same_zone_guesses']:,} same-zone pairs without coordinates"
    )
    print(f"  roles     {r['filled']:,} of {r['seats']:,} seats filled")
    for tier in doc["tiers"]:
        unit = "seats filled" if tier["kind"] == "roles" else "residents have a buddy"
        print(
            f"  tier {tier['tier']}    {tier['kind']} ({tier['what']}): "
            f"{tier['met']:,} of {tier['demand']:,} {unit}"
        )
    print(
        f"  changes   buddies {ch['buddy']['new']:,} new, {ch['buddy']['rank']:,} re-ranked, "
        f"{ch['buddy']['released']:,} released; roles {ch['role']['new']:,} new, "
        f"{ch['role']['released']:,} released"
    )
    reasons = Counter(b["unassigned"].values())
    if reasons:
        print(
            "  without a buddy, by reason: "
            + ", ".join(f"{k} {v}" for k, v in reasons.most_common())
        )
    if doc["gaps"]:
        print("gaps")
        for gap in doc["gaps"]:
            print(f"  {gap['text']}")
    else:
        print("gaps: none")
    print(
        "  time      "
        + ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in doc["timings_s"].items())
    )


def run_explain(ctx: Context, args: argparse.Namespace) -> int:
    """``--explain``: the person's stored role and buddies, the plan now, and why."""
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        person = find_person(session, ctx.settings, authority.id, args.explain)
        explanation = explain_person(
            session,
            authority=authority,
            profile=ctx.profile,
            person=person,
            now=utcnow(),
            language=Language(args.language),
        )
        session.rollback()  # a dry run: nothing of the plan is kept
    if args.json:
        print(
            _dumps(
                {
                    "person_id": explanation.person_id,
                    "stored": explanation.stored,
                    "planned": explanation.planned,
                    "why": explanation.why,
                }
            )
        )
        return 0
    print(f"person {explanation.person_id}")
    for kind, rows in explanation.stored.items():
        if rows:
            print(f"  stored {kind}: " + "; ".join(_stored(row) for row in rows))
    for line in explanation.why:
        print(f"  - {line}")
    return 0


def _stored(row: dict[str, Any]) -> str:
    if "role" in row:
        place = row["shelter"] or row["zone"] or "town-wide"
        return f"{row['role']} ({place}) {row['status']}{_offer(row)}"
    who = row.get("resident_id", row.get("volunteer_id"))
    return f"#{who} rank {row['rank']} {row['status']}{_offer(row)}"


def _offer(row: dict[str, Any]) -> str:
    """Where the seat's offer to its volunteer stands (offered, reminded, confirmed...)."""
    return f", offer {row['offer']}" if row.get("offer") else ""
