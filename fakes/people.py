"""Simulated residents who receive check-ins through the fakes and answer (or don't).

For the demo, the benchmarks and the end-to-end tests of the dispatcher: each simulated person
has a :class:`Persona` (answers "I'm OK" after a while, asks for help, never answers, blocked
the bot, is a wrong number, a landline, or a number that does not exist) and a Telegram chat or
a phone number. When the bot or the SMS sender reaches them through :class:`FakeTelegram` or
:class:`FakeTwilio`, they react like people do: after a delay drawn from a realistic, long-tailed
distribution they press the inline button whose callback data matches their answer (a
``callback_query`` update, through getUpdates or the bot's webhook) or send an SMS ("1" / "2")
to the application's inbound webhook, signed like Twilio's.

What a message means and how to answer it is the caller's business: a :data:`Responder` maps
(the person's intent, the message they saw) to an :class:`Answer`, or None when the message
asks for nothing. :func:`default_responder` presses a button whose data ends in ``ok`` /
``help`` and answers SMS with "1" / "2"; the dispatcher's tests pass their own.

Time is compressible: ``time_scale=60`` plays a simulated minute in a real second. With
``manual=True`` nothing happens by itself: reactions wait until :meth:`People.advance` moves the
simulated clock, which tests use instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import ClientError

from fakes.telegram import FakeTelegram, TelegramUser
from fakes.twilio import FakeTwilio

JSON = dict[str, Any]
Intent = Literal["ok", "help", "wrong_number"]
Kind = Literal["ok", "help", "silent", "blocked", "wrong_number", "landline", "invalid_number"]
Channel = Literal["telegram", "sms"]


@dataclass(frozen=True)
class Delay:
    """A log-normal answer delay: half the people answer within ``median`` seconds.

    ``sigma`` = 1 puts 90% within about 3.6 x the median, with a long tail, the usual shape of
    response times to a notification.
    """

    median: float = 120.0
    sigma: float = 1.0
    cap: float = 4 * 3600.0

    def draw(self, rng: random.Random) -> float:
        return min(self.cap, rng.lognormvariate(math.log(self.median), self.sigma))


@dataclass(frozen=True)
class Persona:
    """How one simulated person behaves."""

    kind: Kind
    delay: Delay = Delay()

    @property
    def intent(self) -> Intent | None:
        """What they will answer, or None if they never do."""
        if self.kind in ("ok", "help", "wrong_number"):
            return self.kind
        return None


@dataclass(frozen=True)
class SeenMessage:
    """A message as the person's phone shows it."""

    channel: Channel
    text: str
    # Inline buttons (Telegram), row by row: (label, callback_data or None).
    buttons: tuple[tuple[str, str | None], ...]
    raw: JSON


@dataclass(frozen=True)
class Answer:
    """The person's reaction: press the button carrying ``callback_data``, or send ``text``."""

    callback_data: str | None = None
    text: str | None = None


Responder = Callable[[Intent, SeenMessage], Answer | None]

_WRONG_NUMBER = "Wrong number, I don't know you"


def default_responder(intent: Intent, message: SeenMessage) -> Answer | None:
    """Telegram: press the button whose data ends in the intent (``...ok``, ``...help``); a
    message without such a button asks for nothing. SMS: "1" for OK, "2" for help."""
    if intent == "wrong_number":
        return Answer(text=_WRONG_NUMBER)
    if message.channel == "telegram":
        for _, data in message.buttons:
            if data is not None and data.lower().endswith(intent):
                return Answer(callback_data=data)
        return None
    return Answer(text="1" if intent == "ok" else "2")


@dataclass
class Person:
    persona: Persona
    channel: Channel
    address: int | str  # Telegram chat id or E.164 number
    user: TelegramUser | None = None
    answers_left: int = 1
    busy: bool = False  # an answer is already on its way


@dataclass(frozen=True)
class Reaction:
    """One answer given, for the drill report."""

    person: Person
    intent: Intent
    delay: float  # simulated seconds after the message arrived
    status: int | None  # the webhook's HTTP status (None: queued for getUpdates; 0: unreachable)


# Realistic shares for a drill: most answer OK, some ask for help, a tenth stay silent.
DRILL_MIX: Mapping[Kind, float] = {
    "ok": 0.80,
    "help": 0.05,
    "silent": 0.10,
    "blocked": 0.02,
    "wrong_number": 0.01,
    "landline": 0.01,
    "invalid_number": 0.01,
}


@dataclass(order=True)
class _Due:
    at: float
    order: int
    action: Callable[[], Any] = field(compare=False)


class People:
    """A population of simulated people attached to running fakes."""

    def __init__(
        self,
        *,
        telegram: FakeTelegram | None = None,
        twilio: FakeTwilio | None = None,
        sms_webhook_url: str | None = None,
        sms_signature_url: str | None = None,
        responder: Responder = default_responder,
        time_scale: float = 1.0,
        manual: bool = False,
        seed: int = 0,
        answers_per_person: int = 1,
    ) -> None:
        self.telegram = telegram
        self.twilio = twilio
        self.sms_webhook_url = sms_webhook_url
        self.sms_signature_url = sms_signature_url
        self.responder = responder
        self.time_scale = time_scale
        self.manual = manual
        self.answers_per_person = answers_per_person
        self.rng = random.Random(seed)
        self.by_chat: dict[int, Person] = {}
        self.by_phone: dict[str, Person] = {}
        self.reactions: list[Reaction] = []
        self.now = 0.0  # simulated seconds (manual mode)
        self._due: list[_Due] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: dict[asyncio.TimerHandle, asyncio.AbstractEventLoop] = {}
        if telegram is not None:
            telegram.on_message.append(self._on_telegram)
        if twilio is not None:
            twilio.on_message.append(self._on_sms)

    def close(self) -> None:
        """Stop listening to the fakes and drop the answers not given yet."""
        if self.telegram is not None and self._on_telegram in self.telegram.on_message:
            self.telegram.on_message.remove(self._on_telegram)
        if self.twilio is not None and self._on_sms in self.twilio.on_message:
            self.twilio.on_message.remove(self._on_sms)
        with self._lock:
            pending: list[
                tuple[asyncio.TimerHandle | asyncio.Task[None], asyncio.AbstractEventLoop]
            ]
            pending = [*self._timers.items(), *((task, task.get_loop()) for task in self._tasks)]
            self._due.clear()
            self._timers.clear()
            self._tasks.clear()
        for item, loop in pending:
            if not loop.is_closed():
                loop.call_soon_threadsafe(item.cancel)

    # -- population --------------------------------------------------------------------------

    def add_telegram(
        self,
        persona: Persona,
        *,
        chat_id: int | None = None,
        first_name: str = "Resident",
        language_code: str = "he",
    ) -> Person:
        """A person with a Telegram chat (the bot blocked, if that is their persona).

        ``chat_id``: the chat the registry knows them by (a new one if None).
        """
        assert self.telegram is not None, "People has no FakeTelegram"
        user = self.telegram.new_user(first_name, language_code=language_code, user_id=chat_id)
        if persona.kind == "blocked":
            self.telegram.blocked.add(user.id)
        person = Person(persona, "telegram", user.id, user, self.answers_per_person)
        self.by_chat[user.id] = person
        return person

    def add_sms(self, persona: Persona, phone: str) -> Person:
        """A person reached by SMS at ``phone`` (E.164)."""
        assert self.twilio is not None, "People has no FakeTwilio"
        if persona.kind == "blocked":
            self.twilio.unsubscribed.add(phone)
        elif persona.kind == "landline":
            self.twilio.landlines.add(phone)
        elif persona.kind == "invalid_number":
            self.twilio.invalid_numbers.add(phone)
        person = Person(persona, "sms", phone, None, self.answers_per_person)
        self.by_phone[phone] = person
        return person

    def draw_persona(
        self, mix: Mapping[Kind, float] = DRILL_MIX, delay: Delay = Delay()
    ) -> Persona:
        """A persona drawn from ``mix`` (shares that sum to 1) with its seeded generator."""
        kinds = list(mix)
        kind = self.rng.choices(kinds, weights=[mix[k] for k in kinds])[0]
        return Persona(kind, delay)

    def reset(self) -> None:
        """Everyone may answer again (a new drill)."""
        with self._lock:
            for person in [*self.by_chat.values(), *self.by_phone.values()]:
                person.answers_left = self.answers_per_person
                person.busy = False

    # -- seeing messages (called on the fake's loop) -----------------------------------------

    def _on_telegram(self, message: JSON) -> None:
        person = self.by_chat.get(message["chat"]["id"])
        if person is None:
            return
        keyboard = message.get("reply_markup", {}).get("inline_keyboard", [])
        buttons = tuple((b["text"], b.get("callback_data")) for row in keyboard for b in row)
        self._consider(person, SeenMessage("telegram", message.get("text", ""), buttons, message))

    def _on_sms(self, message: JSON) -> None:
        person = self.by_phone.get(message["to"])
        if person is not None:
            self._consider(person, SeenMessage("sms", message["body"], (), message))

    def _consider(self, person: Person, message: SeenMessage) -> None:
        intent = person.persona.intent
        if intent is None:
            return
        with self._lock:
            if person.busy or person.answers_left <= 0:
                return
            answer = self.responder(intent, message)
            if answer is None:
                return
            person.busy = True
            delay = person.persona.delay.draw(self.rng)

        def act() -> Any:
            return self._answer(person, intent, answer, message, delay)

        if self.manual:
            with self._lock:
                heapq.heappush(self._due, _Due(self.now + delay, next(self._order), act))
            return
        loop = asyncio.get_running_loop()
        handles: list[asyncio.TimerHandle] = []
        handles.append(loop.call_later(delay / self.time_scale, self._spawn, act, handles))
        with self._lock:
            self._timers[handles[0]] = loop

    def _spawn(self, act: Callable[[], Any], handles: list[asyncio.TimerHandle]) -> None:
        task = asyncio.get_running_loop().create_task(act())
        with self._lock:
            self._timers.pop(handles[0], None)
            self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, person: Person, intent: Intent, answer: Answer, message: SeenMessage, delay: float
    ) -> None:
        status: int | None
        if person.channel == "telegram":
            assert self.telegram is not None and person.user is not None
            if answer.callback_data is not None:
                update = self.telegram.callback(
                    person.user, message.raw, answer.callback_data, check_button=False
                )
            else:
                update = self.telegram.text(person.user, answer.text or "")
            delivery = self.telegram.deliver_async(update)
        else:
            assert self.twilio is not None and self.sms_webhook_url is not None
            delivery = self.twilio.send_inbound_async(
                self.sms_webhook_url,
                from_=str(person.address),
                body=answer.text or "",
                signature_url=self.sms_signature_url,
            )
        try:
            status = await delivery
        except (ClientError, OSError, TimeoutError):
            status = 0  # the application was unreachable: the answer is lost, as it would be
        with self._lock:
            person.busy = False
            person.answers_left -= 1
            self.reactions.append(Reaction(person, intent, delay, status))

    # -- manual time -------------------------------------------------------------------------

    def advance(self, seconds: float) -> int:
        """Move simulated time forward; everyone due answers now. Returns how many answered.

        Manual mode only; call from outside the fakes' loops (it waits for the deliveries).
        """
        assert self.manual, "advance() is for manual mode"
        with self._lock:
            self.now += seconds
            ready = []
            while self._due and self._due[0].at <= self.now:
                ready.append(heapq.heappop(self._due))
        fake = self.telegram or self.twilio
        assert fake is not None
        for due in ready:
            fake.run(due.action())
        return len(ready)

    async def advance_async(self, seconds: float, *, together: int = 1) -> int:
        """:meth:`advance` for async callers (deliveries run on the fakes' loop).

        ``together``: how many answers are on their way at once (people do not wait for each
        other); 1 delivers them one after the other, in the order they are due."""
        assert self.manual, "advance_async() is for manual mode"
        with self._lock:
            self.now += seconds
            ready = []
            while self._due and self._due[0].at <= self.now:
                ready.append(heapq.heappop(self._due))
        fake = self.telegram or self.twilio
        assert fake is not None
        for start in range(0, len(ready), max(1, together)):
            await asyncio.gather(
                *(fake.run_async(due.action()) for due in ready[start : start + max(1, together)])
            )
        return len(ready)

    @property
    def waiting(self) -> int:
        """Answers scheduled and not given yet."""
        with self._lock:
            return len(self._due) + len(self._timers) + len(self._tasks)
