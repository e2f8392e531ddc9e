"""What every command and server needs, built once per process: settings, profile, database."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from config.profile import Profile, load_profile
from config.settings import Settings, load_settings
from dispatch.retention import Retention
from registry.db import make_engine, make_sessionmaker
from registry.digests import use_key
from registry.models import Authority


class CommandError(Exception):
    """A command cannot go on; ``str()`` is the one line the user sees."""


@dataclass
class Context:
    settings: Settings

    @cached_property
    def profile(self) -> Profile:
        return load_profile(self.settings.profile)

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @property
    def retention(self) -> Retention:
        """What the scheduler's sweep forgets, and after how long (HOSEN_RETENTION_DAYS)."""
        from bots.retention import forget_abandoned_conversations

        return Retention(days=self.settings.retention_days, steps=(forget_abandoned_conversations,))

    @property
    def actor(self) -> str:
        """Who the audit log says did what a command did: the operating-system user."""
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # no login name, no passwd entry (some containers)
            user = "unknown"
        return f"cli:{user}"

    def close(self) -> None:
        """Release the database connections, if any were opened."""
        if "engine" in self.__dict__:
            self.engine.dispose()

    def authority(self, session: Session, code: str | None) -> Authority:
        """The authority named by ``code``, or the profile's first one."""
        wanted = code or self.profile.authorities[0].code
        authority = session.scalar(select(Authority).where(Authority.code == wanted))
        if authority is None:
            known = ", ".join(a.code for a in self.profile.authorities)
            raise CommandError(
                f"unknown authority {wanted!r} (known: {known}); run `hosen db upgrade` first"
            )
        return authority


def build_context(settings: Settings | None = None) -> Context:
    settings = settings or load_settings()
    if settings.hash_key is not None:
        use_key(settings.hash_key.get_secret_value())
    return Context(settings=settings)
