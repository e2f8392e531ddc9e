"""The drill report as a page and as text, on a demo-like town (both databases): in the
officer's language with ``lang`` and ``dir``, numbers that add up, names where codes were."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from babel import Locale
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config.i18n import t, tn
from config.languages import ALL_LANGUAGES, Language
from config.profile import Profile
from dispatch.calls import (
    REPORTED,
    call_answered,
    call_ended,
    calls_placed,
    keys_pressed,
    place_call,
)
from dispatch.models import Answer, CallOutcome, CampaignRecipient, VoiceCall
from dispatch.reports import OUTCOMES, close_campaign, drill_report
from hosen.report_html import render, render_text, report_view
from registry.models import Authority, Person, Zone
from registry.profile_sync import Directory
from tests.dispatch.conftest import START
from tests.drill_town import DrillTown, answer, build_town, sweep, visit

pytestmark = pytest.mark.db
LOCAL = ZoneInfo("Asia/Jerusalem")


class Page(HTMLParser):
    """The parts of the page the tests read: the root's attributes, table cells by row, the
    text, and the per-zone bars' rectangles."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.root: dict[str, str | None] = {}
        self.tags: list[str] = []
        self.text: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.rects: list[dict[str, str | None]] = []
        self.lines: list[dict[str, str | None]] = []
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "html":
            self.root = dict(attrs)
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "rect":
            self.rects.append(dict(attrs))
        elif tag == "line":
            self.lines.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def drill(
    sessions: sessionmaker[Session],
    profile: Profile,
    directory: Directory,
    authority: Authority,
) -> DrillTown:
    return build_town(
        sessions, profile=profile, directory=directory, authority=authority, started=START
    )


def _page(drill: DrillTown, language: Language, *, minutes: float, speed: float = 1.0) -> str:
    with drill.sessions() as session:
        campaign = drill.campaign(session)
        view = report_view(
            session,
            campaign=campaign,
            report=drill_report(session, campaign=campaign),
            local=LOCAL,
            now=drill.at(minutes),
            language=language,
            authority="Kiryat Tamar",
            speed=speed,
            timezone="Asia/Jerusalem",
        )
    return render(view)


def _finish(drill: DrillTown) -> None:
    answer(drill, minutes=2)
    sweep(drill, minutes=15)
    sweep(drill, minutes=45)
    visit(drill, minutes=60)
    sweep(drill, minutes=120)
    with drill.sessions() as session:
        close_campaign(session, campaign=drill.campaign(session), now=drill.at(130))
        session.commit()


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_the_page_is_in_the_officers_language_with_lang_and_dir(
    drill: DrillTown, language: Language
) -> None:
    _finish(drill)
    page = Page(_page(drill, language, minutes=140))
    assert page.root == {"lang": language.value, "dir": "rtl" if language.rtl else "ltr"}
    text = " ".join(page.text)
    assert t(language, "report.heading.unreached") in text
    assert t(language, "report.problem.invalid_number") in text
    # No developer's words: codes, reprs, UTC stamps with microseconds.
    for raw in ("invalid_number", "unsubscribed", "no_answer", "person #", "{'", "+00:00"):
        assert raw not in text
    assert not re.search(r"\d\d:\d\d:\d\d\.\d+", text)
    assert "script" not in page.tags


def test_every_table_adds_up_and_every_zone_bar_is_as_long(drill: DrillTown) -> None:
    _finish(drill)
    page = Page(_page(drill, Language.HE, minutes=140))
    outcomes, deliveries = page.tables[0], page.tables[1]
    for table in (outcomes, deliveries):
        *rows, total = table
        assert sum(int(row[-1]) for row in rows) == int(total[-1]) == len(drill.recipients)
    assert len(outcomes) == len(OUTCOMES) + 1
    # The per-zone table: each zone's outcomes add up to its people, the zones to everyone.
    zones = next(t for t in page.tables if len(t[0]) == len(OUTCOMES) + 2 and len(t) > 3)
    for row in zones[1:]:
        assert sum(map(int, row[1:-1])) == int(row[-1])
    with drill.sessions() as session:
        hebrew = {z.name_in(Language.HE) for z in session.query(Zone)}
    assert {row[0] for row in zones[1:-1]} <= hebrew
    # Bars are drawn with every outcome, free text included: each zone's is full width.
    widths: dict[str, float] = {}
    for rect in page.rects:
        widths[rect["y"] or ""] = widths.get(rect["y"] or "", 0.0) + float(rect["width"] or 0)
    assert len(widths) == len(zones) - 2
    assert max(widths.values()) - min(widths.values()) < 0.5


def test_the_numbers_to_fix_name_the_person_their_zone_and_the_number(drill: DrillTown) -> None:
    _finish(drill)
    page = Page(_page(drill, Language.EN, minutes=140))
    with drill.sessions() as session:
        wrong = session.get_one(Person, drill.invalid_number)
        stopped = session.get_one(Person, drill.opted_out)
        zone = session.get_one(Zone, wrong.zone_id).name_in(Language.EN)
    numbers = next(
        table for table in page.tables if table[0] == ["Name", "Zone", "Number", "Problem"]
    )
    assert numbers[1:] == [[wrong.name, zone, wrong.phone, "Not a valid number"]]
    text = " ".join(page.text)
    assert "1 person replied STOP" in text and stopped.name in text
    # The unreached list: phone, address, buddy, priority, what was done, the next step.
    unreached = next(table for table in page.tables if table[0][0] == "Priority")
    assert unreached[0] == [
        "Priority",
        "Name",
        "Zone",
        "Phone",
        "Address",
        "Buddy",
        "What was done",
        "Last message",
        "Next step",
    ]
    assert all(row[6].startswith("No answer after the whole ladder") for row in unreached[1:])
    # A visit still offered: wait for the buddy; else call, or go to the address.
    for row in unreached[1:]:
        if row[6].endswith("Buddy: Offered, not accepted yet"):
            assert row[8] == "Wait for the buddy's report"
        elif row[8] == "Call them":
            assert row[3].startswith("+")
        else:
            assert row[8] == "Send someone to the address" and row[4] != "-"
    # The calls for help and who came.
    helps = next(table for table in page.tables if table[0][0] == "Name" and "Taken by" in table[0])
    assert len(helps) - 1 == len(drill.help)
    assert any(row[-1] == "Done" and "(volunteer)" in row[3] for row in helps[1:])


def test_an_open_two_minute_old_drill_is_running_not_closed(drill: DrillTown) -> None:
    answer(drill, minutes=1)
    page = Page(_page(drill, Language.EN, minutes=2))
    text = " ".join(page.text)
    assert "still running, not closed" in text and "closed 2" not in text
    assert "No answer after the whole ladder" not in text
    unreached = next(table for table in page.tables if table[0][0] == "Priority")
    assert {row[6] for row in unreached[1:]} <= {
        "Message sent, no answer yet",
        "No channel reaches them",
    }
    reminder = START.astimezone(LOCAL).replace(minute=15).strftime("%H:%M")
    assert f"Reminder at {reminder}" in {row[8] for row in unreached[1:]}


def test_drill_time_and_real_time_are_apart_and_the_curve_marks_the_ladder(
    drill: DrillTown,
) -> None:
    _finish(drill)
    page = Page(_page(drill, Language.EN, minutes=140, speed=120.0))
    when = [line for line in page.text if line.startswith(("Real time", "Drill time"))]
    assert when[0].startswith("Real time (Asia/Jerusalem): Started 22 Nov 2026, 11:00")
    assert "closed 22 Nov 2026, 13:10" in when[0]
    assert when[1].startswith("Drill time: The ladder ran 120× faster") and "260 h" in when[1]
    markers = [line for line in page.lines if line.get("stroke-dasharray")]
    assert len(markers) == 3
    text = " ".join(page.text)
    assert all(t(Language.EN, f"report.ladder.{s}") in text for s in ("reminder", "visit"))


def test_the_terminal_report_reads_the_same(drill: DrillTown) -> None:
    _finish(drill)
    with drill.sessions() as session:
        campaign = drill.campaign(session)
        report = drill_report(session, campaign=campaign)
        text = render_text(
            report_view(
                session,
                campaign=campaign,
                report=report,
                local=LOCAL,
                now=drill.at(140),
                language=Language.RU,
                authority="Кирьят-Тамар",
            )
        )
    people = len(drill.recipients)
    form = Locale.parse("ru").plural_form(people)
    word = {"one": "человеку", "few": "людям", "many": "людям"}[form]
    assert f"Сообщение отправлено {people} {word}." in text
    assert "Не удалось связаться" in text and "Недействительный номер" in text
    total = next(line for line in text.splitlines() if line.strip().startswith("Все"))
    assert total.split()[-1] == str(len(drill.recipients))
    assert sum(map(int, total.split()[1:-1])) == len(drill.recipients)


# How each call ends: who picked up (Twilio's AnsweredBy), the key pressed, the final status.
CALL_ENDS = (
    ("human", "1", "completed"),
    ("human", "2", "completed"),
    ("human", None, "completed"),
    ("machine_start", None, "completed"),
    (None, None, "busy"),
    (None, None, "no-answer"),
    (None, None, "failed"),
    (None, None, None),  # placed, still ringing when the report is read
)


def _call_the_silent(drill: DrillTown, *, minutes: float) -> int:
    """Call silent residents with a phone, one call per way a call ends, through the functions
    the voice webhooks call; returns how many calls were placed."""
    now = drill.at(minutes)
    with drill.sessions() as session:
        campaign = drill.campaign(session)
        silent = session.scalars(
            select(Person)
            .join(CampaignRecipient, CampaignRecipient.person_id == Person.id)
            .where(
                CampaignRecipient.campaign_id == campaign.id,
                CampaignRecipient.answer == Answer.PENDING,
                Person.phone.is_not(None),
            )
            .order_by(Person.id)
        ).all()
        # Spread over the zones, so the table has several rows.
        by_zone: dict[int | None, list[Person]] = {}
        for person in silent:
            by_zone.setdefault(person.zone_id, []).append(person)
        chosen = [p for people in zip(*by_zone.values(), strict=False) for p in people]
        assert len(chosen) >= len(CALL_ENDS) and len(by_zone) >= 2
        for n, ((by, key, status), person) in enumerate(zip(CALL_ENDS, chosen, strict=False)):
            message = place_call(session, campaign=campaign, person=person, now=now)
            session.flush()
            sid = f"CA{n:032x}"
            calls_placed(session, placed=[(message.id, sid)], now=now)
            if by is not None:
                call_answered(session, outbox_id=message.id, call_sid=sid, answered_by=by, now=now)
            if key is not None:
                keys_pressed(session, outbox_id=message.id, call_sid=sid, digits=key, now=now)
            if status is not None:
                call_ended(
                    session,
                    outbox_id=message.id,
                    call_sid=sid,
                    status=status,
                    answered_by=by,
                    now=now,
                )
        session.commit()
        placed = session.scalar(
            select(func.count()).where(
                VoiceCall.campaign_id == campaign.id, VoiceCall.inbound.is_(False)
            )
        )
    assert placed == len(CALL_ENDS)
    return len(CALL_ENDS)


def _report(drill: DrillTown, language: Language, *, minutes: float) -> tuple[str, str]:
    with drill.sessions() as session:
        campaign = drill.campaign(session)
        view = report_view(
            session,
            campaign=campaign,
            report=drill_report(session, campaign=campaign),
            local=LOCAL,
            now=drill.at(minutes),
            language=language,
            authority="Kiryat Tamar",
            timezone="Asia/Jerusalem",
        )
    return render(view), render_text(view)


RAW_CALL_CODES = re.compile(r"\b(" + "|".join(o.value for o in CallOutcome) + r")\b")


@pytest.mark.parametrize("language", [Language.HE, Language.AR])
def test_the_phone_calls_are_in_the_report_in_the_officers_language(
    drill: DrillTown, language: Language
) -> None:
    answer(drill, minutes=2)
    sweep(drill, minutes=15)
    placed = _call_the_silent(drill, minutes=20)
    html, text = _report(drill, language, minutes=25)
    page = Page(html)
    assert page.root == {"lang": language.value, "dir": "rtl"}
    # (No call was answered while the system was down: that column is left out.)
    shown = [o for o in REPORTED if o != CallOutcome.UNSERVED]
    heads = [t(language, f"report.calls.outcome.{o.value}") for o in shown]
    calls = next(table for table in page.tables if table[0][1:-1] == heads)
    assert calls[0][0] == t(language, "report.column.zone")
    assert calls[0][-1] == t(language, "report.calls.calls")
    *zones, total = calls[1:]
    assert total[0] == t(language, "report.total") and int(total[-1]) == placed
    # Each zone's calls add up to its total; each way a call ended happened once.
    for row in calls[1:]:
        assert sum(map(int, row[1:-1])) == int(row[-1])
    assert [int(count) for count in total[1:-1]] == [1] * len(shown)
    assert sum(int(row[-1]) for row in zones) == placed
    with drill.sessions() as session:
        names = {z.name_in(language) for z in session.scalars(select(Zone))}
    assert len(zones) >= 2 and {row[0] for row in zones} <= names
    assert tn(language, "report.calls.placed", placed) in " ".join(page.text)
    assert not RAW_CALL_CODES.search(" ".join(cell for row in calls for cell in row))
    for raw in ("no_key", "no_answer"):
        assert raw not in html and raw not in text
    # The terminal report: the same heading, labels and totals.
    lines = text.splitlines()
    start = lines.index(t(language, "report.calls.heading"))
    section = lines[start:]
    assert section[1].strip() == tn(language, "report.calls.placed", placed)
    assert all(head in section[2] for head in heads)
    last = section[-1].split()
    assert t(language, "report.total") in section[-1] and last[-1] == str(placed)
    assert not RAW_CALL_CODES.search("\n".join(section))


def test_a_report_without_calls_has_no_calls_section(drill: DrillTown) -> None:
    _finish(drill)
    html, text = _report(drill, Language.HE, minutes=140)
    heading = t(Language.HE, "report.calls.heading")
    assert heading not in html and heading not in text
