"""``hosen worker`` as an operator runs it: a process, its output, against the Twilio fake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from dispatch.models import OutboxMessage, OutboxStatus
from dispatch.outbox import enqueue
from fakes.settings import settings_for_fakes
from fakes.twilio import FakeTwilio
from registry.models import Channel

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.db


def test_the_worker_says_what_happened_not_every_request(
    sessions: sessionmaker[Session], settings: Settings, fake_twilio: FakeTwilio
) -> None:
    """twilio's client logs ten lines a request at INFO; the worker's own INFO lines stay."""
    wired = settings_for_fakes(settings, twilio=fake_twilio)
    with sessions() as session:
        messages = [
            enqueue(
                session,
                channel=Channel.SMS,
                address=f"+97250555{n:04d}",
                text="drill: are you OK? 1 OK 2 help",
                person_id=None,
            )
            for n in range(3)
        ]
        session.commit()
        ids = [message.id for message in messages]
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOSEN_")}
    env.update(
        HOSEN_DATABASE_URL=wired.database_url,
        HOSEN_TWILIO_ACCOUNT_SID=wired.twilio_account_sid or "",
        HOSEN_TWILIO_AUTH_TOKEN=wired.twilio_auth_token or "",
        HOSEN_TWILIO_FROM=wired.twilio_from or "",
        HOSEN_TWILIO_API_URL=str(wired.twilio_api_url),
    )

    done = subprocess.run(
        [sys.executable, "-m", "hosen", "worker", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "3 messages handled" in done.stdout
    assert all(fake_twilio.sent_to(f"+97250555{n:04d}") for n in range(3))
    assert "Twilio API" not in done.stderr and "Headers" not in done.stderr, done.stderr
    with sessions() as session:
        assert {session.get_one(OutboxMessage, i).status for i in ids} == {OutboxStatus.SENT}
