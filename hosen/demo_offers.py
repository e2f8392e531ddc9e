"""The demo's offer round: before the drill, every volunteer is offered their role or buddies.

The scheduler's sweep sends the offers through the real service and the loopback fakes; the
simulated volunteers answer like people do: most accept, some decline (their seat is planned again
and someone else is asked), some never answer (a volunteer whose persona is silent). Then "a day
passes" twice: the unanswered offers' timers are moved back in the database (the worker and the
inbox keep their own clocks, as in the end-to-end tests), so the sweep reminds them, then plans
their seats again. The round ends with buddy coverage per zone, confirmed against offered.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TextIO

from sqlalchemy import select, update

from config.i18n import t
from config.languages import Language
from dispatch.models import OutboxMessage, OutboxStatus
from dispatch.offers import (
    ACCEPT,
    ACCEPT_NUMBER,
    DECLINE,
    DECLINE_NUMBER,
    answers,
    coverage_by_zone,
    sweep_offers,
)
from fakes.people import Answer, SeenMessage
from hosen.context import Context
from registry.assignment.models import OPEN_OFFER, AssignmentOffer
from registry.db import unit_of_work, utcnow

DECLINE_SHARE = 0.15  # of the volunteers who answer, this many cannot take what they are offered
SETTLE_SECONDS = 15.0  # real seconds at most to wait for answers after each wave of offers


def offer_answer(address: int | str, message: SeenMessage, *, seed: int) -> Answer | None:
    """A simulated volunteer's answer to an offer (None: the message is not an offer)."""
    declines = random.Random(f"{seed}:{address}").random() < DECLINE_SHARE
    if message.channel == "telegram":
        wanted = DECLINE if declines else ACCEPT
        for _, data in message.buttons:
            if data and data.startswith("o:") and data.endswith(f":{wanted}"):
                return Answer(callback_data=data)
        return None
    lines = message.text.splitlines()
    if any(line.startswith(f"{ACCEPT_NUMBER} ") for line in lines) and any(
        line.startswith(f"{DECLINE_NUMBER} ") for line in lines
    ):
        return Answer(text=DECLINE_NUMBER if declines else ACCEPT_NUMBER)
    return None


async def run_offer_round(
    ctx: Context, out: TextIO, *, authority_code: str, quiet_seconds: float
) -> None:
    """Offer, wait for answers, remind, re-plan the silent ones' seats; print the coverage.

    A wave is over when nothing has changed for ``quiet_seconds`` (real time)."""
    out.write("Offers: each volunteer is asked to take their role or buddies.\n")
    await _sweep_and_settle(ctx, quiet_seconds)
    for _ in range(2):  # a day passes: reminded; another: planned again and someone else asked
        with unit_of_work(ctx.sessions) as session:
            session.execute(
                update(AssignmentOffer)
                .where(AssignmentOffer.state.in_(OPEN_OFFER))
                .values(due_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        await _sweep_and_settle(ctx, quiet_seconds)
    with unit_of_work(ctx.sessions) as session:
        authority = ctx.authority(session, authority_code)
        zones = coverage_by_zone(session, authority_id=authority.id)
        counts = answers(session)
    en = Language.EN
    out.write(
        "  "
        + t(
            en,
            "assign.coverage.answers",
            confirmed=counts.get("confirmed", 0),
            declined=counts.get("declined", 0),
            expired=counts.get("expired", 0),
        )
        + "\n"
    )
    out.write(f"  {t(en, 'assign.coverage.head')}\n")
    for zone in zones:
        row = t(en, "assign.coverage.row", zone=zone.zone, confirmed=zone.confirmed,
                offered=zone.offered, none=zone.none)  # fmt: skip
        out.write(f"    {row}\n")
    out.write("\n")


async def _sweep_and_settle(ctx: Context, quiet_seconds: float) -> None:
    """Sweep until the answers stop changing anything (or :data:`SETTLE_SECONDS` pass)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    quiet_since = time.monotonic()
    last: tuple[int, ...] = ()
    while time.monotonic() < deadline:
        with unit_of_work(ctx.sessions) as session:
            while sweep_offers(session, profile=ctx.profile, now=utcnow()).total():
                pass
            state = tuple(
                session.scalars(
                    select(AssignmentOffer.id).where(AssignmentOffer.state.in_(OPEN_OFFER))
                )
            )
            # Quiet counts only once the offers are out: on a busy machine the worker may
            # still be sending them, and silence then says nothing about the volunteers.
            sending = session.scalar(
                select(OutboxMessage.id)
                .where(
                    OutboxMessage.status.in_((OutboxStatus.QUEUED, OutboxStatus.SENDING)),
                    OutboxMessage.due_at <= utcnow(),
                )
                .limit(1)
            )
        if state != last or sending is not None:
            last, quiet_since = state, time.monotonic()
        elif time.monotonic() - quiet_since > quiet_seconds:
            return
        await asyncio.sleep(0.25)
