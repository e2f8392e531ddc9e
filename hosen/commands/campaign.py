"""``hosen campaign start|status|close|report|export|list|sweep``: drills and emergency check-ins.

``start`` first prints what the campaign will do (people, zones, channels, SMS segments, sending
time: :func:`dispatch.estimate.estimate_campaign`, the same numbers officers see on Telegram) and
asks for a confirmation on the terminal; ``--yes`` skips it, and without a terminal it is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select

from hosen.context import CommandError, Context
from registry.db import unit_of_work, utcnow

STATUS_COLUMNS = (
    "recipients",
    "queued",
    "sent",
    "delivered",
    "failed",
    "no_channel",
    "ok",
    "help",
    "free_text",
    "no_answer",
    "unreached",
)


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
    status.set_defaults(handler=show_status)

    close = sub.add_parser("close", help="close it: stop the ladder and print the drill report")
    close.add_argument("campaign_id", type=int)
    close.add_argument("--json", action="store_true")
    close.set_defaults(handler=close_campaign)

    report = sub.add_parser("report", help="the drill report (open or closed), text/JSON/HTML")
    report.add_argument("campaign_id", type=int)
    report.add_argument("--json", action="store_true")
    report.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML report")
    report.set_defaults(handler=report_campaign)

    export = sub.add_parser("export", help="one CSV line per recipient")
    export.add_argument("campaign_id", type=int)
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
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
    from dispatch.estimate import estimate_campaign
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

            ladder = campaigns.Ladder(
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
        if not args.json or not args.yes:
            _print_estimate(estimate, zone_names, f"{mode.value} {kind.value}")
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


def _print_counts_table(status: dict[str, Any]) -> None:
    header = f"{'zone':<16}" + "".join(f"{name:>11}" for name in STATUS_COLUMNS)
    print(header)
    for zone, counts in sorted(status["zones"].items()):
        print(f"{zone:<16}" + "".join(f"{counts[name]:>11}" for name in STATUS_COLUMNS))
    print(f"{'total':<16}" + "".join(f"{status['total'][name]:>11}" for name in STATUS_COLUMNS))
    if status["tasks"]:
        print("tasks: " + ", ".join(f"{k} {v}" for k, v in sorted(status["tasks"].items())))
    if status["alerts"]:
        print("open alerts: " + ", ".join(f"{k} {v}" for k, v in sorted(status["alerts"].items())))


def show_status(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.reports import live_status

    with unit_of_work(ctx.sessions) as session:
        status = live_status(session, campaign=_load(session, args.campaign_id)).as_dict()
    if args.json:
        print(json.dumps(status, ensure_ascii=False))
        return 0
    print(
        f"campaign {status['campaign_id']}: {status['mode']} {status['kind']}, {status['status']}, "
        f"started {status['started_at']}"
    )
    _print_counts_table(status)
    return 0


def _print_report(report: dict[str, Any]) -> None:
    times = report["time_to_answer_seconds"]
    print(
        f"answered {report['answered']} of {report['recipients']} "
        f"({100 * report['response_rate']:.1f}%); time to answer p50 {times['p50']} s, "
        f"p90 {times['p90']} s, p99 {times['p99']} s"
    )
    _print_counts_table(report["status"])
    print(f"unreached ({len(report['unreached'])}):")
    for person in report["unreached"]:
        print(
            f"  {person['person_id']:>6}  {person['name'] or '-':<28} {person['zone'] or '-':<14} "
            f"{person['phone'] or '-':<14} {person['address'] or '-'}"
        )
    print(f"numbers that bounced ({len(report['bounced_numbers'])}), fix them in the registry:")
    for bounce in report["bounced_numbers"]:
        print(f"  {bounce['person_id']:>6}  {bounce['address']:<14} {bounce['reason']}")


def close_campaign(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.reports import close_campaign as close

    with unit_of_work(ctx.sessions) as session:
        report = close(session, campaign=_load(session, args.campaign_id), now=utcnow()).as_dict()
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"campaign {report['campaign_id']} closed ({report['mode']})")
    _print_report(report)
    return 0


def report_campaign(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.reports import drill_report
    from hosen.report_html import render, report_view

    with unit_of_work(ctx.sessions) as session:
        campaign = _load(session, args.campaign_id)
        report = drill_report(session, campaign=campaign)
        if args.html:
            view = report_view(
                session,
                campaign=campaign,
                report=report,
                title=f"Hosen {campaign.mode.value} report: campaign {campaign.id}",
                local=ctx.settings.zone_info,
            )
            args.html.write_text(render(view), encoding="utf-8")
        data = report.as_dict()
        state = campaign.status.value
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(f"campaign {data['campaign_id']} ({data['mode']}, {state})")
        _print_report(data)
    if args.html:
        print(f"wrote {args.html}", file=sys.stderr if args.json else sys.stdout)
    return 0


def export_campaign(ctx: Context, args: argparse.Namespace) -> int:
    from dispatch.reports import export_csv

    with unit_of_work(ctx.sessions) as session:
        text = export_csv(session, campaign=_load(session, args.campaign_id))
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
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
