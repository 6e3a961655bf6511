"""The what-if event loop: Erlang C agreement, the policy's order and bound, starvation.

The Erlang C tolerance is not picked by eye: each run is cut into batches
long against the queue's memory, the spread of the batch means gives the
run's standard error, and the simulation must land within four of them
(t(0.9995, 19) = 3.88, so a correct loop fails on fewer than one seed in a
thousand). The test also requires the tolerance to be less than half the
gap between Erlang C's figures for ``agents`` and ``agents - 1``, so it
cannot pass by being vague: a loop that lost one agent would fail it.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.queue.policy import (
    DEFAULT_CREDITS,
    fifo_policy,
    serve_order,
    strict_policy,
    value_policy,
)
from callcenter.simulation import erlang
from callcenter.simulation.confidence import batch_means, standard_error
from callcenter.simulation.des import EPOCH, serve
from callcenter.simulation.figures import tier_figures
from callcenter.simulation.workload import Traffic, Workload, synthetic

TIERS = ("platinum", "gold", "silver", "standard")
BATCHES = 20
STANDARD_ERRORS = 4.0


def _workload(
    arrival: list[float], tier: list[int], handle: list[float], patience: list[float] | None = None
) -> Workload:
    n = len(arrival)
    return Workload(
        tiers=TIERS,
        arrival=arrival,
        tier=tier,
        patience=patience or [math.inf] * n,
        handle=handle,
        value=[1.0] * n,
    )


@pytest.mark.parametrize(
    ("agents", "occupancy", "calls", "seed"),
    [(10, 0.7, 100_000, 11), (20, 0.8, 150_000, 12), (50, 0.95, 500_000, 13)],
)
def test_fifo_without_abandonment_agrees_with_erlang_c(
    agents: int, occupancy: float, calls: int, seed: int
) -> None:
    aht = 100.0
    rate = agents * occupancy / aht
    load = synthetic(Traffic(rate, aht, calls / rate, patience=math.inf), seed)
    out = serve(load, fifo_policy(), agents)
    start = len(load) // 10  # the queue starts empty: leave out the warm-up
    waits = [a - t for a, t in zip(out.answered_at[start:], load.arrival[start:], strict=True)]
    waited = [1.0 if w > 0 else 0.0 for w in waits]
    for observed, figure in (
        (waited, lambda c: erlang.wait_probability(c, rate * aht)),
        (waits, lambda c: erlang.average_speed_of_answer(c, rate * aht, aht)),
    ):
        expected = figure(agents)
        batches = batch_means(observed, BATCHES)
        tolerance = STANDARD_ERRORS * standard_error(batches)
        assert tolerance < abs(figure(agents - 1) - expected) / 2, "run too short to tell"
        assert sum(batches) / BATCHES == pytest.approx(expected, abs=tolerance)


def _brute_overtaking(load: Workload, answered: list[float], abandoned: list[float]) -> float:
    """The largest gap by which a later arrival was answered while an earlier caller waited."""
    worst = 0.0
    for j, s in enumerate(answered):
        if math.isnan(s):
            continue
        for i in range(j):
            left = answered[i] if not math.isnan(answered[i]) else abandoned[i]
            if load.arrival[i] <= s < left:
                worst = max(worst, load.arrival[j] - load.arrival[i])
    return worst


credit_maps = st.lists(st.integers(0, 300), min_size=4, max_size=4).map(
    lambda xs: dict(zip(TIERS, sorted(xs, reverse=True), strict=True))
)


@settings(max_examples=60, deadline=None)
@given(
    credits=credit_maps,
    seed=st.integers(0, 10_000),
    agents=st.integers(1, 4),
    occupancy=st.floats(0.6, 1.6),
    patience=st.sampled_from([30.0, 120.0, math.inf]),
)
def test_value_serves_in_production_order_and_keeps_its_bound(
    credits: dict[str, float], seed: int, agents: int, occupancy: float, patience: float
) -> None:
    aht = 60.0
    rate = agents * occupancy / aht
    load = synthetic(Traffic(rate, aht, 200 / rate, patience=patience), seed)
    policy = value_policy(credits)
    out = serve(load, policy, agents)
    assert out.max_overtaking <= policy.overtaking_bound
    assert out.max_overtaking == pytest.approx(
        _brute_overtaking(load, out.answered_at, out.abandoned_at), abs=1e-6
    )
    # Whenever a waiting call is answered, no call still waiting comes before it
    # in the order the production queue serves (policy.serve_order).
    rows = [
        (EPOCH + timedelta(seconds=load.arrival[i]), credits[TIERS[load.tier[i]]], i)
        for i in range(len(load))
    ]
    rank = {cid: r for r, cid in enumerate(serve_order(rows))}
    for j, s in enumerate(out.answered_at):
        if math.isnan(s) or s == load.arrival[j]:
            continue
        for i in range(len(load)):
            left = out.answered_at[i] if not math.isnan(out.answered_at[i]) else out.abandoned_at[i]
            if i != j and load.arrival[i] <= s < left:
                assert rank[j] < rank[i], f"call {j} answered before {i}, who comes first"


def test_overtaking_is_measured_by_arrival_gap() -> None:
    # One agent busy until 100 s; a standard caller at 1 s, a platinum caller at 30 s.
    load = _workload([0.0, 1.0, 30.0], [3, 3, 0], [100.0, 10.0, 10.0])
    out = serve(load, value_policy(DEFAULT_CREDITS), 1)
    assert out.answered_at == [0.0, 110.0, 100.0]
    assert out.max_overtaking == pytest.approx(29.0)
    assert out.overtaking_pair == (1, 2)
    fifo = serve(load, fifo_policy(), 1)
    assert fifo.answered_at == [0.0, 100.0, 110.0] and fifo.max_overtaking == 0.0


def test_a_caller_whose_patience_runs_out_hangs_up_and_frees_no_agent() -> None:
    load = _workload([0.0, 1.0, 2.0], [3, 3, 3], [50.0, 5.0, 5.0], [math.inf, 10.0, math.inf])
    out = serve(load, fifo_policy(), 1)
    assert math.isnan(out.answered_at[1]) and out.abandoned_at[1] == 11.0
    assert out.answered_at[2] == 50.0


def test_equal_credits_make_value_fifo_call_for_call() -> None:
    load = synthetic(Traffic(rate=1.0, aht=9.0, seconds=3600.0, patience=40.0), 5)
    fifo = serve(load, fifo_policy(), 9)
    same = serve(load, value_policy(dict.fromkeys(TIERS, 60.0)), 9)
    differs = serve(load, value_policy(DEFAULT_CREDITS), 9)
    assert same.answered_at == pytest.approx(fifo.answered_at, nan_ok=True)
    assert same.abandoned_at == pytest.approx(fifo.abandoned_at, nan_ok=True)
    # The comparison can tell policies apart: default credits reorder this load.
    assert differs.answered_at != pytest.approx(fifo.answered_at, nan_ok=True)


def test_strict_starves_the_lowest_tier_under_overload_and_value_does_not() -> None:
    # 150 % load: gold alone is 90 % of the agents, so strict priority serves
    # gold and leaves standard callers a tenth of the agents for 60 % of the load.
    mix = (("gold", 0.6), ("standard", 0.4))
    traffic = Traffic(rate=15 / 60, aht=60.0, seconds=4 * 3600.0, patience=300.0, tier_mix=mix)
    load = synthetic(traffic, 7)
    strict = tier_figures(load, serve(load, strict_policy(["gold", "standard"]), 10), 20.0)
    value = tier_figures(load, serve(load, value_policy(DEFAULT_CREDITS), 10), 20.0)
    gold, standard = strict[0], strict[1]
    assert (gold.tier, standard.tier) == ("gold", "standard")
    assert (standard.abandon_rate or 0) > 0.6  # starved
    assert (gold.abandon_rate or 0) < (standard.abandon_rate or 0) / 5
    # Value's bounded credit shares the shortfall: standard callers fare far better.
    assert (value[1].abandon_rate or 0) < 0.5


def test_policies_see_the_same_calls() -> None:
    traffic = Traffic(rate=0.5, aht=30.0, seconds=600.0)
    assert synthetic(traffic, 3) == synthetic(traffic, 3)
    assert synthetic(traffic, 3) != synthetic(traffic, 4)
    patient = synthetic(Traffic(rate=0.5, aht=30.0, seconds=600.0, patience=500.0), 3)
    assert patient.arrival == synthetic(traffic, 3).arrival  # patience has its own stream
