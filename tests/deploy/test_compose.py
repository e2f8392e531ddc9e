"""docker-compose.yml as a municipality's IT runs it, checked without a Docker engine: against
the Compose specification's schema (vendored in compose_spec/), and against what Hosen needs
of it (one image, optional channels, health checks, TLS in front, a safe database URL)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

from hosen.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
HOSEN = {name: s for name, s in SERVICES.items() if s.get("command", [""])[0] == "hosen"}
LONG_RUNNING = {name for name, s in SERVICES.items() if s.get("restart") == "unless-stopped"}
CHANNEL_SECRETS = (
    "HOSEN_TELEGRAM_TOKEN",
    "HOSEN_TELEGRAM_WEBHOOK_SECRET",
    "HOSEN_TWILIO_ACCOUNT_SID",
    "HOSEN_TWILIO_AUTH_TOKEN",
    "HOSEN_TWILIO_FROM",
)


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((Path(__file__).parent / "compose_spec" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []


def test_the_schema_refuses_what_compose_would() -> None:
    """The vendored schema does check: a misspelt key fails it."""
    schema = json.loads((Path(__file__).parent / "compose_spec" / "compose-spec.json").read_text())
    broken = {"services": {"web": {"image": "x", "helthcheck": {}}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_one_image_built_once_runs_every_hosen_service() -> None:
    assert set(HOSEN) == {"migrate", "web", "inbox", "worker", "scheduler"}
    assert {s["image"] for s in HOSEN.values()} == {"${HOSEN_IMAGE:-hosen:local}"}
    assert [name for name, s in SERVICES.items() if "build" in s] == ["migrate"]


@pytest.mark.parametrize("name", sorted(HOSEN))
def test_each_hosen_command_is_one_hosen_accepts(name: str) -> None:
    command = HOSEN[name]["command"]
    args = build_parser(command[1]).parse_args(command[1:])
    assert callable(args.handler)
    check = HOSEN[name].get("healthcheck", {}).get("test", ["", ""])
    if check[1] == "hosen":
        assert build_parser(check[2]).parse_args(check[2:]).check


def test_inbox_and_worker_are_services_of_their_own_with_their_niceness() -> None:
    assert HOSEN["web"]["command"][1:2] == ["serve"]
    assert {"--no-worker", "--no-inbox", "--no-scheduler"} <= set(HOSEN["web"]["command"])
    # README: the webhooks answer while inbox and worker run beside them at nice 10.
    assert HOSEN["inbox"]["command"][:4] == ["hosen", "inbox", "--nice", "10"]
    assert HOSEN["worker"]["command"][:4] == ["hosen", "worker", "--nice", "10"]


def test_every_long_running_service_has_a_health_check() -> None:
    assert set(SERVICES) - {"migrate"} == LONG_RUNNING
    assert [name for name in LONG_RUNNING if "healthcheck" not in SERVICES[name]] == []


def test_the_tls_proxy_publishes_the_only_ports() -> None:
    assert [name for name, s in SERVICES.items() if "ports" in s] == ["proxy"]
    assert SERVICES["proxy"]["image"].startswith("caddy:")
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text(encoding="utf-8")
    assert "reverse_proxy web:8000" in caddyfile and "{$HOSEN_DOMAIN}" in caddyfile
    assert SERVICES["web"]["expose"] == ["8000"]


def test_every_channel_is_optional() -> None:
    """No channel's secret is required (`:?`): a town sets the ones it uses."""
    for name in CHANNEL_SECRETS:
        uses = re.findall(r"\$\{" + name + r"(:?[-?][^}]*)?\}", COMPOSE_TEXT)
        assert uses and all(not use.startswith((":?", "?")) for use in uses), name


def test_the_database_password_is_never_in_a_url() -> None:
    environment = HOSEN["web"]["environment"]
    url = make_url(environment["HOSEN_DATABASE_URL"])
    assert url.password is None and url.host == "db"
    assert environment["HOSEN_DATABASE_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert SERVICES["db"]["environment"]["POSTGRES_PASSWORD_FILE"] == (
        "/run/secrets/postgres_password"
    )
    assert "POSTGRES_PASSWORD}" not in COMPOSE_TEXT


def test_the_town_profile_and_the_spool_are_mounted() -> None:
    for name, service in HOSEN.items():
        assert service["environment"]["HOSEN_PROFILE"] == "/etc/hosen/profile.toml", name
        assert "${HOSEN_TOWN_DIR:-./town}:/etc/hosen:ro" in service["volumes"], name
    assert HOSEN["web"]["environment"]["HOSEN_SPOOL_DIR"] == "/var/lib/hosen/spool"
    assert "spool:/var/lib/hosen/spool" in HOSEN["web"]["volumes"]
    assert "spool" in COMPOSE["volumes"]


def test_backups_run_the_tested_script_nightly() -> None:
    backup = SERVICES["backup"]
    assert backup["entrypoint"] == ["bash", "/usr/local/bin/hosen-backup", "nightly"]
    assert "./deploy/backup.sh:/usr/local/bin/hosen-backup:ro" in backup["volumes"]
    assert backup["image"] == SERVICES["db"]["image"], "pg_dump of the server's own version"


def test_the_image_holds_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = {shlex.split(line)[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    include = re.search(r"include = \[(.*?)\]", pyproject)
    assert include is not None
    packages = {name.strip(' "*') for name in include.group(1).split(",")}
    assert packages <= copied
