"""The demo's drill clock: drill time waits for the service.

The demo plays a two-hour ladder in a minute or two, so one real second is minutes of drill
time. When the machine is busy, the service (the outbox worker, the inbox processor, the
webhooks) falls behind in real seconds: if drill time went on regardless, the ladder would climb
to visits and the unreached list before the residents' answers had been read ("0.0% answered").

So the drill runs on a :class:`dispatch.clock.DrillClock` that the demo pauses while the service
is behind (a virtual time barrier) and resumes once it has caught up: the messages due, the
answers received (in the inbox, or in the webhooks' spool while the database was slow) and the
calls due up to :data:`LAG` ago are all dealt with (placed: a call's request is an outbox row).
A call under way does not hold the clock: it takes real seconds by nature (it rings, the callee
listens and presses), and one whose end never comes would hold the drill for good. The simulated
people answer on the same clock (``fakes.people`` in manual mode, moved by the demo), and the
service stamps what it records with it. On an idle machine the service keeps within the lag and
the clock never stops; on a loaded one the drill takes longer and tells the same story.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.clock import DrillClock
from dispatch.models import InboundMessage, OutboxMessage, OutboxStatus

# Work older than this (in real seconds, on the drill clock) means the service is behind. Half a
# second is two and a half minutes of drill time at 300 times the real pace: far inside the
# ladder's steps (15 min, 45 min, 2 h), and more than an idle machine needs.
LAG = timedelta(seconds=0.5)
# A pause that lasts this long (real seconds) is let go for a moment: something that never
# drains must not stop the drill for good.
MAX_PAUSE = 20.0


def behind(session: Session, *, now: datetime, lag: timedelta = LAG) -> str | None:
    """What the service has not done yet that was due ``lag`` before ``now`` (a message or a call
    to send, an answer to read); None when it has caught up."""
    cutoff = now - lag
    waiting = {
        "outbox": select(OutboxMessage.id).where(
            OutboxMessage.status.in_((OutboxStatus.QUEUED, OutboxStatus.SENDING)),
            OutboxMessage.due_at <= cutoff,
        ),
        # A row with no sender is a provider's receipt, not the processor's.
        "inbox": select(InboundMessage.id).where(
            InboundMessage.processed_at.is_(None),
            InboundMessage.parked_at.is_(None),
            InboundMessage.sender.is_not(None),
            InboundMessage.received_at <= cutoff,
        ),
    }
    for name, query in waiting.items():
        if session.scalar(query.limit(1)) is not None:
            return name
    return None


@dataclass
class DrillPace:
    """Pauses and resumes the drill clock as the service falls behind and catches up."""

    clock: DrillClock
    # Answers kept in the webhooks' spool while the database was too slow to take them.
    spooled: Callable[[], bool] | None = None
    lag: timedelta = LAG
    max_pause: float = MAX_PAUSE
    pauses: int = 0  # how many times the clock stopped
    let_go: int = 0  # pauses that lasted max_pause and were let go
    why: dict[str, int] = field(default_factory=dict)  # what was behind, per check
    _paused_since: float | None = None

    def check(self, session: Session, *, real: float) -> None:
        """Look at the service (``real``: a monotonic reading, seconds) and set the clock."""
        waiting = behind(session, now=self.clock.now(), lag=self.lag)
        if waiting is None and self.spooled is not None and self.spooled():
            waiting = "spool"
        if waiting is None:
            self._go_on()
            return
        self.why[waiting] = self.why.get(waiting, 0) + 1
        if self._paused_since is None:
            self._paused_since = real
            self.pauses += 1
            self.clock.pause()
        elif real - self._paused_since > self.max_pause:
            self.let_go += 1
            self._go_on()

    def _go_on(self) -> None:
        self._paused_since = None
        self.clock.resume()
