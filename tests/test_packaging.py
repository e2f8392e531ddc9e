"""The wheel as a municipality installs it: built from the sources, installed into an empty
virtual environment outside the checkout, then `hosen db upgrade` and a whole demo drill.

Slow (a few minutes): pip installs the dependencies, from its cache when it can. It is the one
test that may reach a package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "registry", "dispatch", "bots", "hosen", "fakes")
# Files the packages read at run time, besides their modules.
SHIPPED = {".py", ".toml", ".json", ".ini", ".mako", ".html", ".js", ".css"}

pytestmark = pytest.mark.slow


def _sources() -> list[str]:
    """The checkout's files as git sees them: committed or new, nothing ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout's settings or virtual environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HOSEN_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(extra)
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built from a copy of the sources (the build leaves nothing in the checkout),
    and the build's log."""
    source = tmp_path_factory.mktemp("source")
    for name in _sources():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "-w", str(dist), "."],
        source,
        _clean_env(),
    )
    (path,) = dist.glob("hosen-*.whl")
    return path, built.stdout + built.stderr


def test_the_wheel_holds_every_package_migration_catalog_profile_and_spec(
    wheel: tuple[Path, str],
) -> None:
    path, log = wheel
    with zipfile.ZipFile(path) as archive:
        shipped = set(archive.namelist())
    wanted = {
        name
        for name in _sources()
        if name.split("/")[0] in PACKAGES and Path(name).suffix in SHIPPED
    }
    assert wanted - shipped == set()
    for must in (
        "registry/assignment/__init__.py",
        "hosen/migrations/env.py",
        "hosen/migrations/alembic.ini",
        "hosen/migrations/versions/0001_registry_core.py",
        "config/locales/am.toml",
        "config/profiles/kiryat-tamar.toml",
        "fakes/specs/telegram_bot_api.json",
        "hosen/console/templates/board.html",
        "hosen/console/static/htmx.min.js",
        "hosen/console/static/console.css",
        "hosen/templates/report.html",
    ):
        assert must in shipped
    assert not [name for name in shipped if "__pycache__" in name or name.startswith("tests/")]
    assert "absent from the `packages` configuration" not in log
    assert "SetuptoolsDeprecationWarning" not in log and "_BetaConfiguration" not in log


def test_the_installed_wheel_migrates_and_runs_a_demo_outside_the_checkout(
    wheel: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = wheel
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, _clean_env())
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", str(path)], tmp_path, _clean_env())

    town = tmp_path / "town"
    town.mkdir()
    env = _clean_env(HOSEN_DATABASE_URL=f"sqlite:///{town / 'hosen.sqlite3'}")
    where = _run([str(python), "-c", "import hosen; print(hosen.__file__)"], town, env)
    assert where.stdout.startswith(str(venv)), "the installed package, not the checkout"
    hosen = str(venv / "bin" / "hosen")
    upgraded = _run([hosen, "db", "upgrade"], town, env)
    assert "database is up to date" in upgraded.stdout
    # The demo's default files go to var/ under the current directory.
    demo = _run([hosen, "demo", "--size", "300", "--speed", "1500"], town, env)
    assert "Drill report" in demo.stdout
    assert (town / "var" / "demo.sqlite3").is_file()
    assert (town / "var" / "demo-drill-report.html").is_file()
