"""The demo's officers on duty: two simulated municipal officers who take the drill's help alerts.

Dana Levi reads Hebrew and works in Telegram (a verified chat); Samir Haddad reads Arabic and
works by SMS, with a PIN. Both are registered as officers of the drill's authority (the registry's
own ``add_staff``, ``set_pin`` and ``verify_telegram``) and as simulated people of the loopback
fakes, so every help alert is really pushed to one of them and really taken: Dana with the push's
button, Samir with its number and then his PIN when the SMS gate asks for it, each after a
realistic delay. The alert climb (``alert_climb`` of the profile) is compressed like the ladder,
so an alert the first officer leaves goes on to the next one, as it would in a real drill.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.i18n import t
from config.languages import ALL_LANGUAGES, Language
from dispatch.help import ALERT_BUTTON
from dispatch.models import HELP_KINDS, Alert, AlertState
from fakes.people import Answer, Delay, Intent, People, Persona, SeenMessage
from registry.models import Authority, Person
from registry.phones import Phone, normalise_phone
from registry.staff import StaffRole, add_staff, set_pin, verify_telegram

# An officer on duty looks at a push within a minute or two, sometimes much later.
OFFICER_DELAY = Delay(median=90.0, sigma=0.7, cap=20 * 60.0)
PIN = "582039"  # a demo's PIN, as an administrator would set with `hosen staff pin`
CHAT_BASE = 7_100_000_000  # above every synthetic chat id


@dataclass(frozen=True)
class DemoOfficer:
    name: str
    language: Language
    telegram: bool


OFFICERS = (
    DemoOfficer("Dana Levi", Language.HE, telegram=True),
    DemoOfficer("Samir Haddad", Language.AR, telegram=False),
)
Responder = Callable[[Intent, SeenMessage], Answer | None]


@dataclass
class OfficersOnDuty:
    """The demo's officers, and how they answer what is pushed to them."""

    addresses: dict[int | str, DemoOfficer] = field(default_factory=dict)

    def register(
        self, session: Session, *, authority: Authority, people: People, speed: float
    ) -> list[str]:
        """Register the officers (staff rows and simulated phones); lines for the terminal."""
        authority.alert_climb_after = max(1, round(authority.alert_climb_after / speed))
        lines = []
        for n, officer in enumerate(OFFICERS, 1):
            phone = _free_phone(session, n)
            member = add_staff(
                session,
                name=officer.name,
                phone=phone,
                authority=authority,
                role=StaffRole.OFFICER,
                language=officer.language,
                actor="demo",
            )
            persona = Persona("ok", OFFICER_DELAY)  # answers (what, the responder below says)
            if officer.telegram:
                chat = CHAT_BASE + n
                verify_telegram(session, phone=phone, chat_id=chat)
                people.add_telegram(
                    persona,
                    chat_id=chat,
                    first_name=officer.name.split()[0],
                    language_code=officer.language.value,
                )
                self.addresses[chat] = officer
                how = "Telegram"
            else:
                set_pin(session, member=member, pin=PIN, actor="demo")
                people.add_sms(persona, phone.e164)
                self.addresses[phone.e164] = officer
                how = "SMS with a PIN"
            lines.append(f"{officer.name} ({how}, reads {officer.language.value})")
        return lines

    def responder(self, others: Responder) -> Responder:
        """Answer as an officer at an officer's address; everyone else as ``others`` does."""

        def respond(intent: Intent, message: SeenMessage) -> Answer | None:
            officer = self.addresses.get(_address(message))
            if officer is None:
                return others(intent, message)
            return _take(officer, message)

        return respond


def untaken_help(session: Session, *, campaign_id: int) -> int:
    """Help alerts of the drill nobody has taken yet (the drill is not over while there are)."""
    return len(
        session.scalars(
            select(Alert.id).where(
                Alert.campaign_id == campaign_id,
                Alert.kind.in_(HELP_KINDS),
                Alert.state == AlertState.OPEN,
            )
        ).all()
    )


def _take(officer: DemoOfficer, message: SeenMessage) -> Answer | None:
    """Take every help alert pushed (its button, or its number by SMS); give the PIN when asked."""
    if message.channel == "telegram":
        for _, data in message.buttons:
            if data and data.startswith(f"{ALERT_BUTTON}:") and data.endswith(":take"):
                return Answer(callback_data=data)
        return None
    if message.text.strip() in {t(language, "staff.pin.ask") for language in ALL_LANGUAGES}:
        return Answer(text=PIN)
    take = f"1 {t(officer.language, 'dispatch.alert.take')}"
    if take in message.text.splitlines():
        return Answer(text="1")
    return None


def _address(message: SeenMessage) -> int | str:
    if message.channel == "telegram":
        chat_id: int = message.raw["chat"]["id"]
        return chat_id
    phone: str = message.raw["to"]
    return phone


def _free_phone(session: Session, n: int) -> Phone:
    """A mobile number no resident or volunteer of the synthetic town has."""
    for tail in range(n * 1000, n * 1000 + 1000):
        candidate = f"+972585{tail:06d}"
        if session.scalar(select(Person.id).where(Person.phone == candidate)) is None:
            return normalise_phone(candidate, region="IL")
    raise RuntimeError("no free demo phone number")  # pragma: no cover - 1,000 tries
