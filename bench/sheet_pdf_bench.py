"""Benchmark: the call-down sheet as a PDF (WeasyPrint) by the number of rows.

Run from the repository root::

    python bench/sheet_pdf_bench.py                    # 100, 500 and 1,000 rows, 3 runs each
    python bench/sheet_pdf_bench.py --rows 2000 --repeat 1

The console's own template (``sheet.html``, Hebrew, one zone) is filled with synthetic rows as
``dispatch.board.action_list`` gives them and laid out by :func:`hosen.console.pdf.sheet_pdf`;
no database is involved. The table gives, per size, the pages, the PDF's size, and the median
CPU time of this process and wall time (a shared machine disturbs the CPU time less).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pypdf import PdfReader

from config.languages import Language
from dispatch.board import ActionList, ListKind, ListRow, NextAction
from dispatch.models import Answer, Campaign, CampaignKind, CampaignMode
from hosen.console.pdf import sheet_pdf
from hosen.console.texts import Words, environment
from hosen.console.views import last_attempt, next_action, priority_of

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def rows(count: int) -> list[ListRow]:
    return [
        ListRow(
            person_id=n,
            name=f"תושב/ת {n}" if n % 3 else f"سلمى حداد {n}",
            zone_id=1,
            phone=f"+9725030{n:05d}",
            address=f"הדקל {n % 90 + 1}",
            priority=20 + n % 10,
            answer=Answer.PENDING,
            buddy="מתנדב/ת" if n % 2 else None,
            buddy_phone="+972502000000" if n % 2 else None,
            last_channel="sms",
            last_status="delivered",
            last_at=NOW,
            next_action=NextAction.REMINDER,
            next_at=NOW + timedelta(minutes=15),
            helper=None,
        )
        for n in range(count)
    ]


def html(count: int) -> str:
    env = environment()
    env.globals.update(priority=priority_of, last_attempt=last_attempt, next_action=next_action)
    words = Words(language=Language.HE, zone=ZoneInfo("Asia/Jerusalem"))
    found = ActionList(rows=rows(count), total=count)
    campaign = Campaign(id=1, kind=CampaignKind.CHECKIN, mode=CampaignMode.DRILL)
    return env.get_template("sheet.html").render(
        _=words,
        words=words,
        lang="he",
        dir="rtl",
        csrf="",
        csrf_field="csrf",
        member=None,
        path="/console/sheet.pdf",
        campaign=campaign,
        kind=ListKind.UNREACHED,
        found=found,
        names={1: "צפון העיר", None: "-"},
        zone="צפון העיר",
        zone_id=1,
        now=NOW,
        groups=[(1, found.rows)],
        pdf=True,
        query=lambda **values: "",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[100, 500, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sheet_pdf(html(5))  # loads Pango and the fonts once, as a running server has
    print("| rows | pages | PDF KiB | CPU s (median) | wall s (median) |")
    print("|---:|---:|---:|---:|---:|")
    for count in args.rows:
        page = html(count)
        cpu, wall = [], []
        for _ in range(args.repeat):
            started, ticks = time.perf_counter(), time.process_time()
            pdf = sheet_pdf(page)
            cpu.append(time.process_time() - ticks)
            wall.append(time.perf_counter() - started)
        pages = len(PdfReader(io.BytesIO(pdf)).pages)
        print(
            f"| {count:,} | {pages} | {len(pdf) // 1024:,} | "
            f"{statistics.median(cpu):.2f} | {statistics.median(wall):.2f} |"
        )


if __name__ == "__main__":
    main()
