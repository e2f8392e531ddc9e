"""The one-command drill: a whole Hosen drill rehearsed on a laptop, with no account and no network.

``hosen demo`` builds a synthetic town in an embedded SQLite database, runs the assignment
engine, starts the loopback Telegram and Twilio fakes with simulated residents and volunteers,
and runs the real service (`hosen serve`'s ASGI app with its webhooks, bot and outbox worker)
against them. An officer's drill check-in goes to every resident who may need help; people
answer after realistic delays (some never, some ask for help, some blocked the bot, some numbers
are wrong); two simulated officers on duty take the help alerts pushed to them
(:mod:`hosen.demo_officers`); the escalation ladder (reminder, a buddy's home visit, the
unreached list) and the alerts' climb run with their times compressed; and the drill ends with a
report in the terminal and as an HTML page.

Times in the report are drill time: the drill clock's seconds multiplied by the compression
factor. The drill clock (:mod:`hosen.demo_clock`) keeps the real pace, but stands still while the
service is behind, so a busy machine slows the drill down instead of running the ladder past
answers that are still on their way.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import uvicorn
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.campaigns import Audience, Ladder, start_drill_checkin
from dispatch.clock import DrillClock
from dispatch.escalation import run_escalations
from dispatch.estimate import minutes as duration
from dispatch.help import run_alert_climbs
from dispatch.models import (
    Campaign,
    Task,
    TaskStatus,
)
from dispatch.reports import OUTCOMES, Status, close_campaign, live_status
from dispatch.sweeps import requeue_expired_leases
from fakes.people import DRILL_MIX, Answer, Delay, Intent, Kind, People, SeenMessage
from fakes.settings import settings_for_fakes
from fakes.telegram import FakeTelegram
from fakes.town import generate_town, load_town
from fakes.twilio import FakeTwilio
from fakes.twilio_voice import Callee
from hosen import migrations
from hosen.app import build_app
from hosen.context import Context
from hosen.demo_clock import DrillPace
from hosen.demo_offers import offer_answer, run_offer_round
from hosen.demo_officers import OfficersOnDuty, untaken_help
from hosen.prompts import PromptsError, synthesise_prompts
from hosen.report_html import (
    ReportView,
    authority_name,
    call_lines,
    help_line,
    render,
    report_view,
    status_lines,
)
from registry.assignment.store import assign_authority
from registry.db import unit_of_work, utcnow
from registry.models import Authority, Person, PersonStatus, PhoneKind
from registry.phones import normalise_phone
from registry.profile_sync import sync_profile
from registry.staff import StaffRole, add_staff

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
# The officer a newcomer signs in to the console as; their codes arrive at the Twilio fake and
# are shown on the terminal.
DEMO_OFFICER = "054-777-0000"
# How residents with only a landline answer Hosen's call (fakes.twilio_voice.Callee): most press
# 1, some 2, some pick up and press nothing, the rest are not there (machine, busy, no answer).
CALL_MIX: tuple[tuple[str, Callee, float], ...] = (
    ("called: pressed 1", Callee(answer="human", keys=["1"]), 0.55),
    ("called: pressed 2", Callee(answer="human", keys=[None, "2"]), 0.08),
    ("called: no key", Callee(answer="human", keys=[None, None]), 0.07),
    ("called: machine", Callee(answer="machine", keys=[]), 0.12),
    ("called: busy", Callee(answer="busy", keys=[]), 0.06),
    ("called: no answer", Callee(answer="no-answer", keys=[]), 0.12),
)
OFFER_SEED = 7  # which simulated volunteers decline their offer
ANSWERS_AT_ONCE = 16  # simulated answers on their way to the webhooks together


@dataclass
class DemoOptions:
    size: int = 2000
    seed: int = 7
    speed: float = 120.0
    database: Path = Path("var/demo.sqlite3")
    html: Path = Path("var/demo-drill-report.html")
    out: TextIO = field(default=sys.stdout)
    keep_console: bool = False  # serve the console on after the drill, until Ctrl-C
    # The report's language (the demo's own narration is English).
    language: Language = Language.EN


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
        offer = offer_answer(address, message, seed=OFFER_SEED)
        if offer is not None:
            return offer
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


def _draw_callee(rng: random.Random) -> tuple[str, Callee]:
    roll, total = rng.random(), 0.0
    for label, callee, share in CALL_MIX:
        total += share
        if roll < total:
            return label, callee
    return CALL_MIX[-1][0], CALL_MIX[-1][1]


def _populate(
    session: Session,
    people: People,
    volunteers: Volunteers,
    authority: Authority,
    twilio: FakeTwilio,
    calls: random.Random,
) -> dict[str, int]:
    """Give every resident and volunteer of the authority a simulated phone (a landline answers
    the calls as :data:`CALL_MIX` draws); count the personas."""
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
            if person.phone:
                label, callee = _draw_callee(calls)
                twilio.voice.callees[person.phone] = callee
            else:
                label = "no phone"
            personas[label] = personas.get(label, 0) + 1
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
    return f"  {label[:36]:<36} [{'█' * filled}{'·' * (BAR - filled)}] {value:>6}/{total}"


def _progress_lines(status: Status, drill_minutes: float, language: Language) -> list[str]:
    """The live bars: how far the messages got, then where everyone stands (the same outcomes,
    counted the same way, as the report's)."""
    c = status.total
    n = c.recipients
    tasks = status.tasks
    visits = sum(tasks.values())
    done = tasks.get(TaskStatus.DONE.value, 0) + tasks.get(TaskStatus.NOT_REACHED.value, 0)
    return [
        f"  {t(language, 'report.drill_time')}: {duration(language, drill_minutes * 60)}",
        _bar(t(language, "report.delivery.delivered"), c.delivered, n),
        *(_bar(t(language, f"report.outcome.{o}"), getattr(c, o), n) for o in OUTCOMES),
        _bar(t(language, "report.heading.visits"), done, visits or 1) + f"  ({visits})",
    ]


class Screen:
    """Progress bars redrawn in place on a terminal; a line now and then otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.drawn = 0
        self.last_plain = 0.0

    def draw(self, lines: list[str], *, last: bool = False) -> None:
        """Redraw; off a terminal, print now and then (always the ``last`` frame)."""
        if self.tty:
            if self.drawn:
                self.out.write(f"\x1b[{self.drawn}F")
            self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)
        elif last or time.monotonic() - self.last_plain > 5:
            self.out.write("\n".join(lines) + "\n")
            self.last_plain = time.monotonic()
        self.out.flush()


# --- the report --------------------------------------------------------------------------------


HELP_LINES = 12  # calls for help listed one by one; the rest are in the HTML report


def _print_report(out: TextIO, view: ReportView, html: Path) -> None:
    """The report's summary: the same words and numbers as the HTML page, without its long
    lists (who is not accounted for, the numbers to fix: counted here, listed there)."""
    labels = view.labels
    out.write(f"\n{view.title}\n{'=' * len(view.title)}\n")
    out.write("\n".join(status_lines(view)[1:]) + "\n\n")
    out.write(labels["heading.times"] + "\n")
    out.write("".join(f"  {label}: {value}\n" for label, value in view.percentiles))
    out.write(f"\n{labels['heading.help']}\n  {view.help_summary or labels['nobody']}\n")
    out.write("".join(f"  {help_line(row)}\n" for row in view.help[:HELP_LINES]))
    out.write(f"\n{labels['heading.unreached']}: {len(view.unreached)}\n")
    out.write(f"{labels['heading.numbers']}: {len(view.numbers)}\n")
    if view.opted_out:
        out.write(view.opted_out + "\n")
    out.write("".join(f"{line}\n" for line in call_lines(view)))
    out.write(f"\nHTML: {html}\n")


# --- the run -----------------------------------------------------------------------------------


def _add_demo_officer(ctx: Context, authority_code: str, twilio: FakeTwilio, out: TextIO) -> None:
    """An officer for the console, whose sign-in codes (SMS to the fake) are printed here."""
    phone = normalise_phone(DEMO_OFFICER, region=ctx.settings.default_region)
    with unit_of_work(ctx.sessions) as session:
        add_staff(
            session,
            name="Demo officer",
            phone=phone,
            authority=ctx.authority(session, authority_code),
            role=StaffRole.OFFICER,
            actor="demo",
        )

    def show_code(message: dict[str, Any]) -> None:
        code = re.search(r"\b\d{6}\b", str(message.get("body", "")))
        if message.get("to") == phone.e164 and code:
            out.write(f"\n  console sign-in code for {DEMO_OFFICER}: {code.group(0)}\n")
            out.flush()

    twilio.on_message.append(show_code)


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
                    "voice_rate_per_second": 20.0,
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
    _add_demo_officer(ctx, authority_code, twilio, out)

    people = People(
        telegram=telegram,
        twilio=twilio,
        sms_webhook_url=f"{public}/sms/inbound",
        time_scale=options.speed,
        seed=options.seed,
        answers_per_person=50,  # a buddy may be sent several visits
    )
    volunteers = Volunteers()
    officers = OfficersOnDuty()
    people.responder = officers.responder(volunteers.respond)
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, authority_code)
        authority.calls = True  # the landline residents are called
        # Someone who leaves Telegram and SMS unanswered does not pick up the phone either.
        twilio.voice.default = Callee(answer="no-answer", keys=[])
        personas = _populate(
            session, people, volunteers, authority, twilio, random.Random(options.seed)
        )
        on_duty = officers.register(
            session, authority=authority, people=people, speed=options.speed
        )
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(personas.items()))
    out.write(f"  simulated residents: {kinds}\n")
    out.write(f"  officers on duty: {', '.join(on_duty)}\n")
    scale = options.speed
    ladder = Ladder(
        reminder_after=DRILL_LADDER.reminder_after / scale,
        visit_after=DRILL_LADDER.visit_after / scale,
        unreached_after=DRILL_LADDER.unreached_after / scale,
        calls=True,
        call_retry_after=DRILL_LADDER.call_retry_after / scale,
        call_retries=DRILL_LADDER.call_retries,
    )
    _prompts(ctx, out)
    out.write(
        f"  escalation ladder: reminder after 15 min, buddy visit after 45 min, unreached after 2 h"
        f" (drill time; ×{scale:g} faster)\n\n"
    )

    # The demo sweeps the compressed ladder itself, several times a second, on a drill clock
    # that waits for the service (hosen.demo_clock); the service stamps what it records with it.
    clock = DrillClock()
    app = build_app(ctx, run_scheduler=False, clock=clock.now)
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
        # A loaded machine takes a while to bring the bot up against the fake.
        await asyncio.wait_for(app.state.runtime.telegram_ready.wait(), timeout=90)
        out.write(
            f"Officers' console: {public}/console  (sign in as {DEMO_OFFICER}; "
            "the code appears here)\n\n"
        )
        # A wave of answers is over when quiet for about the slowest volunteers' answer time.
        quiet = min(4.0, max(2.5, 3 * VOLUNTEER_DELAY.median / options.speed))
        await run_offer_round(ctx, out, authority_code=authority_code, quiet_seconds=quiet)
        spool = app.state.runtime.intake.spool
        pace = DrillPace(clock, spooled=(lambda: spool.active) if spool is not None else None)
        code = await _run_campaign(ctx, options, ladder, authority_code, pace, people)
        if options.keep_console:
            out.write(f"\nThe console stays up at {public}/console; Ctrl-C stops it.\n")
            out.flush()
            await asyncio.Event().wait()
        return code
    finally:
        people.close()
        server.should_exit = True
        await serving


def _prompts(ctx: Context, out: TextIO) -> None:
    """The recorded prompts (Amharic), synthesised with espeak-ng if they are not there yet."""
    voice = ctx.profile.voice
    if voice is None:
        return
    try:
        written = synthesise_prompts(voice)
    except PromptsError as exc:
        out.write(f"  recorded prompts: {exc}; those languages are said in English\n")
        return
    if written:
        out.write(
            f"  recorded prompts: {len(written)} made with espeak-ng in {voice.prompts_dir}\n"
        )


async def _run_campaign(
    ctx: Context,
    options: DemoOptions,
    ladder: Ladder,
    authority_code: str,
    pace: DrillPace,
    people: People,
) -> int:
    out = options.out
    clock = pace.clock
    # From here the simulated people answer on the drill clock, moved below.
    people.manual = True
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, authority_code)
        campaign = start_drill_checkin(
            session,
            authority=authority,
            audience=Audience(residents_only=True),
            started_by="demo:officer",
            now=clock.now(),
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
        with unit_of_work(ctx.sessions) as session:
            pace.check(session, real=time.monotonic())
        now = clock.now()
        # The answers due by now on the drill clock (people answer at their own pace, together).
        drill_seconds = (now - started).total_seconds() * options.speed
        await people.advance_async(max(0.0, drill_seconds - people.now), together=ANSWERS_AT_ONCE)
        with unit_of_work(ctx.sessions) as session:
            run_escalations(session, now=now)
            run_alert_climbs(session, now=now)  # help nobody took goes to the next officer
            # Leases are the worker's, on the real time.
            requeue_expired_leases(session, now=utcnow())
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
            untaken = untaken_help(session, campaign_id=campaign_id)
        screen.draw(
            _progress_lines(
                status, (now - started).total_seconds() * options.speed / 60, options.language
            )
        )
        # Everyone answered, was seen by a buddy, or is on the unreached list; no visit open,
        # no call for help that nobody has taken.
        settled = status.total.waiting == 0 and open_tasks is None and not untaken
        if (settled and now > started + ladder.reminder_after) or now > deadline:
            break
        await asyncio.sleep(0.25)

    with unit_of_work(ctx.sessions) as session:
        campaign = session.get_one(Campaign, campaign_id)
        closed_at = clock.now()
        report = close_campaign(session, campaign=campaign, now=closed_at)
        # The last frame is the closed campaign's: the bars and the report agree.
        screen.draw(
            _progress_lines(
                live_status(session, campaign=campaign),
                (closed_at - started).total_seconds() * options.speed / 60,
                options.language,
            ),
            last=True,
        )
        view = report_view(
            session,
            campaign=campaign,
            report=report,
            local=ctx.settings.zone_info,
            now=closed_at,
            language=options.language,
            authority=authority_name(session, ctx.profile, campaign.authority_id, options.language),
            speed=options.speed,
            timezone=ctx.settings.timezone,
        )
    options.html.parent.mkdir(parents=True, exist_ok=True)
    options.html.write_text(render(view), encoding="utf-8")
    _print_report(out, view, options.html)
    out.write(_pace_line(pace, clock))
    return 0


def _pace_line(pace: DrillPace, clock: DrillClock) -> str:
    """How long the drill clock waited for the service (nothing on an idle machine)."""
    if not pace.pauses:
        return "Drill clock: never waited for the service.\n"
    why = ", ".join(f"{name} {count}" for name, count in sorted(pace.why.items()))
    line = (
        f"Drill clock: waited {clock.held:.1f} s in {pace.pauses} pauses for the service "
        f"to catch up (behind: {why})"
    )
    if pace.let_go:
        line += f"; {pace.let_go} pauses let go after {pace.max_pause:g} s"
    return line + ".\n"
