"""Min-cost flow: the one place the solver library is called, and why its cost scaling is safe.

Both problems have a lexicographic objective: first cover as much as possible (weighted by
priority), then walk as little as possible. Two ways of solving it live here.

The buddies (:mod:`registry.assignment.buddies`) never mix the tiers: their coverage comes from a
max flow and augmenting paths, and their min-cost flow then covers exactly as many residents of
each priority as that, with costs in metres only. That is both exact and fast: OR-Tools' cost
scaling runs one refinement phase per factor of its ``alpha`` in (nodes x largest cost), and the
scaled costs below are some 10^9 at 100,000 people against 1,500 m; measured on that town, one
scaled solve took 1.2 to 1.6 s, the same optimum in metres 0.5 to 0.8 s. (Coarser metres do not
help: distances in tens or hundreds of metres made the scaled solve slower, not faster.)
OR-Tools keeps its duals to itself; :func:`potentials` recomputes them from the solved flow, so
the buddies can price pairs that are not arcs (column generation) and prove their walking least
over every pair within reach.

The roles (:mod:`registry.assignment.roles`, a few thousand arcs) use one integer cost for both
tiers: every unit of coverage is worth ``scale`` times its weight, and distances (metres, minus a
bonus for keeping a current pair) are added as they are.

Why one scale is enough (and how large it must be). Let f be a min-cost flow for the scaled cost
and g any feasible flow that is lexicographically better. g - f is a circulation in the residual
graph of f and splits into simple cycles; the lexicographic order on (coverage, distance) is
compatible with addition, so if g is better, one of those cycles C is lexicographically improving
while its scaled cost is >= 0 (f is optimal). A simple cycle passes the source at most once, so
it changes at most two source arcs: its coverage change is a difference of two unit weights, an
integer, and its distance change is bounded by (bipartite arcs in C) * (largest arc distance +
keep bonus) <= ``path_arcs * spread``. If C raises coverage by >= 1, its scaled cost is at most
``-scale + path_arcs * spread`` < 0 when ``scale > path_arcs * spread``: a contradiction. If C
keeps coverage equal, its cost is its distance change, negative by assumption: a contradiction.
So f is lexicographically optimal. :func:`coverage_scale` returns exactly that bound.

Solver choice, by measurement (``bench/assign_bench.py`` runs both on the same primaries-only
problem and checks they reach the same optimum): OR-Tools' ``SimpleMinCostFlow`` with arcs added
in bulk from numpy arrays, against scipy's sparse assignment (LAPJVsp) on the capacity-expanded
graph, on the scaled problem (an assignment solver cannot hold per-priority counts). They were
level at 10,000 people and scipy about 20% faster at 100,000; the buddies' flow in metres takes
about half the time of the scaled one. OR-Tools stays: it takes capacities and quota seats as they are (scipy needs one column per unit
of room, 3.4 times the edges, and a "nobody" column per resident), serves the roles with the same
code, and works in exact 64-bit integers, which the lexicographic scaling above relies on (scipy
works in floating point). A pure-Python graph library was not considered: the issue measured one
about 300 times slower.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from ortools.graph.python import min_cost_flow

IntArray = npt.NDArray[np.int64]

# OR-Tools multiplies costs by (nodes + 1) inside its cost-scaling algorithm; stay well clear.
_INT64_HEADROOM = 2**62


class FlowError(RuntimeError):
    """The solver refused the network (a bug: the networks built here are always feasible)."""


@dataclass(frozen=True)
class Network:
    """A flow network as parallel arrays, built in bulk."""

    nodes: int
    tail: IntArray
    head: IntArray
    capacity: IntArray
    cost: IntArray
    supply: IntArray  # per node: > 0 gives flow, < 0 takes it


def coverage_scale(*, path_arcs: int, spread: int) -> int:
    """The smallest safe value of one unit of coverage, in distance units (see module docstring).

    ``path_arcs``: most resident-volunteer arcs a simple cycle can use (2 * min(side sizes) + 2);
    ``spread``: the largest arc distance plus the keep bonus (the range of one arc's cost).
    """
    return max(1, path_arcs) * max(1, spread) + 1


def solve(network: Network) -> IntArray:
    """The flow on every arc of a min-cost flow (arcs in the order given)."""
    smcf = min_cost_flow.SimpleMinCostFlow()
    if len(network.tail):
        largest = int(np.abs(network.cost).max())
        if largest * (network.nodes + 1) >= _INT64_HEADROOM:
            raise FlowError("costs too large for a 64-bit solver")
        smcf.add_arcs_with_capacity_and_unit_cost(
            network.tail, network.head, network.capacity, network.cost
        )
    nodes = np.arange(network.nodes, dtype=np.int64)
    smcf.set_nodes_supplies(nodes, network.supply)
    status = smcf.solve()
    if status != smcf.OPTIMAL:
        raise FlowError(f"min-cost flow failed with status {status}")
    if not len(network.tail):
        return np.zeros(0, dtype=np.int64)
    flows: IntArray = smcf.flows(np.arange(len(network.tail), dtype=np.int64))
    return flows


def potentials(network: Network, flows: IntArray) -> IntArray:
    """Node potentials that prove ``flows`` a min-cost flow of ``network``.

    OR-Tools does not expose its duals, so they are recomputed: ``p`` is the shortest-path
    distance in the residual graph from a virtual source joined to every node at cost 0. Then
    ``cost + p[tail] - p[head] >= 0`` on every residual arc (an arc with room forward, an arc with
    flow backward at minus its cost): the reduced costs of the LP's dual. An arc added later with
    a non-negative reduced cost under ``p`` cannot improve the flow (``p`` still proves it
    optimal, by LP duality); one with a negative reduced cost may.

    Bellman-Ford, vectorised: each round relaxes, in one batch, the arcs out of the nodes whose
    distance fell in the round before. The residual graph of an optimal flow has no negative
    cycle, so it ends within ``nodes`` rounds (in practice a few dozen: the sink and the
    per-priority sources are hubs that keep shortest paths short).
    """
    forward = flows < network.capacity
    backward = flows > 0
    tail = np.concatenate([network.tail[forward], network.head[backward]])
    head = np.concatenate([network.head[forward], network.tail[backward]])
    cost = np.concatenate([network.cost[forward], -network.cost[backward]])
    order = np.argsort(tail, kind="stable")
    tail, head, cost = tail[order], head[order], cost[order]
    starts = np.searchsorted(tail, np.arange(network.nodes + 1, dtype=np.int64))
    distance = np.zeros(network.nodes, dtype=np.int64)
    moved = np.arange(network.nodes, dtype=np.int64)
    for _ in range(network.nodes + 1):
        first, count = starts[moved], starts[moved + 1] - starts[moved]
        total = int(count.sum())
        if not total:
            return distance
        # The arcs out of the moved nodes: each node's range [first, first + count), flattened.
        arcs = np.repeat(first - np.cumsum(count) + count, count) + np.arange(total)
        reached = distance[tail[arcs]] + cost[arcs]
        better = reached < distance[head[arcs]]
        if not better.any():
            return distance
        targets = head[arcs][better]
        np.minimum.at(distance, targets, reached[better])
        mark = np.zeros(network.nodes, dtype=bool)
        mark[targets] = True
        moved = np.flatnonzero(mark)
    raise FlowError("negative cycle in the residual graph: the flow was not optimal")
