"""The bots' own table: where each conversation stands, so a restart loses nothing.

A conversation is keyed by channel and address (a Telegram chat id or an E.164 phone). The draft
holds the answers given so far as JSON; ``version`` guards against two deliveries of messages from
the same sender racing each other (the second one is retried on the fresh row).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from config.languages import Language
from registry.db import Base, JSONType, UTCDateTime, utcnow
from registry.models import Channel, enum_type


class Conversation(Base):
    __tablename__ = "conversation"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[Channel] = mapped_column(enum_type(Channel))
    address: Mapped[str] = mapped_column(String(40))
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("person.id", ondelete="SET NULL"), index=True
    )
    step: Mapped[str] = mapped_column(String(40), default="")
    draft: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    language: Mapped[Language | None] = mapped_column(enum_type(Language))
    # Per-sender token bucket (see bots.flood): what is left and when it was last topped up.
    allowance: Mapped[float] = mapped_column(Float, default=0.0)
    allowance_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    slowed_down: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
