"""The simulation's pure parts: draws, the caller mix, and the summary's arithmetic."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from callcenter.agent_assist.knowledge.questions import AnswerKind, QuestionFields, check_answer
from callcenter.config import DEFAULT_TIER_THRESHOLDS
from callcenter.simulation.distributions import answer_for, lognormal, patience
from callcenter.simulation.figures import quantile
from callcenter.simulation.population import Customer, build
from callcenter.simulation.summary import CallFact, overtaken, tier_figures

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def _fact(
    n: int, arrived: float, answered: float | None, *, tier: str = "standard",
    ended: float | None = None, state: str = "completed", cut_off: bool = False,
) -> CallFact:  # fmt: skip
    def at(s: float | None) -> datetime | None:
        return None if s is None else T0 + timedelta(seconds=s)

    return CallFact(
        id=n, queue="general", state=state, tier=tier, enqueued_at=T0 + timedelta(seconds=arrived),
        connected_at=at(answered), ended_at=at(ended if ended is not None else answered),
        cut_off=cut_off,
    )  # fmt: skip


def test_lognormal_keeps_its_mean_and_zero_means_no_time() -> None:
    rng = random.Random(3)
    draws = [lognormal(rng, 16.0, 0.6) for _ in range(20_000)]
    assert statistics.fmean(draws) == pytest.approx(16.0, rel=0.03)
    assert lognormal(rng, 0.0, 0.6) == 0.0
    assert patience(rng, float("inf")) == float("inf")


@pytest.mark.parametrize(
    "question",
    [
        {"key": "a", "kind": "yes_no", "choices": []},
        {"key": "b", "kind": "choice", "choices": ["phone", "email", "sms"]},
        {"key": "c", "kind": "number", "choices": [], "min_value": 0, "max_value": 20},
        {"key": "d", "kind": "number", "choices": [], "min_value": 2.5, "max_value": None},
        {"key": "e", "kind": "text", "choices": []},
    ],
)
def test_every_drawn_answer_is_one_the_service_accepts(question: dict[str, Any]) -> None:
    fields = QuestionFields(
        text="?",
        kind=AnswerKind(question["kind"]),
        choices=question["choices"],
        min_value=question.get("min_value"),
        max_value=question.get("max_value"),
    )
    rng = random.Random(1)
    seen = {check_answer(fields, answer_for(rng, question)) for _ in range(200)}
    assert len(seen) > 1  # spread over what the question takes, so follow-ups come up


def test_the_mix_rings_every_tier_and_every_kind_of_caller() -> None:
    people = [
        Customer(f"C{i}", f"N{i}", tier, Decimal(v), (f"+1212555{i:04d}",))
        for i, (tier, v) in enumerate(
            [("platinum", 30000)] * 2 + [("gold", 6000)] * 10 + [("standard", 10)] * 200
        )
    ]
    # two customers of one household share a number
    people.append(Customer("H1", "Hana", "silver", Decimal(2000), ("+12125559999",)))
    people.append(Customer("H2", "Hugo", "silver", Decimal(2000), ("+12125559999",)))
    population = build(people, DEFAULT_TIER_THRESHOLDS, "US")
    assert [p for p, _ in population.households] == ["+12125559999"]
    rng = random.Random(5)
    callers = [population.draw(rng) for _ in range(3000)]
    kinds = {c.kind for c in callers}
    assert kinds == {"known", "household", "new_number", "unknown", "withheld", "repeat"}
    known = [c for c in callers if c.kind == "known"]
    platinum = sum(1 for c in known if c.customer and c.customer.tier == "platinum")
    assert platinum / len(known) > 0.1  # far above their 1 % share of the customers
    fresh = [c.ani for c in callers if c.kind in ("unknown", "new_number")]
    assert not set(fresh) & population.known_phones


def test_tier_figures_count_waits_the_way_the_summary_says() -> None:
    facts = [
        _fact(1, 0, 5, tier="gold"),
        _fact(2, 0, 25),  # answered after the 20 s target
        _fact(3, 0, 10),
        _fact(4, 0, None, ended=40, state="abandoned"),
        _fact(5, 0, None, ended=50, state="abandoned", cut_off=True),
    ]
    rows = {r.tier: r for r in tier_figures(facts, ["gold", "standard"], {"general": 20.0})}
    standard = rows["standard"]
    assert (standard.calls, standard.answered, standard.abandoned) == (4, 2, 1)
    assert standard.service_level == 0.5 and standard.asa_seconds == 17.5
    assert standard.longest_wait_seconds == 50.0  # the cut-off caller had waited that long
    assert rows["gold"].service_level == 1.0


def test_overtaking_beyond_the_bound_is_found_and_within_it_is_not() -> None:
    fair = [_fact(1, 0, 100), _fact(2, 110, 111)]  # 110 s later, within a 120 s bound
    assert overtaken(fair, 120.0) == 0
    unfair = [_fact(1, 0, 200), _fact(2, 130, 131)]  # 130 s later, answered first
    assert overtaken(unfair, 120.0) == 1
    gave_up = [_fact(1, 0, None, ended=300, state="abandoned"), _fact(2, 130, 131)]
    assert overtaken(gave_up, 120.0) == 1
    assert overtaken(unfair, 0.0) == 1 and overtaken([_fact(1, 0, 1)], 0.0) == 0


def test_percentile_is_a_value_that_was_seen() -> None:
    assert quantile([], 0.99) is None
    assert quantile(sorted([3.0, 1.0, 2.0]), 0.50) == 2.0
    assert quantile([float(i) for i in range(1, 101)], 0.99) == 99.0
