"""The assignment engine's own tables: each run, and each change it made.

A change row is the dispatcher's to-do list: every new or re-ranked assignment is a volunteer to
ask "will you take this on?" (``notified_at`` is set once asked); a released one is a volunteer to
tell. Identifiers only, never personal data.
"""

from __future__ import annotations

from datetime import datetime
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
