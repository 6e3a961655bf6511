"""Treatment rules: which apply, in what order, and why."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from callcenter.agent_assist.knowledge.conditions import Facts
from callcenter.agent_assist.knowledge.treatments import Treatment, TreatmentKind, matching


def t(key: str, condition: Any = None, **fields: Any) -> Treatment:
    return Treatment.model_validate(
        {"key": key, "title": key.title(), "kind": "offer", "reason": f"why {key}"}
        | ({"condition": condition} if condition is not None else {})
        | fields
    )


RULES = [
    t(
        "premium_card",
        {"all": [{"value": {"gte": 25000}}, {"answer": "cards_elsewhere", "eq": "yes"}]},
        priority=30,
    ),
    t(
        "escalate",
        {"all": [{"tier": ["platinum"]}, {"answer": "open_issue", "eq": "yes"}]},
        kind="escalation",
        priority=10,
    ),
    t("complaint_tone", {"answer": "open_issue", "eq": "yes"}, kind="tone", priority=20),
    t("email", {"answer": "channel", "eq": "email"}, kind="channel", priority=50),
    t("retired", {"tier": ["platinum"]}, active=False, priority=1),
    t("everyone", None, kind="tone", priority=99, detail="Use the customer's name."),
]


def test_matching_rules_come_by_priority_with_their_reasons() -> None:
    facts = Facts(
        tier="platinum",
        lifetime_value=Decimal("30000.00"),
        answers={"cards_elsewhere": "yes", "open_issue": "yes"},
    )
    found = matching(RULES, facts)
    assert [m.key for m in found] == ["escalate", "complaint_tone", "premium_card", "everyone"]
    escalate = found[0]
    assert escalate.kind is TreatmentKind.escalation
    assert escalate.reason == "why escalate"
    assert escalate.because == ["tier platinum", "open_issue = yes"]
    assert found[2].because == ["lifetime value 30000.00", "cards_elsewhere = yes"]
    assert found[3].because == ["applies to every caller"]
    assert found[3].detail == "Use the customer's name."


def test_rules_that_do_not_hold_or_are_inactive_are_left_out() -> None:
    facts = Facts(tier="gold", lifetime_value=Decimal(500), answers={"channel": "email"})
    assert [m.key for m in matching(RULES, facts)] == ["email", "everyone"]


def test_ties_in_priority_go_by_key() -> None:
    rules = [t("b_rule", priority=5), t("a_rule", priority=5)]
    assert [m.key for m in matching(rules, Facts())] == ["a_rule", "b_rule"]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"kind": "discount"}, "Input should be"),
        ({"reason": ""}, "at least 1 character"),
        ({"title": ""}, "at least 1 character"),
        ({"condition": {"tier": "gold"}}, "valid list"),
    ],
)
def test_a_bad_rule_is_refused(fields: dict[str, Any], fragment: str) -> None:
    base = {"key": "k", "title": "T", "kind": "offer", "reason": "r"}
    with pytest.raises(ValidationError) as raised:
        Treatment.model_validate(base | fields)
    assert fragment in str(raised.value)
