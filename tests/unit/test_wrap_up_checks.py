"""The wrap-up's answer checks (``answer_to_store``), pure: what they refuse, and with which field.

The wrap-up reads the call once and checks its answer here before its one
write; these are the errors the agent gets, in the order it always got them.
"""

from __future__ import annotations

from typing import Any

import pytest

from callcenter.agent_assist.desk.wrap_up import (
    AnswerToStore,
    OwnCall,
    Shown,
    WrapUpCall,
    answer_to_store,
    followed,
    guessed,
)
from callcenter.agent_assist.knowledge.questions import Question
from callcenter.agent_assist.knowledge.store import Bank
from callcenter.agent_assist.protocol import AnswerIn
from callcenter.errors import CallCenterError
from callcenter.queue.models import AgentState

CARDS = Question.model_validate(
    {"key": "cards", "text": "Do you hold cards elsewhere?", "kind": "yes_no"}
)
BANK = Bank((CARDS,), ())
NO_BANK = Bank((), ())
KEY = "answer.question_key"


def _seen(
    *,
    question_key: str | None = "cards",
    customer_id: int | None = 7,
    merged_into: int | None = None,
    earlier: tuple[Any, bool] | None = None,
) -> WrapUpCall:
    call = OwnCall(
        id=42,
        connected=False,
        customer_id=customer_id,
        question_key=question_key,
        agent_in_wrap_up=True,
    )
    return WrapUpCall(call, merged_into, earlier)


def _answer(**fields: Any) -> AnswerIn:
    return AnswerIn.model_validate({"question_key": "cards"} | fields)


def test_an_answer_is_normalised_and_a_skip_has_no_value() -> None:
    assert answer_to_store(_seen(), _answer(value=True), BANK) == AnswerToStore(
        "cards", "yes", False
    )
    assert answer_to_store(_seen(), _answer(skipped=True), BANK) == AnswerToStore(
        "cards", None, True
    )


def test_the_same_answer_on_the_call_already_is_a_retry_with_nothing_to_store() -> None:
    assert answer_to_store(_seen(earlier=("yes", False)), _answer(value=" YES "), BANK) is None
    assert answer_to_store(_seen(earlier=(None, True)), _answer(skipped=True), BANK) is None


@pytest.mark.parametrize(
    ("seen", "answer", "bank", "status", "field", "words"),
    [
        (_seen(question_key=None), _answer(value="yes"), BANK, 409, KEY, "no question was asked"),
        (_seen(customer_id=None), _answer(value="yes"), BANK, 409, KEY, "no question was asked"),
        (
            _seen(),
            _answer(question_key="other", value="yes"),
            BANK,
            409,
            KEY,
            "('Do you hold cards elsewhere?' is",
        ),
        (_seen(), _answer(value="yes"), NO_BANK, 409, KEY, "withdrawn"),
        (_seen(), _answer(value="maybe"), BANK, 422, "answer", "yes or no"),
        (_seen(), _answer(value="yes", skipped=True), BANK, 422, "answer", "not both"),
        (_seen(merged_into=9), _answer(value="yes"), BANK, 409, "customer_id", "merged into 9"),
        (_seen(), _answer(skipped=True), NO_BANK, 422, "question_key", "no question 'cards'"),
        (
            _seen(earlier=("no", False)),
            _answer(value="yes"),
            BANK,
            409,
            "answer",
            "already answered 'no' on call 42",
        ),
        (
            _seen(earlier=(None, True)),
            _answer(value="yes"),
            BANK,
            409,
            "answer",
            "already skipped on call 42",
        ),
    ],
)
def test_a_mistake_is_refused_naming_its_field(
    seen: WrapUpCall, answer: AnswerIn, bank: Bank, status: int, field: str, words: str
) -> None:
    with pytest.raises(CallCenterError) as raised:
        answer_to_store(seen, answer, bank)
    assert raised.value.status == status and raised.value.field == field
    assert words in raised.value.detail


def test_what_a_panel_showed_guesses_the_read_only_in_the_calls_wrap_up() -> None:
    """The hub's ``Shown`` follows the agent's pushed state: the guess is made only while
    the agent is in the wrap-up of the very call, and dropped once it holds another."""
    shown = Shown(call_id=42, customer_id=7, question_key="cards")
    assert guessed(shown, 42) is None  # connected as far as this instance knows: read
    ended = followed(shown, AgentState.wrap_up, 42)
    assert ended == Shown(42, 7, "cards", in_wrap_up=True)
    assert guessed(ended, 42) == _seen()
    assert guessed(ended, 43) is None  # not the call the panel showed
    assert followed(ended, AgentState.on_call, 42) == shown
    assert followed(ended, AgentState.available, None) is None  # the clock, or wrapped up
    assert followed(ended, AgentState.on_call, 43) is None
    assert followed(None, AgentState.wrap_up, 42) is None
