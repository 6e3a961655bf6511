"""Learning questions: which one is pending for a customer, and what counts as an answer. Pure.

The rules (the README repeats them for supervisors):

* A customer has at most one pending question: the first, by ``(priority,
  key)``, of the active questions that are *eligible*.
* A question is eligible when its condition holds on the customer's current
  answers (and tier and value), and it was never answered, or its answer is
  stale (older than ``fresh_days``; ``None`` keeps an answer forever), or it
  was last skipped at least ``cooldown_days`` ago.
* A *current* answer is the latest answer to a question, not a skip, and not
  stale. Only current answers feed conditions, so when an answer goes stale
  its follow-ups wait until it is asked and answered again.

Answers are normalised so that conditions compare like with like: a yes/no
answer is stored as ``"yes"`` or ``"no"`` (``true``/``false`` and any case of
yes/no are accepted), a number as an int when it is whole, a choice as the
listed spelling, text stripped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from callcenter.agent_assist.knowledge import conditions
from callcenter.agent_assist.knowledge.conditions import Condition, Facts, Key
from callcenter.errors import InvalidAnswer

#: The longest text answer kept; a learning question wants a short fact, not notes.
MAX_TEXT_ANSWER = 500
#: Numbers beyond this are typing mistakes, not facts about a customer.
MAX_NUMBER = 1e12

ChoiceText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Priority = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
Bound = Annotated[float, Field(ge=-MAX_NUMBER, le=MAX_NUMBER, allow_inf_nan=False)]


class AnswerKind(StrEnum):
    choice = "choice"
    yes_no = "yes_no"
    number = "number"
    text = "text"


class QuestionFields(BaseModel):
    """Everything about a question but its key (a PUT names the key in its path)."""

    model_config = ConfigDict(extra="forbid")

    text: Text = Field(description="What the agent asks, word for word.")
    kind: AnswerKind
    choices: list[ChoiceText] = Field(
        default_factory=list,
        max_length=50,
        description="The allowed answers of a choice question (at least two); empty otherwise.",
    )
    min_value: Bound | None = Field(default=None, description="number: the smallest answer.")
    max_value: Bound | None = Field(default=None, description="number: the largest answer.")
    condition: Condition | None = Field(
        default=None, description="Ask only when this holds on the customer's current answers."
    )
    priority: Priority = Field(default=100, description="Smaller is asked first; ties by key.")
    cooldown_days: int = Field(
        default=7, ge=1, le=3650, description="After a skip, wait this many days."
    )
    fresh_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="An answer counts this many days, then the question is asked again; "
        "null: forever.",
    )
    active: bool = True

    @field_validator("condition")
    @classmethod
    def _readable(cls, value: conditions.Node | None) -> conditions.Node | None:
        return conditions.check_size(value)

    @model_validator(mode="after")
    def _fits_kind(self) -> QuestionFields:
        if self.kind is AnswerKind.choice:
            if len(self.choices) < 2:
                raise ValueError("a choice question needs at least two choices")
            folded = [c.casefold() for c in self.choices]
            if len(set(folded)) != len(folded):
                raise ValueError("choices must differ (ignoring case)")
        elif self.choices:
            raise ValueError(f"only a choice question has choices, not a {self.kind.value} one")
        if self.kind is not AnswerKind.number and (
            self.min_value is not None or self.max_value is not None
        ):
            raise ValueError("only a number question has min_value and max_value")
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            raise ValueError("min_value is larger than max_value")
        return self


class Question(QuestionFields):
    key: Key = Field(description="Stable name: a-z, 0-9 and _, starting with a letter.")


@dataclass(frozen=True)
class StoredAnswer:
    """The latest answer (or skip) to one question for one customer."""

    value: Any
    skipped: bool
    answered_at: datetime


def is_current(question: QuestionFields | None, answer: StoredAnswer, now: datetime) -> bool:
    """An answer that counts: not a skip and not stale.

    An answer to a question no longer in the bank keeps counting: it is still
    what the customer said.
    """
    if answer.skipped:
        return False
    if question is None or question.fresh_days is None:
        return True
    return now - answer.answered_at < timedelta(days=question.fresh_days)


def current_answers(
    bank: Iterable[Question], latest: Mapping[str, StoredAnswer], now: datetime
) -> dict[str, Any]:
    """The current answers by question key: what conditions read."""
    by_key = {q.key: q for q in bank}
    return {k: a.value for k, a in latest.items() if is_current(by_key.get(k), a, now)}


def _eligible(question: Question, latest: StoredAnswer | None, now: datetime) -> bool:
    if latest is None:
        return True
    age = now - latest.answered_at
    if latest.skipped:
        return age >= timedelta(days=question.cooldown_days)
    return question.fresh_days is not None and age >= timedelta(days=question.fresh_days)


def pending_question(
    bank: Sequence[Question],
    latest_answers: Mapping[str, StoredAnswer],
    now: datetime,
    *,
    profile: Facts | None = None,
) -> Question | None:
    """The one question to ask the customer now, or ``None`` when there is none.

    ``bank`` may hold inactive questions (they are never asked, but their
    ``fresh_days`` still decide whether their answers count). ``profile``
    carries tier and value for conditions that read them; its answers are
    ignored and replaced by the current ones from ``latest_answers``.
    """
    base = profile if profile is not None else Facts()
    facts = replace(base, answers=current_answers(bank, latest_answers, now))
    for question in sorted(bank, key=lambda q: (q.priority, q.key)):
        if not question.active:
            continue
        if question.condition is not None and not conditions.evaluate(question.condition, facts):
            continue
        if _eligible(question, latest_answers.get(question.key), now):
            return question
    return None


def check_answer(question: QuestionFields, raw: Any, *, in_words: bool = False) -> Any:
    """``raw`` normalised for ``question``'s kind, or ``InvalidAnswer`` (422, field ``answer``).

    ``in_words``: the errors name the question by its text, as the agent read it
    out ("25 is above 20, the largest answer to 'How many cards do you hold
    elsewhere?'"); otherwise by its key, as the bank's author and the API know it.

    * number: an int or a finite float (not a boolean, not text); whole floats
      become ints; within ``min_value``/``max_value`` when set.
    * yes_no: ``true``/``false`` or ``"yes"``/``"no"`` in any case; stored as ``"yes"``/``"no"``.
    * choice: one of the choices (case and surrounding spaces ignored); stored
      as the choice is spelled in the bank.
    * text: non-empty after stripping, at most 500 characters.
    """
    name = _name(question, in_words)
    if raw is None:
        raise InvalidAnswer(f"{name} needs an answer (or skip it)", field="answer")
    kind = question.kind
    if kind is AnswerKind.number:
        return _number(question, raw, in_words)
    if kind is AnswerKind.yes_no:
        if isinstance(raw, bool):
            return "yes" if raw else "no"
        if isinstance(raw, str) and raw.strip().lower() in ("yes", "no"):
            return raw.strip().lower()
        raise InvalidAnswer(
            f"{name} is answered yes or no (or true/false), not {_got(raw)}",
            field="answer",
        )
    if not isinstance(raw, str):
        raise InvalidAnswer(f"{name} is answered with text, not {_got(raw)}", field="answer")
    text = raw.strip()
    if kind is AnswerKind.choice:
        for choice in question.choices:
            if choice.casefold() == text.casefold():
                return choice
        raise InvalidAnswer(
            f"{text!r} is not a choice {_of(question, in_words)}; "
            f"the choices are {', '.join(question.choices)}",
            field="answer",
        )
    if not text:
        raise InvalidAnswer(f"{name} needs a non-empty answer", field="answer")
    if len(text) > MAX_TEXT_ANSWER:
        raise InvalidAnswer(
            f"an answer may be at most {MAX_TEXT_ANSWER} characters, this one has {len(text)}",
            field="answer",
        )
    return text


def _number(question: QuestionFields, raw: Any, in_words: bool) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidAnswer(
            f"{_name(question, in_words)} is answered with a number, not {_got(raw)}",
            field="answer",
        )
    if isinstance(raw, float) and not math.isfinite(raw):
        raise InvalidAnswer("an answer must be a finite number", field="answer")
    if abs(raw) > MAX_NUMBER:
        raise InvalidAnswer(f"{raw} is too large for an answer", field="answer")
    if question.min_value is not None and raw < question.min_value:
        raise InvalidAnswer(
            f"{raw} is below {_plain(question.min_value)}, the smallest answer "
            f"{_of(question, in_words)}",
            field="answer",
        )
    if question.max_value is not None and raw > question.max_value:
        raise InvalidAnswer(
            f"{raw} is above {_plain(question.max_value)}, the largest answer "
            f"{_of(question, in_words)}",
            field="answer",
        )
    return int(raw) if isinstance(raw, float) and raw.is_integer() else raw


def _plain(bound: float) -> str:
    return str(int(bound)) if bound.is_integer() else str(bound)


def _name(question: QuestionFields, in_words: bool = False) -> str:
    """``question 'cards_count'``, or in words ``'How many cards do you hold elsewhere?'``."""
    key = getattr(question, "key", None)
    if in_words or key is None:
        return repr(question.text)
    return f"question {key!r}"


def _of(question: QuestionFields, in_words: bool) -> str:
    """``of question 'cards_count'``, or in words ``to 'How many cards ...?'``."""
    name = _name(question, in_words)
    return f"to {name}" if in_words or getattr(question, "key", None) is None else f"of {name}"


def _got(raw: Any) -> str:
    if isinstance(raw, bool):
        return f"the boolean {str(raw).lower()}"
    if isinstance(raw, str):
        return f"the text {raw[:40]!r}"
    if isinstance(raw, int | float):
        return f"the number {raw}"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, dict):
        return "an object"
    return type(raw).__name__
