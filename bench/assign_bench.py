"""Benchmark of the assignment engine on synthetic towns (issue 4).

Run from the repository root:

    python bench/assign_bench.py                 # 10,000 and 100,000 people
    python bench/assign_bench.py --sizes 10000 --repeat 3 --no-postgres

For each town (``fakes.town``: about 20% at risk, 10% volunteers) and each database
(SQLite file, PostgreSQL scratch database on HOSEN_BENCH_POSTGRES_URL) it prints:

* the solver alone: the whole assignment policy (every tier of the profile, backups, the causes of
  the gaps), in a process of its own for an honest peak memory (RSS), with the registry already
  loaded; its candidate search and min-cost flow time; each tier's demand met; the gaps' causes;
* coverage against the max-flow upper bound (a maximum matching over every pair within reach);
* total walking distance of the primaries against a greedy nearest-volunteer baseline (graver
  needs first, each resident takes the nearest volunteer with room) on the same town;
* the primaries' walking by default (a small town gets the proof of the least walking over every
  pair within reach, a large one a round of pricing) and with ``prove_walking`` (the proof at any
  size), with the pairs the pricing added and its time;
* OR-Tools' min-cost flow against scipy's sparse assignment (LAPJVsp) on the same primaries-only
  problem, to justify the choice of solver;
* the whole ``hosen assign`` (load, solve, write, commit) as a subprocess: the first run on a
  fresh town (every pair is new) and a re-run (nothing changed), wall time and peak RSS;
* one decline re-planned: a volunteer declines an offer of a buddy pair (or of a role) and
  ``dispatch.offers.take_offer_answer`` marks it, plans that seat again and offers it to the next
  volunteer, in one transaction (rolled back after each), on several seats across the town, for a
  buddy pair and for each kind of role seat (a zone's, a shelter's, the town's), in the town as
  it is (short of volunteers: mostly nobody is found, the worst case) and again with a spare
  volunteer added where the declining one lives (someone is found); wall and CPU time apart for
  the declines that found someone and those that did not, and how many found someone.

Times are medians of ``--repeat`` runs; the machine is shared, so expect noise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from config.profile import DEFAULT_PROFILE_PATH, load_profile  # noqa: E402
from hosen import migrations  # noqa: E402
from registry.assignment import buddies as core  # noqa: E402
from registry.db import make_engine, make_sessionmaker, unit_of_work  # noqa: E402
from registry.profile_sync import sync_profile  # noqa: E402

AUTHORITY = "kiryat-tamar"
POSTGRES_URL = os.environ.get(
    "HOSEN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


# ------------------------------------------------------------------ building the databases


def build_database(url: str, size: int) -> dict[str, Any]:
    """Migrate, load the profile's places and a synthetic town of ``size`` people."""
    from fakes.town import generate_town, load_town

    profile = load_profile(DEFAULT_PROFILE_PATH)
    engine = make_engine(url)
    migrations.upgrade(engine)
    sessions = make_sessionmaker(engine)
    town = generate_town(profile, size=size, seed=2026, year=NOW.year, authorities=[AUTHORITY])
    started = time.perf_counter()
    with unit_of_work(sessions) as session:
        directory = sync_profile(session, profile)
        counts = load_town(session, town, directory, now=NOW)
    loaded = time.perf_counter() - started
    engine.dispose()
    return {
        "people": counts.people,
        "residents": counts.residents,
        "volunteers": counts.volunteers,
        "load_town_s": loaded,
    }


def scratch_postgres() -> str:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"hosen_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres(url: str) -> None:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = make_url(url).database
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# ------------------------------------------------------------------ measured in a subprocess


def child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a child process; (wall seconds, its own peak RSS in MB, its stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=out, stderr=err, env={**os.environ, **(env or {})}
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} failed: {err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def solver_alone(url: str) -> dict[str, Any]:
    """In this (child) process: load the registry, then time the core alone."""
    from dataclasses import replace

    from sqlalchemy import select

    from registry.assignment.store import load_registry, plan
    from registry.models import Authority

    profile = load_profile(DEFAULT_PROFILE_PATH)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with unit_of_work(sessions) as session:
        authority = session.scalars(select(Authority).where(Authority.code == AUTHORITY)).one()
        registry = load_registry(session, authority=authority, profile=profile, now=NOW)
    engine.dispose()
    reach = profile.walking_distance_m
    # The whole policy (every tier, backups, the causes of the gaps): the solve of the target.
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    result = plan(registry, profile=profile, now=NOW)
    policy_s = time.perf_counter() - t0
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    plan_, roles = result.buddies, result.roles
    roles_s = result.timings.get("roles_s", 0.0)
    # The comparisons below run on the volunteers the policy left without a role.
    role_of = {h.person_id: h.role_code for h in roles.holders}
    volunteers = [replace(v, role_code=role_of.get(v.id)) for v in registry.volunteers]
    rules = core.BuddyRules(year=NOW.year, reach_m=reach, keep_bonus_m=reach)
    bound = core.primary_upper_bound(registry.residents, volunteers, rules=rules)

    primaries_rules = core.BuddyRules(
        year=NOW.year, reach_m=reach, keep_bonus_m=reach, backups=False
    )
    optimal = core.plan_buddies(registry.residents, volunteers, rules=primaries_rules)
    proven = core.plan_buddies(
        registry.residents, volunteers, rules=replace(primaries_rules, prove_walking=True)
    )
    greedy = greedy_baseline(registry.residents, volunteers, reach)
    comparison = compare_solvers(registry.residents, volunteers, primaries_rules)
    return {
        "residents": len(registry.residents),
        "volunteers": len(registry.volunteers),
        "role_seats": roles.seats,
        "roles_filled": roles.filled,
        "roles_s": roles_s,
        "arcs": plan_.arcs,
        "widened": plan_.widened,
        "candidates_s": plan_.timings["candidates_s"],
        "solve_s": plan_.timings["solve_s"],
        "flow_s": plan_.timings["flow_s"],
        "pricing_s": plan_.timings.get("pricing_s", 0.0),
        "causes_s": plan_.timings.get("causes_s", 0.0),
        "priced": plan_.priced,
        "walking_proven": plan_.walking_proven,
        "core_total_s": policy_s,
        "covered": plan_.coverage.covered,
        "with_backup": plan_.coverage.with_backup,
        "tiers": [f"{t.number} {t.kind} {t.what}: {t.met}/{t.demand}" for t in result.tiers],
        "causes": dict(Counter(plan_.unassigned.values())),
        "upper_bound": bound,
        "optimal_primaries_covered": optimal.coverage.covered,
        "optimal_primaries_km": optimal.coverage.distance_m / 1000,
        "optimal_primaries_weighted": optimal.coverage.weighted,
        "optimal_primaries_proven": optimal.walking_proven,
        "optimal_primaries_core_s": optimal.timings["total_s"],
        "proven_primaries_km": proven.coverage.distance_m / 1000,
        "proven_primaries_priced": proven.priced,
        "proven_primaries_pricing_s": proven.timings.get("pricing_s", 0.0),
        "proven_primaries_core_s": proven.timings["total_s"],
        "greedy_covered": greedy["covered"],
        "greedy_km": greedy["distance_m"] / 1000,
        "greedy_weighted": greedy["weighted"],
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_after,
        **comparison,
    }


def _spare_volunteer(session: Any, volunteer_id: int, n: int) -> None:
    """A free volunteer where the declining one lives, able to do what they do (a copy with no
    buddies and no role): the seat's re-plan has someone to find within reach."""
    from registry.models import Person, VolunteerProfile

    model = session.get(Person, volunteer_id)
    assert model is not None
    skip = {"id", "phone", "telegram_chat_id", "external_ref", "name"}
    columns = {c.key: getattr(model, c.key) for c in Person.__table__.columns if c.key not in skip}
    spare = Person(**columns, name=f"Spare {n}", phone=f"+97258{9_000_000 + n:07d}")
    session.add(spare)
    session.flush()
    if model.volunteer is not None:
        profile = model.volunteer
        session.add(
            VolunteerProfile(
                person_id=spare.id,
                skills=list(profile.skills),
                languages=list(profile.languages),
                available_routine=profile.available_routine,
                available_emergency=profile.available_emergency,
                has_vehicle=profile.has_vehicle,
                checkin_capacity=max(profile.checkin_capacity, 1),
            )
        )
    session.flush()


def declines(url: str, seats: int = 7) -> dict[str, Any]:
    """In this (child) process: decline offers of buddy pairs and roles, each rolled back.

    Each seat is declined twice: in the town as it is (short of volunteers: the re-plan mostly
    searches the whole walking distance and finds nobody, the worst case), and with a spare
    volunteer added where the declining one lives (the re-plan finds someone). Times are kept
    apart for declines that found someone and declines that did not."""
    from sqlalchemy import select

    from dispatch.offers import take_offer_answer
    from registry.assignment.models import AssignmentOffer
    from registry.models import BuddyAssignment, Channel, Person, RoleAssignment

    profile = load_profile(DEFAULT_PROFILE_PATH)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    out: dict[str, Any] = {}
    seat_kinds: tuple[tuple[str, Any, Any, Any], ...] = (
        ("buddy", BuddyAssignment, BuddyAssignment.volunteer_id, True),
        # Each kind of role seat: a zone's, a shelter's (its zone or within walking), the town's.
        (
            "role_zone", RoleAssignment, RoleAssignment.person_id,
            RoleAssignment.zone_id.is_not(None) & RoleAssignment.shelter_id.is_(None),
        ),
        ("role_shelter", RoleAssignment, RoleAssignment.person_id, RoleAssignment.shelter_id.is_not(None)),
        ("role_town", RoleAssignment, RoleAssignment.person_id, RoleAssignment.zone_id.is_(None)),
    )  # fmt: skip
    for kind, model, holder, which in seat_kinds:
        with sessions() as session:
            rows = session.execute(
                select(model.id, holder).where(model.status == "proposed", which).order_by(model.id)
            ).all()
        picked = [rows[i * len(rows) // seats] for i in range(seats)] if rows else []
        for variant in ("", "_spare"):
            timings: dict[bool, tuple[list[float], list[float]]] = {True: ([], []), False: ([], [])}
            for n, (assignment_id, volunteer_id) in enumerate(picked):
                with sessions() as session:
                    if variant:
                        _spare_volunteer(session, volunteer_id, n)
                    offer = AssignmentOffer(
                        kind="buddy" if kind == "buddy" else "role", assignment_id=assignment_id,
                        volunteer_id=volunteer_id, state="offered", created_at=NOW,
                    )  # fmt: skip
                    session.add(offer)
                    session.flush()
                    person = session.get(Person, volunteer_id)
                    assert person is not None
                    wall, cpu = time.perf_counter(), time.process_time()
                    take_offer_answer(
                        session, person=person, channel=Channel.SMS, data=f"o:{offer.id}:no",
                        profile=profile, now=NOW,
                    )  # fmt: skip
                    session.flush()
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    found = session.scalar(
                        select(AssignmentOffer.id).where(
                            AssignmentOffer.id != offer.id, AssignmentOffer.state == "offered"
                        )
                    )
                    timings[found is not None][0].append(wall)
                    timings[found is not None][1].append(cpu)
                    session.rollback()
            label = f"decline_{kind}{variant}"
            for found, name in ((True, "found"), (False, "missed")):
                walls, cpus = timings[found]
                # -1: no decline of this seat kind ended this way.
                out[f"{label}_{name}_s"] = statistics.median(walls) if walls else -1.0
                out[f"{label}_{name}_max_s"] = max(walls, default=-1.0)
                out[f"{label}_{name}_cpu_s"] = statistics.median(cpus) if cpus else -1.0
            out[f"{label}_found"] = f"{len(timings[True][0])}/{len(picked)}"
    engine.dispose()
    return out


def decline_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The declines' times over runs: the median of the runs that had such a decline (-1 when
    none had); how many found someone, summed over the runs."""
    merged: dict[str, Any] = {}
    for key in runs[-1]:
        if key.endswith("_s"):
            values = [run[key] for run in runs if run[key] >= 0]
            merged[key] = statistics.median(values) if values else -1.0
        elif key.endswith("_found"):
            found = sum(int(run[key].split("/")[0]) for run in runs)
            merged[key] = f"{found}/{sum(int(run[key].split('/')[1]) for run in runs)}"
    return merged


def greedy_baseline(
    residents: list[core.Resident], volunteers: list[core.Volunteer], reach: int
) -> dict[str, int]:
    """Graver needs first; each resident takes the nearest compatible volunteer with room."""
    from registry.assignment.geo import Neighbourhood

    pool = [v for v in volunteers if core.not_buddy(v, NOW.year) is None]
    problem = core._build(
        residents, pool, (), set(), (), {}, core.BuddyRules(year=NOW.year, reach_m=reach), {}
    )
    area = Neighbourhood(problem.places_r, problem.places_v, speaks=problem.speaks, reach_m=reach)
    room = problem.room.copy()
    covered = weighted = total = 0
    order = sorted(range(len(residents)), key=lambda i: (-int(problem.weight[i]), residents[i].id))
    # Full lists, a thousand residents at a time (all at once would hold ~80 million pairs).
    for start in range(0, len(order), 1000):
        chunk = np.array(order[start : start + 1000], dtype=np.int64)
        pairs = area.pairs(chunk, problem.needs_language, None)
        by = np.lexsort((pairs.distance_m, pairs.resident))
        res, vol, dist = pairs.resident[by], pairs.volunteer[by], pairs.distance_m[by]
        for r in chunk.tolist():
            lo, hi = np.searchsorted(res, r), np.searchsorted(res, r, side="right")
            for k in range(lo, hi):
                if room[vol[k]] > 0:
                    room[vol[k]] -= 1
                    covered += 1
                    weighted += int(problem.weight[r])
                    total += int(dist[k])
                    break
    return {"covered": covered, "distance_m": total, "weighted": weighted}


def compare_solvers(
    residents: list[core.Resident], volunteers: list[core.Volunteer], rules: core.BuddyRules
) -> dict[str, Any]:
    """The same primaries-only problem (same candidate lists, same costs) in OR-Tools and scipy."""
    from ortools.graph.python import min_cost_flow
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    from registry.assignment import flow
    from registry.assignment.geo import Neighbourhood

    pool = [v for v in volunteers if core.not_buddy(v, NOW.year) is None]
    problem = core._build(residents, pool, (), set(), (), {}, rules, {})
    area = Neighbourhood(
        problem.places_r, problem.places_v, speaks=problem.speaks, reach_m=rules.reach_m
    )
    pairs = area.pairs(
        np.arange(len(residents), dtype=np.int64), problem.needs_language, rules.candidate_limit
    )
    n_r, n_v = len(residents), len(pool)
    scale = flow.coverage_scale(
        path_arcs=2 * min(n_r, n_v) + 2, spread=int(pairs.distance_m.max()) + rules.keep_bonus_m
    )
    arc_cost = pairs.distance_m - scale * problem.weight[pairs.resident]

    t0 = time.perf_counter()
    smcf = min_cost_flow.SimpleMinCostFlow()
    source, sink, r0, v0 = 0, 1, 2, 2 + n_r
    tail = np.concatenate(
        [np.zeros(n_r, np.int64), r0 + pairs.resident, v0 + np.arange(n_v), [source]]
    )
    head = np.concatenate([r0 + np.arange(n_r), v0 + pairs.volunteer, np.full(n_v, sink), [sink]])
    cap = np.concatenate([np.ones(n_r + len(pairs), np.int64), problem.room, [n_r]])
    cost = np.concatenate([np.zeros(n_r, np.int64), arc_cost, np.zeros(n_v + 1, np.int64)])
    smcf.add_arcs_with_capacity_and_unit_cost(
        tail.astype(np.int64), head.astype(np.int64), cap.astype(np.int64), cost.astype(np.int64)
    )
    supply = np.zeros(v0 + n_v, np.int64)
    supply[source], supply[sink] = n_r, -n_r
    smcf.set_nodes_supplies(np.arange(v0 + n_v, dtype=np.int64), supply)
    assert smcf.solve() == smcf.OPTIMAL
    ortools_s = time.perf_counter() - t0
    ortools_cost = smcf.optimal_cost()

    # scipy: volunteers expanded into one column per unit of room, plus one "nobody" column per
    # resident (cost 0), so that a full matching of the residents always exists.
    t0 = time.perf_counter()
    room = problem.room
    first_slot = np.concatenate([[0], np.cumsum(room)])
    slots = int(first_slot[-1])
    reps = room[pairs.volunteer]
    rows = np.repeat(pairs.resident, reps)
    offsets = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
    cols = np.repeat(first_slot[pairs.volunteer], reps) + offsets
    weights = np.repeat(arc_cost, reps).astype(np.float64)
    # LAPJVsp treats a stored zero as an edge; shift every cost by a constant so all are negative
    # and the "nobody" column, at the constant itself, is a real edge too.
    shift = float(-arc_cost.min()) + 1.0
    rows = np.concatenate([rows, np.arange(n_r)])
    cols = np.concatenate([cols, slots + np.arange(n_r)])
    weights = np.concatenate([weights + 0.0, np.zeros(n_r)]) - shift
    graph = csr_matrix((weights, (rows, cols)), shape=(n_r, slots + n_r))
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    scipy_s = time.perf_counter() - t0
    scipy_cost = float(np.asarray(graph[row_ind, col_ind]).sum() + shift * n_r)
    return {
        "cmp_arcs": len(pairs),
        "cmp_expanded_edges": len(rows),
        "ortools_s": ortools_s,
        "scipy_s": scipy_s,
        "same_optimum": bool(abs(scipy_cost - ortools_cost) <= 1e-6 * abs(ortools_cost) + 1),
    }


# ------------------------------------------------------------------ the table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median reported)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--declines-only",
        action="store_true",
        help="only the first `hosen assign` (wall, peak RSS, inner timings) and the declines",
    )
    parser.add_argument("--solver-child", help=argparse.SUPPRESS)  # internal: database URL
    parser.add_argument("--decline-child", help=argparse.SUPPRESS)  # internal: database URL
    args = parser.parse_args()
    if args.solver_child:
        print(json.dumps(solver_alone(args.solver_child)))
        return 0
    if args.decline_child:
        print(json.dumps(declines(args.decline_child)))
        return 0

    python = sys.executable
    results: list[dict[str, Any]] = []
    for size in args.sizes:
        databases = [
            (
                "sqlite",
                f"sqlite:///{ROOT / 'var' / 'bench' / f'town-{size}-{secrets.token_hex(3)}.sqlite3'}",
            )
        ]
        if args.no_sqlite:
            databases = []
        if not args.no_postgres:
            databases.append(("postgresql", scratch_postgres()))
        try:
            for kind, url in databases:
                town = build_database(url, size)
                print(
                    f"# {kind} {size:,}: loaded {town['people']:,} people in {town['load_town_s']:.1f} s",
                    file=sys.stderr,
                )
                if args.declines_only:
                    whole_first, whole_rss, out = child(
                        [python, "-m", "hosen", "assign", "--json"], {"HOSEN_DATABASE_URL": url}
                    )
                    decline_runs = [
                        json.loads(
                            child([python, "bench/assign_bench.py", "--decline-child", url])[2]
                        )
                        for _ in range(args.repeat)
                    ]
                    row = {
                        "size": size,
                        "db": kind,
                        "whole_first_s": whole_first,
                        "whole_rss_mb": whole_rss,
                        "whole_first_inner": json.loads(out)["timings_s"],
                        **decline_medians(decline_runs),
                    }
                    results.append(row)
                    print(json.dumps(row), file=sys.stderr)
                    continue
                solver_runs = []
                for _ in range(args.repeat):
                    _, rss, out = child([python, "bench/assign_bench.py", "--solver-child", url])
                    solver_runs.append({**json.loads(out), "process_rss_mb": rss})
                whole_first, whole_rss, out = child(
                    [python, "-m", "hosen", "assign", "--json"], {"HOSEN_DATABASE_URL": url}
                )
                first_doc = json.loads(out)
                reruns = [
                    child([python, "-m", "hosen", "assign", "--json"], {"HOSEN_DATABASE_URL": url})
                    for _ in range(args.repeat)
                ]
                rerun_doc = json.loads(reruns[-1][2])
                decline_runs = [
                    json.loads(child([python, "bench/assign_bench.py", "--decline-child", url])[2])
                    for _ in range(args.repeat)
                ]
                s = solver_runs[-1]
                row = {
                    "size": size,
                    "db": kind,
                    **{k: s[k] for k in s if not k.endswith("_s") and "rss" not in k},
                    **{
                        k: statistics.median(run[k] for run in solver_runs)
                        for k in s
                        if k.endswith("_s")
                    },
                    "solver_rss_mb": max(run["rss_peak_mb"] for run in solver_runs),
                    "whole_first_s": whole_first,
                    "whole_first_written": sum(first_doc["changes"]["buddy"].values())
                    + sum(first_doc["changes"]["role"].values()),
                    "whole_first_inner": first_doc["timings_s"],
                    "whole_rerun_s": statistics.median(r[0] for r in reruns),
                    "whole_rerun_changes": sum(rerun_doc["changes"]["buddy"].values())
                    + sum(rerun_doc["changes"]["role"].values()),
                    "whole_rss_mb": max(whole_rss, *(r[1] for r in reruns)),
                    "solver_process_rss_mb": max(run["process_rss_mb"] for run in solver_runs),
                    **decline_medians(decline_runs),
                }
                results.append(row)
                print(json.dumps(row), file=sys.stderr)
        finally:
            for kind, url in databases:
                if kind == "postgresql":
                    drop_postgres(url)
                else:
                    Path(make_url(url).database or "").unlink(missing_ok=True)
    if args.declines_only:
        print_declines(results)
        for r in results:
            print(
                f"  {r['size']:,} {r['db']}: first `hosen assign` {r['whole_first_s']:.1f} s, "
                f"peak RSS {r['whole_rss_mb']:.0f} MB, inner {r['whole_first_inner']}"
            )
        return 0
    print_table(results)
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\n## Assignment engine benchmark (medians; shared 2-core machine, noisy)\n")
    print(
        "| people | db | residents | volunteers | arcs (priced) | covered / upper bound | with backup | candidates s | search + flows + pricing s (flows, pricing) | walking proven | core s | peak RSS MB: solver / command | hosen assign first (written) | hosen assign re-run (changes) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']:,} | {r['db']} | {r['residents']:,} | {r['volunteers']:,} | {r['arcs']:,} ({r['priced']:,}) "
            f"| {r['covered']:,} / {r['upper_bound']:,} | {r['with_backup']:,} | {r['candidates_s']:.2f} "
            f"| {r['solve_s']:.2f} ({r['flow_s']:.2f}, {r['pricing_s']:.2f}) | {r['walking_proven']} | {r['core_total_s']:.2f} | {r['solver_rss_mb']:.0f} / {r['whole_rss_mb']:.0f} "
            f"| {r['whole_first_s']:.1f} s ({r['whole_first_written']:,}) | {r['whole_rerun_s']:.1f} s ({r['whole_rerun_changes']}) |"
        )
    print(
        "\n| people | db | optimal primaries: covered, weighted, km | greedy nearest: covered, weighted, km | OR-Tools s | scipy LAPJVsp s | same optimum |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']:,} | {r['db']} | {r['optimal_primaries_covered']:,}, {r['optimal_primaries_weighted']:,}, {r['optimal_primaries_km']:,.1f} "
            f"| {r['greedy_covered']:,}, {r['greedy_weighted']:,}, {r['greedy_km']:,.1f} "
            f"| {r['ortools_s']:.2f} | {r['scipy_s']:.2f} | {r['same_optimum']} |"
        )
    print(
        "\n| people | db | primaries' walking, default: km, proven, core s | --prove-walking: km, pairs priced, pricing s, core s |"
    )
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']:,} | {r['db']} | {r['optimal_primaries_km']:,.1f}, {r['optimal_primaries_proven']}, {r['optimal_primaries_core_s']:.2f} "
            f"| {r['proven_primaries_km']:,.1f}, {r['proven_primaries_priced']:,}, {r['proven_primaries_pricing_s']:.2f}, {r['proven_primaries_core_s']:.2f} |"
        )
    print_declines(rows)
    print("\ntiers (met / demand) and the causes of the buddy gaps:")
    for r in rows:
        print(f"  {r['size']:,} {r['db']}: {'; '.join(r['tiers'])}; causes {r['causes']}")
    print("\nwhole `hosen assign` inner timings (first run):")
    for r in rows:
        print(f"  {r['size']:,} {r['db']}: {r['whole_first_inner']}")


def print_declines(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| people | db | seat | town | found someone | found: median s (max, CPU s) | found nobody: median s (max, CPU s) |"
    )
    print("|---|---|---|---|---|---|---|")
    names = {
        "buddy": "buddy pair",
        "role_zone": "zone role",
        "role_shelter": "shelter role",
        "role_town": "town-wide role",
    }

    def cell(r: dict[str, Any], label: str, name: str) -> str:
        if r[f"{label}_{name}_s"] < 0:
            return "-"
        return (
            f"{r[f'{label}_{name}_s']:.2f} ({r[f'{label}_{name}_max_s']:.2f}, "
            f"{r[f'{label}_{name}_cpu_s']:.2f})"
        )

    for r in rows:
        for kind, seat in names.items():
            for variant, town in (("", "as is"), ("_spare", "+ a spare volunteer")):
                label = f"decline_{kind}{variant}"
                print(
                    f"| {r['size']:,} | {r['db']} | {seat} | {town} | {r[f'{label}_found']} "
                    f"| {cell(r, label, 'found')} | {cell(r, label, 'missed')} |"
                )


if __name__ == "__main__":
    sys.exit(main())
