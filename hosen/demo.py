"""The one-command drill: a whole Hosen drill rehearsed on a laptop, with no account and no network.

``hosen demo`` builds a synthetic town in an embedded SQLite database, runs the assignment
engine, starts the loopback Telegram and Twilio fakes with simulated residents and volunteers,
and runs the real service (`hosen serve`'s ASGI app with its webhooks, bot and outbox worker)
against them. An officer's drill check-in goes to every resident who may need help; people
answer after realistic delays (some never, some ask for help, some blocked the bot, some numbers
are wrong); the escalation ladder (reminder, a buddy's home visit, the unreached list) runs with
its times compressed; and the drill ends with a report in the terminal and as an HTML page.

Times in the report are drill time: the real seconds multiplied by the compression factor.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

import uvicorn
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.settings import Settings
from dispatch.campaigns import Audience, Ladder, start_drill_checkin
from dispatch.escalation import run_escalations
from dispatch.models import (
    Campaign,
    Task,
    TaskStatus,
)
from dispatch.reports import DrillReport, Status, close_campaign, live_status
from dispatch.sweeps import requeue_expired_leases
from fakes.people import DRILL_MIX, Answer, Delay, Intent, Kind, People, SeenMessage
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from fakes.town import generate_town, load_town
from fakes.twilio import FakeTwilio
from hosen import migrations
from hosen.app import build_app
from hosen.context import Context
from hosen.report_html import ReportView, render, report_view
from registry.assignment.store import assign_authority
from registry.db import unit_of_work, utcnow
from registry.models import Authority, Person, PersonStatus, PhoneKind
from registry.profile_sync import sync_profile

# The real ladder (15 min, 45 min, 2 h) and answer delays (median 2 min), played `speed` times
# faster. At the default 120 a two-hour drill takes about a minute.
DRILL_LADDER = Ladder(
    reminder_after=timedelta(minutes=15),
    visit_after=timedelta(minutes=45),
    unreached_after=timedelta(hours=2),
)
ANSWER_DELAY = Delay(median=150.0, sigma=1.1, cap=3 * 3600.0)
VOLUNTEER_DELAY = Delay(median=240.0, sigma=0.8, cap=3600.0)
# Telegram has no landlines or invalid numbers: those people simply stay silent there.
TELEGRAM_MIX: dict[Kind, float] = {
    "ok": DRILL_MIX["ok"],
    "help": DRILL_MIX["help"],
    "silent": DRILL_MIX["silent"] + DRILL_MIX["landline"] + DRILL_MIX["invalid_number"],
    "blocked": DRILL_MIX["blocked"],
    "wrong_number": DRILL_MIX["wrong_number"],
}
VOLUNTEER_MIX: dict[Kind, float] = {"ok": 0.9, "silent": 0.1}


@dataclass
class DemoOptions:
    size: int = 2000
    seed: int = 7
    speed: float = 120.0
    database: Path = Path("var/demo.sqlite3")
    html: Path = Path("var/demo-drill-report.html")
    out: TextIO = field(default=sys.stdout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Volunteers:
    """How simulated people answer: residents answer a check-in (its buttons, or its numbered SMS
    choices); buddies accept a home-visit task, then report it done."""

    def __init__(self) -> None:
        self.addresses: set[int | str] = set()
        self.accepted: dict[int | str, str] = {}  # address -> the task's done-button data

    def respond(self, intent: Intent, message: SeenMessage) -> Answer | None:
        address = _address(message)
        if address not in self.addresses:
            return _resident_answer(intent, message)
        if message.channel == "telegram":
            for _, data in message.buttons:
                if data and data.startswith("t:") and data.endswith(":accept"):
                    self.accepted[address] = data.removesuffix(":accept") + ":done"
                    return Answer(callback_data=data)
            done = self.accepted.pop(address, None)
            return Answer(callback_data=done) if done else None
        # SMS: "1" accepts the task; the thanks that follows is answered "2": done.
        if _asks(message):
            self.accepted[address] = "sms"
            return Answer(text="1")
        if self.accepted.pop(address, None):
            return Answer(text="2")
        return None


def _asks(message: SeenMessage) -> bool:
    """An SMS that offers numbered choices (a check-in, a reminder, a task)."""
    return any(line[:2] in ("1 ", "2 ") for line in message.text.splitlines())


def _address(message: SeenMessage) -> int | str:
    if message.channel == "telegram":
        chat_id: int = message.raw["chat"]["id"]
        return chat_id
    phone: str = message.raw["to"]
    return phone


def _resident_answer(intent: Intent, message: SeenMessage) -> Answer | None:
    if message.channel == "telegram":
        if intent == "wrong_number":
            return Answer(text="Wrong number, I don't know you")
        for _, data in message.buttons:
            if data and data.startswith("c:") and data.endswith(f":{intent}"):
                return Answer(callback_data=data)
        return None
    if not _asks(message):
        return None  # a thank-you or an acknowledgement asks for nothing
    if intent == "wrong_number":
        return Answer(text="Wrong number, I don't know you")
    return Answer(text="1" if intent == "ok" else "2")


def _populate(
    session: Session, people: People, volunteers: Volunteers, authority: Authority
) -> dict[str, int]:
    """Give every resident and volunteer of the authority a simulated phone; count the personas."""
    personas: dict[str, int] = {}
    rows = session.execute(
        select(Person).where(
            Person.authority_id == authority.id, Person.status == PersonStatus.ACTIVE
        )
    ).scalars()
    for person in rows:
        if not (person.needs_help or person.is_volunteer):
            continue
        volunteer_only = person.is_volunteer and not person.needs_help
        if person.telegram_chat_id is not None:
            mix = VOLUNTEER_MIX if volunteer_only else TELEGRAM_MIX
            persona = people.draw_persona(mix, VOLUNTEER_DELAY if volunteer_only else ANSWER_DELAY)
            people.add_telegram(
                persona, chat_id=person.telegram_chat_id, language_code=person.language.value
            )
            address: int | str = person.telegram_chat_id
        elif person.phone and person.phone_kind != PhoneKind.LANDLINE:
            mix = VOLUNTEER_MIX if volunteer_only else dict(DRILL_MIX)
            persona = people.draw_persona(mix, VOLUNTEER_DELAY if volunteer_only else ANSWER_DELAY)
            people.add_sms(persona, person.phone)
            address = person.phone
        else:
            personas["landline only"] = personas.get("landline only", 0) + 1
            continue
        if person.is_volunteer:
            volunteers.addresses.add(address)
        if person.needs_help:
            personas[persona.kind] = personas.get(persona.kind, 0) + 1
    return personas


# --- the terminal ------------------------------------------------------------------------------

BAR = 30


def _bar(label: str, value: int, total: int) -> str:
    filled = round(BAR * value / total) if total else 0
    return f"  {label:<22} [{'█' * filled}{'·' * (BAR - filled)}] {value:>6}/{total}"


def _progress_lines(status: Status, drill_minutes: float) -> list[str]:
    c = status.total
    n = c.recipients
    tasks = status.tasks
    visits = sum(tasks.values())
    done = tasks.get(TaskStatus.DONE.value, 0) + tasks.get(TaskStatus.NOT_REACHED.value, 0)
    return [
        f"  drill time {drill_minutes:6.1f} min",
        _bar("messages sent", c.sent + c.delivered, n),
        _bar("delivered", c.delivered, n),
        _bar("answered: I'm OK", c.ok, n),
        _bar("answered: need help", c.help, n),
        _bar("buddy visits closed", done, visits or 1) + f"  ({visits} asked for)",
        _bar("on the unreached list", c.unreached, n),
    ]


class Screen:
    """Progress bars redrawn in place on a terminal; a line now and then otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.drawn = 0
        self.last_plain = 0.0

    def draw(self, lines: list[str]) -> None:
        if self.tty:
            if self.drawn:
                self.out.write(f"\x1b[{self.drawn}F")
            self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)
        elif time.monotonic() - self.last_plain > 5:
            self.out.write("\n".join(lines) + "\n")
            self.last_plain = time.monotonic()
        self.out.flush()


# --- the report --------------------------------------------------------------------------------


HELP_LINES = 12  # help answers listed one by one; the rest are counted


def _print_help(out: TextIO, report: DrillReport, speed: float) -> None:
    """Every help answer and what became of it: taken by whom, after how long, closed."""
    states = Counter(row["state"] for row in report.help)
    out.write(f"  help answers           {len(report.help)} {dict(states)}\n")

    def minutes(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds * speed / 60:.0f} min"

    for row in report.help[:HELP_LINES]:
        owner = f"{row['owner']} ({row['owner_role']})" if row["owner"] else "NOBODY yet"
        out.write(
            f"    #{row['alert']:<5} {row['resident'][:22]:<22} {row['state']:<6} "
            f"taken by {owner[:30]:<30} after {minutes(row['taken_after_seconds']):>7}, "
            f"closed after {minutes(row['closed_after_seconds'])}\n"
        )
    if len(report.help) > HELP_LINES:
        out.write(f"    ...and {len(report.help) - HELP_LINES} more (hosen help list)\n")


def _print_report(
    out: TextIO, view: ReportView, report: DrillReport, html: Path, speed: float
) -> None:
    out.write(f"\n{view.title}\n{'=' * len(view.title)}\n")
    out.write(f"  people messaged        {view.recipients}\n")
    out.write(f"  answered               {report.answered} ({view.response_rate * 100:.1f}%)\n")
    for label, value in view.counts.items():
        out.write(f"    {label:<34} {value}\n")
    for label, seconds in view.answer_percentiles.items():
        shown = "-" if seconds is None else f"{seconds / 60:.1f} min"
        out.write(f"  time to answer {label:<22} {shown}\n")
    out.write(f"  buddy visits           {dict(report.tasks)}\n")
    out.write(f"  unreached              {len(view.unreached)} (names in the HTML report)\n")
    out.write(f"  numbers to fix         {len(view.bounced)}\n")
    _print_help(out, report, speed)
    out.write(f"\n  {'zone':<22} {'people':>6} {'ok':>5} {'help':>5} {'silent':>6}\n")
    for zone in view.per_zone:
        out.write(
            f"  {zone.zone:<22} {zone.recipients:>6} {zone.ok:>5} {zone.need_help:>5} {zone.no_answer:>6}\n"
        )
    out.write(f"\nHTML report with charts: {html}\n")


# --- the run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _fakes() -> Iterator[tuple[FakeTelegram, FakeTwilio]]:
    telegram = FakeTelegram()
    twilio = FakeTwilio(auto_status=("sent", "delivered"), status_delay=0.3)
    telegram.start()
    twilio.start()
    try:
        yield telegram, twilio
    finally:
        twilio.stop()
        telegram.stop()


async def run_demo(base: Settings, options: DemoOptions) -> int:
    options.database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{options.database}{suffix}").unlink(missing_ok=True)
    port = _free_port()
    public = f"http://127.0.0.1:{port}"

    with _fakes() as (telegram, twilio):
        settings = settings_for_fakes(
            base.model_copy(
                update={
                    "database_url": f"sqlite:///{options.database}",
                    "public_url": public,
                    "telegram_webhook_secret": SecretStr(secrets.token_urlsafe(24)),
                    # The fakes impose no provider limit; fast rates keep sending time, which is
                    # not compressed, from swamping the compressed drill time.
                    "sms_rate_per_second": 300.0,
                    "telegram_rate_per_second": 300.0,
                }
            ),
            telegram=telegram,
            twilio=twilio,
        )
        ctx = Context(settings=settings, creates_database=True)  # the demo's own, recreated
        try:
            return await _drill(ctx, options, telegram, twilio, public)
        finally:
            ctx.close()


async def _drill(
    ctx: Context, options: DemoOptions, telegram: FakeTelegram, twilio: FakeTwilio, public: str
) -> int:
    out = options.out
    profile = ctx.profile
    authority_code = profile.authorities[0].code
    out.write(
        f"Hosen demo: a drill in {profile.authorities[0].names.en}, on the loopback fakes\n\n"
    )

    migrations.upgrade(ctx.engine)
    with unit_of_work(ctx.sessions) as session:
        directory = sync_profile(session, profile)
        town = generate_town(
            profile, size=options.size, seed=options.seed, authorities=[authority_code]
        )
        counts = load_town(session, town, directory)
    out.write(
        f"  synthetic town: {counts.people} people, {counts.residents} who may need help, "
        f"{counts.volunteers} volunteers, {counts.groups} groups  (seed {options.seed})\n"
    )
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, authority_code)
        result = assign_authority(session, authority=authority, profile=profile, actor="demo")
        coverage = result.buddies.coverage
    out.write(
        f"  assignment: {coverage.covered} of {coverage.residents} residents have a buddy "
        f"({coverage.with_backup} with a backup too)\n"
    )

    people = People(
        telegram=telegram,
        twilio=twilio,
        sms_webhook_url=f"{public}/sms/inbound",
        time_scale=options.speed,
        seed=options.seed,
        answers_per_person=50,  # a buddy may be sent several visits
    )
    volunteers = Volunteers()
    people.responder = volunteers.respond
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, authority_code)
        personas = _populate(session, people, volunteers, authority)
    out.write(f"  simulated residents: {dict(sorted(personas.items()))}\n")
    scale = options.speed
    ladder = Ladder(
        reminder_after=DRILL_LADDER.reminder_after / scale,
        visit_after=DRILL_LADDER.visit_after / scale,
        unreached_after=DRILL_LADDER.unreached_after / scale,
    )
    out.write(
        f"  escalation ladder: reminder after 15 min, buddy visit after 45 min, unreached after 2 h"
        f" (drill time; ×{scale:g} faster)\n\n"
    )

    # The demo sweeps the compressed ladder itself, several times a second.
    app = build_app(ctx, run_scheduler=False)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=int(public.rsplit(":", 1)[1]),
            log_level="warning",
            lifespan="on",
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                raise RuntimeError("the service did not start")
            await asyncio.sleep(0.05)
        await asyncio.wait_for(app.state.runtime.telegram_ready.wait(), timeout=20)
        return await _run_campaign(ctx, options, ladder, authority_code)
    finally:
        people.close()
        server.should_exit = True
        await serving


async def _run_campaign(
    ctx: Context, options: DemoOptions, ladder: Ladder, authority_code: str
) -> int:
    out = options.out
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, authority_code)
        campaign = start_drill_checkin(
            session,
            authority=authority,
            audience=Audience(residents_only=True),
            started_by="demo:officer",
            now=utcnow(),
            ladder=ladder,
        )
        campaign_id = campaign.id
        started: datetime = campaign.started_at
    out.write(
        f"Drill check-in #{campaign_id} started for {campaign.recipients} residents who may need help.\n"
    )
    screen = Screen(out)
    deadline = started + ladder.unreached_after + ladder.reminder_after
    while True:
        now = utcnow()
        with unit_of_work(ctx.sessions) as session:
            run_escalations(session, now=now)
            requeue_expired_leases(session, now=now)
        with unit_of_work(ctx.sessions) as session:
            status = live_status(session, campaign=session.get_one(Campaign, campaign_id))
            open_tasks = session.scalar(
                select(Task.id)
                .where(
                    Task.campaign_id == campaign_id,
                    Task.status.in_((TaskStatus.OFFERED, TaskStatus.ACCEPTED)),
                )
                .limit(1)
            )
        screen.draw(_progress_lines(status, (now - started).total_seconds() * options.speed / 60))
        settled = status.total.no_answer == status.total.unreached and open_tasks is None
        if (settled and now > started + ladder.reminder_after) or now > deadline:
            break
        await asyncio.sleep(0.25)

    with unit_of_work(ctx.sessions) as session:
        campaign = session.get_one(Campaign, campaign_id)
        report = close_campaign(session, campaign=campaign, now=utcnow())
        view = report_view(
            session,
            campaign=campaign,
            report=report,
            speed=options.speed,
            time_label=" (drill time)",
            title=f"Drill report: {ctx.profile.authorities[0].names.en}, check-in #{campaign_id}",
            local=ctx.settings.zone_info,
        )
    options.html.parent.mkdir(parents=True, exist_ok=True)
    options.html.write_text(render(view), encoding="utf-8")
    _print_report(out, view, report, options.html, options.speed)
    return 0
