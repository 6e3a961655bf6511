"""Erlang C against its closed form and textbook cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.simulation import erlang


def _closed_form(agents: int, load: float) -> float:
    """Erlang C by the factorial formula: fine for small counts, independent of the recursion."""
    top = load**agents / math.factorial(agents) * agents / (agents - load)
    return top / (sum(load**k / math.factorial(k) for k in range(agents)) + top)


def test_small_cases_by_hand() -> None:
    assert erlang.erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang.erlang_b(2, 1.0) == pytest.approx(0.2)
    assert erlang.wait_probability(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang.wait_probability(2, 1.0) == pytest.approx(1 / 3)
    # M/M/1 with rho 0.5 and a 10 s mean: mean wait rho / (1 - rho) * 10 s.
    assert erlang.average_speed_of_answer(1, 0.5, 10.0) == pytest.approx(10.0)


@given(st.integers(1, 40), st.floats(0.01, 0.99))
def test_recursion_equals_the_closed_form(agents: int, occupancy: float) -> None:
    load = agents * occupancy
    assert erlang.wait_probability(agents, load) == pytest.approx(_closed_form(agents, load))


def test_service_level_at_zero_seconds_is_the_share_answered_at_once() -> None:
    c = erlang.wait_probability(10, 8.0)
    assert erlang.service_level(10, 8.0, 180.0, 0.0) == pytest.approx(1 - c)
    assert erlang.service_level(10, 8.0, 180.0, 20.0) > 1 - c


def test_overload_has_no_finite_answer() -> None:
    assert erlang.wait_probability(5, 5.0) == 1.0
    assert erlang.average_speed_of_answer(5, 6.0, 100.0) == math.inf
    assert erlang.service_level(5, 6.0, 100.0, 20.0) == 0.0


def test_hundreds_of_agents_stay_finite() -> None:
    c = erlang.wait_probability(500, 480.0)
    assert 0.0 < c < 1.0


@given(st.floats(10.0, 5000.0), st.floats(30.0, 900.0), st.sampled_from([0.7, 0.8, 0.9]))
def test_agents_needed_is_the_fewest_that_meet_the_target(
    per_hour: float, aht: float, share: float
) -> None:
    rate = per_hour / 3600.0
    n = erlang.agents_needed(rate, aht, share, 20.0)
    load = rate * aht
    assert erlang.service_level(n, load, aht, 20.0) >= share
    assert n == 1 or erlang.service_level(n - 1, load, aht, 20.0) < share


def test_agents_needed_for_a_textbook_case() -> None:
    # The usual worked example: 100 calls in half an hour of 3 minutes each
    # (10 Erlangs), 80 % in 20 s: 13 agents just miss it, 14 make it.
    assert erlang.agents_needed(200 / 3600, 180.0, 0.8, 20.0) == 14
    assert erlang.service_level(13, 10.0, 180.0, 20.0) == pytest.approx(0.7956, abs=1e-4)
