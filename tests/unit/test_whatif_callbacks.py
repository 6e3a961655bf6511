"""Callbacks in the what-if loop: kept places, rings that cost agent time, retries, failures.

Hand-built workloads check the arithmetic call by call; hypothesis checks
that with callbacks the queue still serves in production's order and the
value policy's overtaking bound still holds, recounted by brute force over
each call's waiting spells (a callback out for its retry delay is not waiting).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.queue.policy import (
    CallbackRule,
    fifo_policy,
    serve_order,
    value_policy,
)
from callcenter.simulation.des import EPOCH, Callbacks, Outcome, serve
from callcenter.simulation.figures import tier_figures
from callcenter.simulation.history import HistoryCall
from callcenter.simulation.whatif import WhatIfError
from callcenter.simulation.whatif_run import CallbackOptions, history_plan, replay_history
from callcenter.simulation.workload import Traffic, Workload, synthetic

TIERS = ("platinum", "gold", "silver", "standard")
EVERYONE = CallbackRule(after_seconds=0)
nan = math.nan


def _workload(
    arrival: list[float],
    handle: list[float],
    *,
    tier: list[int] | None = None,
    patience: list[float] | None = None,
    callback: list[float] | None = None,
    ring: list[float] | None = None,
) -> Workload:
    n = len(arrival)
    return Workload(
        tiers=TIERS,
        arrival=arrival,
        tier=tier or [3] * n,
        patience=patience or [math.inf] * n,
        handle=handle,
        value=[float(10**i) for i in range(n)],
        callback_draw=callback or [1.0] * n,  # 1.0: takes it only at a share of 1
        ring_draw=ring or [1.0] * n,  # 1.0: answers the first ring it can
    )


def test_a_caller_who_takes_the_callback_never_abandons_and_is_rung_in_their_turn() -> None:
    # One agent busy until 100 s; caller 1 would hang up at 6 s, caller 2 at 7 s.
    load = _workload(
        [0.0, 1.0, 2.0], [100.0, 10.0, 10.0], patience=[math.inf, 5.0, 5.0],
        callback=[1.0, 0.2, 0.9],
    )  # fmt: skip
    cb = Callbacks(EVERYONE, take=0.5, answer=1.0, ring_seconds=30.0, pickup_seconds=10.0)
    held = serve(load, fifo_policy(), 1)
    assert held.abandoned_at[1:] == [6.0, 7.0]
    out = serve(load, fifo_policy(), 1, cb)
    # Both were offered (everyone who waits); only caller 1 drew under the share.
    assert out.offered == bytes([0, 1, 1]) and out.taken == bytes([0, 1, 0])
    assert math.isnan(out.abandoned_at[1]) and out.abandoned_at[2] == 7.0
    # Rung when the agent frees at 100 s, answered after the 10 s pickup.
    assert out.rings_at == {1: [100.0]} and out.answered_at[1] == 110.0
    assert out.ring_seconds == {1: 10.0}


def test_a_callback_keeps_its_place_and_the_ring_costs_the_agent() -> None:
    # Fifo, one agent busy until 100 s: callers at 1, 2 (takes it) and 3 keep their order.
    load = _workload([0.0, 1.0, 2.0, 3.0], [100.0, 10.0, 10.0, 10.0], callback=[1.0, 1.0, 0.1, 1.0])
    cb = Callbacks(EVERYONE, take=0.5, answer=1.0, pickup_seconds=10.0)
    held = serve(load, fifo_policy(), 1)
    out = serve(load, fifo_policy(), 1, cb)
    assert held.answered_at == [0.0, 100.0, 110.0, 120.0]
    # Caller 2 is rung at 110 s, exactly when they would have been answered holding;
    # the 10 s of ringing delay caller 3 by as much.
    assert out.rings_at == {2: [110.0]}
    assert out.answered_at == [0.0, 100.0, 120.0, 130.0]
    figures = tier_figures(load, out, target=200.0)[-1]
    assert (figures.offered, figures.callbacks, figures.answered_on_ring) == (3, 1, 1)
    assert (figures.rings, figures.ring_agent_seconds) == (1, 10.0)
    # Served as if holding: with a free ring, the takes are the held answers, to the call.
    instant = Callbacks(EVERYONE, take=1.0, answer=1.0, pickup_seconds=0.0)
    assert serve(load, fifo_policy(), 1, instant).answered_at == held.answered_at


def test_a_valuable_callback_keeps_its_credit() -> None:
    # Value policy: a gold caller (60 s credit) who takes the callback at 30 s
    # is still served before the standard caller who arrived at 1 s.
    load = _workload([0.0, 1.0, 30.0], [100.0, 10.0, 10.0], tier=[3, 3, 1], callback=[1, 1, 0.1])
    cb = Callbacks(EVERYONE, take=0.5, answer=1.0, pickup_seconds=5.0)
    out = serve(load, value_policy(), 1, cb)
    assert out.rings_at == {2: [100.0]}
    assert out.answered_at == [0.0, 115.0, 105.0]


def test_unanswered_rings_free_the_agent_retry_later_then_fail() -> None:
    # Caller 1 takes it and never answers: rung at 50 s (30 s ring, agent free at
    # 80 s), back at 180 s, rung again at once by the idle agent, failed at 210 s.
    # Caller 2, arriving at 60 s, is answered at 80 s by the agent the ring freed.
    load = _workload([0.0, 1.0, 60.0], [50.0, 10.0, 20.0], callback=[1.0, 0.1, 1.0])
    cb = Callbacks(
        EVERYONE, take=0.5, answer=0.0, attempts=2, retry_seconds=100.0, ring_seconds=30.0
    )
    out = serve(load, fifo_policy(), 1, cb)
    assert out.rings_at == {1: [50.0, 180.0]}
    assert out.failed_at[1] == 210.0
    assert math.isnan(out.answered_at[1]) and math.isnan(out.abandoned_at[1])
    assert out.answered_at[2] == 80.0
    assert out.ring_seconds == {1: 60.0}
    everyone = tier_figures(load, out, target=20.0)[-1]
    assert (everyone.abandoned, everyone.callback_failed, everyone.answered) == (0, 1, 2)
    assert everyone.abandon_rate == 0.0
    assert everyone.callback_failed_rate == pytest.approx(1 / 3)
    assert everyone.lost_rate == pytest.approx(1 / 3)
    assert everyone.value_abandoned == 10.0  # the failed caller's value is lost
    assert (everyone.rings, everyone.ring_agent_seconds) == (2, 60.0)
    # Service level counts the failed callback as missed: 2 of 3 calls within 20 s.
    assert everyone.service_level == pytest.approx(2 / 3)


def test_a_returning_callback_is_served_by_its_old_key() -> None:
    # Caller 1 answers the second ring (share 0.5, draw 0.4). Its first ring at 50 s
    # goes unanswered; back at 180 s it waits ahead of caller 3 (arrived at 100 s),
    # and when the agent frees at 280 s it is rung first, and picks up at 290 s.
    load = _workload(
        [0.0, 1.0, 60.0, 100.0], [50.0, 10.0, 200.0, 10.0],
        callback=[1.0, 0.1, 1.0, 1.0], ring=[1.0, 0.4, 1.0, 1.0],
    )  # fmt: skip
    cb = Callbacks(
        EVERYONE, take=0.5, answer=0.5, attempts=3, retry_seconds=100.0,
        ring_seconds=30.0, pickup_seconds=10.0,
    )  # fmt: skip
    out = serve(load, fifo_policy(), 1, cb)
    assert out.rings_at[1] == [50.0, 280.0]
    assert out.answered_at == [0.0, 290.0, 80.0, 300.0]
    # Caller 2 was answered while caller 1 was out for its delay: no overtaking;
    # caller 1 waiting again is older than caller 3, who is not served before it.
    assert out.max_overtaking == 0.0


def test_the_offer_follows_the_estimated_wait_at_arrival() -> None:
    # One agent, mean handle 40 s: production's EWT is (calls ahead + 1) x 40 s.
    load = _workload([0.0, 1.0, 2.0, 3.0], [100.0, 10.0, 10.0, 40.0], tier=[3, 3, 3, 1])
    rule = CallbackRule(after_seconds=80.0)  # 2 x 40 s: from the second caller waiting
    out = serve(load, fifo_policy(), 1, Callbacks(rule, take=0.0, answer=1.0))
    assert out.offered == bytes([0, 0, 1, 1])
    gold_only = CallbackRule(after_seconds=0.0, tiers=frozenset({"gold"}))
    out = serve(load, fifo_policy(), 1, Callbacks(gold_only, take=0.0, answer=1.0))
    assert out.offered == bytes([0, 0, 0, 1])
    # The offer does not make anyone take it: a share of 0 leaves everyone holding.
    assert out.taken == bytes(4) and not out.rings_at


def test_the_ring_a_caller_answers_is_geometric_and_monotone_in_the_share() -> None:
    cb = Callbacks(EVERYONE, take=1.0, answer=0.5)
    assert [cb.answering_ring(d) for d in (1.0, 0.6, 0.5, 0.3, 0.25, 0.2)] == [1, 1, 2, 2, 3, 3]
    assert Callbacks(EVERYONE, take=1.0, answer=1.0).answering_ring(1e-9) == 1
    assert Callbacks(EVERYONE, take=1.0, answer=0.0).answering_ring(1.0) == math.inf
    draws = [i / 100 for i in range(1, 101)]
    for low, high in ((0.2, 0.5), (0.5, 0.9)):
        slow, fast = (Callbacks(EVERYONE, take=1.0, answer=a) for a in (low, high))
        assert all(fast.answering_ring(d) <= slow.answering_ring(d) for d in draws)


def test_a_workload_without_callback_draws_is_refused() -> None:
    load = Workload(TIERS, [0.0], [0], [math.inf], [1.0], [1.0])
    with pytest.raises(ValueError, match="callback and ring draws"):
        serve(load, fifo_policy(), 1, Callbacks(EVERYONE, take=1.0, answer=1.0))


def _takes(load: Workload, out: Outcome, cb: Callbacks) -> list[tuple[float, int]]:
    """Every time an agent took a call: (when, call), rings included."""
    takes = []
    for j in range(len(load)):
        if j in out.rings_at:
            takes += [(t, j) for t in out.rings_at[j]]
        elif not math.isnan(out.answered_at[j]):
            takes.append((out.answered_at[j], j))
    return takes


def _waiting_spells(load: Workload, out: Outcome, cb: Callbacks) -> list[list[tuple[float, float]]]:
    """Each call's spells in the queue, [from, to): a callback leaves it at each ring."""
    spells = []
    for j in range(len(load)):
        start = load.arrival[j]
        mine = []
        for ring in out.rings_at.get(j, []):
            mine.append((start, ring))
            start = ring + cb.ring_seconds + cb.retry_seconds
        if j not in out.rings_at:
            left = out.answered_at[j] if not math.isnan(out.answered_at[j]) else out.abandoned_at[j]
            mine.append((start, left))
        spells.append(mine)
    return spells


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
    after=st.sampled_from([0.0, 30.0, 120.0]),
    take=st.floats(0.0, 1.0),
    answer=st.floats(0.0, 1.0),
    attempts=st.integers(1, 4),
    retry=st.sampled_from([5.0, 60.0, 300.0]),
)
def test_with_callbacks_the_order_and_the_bound_still_hold(
    credits: dict[str, float],
    seed: int,
    agents: int,
    occupancy: float,
    patience: float,
    after: float,
    take: float,
    answer: float,
    attempts: int,
    retry: float,
) -> None:
    aht = 60.0
    rate = agents * occupancy / aht
    load = synthetic(Traffic(rate, aht, 200 / rate, patience=patience), seed)
    cb = Callbacks(
        CallbackRule(after_seconds=after), take, answer, attempts=attempts, retry_seconds=retry
    )
    policy = value_policy(credits)
    out = serve(load, policy, agents, cb)
    n = len(load)
    # Every call ends exactly one way, and a callback never abandons.
    for j in range(n):
        ends = [not math.isnan(x[j]) for x in (out.answered_at, out.abandoned_at, out.failed_at)]
        assert sum(ends) == 1
        if out.taken[j]:
            assert math.isnan(out.abandoned_at[j])
            assert 1 <= len(out.rings_at[j]) <= attempts
        else:
            assert j not in out.rings_at and math.isnan(out.failed_at[j])
    # Whenever an agent takes a call, no call waiting then comes before it in
    # production's order, and no earlier caller waiting then is overtaken by
    # more than the bound; the loop's own measure equals this recount.
    spells = _waiting_spells(load, out, cb)
    rows = [
        (EPOCH + timedelta(seconds=load.arrival[i]), credits[TIERS[load.tier[i]]], i)
        for i in range(n)
    ]
    rank = {cid: r for r, cid in enumerate(serve_order(rows))}
    worst = 0.0
    for s, j in _takes(load, out, cb):
        for i in range(n):
            if i != j and any(a <= s < b for a, b in spells[i]):
                assert rank[j] < rank[i], f"call {j} taken at {s} before {i}, who comes first"
                if i < j:
                    worst = max(worst, load.arrival[j] - load.arrival[i])
    assert out.max_overtaking <= policy.overtaking_bound
    assert out.max_overtaking == pytest.approx(worst, abs=1e-6)
    # Fifo with callbacks overtakes nobody, returning callbacks included.
    assert serve(load, fifo_policy(), agents, cb).max_overtaking == 0.0


def test_callbacks_off_change_nothing_and_both_runs_see_the_same_callers() -> None:
    load = synthetic(Traffic(rate=1.0, aht=9.0, seconds=3600.0, patience=40.0), 5)
    never = Callbacks(CallbackRule(after_seconds=86_400), take=1.0, answer=1.0)
    plain = serve(load, value_policy(), 9)
    unused = serve(load, value_policy(), 9, never)
    assert unused.answered_at == pytest.approx(plain.answered_at, nan_ok=True)
    assert unused.abandoned_at == pytest.approx(plain.abandoned_at, nan_ok=True)
    assert not any(unused.offered)
    # The callers' callback draws come from their own streams: the rest is unchanged.
    assert len(load.callback_draw) == len(load.ring_draw) == len(load)
    assert all(0.0 < d <= 1.0 for d in load.callback_draw + load.ring_draw)
    assert load.callback_draw != load.ring_draw


def _history(n: int) -> list[HistoryCall]:
    """``n`` calls a second apart, each held 100 s by an agent; every third hung up after 30 s."""
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    calls = []
    for i in range(n):
        at = start + timedelta(seconds=i)
        answered = i % 3 != 0
        calls.append(
            HistoryCall(
                id=i + 1,
                queue="general",
                tier="gold" if i % 2 else None,
                state="ended",
                enqueued_at=at,
                connected_at=at + timedelta(seconds=5) if answered else None,
                ended_at=at + timedelta(seconds=105 if answered else 30),
                wrapped_up_at=None,
                net_value=100.0,
            )
        )
    return calls


def test_a_replay_of_history_runs_with_and_without_callbacks() -> None:
    common = {
        "since": "7d", "queue": None, "agents": 2, "policy_names": ["fifo"],
        "credits": None, "target": "80/20", "seed": 1, "runs": 2,
    }  # fmt: skip
    calls = _history(30)
    options = CallbackOptions(after=0.0, take=1.0, compare=True, tiers="unidentified")
    hp = history_plan(calls, TIERS, **common, callbacks=options)
    comparison, _, outcomes = replay_history(hp)
    assert comparison.without_callbacks is not None
    rows = {row.tier: row.figures for row in comparison.reports[0].tiers}
    unidentified = rows["unidentified"]["callbacks"]
    assert unidentified is not None and unidentified.mean > 0
    assert rows["gold"]["offered"] is not None and rows["gold"]["offered"].mean == 0
    # The replay's draws are per caller: the same in every run of the same seed.
    assert replay_history(hp)[2][0][0].taken == outcomes[0][0].taken
    bad = CallbackOptions(after=0.0, tiers="diamond")
    with pytest.raises(WhatIfError, match=r"^--callback-tiers: unknown tier 'diamond'"):
        history_plan(calls, TIERS, **common, callbacks=bad)
