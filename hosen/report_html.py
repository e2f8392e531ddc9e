"""A drill or emergency report as one self-contained HTML file with charts (inline SVG).

No JavaScript, no external assets: the file opens offline on the officer's laptop and prints
well. It holds names and zones of unreached people (the officer's own list) and never any need
or medical detail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from html import escape

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models import Campaign, CampaignRecipient
from dispatch.reports import DrillReport
from registry.models import Zone

WIDTH, HEIGHT, PAD = 640, 240, 40
COLOURS = {
    "ok": "#2e7d32",
    "need_help": "#c62828",
    "no_answer": "#9e9e9e",
    "failed": "#6d4c41",
    "pending": "#90caf9",
}


@dataclass(frozen=True)
class ZoneRow:
    zone: str
    recipients: int
    ok: int
    need_help: int
    no_answer: int
    failed: int


@dataclass(frozen=True)
class PersonRow:
    name: str
    zone: str
    detail: str


@dataclass(frozen=True)
class ReportView:
    title: str
    mode: str  # "drill" | "emergency"
    started_at: datetime
    closed_at: datetime | None
    recipients: int
    counts: dict[str, int]
    response_rate: float
    answer_percentiles: dict[str, float | None]  # label -> seconds
    # (minutes since start, how many have answered by then)
    answers_over_time: list[tuple[float, int]] = field(default_factory=list)
    per_zone: list[ZoneRow] = field(default_factory=list)
    unreached: list[PersonRow] = field(default_factory=list)
    bounced: list[PersonRow] = field(default_factory=list)


def _line_chart(points: list[tuple[float, int]], total: int) -> str:
    if not points or total == 0:
        return "<p>No answers yet.</p>"
    max_x = max(points[-1][0], 1e-9)
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def xy(x: float, y: int) -> str:
        return f"{PAD + inner_w * x / max_x:.1f},{HEIGHT - PAD - inner_h * y / total:.1f}"

    path = " ".join(xy(x, y) for x, y in [(0.0, 0), *points])
    ticks = "".join(
        f'<text x="{PAD - 6}" y="{HEIGHT - PAD - inner_h * f:.1f}" text-anchor="end" font-size="11">{int(f * 100)}%</text>'
        f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{HEIGHT - PAD - inner_h * f:.1f}" y2="{HEIGHT - PAD - inner_h * f:.1f}" stroke="#eee"/>'
        for f in (0.25, 0.5, 0.75, 1.0)
    )
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="answers over time">'
        f"{ticks}"
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#444"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#444"/>'
        f'<polyline fill="none" stroke="{COLOURS["ok"]}" stroke-width="2.5" points="{path}"/>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end" font-size="11">{max_x:.0f} min</text>'
        f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="11">0</text>'
        "</svg>"
    )


def _zone_bars(rows: list[ZoneRow]) -> str:
    if not rows:
        return ""
    bar_h, gap, label_w = 18, 8, 150
    height = len(rows) * (bar_h + gap) + gap
    inner_w = WIDTH - label_w - 20
    parts = [f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="answers per zone">']
    for i, row in enumerate(rows):
        y = gap + i * (bar_h + gap)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 5}" text-anchor="end" font-size="12">{escape(row.zone)}</text>'
        )
        x = float(label_w)
        for key, value in (
            ("ok", row.ok),
            ("need_help", row.need_help),
            ("no_answer", row.no_answer),
            ("failed", row.failed),
        ):
            if row.recipients and value:
                w = inner_w * value / row.recipients
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{COLOURS[key]}">'
                    f"<title>{key}: {value}</title></rect>"
                )
                x += w
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 60:.1f} min" if value >= 90 else f"{value:.0f} s"


def render(view: ReportView) -> str:
    """The whole report page."""
    badge = "DRILL / תרגיל" if view.mode == "drill" else "EMERGENCY / חירום"
    legend = "".join(
        f'<span class="key"><i style="background:{colour}"></i>{escape(name)}</span>'
        for name, colour in COLOURS.items()
        if name != "pending"
    )
    counts = _table(["status", "people"], [[k, str(v)] for k, v in view.counts.items()])
    percentiles = _table(
        ["time to answer", "value"], [[k, _seconds(v)] for k, v in view.answer_percentiles.items()]
    )
    zones = _table(
        ["zone", "recipients", "ok", "need help", "no answer", "failed"],
        [
            [
                z.zone,
                str(z.recipients),
                str(z.ok),
                str(z.need_help),
                str(z.no_answer),
                str(z.failed),
            ]
            for z in view.per_zone
        ],
    )
    unreached = _table(
        ["name", "zone", "what happened"], [[p.name, p.zone, p.detail] for p in view.unreached]
    )
    bounced = _table(
        ["name", "zone", "number problem"], [[p.name, p.zone, p.detail] for p in view.bounced]
    )
    closed = view.closed_at.strftime("%Y-%m-%d %H:%M %Z") if view.closed_at else "still open"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(view.title)}</title>
<style>
 body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 760px; color: #222; }}
 h1 {{ font-size: 1.5em; }} .badge {{ background: {"#f9a825" if view.mode == "drill" else "#c62828"};
  color: #fff; padding: 2px 8px; border-radius: 4px; font-size: .8em; }}
 table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
 th, td {{ border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: start; }}
 .key {{ margin-inline-end: 1em; }} .key i {{ display: inline-block; width: 10px; height: 10px;
  margin-inline-end: 4px; }}
 .big {{ font-size: 2em; font-weight: 600; }}
</style></head><body>
<h1>{escape(view.title)} <span class="badge">{badge}</span></h1>
<p>Started {view.started_at.strftime("%Y-%m-%d %H:%M %Z")}, closed {closed}.
 {view.recipients} people were messaged.</p>
<p class="big">{view.response_rate * 100:.1f}% answered</p>
{counts}
{percentiles}
<h2>Answers over time</h2>
{_line_chart(view.answers_over_time, view.recipients)}
<h2>Per zone</h2>
<p>{legend}</p>
{_zone_bars(view.per_zone)}
{zones}
<h2>Unreached ({len(view.unreached)})</h2>
{unreached}
<h2>Numbers to fix in the registry ({len(view.bounced)})</h2>
{bounced}
</body></html>
"""


def report_view(
    session: Session,
    *,
    campaign: Campaign,
    report: DrillReport,
    title: str,
    local: tzinfo,
    speed: float = 1.0,
    time_label: str = "",
) -> ReportView:
    """The view of a campaign's report for :func:`render` (``hosen campaign report``, the demo).

    ``speed`` scales times back to real time when a drill ran with a compressed ladder; then
    ``time_label`` (e.g. " (drill time)") marks the percentiles as such.
    """
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
    series = [(minute, i + 1) for i, minute in enumerate(answered)]
    zone_names: dict[str, str] = {
        code: name
        for code, name in session.execute(
            select(Zone.code, Zone.name).where(Zone.authority_id == campaign.authority_id)
        )
    }
    zones = report.status["zones"]
    per_zone = [
        ZoneRow(
            zone=zone_names.get(code, code),
            recipients=z["recipients"],
            ok=z["ok"],
            need_help=z["help"],
            # A message that failed on every channel is also unanswered: count it once, as failed.
            no_answer=z["no_answer"] - min(z["failed"], z["no_answer"]),
            failed=min(z["failed"], z["no_answer"]),
        )
        for code, z in sorted(zones.items())
    ]
    total = report.status["total"]
    percentiles = {
        key: (value * speed if value is not None else None)
        for key, value in report.time_to_answer_seconds.items()
    }
    return ReportView(
        title=title,
        mode=report.mode,
        started_at=started.astimezone(local),
        closed_at=campaign.closed_at.astimezone(local) if campaign.closed_at else None,
        recipients=report.recipients,
        counts={
            "I'm OK": total["ok"],
            "need help": total["help"],
            "free text (read by staff)": total["free_text"],
            "no answer (unreached)": total["no_answer"],
            "message failed on every channel": total["failed"],
            "no channel (landline only)": total["no_channel"],
        },
        response_rate=report.response_rate,
        answer_percentiles={f"{k}{time_label}": v for k, v in percentiles.items()},
        answers_over_time=series,
        per_zone=per_zone,
        unreached=[
            PersonRow(
                u["name"] or "?",
                zone_names.get(u["zone"], u["zone"] or "-"),
                "no answer after the whole ladder",
            )
            for u in report.unreached
        ],
        bounced=[
            PersonRow(f"person #{b['person_id']}", b["channel"], b["reason"])
            for b in report.bounced_numbers
        ],
    )
