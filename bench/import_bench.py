"""Benchmark: importing a 100,000-row municipal CSV on SQLite and on PostgreSQL.

Run from the repository root::

    python bench/import_bench.py                 # 100,000 rows, SQLite and PostgreSQL
    python bench/import_bench.py --rows 20000 --db sqlite --repeat 3

A synthetic town (``fakes.town``) is written as a welfare-department list with Hebrew
headers in UTF-8 with BOM, every resident on it. Each measured step runs in a fresh subprocess
on a fresh database: the first import (everyone created), the second import of the same file
(idempotent: everyone unchanged) and, for comparison, ``load_town``'s bulk load of the same
people. Peak memory is the subprocess's maximum resident set size (``getrusage`` ru_maxrss),
which includes the interpreter and its libraries; "baseline" is the same figure just before
the step, so the step's own peak is roughly the difference. PostgreSQL runs in a scratch
database created and dropped on 127.0.0.1:5432 as user ``postgres``.

With --repeat N each cell is the median of N runs: the machine may be shared, so read the
figures as orders of magnitude, not as precise rates.
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SEED = 2026
YEAR = 2026
AUTHORITY = "kiryat-tamar"


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -------------------------------------------------------------------------- child steps


def prepare(url: str) -> Any:
    from config.profile import DEFAULT_PROFILE_PATH, load_profile
    from hosen import migrations
    from registry.db import make_engine, make_sessionmaker, unit_of_work
    from registry.profile_sync import sync_profile

    profile = load_profile(DEFAULT_PROFILE_PATH)
    engine = make_engine(url)
    migrations.upgrade(engine)
    sessions = make_sessionmaker(engine)
    with unit_of_work(sessions) as session:
        sync_profile(session, profile)
    return profile, engine, sessions


def child(step: str, url: str, csv_path: Path, rows: int) -> dict[str, Any]:
    from sqlalchemy import select

    from fakes.town import generate_town, load_town
    from registry.db import unit_of_work
    from registry.importer import import_list
    from registry.models import Authority
    from registry.profile_sync import sync_profile

    profile, engine, sessions = prepare(url)
    data = csv_path.read_bytes()
    town = None
    if step == "load":
        town = generate_town(profile, size=rows, seed=SEED, year=YEAR, authorities=[AUTHORITY])
    baseline = max_rss_mb()
    started = time.perf_counter()
    with unit_of_work(sessions) as session:
        if step == "load":
            assert town is not None
            counts = load_town(session, town, sync_profile(session, profile))
            totals = {"created": counts.people, "skipped": counts.skipped}
        else:
            authority = session.scalars(select(Authority).where(Authority.code == AUTHORITY)).one()
            report = import_list(
                session,
                data=data,
                kind="residents",
                authority=authority,
                profile=profile,
                list_name="welfare",
                list_version="bench",
            )
            totals = report.totals
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds, "totals": totals, "peak_mb": max_rss_mb(), "baseline_mb": baseline}


# -------------------------------------------------------------------------- parent


def run_child(step: str, url: str, csv_path: Path, rows: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", step, "--url", url, "--csv", str(csv_path), "--rows", str(rows)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{step} on {url.split(':')[0]} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def scratch_postgres() -> tuple[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hosen_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    return url, drop


def measure(db: str, csv_path: Path, rows: int, workdir: Path) -> list[dict[str, Any]]:
    """One round on a fresh database: first import, second import; then load_town afresh."""
    results = []
    for steps in (("first import", "second import"), ("load_town",)):
        if db == "sqlite":
            file = workdir / f"bench-{secrets.token_hex(3)}.sqlite3"
            url, cleanup = f"sqlite:///{file}", lambda f=file: f.unlink(missing_ok=True)
        else:
            url, cleanup = scratch_postgres()
        try:
            for step in steps:
                mode = "load" if step == "load_town" else "import"
                result = run_child(mode, url, csv_path, rows)
                results.append({"db": db, "step": step, **result})
        finally:
            cleanup()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "all"), default="all")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is shown")
    parser.add_argument("--child", choices=("import", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.url, args.csv, args.rows)))
        return 0

    from config.profile import DEFAULT_PROFILE_PATH, load_profile
    from fakes.town import generate_town, write_municipal_csv

    profile = load_profile(DEFAULT_PROFILE_PATH)
    dbs = ["sqlite", "postgresql"] if args.db == "all" else [args.db]
    with tempfile.TemporaryDirectory(prefix="hosen-bench-") as tmp:
        workdir = Path(tmp)
        csv_path = workdir / "welfare.csv"
        town = generate_town(profile, size=args.rows, seed=SEED, year=YEAR, authorities=[AUTHORITY])
        written = write_municipal_csv(town, csv_path, "residents", profile=profile, everyone=True)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"municipal list: {written} rows, {size_mb:.1f} MB, Hebrew headers, UTF-8 with BOM")
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(args.repeat):
            for db in dbs:
                for result in measure(db, csv_path, written, workdir):
                    runs.setdefault((result["db"], result["step"]), []).append(result)

    print(
        f"\n{'database':<11}{'step':<15}{'rows':>8}{'seconds':>9}{'rows/s':>9}"
        f"{'peak MB':>9}{'baseline MB':>13}  outcome"
    )
    for (db, step), results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        peak = statistics.median(r["peak_mb"] for r in results)
        baseline = statistics.median(r["baseline_mb"] for r in results)
        totals = results[-1]["totals"]
        outcome = ", ".join(f"{k} {v}" for k, v in totals.items() if v and k in ("created", "updated", "unchanged", "skipped"))  # fmt: skip
        print(
            f"{db:<11}{step:<15}{written:>8}{seconds:>9.1f}{written / seconds:>9.0f}"
            f"{peak:>9.0f}{baseline:>13.0f}  {outcome}"
        )
    print(
        f"\nmedian of {args.repeat} run(s); peak MB = max RSS of the step's subprocess "
        "(interpreter and libraries included), baseline MB = the same just before the step"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
