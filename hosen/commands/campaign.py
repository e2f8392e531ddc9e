"""``hosen campaign start|status|close|report|export|list|sweep``: drills and emergency check-ins.

``start`` first prints what the campaign will do (people, zones, channels, SMS segments, sending
time: :func:`dispatch.estimate.estimate_campaign`, the same numbers officers see on Telegram) and
asks for a confirmation on the terminal; ``--yes`` skips it, and without a terminal it is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select

from config.i18n import t
from config.languages import DEFAULT_LANGUAGE, Language
from hosen.context import CommandError, Context
from registry.db import unit_of_work, utcnow

LANGUAGES = tuple(language.value for language in Language)


def _add_lang(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=LANGUAGES, help=t(DEFAULT_LANGUAGE, "report.lang_help"))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    campaign = subparsers.add_parser("campaign")
    sub = campaign.add_subparsers(dest="campaign_command", required=True)

    start = sub.add_parser("start", help="start a check-in, task assignment or announcement")
    start.add_argument("--kind", choices=("checkin", "tasks", "announcement"), default="checkin")
    mode = start.add_mutually_exclusive_group(required=True)
    mode.add_argument("--drill", action="store_true", help="a drill: every message says so")
    mode.add_argument("--emergency", action="store_true", help="a real emergency")
    start.add_argument("--authority", help="authority code (default: the profile's first)")
    start.add_argument("--zone", action="append", default=[], help="zone code (repeatable)")
    start.add_argument("--need", action="append", default=[], help="need flag, e.g. mobility")
    start.add_argument("--role", action="append", default=[], help="role code (repeatable)")
    start.add_argument("--group", action="append", default=[], help="group join code, id or name")
    who = start.add_mutually_exclusive_group()
    who.add_argument("--residents", action="store_true", help="only residents who may need help")
    who.add_argument("--volunteers", action="store_true", help="only volunteers")
    start.add_argument("--text", help="an announcement's text (sent as written)")
    # The ladder's times default to the authority's profile (timings); a flag overrides one.
    start.add_argument("--reminder-after", type=int, metavar="MIN")
    start.add_argument("--visit-after", type=int, metavar="MIN")
    start.add_argument("--unreached-after", type=int, metavar="MIN")
    start.add_argument("--json", action="store_true")
    start.add_argument("--yes", action="store_true", help="start without asking for confirmation")
    start.set_defaults(handler=start_campaign)

    status = sub.add_parser("status", help="live status: delivery and answers, per zone")
    status.add_argument("campaign_id", type=int)
    status.add_argument("--json", action="store_true")
    _add_lang(status)
    status.set_defaults(handler=show_status)

    close = sub.add_parser("close", help="close it: stop the ladder and print the drill report")
    close.add_argument("campaign_id", type=int)
    close.add_argument("--json", action="store_true")
    _add_lang(close)
    close.set_defaults(handler=close_campaign)

    report = sub.add_parser("report", help="the drill report (open or closed), text/JSON/HTML")
    report.add_argument("campaign_id", type=int)
    report.add_argument("--json", action="store_true")
    report.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML report")
    _add_lang(report)
    report.set_defaults(handler=report_campaign)

    export = sub.add_parser("export", help="one CSV line per recipient")
    export.add_argument("campaign_id", type=int)
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    export.add_argument(
        "--codes", action="store_true", help="column names and values as codes, for programs"
    )
    _add_lang(export)
    export.set_defaults(handler=export_campaign)

    ls = sub.add_parser("list", help="recent campaigns")
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(handler=list_campaigns)

    sweep = sub.add_parser("sweep", help="run the escalation timers and lease repair once")
    sweep.set_defaults(handler=run_sweep)

    schedule = sub.add_parser("schedule", help="drills on a schedule (run by `hosen scheduler`)")
    schedule_sub = schedule.add_subparsers(dest="schedule_command", required=True)
    add = schedule_sub.add_parser("add", help="add a scheduled drill check-in")
    add.add_argument("cron", help='crontab line in local time, e.g. "0 10 * * 0"')
    add.add_argument("--authority")
    add.add_argument("--zone", action="append", default=[])
    add.add_argument("--residents", action="store_true")
    add.set_defaults(handler=add_schedule)
    schedule_sub.add_parser("list", help="scheduled drills").set_defaults(handler=list_schedules)


def _groups(session: Any, authority_id: int, names: list[str]) -> tuple[int, ...]:
    from registry.models import Group

    ids = []
    for name in names:
        group = session.scalars(
            select(Group).where(
                Group.authority_id == authority_id,
                or_(
                    Group.name == name,
                    Group.id == (int(name) if name.isdecimal() else -1),
                    func.upper(Group.join_code) == name.upper(),
                ),
            )
        ).first()
        if group is None:
            raise CommandError(f"no group {name!r}")
        ids.append(group.id)
    return tuple(ids)


def _print_estimate(estimate: Any, zone_names: dict[str, str], what: str) -> None:
    print(f"{what} to {estimate.recipients} people")
    for code, count in estimate.zones.items():
        print(f"  {zone_names.get(code, code):<24} {count:>7}")
    print(
        f"channels: Telegram {estimate.telegram}, SMS {estimate.sms}, "
        f"no channel {estimate.no_channel}"
    )
    print(f"SMS segments: {estimate.sms_segments}")
    print(f"sending takes about {_duration(estimate.seconds)} at the configured rates")
    if estimate.quiet_hours:
        print("WARNING: these are the authority's quiet hours; people may be asleep")


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds))} s" if seconds < 90 else f"{round(seconds / 60)} min"


def _confirmed(emergency: bool) -> bool:
    word = "EMERGENCY" if emergency else "yes"
    prompt = (
        "This is a REAL EMERGENCY. Type EMERGENCY to send: " if emergency else "Send it? [yes/no] "
    )
    try:
        answer = input(prompt)
    except EOFError:
        return False
    return answer.strip() == word if emergency else answer.strip().lower() in ("y", "yes")


def start_campaign(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch import campaigns
    from dispatch.estimate import estimate_campaign, unconfigured_warnings
    from dispatch.models import CampaignKind, CampaignMode
    from registry.models import Zone

    if not args.yes and not sys.stdin.isatty():
        raise CommandError("no terminal to confirm on: read the estimate, then add --yes")
    kind = CampaignKind(args.kind)
    mode = CampaignMode.DRILL if args.drill else CampaignMode.EMERGENCY
    try:
        with unit_of_work(ctx.sessions) as session:
            authority = ctx.authority(session, args.authority)
            own = campaigns.Ladder.of(authority)

            def minutes(value: int | None, default: timedelta) -> timedelta:
                return default if value is None else timedelta(minutes=value)

            ladder = replace(  # the authority's phone calls kept, the timings as asked
                own,
                reminder_after=minutes(args.reminder_after, own.reminder_after),
                visit_after=minutes(args.visit_after, own.visit_after),
                unreached_after=minutes(args.unreached_after, own.unreached_after),
            )
            audience = campaigns.Audience(
                zones=tuple(args.zone),
                needs=tuple(args.need),
                roles=tuple(args.role),
                groups=_groups(session, authority.id, args.group),
                residents_only=args.residents,
                volunteers_only=args.volunteers,
            )
            estimate = estimate_campaign(
                session,
                authority=authority,
                audience=audience,
                kind=kind,
                mode=mode,
                settings=ctx.settings,
                now=utcnow(),
                text=args.text,
                profile=ctx.profile,
            )
            zone_names = dict(
                session.execute(
                    select(Zone.code, Zone.name).where(Zone.authority_id == authority.id)
                ).all()
            )
        warnings = unconfigured_warnings(
            estimate, language=_language(ctx, args), kind=kind, ladder=ladder, settings_hint=True
        )
        if not args.json or not args.yes:
            _print_estimate(estimate, zone_names, f"{mode.value} {kind.value}")
        for warning in warnings:
            print(warning, file=sys.stderr if args.json else sys.stdout)
        if not args.yes and not _confirmed(mode == CampaignMode.EMERGENCY):
            print("cancelled: nothing was sent")
            return 1
        with unit_of_work(ctx.sessions) as session:
            campaign = campaigns.start_campaign(
                session,
                authority=ctx.authority(session, args.authority),
                kind=kind,
                mode=mode,
                audience=audience,
                started_by=ctx.actor,
                now=utcnow(),
                text=args.text,
                ladder=ladder,
            )
            result = {
                "campaign_id": campaign.id,
                "kind": campaign.kind.value,
                "mode": campaign.mode.value,
                "recipients": campaign.recipients,
                "estimate": estimate.as_dict(),
            }
    except campaigns.CampaignError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"campaign {result['campaign_id']} started ({result['mode']} {result['kind']}): "
            f"{result['recipients']} recipients queued; `hosen worker` sends them"
        )
    return 0


def _load(session: Any, campaign_id: int) -> Any:
    from dispatch.campaigns import CampaignError, get_campaign

    try:
        return get_campaign(session, campaign_id)
    except CampaignError as exc:
        raise CommandError(str(exc)) from None


def _language(ctx: Context, args: argparse.Namespace) -> Language:
    """``--lang``, else the profile's language, else Hebrew."""
    if getattr(args, "lang", None):
        return Language(args.lang)
    return ctx.profile.language or DEFAULT_LANGUAGE


def _view(ctx: Context, session: Any, campaign: Any, report: Any, language: Language) -> Any:
    from hosen.report_html import authority_name, report_view

    return report_view(
        session,
        campaign=campaign,
        report=report,
        local=ctx.settings.zone_info,
        now=utcnow(),
        language=language,
        authority=authority_name(session, ctx.profile, campaign.authority_id, language),
        timezone=ctx.settings.timezone,
    )


def show_status(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.reports import drill_report, live_status
    from hosen.report_html import status_lines

    with unit_of_work(ctx.sessions) as session:
        campaign = _load(session, args.campaign_id)
        if args.json:
            print(json.dumps(live_status(session, campaign=campaign).as_dict(), ensure_ascii=False))
            return 0
        view = _view(
            ctx, session, campaign, drill_report(session, campaign=campaign), _language(ctx, args)
        )
    print("\n".join(status_lines(view)))
    return 0


def close_campaign(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.reports import close_campaign as close
    from hosen.report_html import render_text

    with unit_of_work(ctx.sessions) as session:
        campaign = _load(session, args.campaign_id)
        report = close(session, campaign=campaign, now=utcnow())
        if args.json:
            print(json.dumps(report.as_dict(), ensure_ascii=False))
            return 0
        text = render_text(_view(ctx, session, campaign, report, _language(ctx, args)))
    sys.stdout.write(text)
    return 0


def report_campaign(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.reports import drill_report
    from hosen.report_html import render, render_text

    language = _language(ctx, args)
    with unit_of_work(ctx.sessions) as session:
        campaign = _load(session, args.campaign_id)
        report = drill_report(session, campaign=campaign)
        view = (
            _view(ctx, session, campaign, report, language) if args.html or not args.json else None
        )
        data = report.as_dict()
    if view is not None and args.html:
        args.html.write_text(render(view), encoding="utf-8")
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    elif view is not None:
        sys.stdout.write(render_text(view))
    if args.html:
        print(
            t(language, "report.wrote", path=args.html),
            file=sys.stderr if args.json else sys.stdout,
        )
    return 0


def export_campaign(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.reports import export_csv

    language = None if args.codes else _language(ctx, args)
    with unit_of_work(ctx.sessions) as session:
        text = export_csv(
            session,
            campaign=_load(session, args.campaign_id),
            language=language,
            local=ctx.settings.zone_info,
            bom=True,  # Excel reads the file as UTF-8 (Hebrew, Arabic, Amharic) only with it
        )
    if args.out:
        # newline="": the csv module already ends rows with CRLF.
        args.out.write_text(text, encoding="utf-8", newline="")
        print(t(language or DEFAULT_LANGUAGE, "report.wrote", path=args.out))
    else:
        sys.stdout.write(text)
    return 0


def list_campaigns(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.models import Campaign

    with unit_of_work(ctx.sessions) as session:
        rows = session.scalars(
            select(Campaign).order_by(Campaign.id.desc()).limit(args.limit)
        ).all()
        for c in rows:
            print(
                f"{c.id:>5}  {c.mode.value:<9} {c.kind.value:<12} {c.status.value:<7} "
                f"{c.started_at:%Y-%m-%d %H:%M}  {c.recipients} recipients"
            )
    return 0


def run_sweep(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.scheduler import sweep_all

    done = sweep_all(
        ctx.sessions,
        profile=ctx.profile,
        zone=ctx.settings.zone_info,
        now=utcnow(),
        retention=ctx.retention,
    )
    print(
        f"{done['ladder']} recipients moved up the ladder; {done['leases']} expired leases "
        f"requeued; {done['drills']} held drills started; {done['purged']} messages past "
        "retention emptied"
    )
    return 0


def add_schedule(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.campaigns import Audience, CampaignError
    from dispatch.scheduler import add_drill_schedule

    try:
        with unit_of_work(ctx.sessions) as session:
            schedule = add_drill_schedule(
                session,
                authority=ctx.authority(session, args.authority),
                cron=args.cron,
                audience=Audience(zones=tuple(args.zone), residents_only=args.residents),
                zone=ctx.settings.zone_info,
                now=utcnow(),
            )
            schedule_id = schedule.id
    except CampaignError as exc:
        raise CommandError(str(exc)) from None
    print(f"drill schedule {schedule_id} added ({args.cron}, {ctx.settings.timezone})")
    return 0


def list_schedules(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.models import DrillSchedule

    with unit_of_work(ctx.sessions) as session:
        for s in session.scalars(select(DrillSchedule).order_by(DrillSchedule.id)):
            last = f"{s.last_started_at:%Y-%m-%d %H:%M}" if s.last_started_at else "never"
            held = " (held by quiet hours)" if s.pending_since else ""
            print(f"{s.id:>4}  {s.cron:<20} {'on' if s.enabled else 'off':<4} last {last}{held}")
    return 0
