"""Property-based fuzzing of the officers' dialog, through the inbox's own entry point.

Every step of the officers' flow (bots.officers.STEPS, and no step at all), on SMS (inside a PIN
session, so the gate asks only where it always asks) and on Telegram, gets arbitrary messages:
any text (control and direction characters, emoji, digits of other scripts, 4,000 characters and
more), staff commands, stickers, locations, contacts and forged button data (``officer.*`` of
every step, help alerts and tasks included). Each is decoded from the provider's own payload and
handled by ``handle_inbound`` on a real database, as the inbox processor does. Whatever arrives:
no exception escapes, a campaign being prepared keeps what was already chosen unless the officer
answered the step (or ended the flow with a command), and the officer always gets a reply in
their own language (the staff row's; a message that is no staff business goes to the bots'
sign-up dialog, which answers in the language chosen there).

Deterministic (``derandomize``) and bounded like the resident dialog's fuzz;
``HOSEN_FUZZ_EXAMPLES=5000`` searches deeper by hand.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog
from bots.models import Conversation
from bots.officers import STATE, OfficerStep
from config.i18n import catalog, t
from config.languages import ALL_LANGUAGES, Language
from dispatch.models import (
    Alert,
    AlertKind,
    AlertState,
    Task,
    TaskReason,
    TaskStatus,
)
from registry.db import unit_of_work
from registry.models import Channel, Group, GroupKind, GroupMember, Person, PhoneKind, Source
from registry.profile_sync import Directory
from registry.staff import StaffMember, StaffRole, hash_pin
from tests.bots.test_dialog_fuzz import START, FuzzedChat, Message, texts

pytestmark = [pytest.mark.db, pytest.mark.slow]

_numbers = itertools.count(1)
PIN = "482913"
# Where an officer may be when a message arrives: each step, with what the flow holds by then
# (``{task}``, ``{give}`` and ``{alert}`` are filled with the town's own rows).
DRILL = {"mode": "drill", "who": "residents", "kind": "checkin"}
STARTS: list[dict[str, Any]] = [
    {},
    {"step": "", "campaign": 1},
    {"step": "audience", "mode": "drill"},
    {"step": "audience", "mode": "emergency", "campaign": 1},
    {"step": "zones", "mode": "drill", "who": "residents", "zones": ["kt-center"]},
    {"step": "zones", "mode": "emergency", "who": "residents"},
    {"step": "template", "mode": "drill", "who": "everyone"},
    {"step": "text", "mode": "drill", "who": "everyone", "kind": "announcement"},
    {"step": "confirm", **DRILL},
    {"step": "confirm", **DRILL, "mode": "emergency", "zones": ["kt-north"]},
    {"step": "confirm", **DRILL, "kind": "announcement", "text": "Shelters are open."},
    {"step": "again", **DRILL, "mode": "emergency"},
    {"step": "task", "offered": ["{task}"]},
    {"step": "give", "offered": ["{give}"]},
    {"step": "alert", "offered": ["{alert}:done", "{alert}:fail"]},
    {"step": "language"},
    {"step": "confirm", "mode": "drill"},  # a damaged row: no audience, no kind
    {"step": "nonsense", "zones": "not a list"},
]
# What a step's answer may change; anything else the flow holds must stay as it was.
OWNS: dict[str, set[str]] = {
    "audience": {"who", "zones"},
    "zones": {"zones"},
    "template": {"kind"},
    "text": {"text"},
}
PREPARING = ("audience", "zones", "template", "text", "confirm")
COMMANDS = [
    "/drill",
    "/emergency",
    "/status",
    "/unreached",
    "/close",
    "/tasks",
    "/take 1",
    "/done x",
    "/failed",
    "/language",
    "/nonsense",
    "/drill@HosenBot",
]
CONFIRM_WORDS = [t(language, "officer.confirm.word") for language in ALL_LANGUAGES]
officer_steps = st.sampled_from([s.value for s in OfficerStep] + ["x", "alert", ""])
officer_values = st.one_of(
    texts,
    st.sampled_from(
        [
            *("yes", "no", "send", "done", "residents", "everyone", "zones", "checkin"),
            *("kt-north", "announcement", "he", "ar", "{alert}:take", "{alert}:done"),
            *("{alert}:fail", "{task}", "{give}", "999999:take", "1-1", "x:y:z"),
        ]
    ),
)
messages = st.one_of(
    texts.map(lambda text: Message("text", text=text)),
    st.sampled_from(COMMANDS + CONFIRM_WORDS).map(lambda text: Message("text", text=text)),
    st.just(Message("sticker")),
    st.just(Message("location", location=(31.6, 34.77))),
    st.tuples(texts, st.booleans()).map(lambda c: Message("contact", text=c[0], own=c[1])),
    st.tuples(officer_steps, officer_values).map(
        lambda b: Message("button", text=f"officer.{b[0]}:{b[1]}")
    ),
)


@dataclass(frozen=True)
class Town:
    task: int
    give: str
    alert: int


@pytest.fixture
def town(sessions: sessionmaker[Session], directory: Directory) -> Town:
    """A resident with an open help alert and an open home visit for a youth group's member."""
    with unit_of_work(sessions) as session:
        kt = session.merge(directory.authorities["kiryat-tamar"])
        zone = directory.zone(kt, "kt-center")
        assert zone is not None

        def person(name: str, n: int, **fields: object) -> Person:
            row = Person(
                authority_id=kt.id,
                name=name,
                phone=f"+97250{n:07d}",
                phone_kind=PhoneKind.MOBILE,
                language=Language.HE,
                channel=Channel.SMS,
                source=Source.STAFF,
                zone_id=zone.id,
                **fields,
            )
            session.add(row)
            session.flush()
            return row

        resident = person("Miriam Cohen", 1, needs_help=True)
        member = person("Noa Levi", 2, is_volunteer=True, birth_year=1990)
        group = Group(
            authority_id=kt.id, kind=GroupKind.YOUTH_MOVEMENT, name="Scouts", join_code="F1"
        )
        session.add(group)
        session.flush()
        session.add(GroupMember(group_id=group.id, person_id=member.id, is_coordinator=True))
        task = Task(
            resident_id=resident.id,
            volunteer_id=member.id,
            group_id=group.id,
            reason=TaskReason.NO_ANSWER,
            status=TaskStatus.OFFERED,
            created_at=START,
        )
        alert = Alert(
            person_id=resident.id,
            kind=AlertKind.HELP_REQUEST,
            created_at=START,
            state=AlertState.OPEN,
            climb=1,
        )
        session.add_all([task, alert])
        session.flush()
        return Town(task=task.id, give=f"{task.id}-{member.id}", alert=alert.id)


def _filled(value: Any, town: Town) -> Any:
    if isinstance(value, str):
        return value.format(task=town.task, give=town.give, alert=town.alert)
    if isinstance(value, list):
        return [_filled(item, town) for item in value]
    return value


@cache
def _pieces(language: Language) -> frozenset[str]:
    """Fixed pieces of every catalog text of ``language`` that no other language shares: a
    reply holding one is written in ``language``."""

    def pieces(lang: Language) -> set[str]:
        found = set()
        for text in catalog(lang).values():
            for piece in re.split(r"\{[a-z_]+\}", text):
                piece = piece.strip(" .,:;()\n")
                if len(piece) >= 5 and not piece.startswith("/"):
                    found.add(piece)
        return found

    others = set().union(*(pieces(lang) for lang in ALL_LANGUAGES if lang != language))
    return frozenset(pieces(language) - others)


@dataclass
class Officer(FuzzedChat):
    def send_in(self, message: Message, town: Town) -> list[str]:
        """``message``, its button data filled with ``town``'s own rows."""
        if message.kind == "button":
            message = Message("button", text=_filled(message.text, town))
        return self.send(message)


def _open(
    sessions: sessionmaker[Session],
    dialog: Dialog,
    directory: Directory,
    town: Town,
    channel: Channel,
    language: Language,
    start: dict[str, Any],
    role: StaffRole,
) -> Officer:
    n = next(_numbers)
    phone = f"+97253{n % 10_000_000:07d}"
    address = phone if channel == Channel.SMS else str(800_000 + n)
    with unit_of_work(sessions) as session:
        kt = session.merge(directory.authorities["kiryat-tamar"])
        member = StaffMember(
            name=f"Officer {n}",
            phone=phone,
            telegram_chat_id=int(address) if channel == Channel.TELEGRAM else None,
            authority_id=kt.id,
            role=role,
            active=True,
            language=language,
            pin_hash=_PIN_HASH,
            pin_failures=0,
            sms_session_until=START + timedelta(days=30),
        )
        session.add(member)
        session.add(
            Conversation(
                channel=channel,
                address=address,
                step="",
                draft={STATE: {k: _filled(v, town) for k, v in start.items()}} if start else {},
                language=language,
                updated_at=START,
                allowance=0.0,
            )
        )
    return Officer(sessions, dialog, channel, address, START)


_PIN_HASH = hash_pin(PIN)


def _flow(conversation: Conversation) -> dict[str, Any]:
    state = conversation.draft.get(STATE)
    return dict(state) if isinstance(state, dict) else {}


@settings(
    derandomize=True,
    max_examples=int(os.environ.get("HOSEN_FUZZ_EXAMPLES", "250")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    channel=st.sampled_from([Channel.SMS, Channel.TELEGRAM]),
    language=st.sampled_from(ALL_LANGUAGES),
    start=st.sampled_from(STARTS),
    role=st.sampled_from([StaffRole.OFFICER, StaffRole.OFFICER, StaffRole.COORDINATOR]),
    sent=st.lists(messages, min_size=1, max_size=4),
)
def test_no_message_breaks_the_officers_dialog(
    sessions: sessionmaker[Session],
    directory: Directory,
    dialog: Dialog,
    town: Town,
    channel: Channel,
    language: Language,
    start: dict[str, Any],
    role: StaffRole,
    sent: list[Message],
) -> None:
    officer = _open(sessions, dialog, directory, town, channel, language, start, role)
    for message in sent:
        before = officer.conversation()
        assert before is not None
        flow = _flow(before)
        replies = officer.send_in(message, town)  # no exception escapes
        after = officer.conversation()
        assert after is not None
        if after.step == "stopped" and channel == Channel.SMS:
            continue  # after a carrier STOP an SMS number gets nothing
        assert replies, (flow, message)
        said = "\n".join(replies)
        # Staff business is answered in the staff row's language; anything else is the bots'
        # sign-up dialog, in the language the person chose there.
        pieces = _pieces(language) | _pieces(after.language or language)
        assert any(piece in said for piece in pieces), (language, flow, message, said)
        # What was chosen for a campaign stays, unless the step itself was answered, the flow
        # ended with a word of the officer's (a command, a confirmation, a "no"), or a help
        # alert or a task was acted on.
        now = _flow(after)
        step = flow.get("step")
        if step not in PREPARING or now.get("step") in (None, ""):
            continue
        if message.kind == "button" or message.text.strip().startswith("/"):
            continue
        owned = OWNS.get(step, set())
        lost = {k for k in ("mode", "who", "zones", "kind", "text") if k not in owned}
        lost = {k for k in lost if k in flow and now.get(k) != flow[k]}
        assert not lost, (flow, now, message)


def test_a_bad_answer_mid_flow_keeps_the_flow_and_asks_again_in_the_officers_language(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, town: Town
) -> None:
    officer = _open(
        sessions,
        dialog,
        directory,
        town,
        Channel.SMS,
        Language.AR,
        {"step": "template", "mode": "drill", "who": "everyone"},
        StaffRole.OFFICER,
    )
    for text in ("٩", "🙂", "\u202e٣\u200f", "x" * 4000):
        replies = officer.send_in(Message("text", text=text), town)
        assert replies[0].startswith(t(Language.AR, "officer.template.ask"))
        conversation = officer.conversation()
        assert conversation is not None
        assert _flow(conversation) == {
            "step": "template",
            "mode": "drill",
            "who": "everyone",
            "zones": [],
            "offered": [],
        }
    # The number of a choice in another script is the choice (direction marks are invisible).
    replies = officer.send_in(Message("text", text="\u200f١"), town)
    what = t(Language.AR, "officer.what.drill_checkin")
    assert replies[0] == t(Language.AR, "officer.confirm.summary", what=what, people=2)
