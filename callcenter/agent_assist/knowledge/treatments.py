"""Treatment rules: how to treat this caller, and why. Pure.

A rule says what to do (an offer, a tone, a channel, an escalation), when it
applies (a condition on tier, value and current answers), and why the rule
exists. The agent sees every active rule that applies, in priority order,
each with its reason and the customer's facts that made it apply, so the
suggestion can be trusted or challenged, never followed blindly.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from callcenter.agent_assist.knowledge import conditions
from callcenter.agent_assist.knowledge.conditions import Condition, Facts, Key
from callcenter.agent_assist.knowledge.questions import Priority


class TreatmentKind(StrEnum):
    offer = "offer"
    tone = "tone"
    channel = "channel"
    escalation = "escalation"


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Detail = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class TreatmentFields(BaseModel):
    """Everything about a treatment rule but its key."""

    model_config = ConfigDict(extra="forbid")

    title: Title = Field(description="What the agent reads first, e.g. 'Offer the premium card'.")
    kind: TreatmentKind
    detail: Detail = Field(default="", description="How to do it: the script, the terms.")
    condition: Condition | None = Field(
        default=None, description="When the rule applies; null: to every caller."
    )
    reason: Reason = Field(description="Why the rule exists, shown with the facts that apply.")
    priority: Priority = Field(default=100, description="Smaller is shown first; ties by key.")
    active: bool = True

    @field_validator("condition")
    @classmethod
    def _readable(cls, value: conditions.Node | None) -> conditions.Node | None:
        return conditions.check_size(value)


class Treatment(TreatmentFields):
    key: Key


class MatchedTreatment(BaseModel):
    """A rule that applies to this caller, as the agent's panel shows it."""

    key: str
    title: str
    kind: TreatmentKind
    detail: str
    reason: str = Field(description="The rule's own reason.")
    because: list[str] = Field(
        description="The customer's facts that made the rule apply, e.g. 'tier platinum'."
    )
    priority: int


def matching(
    treatments: Iterable[Treatment], facts: Facts, words: conditions.Words = conditions.PLAIN
) -> list[MatchedTreatment]:
    """The active rules whose condition holds for ``facts``, by ``(priority, key)``.

    ``facts.answers`` must hold the current answers only (see
    ``questions.current_answers``).
    """
    found: list[MatchedTreatment] = []
    for rule in sorted(treatments, key=lambda t: (t.priority, t.key)):
        if not rule.active:
            continue
        if rule.condition is None:
            because = ["applies to every caller"]
        else:
            because = conditions.reasons(rule.condition, facts, words)
            if not because:
                continue
        found.append(
            MatchedTreatment(
                key=rule.key,
                title=rule.title,
                kind=rule.kind,
                detail=rule.detail,
                reason=rule.reason,
                because=because,
                priority=rule.priority,
            )
        )
    return found
