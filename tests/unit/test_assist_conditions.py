"""The condition language: parsing, evaluation, the keys it reads, explanations."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from callcenter.agent_assist.knowledge import conditions as c
from callcenter.agent_assist.knowledge.conditions import Facts

PLATINUM = Facts(
    tier="platinum",
    lifetime_value=Decimal("30000.00"),
    annual_margin=Decimal("800.00"),
    answers={"cards_elsewhere": "yes", "card_count": 3, "contact_channel": "email"},
)


def _holds(condition: dict[str, Any], facts: Facts = PLATINUM) -> bool:
    return c.evaluate(c.parse(condition), facts)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"answer": "cards_elsewhere", "eq": "yes"}, True),
        ({"answer": "cards_elsewhere", "eq": True}, True),  # true means "yes"
        ({"answer": "cards_elsewhere", "eq": "no"}, False),
        ({"answer": "cards_elsewhere", "ne": "no"}, True),
        ({"answer": "contact_channel", "in": ["email", "sms"]}, True),
        ({"answer": "contact_channel", "in": ["phone"]}, False),
        ({"answer": "card_count", "gte": 3}, True),
        ({"answer": "card_count", "gt": 3}, False),
        ({"answer": "card_count", "gte": 2, "lt": 4}, True),
        ({"answer": "card_count", "gte": 2, "lt": 3}, False),
        ({"answer": "card_count", "eq": 3.0}, True),
        ({"answer": "card_count", "eq": "3"}, False),  # text never equals a number
        ({"answer": "contact_channel", "gte": 1}, False),  # a bound on text is false
        ({"answered": "card_count"}, True),
        ({"answered": "home_plans"}, False),
        ({"answer": "home_plans", "ne": "never"}, False),  # no answer: every test is false
        ({"not": {"answered": "home_plans"}}, True),
        ({"tier": ["platinum", "gold"]}, True),
        ({"tier": ["gold"]}, False),
        ({"value": {"gte": 30000}}, True),
        ({"value": {"gt": 30000}}, False),
        ({"margin": {"gte": 500, "lte": 1000}}, True),
        ({"margin": {"lt": 800}}, False),
        ({"all": [{"tier": ["platinum"]}, {"answer": "card_count", "gte": 2}]}, True),
        ({"all": [{"tier": ["platinum"]}, {"answer": "card_count", "gte": 4}]}, False),
        ({"any": [{"tier": ["gold"]}, {"answer": "card_count", "gte": 2}]}, True),
        ({"any": [{"tier": ["gold"]}, {"answered": "x"}]}, False),
        ({"not": {"tier": ["platinum"]}}, False),
    ],
)
def test_evaluate(condition: dict[str, Any], expected: bool) -> None:
    assert _holds(condition) is expected


def test_a_customer_without_a_tier_matches_no_tier_test() -> None:
    assert not _holds({"tier": ["standard"]}, Facts())


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ({}, "exactly one of the keys"),
        ({"answer": "k"}, "needs an operator"),
        ({"answer": "k", "eq": 1, "tier": ["gold"]}, "exactly one of the keys"),
        ({"answer": "k", "equals": 1}, "Extra inputs"),
        ({"answer": "Bad Key", "eq": 1}, "should match pattern"),
        ({"answer": "k", "gt": "two"}, "valid"),
        ({"answer": "k", "in": []}, "at least 1"),
        ({"value": {}}, "at least one of gt, gte, lt, lte"),
        ({"all": []}, "at least 1"),
        ({"tier": []}, "at least 1"),
        ({"not": [{"answered": "k"}]}, "exactly one of the keys"),
        (["answered", "k"], "exactly one of the keys"),
    ],
)
def test_malformed_conditions_are_refused_with_a_reason(condition: Any, fragment: str) -> None:
    with pytest.raises(ValidationError) as raised:
        c.parse(condition)
    assert fragment in str(raised.value)


def test_dump_round_trips_and_omits_unused_operators() -> None:
    raw = {
        "all": [
            {"answer": "card_count", "gte": 2, "lt": 5},
            {"not": {"answer": "contact_channel", "in": ["sms", "app"]}},
            {"value": {"gte": 10000}},
        ]
    }
    parsed = c.parse(raw)
    assert c.dump(parsed) == raw
    assert c.parse(c.dump(parsed)) == parsed


def test_answer_keys_and_depth() -> None:
    parsed = c.parse(
        {
            "any": [
                {"answer": "a", "eq": "x"},
                {"all": [{"answered": "b"}, {"not": {"answer": "c", "gt": 1}}]},
                {"tier": ["gold"]},
            ]
        }
    )
    assert c.answer_keys(parsed) == {"a", "b", "c"}
    assert c.answer_keys(None) == frozenset()
    assert c.depth(parsed) == 4


def test_a_condition_too_deep_for_a_person_is_refused() -> None:
    deep: dict[str, Any] = {"answered": "k"}
    for _ in range(c.MAX_DEPTH):
        deep = {"not": deep}
    with pytest.raises(ValueError, match="nest at most"):
        c.check_size(c.parse(deep))
    assert c.check_size(c.parse(deep["not"])) is not None


def test_reasons_name_the_facts_that_made_a_condition_hold() -> None:
    parsed = c.parse(
        {
            "all": [
                {"tier": ["platinum"]},
                {"value": {"gte": 25000}},
                {"any": [{"answer": "cards_elsewhere", "eq": "yes"}, {"answered": "nothing"}]},
                {"not": {"answered": "home_plans"}},
            ]
        }
    )
    assert c.reasons(parsed, PLATINUM) == [
        "tier platinum",
        "lifetime value 30000.00",
        "cards_elsewhere = yes",
        "not home_plans answered",
    ]
    assert c.reasons(parsed, Facts(tier="gold")) == []


def test_describe_reads_like_the_rule() -> None:
    parsed = c.parse(
        {"any": [{"answer": "n", "gte": 2, "lt": 5}, {"not": {"tier": ["gold", "silver"]}}]}
    )
    assert c.describe(parsed) == "(n ≥ 2 and n < 5 or not tier in [gold, silver])"


# -- properties -------------------------------------------------------------------

KEYS = ["a", "b", "c", "d"]
VALUES = st.one_of(st.sampled_from(["yes", "no", "x", "y"]), st.integers(-5, 5), st.floats(-5, 5))
LEAVES = st.one_of(
    st.builds(lambda k, v: {"answer": k, "eq": v}, st.sampled_from(KEYS), VALUES),
    st.builds(lambda k, v: {"answer": k, "ne": v}, st.sampled_from(KEYS), VALUES),
    st.builds(
        lambda k, vs: {"answer": k, "in": vs},
        st.sampled_from(KEYS),
        st.lists(VALUES, min_size=1, max_size=3),
    ),
    st.builds(lambda k, v: {"answer": k, "gte": v}, st.sampled_from(KEYS), st.integers(-5, 5)),
    st.builds(lambda k: {"answered": k}, st.sampled_from(KEYS)),
    st.builds(
        lambda ts: {"tier": ts},
        st.lists(st.sampled_from(["platinum", "gold", "silver"]), min_size=1, max_size=3),
    ),
    st.builds(lambda v: {"value": {"gte": v}}, st.integers(0, 50_000)),
    st.builds(lambda v: {"margin": {"lt": v}}, st.integers(-100, 1000)),
)
CONDITIONS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=8,
)
ANSWERS = st.dictionaries(st.sampled_from([*KEYS, "other"]), VALUES, max_size=5)
FACTS = st.builds(
    Facts,
    tier=st.one_of(st.none(), st.sampled_from(["platinum", "gold", "silver", "standard"])),
    lifetime_value=st.decimals(0, 100_000, places=2),
    annual_margin=st.decimals(-1000, 5000, places=2),
    answers=ANSWERS,
)


@settings(max_examples=300, deadline=None)
@given(CONDITIONS, FACTS, ANSWERS)
def test_a_condition_reads_only_the_answers_it_names(
    raw: dict[str, Any], facts: Facts, others: dict[str, Any]
) -> None:
    """Changing answers to questions a condition does not name never changes its result."""
    parsed = c.parse(raw)
    keys = c.answer_keys(parsed)
    changed = {k: v for k, v in others.items() if k not in keys}
    kept = {k: v for k, v in facts.answers.items() if k in keys}
    altered = Facts(facts.tier, facts.lifetime_value, facts.annual_margin, changed | kept)
    assert c.evaluate(parsed, facts) == c.evaluate(parsed, altered)


@settings(max_examples=300, deadline=None)
@given(CONDITIONS, FACTS)
def test_not_all_any_follow_logic_and_reasons_exist_exactly_when_it_holds(
    raw: dict[str, Any], facts: Facts
) -> None:
    parsed = c.parse(raw)
    holds = c.evaluate(parsed, facts)
    assert c.evaluate(c.parse({"not": raw}), facts) is (not holds)
    assert c.evaluate(c.parse({"all": [raw, raw]}), facts) is holds
    assert c.evaluate(c.parse({"any": [raw, {"not": raw}]}), facts) is True
    assert bool(c.reasons(parsed, facts)) is holds
    assert c.parse(c.dump(parsed)) == parsed
