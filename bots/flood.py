"""Slowing down one sender who floods the bot, without slowing anyone else.

A token bucket per conversation, kept in the conversation row (so it holds across processes and
restarts): ``burst`` messages at once, then ``per_second`` on average. A message over the limit is
stored in the inbox but not processed (its ``error`` says so), and the sender gets at most one
"slow down" reply until the bucket has half refilled. Dropping rather than delaying keeps a
flood from building a backlog that would answer stale questions minutes later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bots.models import Conversation


@dataclass(frozen=True)
class FloodPolicy:
    burst: float = 12.0  # a person tapping through a multi-select stays well inside this
    per_second: float = 1.0


DEFAULT_POLICY = FloodPolicy()


@dataclass(frozen=True)
class Admission:
    admitted: bool
    warn: bool  # over the limit for the first time in this burst: say "slow down" once


def admit(conversation: Conversation, *, now: datetime, policy: FloodPolicy) -> Admission:
    """Take one token for a message arriving at ``now``."""
    if conversation.allowance_at is None:
        allowance = policy.burst
    else:
        elapsed = max(0.0, (now - conversation.allowance_at).total_seconds())
        allowance = min(policy.burst, conversation.allowance + elapsed * policy.per_second)
    conversation.allowance_at = now
    if allowance >= 1.0:
        if allowance >= policy.burst / 2:
            conversation.slowed_down = False
        conversation.allowance = allowance - 1.0
        return Admission(admitted=True, warn=False)
    conversation.allowance = allowance
    warn = not conversation.slowed_down
    conversation.slowed_down = True
    return Admission(admitted=False, warn=warn)
