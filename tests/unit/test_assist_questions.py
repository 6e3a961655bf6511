"""Question selection (pending, fresh, stale, cooldown) and answer checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from callcenter.agent_assist.knowledge.conditions import Facts
from callcenter.agent_assist.knowledge.questions import (
    Question,
    StoredAnswer,
    check_answer,
    current_answers,
    pending_question,
)
from callcenter.errors import InvalidAnswer

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def q(key: str, kind: str = "yes_no", **fields: Any) -> Question:
    return Question.model_validate({"key": key, "text": f"{key}?", "kind": kind, **fields})


def answered(value: Any, days_ago: float = 0) -> StoredAnswer:
    return StoredAnswer(value, False, NOW - timedelta(days=days_ago))


def skipped(days_ago: float = 0) -> StoredAnswer:
    return StoredAnswer(None, True, NOW - timedelta(days=days_ago))


CARDS = [
    q("cards_elsewhere", priority=10, fresh_days=180, cooldown_days=14),
    q(
        "card_count",
        "number",
        priority=11,
        fresh_days=180,
        condition={"answer": "cards_elsewhere", "eq": "yes"},
    ),
    q("card_switch", priority=12, condition={"answer": "card_count", "gte": 2}),
    q("travel", "choice", choices=["never", "often"], priority=20),
]


def pending(latest: dict[str, StoredAnswer], now: datetime = NOW, **kw: Any) -> str | None:
    found = pending_question(CARDS, latest, now, **kw)
    return found.key if found is not None else None


def test_the_first_eligible_question_by_priority_is_pending() -> None:
    assert pending({}) == "cards_elsewhere"


def test_the_cards_follow_up_is_asked_only_after_a_yes() -> None:
    assert pending({"cards_elsewhere": answered("yes")}) == "card_count"
    # "no": the follow-up's condition does not hold; the next question is travel
    assert pending({"cards_elsewhere": answered("no")}) == "travel"


def test_a_follow_up_chain_moves_one_question_at_a_time() -> None:
    latest = {"cards_elsewhere": answered("yes"), "card_count": answered(3)}
    assert pending(latest) == "card_switch"
    latest["card_count"] = answered(1)
    assert pending(latest) == "travel"
    latest |= {
        "card_count": answered(2),
        "card_switch": answered("no"),
        "travel": answered("often"),
    }
    assert pending(latest) is None


def test_an_answered_question_returns_only_when_its_answer_goes_stale() -> None:
    latest = {"cards_elsewhere": answered("no", days_ago=179), "travel": answered("never")}
    assert pending(latest) is None
    latest["cards_elsewhere"] = answered("no", days_ago=180)
    assert pending(latest) == "cards_elsewhere"


def test_a_stale_answer_no_longer_opens_its_follow_ups() -> None:
    # the yes is 200 days old: ask it again before asking how many cards
    latest = {"cards_elsewhere": answered("yes", days_ago=200), "travel": answered("never")}
    assert pending(latest) == "cards_elsewhere"
    assert current_answers(CARDS, latest, NOW) == {"travel": "never"}


def test_an_answer_without_fresh_days_counts_forever() -> None:
    latest = {
        "cards_elsewhere": answered("no", days_ago=1),
        "travel": answered("never", days_ago=10_000),
    }
    assert pending(latest) is None


def test_a_skipped_question_waits_out_its_cooldown() -> None:
    latest = {"cards_elsewhere": skipped(days_ago=13.9)}
    # skipped: its follow-ups stay closed and the next question comes up
    assert pending(latest) == "travel"
    latest["cards_elsewhere"] = skipped(days_ago=14)
    assert pending(latest) == "cards_elsewhere"


def test_a_skip_after_an_answer_hides_the_answer() -> None:
    """The latest of each question counts: a skip is not an answer."""
    assert current_answers(CARDS, {"cards_elsewhere": skipped()}, NOW) == {}


def test_inactive_questions_are_never_asked_but_their_freshness_still_counts() -> None:
    bank = [
        q("a", priority=1, active=False, fresh_days=10),
        q("b", priority=2, condition={"answer": "a", "eq": "yes"}),
    ]
    assert pending_question(bank, {}, NOW) is None
    assert pending_question(bank, {"a": answered("yes", 5)}, NOW) == bank[1]
    assert pending_question(bank, {"a": answered("yes", 11)}, NOW) is None


def test_ties_in_priority_are_broken_by_key() -> None:
    bank = [q("zeta", priority=5), q("alpha", priority=5), q("late", priority=9)]
    assert pending_question(bank, {}, NOW) == bank[1]


def test_conditions_may_read_tier_and_value_from_the_profile() -> None:
    bank = [q("home_plans", condition={"tier": ["gold", "platinum"]}), q("other", priority=200)]
    gold = Facts(tier="gold", lifetime_value=Decimal(9000))
    assert pending_question(bank, {}, NOW, profile=gold) == bank[0]
    assert pending_question(bank, {}, NOW, profile=Facts(tier="standard")) == bank[1]
    assert pending_question(bank, {}, NOW) == bank[1]


def test_the_profile_answers_are_replaced_by_the_current_ones() -> None:
    profile = Facts(answers={"cards_elsewhere": "yes"})  # stale copy: ignored
    assert pending({}, profile=profile) == "cards_elsewhere"


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([c.key for c in CARDS]),
        st.tuples(
            st.booleans(),
            st.sampled_from(["yes", "no", 1, 2, 3, "never", "often"]),
            st.floats(0, 400),
        ),
    )
)
def test_the_pending_question_is_eligible_and_nothing_earlier_is(
    raw: dict[str, tuple[bool, Any, float]],
) -> None:
    latest = {
        k: skipped(age) if was_skipped else answered(value, age)
        for k, (was_skipped, value, age) in raw.items()
    }
    found = pending_question(CARDS, latest, NOW)
    answers = current_answers(CARDS, latest, NOW)
    # asking it now and answering makes it current, so it is no longer pending
    if found is not None:
        assert found.key not in answers
        latest[found.key] = answered("yes" if found.kind == "yes_no" else 2)
        after = pending_question(CARDS, latest, NOW)
        assert after is None or after.key != found.key


# -- the model ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"kind": "choice"}, "at least two choices"),
        ({"kind": "choice", "choices": ["only"]}, "at least two choices"),
        ({"kind": "choice", "choices": ["Yes", "yes"]}, "must differ"),
        ({"kind": "yes_no", "choices": ["a", "b"]}, "only a choice question has choices"),
        ({"kind": "text", "min_value": 1}, "only a number question"),
        ({"kind": "number", "min_value": 5, "max_value": 1}, "larger than max_value"),
        ({"kind": "maybe"}, "Input should be"),
        ({"kind": "text", "cooldown_days": 0}, "greater than or equal to 1"),
        ({"kind": "text", "fresh_days": 0}, "greater than or equal to 1"),
        ({"kind": "text", "text": "  "}, "at least 1 character"),
        ({"kind": "text", "key": "Bad-Key"}, "should match pattern"),
        ({"kind": "text", "colour": "red"}, "Extra inputs"),
    ],
)
def test_a_question_that_cannot_work_is_refused(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Question.model_validate({"key": "k", "text": "K?"} | fields)
    assert fragment in str(raised.value)


# -- answers ------------------------------------------------------------------------

NUMBER = q("card_count", "number", min_value=0, max_value=20)
YES_NO = q("cards_elsewhere")
CHOICE = q("channel", "choice", choices=["Phone", "email", "SMS"])
TEXT = q("note", "text")


@pytest.mark.parametrize(
    ("question", "raw", "normal"),
    [
        (NUMBER, 3, 3),
        (NUMBER, 3.0, 3),
        (NUMBER, 2.5, 2.5),
        (NUMBER, 0, 0),
        (YES_NO, True, "yes"),
        (YES_NO, False, "no"),
        (YES_NO, "Yes", "yes"),
        (YES_NO, " no ", "no"),
        (CHOICE, "email", "email"),
        (CHOICE, " phone ", "Phone"),
        (CHOICE, "sms", "SMS"),
        (TEXT, "  prefers mornings ", "prefers mornings"),
    ],
)
def test_answers_are_normalised(question: Question, raw: Any, normal: Any) -> None:
    result = check_answer(question, raw)
    assert result == normal and type(result) is type(normal)


@pytest.mark.parametrize(
    ("question", "raw", "fragment"),
    [
        (NUMBER, "3", "with a number, not the text '3'"),
        (NUMBER, True, "with a number, not the boolean true"),
        (NUMBER, -1, "below 0"),
        (NUMBER, 21, "above 20"),
        (NUMBER, float("nan"), "finite"),
        (NUMBER, float("inf"), "finite"),
        (NUMBER, 1e13, "too large"),
        (NUMBER, [1], "not a list"),
        (YES_NO, "maybe", "yes or no"),
        (YES_NO, 1, "yes or no"),
        (CHOICE, "fax", "'fax' is not a choice"),
        (CHOICE, 1, "with text, not the number 1"),
        (TEXT, "   ", "non-empty"),
        (TEXT, "x" * 501, "at most 500"),
        (TEXT, {"a": 1}, "not an object"),
        (TEXT, None, "needs an answer"),
    ],
)
def test_an_answer_of_the_wrong_kind_is_a_422_on_the_answer(
    question: Question, raw: Any, fragment: str
) -> None:
    with pytest.raises(InvalidAnswer) as raised:
        check_answer(question, raw)
    assert raised.value.status == 422
    assert raised.value.field == "answer"
    assert fragment in raised.value.detail
