"""The services of docker-compose.yml, run as the same commands outside Docker against a fresh
PostgreSQL database: `hosen db upgrade`, then `hosen serve` (webhooks only), `hosen inbox`,
`hosen worker` and `hosen scheduler` as processes of their own, an SMS-only town on the Twilio
fake whose simulated residents answer a drill, then deploy/backup.sh's backup and its restore
into a new database that still has every person, campaign and answer.

Processes answer in real time: the waits below have generous deadlines and nothing asserts on
how long anything took.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

import hosen.schema  # noqa: F401  (every table onto Base.metadata, for the comparison)
from dispatch.models import Answer, Campaign, CampaignRecipient
from fakes.people import Delay, People, Persona
from fakes.twilio import FakeTwilio
from registry.db import Base, make_engine
from registry.models import Authority, Person, Source
from tests.conftest import POSTGRES_URL
from tests.deploy.test_compose import SERVICES as COMPOSE_SERVICES

ROOT = Path(__file__).resolve().parent.parent.parent
BACKUP = ROOT / "deploy" / "backup.sh"
ANSWERING, SILENT = 12, 3

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.db]


@pytest.fixture
def scratch_databases() -> Iterator[Callable[[str], str]]:
    """Names of new databases on the test server (``new(suffix)`` gives its URL), all dropped at
    the end; the restore creates one of them itself."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    base = f"hosen_deploy_{secrets.token_hex(4)}"
    names: list[str] = []

    def new(suffix: str) -> str:
        names.append(base + suffix)
        return make_url(POSTGRES_URL).set(database=base + suffix).render_as_string(False)

    yield new
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _until(what: str, done: Callable[[], bool], *, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {within:.0f} s for {what}")
        time.sleep(0.25)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _contents(engine: Engine) -> dict[str, object]:
    """Every table's row count, and the people, campaigns and answers themselves."""
    with engine.connect() as conn:
        counts = {
            table.name: conn.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }
        people = conn.execute(select(Person.id, Person.name, Person.phone).order_by(Person.id))
        campaigns = conn.execute(select(Campaign.id, Campaign.status, Campaign.recipients))
        answers = conn.execute(
            select(CampaignRecipient.person_id, CampaignRecipient.answer).order_by(
                CampaignRecipient.person_id
            )
        )
        return {
            "counts": counts,
            "people": [tuple(row) for row in people],
            "campaigns": [tuple(row) for row in campaigns],
            "answers": [tuple(row) for row in answers],
        }


def test_the_deployment_runs_a_drill_and_its_backup_restores(
    db_kind: str,
    scratch_databases: Callable[[str], str],
    tmp_path: Path,
    fake_twilio: FakeTwilio,
) -> None:
    if db_kind != "postgresql":
        pytest.skip("the deployment's database is PostgreSQL")
    url = scratch_databases("")
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{make_url(url).database}"'))
    admin.dispose()
    # As docker-compose.yml has it: the password in a file of its own, not in the URL (the
    # test server trusts local connections, so any password does).
    password_file = tmp_path / "postgres_password"
    password_file.write_text("p@ss:w/rd%?#\n", encoding="utf-8")
    port = _free_port()
    public = f"http://127.0.0.1:{port}"
    beat = {name: tmp_path / f"{name}.beat" for name in ("inbox", "worker", "scheduler")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSEN_")}
    env.update(
        HOSEN_DATABASE_URL=url,
        HOSEN_DATABASE_PASSWORD_FILE=str(password_file),
        HOSEN_PUBLIC_URL=public,
        HOSEN_TWILIO_ACCOUNT_SID=fake_twilio.account_sid,
        HOSEN_TWILIO_AUTH_TOKEN=fake_twilio.auth_token,
        HOSEN_TWILIO_FROM=fake_twilio.phone_number,
        HOSEN_TWILIO_API_URL=fake_twilio.url,
        HOSEN_SMS_RATE_PER_SECOND="50",
    )

    def hosen(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "hosen", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"hosen {' '.join(argv)}: {done.stdout}{done.stderr}"
        return done

    # The one-shot `migrate` service, then the registry: residents reached by SMS.
    assert "database is up to date" in hosen("db", "upgrade").stdout
    engine = make_engine(url)
    people = People(twilio=fake_twilio, sms_webhook_url=f"{public}/sms/inbound", seed=5)
    try:
        with engine.begin() as conn:
            authority = conn.scalar(select(Authority.id).where(Authority.code == "kiryat-tamar"))
            for n in range(ANSWERING + SILENT):
                phone = f"+9725080000{n:02d}"
                conn.execute(
                    Person.__table__.insert().values(
                        authority_id=authority,
                        name=f"Resident {n}",
                        phone=phone,
                        source=Source.STAFF,
                        needs_help=True,
                    )
                )
                kind = "ok" if n < ANSWERING else "silent"
                people.add_sms(Persona(kind, Delay(median=0.5, sigma=0.2)), phone)

        # docker-compose.yml's own commands, with this machine's address and files.
        here = {"0.0.0.0": "127.0.0.1", "8000": str(port)}
        services = {
            name: [
                here.get(word, str(beat.get(name, word)) if word == "/tmp/hosen.beat" else word)
                for word in COMPOSE_SERVICES[name]["command"][1:]
            ]
            for name in ("web", "inbox", "worker", "scheduler")
        }
        assert services["inbox"][:3] == ["inbox", "--nice", "10"]
        assert services["worker"][:3] == ["worker", "--nice", "10"]
        running = {
            name: subprocess.Popen(
                [sys.executable, "-m", "hosen", *argv],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, argv in services.items()
        }
        try:
            _until("/health", lambda: _healthy(f"{public}/health"))
            _until("the heartbeats", lambda: all(path.exists() for path in beat.values()))
            for name, path in beat.items():
                assert "healthy" in hosen(name, "--heartbeat", str(path), "--check").stdout

            started = json.loads(
                hosen("campaign", "start", "--drill", "--residents", "--yes", "--json").stdout
            )
            campaign_id = started["campaign_id"]
            assert started["recipients"] == ANSWERING + SILENT

            def answered() -> int:
                with engine.connect() as conn:
                    return int(
                        conn.scalar(
                            select(func.count())
                            .select_from(CampaignRecipient)
                            .where(
                                CampaignRecipient.campaign_id == campaign_id,
                                CampaignRecipient.answer == Answer.OK,
                            )
                        )
                        or 0
                    )

            _until("every answering resident's OK", lambda: answered() == ANSWERING)
            report = json.loads(hosen("campaign", "close", str(campaign_id), "--json").stdout)
            assert len(report["unreached"]) == SILENT
        finally:
            for process in running.values():
                process.send_signal(signal.SIGTERM)
            outputs = {name: p.communicate(timeout=60) for name, p in running.items()}
        for name, (out, err) in outputs.items():
            # uvicorn shuts down cleanly, then ends by the signal it was sent, as it should.
            clean = (0, -signal.SIGTERM) if name == "web" else (0,)
            assert running[name].returncode in clean, f"{name}: {out}{err}"
            assert "Traceback" not in err, f"{name}: {err}"
            assert fake_twilio.auth_token not in out + err, f"{name} wrote the Twilio token"
    finally:
        people.close()

    # The `backup` service's script: a dump, then its restore into a new database.
    pg = make_url(POSTGRES_URL)
    backup_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PG", "HOSEN_"))
    } | {
        "PGHOST": pg.host or "127.0.0.1",
        "PGPORT": str(pg.port or 5432),
        "PGUSER": pg.username or "postgres",
        "PGDATABASE": make_url(url).database or "",
        "HOSEN_BACKUP_DIR": str(tmp_path / "backups"),
    }

    def backup(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(BACKUP), *argv],
            env=backup_env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    dumped = backup("now")
    assert dumped.returncode == 0, dumped.stderr
    dump = Path(dumped.stdout.strip().splitlines()[-1])
    assert dump.parent == tmp_path / "backups" and dump.name.startswith("hosen-")
    assert backup("check").returncode == 0

    restored_url = scratch_databases("_restored")
    restored_name = make_url(restored_url).database or ""
    restored = backup("restore", str(dump), restored_name)
    assert restored.returncode == 0, restored.stderr
    # Restoring over a database that exists is refused: nothing is overwritten.
    assert backup("restore", str(dump), restored_name).returncode != 0

    restored_engine = make_engine(restored_url)
    try:
        original = _contents(engine)
        copy = _contents(restored_engine)
        assert len(original["people"]) == ANSWERING + SILENT  # type: ignore[arg-type]
        assert copy == original
        env["HOSEN_DATABASE_URL"] = restored_url
        status = json.loads(hosen("campaign", "status", str(campaign_id), "--json").stdout)
        assert status["total"]["ok"] == ANSWERING
    finally:
        restored_engine.dispose()
        engine.dispose()
