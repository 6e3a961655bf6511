"""The condition language of learning questions and treatment rules. Pure.

One small language serves both: a question's condition says when it may be
asked (on earlier answers), a treatment's when it applies to a caller (on
tier, value and answers). A condition is a JSON object with exactly one of
these keys, validated by pydantic so a bad one is a 422 naming the field:

* ``{"answer": "k", "eq": "yes"}``: the current answer to ``k`` equals the
  value; also ``ne``, ``in: [...]`` and, for numbers, ``gt``, ``gte``,
  ``lt``, ``lte`` (every operator given must hold);
* ``{"answered": "k"}``: ``k`` has a current (fresh, not skipped) answer;
* ``{"tier": ["platinum", "gold"]}``: the caller's tier is one of these;
* ``{"value": {"gte": 10000}}``: lifetime value in a range (``gt/gte/lt/lte``);
* ``{"margin": {"gte": 500}}``: annual margin in a range;
* ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}``: combinations.

An answer test on a question without a current answer is false, whatever its
operator (``ne`` too): a condition never guesses an answer. Say ``{"not":
{"answered": "k"}}`` to act on a missing one. Evaluation never raises: a
numeric bound on an answer that is not a number is simply false.

Yes/no answers are stored as ``"yes"`` and ``"no"``; ``true`` and ``false`` in
a condition mean the same, so ``eq: true`` and ``eq: "yes"`` agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)

#: Question and treatment keys: what the database's format check allows.
KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
TierName = Annotated[str, StringConstraints(min_length=1, max_length=32)]
FiniteFloat = Annotated[StrictFloat, AllowInfNan(False)]
Number = StrictInt | FiniteFloat
Scalar = Annotated[StrictStr, StringConstraints(max_length=500)] | StrictInt | FiniteFloat

#: A condition may nest this deep and hold this many tests: a bank is read by
#: people, and evaluation runs on every offer.
MAX_DEPTH = 8
MAX_NODES = 100


def _unset(value: object) -> bool:
    return value is None


def _yes_no(value: Any) -> Any:
    """``true``/``false`` in a condition mean the stored ``"yes"``/``"no"``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return [_yes_no(v) for v in value]
    return value


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)
    tag: ClassVar[str]


def _bounds(node: Range | AnswerTest) -> list[tuple[str, int | float]]:
    found = [("gt", node.gt), ("gte", node.gte), ("lt", node.lt), ("lte", node.lte)]
    return [(op, bound) for op, bound in found if bound is not None]


class Range(_Node):
    """A numeric range: every bound given must hold."""

    gt: Number | None = Field(default=None, exclude_if=_unset)
    gte: Number | None = Field(default=None, exclude_if=_unset)
    lt: Number | None = Field(default=None, exclude_if=_unset)
    lte: Number | None = Field(default=None, exclude_if=_unset)

    @model_validator(mode="after")
    def _some_bound(self) -> Range:
        if not self.bounds():
            raise ValueError("a range needs at least one of gt, gte, lt, lte")
        return self

    def bounds(self) -> list[tuple[str, int | float]]:
        return _bounds(self)


class AnswerTest(_Node):
    """The current answer to question ``answer`` compared with values."""

    tag: ClassVar[str] = "answer"
    answer: Key
    eq: Scalar | None = Field(default=None, exclude_if=_unset)
    ne: Scalar | None = Field(default=None, exclude_if=_unset)
    in_: list[Scalar] | None = Field(
        default=None, alias="in", min_length=1, max_length=100, exclude_if=_unset
    )
    gt: Number | None = Field(default=None, exclude_if=_unset)
    gte: Number | None = Field(default=None, exclude_if=_unset)
    lt: Number | None = Field(default=None, exclude_if=_unset)
    lte: Number | None = Field(default=None, exclude_if=_unset)

    @field_validator("eq", "ne", "in_", mode="before")
    @classmethod
    def _yes_no_values(cls, value: Any) -> Any:
        return _yes_no(value)

    @model_validator(mode="after")
    def _some_operator(self) -> AnswerTest:
        if not self.operators():
            raise ValueError(
                f"the test of answer {self.answer!r} needs an operator: "
                "eq, ne, in, gt, gte, lt or lte"
            )
        return self

    def bounds(self) -> list[tuple[str, int | float]]:
        return _bounds(self)

    def operators(self) -> list[tuple[str, Any]]:
        found = [("eq", self.eq), ("ne", self.ne), ("in", self.in_), *self.bounds()]
        return [(op, v) for op, v in found if v is not None]


class Answered(_Node):
    """Question ``answered`` has a current answer (fresh and not skipped)."""

    tag: ClassVar[str] = "answered"
    answered: Key


class TierIn(_Node):
    tag: ClassVar[str] = "tier"
    tier: list[TierName] = Field(min_length=1, max_length=20)


class ValueIn(_Node):
    """Lifetime value in a range."""

    tag: ClassVar[str] = "value"
    value: Range


class MarginIn(_Node):
    """Annual margin in a range."""

    tag: ClassVar[str] = "margin"
    margin: Range


class AllOf(_Node):
    tag: ClassVar[str] = "all"
    all: list[Condition] = Field(min_length=1, max_length=50)


class AnyOf(_Node):
    tag: ClassVar[str] = "any"
    any: list[Condition] = Field(min_length=1, max_length=50)


class Not(_Node):
    tag: ClassVar[str] = "not"
    not_: Condition = Field(alias="not")


Node = AnswerTest | Answered | TierIn | ValueIn | MarginIn | AllOf | AnyOf | Not
TAGS = ("answer", "answered", "tier", "value", "margin", "all", "any", "not")


def _tag(data: Any) -> str | None:
    """Which kind of condition ``data`` is: the one known key it holds."""
    if isinstance(data, _Node):
        return data.tag
    if isinstance(data, dict):
        found = [t for t in TAGS if t in data]
        if len(found) == 1:
            return found[0]
    return None


Condition = Annotated[
    Annotated[AnswerTest, Tag("answer")]
    | Annotated[Answered, Tag("answered")]
    | Annotated[TierIn, Tag("tier")]
    | Annotated[ValueIn, Tag("value")]
    | Annotated[MarginIn, Tag("margin")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[Not, Tag("not")],
    Discriminator(
        _tag,
        custom_error_type="condition_shape",
        custom_error_message="a condition is an object with exactly one of the keys "
        "answer, answered, tier, value, margin, all, any, not",
    ),
]

for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()

CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)


def parse(data: Any) -> Node:
    """A condition from its JSON form (raises pydantic's ``ValidationError``)."""
    node: Node = CONDITION.validate_python(data)
    return node


def dump(condition: Node) -> dict[str, Any]:
    """The JSON form, as stored in ``jsonb`` and sent over the API."""
    data: dict[str, Any] = condition.model_dump(mode="json")
    return data


# -- facts and evaluation ------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What a condition may read about a customer.

    ``answers`` holds only current answers (fresh, not skipped), keyed by
    question key, in their normalised form.
    """

    tier: str | None = None
    lifetime_value: Decimal = Decimal(0)
    annual_margin: Decimal = Decimal(0)
    answers: Mapping[str, Any] = field(default_factory=dict)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float | Decimal)
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )


def _within(value: Any, bounds: list[tuple[str, int | float]]) -> bool:
    if not _is_number(value):
        return False
    for op, bound in bounds:
        if op == "gt" and not value > bound:
            return False
        if op == "gte" and not value >= bound:
            return False
        if op == "lt" and not value < bound:
            return False
        if op == "lte" and not value <= bound:
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    """Equality that never mixes text with numbers."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def evaluate(condition: Node, facts: Facts) -> bool:
    """Whether ``condition`` holds for ``facts``; total, never raises."""
    if isinstance(condition, AnswerTest):
        if condition.answer not in facts.answers:
            return False
        value = facts.answers[condition.answer]
        if condition.eq is not None and not _same(value, condition.eq):
            return False
        if condition.ne is not None and _same(value, condition.ne):
            return False
        if condition.in_ is not None and not any(_same(value, v) for v in condition.in_):
            return False
        bounds = condition.bounds()
        return not bounds or _within(value, bounds)
    if isinstance(condition, Answered):
        return condition.answered in facts.answers
    if isinstance(condition, TierIn):
        return facts.tier is not None and facts.tier in condition.tier
    if isinstance(condition, ValueIn):
        return _within(facts.lifetime_value, condition.value.bounds())
    if isinstance(condition, MarginIn):
        return _within(facts.annual_margin, condition.margin.bounds())
    if isinstance(condition, AllOf):
        return all(evaluate(c, facts) for c in condition.all)
    if isinstance(condition, AnyOf):
        return any(evaluate(c, facts) for c in condition.any)
    return not evaluate(condition.not_, facts)


# -- reading a condition ---------------------------------------------------------

Path = tuple[str | int, ...]


def walk(condition: Node, path: Path = ()) -> Iterator[tuple[Path, Node]]:
    """Every node with its path in the JSON form (``("all", 0, "not")``...), root first."""
    yield path, condition
    if isinstance(condition, AllOf):
        for i, child in enumerate(condition.all):
            yield from walk(child, (*path, "all", i))
    elif isinstance(condition, AnyOf):
        for i, child in enumerate(condition.any):
            yield from walk(child, (*path, "any", i))
    elif isinstance(condition, Not):
        yield from walk(condition.not_, (*path, "not"))


def read_key(node: Node) -> str | None:
    """The question key a single node reads, if it reads one."""
    if isinstance(node, AnswerTest):
        return node.answer
    if isinstance(node, Answered):
        return node.answered
    return None


def answer_keys(condition: Node | None) -> frozenset[str]:
    """The question keys whose answers ``condition`` reads."""
    if condition is None:
        return frozenset()
    return frozenset(k for _, n in walk(condition) if (k := read_key(n)) is not None)


def depth(condition: Node) -> int:
    return max(sum(1 for p in path if isinstance(p, str)) for path, _ in walk(condition)) + 1


def check_size(condition: Node | None) -> Node | None:
    """Refuse conditions too deep or too large for a person to read (``ValueError``)."""
    if condition is None:
        return None
    if depth(condition) > MAX_DEPTH:
        raise ValueError(f"a condition may nest at most {MAX_DEPTH} levels deep")
    if sum(1 for _ in walk(condition)) > MAX_NODES:
        raise ValueError(f"a condition may hold at most {MAX_NODES} tests")
    return condition


# -- explaining ------------------------------------------------------------------

_SYMBOL = {"eq": "=", "ne": "≠", "in": "in", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _range(subject: str, bounds: list[tuple[str, int | float]]) -> str:
    return " and ".join(f"{subject} {_SYMBOL[op]} {_show(b)}" for op, b in bounds)


def describe(condition: Node) -> str:
    """The condition in words, for people (reasons on the panel, error messages)."""
    if isinstance(condition, AnswerTest):
        return " and ".join(
            f"{condition.answer} {_SYMBOL[op]} {_show(v)}" for op, v in condition.operators()
        )
    if isinstance(condition, Answered):
        return f"{condition.answered} answered"
    if isinstance(condition, TierIn):
        return f"tier in {_show(condition.tier)}"
    if isinstance(condition, ValueIn):
        return _range("lifetime value", condition.value.bounds())
    if isinstance(condition, MarginIn):
        return _range("annual margin", condition.margin.bounds())
    if isinstance(condition, AllOf):
        return "(" + " and ".join(describe(c) for c in condition.all) + ")"
    if isinstance(condition, AnyOf):
        return "(" + " or ".join(describe(c) for c in condition.any) + ")"
    return f"not {describe(condition.not_)}"


@dataclass(frozen=True)
class Words:
    """How the agent's panel says a fact: a question by its text, money with its currency.

    Without it (the API, the bank's author) facts read by key: ``cards_elsewhere = yes``.
    """

    questions: Mapping[str, str] = field(default_factory=dict)
    currency: str | None = None

    def question(self, key: str, value: Any) -> str:
        text = self.questions.get(key)
        return f"{text} {_show(value)}" if text else f"{key} = {_show(value)}"

    def money(self, amount: Decimal) -> str:
        if self.currency is None:
            return str(amount)
        return f"{amount:,.2f} {self.currency}"


PLAIN = Words()


def reasons(condition: Node, facts: Facts, words: Words = PLAIN) -> list[str]:
    """The facts that make ``condition`` hold, in words (empty if it does not hold).

    ``all`` gives the facts of every part, ``any`` those of the parts that
    hold, ``not`` says what is not the case; each fact appears once.
    """
    if not evaluate(condition, facts):
        return []
    found: dict[str, None] = {}
    _collect(condition, facts, found, words)
    return list(found)


def _collect(condition: Node, facts: Facts, out: dict[str, None], words: Words) -> None:
    if isinstance(condition, AnswerTest):
        out[words.question(condition.answer, facts.answers[condition.answer])] = None
    elif isinstance(condition, Answered):
        key = condition.answered
        text = words.questions.get(key)
        shown = _show(facts.answers[key])
        out[f"{text} {shown}" if text else f"{key} answered ({shown})"] = None
    elif isinstance(condition, TierIn):
        out[f"tier {facts.tier}"] = None
    elif isinstance(condition, ValueIn):
        out[f"lifetime value {words.money(facts.lifetime_value)}"] = None
    elif isinstance(condition, MarginIn):
        out[f"annual margin {words.money(facts.annual_margin)}"] = None
    elif isinstance(condition, AllOf):
        for child in condition.all:
            _collect(child, facts, out, words)
    elif isinstance(condition, AnyOf):
        for child in condition.any:
            if evaluate(child, facts):
                _collect(child, facts, out, words)
    else:
        out[f"not {describe(condition.not_)}"] = None
