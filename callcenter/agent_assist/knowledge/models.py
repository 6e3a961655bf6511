"""Wire models of the question bank, the treatment rules and answers.

These are what supervisors and integrators send and read; they are the
request validation and the OpenAPI document at once.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from callcenter.agent_assist.knowledge.conditions import Condition, Key
from callcenter.agent_assist.knowledge.questions import (
    AnswerKind,
    Bound,
    ChoiceText,
    Priority,
    Question,
    QuestionFields,
    Text,
)
from callcenter.agent_assist.knowledge.treatments import (
    Detail,
    MatchedTreatment,
    Reason,
    Title,
    Treatment,
    TreatmentFields,
    TreatmentKind,
)


class Source(StrEnum):
    """Who manages an entry: the bank file (replaced on every load) or the API."""

    file = "file"
    api = "api"


class QuestionOut(Question):
    source: Source
    created_at: datetime
    updated_at: datetime


class QuestionPut(QuestionFields):
    """A question as PUT creates or replaces it; ``key`` may be left out (the path names it)."""

    key: Key | None = None


class QuestionList(BaseModel):
    questions: list[QuestionOut]


class _Patch(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_null(value: Any) -> Any:
    # Absent means "unchanged"; an explicit null would blank a required field.
    if value is None:
        raise ValueError("may be left out but not null")
    return value


class QuestionPatch(_Patch):
    """Fields to change; absent fields stay. ``condition``, ``fresh_days``,
    ``min_value`` and ``max_value`` may be set to null (no condition, forever, unbounded)."""

    text: Text | None = None
    kind: AnswerKind | None = None
    choices: list[ChoiceText] | None = Field(default=None, max_length=50)
    min_value: Bound | None = None
    max_value: Bound | None = None
    condition: Condition | None = None
    priority: Priority | None = None
    cooldown_days: int | None = Field(default=None, ge=1, le=3650)
    fresh_days: int | None = Field(default=None, ge=1, le=36500)
    active: bool | None = None

    @field_validator(
        "text", "kind", "choices", "priority", "cooldown_days", "active", mode="before"
    )
    @classmethod
    def _required(cls, value: Any) -> Any:
        return _not_null(value)


class TreatmentOut(Treatment):
    source: Source
    created_at: datetime
    updated_at: datetime


class TreatmentPut(TreatmentFields):
    key: Key | None = None


class TreatmentList(BaseModel):
    treatments: list[TreatmentOut]


class TreatmentPatch(_Patch):
    """Fields to change; absent fields stay. ``condition`` may be set to null (always applies)."""

    title: Title | None = None
    kind: TreatmentKind | None = None
    detail: Detail | None = None
    condition: Condition | None = None
    reason: Reason | None = None
    priority: Priority | None = None
    active: bool | None = None

    @field_validator("title", "kind", "detail", "reason", "priority", "active", mode="before")
    @classmethod
    def _required(cls, value: Any) -> Any:
        return _not_null(value)


class Removed(BaseModel):
    """What DELETE did: a question with answers is deactivated instead of deleted."""

    key: str
    deleted: bool
    deactivated: bool
    detail: str


class AnswerIn(BaseModel):
    """An answer to the customer's pending question, or a skip (``skipped: true``, no value).

    The same shape as the answer in the agent socket's ``wrap_up`` and as a
    stored ``Answer``: ``question_key``, ``value``, ``skipped``."""

    model_config = ConfigDict(extra="forbid")

    question_key: Key
    value: JsonValue = Field(
        default=None,
        description="number: a number; yes_no: true/false or 'yes'/'no'; choice: one of the "
        "choices; text: up to 500 characters.",
    )
    skipped: bool = False


class Answer(BaseModel):
    """One stored answer (or skip)."""

    id: int
    question_key: str
    value: JsonValue = Field(description="The normalised answer; null when skipped.")
    skipped: bool
    answered_at: datetime
    call_id: int | None
    agent_id: int | None
    interaction_id: int | None


class LatestAnswer(Answer):
    current: bool = Field(
        description="The answer counts now: not a skip, and not older than the question's "
        "fresh_days."
    )


class CustomerQuestion(BaseModel):
    """The customer's pending question and the latest answer to every question."""

    customer_id: int
    pending: Question | None
    answers: list[LatestAnswer]


class AnswerRecorded(BaseModel):
    answer: Answer
    stored: bool = Field(
        description="false when this answer was stored before (a retry on the same call)."
    )
    next: Question | None = Field(description="The question now pending, or null.")


class CustomerTreatments(BaseModel):
    customer_id: int
    treatments: list[MatchedTreatment]


class BankChange(BaseModel):
    """What a bank file load changed, entry keys by what happened to them."""

    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    deactivated: list[str] = Field(default_factory=list)
    kept_api: list[str] = Field(
        default_factory=list, description="In the file, but managed through the API: left alone."
    )
