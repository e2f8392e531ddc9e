"""The assignment engine's own tables: each run, and each change it made.

A change row is the dispatcher's to-do list: every new or re-ranked assignment is a volunteer to
ask "will you take this on?" (``notified_at`` is set once its offer is made); a released one is a
volunteer to tell. Each offer and its answer is an :class:`AssignmentOffer`. Identifiers only, never
personal data.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from registry.db import Base, JSONType, UTCDateTime, utcnow


class AssignmentRun(Base):
    __tablename__ = "assignment_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authority.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(80))
    trigger: Mapped[str] = mapped_column(String(24))  # "run", "decline"
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class AssignmentChange(Base):
    __tablename__ = "assignment_change"
    __table_args__ = (Index("ix_assignment_change_pending", "notified_at", "volunteer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("assignment_run.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(12))  # "buddy", "role"
    action: Mapped[str] = mapped_column(String(12))  # "new", "rank", "released"
    assignment_id: Mapped[int] = mapped_column(Integer)  # buddy_assignment.id or role_assignment.id
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    reason: Mapped[str | None] = mapped_column(String(40))
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OfferState(StrEnum):
    """Where one offer of one seat stands with its volunteer.

    ``queued``: not sent yet (a volunteer is asked one seat at a time); ``offered`` then
    ``reminded``: sent, no answer yet; ``confirmed`` / ``declined``: their answer; ``expired``:
    no answer after the reminder (the seat was planned again); ``withdrawn``: the plan took the
    seat away before they answered (or asked again after a change of rank).
    """

    QUEUED = "queued"
    OFFERED = "offered"
    REMINDED = "reminded"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


OPEN_OFFER = (OfferState.OFFERED.value, OfferState.REMINDED.value)
PENDING_OFFER = (OfferState.QUEUED.value, *OPEN_OFFER)


class AssignmentOffer(Base):
    """One seat (a role or a buddy pair) offered to its volunteer, and their answer.

    ``due_at`` is the offer's timer: the reminder while ``offered``, the expiry while
    ``reminded`` (a row with a due time, swept on the injected clock). Identifiers only.
    """

    __tablename__ = "assignment_offer"
    __table_args__ = (
        Index("ix_assignment_offer_due", "state", "due_at"),
        Index("ix_assignment_offer_volunteer", "volunteer_id", "state"),
        Index("ix_assignment_offer_seat", "kind", "assignment_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))  # "buddy", "role"
    assignment_id: Mapped[int] = mapped_column(Integer)  # buddy_assignment.id or role_assignment.id
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(12), default=OfferState.QUEUED.value)
    channel: Mapped[str | None] = mapped_column(String(12))  # where it was sent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
