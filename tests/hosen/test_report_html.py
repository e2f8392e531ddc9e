from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser

from hosen.report_html import PersonRow, ReportView, ZoneRow, render


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _view() -> ReportView:
    return ReportView(
        title="Drill <Kiryat Tamar>",
        mode="drill",
        started_at=datetime(2026, 11, 22, 9, 0, tzinfo=UTC),
        closed_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        recipients=10,
        counts={"ok": 6, "need_help": 1, "no_answer": 2, "failed": 1},
        response_rate=0.7,
        answer_percentiles={"p50": 120.0, "p90": 1500.0, "p99": None},
        answers_over_time=[(1.0, 3), (5.0, 6), (30.0, 7)],
        per_zone=[ZoneRow("North Town", 10, 6, 1, 2, 1)],
        unreached=[PersonRow("מרים כהן", "North Town", "buddy could not reach")],
        bounced=[PersonRow("Ivan", "North Town", "landline: cannot receive SMS")],
    )


def test_report_is_self_contained_html_with_charts() -> None:
    page = render(_view())
    parser = _Collector()
    parser.feed(page)
    assert parser.tags.count("svg") == 2, "answers-over-time and per-zone charts"
    assert "script" not in parser.tags and "http://" not in page.replace("http://www.w3.org", "")
    text = " ".join(parser.text)
    assert (
        "70.0% answered" in text and "מרים כהן" in text and "2.0 min" in text and "25.0 min" in text
    )
    assert "Drill <Kiryat Tamar>" in text, "titles are escaped, not injected"
    assert "<Kiryat" not in page


def test_empty_campaign_renders() -> None:
    view = ReportView(
        title="t",
        mode="emergency",
        started_at=datetime(2026, 11, 22, tzinfo=UTC),
        closed_at=None,
        recipients=0,
        counts={},
        response_rate=0.0,
        answer_percentiles={},
    )
    page = render(view)
    assert "No answers yet" in page and "still open" in page and "EMERGENCY" in page
