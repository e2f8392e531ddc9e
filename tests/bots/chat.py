"""A person chatting with the bot in tests: each message goes through handle_inbound in its own
unit of work, exactly as the webhooks do, and the replies are read back from the outbox."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bots.dialog import Dialog, Inbound
from bots.inbound import Delivery, Outcome, handle_inbound
from bots.models import Conversation
from dispatch.models import OutboxMessage
from registry.db import unit_of_work
from registry.models import Channel

_keys = itertools.count(1)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 22, 9, 0, tzinfo=UTC))

    def tick(self, seconds: float = 5.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class Chat:
    sessions: sessionmaker[Session]
    dialog: Dialog
    channel: Channel
    address: str
    clock: Clock = field(default_factory=Clock)
    last: Outcome | None = None

    def send(
        self,
        text: str | None = None,
        *,
        button: str | None = None,
        contact: str | None = None,
        own_contact: bool = True,
        location: tuple[float, float] | None = None,
        unsupported: bool = False,
        key: str | None = None,
    ) -> list[str]:
        """Send one message; return the texts of the replies it produced."""
        inbound = Inbound(
            channel=self.channel,
            address=self.address,
            text=text,
            button=button,
            contact_phone=contact,
            contact_is_sender=own_contact,
            location=location,
            unsupported=unsupported,
        )
        delivery = Delivery(
            provider_key=key or f"test:{next(_keys)}", inbound=inbound, payload={"text": text}
        )
        now = self.clock.tick()
        with unit_of_work(self.sessions) as session:
            before = self._last_id(session)
            self.last = handle_inbound(session, delivery=delivery, dialog=self.dialog, now=now)
        return self.replies_since(before)

    def replies_since(self, after: int) -> list[str]:
        with self.sessions() as session:
            rows = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.address == self.address, OutboxMessage.id > after)
                .order_by(OutboxMessage.id)
            ).all()
            return [row.text for row in rows]

    def last_buttons(self) -> list[list[dict[str, str]]] | None:
        with self.sessions() as session:
            row = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.address == self.address)
                .order_by(OutboxMessage.id.desc())
                .limit(1)
            ).first()
            return row.buttons if row else None

    def conversation(self) -> Conversation | None:
        with self.sessions() as session:
            return session.scalar(
                select(Conversation).where(
                    Conversation.channel == self.channel, Conversation.address == self.address
                )
            )

    def _last_id(self, session: Session) -> int:
        return session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())) or 0


def finish_registration(chat: Chat) -> list[str]:
    """Answer every remaining question as a resident who lives alone; confirm."""
    from bots.dialog import Step

    answers = {
        Step.PHONE: "phone:skip",
        Step.AUTHORITY: "authority:kiryat-tamar",
        Step.NEEDS: None,
        Step.CONTACT_NAME: "ec_name:skip",
        Step.CONSENT: "consent:yes",
        Step.HEALTH_CONSENT: "health:yes",
    }
    for _ in range(30):
        conversation = chat.conversation()
        assert conversation is not None
        step = conversation.step
        if step == Step.SUMMARY:
            return chat.send(button="summary:confirm")
        if step == Step.ZONE:
            chat.send("1")
        elif step == Step.BIRTH_YEAR:
            chat.send("1960")
        elif step == Step.NEEDS:
            chat.send(button="needs:lives_alone")
            chat.send(button="needs:done")
        elif step in answers:
            chat.send(button=answers[Step(step)])
        else:
            raise AssertionError(f"unexpected step {step}")
    raise AssertionError("the registration never reached its summary")
