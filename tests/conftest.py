"""Fixtures shared by the whole suite.

Database tests run on SQLite and on PostgreSQL (``--db sqlite|postgresql|all``, default all).
Each PostgreSQL test session gets a scratch database of its own on the server named by
``HOSEN_TEST_POSTGRES_URL`` (default: the local server's ``test`` database as ``postgres``),
so several suites can run side by side. The schema is built by the Alembic migrations,
exactly as a real deployment gets it.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import hosen.schema  # noqa: F401  (every table on Base.metadata, for _empty_all_tables)
from config.profile import DEFAULT_PROFILE_PATH, Profile, load_profile
from config.settings import Settings
from hosen import migrations
from registry.db import Base, make_engine, make_sessionmaker
from registry.models import Authority
from registry.profile_sync import Directory, sync_profile

POSTGRES_URL = os.environ.get(
    "HOSEN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=("sqlite", "postgresql", "all"),
        default=os.environ.get("HOSEN_TEST_DB", "all"),
        help="which databases the database tests run on",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_kind" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--db")
        kinds = ["sqlite", "postgresql"] if choice == "all" else [choice]
        metafunc.parametrize("db_kind", kinds, scope="session")


# Modules whose module-scoped fixture is costly (a wheel built, prompts synthesised, a town of
# 6,000 generated): in parallel runs each goes whole to one worker, which builds it once.
ONE_WORKER = frozenset(
    {"tests/test_packaging.py", "tests/bots/test_voice_e2e.py", "tests/fakes/test_town.py"}
)


@pytest.hookimpl(trylast=True)  # after pytest has grouped the tests by database
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, in their order (a stable sort keeps each database's tests
    together): run in parallel (scripts/test), the suite then ends on short tests rather than
    on one worker alone with a long one while the others wait."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's ``load`` (the default with ``-n``): each test goes to the next free worker
    in the order above, except that the ``ONE_WORKER`` modules go whole to one worker. (xdist's
    own ``xdist_group`` mark cannot do it: its ``loadgroup`` renames node ids, which pytest 9.2
    ignores.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER else nodeid

    return Scheduling(config, log)


@pytest.fixture(autouse=True)
def _no_real_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection outside loopback fails the test: nothing here may reach the internet."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if (
            isinstance(host, str)
            and not (
                host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")
            )
            and self.family in (socket.AF_INET, socket.AF_INET6)
        ):
            raise AssertionError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def profile() -> Profile:
    return load_profile(DEFAULT_PROFILE_PATH)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A scratch PostgreSQL database for this test session, dropped at the end."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"hosen_test_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (
        Exception
    ) as exc:  # pragma: no cover - a clear failure beats a skip: CI must test PostgreSQL
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not usable: {exc}")
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(
    db_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> str:
    if db_kind == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'hosen.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """An engine whose schema was built by the migrations (once per session and database)."""
    eng = make_engine(database_url)
    migrations.upgrade(eng)
    yield eng
    eng.dispose()


def _empty_all_tables(eng: Engine) -> None:
    """Every table emptied (children first) and, on PostgreSQL, every sequence back at its start,
    as in a new database. DELETE rather than TRUNCATE: a test leaves a few rows, and TRUNCATE
    gives each of the tables and indexes new files, about half a second per test on PostgreSQL
    where these DELETEs take a few milliseconds."""
    with eng.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        if eng.dialect.name == "postgresql":
            conn.execute(
                text(
                    "SELECT setval(format('%I.%I', schemaname, sequencename), start_value, false)"
                    " FROM pg_sequences WHERE schemaname = current_schema()"
                )
            )


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory on a clean database; every table is emptied after the test."""
    yield make_sessionmaker(engine)
    _empty_all_tables(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as s:
        yield s


@pytest.fixture
def directory(session: Session, profile: Profile) -> Directory:
    directory = sync_profile(session, profile)
    session.commit()
    return directory


@pytest.fixture
def authority(directory: Directory) -> Authority:
    return directory.authorities["kiryat-tamar"]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(database_url=database_url, spool_dir=tmp_path / "spool", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def unit_settings(tmp_path: Path) -> Settings:
    """Settings for tests that touch no database: every HOSEN_* variable ignored."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        spool_dir=tmp_path / "spool",
        _env_file=None,  # type: ignore[call-arg]
    )


# The loopback fakes' fixtures (fake_telegram, fake_twilio, fake_settings, people, log_secrets).
pytest_plugins = ["tests.fakes_fixtures"]
