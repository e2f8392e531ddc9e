"""Benchmark: importing a 100,000-row municipal CSV on SQLite and on PostgreSQL.

Run from the repository root::

    python bench/import_bench.py                 # 100,000 rows, SQLite and PostgreSQL
    python bench/import_bench.py --rows 20000 --db sqlite --repeat 3
    python bench/import_bench.py --before /tmp/main --repeat 3   # and the code in /tmp/main

A synthetic town (``fakes.town``) is written as a welfare-department list with Hebrew
headers in UTF-8 with BOM, every resident on it, and a copy with every tenth resident's
language changed. Each step runs in a fresh subprocess, the three in turn on one fresh
database: the first import (everyone created), the same file again (everyone unchanged) and
the changed copy (a tenth updated). With --load-town, ``load_town``'s bulk load of the same
people is measured too, for comparison. ``--before DIR`` runs the same steps with the code of
another checkout (say, ``git worktree add /tmp/main main``) and shows both side by side.

"seconds" is wall-clock time of the step, "cpu" the subprocess's own CPU time, "server" the
CPU time of the PostgreSQL backend that served it (read from ``/proc``: the server must run on
this machine), "disk MB" what the subprocess wrote to storage (SQLite's file and its WAL). Peak memory is the subprocess's maximum resident set size
(``getrusage`` ru_maxrss), which includes the interpreter and its libraries. PostgreSQL runs
in a scratch database created and dropped on 127.0.0.1:5432 as user ``postgres``.

With --repeat N each cell is the median of N runs: the machine may be shared, so read the
figures as orders of magnitude, not as precise rates.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import os
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


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system) of a process on this machine, from ``/proc``: the
    PostgreSQL backend that serves the import."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def written_mb() -> float:
    """Bytes this process has caused to be written to storage so far, in MB."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1]) / 1e6
    return float("nan")


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
    town = None
    if step == "load":
        town = generate_town(profile, size=rows, seed=SEED, year=YEAR, authorities=[AUTHORITY])
    baseline = max_rss_mb()
    backend = None
    if url.startswith("postgresql"):
        with engine.connect() as conn:  # the pool hands the import this same connection
            backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    server = process_cpu(backend) if backend else 0.0
    written = written_mb()
    started, cpu = time.perf_counter(), time.process_time()
    with unit_of_work(sessions) as session:
        if step == "load":
            assert town is not None
            counts = load_town(session, town, sync_profile(session, profile))
            totals = {"created": counts.people, "skipped": counts.skipped}
        else:
            authority = session.scalars(select(Authority).where(Authority.code == AUTHORITY)).one()
            # The file as the code under test takes it: a stream where it streams, else bytes.
            streams = "BinaryIO" in str(inspect.signature(import_list).parameters["data"])
            with csv_path.open("rb") as file:
                report = import_list(
                    session,
                    data=file if streams else file.read(),
                    kind="residents",
                    authority=authority,
                    profile=profile,
                    list_name="welfare",
                    list_version="bench",
                )
            totals = report.totals
        if (
            backend
            and session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            != backend
        ):
            backend = None  # another connection served it: no server figure
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    server = (
        (process_cpu(backend) - server)
        if backend
        else float("nan")
        if url.startswith("postgresql")
        else 0.0
    )
    written = written_mb() - written
    engine.dispose()
    return {
        "seconds": seconds,
        "cpu": cpu,
        "server_cpu": server,
        "written_mb": written,
        "totals": totals,
        "peak_mb": max_rss_mb(),
        "baseline_mb": baseline,
    }


def changed_copy(source: Path, target: Path, every: int = 10) -> int:
    """``source`` with every ``every``-th resident's language changed; how many were."""
    languages = ["עברית", "ערבית", "רוסית", "אנגלית", "אמהרית"]
    with (
        source.open(encoding="utf-8-sig", newline="") as inp,
        target.open("w", encoding="utf-8-sig", newline="") as out,
    ):
        reader, writer = csv.reader(inp), csv.writer(out)
        header = next(reader)
        writer.writerow(header)
        column = header.index("שפה")
        changed = 0
        for number, row in enumerate(reader):
            if number % every == 0:
                now = row[column]
                row[column] = (
                    languages[(languages.index(now) + 1) % 5] if now in languages else "רוסית"
                )
                changed += 1
            writer.writerow(row)
    return changed


# -------------------------------------------------------------------------- parent


def run_child(tree: Path, step: str, url: str, csv_path: Path, rows: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", step, "--tree", str(tree), "--url", url, "--csv", str(csv_path), "--rows", str(rows)],
        cwd=tree,
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


STEPS = ("first import", "same file again", "10% changed")


def measure(
    tree: Path, db: str, files: dict[str, Path], rows: int, workdir: Path, *, load_town: bool
) -> list[dict[str, Any]]:
    """One round on a fresh database: the three imports in turn; then load_town afresh."""
    results = []
    rounds: list[tuple[str, ...]] = [STEPS]
    if load_town:
        rounds.append(("load_town",))
    for steps in rounds:
        if db == "sqlite":
            file = workdir / f"bench-{secrets.token_hex(3)}.sqlite3"
            url, cleanup = f"sqlite:///{file}", lambda f=file: f.unlink(missing_ok=True)
        else:
            url, cleanup = scratch_postgres()
        try:
            for step in steps:
                mode = "load" if step == "load_town" else "import"
                result = run_child(tree, mode, url, files.get(step, files["first import"]), rows)
                results.append({"db": db, "step": step, **result})
        finally:
            cleanup()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "all"), default="all")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is shown")
    parser.add_argument("--before", type=Path, help="a checkout whose code to measure as well")
    parser.add_argument("--load-town", action="store_true", help="measure load_town as well")
    parser.add_argument("--child", choices=("import", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(args.tree.resolve()))
        print(json.dumps(child(args.child, args.url, args.csv, args.rows)))
        return 0

    from config.profile import DEFAULT_PROFILE_PATH, load_profile
    from fakes.town import generate_town, write_municipal_csv

    load_at_start = os.getloadavg()
    profile = load_profile(DEFAULT_PROFILE_PATH)
    dbs = ["sqlite", "postgresql"] if args.db == "all" else [args.db]
    trees = {"after": ROOT}
    if args.before:
        trees = {"before": args.before.resolve(), **trees}
    with tempfile.TemporaryDirectory(prefix="hosen-bench-") as tmp:
        workdir = Path(tmp)
        files = {"first import": workdir / "welfare.csv", "10% changed": workdir / "changed.csv"}
        town = generate_town(profile, size=args.rows, seed=SEED, year=YEAR, authorities=[AUTHORITY])
        written = write_municipal_csv(
            town, files["first import"], "residents", profile=profile, everyone=True
        )
        changed = changed_copy(files["first import"], files["10% changed"])
        size_mb = files["first import"].stat().st_size / 1e6
        print(
            f"municipal list: {written} rows, {size_mb:.1f} MB, Hebrew headers, UTF-8 with BOM; "
            f"the changed copy has {changed} residents' language changed"
        )
        runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for _ in range(args.repeat):
            for code, tree in trees.items():
                for db in dbs:
                    results = measure(tree, db, files, written, workdir, load_town=args.load_town)
                    for result in results:
                        key = (result["db"], result["step"], code)
                        runs.setdefault(key, []).append(result)

    print(
        f"\n{'database':<11}{'step':<17}{'code':<8}{'rows':>8}{'seconds':>9}{'cpu':>7}"
        f"{'server':>7}{'rows/s':>9}{'peak MB':>9}{'disk MB':>8}  outcome"
    )
    for (db, step, code), results in sorted(
        runs.items(), key=lambda kv: (dbs.index(kv[0][0]), [*STEPS, "load_town"].index(kv[0][1]), kv[0][2] != "before")
    ):  # fmt: skip
        seconds = statistics.median(r["seconds"] for r in results)
        cpu = statistics.median(r.get("cpu", 0.0) for r in results)
        peak = statistics.median(r["peak_mb"] for r in results)
        server = statistics.median(r.get("server_cpu", 0.0) for r in results)
        disk = statistics.median(r.get("written_mb", 0.0) for r in results)
        totals = results[-1]["totals"]
        outcome = ", ".join(f"{k} {v}" for k, v in totals.items() if v and k in ("created", "updated", "unchanged", "skipped"))  # fmt: skip
        print(
            f"{db:<11}{step:<17}{code:<8}{written:>8}{seconds:>9.1f}{cpu:>7.1f}"
            f"{server:>7.1f}{written / seconds:>9.0f}{peak:>9.0f}{disk:>8.0f}  {outcome}"
        )
    start_load, end_load = load_at_start, os.getloadavg()
    print(
        f"\nload average (1, 5, 15 min): {'/'.join(f'{x:.1f}' for x in start_load)} at the "
        f"start, {'/'.join(f'{x:.1f}' for x in end_load)} at the end (2 cores idle: under 2)"
    )
    print(
        f"median of {args.repeat} run(s); seconds: wall clock; cpu: the importing process's "
        "own CPU seconds; server: the PostgreSQL backend's CPU seconds (0 on SQLite); disk MB: "
        "what the importing process wrote to storage (SQLite's file and journal); peak MB = max RSS of the step's subprocess (interpreter and libraries "
        "included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
