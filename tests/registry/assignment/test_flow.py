"""The min-cost flow's potentials: a dual certificate that the flow is optimal."""

from __future__ import annotations

import numpy as np
import pytest

from registry.assignment import flow


def transport(rng: np.random.Generator, sources: int, sinks: int) -> flow.Network:
    """A random transportation problem with a few negative costs, always feasible."""
    tail, head = np.meshgrid(np.arange(sources), np.arange(sinks), indexing="ij")
    keep = rng.random(tail.size) < 0.6
    tail, head = tail.ravel()[keep], sources + head.ravel()[keep]
    cost = rng.integers(-50, 1000, size=len(tail))
    sink = sources + sinks
    # Every source can also send straight to the sink, at a price: feasible whatever the arcs.
    tail = np.concatenate([tail, np.arange(sources), sources + np.arange(sinks)])
    head = np.concatenate([head, np.full(sources, sink), np.full(sinks, sink)])
    cost = np.concatenate([cost, np.full(sources, 5000), np.zeros(sinks, dtype=np.int64)])
    capacity = np.concatenate([
        rng.integers(1, 3, size=len(tail) - sources - sinks), np.full(sources, 10),
        rng.integers(1, 4, size=sinks),
    ])  # fmt: skip
    supply = np.zeros(sink + 1, dtype=np.int64)
    supply[:sources] = rng.integers(0, 3, size=sources)
    supply[sink] = -supply.sum()
    return flow.Network(sink + 1, tail, head, capacity.astype(np.int64), cost, supply)


@pytest.mark.parametrize("seed", range(20))
def test_potentials_price_every_residual_arc_at_zero_or_more(seed: int) -> None:
    network = transport(np.random.default_rng(seed), 8, 6)
    flows = flow.solve(network)
    p = flow.potentials(network, flows)
    reduced = network.cost + p[network.tail] - p[network.head]
    assert (reduced[flows < network.capacity] >= 0).all()  # forward residual arcs
    assert (reduced[flows > 0] <= 0).all()  # backward residual arcs


def test_no_arc_priced_at_zero_or_more_lowers_the_cost() -> None:
    # The proof the buddies rely on: arcs whose reduced cost is not negative cannot help.
    rng = np.random.default_rng(7)
    network = transport(rng, 8, 6)
    flows = flow.solve(network)
    p = flow.potentials(network, flows)
    total = int((flows * network.cost).sum())
    tails, heads = rng.integers(0, 8, size=30), rng.integers(8, 14, size=30)
    wider = flow.Network(
        network.nodes,
        np.concatenate([network.tail, tails]),
        np.concatenate([network.head, heads]),
        np.concatenate([network.capacity, np.full(30, 5)]),
        np.concatenate([network.cost, p[heads] - p[tails] + rng.integers(0, 3, size=30)]),
        network.supply,
    )
    assert int((flow.solve(wider) * wider.cost).sum()) == total
