"""A campaign's report in the officer's language: one self-contained HTML file, and plain text.

:func:`report_view` turns :func:`dispatch.reports.drill_report` into what an officer reads:
every label from the ``[report]`` tables of the catalogs (CLDR plural forms through Babel),
zone names in that language, local times without seconds, drill time (a compressed ladder) and
real time apart and labelled. :func:`render` writes it with the Jinja2 template
``templates/report.html`` (autoescaped, ``lang`` and ``dir`` set, charts as inline SVG, no
JavaScript, no external assets: it opens offline and prints); :func:`render_text` is the same
report for a terminal. It names who is unreached, where and how to reach them, never a need or
any medical detail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import cache
from typing import Any

from babel.dates import format_datetime
from babel.numbers import format_percent
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t, tn
from config.languages import Language
from config.profile import Profile
from dispatch.calls import REPORTED
from dispatch.estimate import minutes as duration
from dispatch.models import CallOutcome, Campaign, CampaignRecipient, CampaignStatus
from dispatch.reports import DELIVERIES, OUTCOMES, DrillReport, zone_names
from registry.models import Authority

WIDTH, HEIGHT, PAD = 640, 240, 40
COLOURS = {
    "ok": "#2e7d32",
    "help": "#c62828",
    "free_text": "#f9a825",
    "visited": "#1565c0",
    "waiting": "#90caf9",
    "unreached": "#616161",
}
LADDER_STEPS = ("reminder", "visit", "unreached")


@dataclass(frozen=True)
class Row:
    """One line of a small table: a label and its count."""

    label: str
    count: int
    colour: str = ""


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    colour: str
    title: str


@dataclass(frozen=True)
class ZoneRow:
    zone: str
    recipients: int
    counts: tuple[int, ...]  # in OUTCOMES order; adds up to recipients
    segments: tuple[Segment, ...] = ()


@dataclass(frozen=True)
class PersonRow:
    """Someone not accounted for: who, where, how to reach them, what was done, what is next."""

    priority: str
    name: str
    zone: str
    phone: str
    address: str
    buddy: str
    done: str
    last: str
    next: str
    buddy_phone: str = ""  # apart, so a right-to-left page keeps the number left to right


@dataclass(frozen=True)
class NumberRow:
    name: str
    zone: str
    number: str
    problem: str


@dataclass(frozen=True)
class HelpRow:
    name: str
    zone: str
    asked: str
    taken_by: str
    taken_at: str
    outcome: str


@dataclass(frozen=True)
class CallRow:
    """One zone's phone calls: how many ended each way (in ``ReportView.call_heads`` order)."""

    zone: str
    counts: tuple[int, ...]
    total: int


@dataclass(frozen=True)
class Marker:
    x: float
    label: str


@dataclass(frozen=True)
class Curve:
    points: str  # SVG polyline points
    ticks: tuple[tuple[float, str], ...]  # y, label
    markers: tuple[Marker, ...]  # the ladder's steps
    end_label: str


@dataclass(frozen=True)
class ReportView:
    language: Language
    title: str
    badge: str
    mode: str  # "drill" | "emergency"
    when: tuple[str, ...]  # the real-time line(s), then the drill-time note if any
    messaged: str
    answered: str
    accounted: str
    outcomes: tuple[Row, ...]
    deliveries: tuple[Row, ...]
    total: Row
    percentiles: tuple[tuple[str, str], ...]
    curve: Curve | None
    per_zone: tuple[ZoneRow, ...] = ()
    unreached: tuple[PersonRow, ...] = ()
    help: tuple[HelpRow, ...] = ()
    help_summary: str = ""
    numbers: tuple[NumberRow, ...] = ()
    opted_out: str = ""
    opted_out_names: tuple[str, ...] = ()
    visits: str = ""
    alerts: str = ""
    # Phone calls per zone, then their total; empty when the campaign placed no call.
    calls: tuple[CallRow, ...] = ()
    calls_total: CallRow | None = None
    call_heads: tuple[str, ...] = ()
    calls_placed: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def dir(self) -> str:
        return "rtl" if self.language.rtl else "ltr"


def _labels(language: Language) -> dict[str, str]:
    """Every fixed label of the page (headings, columns, legends), in ``language``."""
    keys = [
        *(f"heading.{k}" for k in ("outcome", "delivery", "times", "curve", "zones", "help")),
        *(f"heading.{k}" for k in ("unreached", "numbers", "opted_out", "visits")),
        *(f"column.{k}" for k in ("zone", "people", "name", "phone", "address", "buddy")),
        *(f"column.{k}" for k in ("priority", "done", "last", "next", "number", "problem")),
        *(f"column.{k}" for k in ("asked", "taken_by", "taken_at", "outcome")),
        *(f"outcome.{k}" for k in OUTCOMES),
        *(f"short.{k}" for k in OUTCOMES),
        "no_answers",
        "nobody",
        "total",
        "calls.heading",
        "calls.calls",
    ]
    return {key: t(language, f"report.{key}") for key in keys}


def _calls(
    language: Language, counts: dict[str, dict[str, int]], zone_of: Callable[[str | None], str]
) -> tuple[tuple[CallRow, ...], CallRow | None, tuple[str, ...]]:
    """The calls table: a row per zone (by its name), the total row, the column heads. Calls
    still ringing get a column only while there are some."""
    if not counts:
        return (), None, ()
    shown = [
        o.value
        for o in REPORTED
        if o not in (CallOutcome.PENDING, CallOutcome.UNSERVED)
        or any(c.get(o.value) for c in counts.values())
    ]
    rows = sorted(
        (
            CallRow(
                zone=zone_of(code or None),
                counts=tuple(counted.get(o, 0) for o in shown),
                total=sum(counted.values()),
            )
            for code, counted in counts.items()
        ),
        key=lambda row: row.zone,
    )
    total = CallRow(
        zone=t(language, "report.total"),
        counts=tuple(sum(row.counts[i] for row in rows) for i in range(len(shown))),
        total=sum(row.total for row in rows),
    )
    return tuple(rows), total, tuple(t(language, f"report.calls.outcome.{o}") for o in shown)


class Clock:
    """Times and durations as the officer reads them: local, without seconds, in their
    language; drill time is real time × ``speed``."""

    def __init__(self, language: Language, local: tzinfo, speed: float) -> None:
        self.language, self.local, self.speed = language, local, speed

    def moment(self, at: datetime | str | None, *, day: bool = False) -> str:
        if at is None or at == "":
            return ""
        if isinstance(at, str):
            at = datetime.fromisoformat(at)
        pattern = "d MMM y, HH:mm" if day else "HH:mm"
        return format_datetime(at, pattern, tzinfo=self.local, locale=self.language.value)

    def drill(self, seconds: float | None) -> str:
        """A span of the campaign in drill time."""
        return "-" if seconds is None else duration(self.language, seconds * self.speed)

    def percent(self, share: float) -> str:
        return format_percent(share, "#,##0.0%", locale=self.language.value)


def _when(view_clock: Clock, campaign: Campaign, now: datetime, timezone: str) -> tuple[str, ...]:
    language = view_clock.language
    started = t(language, "report.started", time=view_clock.moment(campaign.started_at, day=True))
    end = campaign.closed_at if campaign.status == CampaignStatus.CLOSED else None
    if end is not None:
        state = t(language, "report.closed", time=view_clock.moment(end, day=True))
    else:
        state = t(language, "report.running")
    span = ((end or now) - campaign.started_at).total_seconds()
    lines = [
        f"{t(language, 'report.real_time', timezone=timezone)}: {started}, {state}. "
        + (t(language, "report.lasted", duration=duration(language, span)) if end is None else "")
    ]
    if view_clock.speed != 1:
        lines.append(
            f"{t(language, 'report.drill_time')}: "
            + t(
                language,
                "report.drill_time_note",
                speed=f"{view_clock.speed:g}",
                duration=view_clock.drill(span),
            )
        )
    return tuple(line.strip() for line in lines)


def _curve(
    clock: Clock, campaign: Campaign, answered: list[float], total: int, elapsed: float
) -> Curve | None:
    """The answers curve (minutes of drill time → people), with the ladder's steps marked
    where the campaign has reached them."""
    if not answered or total == 0:
        return None
    steps = {
        "reminder": campaign.reminder_after,
        "visit": campaign.visit_after,
        "unreached": campaign.unreached_after,
    }
    reached = {k: v * clock.speed / 60 for k, v in steps.items() if v <= elapsed}
    max_x = max([answered[-1], *reached.values(), 1e-9])
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(minute: float) -> float:
        return PAD + inner_w * minute / max_x

    def y(count: int) -> float:
        return HEIGHT - PAD - inner_h * count / total

    series = [(0.0, 0), *((minute, i + 1) for i, minute in enumerate(answered))]
    return Curve(
        points=" ".join(f"{x(m):.1f},{y(c):.1f}" for m, c in series),
        ticks=tuple(
            (HEIGHT - PAD - inner_h * f, clock.percent(f).replace(".0", ""))
            for f in (0.25, 0.5, 0.75, 1.0)
        ),
        markers=tuple(
            Marker(x(minute), t(clock.language, f"report.ladder.{step}"))
            for step, minute in reached.items()
        ),
        end_label=duration(clock.language, max_x * 60),
    )


def _segments(counts: tuple[int, ...], total: int, labels: dict[str, str]) -> tuple[Segment, ...]:
    label_w = 150
    inner_w = WIDTH - label_w - 20
    x, parts = float(label_w), []
    for outcome, value in zip(OUTCOMES, counts, strict=True):
        if total and value:
            width = inner_w * value / total
            parts.append(
                Segment(x, width, COLOURS[outcome], f"{labels[f'outcome.{outcome}']}: {value}")
            )
            x += width
    return tuple(parts)


def _done(language: Language, person: dict[str, Any]) -> str:
    """What the ladder has done for someone not accounted for, by now."""
    step = person["step"]
    if step == -1:
        text = t(language, "report.ladder.closed")
    elif step == 0 and person["channel"] == "none":
        text = t(language, "report.ladder.step0_none")
    else:
        text = t(language, f"report.ladder.step{max(0, min(step, 3))}")
    if person["visit"]:
        text += f"; {t(language, 'report.column.buddy')}: {t(language, 'report.task.' + person['visit'])}"
    return text


def report_view(
    session: Session,
    *,
    campaign: Campaign,
    report: DrillReport,
    local: tzinfo,
    now: datetime,
    language: Language | str = Language.HE,
    authority: str = "",
    speed: float = 1.0,
    timezone: str = "",
) -> ReportView:
    """What an officer reads about ``campaign`` (for :func:`render` and :func:`render_text`).

    ``speed`` > 1: the ladder ran compressed (the demo); durations are then shown as drill time
    (real × speed), and the header says so. ``now``: the time of the reading (an open
    campaign's age)."""
    lang = Language(language)
    clock = Clock(lang, local, speed)
    labels = _labels(lang)
    names = zone_names(session, authority_id=campaign.authority_id, language=lang)
    status = report.status
    totals = status["total"]
    recipients = report.recipients

    started = campaign.started_at
    answered = sorted(
        (at - started).total_seconds() * speed / 60
        for at in session.scalars(
            select(CampaignRecipient.answered_at).where(
                CampaignRecipient.campaign_id == campaign.id,
                CampaignRecipient.answered_at.is_not(None),
            )
        )
        if at is not None
    )
    end = campaign.closed_at if campaign.status == CampaignStatus.CLOSED else now
    elapsed = ((end or now) - started).total_seconds()

    per_zone = []
    for code, counts in sorted(status["zones"].items(), key=lambda z: names.get(z[0], z[0])):
        values = tuple(counts[o] for o in OUTCOMES)
        per_zone.append(
            ZoneRow(
                zone=names.get(code, code),
                recipients=counts["recipients"],
                counts=values,
                segments=_segments(values, counts["recipients"], labels),
            )
        )

    def zone_of(code: str | None) -> str:
        return names.get(code or "", code or "-")

    unreached = tuple(
        PersonRow(
            priority=t(lang, f"report.priority.{p['priority']}"),
            name=p["name"] or "?",
            zone=zone_of(p["zone"]),
            phone=p["phone"] or "-",
            address=p["address"] or "-",
            buddy=p["buddy"] or "-",
            buddy_phone=p["buddy_phone"] or "",
            done=_done(lang, p),
            last=" ".join(
                filter(
                    None,
                    [
                        clock.moment(p["last_attempt"]),
                        t(lang, f"report.channel.{p['last_channel']}") if p["last_channel"] else "",
                    ],
                )
            )
            or "-",
            next=t(lang, f"report.next.{p['next_step']}", time=clock.moment(p["next_at"])),
        )
        for p in report.unreached
    )

    def owner(row: dict[str, Any]) -> str:
        if not row["owner"]:
            return "-"
        return t(lang, f"report.help.{row['owner_role']}", name=row["owner"])

    help_rows = tuple(
        HelpRow(
            name=row["resident"],
            zone=zone_of(row.get("zone")),
            asked=clock.moment(row["raised_at"]),
            taken_by=owner(row),
            taken_at=" ".join(
                filter(
                    None,
                    [
                        clock.moment(row["taken_at"]),
                        t(
                            lang,
                            "report.help.after",
                            duration=clock.drill(row["taken_after_seconds"]),
                        )
                        if row["taken_after_seconds"] is not None
                        else "",
                    ],
                )
            )
            or "-",
            outcome=t(lang, f"report.help.{row['state']}"),
        )
        for row in report.help
    )
    states = {s: sum(1 for row in report.help if row["state"] == s) for s in ("open", "taken")}
    states |= {s: sum(1 for row in report.help if row["state"] == s) for s in ("done", "failed")}
    help_summary = (
        f"{tn(lang, 'report.help_count', len(report.help))} {t(lang, 'report.help.summary', **states)}"
        if report.help
        else ""
    )
    numbers = tuple(
        NumberRow(
            name=b["name"] or "?",
            zone=zone_of(b["zone"]),
            number=b["address"] or "-",
            problem=t(lang, f"report.problem.{b['reason']}"),
        )
        for b in report.bounced_numbers
    )
    tasks = report.tasks
    visits = ", ".join(
        f"{t(lang, f'report.task.{s}')}: {tasks[s]}"
        for s in ("offered", "accepted", "done", "not_reached", "cancelled")
        if tasks.get(s)
    )
    alerts = ", ".join(
        f"{t(lang, f'report.alert.{kind}')}: {count}"
        for kind, count in sorted(status["alerts"].items())
    )
    if alerts:
        alerts = t(lang, "report.cli.alerts", alerts=alerts)
    accounted = sum(totals[o] for o in ("ok", "help", "free_text", "visited"))
    calls, calls_total, call_heads = _calls(lang, report.calls, zone_of)
    mode = report.mode
    return ReportView(
        language=lang,
        title=t(
            lang,
            f"report.title_{mode}",
            authority=authority or str(campaign.authority_id),
            campaign=campaign.id,
        ),
        badge=t(lang, f"report.badge_{mode}"),
        mode=mode,
        when=_when(clock, campaign, now, timezone or str(local)),
        messaged=tn(lang, "report.messaged", recipients),
        answered=t(lang, "report.answered", percent=clock.percent(report.response_rate)),
        accounted=t(
            lang,
            "report.accounted",
            percent=clock.percent(accounted / recipients if recipients else 0.0),
        ),
        outcomes=tuple(Row(labels[f"outcome.{o}"], totals[o], COLOURS[o]) for o in OUTCOMES),
        deliveries=tuple(Row(t(lang, f"report.delivery.{d}"), totals[d]) for d in DELIVERIES),
        total=Row(labels["total"], recipients),
        percentiles=tuple(
            (t(lang, f"report.percentile.{k}"), clock.drill(v))
            for k, v in report.time_to_answer_seconds.items()
        ),
        curve=_curve(clock, campaign, answered, recipients, elapsed),
        per_zone=tuple(per_zone),
        unreached=unreached,
        help=help_rows,
        help_summary=help_summary,
        numbers=numbers,
        opted_out=tn(lang, "report.opted_out_count", len(report.opted_out))
        if report.opted_out
        else "",
        opted_out_names=tuple(
            f"{o['name'] or '?'} ({zone_of(o['zone'])})" for o in report.opted_out
        ),
        visits=visits,
        alerts=alerts,
        calls=calls,
        calls_total=calls_total,
        call_heads=call_heads,
        calls_placed=tn(lang, "report.calls.placed", calls_total.total) if calls_total else "",
        labels=labels,
    )


def authority_name(
    session: Session, profile: Profile | None, authority_id: int, language: Language | str
) -> str:
    """The authority's name in ``language`` (the profile's names; else the stored one)."""
    authority = session.get(Authority, authority_id)
    if authority is None:
        return str(authority_id)
    for entry in profile.authorities if profile else ():
        if entry.code == authority.code:
            return entry.names.get(Language(language))
    return authority.name


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("hosen", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def template_values(view: ReportView) -> dict[str, Any]:
    """What ``report_body.html`` draws with (the standalone page and the console's page)."""
    return {
        "view": view,
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
        "zone_bar": (18, 8, 150),
        "legend": [(view.labels[f"outcome.{o}"], COLOURS[o]) for o in OUTCOMES],
    }


def render(view: ReportView) -> str:
    """The whole report page (HTML)."""
    template = _environment().get_template("report.html")
    return template.render(**template_values(view))


def _table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell (a terminal reads left to right whatever the
    language; right-to-left text inside a cell is the terminal's to show)."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    return [
        indent + "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    ]


def status_lines(view: ReportView) -> list[str]:
    """The live counts: where everyone stands per zone (each row adds up to its people), how
    far the message got, the home visits and the open alerts."""
    labels = view.labels
    lines = [view.title, *view.when, view.messaged, f"{view.answered}; {view.accounted}", ""]
    headers = [labels["column.zone"], *(labels[f"short.{o}"] for o in OUTCOMES)]
    headers.append(labels["column.people"])
    rows = [[z.zone, *map(str, z.counts), str(z.recipients)] for z in view.per_zone]
    rows.append([labels["total"], *(str(r.count) for r in view.outcomes), str(view.total.count)])
    lines += [labels["heading.outcome"], *_table(headers, rows)]
    lines += [f"  {labels[f'short.{o}']}: {labels[f'outcome.{o}']}" for o in OUTCOMES]
    lines += ["", labels["heading.delivery"]]
    lines += [f"  {r.label}: {r.count}" for r in view.deliveries]
    if view.visits:
        lines.append(t(view.language, "report.cli.visits", visits=view.visits))
    if view.alerts:
        lines.append(view.alerts)
    return lines


def help_line(row: HelpRow) -> str:
    """One call for help in a sentence: who, where, when, and what became of it."""
    taken = f": {row.taken_by}, {row.taken_at}" if row.taken_by != "-" else ""
    return f"{row.asked} {row.name}, {row.zone}: {row.outcome}{taken}"


def render_text(view: ReportView) -> str:
    """The report for a terminal: the same words as the HTML page, as plain lines."""
    labels = view.labels
    lines = status_lines(view)
    lines += ["", labels["heading.times"]]
    lines += [f"  {label}: {value}" for label, value in view.percentiles]
    lines += ["", labels["heading.help"]]
    if view.help:
        lines.append(f"  {view.help_summary}")
        lines += [f"  {help_line(row)}" for row in view.help]
    else:
        lines.append(f"  {labels['nobody']}")
    lines += ["", f"{labels['heading.unreached']} ({len(view.unreached)})"]
    if view.unreached:
        keys = ("priority", "name", "zone", "phone", "address", "buddy", "done", "last", "next")
        rows = [
            [
                p.priority,
                p.name,
                p.zone,
                p.phone,
                p.address,
                f"{p.buddy} {p.buddy_phone}".strip(),
                p.done,
                p.last,
                p.next,
            ]
            for p in view.unreached
        ]
        lines += _table([labels[f"column.{k}"] for k in keys], rows)
    else:
        lines.append(f"  {labels['nobody']}")
    lines += ["", f"{labels['heading.numbers']} ({len(view.numbers)})"]
    if view.numbers:
        headers = [labels[f"column.{k}"] for k in ("name", "zone", "number", "problem")]
        lines += _table(headers, [[n.name, n.zone, n.number, n.problem] for n in view.numbers])
    else:
        lines.append(f"  {labels['nobody']}")
    if view.opted_out:
        lines += ["", labels["heading.opted_out"], f"  {view.opted_out}"]
        lines += [f"  {name}" for name in view.opted_out_names]
    lines += call_lines(view)
    return "\n".join(lines) + "\n"


def call_lines(view: ReportView) -> list[str]:
    """The phone calls per zone and how they ended, with their total (none: no lines)."""
    if view.calls_total is None:
        return []
    labels = view.labels
    headers = [labels["column.zone"], *view.call_heads, labels["calls.calls"]]
    rows = [
        [row.zone, *map(str, row.counts), str(row.total)] for row in (*view.calls, view.calls_total)
    ]
    return ["", labels["calls.heading"], f"  {view.calls_placed}", *_table(headers, rows)]
