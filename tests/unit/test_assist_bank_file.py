"""The bank as a whole (unknown keys, cycles, impossible values) and the file's line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callcenter.agent_assist.knowledge.bank import parse_bank, read_bank
from callcenter.agent_assist.knowledge.consistency import check_bank
from callcenter.agent_assist.knowledge.questions import Question
from callcenter.agent_assist.knowledge.treatments import Treatment
from callcenter.config import shipped_bank
from callcenter.errors import BankFileError

TIERS = ["platinum", "gold", "silver", "standard"]


def q(key: str, kind: str = "yes_no", **fields: Any) -> Question:
    return Question.model_validate({"key": key, "text": f"{key}?", "kind": kind, **fields})


def tr(key: str, condition: Any) -> Treatment:
    return Treatment.model_validate(
        {"key": key, "title": "T", "kind": "offer", "reason": "r", "condition": condition}
    )


def messages(questions: list[Question], treatments: list[Treatment] | None = None) -> list[str]:
    return [
        f"{p.kind} {p.key} {p.field}: {p.message}"
        for p in check_bank(questions, treatments or [], tiers=TIERS)
    ]


def test_the_shipped_bank_is_sound() -> None:
    bank = read_bank(shipped_bank())
    assert 8 <= len(bank.questions) <= 12 and 6 <= len(bank.treatments) <= 10
    questions = [e.entry for e in bank.questions]
    treatments = [e.entry for e in bank.treatments]
    assert check_bank(questions, treatments, tiers=TIERS) == []
    card_count = next(x for x in questions if x.key == "card_count")
    assert card_count.condition is not None


def test_unknown_keys_in_conditions_are_named() -> None:
    found = messages(
        [q("a", condition={"all": [{"answered": "ghost"}]})],
        [tr("t", {"answer": "phantom", "eq": "yes"})],
    )
    assert found == [
        "question a condition.all[0].answered: the condition reads question 'ghost', "
        "which is not in the bank",
        "treatment t condition.answer: the condition reads question 'phantom', "
        "which is not in the bank",
    ]


def test_a_cycle_names_every_question_in_it() -> None:
    found = messages(
        [
            q("a", condition={"answer": "b", "eq": "yes"}),
            q("b", condition={"answer": "c", "eq": "yes"}),
            q("c", condition={"answered": "a"}),
            q("d", condition={"answer": "a", "eq": "yes"}),  # depends on the cycle, not in it
        ]
    )
    assert found == [
        "question a condition: questions depend on each other's answers in a cycle "
        "(a -> b -> c -> a): none of them could ever be asked"
    ]


def test_a_question_reading_its_own_answer_is_a_cycle() -> None:
    assert "(a -> a)" in messages([q("a", condition={"answered": "a"})])[0]


def test_compared_values_must_be_answers_the_question_can_have() -> None:
    bank = [
        q("yn"),
        q("ch", "choice", choices=["red", "blue"]),
        q("tx", "text"),
        q("n", "number", max_value=10),
    ]
    found = messages(
        [
            *bank,
            q("x1", condition={"answer": "yn", "eq": "maybe"}),
            q("x2", condition={"answer": "ch", "in": ["red", "green"]}),
            q("x3", condition={"answer": "tx", "gte": 2}),
            q("x4", condition={"answer": "yn", "eq": "Yes"}),
            q("x5", condition={"answer": "n", "eq": 11}),
            q("ok", condition={"answer": "yn", "eq": True}),
        ]
    )
    assert len(found) == 5
    assert "can never be answered 'maybe'" in found[0]
    assert found[1].startswith("question x2 condition.in:") and "'green'" in found[1]
    assert "gte compares numbers, but question 'tx' is answered text" in found[2]
    assert "stored as 'yes'; compare with that, not 'Yes'" in found[3]
    assert "above 10" in found[4]


def test_unknown_tiers_are_named() -> None:
    found = messages([], [tr("t", {"tier": ["platinum", "diamond"]})])
    assert found == [
        "treatment t condition.tier: unknown tier 'diamond' in the condition; "
        "known tiers: platinum, gold, silver, standard"
    ]


# -- the file and its lines ----------------------------------------------------------


def errors_of(text: str) -> list[str]:
    with pytest.raises(BankFileError) as raised:
        parse_bank(text, "bank.yaml")
    assert raised.value.status == 422
    return raised.value.errors


GOOD = """\
questions:
  - key: cards_elsewhere
    text: Do you hold cards elsewhere?
    kind: yes_no
  - key: card_count
    text: How many?
    kind: number
    condition: {answer: cards_elsewhere, eq: yes}
treatments:
  - key: offer
    title: Offer
    kind: offer
    reason: because
"""


def test_a_good_file_keeps_each_entry_and_its_lines() -> None:
    bank = parse_bank(GOOD, "bank.yaml")
    assert [e.entry.key for e in bank.questions] == ["cards_elsewhere", "card_count"]
    card_count = bank.questions[1]
    assert card_count.line == 5
    assert card_count.line_of(("condition", "eq")) == 8
    assert card_count.line_of(("condition", "all", 3)) == 8  # nearest spelled-out part
    # YAML 1.2 booleans: `yes` stays the word
    assert card_count.entry.condition is not None
    assert card_count.entry.condition.model_dump()["eq"] == "yes"


def test_bad_kind_is_reported_on_its_line() -> None:
    text = GOOD.replace("kind: number", "kind: integer")
    assert errors_of(text) == [
        "bank.yaml:7: question 'card_count': kind: Input should be 'choice', 'yes_no', "
        "'number' or 'text'"
    ]


def test_a_choice_question_without_choices_is_reported_on_the_entry() -> None:
    text = GOOD.replace("kind: yes_no", "kind: choice")
    assert errors_of(text) == [
        "bank.yaml:2: question 'cards_elsewhere': a choice question needs at least two choices"
    ]


def test_a_duplicate_key_names_both_lines() -> None:
    text = GOOD.replace("key: card_count", "key: cards_elsewhere")
    assert errors_of(text) == [
        "bank.yaml:5: question 'cards_elsewhere' is defined twice (first on line 2)"
    ]


def test_a_bad_condition_points_at_the_field_inside_it() -> None:
    text = GOOD.replace(
        "    condition: {answer: cards_elsewhere, eq: yes}\n",
        "    condition:\n      all:\n        - answered: cards_elsewhere\n"
        "        - answer: cards_elsewhere\n          gte: many\n",
    )
    assert errors_of(text) == [
        "bank.yaml:12: question 'card_count': condition.all[1].gte: should be a number"
    ]


def test_every_problem_is_reported_in_line_order() -> None:
    text = (
        GOOD.replace("kind: yes_no", "kind: yes_no\n    colour: red")
        .replace("reason: because", "reason: ''")
        .replace("title: Offer", "title: Offer\n    title: Again")
    )
    assert errors_of(text) == [
        "bank.yaml:5: question 'cards_elsewhere': colour: Extra inputs are not permitted",
        "bank.yaml:13: 'title' appears twice here (first on line 12)",
        "bank.yaml:15: treatment 'offer': reason: String should have at least 1 character",
    ]


def test_a_missing_field_is_named_on_the_entry_line() -> None:
    text = GOOD.replace("    text: How many?\n", "")
    assert errors_of(text) == ["bank.yaml:5: question 'card_count': text: Field required"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "bank.yaml:1: the file is empty"),
        ("- a\n- b\n", "bank.yaml:1: a bank file is a mapping"),
        ("questions: [a\n", "bank.yaml:2: not valid YAML"),
        ("questions: {}\n", "bank.yaml:1: questions must be a list"),
        ("questions:\n  - just text\n", "bank.yaml:2: each of the questions is a mapping"),
        ("questions: []\nrules: []\n", "bank.yaml:2: unknown section 'rules'"),
        ("questions: !!python/name:os.system\n", "bank.yaml:1: not valid YAML"),
    ],
)
def test_a_file_that_is_not_a_bank_says_why(text: str, expected: str) -> None:
    found = errors_of(text)
    assert found[0].startswith(expected), found


def test_read_bank_reports_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(BankFileError, match="cannot read the file"):
        read_bank(tmp_path / "missing.yaml")
    binary = tmp_path / "bank.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(BankFileError, match="not UTF-8"):
        read_bank(binary)
