"""``hosen import``, ``hosen export``, ``hosen town`` and ``hosen people summary``: municipal lists
in and out, the synthetic town, and the registry at a glance."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import BinaryIO

from config.languages import Language
from hosen.context import CommandError, Context
from registry.db import unit_of_work
from registry.exporter import export_people
from registry.importer import ImportReport, import_list, iter_problem_lines
from registry.profile_sync import sync_profile
from registry.summary import RegistrySummary, ZoneSummary, summarise

SHOWN_PROBLEMS = 10
DEFAULT_LIST_NAMES = {"residents": "welfare", "volunteers": "volunteers"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # The synthetic town lives with the fakes: loaded by these commands, not by `hosen people`.
    from fakes.town import DEFAULT_SEED, MAX_SIZE

    imp = subparsers.add_parser("import")
    imp.add_argument("kind", choices=("residents", "volunteers"), help="which list it is")
    imp.add_argument(
        "file", type=Path, help="CSV file: Hebrew or English headers, UTF-8 or Windows-1255"
    )
    imp.add_argument("--authority", help="authority code (default: the profile's first)")
    imp.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    imp.add_argument("--report", type=Path, help="write the row-by-row report to this JSON file")
    imp.add_argument(
        "--list",
        dest="list_name",
        help="the list's name: municipal ids are unique within it (default: welfare / volunteers)",
    )
    imp.add_argument(
        "--list-version",
        help="the list's version, recorded with the consent (up to 20 characters; default: the file name without extension)",
    )
    imp.add_argument(
        "--lang",
        choices=[lang.value for lang in Language],
        default="en",
        help="language of the report's messages",
    )
    imp.set_defaults(handler=import_command)

    exp = subparsers.add_parser("export")
    exp_sub = exp.add_subparsers(dest="export_command", required=True)
    people = exp_sub.add_parser("people", help="people, in the columns `hosen import` reads back")
    people.add_argument("file", type=Path)
    people.add_argument("--authority", help="authority code (default: the profile's first)")
    people.add_argument(
        "--include-needs",
        action="store_true",
        help="include health and disability data (the read is audited)",
    )
    people.add_argument(
        "--encoding",
        choices=("utf-8", "cp1255"),
        default="utf-8",
        help="utf-8 (with BOM, for Excel) or Windows-1255",
    )
    people.add_argument("--headers", choices=("he", "en"), default="he", help="header language")
    people.set_defaults(handler=export_command)

    town = subparsers.add_parser("town")
    town_sub = town.add_subparsers(dest="town_command", required=True)
    gen = town_sub.add_parser("generate", help="generate a deterministic synthetic town")
    gen.add_argument("--size", type=int, required=True, help=f"people, 1 to {MAX_SIZE}")
    gen.add_argument("--seed", type=int, default=DEFAULT_SEED)
    gen.add_argument("--year", type=int, help="the year ages are counted in (default: this year)")
    gen.add_argument("--load", action="store_true", help="load it into the database")
    gen.add_argument(
        "--csv",
        type=Path,
        metavar="DIR",
        help="write its municipal lists (residents, volunteers) per authority here",
    )
    gen.set_defaults(handler=town_generate)


def add_summary_command(
    people_sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """``hosen people summary``: registered by ``hosen.commands.people`` under its own group."""
    summary = people_sub.add_parser(
        "summary", help="per zone: who may need help, who can help, channels"
    )
    summary.add_argument("--authority", help="authority code (default: the profile's first)")
    summary.add_argument("--json", action="store_true")
    summary.set_defaults(handler=summary_command)


# -------------------------------------------------------------------------- import


def import_command(ctx: Context, args: argparse.Namespace) -> int:
    try:
        data = args.file.open("rb")  # read as a stream: a large list is never held whole
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    with data:
        return _import_file(ctx, args, data)


def _import_file(ctx: Context, args: argparse.Namespace, data: BinaryIO) -> int:
    list_name = args.list_name or DEFAULT_LIST_NAMES[args.kind]
    version = args.list_version or args.file.stem
    session = ctx.sessions()
    try:
        authority = ctx.authority(session, args.authority)
        report = import_list(
            session,
            data=data,
            kind=args.kind,
            authority=authority,
            profile=ctx.profile,
            list_name=list_name,
            list_version=version,
            region=ctx.settings.default_region,
            actor=ctx.actor,
            dry_run=args.dry_run,
        )
        if args.dry_run:
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    language = Language(args.lang)
    print_report(report, language)
    if args.report:
        args.report.write_text(
            json.dumps(report.as_json(language), ensure_ascii=False, indent=1), encoding="utf-8"
        )
        print(f"row-by-row report: {args.report}")
    return 0


def print_report(report: ImportReport, language: Language) -> None:
    totals = report.totals
    print(
        f"{report.kind} list {report.list_name!r} (version {report.list_version!r}), "
        f"{report.encoding}, delimiter {report.delimiter!r}: {totals['rows']} rows"
    )
    verb = "would be " if report.dry_run else ""
    print(
        f"  {verb}created {totals['created']}, {verb}updated {totals['updated']}, "
        f"unchanged {totals['unchanged']}, skipped {totals['skipped']}, "
        f"with warnings {totals['with_warnings']}"
    )
    if report.ignored_columns:
        print(f"  columns not read: {', '.join(report.ignored_columns)}")
    problems = report.problem_rows()
    for line in iter_problem_lines(report, language, SHOWN_PROBLEMS):
        print(f"  {line}")
    if len(problems) > SHOWN_PROBLEMS:
        print(f"  … and {len(problems) - SHOWN_PROBLEMS} more rows with problems (see --report)")
    if report.dry_run:
        print("dry run: nothing was written")


# -------------------------------------------------------------------------- export


def export_command(ctx: Context, args: argparse.Namespace) -> int:
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        try:
            count = export_people(
                session,
                authority=authority,
                path=args.file,
                include_needs=args.include_needs,
                encoding=args.encoding,
                hebrew_headers=args.headers == "he",
                actor=ctx.actor,
            )
        except OSError as exc:
            raise CommandError(f"cannot write {args.file}: {exc.strerror or exc}") from None
    needs = " with health data (audited)" if args.include_needs else ""
    print(f"exported {count} people{needs} to {args.file} ({args.encoding})")
    return 0


# -------------------------------------------------------------------------- town


def town_generate(ctx: Context, args: argparse.Namespace) -> int:
    from fakes.town import MAX_SIZE, generate_town, load_town, write_municipal_csv

    if not 1 <= args.size <= MAX_SIZE:
        raise CommandError(f"--size must be between 1 and {MAX_SIZE}")
    town = generate_town(ctx.profile, size=args.size, seed=args.seed, year=args.year)
    people = town.people
    languages = Counter(p.language.value for p in people)
    print(
        f"town of {len(people)} people (seed {town.seed}, year {town.year}): "
        f"{sum(p.needs_help for p in people)} may need help, "
        f"{sum(p.is_volunteer for p in people)} volunteers, {len(town.groups)} groups"
    )
    print("  languages: " + ", ".join(f"{lang} {n}" for lang, n in languages.most_common()))
    if args.csv:
        args.csv.mkdir(parents=True, exist_ok=True)
        for authority in ctx.profile.authorities:
            for kind in ("residents", "volunteers"):
                path = args.csv / f"{authority.code}-{kind}.csv"
                rows = write_municipal_csv(
                    town, path, kind, profile=ctx.profile, authority=authority.code
                )
                print(f"  wrote {rows} rows to {path}")
    if args.load:
        with unit_of_work(ctx.sessions) as session:
            directory = sync_profile(session, ctx.profile)
            counts = load_town(session, town, directory)
        print(
            f"loaded {counts.people} people ({counts.residents} may need help, "
            f"{counts.volunteers} volunteers), {counts.groups} groups, "
            f"{counts.consents} consents; {counts.skipped} already there"
        )
    return 0


# -------------------------------------------------------------------------- summary


def summary_command(ctx: Context, args: argparse.Namespace) -> int:
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, args.authority)
        summary = summarise(session, authority=authority)
    if args.json:
        print(json.dumps(summary.as_json(), ensure_ascii=False, indent=2))
    else:
        print_summary(summary)
    return 0


def print_summary(summary: RegistrySummary) -> None:
    header = (
        f"{'zone':<16}{'people':>8}{'help':>7}{'vol':>6}{'tg':>7}{'sms':>7}"
        f"{'landln':>7}{'none':>6}{'minors':>7}{'groups':>7}"
    )
    print(f"registry of {summary.authority} ({summary.year})")
    print(header)
    print("-" * len(header))
    rows: list[ZoneSummary] = [*summary.zones, summary.total]
    for zone in rows:
        if zone is summary.total:
            print("-" * len(header))
        print(
            f"{zone.zone:<16}{zone.people:>8}{zone.residents:>7}{zone.volunteers:>6}"
            f"{zone.telegram:>7}{zone.sms:>7}{zone.landline_only:>7}{zone.no_channel:>6}"
            f"{zone.minors:>7}{zone.groups:>7}"
        )
    print("help: may need help; vol: volunteers; tg/sms: reached by; landln: landline only")
    print(f"opted out: {summary.opted_out}, erased: {summary.erased}")
    print("\nneeds (residents who may need help, by category):")
    for name, count in sorted(summary.total.needs.items(), key=lambda kv: -kv[1]):
        per_zone = ", ".join(
            f"{z.zone} {z.needs[name]}" for z in summary.zones if z.needs.get(name)
        )
        print(f"  {name:<27}{count:>6}   {per_zone}")
    print("\nvolunteer skills:")
    for name, count in summary.total.skills.items():
        per_zone = ", ".join(
            f"{z.zone} {z.skills[name]}" for z in summary.zones if z.skills.get(name)
        )
        print(f"  {name:<27}{count:>6}   {per_zone}")
