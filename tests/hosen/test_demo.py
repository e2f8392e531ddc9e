"""``hosen demo`` end to end: the real service, the fakes and simulated people, on SQLite."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import Language
from config.settings import Settings
from dispatch.models import HELP_KINDS, Alert, Campaign, OutboxMessage, Task, VoiceCall
from dispatch.reports import live_status
from hosen.demo import DemoOptions, run_demo
from registry.models import Person
from registry.staff import StaffMember


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_runs_a_whole_drill(
    tmp_path: Path, unit_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    # The demo plays the drill compressed, 300 times the real pace: the two-hour ladder lasts
    # about 24 s. Its drill clock stands still while the service is behind (hosen.demo_clock),
    # so a busy machine makes the drill longer, never the residents too late for the ladder.
    options = DemoOptions(
        size=400,
        seed=3,
        speed=300.0,
        database=tmp_path / "demo.sqlite3",
        html=tmp_path / "report.html",
        out=out,
    )
    assert asyncio.run(run_demo(unit_settings, options)) == 0
    text = out.getvalue()
    assert "Drill report" in text
    assert re.search(r"Officers' console: http://127\.0\.0\.1:\d+/console", text)
    # The offer round: volunteers answered, and coverage per zone says how many confirmed.
    offers = re.search(r"Offers: (\d+) accepted, (\d+) declined, (\d+) never answered", text)
    assert offers is not None and int(offers.group(1)) > 0, text
    assert t(Language.EN, "assign.coverage.head") in text
    confirmed = [int(n) for n in re.findall(r"(\d+) confirmed / \d+ offered / \d+ none", text)]
    assert confirmed and sum(confirmed) > 0
    answered = re.search(r"([\d.]+)% answered", text)
    # 80% of the simulated residents mean to answer "I'm OK" and 5% "help"; those with a
    # landline are called. However loaded the machine, the answers arrive before the ladder
    # has run out (on a clock that ran ahead, a loaded machine saw "0.0% answered").
    assert answered is not None and float(answered.group(1)) > 50, text
    assert re.search(r"Drill clock: (never waited|waited [\d.]+ s in \d+ pauses)", text), text
    html = options.html.read_text(encoding="utf-8")
    # Two charts (the answers curve, the zones' bars); the legends' swatches are small SVGs too.
    assert (
        html.count("<svg viewBox=") == 2
        and "DRILL" in html
        and '<html lang="en" dir="ltr">' in html
    )
    # The last frame of the bars is the closed campaign's: it says what the report says.
    frame = text[: text.index("Drill report")].rsplit("Drill time", 1)[-1]
    listed = re.search(r"Not accounted for: (\d+)", text)
    bar = re.search(r"Not reached\s+\[[█·]+\]\s+(\d+)/", frame)
    assert listed is not None and bar is not None and bar.group(1) == listed.group(1)

    engine = create_engine(f"sqlite:///{options.database}")
    with Session(engine) as session:
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.status == "closed" and campaign.mode == "drill" and campaign.recipients > 0
        status = live_status(session, campaign=campaign)
        assert status.total.waiting == 0, "everyone ends answered, seen, or on the unreached list"
        assert sum(status.total.outcomes().values()) == status.total.recipients
        texts = session.scalars(
            select(OutboxMessage.text).where(OutboxMessage.kind == "checkin")
        ).all()
        assert texts and all(text.strip() for text in texts)
    engine.dispose()
    help_acks = _nobody_is_promised_a_visit_without_a_person_behind_it(options.database)
    # A landline resident who pressed 2 heard the acknowledgement in the call's goodbye.
    engine = create_engine(f"sqlite:///{options.database}")
    with engine.connect() as conn:
        help_acks += (
            conn.scalar(
                select(func.count()).select_from(VoiceCall).where(VoiceCall.outcome == "help")
            )
            or 0
        )
        placed = (
            conn.scalar(
                select(func.count()).select_from(VoiceCall).where(VoiceCall.inbound.is_(False))
            )
            or 0
        )
    engine.dispose()
    # The landline residents' calls are in the report, in its words: a total row that adds up
    # to the calls placed by the close (a retry may still be placed after it).
    calls = re.search(r"(\d+) calls? (?:was|were) placed\.", text)
    assert calls is not None and 0 < int(calls.group(1)) <= placed
    table = text.split("Phone calls\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "Pressed 1: well" in table[1] and table[-1].split()[-1] == calls.group(1)
    assert "no_key" not in text and "no_answer" not in text and "Phone calls" in html
    # The report lists the help answers and what became of each; every one was acknowledged
    # (answers still in flight at the close are acknowledged after the report). How many the
    # simulated residents give varies from run to run (5% of them, answering in time).
    helped = re.search(r"(\d+) calls? for help\.", text)
    assert helped is not None and int(helped.group(1)) <= help_acks
    section = text.split("Calls for help: did anyone come?\n", 1)[1].split("\n\n", 1)[0]
    assert len(section.splitlines()) - 1 == min(int(helped.group(1)), 12)
    # Two officers are on duty (Telegram; SMS with a PIN): every alert is pushed to a person,
    # and the simulated officers take them.
    assert "officers on duty: Dana Levi (Telegram, reads he), Samir Haddad (SMS with a PIN" in text
    assert "no officer on duty" not in caplog.text
    taken = _officers_took_alerts_pushed_to_them(options.database)
    shown = re.findall(r"(Dana Levi|Samir Haddad) \(officer\)", section)
    # (Alerts may still be taken after the report is printed, never the other way round.)
    assert len(shown) <= taken, (taken, text)


def _officers_took_alerts_pushed_to_them(database: Path) -> int:
    """Every help alert was pushed to an officer on duty when it was raised (in the same
    transaction); every one an officer took had been pushed to that officer, in their language.
    Returns how many the officers took."""
    engine = create_engine(f"sqlite:///{database}")
    with Session(engine) as session:
        officers = {
            str(m.telegram_chat_id or m.phone) for m in session.scalars(select(StaffMember))
        }
        pushes = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "alert")).all()
        pushed_to: dict[str, set[str]] = {}
        for push in pushes:
            for row in push.buttons or []:
                for button in row:
                    pushed_to.setdefault(button["data"], set()).add(push.address)
        for alert in session.scalars(select(Alert).where(Alert.kind.in_(HELP_KINDS))):
            assert pushed_to.get(f"officer.alert:{alert.id}:take", set()) & officers, alert.id
        taken = session.scalars(select(Alert).where(Alert.owner_staff_id.is_not(None))).all()
        for alert in taken:
            member = session.get_one(StaffMember, alert.owner_staff_id)
            address = str(member.telegram_chat_id) if member.telegram_chat_id else member.phone
            pushed = session.scalars(
                select(OutboxMessage.text).where(
                    OutboxMessage.kind == "alert", OutboxMessage.address == address
                )
            ).all()
            take = t(member.language, "dispatch.alert.take")
            assert pushed and (member.telegram_chat_id or all(take in p for p in pushed))
    engine.dispose()
    return len(taken)


def _nobody_is_promised_a_visit_without_a_person_behind_it(database: Path) -> int:
    """Every "NAME is on the way" follows an acceptance by that very person; every other
    acknowledgement of help says only that the team has the request."""
    engine = create_engine(f"sqlite:///{database}")
    with Session(engine) as session:
        acks = session.execute(
            select(OutboxMessage, Person)
            .join(Person, Person.id == OutboxMessage.person_id)
            .where(OutboxMessage.kind == "ack")
        ).all()
        help_acks = 0
        for message, resident in acks:
            language = resident.language
            body = message.text.removeprefix(t(language, "dispatch.drill_marker")).strip()
            if body == t(language, "dispatch.ack.help"):
                help_acks += 1
                continue
            pattern = re.escape(t(language, "dispatch.ack.help_taken", volunteer="\0"))
            named = re.fullmatch(pattern.replace(re.escape("\0"), "(.+)"), body)
            unnamed = body == t(language, "dispatch.ack.help_taken_unnamed")
            assert not any(
                word in body.casefold() for word in ("someone is coming", "מישהו יגיע", "سيأتي أحد")
            ), body
            if not (named or unnamed):
                continue
            # The acknowledgement is written in the transaction that records the acceptance;
            # their timestamps are not compared because the outbox stamps the wall clock and the
            # dispatcher the demo's compressed one.
            accepted = session.scalars(
                select(Task).where(Task.resident_id == resident.id, Task.accepted_at.is_not(None))
            ).all()
            names = {
                (session.get_one(Person, task.volunteer_id).name or "").split(" ")[0]
                for task in accepted
            }
            # ...or by an officer who took the resident's help alert (audited "help.take").
            taken = session.scalars(
                select(Alert).where(
                    Alert.person_id == resident.id,
                    Alert.owner_staff_id.is_not(None),
                    Alert.taken_at.is_not(None),
                )
            ).all()
            names |= {
                session.get_one(StaffMember, alert.owner_staff_id).name.split(" ")[0]
                for alert in taken
            }
            assert accepted or taken, (
                f"'{body}' sent to resident {resident.id} before anyone accepted"
            )
            if named:
                assert named.group(1) in names, (body, names)
    engine.dispose()
    return help_acks
