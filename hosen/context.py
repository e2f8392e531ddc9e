"""What every command and server needs, built once per process: settings, profile, database."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from config.profile import Profile, load_profile
from config.settings import DEFAULT_DATABASE_URL, Settings, load_settings
from dispatch.retention import Retention
from registry.db import make_engine, make_sessionmaker
from registry.digests import use_key
from registry.models import Authority


class CommandError(Exception):
    """A command cannot go on; ``str()`` is the one line the user sees."""


@dataclass
class Context:
    settings: Settings
    # Only `hosen db upgrade` may create a new SQLite file; every other command refuses a
    # database that is not there instead of working on an empty one.
    creates_database: bool = False

    @cached_property
    def profile(self) -> Profile:
        return load_profile(self.settings.profile)

    @cached_property
    def engine(self) -> Engine:
        check_sqlite_location(self.settings.database_url, create=self.creates_database)
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


def build_context(settings: Settings | None = None, *, creates_database: bool = False) -> Context:
    settings = settings or load_settings()
    if settings.hash_key is not None:
        use_key(settings.hash_key.get_secret_value())
    return Context(settings=settings, creates_database=creates_database)


def check_sqlite_location(url: str, *, create: bool) -> None:
    """Refuse a SQLite file in a directory that does not exist (a mistyped path), and a file
    that does not exist unless ``create``. The default URL's own ``var/`` is the exception:
    ``hosen db upgrade`` creates it, so a fresh checkout works with no setting at all."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if not path.parent.is_dir():
        if create and url == DEFAULT_DATABASE_URL:
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            raise CommandError(
                f"HOSEN_DATABASE_URL: the directory {str(path.parent.absolute())!r} does not "
                "exist (create it, or correct the path)"
            )
    if not create and not path.exists():
        raise CommandError(
            f"HOSEN_DATABASE_URL: no database at {str(path.absolute())!r}; "
            "run `hosen db upgrade` to create it"
        )


# What each database says when a table or a column is missing: SQLite's messages, PostgreSQL's
# SQLSTATE codes (undefined_table, undefined_column).
_NO_SCHEMA = ("no such table", "42P01")
_OLD_SCHEMA = ("no such column", "42703")


def database_problem(exc: DBAPIError) -> str | None:
    """The one line that tells an operator what to do about ``exc``; None for an error that is
    a defect rather than the database's state."""
    orig = exc.orig
    text = str(orig).strip().splitlines()[0] if orig is not None and str(orig).strip() else ""
    code = getattr(orig, "sqlstate", None) or ""
    if any(sign == code or sign in text for sign in _NO_SCHEMA):
        return f"the database has no Hosen schema yet ({text}); run `hosen db upgrade`"
    if any(sign == code or sign in text for sign in _OLD_SCHEMA):
        return f"the database schema is older than this Hosen ({text}); run `hosen db upgrade`"
    if isinstance(exc, OperationalError):
        return f"{text or 'unreachable'} (check HOSEN_DATABASE_URL)"
    return None
