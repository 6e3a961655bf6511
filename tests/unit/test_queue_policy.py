from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from callcenter.queue.policy import (
    DEFAULT_CREDITS,
    credit,
    explain_credit,
    fifo_policy,
    serve_order,
    service_key,
    strict_policy,
    value_policy,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIERS = list(DEFAULT_CREDITS)


def test_valuable_caller_counts_as_having_called_earlier() -> None:
    policy = value_policy()
    assert service_key(T0, credit(policy, "platinum")) == T0 - timedelta(seconds=120)
    assert service_key(T0, credit(policy, "standard")) == T0


def test_credit_is_bounded_even_when_set_explicitly() -> None:
    policy = value_policy()
    assert credit(policy, "standard", explicit=10_000) == policy.max_credit
    assert credit(policy, "standard", explicit=-50) == 0.0
    assert credit(policy, "no-such-tier") == 0.0


def test_fifo_serves_in_arrival_order() -> None:
    policy = fifo_policy()
    calls = [(T0 + timedelta(seconds=i), credit(policy, t), i) for i, t in enumerate(TIERS)]
    assert serve_order(calls) == [0, 1, 2, 3]


# One event: (seconds since the previous event, arrival tier or None for "serve one").
events = st.lists(
    st.tuples(st.floats(min_value=0, max_value=90), st.one_of(st.none(), st.sampled_from(TIERS))),
    min_size=1,
    max_size=120,
)


def _run(
    policy_credits: dict[str, float], evs: list[tuple[float, str | None]]
) -> list[tuple[float, list[float]]]:
    """Serve with the value policy; return (arrival of served, arrivals still waiting before)."""
    policy = value_policy(policy_credits)
    now = 0.0
    waiting: list[tuple[float, float, int]] = []  # (key, arrival, id)
    log: list[tuple[float, list[float]]] = []
    for i, (gap, tier) in enumerate(evs):
        now += gap
        if tier is not None:
            waiting.append((now - credit(policy, tier), now, i))
        elif waiting:
            waiting.sort()
            _, arrival, _ = waiting.pop(0)
            log.append((arrival, [a for _, a, _ in waiting if a < arrival]))
    return log


credit_maps = st.dictionaries(
    st.sampled_from(TIERS), st.floats(min_value=0, max_value=600), min_size=1
).map(lambda d: {t: d.get(t, 0.0) for t in TIERS})


@given(credit_maps, events)
def test_nobody_is_overtaken_by_a_caller_much_later_than_them(
    credits: dict[str, float], evs: list[tuple[float, str | None]]
) -> None:
    bound = value_policy(credits).overtaking_bound
    for served_arrival, earlier_still_waiting in _run(credits, evs):
        for arrival in earlier_still_waiting:
            assert served_arrival - arrival <= bound + 1e-9


def test_strict_priority_starves_the_lowest_tier() -> None:
    """The alternative we compare against: a steady stream of platinum callers
    keeps a standard caller waiting forever, far past any bound."""
    policy = strict_policy(TIERS)
    calls = [(T0, credit(policy, "standard"), 0)]
    calls += [(T0 + timedelta(hours=h), credit(policy, "platinum"), h) for h in range(1, 50)]
    assert serve_order(calls)[-1] == 0  # served after callers who came 49 hours later


def test_value_policy_serves_the_waiting_standard_caller_in_bounded_time() -> None:
    policy = value_policy()
    calls = [(T0, credit(policy, "standard"), 0)]
    calls += [(T0 + timedelta(seconds=30 * k), credit(policy, "platinum"), k) for k in range(1, 50)]
    order = serve_order(calls)
    overtakers = order[: order.index(0)]
    # only platinum callers who arrived within max_credit (120 s) may go first
    assert all(30 * k < policy.overtaking_bound for k in overtakers)
    assert len(overtakers) == 3


def test_the_credit_is_explained_in_words_an_agent_reads() -> None:
    assert explain_credit("gold", 60.0, False) == (
        "gold customer: served as if they had called 60 s earlier"
    )
    assert explain_credit("standard", 0.0, False) == (
        "standard customer: served in order of arrival"
    )
    assert explain_credit(None, 0.0, False) == "unidentified caller: served in order of arrival"
    assert explain_credit("silver", 300.0, True) == ("a supervisor gave this call 300 s of credit")
    strict = strict_policy(["platinum", "gold", "standard"])
    assert explain_credit("platinum", credit(strict, "platinum"), False) == (
        "platinum customer: strict priority, served before every lower tier"
    )
