"""Property-based fuzzing of the resident and volunteer dialog, through the inbox's own entry point.

Every step of the dialog, on SMS and on Telegram, gets arbitrary messages: any text (control and
direction characters, emoji, digits of other scripts, 4,000 characters and more), stickers,
locations (0,0 and out of range too), contacts and forged button data. Each is decoded from the
provider's own payload (a Telegram update, Twilio's form parameters) and handled by
``handle_inbound`` on a real database, exactly as the inbox processor does. Whatever arrives: no
exception escapes, answers already given stay in the draft, and the person gets a question in
their language (before a language is chosen, the question in every language).

Deterministic (``derandomize``) and bounded, so CI runs the same examples every time;
``HOSEN_FUZZ_EXAMPLES=5000`` searches deeper by hand.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots import enrolment
from bots.dialog import REGISTRATION, Dialog, Step
from bots.inbound import Delivery, handle_inbound
from bots.models import Conversation
from bots.processor import decoders
from bots.words import asks_for_help
from config.i18n import catalog, t
from config.languages import ALL_LANGUAGES, Language
from config.profile import Profile
from dispatch.models import OutboxMessage
from registry.db import unit_of_work
from registry.models import Channel
from registry.phones import normalise_phone
from registry.profile_sync import Directory

pytestmark = [pytest.mark.db, pytest.mark.slow]

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
_numbers = itertools.count(1)

VOLUNTEER: dict[str, Any] = {
    "who": "volunteer",
    "name": "Omar",
    "authority": "kiryat-tamar",
    "zone": "kt-center",
    "birth_year": 2011,
    "skills": ["driving"],
    "langs": ["ar"],
    "avail": "both",
    "vehicle": True,
    "capacity": 3,
    "consent": "2026-11.1",
    "guardian": "Dana",
}
RESIDENT: dict[str, Any] = {
    "who": "resident",
    "name": "Sara",
    "authority": "kiryat-tamar",
    "zone": "kt-center",
    "birth_year": 1940,
    "needs": ["mobility"],
    "ec_name": "David",
    "ec_phone": "+972545550101",
    "consent": "2026-11.1",
    "health": "2026-11.1",
}
FAMILY: dict[str, Any] = {**RESIDENT, "who": "family", "phone": "+972525550404"}
# At the code step: a typed mobile number whose code was sent, or a landline (no code).
CODE_SENT: dict[str, Any] = {"_code_phone": "+972545550000"}  # a number of its own in _open
CODE_LANDLINE: dict[str, Any] = {"_code_phone": "+97286123456", "_code_landline": True}
# The draft keys each step may change (its own answers and those that depend on them).
OWNS: dict[Step, set[str]] = {
    Step.WHO: {"who"},
    Step.NAME: {"name"},
    Step.PHONE: {"phone", "phone_source"},
    Step.PHONE_CODE: {"phone", "phone_source"},
    Step.AUTHORITY: {"authority", "zone"},
    Step.ZONE: {"zone", "authority", "lat", "lon"},
    Step.BIRTH_YEAR: {"birth_year", "guardian"},
    Step.SKILLS: {"skills"},
    Step.LANGUAGES: {"langs"},
    Step.AVAILABILITY: {"avail"},
    Step.VEHICLE: {"vehicle"},
    Step.CAPACITY: {"capacity"},
    Step.NEEDS: {"needs"},
    Step.CONTACT_NAME: {"ec_name", "ec_phone"},
    Step.CONTACT_PHONE: {"ec_phone"},
    Step.HEALTH_CONSENT: {"health", "needs"},
    Step.GUARDIAN: {"guardian"},
    Step.UPDATE: {"authority"},
}
# Where a conversation may be when a message arrives: a registration step with the answers
# before it (a volunteer's, a resident's, a family member's), or a registered person's menus.
STARTS: list[tuple[str, dict[str, Any]]] = [
    *[(step.value, VOLUNTEER) for step in REGISTRATION],
    *[(step.value, RESIDENT) for step in REGISTRATION],
    *[(step.value, FAMILY) for step in (Step.NAME, Step.PHONE, Step.SUMMARY)],
    *[
        (Step.PHONE_CODE.value, {**answers, **code})
        for answers in (VOLUNTEER, RESIDENT)
        for code in (CODE_SENT, CODE_LANDLINE)
    ],
    (Step.NEW.value, {}),
    (Step.STOPPED.value, {**VOLUNTEER, "_resume": Step.VEHICLE.value}),
    ("registered:" + Step.MENU.value, RESIDENT),
    ("registered:" + Step.UPDATE.value, VOLUNTEER),
    ("registered:" + Step.DELETE.value, RESIDENT),
    ("registered:" + Step.ZONE.value, VOLUNTEER),
    ("registered:" + Step.HELP_KIND.value, RESIDENT),
    ("registered:" + Step.HELP_DETAIL.value, RESIDENT),
    ("registered:" + Step.HELP_WHAT.value, RESIDENT),
]
# A registered person's steps that start from the menu, with what they keep in the draft.
FROM_MENU: dict[str, dict[str, Any]] = {
    Step.MENU.value: {},
    Step.DELETE.value: {},
    Step.HELP_KIND.value: {},
    Step.HELP_DETAIL.value: {"_help_need": "food"},
    Step.HELP_WHAT.value: {"_help_alert": 999_999},  # a request since closed or erased
}

# Digits of other scripts, in numbers the steps expect (choices, years, capacities).
_DIGITS = "0123456789٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹０１２３４５６７８９०१२३४५६७८९²³¹፩፪፫"
_CONTROLS = (
    "\x00\x07\x1b\x7f\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2069\ufeff\n\t"
)
# Every keyword of every language (back, cancel, help, skip, stop, join...), as people write them.
KEYWORDS = sorted(
    {
        word.strip()
        for language in ALL_LANGUAGES
        for key, words in catalog(language).items()
        if key.startswith("bot.words.")
        for word in words.split(",")
        if word.strip()
    }
)
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(KEYWORDS),
    st.text(alphabet=_DIGITS + " ,.-", min_size=1, max_size=6),
    st.text(alphabet=_CONTROLS + "aא١ 🙂", max_size=12),
    st.sampled_from(
        ["🙂", "👍🏽", "👨‍👩‍👧", "🇮🇱", "/", "/start", "/start " + "p" * 200, "-1", "1e9"]
    ),
    st.integers(min_value=3990, max_value=4100).map(lambda n: "x" * n),
    st.integers(min_value=0, max_value=30).map(str),
)
# JSON (and so a Telegram update) has no NaN or infinity: those are checked on their own below.
locations = st.one_of(
    st.just((0.0, 0.0)),
    st.tuples(
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    st.tuples(st.floats(min_value=31.5, max_value=31.7), st.floats(min_value=34.7, max_value=34.9)),
)
# Check-in and task buttons ("c:", "t:") belong to the dispatcher and "officer." ones to the
# officers' commands, not to this dialog.
steps = st.sampled_from([s.value for s in Step] + ["x", ""])


@dataclass(frozen=True)
class Message:
    kind: str  # text | sticker | location | contact | button
    text: str = ""
    location: tuple[float, float] = (0.0, 0.0)
    own: bool = True


messages = st.one_of(
    texts.map(lambda text: Message("text", text=text)),
    st.just(Message("sticker")),
    locations.map(lambda where: Message("location", location=where)),
    st.tuples(texts, st.booleans()).map(lambda c: Message("contact", text=c[0], own=c[1])),
    st.tuples(steps, texts).map(lambda b: Message("button", text=f"{b[0]}:{b[1]}")),
    texts.filter(lambda data: not data.startswith(("c:", "t:", "officer."))).map(
        lambda data: Message("button", text=data)
    ),
)


def _telegram_update(chat_id: int, message: Message) -> dict[str, Any]:
    user = {"id": chat_id, "is_bot": False, "first_name": "F"}
    base: dict[str, Any] = {
        "message_id": next(_numbers),
        "date": 1_700_000_000,
        "chat": {"id": chat_id, "type": "private"},
        "from": user,
    }
    if message.kind == "button":
        return {
            "update_id": next(_numbers),
            "callback_query": {
                "id": str(next(_numbers)),
                "from": user,
                "chat_instance": "1",
                "data": f"b:{message.text}",
                "message": {**base, "text": "?"},
            },
        }
    if message.kind == "sticker":
        base["sticker"] = {
            "file_id": "s",
            "file_unique_id": "s",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "type": "regular",
        }
    elif message.kind == "location":
        base["location"] = {"latitude": message.location[0], "longitude": message.location[1]}
    elif message.kind == "contact":
        base["contact"] = {
            "phone_number": message.text,
            "first_name": "C",
            "user_id": chat_id if message.own else chat_id + 1,
        }
    else:
        base["text"] = message.text
    return {"update_id": next(_numbers), "message": base}


def _sms_params(phone: str, message: Message) -> dict[str, str]:
    body = message.text if message.kind in ("text", "button", "contact") else ""
    media = "1" if message.kind in ("sticker", "location") else "0"
    return {
        "MessageSid": f"SM{next(_numbers):032d}",
        "From": phone,
        "Body": body,
        "NumMedia": media,
    }


def _question_in(language: Language, step: str) -> list[str]:
    """Fixed pieces of the step's question in ``language`` (the parts around its parameters)."""
    if step in (Step.NEW, Step.STOPPED):
        keys = ["bot.cancelled", "bot.stopped.done", "bot.stopped.hint", "bot.language.prompt"]
        return [t(language, key) for key in keys]
    variants = [v for k, v in catalog(language).items() if k.startswith(f"bot.{step}.prompt")]
    return [max(re.split(r"\{[a-z_]+\}", v), key=len).strip() for v in variants]


def _answers(draft: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in draft.items() if not k.startswith("_") and k != "language"}


@dataclass
class FuzzedChat:
    """One fuzzed person, at one step, on one channel: each message goes through the
    provider's decoder and ``handle_inbound``; the texts queued for them in answer come back."""

    sessions: sessionmaker[Session]
    dialog: Dialog
    channel: Channel
    address: str
    clock: datetime

    def send(self, message: Message) -> list[str]:
        if self.channel == Channel.TELEGRAM:
            payload: Any = _telegram_update(int(self.address), message)
        else:
            payload = _sms_params(self.address, message)
        delivery: Delivery | None = decoders(region="IL")[self.channel](payload)
        assert delivery is not None
        self.clock += timedelta(minutes=5)  # inside the flood allowance and a staff PIN session
        with unit_of_work(self.sessions) as session:
            last = session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()))
            handle_inbound(session, delivery=delivery, dialog=self.dialog, now=self.clock)
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(OutboxMessage.text)
                    .where(OutboxMessage.address == self.address, OutboxMessage.id > (last or 0))
                    .order_by(OutboxMessage.id)
                )
            )

    def conversation(self) -> Conversation | None:
        with self.sessions() as session:
            return session.scalar(
                select(Conversation).where(
                    Conversation.channel == self.channel, Conversation.address == self.address
                )
            )


def _open(
    sessions: sessionmaker[Session],
    dialog: Dialog,
    profile: Profile,
    channel: Channel,
    language: Language,
    start: str,
    draft: dict[str, Any],
) -> FuzzedChat:
    n = next(_numbers)
    address = f"+9725{n % 10_000_000:08d}" if channel == Channel.SMS else str(900_000 + n)
    registered, _, step = start.rpartition(":")
    with unit_of_work(sessions) as session:
        person_id = None
        if registered:
            enrolled = enrolment.enrol(
                session,
                draft={**draft, "birth_year": 1980, "_new_consents": ["registration"]},
                channel=channel,
                address=address,
                language=language,
                profile=profile,
                region="IL",
                current=None,
                actor="test",
                now=START,
            )
            person_id = enrolled.person.id
            # As "update" makes it: the person's answers from the registry, being edited.
            current = enrolment.draft_from(session, enrolled.person, actor="test")
            draft = FROM_MENU.get(step, {**current, "_edit": True})
        if "_code_phone" in draft and not draft.get("_code_landline"):
            # The code the step awaits, sent as the phone step sends it, to a number of its own
            # (a number gets only a few codes an hour).
            draft = {**draft, "_code_phone": f"+97252{5_000_000 + n % 4_000_000:07d}"}
            enrolment.send_phone_code(
                session,
                phone=normalise_phone(draft["_code_phone"], region="IL"),
                channel=channel,
                address=address,
                language=language,
                actor="test",
                now=START,
            )
        chosen = bool(draft) or step != Step.NEW
        session.add(
            Conversation(
                channel=channel,
                address=address,
                person_id=person_id,
                step=step,
                draft={"language": language.value, **draft} if chosen else {},
                language=language if chosen else None,
                updated_at=START,
                allowance=0.0,
            )
        )
    return FuzzedChat(sessions, dialog, channel, address, START)


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
    sent=st.lists(messages, min_size=1, max_size=4),
)
def test_no_message_breaks_the_dialog(
    sessions: sessionmaker[Session],
    directory: Directory,
    dialog: Dialog,
    profile: Profile,
    channel: Channel,
    language: Language,
    start: tuple[str, dict[str, Any]],
    sent: list[Message],
) -> None:
    person = _open(sessions, dialog, profile, channel, language, *start)
    for message in sent:
        before = person.conversation()
        assert before is not None
        step, kept = before.step, _answers(before.draft)
        replies = person.send(message)  # no exception escapes
        after = person.conversation()
        if after is None:  # they erased their data: the goodbye was sent
            assert replies == [t(language, "bot.delete.done")]
            return
        if after.step == Step.STOPPED and channel == Channel.SMS:
            continue  # after a carrier STOP an SMS number gets nothing
        assert replies, (step, message)
        said = "\n".join(replies)
        if after.language is None:
            assert all(t(lang, "bot.language.prompt") in said for lang in ALL_LANGUAGES), said
        else:
            # Only the language question changes it (or a keyword, before any was chosen).
            assert before.language in (None, after.language) or step == Step.LANGUAGE
            # A request for help, in words or from the menu, is answered by the help loop's
            # acknowledgement (what happens next, and the emergency numbers), not the menu again.
            asked = _question_in(after.language, after.step)
            if asks_for_help(message.text) or (
                after.step == Step.MENU and step in (Step.HELP_KIND, Step.HELP_DETAIL)
            ):
                asked.append(t(after.language, "dispatch.ack.help"))
            if step == Step.HELP_WHAT and after.step == Step.MENU:  # the kind, told or skipped
                asked += [t(after.language, f"bot.help_what.{k}") for k in ("thanks", "skipped")]
            assert any(piece in said for piece in asked), (
                step,
                after.step,
                message,
                said,
            )
        if after.step in REGISTRATION or after.step == Step.UPDATE:
            owned = OWNS.get(Step(step), set())
            now = _answers(after.draft)
            lost = {k for k, v in kept.items() if k not in owned and now.get(k, v) != v}
            lost |= {k for k in kept if k not in owned and k not in now}
            assert not lost, (step, after.step, message, lost)


@pytest.mark.parametrize("where", [(0.0, 0.0), (999.0, 34.77), (31.61, -999.0), (-91.0, 34.77)])
def test_a_location_nowhere_near_is_refused_at_the_zone_step(
    sessions: sessionmaker[Session],
    directory: Directory,
    dialog: Dialog,
    profile: Profile,
    where: tuple[float, float],
) -> None:
    person = _open(sessions, dialog, profile, Channel.TELEGRAM, Language.AR, "zone", VOLUNTEER)
    replies = person.send(Message("location", location=where))
    after = person.conversation()
    assert after is not None and after.step == Step.ZONE
    assert replies[0] == t(Language.AR, "bot.error.location")
    assert after.draft["zone"] == VOLUNTEER["zone"] and "lat" not in after.draft


def test_a_location_that_is_no_number_has_no_zone(profile: Profile) -> None:
    for where in [(float("nan"), 34.77), (31.61, float("inf")), (float("-inf"), 0.0)]:
        assert enrolment.nearest_zone(profile, *where) is None
    assert enrolment.nearest_zone(profile, 31.6243, 34.7695) == ("kiryat-tamar", "kt-north")
