"""Fixtures for the bots' tests: an in-memory registry for engine unit tests, chats for DB tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

import hosen.schema  # noqa: F401  (every model on Base.metadata)
from bots.dialog import Dialog
from config.profile import Profile
from registry.db import Base, make_sessionmaker
from registry.models import Channel
from registry.profile_sync import Directory, sync_profile
from tests.bots.chat import Chat, Clock


@pytest.fixture
def memory_sessions(profile: Profile) -> Iterator[sessionmaker[Session]]:
    """A throw-away in-memory SQLite with the whole schema: engine tests run in milliseconds."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(engine)
    factory = make_sessionmaker(engine)
    with factory() as session:
        sync_profile(session, profile)
        session.commit()
    yield factory
    engine.dispose()


@pytest.fixture
def dialog(profile: Profile) -> Dialog:
    return Dialog(profile=profile, region="IL")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sms_chat(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> Chat:
    return Chat(sessions, dialog, Channel.SMS, "+972525551234", clock)


@pytest.fixture
def tg_chat(
    sessions: sessionmaker[Session], directory: Directory, dialog: Dialog, clock: Clock
) -> Chat:
    return Chat(sessions, dialog, Channel.TELEGRAM, "777001", clock)
