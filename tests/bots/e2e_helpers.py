"""Set-ups shared by the end-to-end tests of the bots: Miriam (a Hebrew-speaking resident) with one
buddy and some officers, a check-in started (tests/bots/test_help_e2e.py's ``_setup``), and a
backup buddy the visit moves on to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from config.languages import Language
from config.settings import Settings
from fakes.telegram import FakeTelegram
from fakes.twilio import FakeTwilio
from registry.db import unit_of_work
from registry.models import AssignmentStatus, BuddyAssignment, Channel, Person
from tests.bots.test_e2e import Service, _free_port, run, service_settings, start_service
from tests.bots.test_help_e2e import _setup

MIRIAM = "מרים כהן"


def on_telegram(name: str, language: Language, chat_id: int) -> dict[str, Any]:
    """A person's fields for someone reached on Telegram."""
    return dict(name=name, language=language, channel=Channel.TELEGRAM, telegram_chat_id=chat_id)


def miriam_with_buddy(
    service: Service,
    *,
    reach: dict[str, Any],
    buddy: dict[str, Any],
    officer_chats: dict[str, int] | None = None,
) -> dict[str, int]:
    """Miriam Cohen (Hebrew, reached as ``reach`` says) with ``buddy``, a check-in started."""
    return _setup(
        service,
        residents=[dict(name=MIRIAM, language=Language.HE, **reach)],
        buddy=buddy,
        officer_chats=officer_chats or {},
    )


def add_backup_buddy(service: Service, resident_id: int, first_buddy: str) -> None:
    """Lea Backup (SMS), confirmed as the resident's second buddy, like ``first_buddy``."""
    with unit_of_work(service.ctx.sessions) as session:
        first = session.scalars(select(Person).where(Person.name == first_buddy)).one()
        lea = Person(
            authority_id=first.authority_id,
            source=first.source,
            name="Lea Backup",
            phone="+972525550499",
            phone_kind=first.phone_kind,
            channel=Channel.SMS,
            is_volunteer=True,
            birth_year=1980,
        )
        session.add(lea)
        session.flush()
        session.add(
            BuddyAssignment(
                resident_id=resident_id,
                volunteer_id=lea.id,
                rank=2,
                status=AssignmentStatus.CONFIRMED,
            )
        )


def serve(
    settings: Settings,
    scenario: Callable[[Service], Awaitable[None]],
    *,
    telegram: FakeTelegram | None,
    twilio: FakeTwilio | None,
) -> None:
    """Runs ``scenario`` against ``hosen serve`` started on a free port with clients against the
    given loopback fakes, and stops the service however the scenario ends."""
    port = _free_port()
    config = service_settings(settings, telegram=telegram, twilio=twilio, port=port)

    async def main() -> None:
        service = await start_service(config, port)
        try:
            await scenario(service)
        finally:
            await service.stop()

    run(main)
