"""What ``GET /api/stats`` answers and ``/ws/dashboard`` sends: the supervisor's figures."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from callcenter.queue.models import AgentState


class Figures(BaseModel):
    """What happened over a stretch of time (the rolling window, or since local midnight)."""

    offered: int = Field(description="Calls that entered the queue.")
    answered: int
    answered_within_service_level: int
    abandoned: int
    service_level: float | None = Field(
        description="Share of the answered calls answered within the queue's "
        "service_level_seconds; null before any answer."
    )
    average_speed_of_answer_seconds: float | None
    abandon_rate: float | None = Field(description="abandoned / (answered + abandoned).")
    longest_answered_wait_seconds: float | None
    abandoned_value: float = Field(description="Net value of the callers who hung up waiting.")
    learning_answered: int = Field(description="Learning questions answered in these calls.")
    learning_skipped: int


class TierStats(BaseModel):
    tier: str
    waiting: int
    offering: int = Field(description="Waiting calls being offered to an agent right now.")
    longest_wait_seconds: float | None
    estimated_wait_seconds: float | None = Field(description="For a new caller of this tier, now.")
    value_at_risk: float = Field(description="Net value of this tier's callers waiting now.")
    window: Figures
    today: Figures


class QueueStats(BaseModel):
    name: str
    policy: str
    service_level_seconds: float
    overtaking_bound_seconds: float = Field(
        description="The policy's promise: nobody is overtaken by a caller who arrived "
        "more than this later."
    )
    waiting: int
    offering: int
    callbacks_waiting: int = Field(
        default=0, description="Of the waiting, callers who took a callback (in their place)."
    )
    callbacks_set_aside: int = Field(
        default=0,
        description="Callbacks out of the queue until their retry, after a ring nobody answered.",
    )
    longest_wait_seconds: float | None
    estimated_wait_seconds: float | None = Field(description="For a new standard caller, now.")
    agents: dict[AgentState, int] = Field(description="Agents serving the queue, by state.")
    value_at_risk: float
    lowest_tier: str
    longest_lowest_tier_wait_seconds: float | None = Field(
        description="The longest wait of the lowest tier today (answered) or now (waiting), "
        "to read against overtaking_bound_seconds."
    )
    overtaken_now: int = Field(
        description="Waiting calls with a call ahead that arrived more than the bound later "
        "(the policy promises 0)."
    )
    bound_exceeded_today: bool = Field(
        description="overtaken_now was above 0 at some update since local midnight."
    )
    window: Figures
    today: Figures
    tiers: list[TierStats]


class Stats(BaseModel):
    at: datetime = Field(description="When the figures were read (the database's clock).")
    window_seconds: float
    day_started_at: datetime = Field(description="Local midnight the 'today' figures count from.")
    queues: list[QueueStats]


class WaitingRow(BaseModel):
    id: int
    call_id: str
    queue: str
    position: int
    ani: str | None
    customer_id: int | None
    customer_name: str | None
    customer_number: str | None
    tier: str | None
    credit_seconds: float
    credit_explicit: bool
    bumped_by: str | None
    enqueued_at: datetime
    waited_seconds: float
    estimated_wait_seconds: float | None
    offered_to: int | None
    value: float
    why: str = Field(description="Why the call is where it is (what the agent is told too).")
    callback: bool = Field(
        default=False, description="A virtual call: the caller is rung back when it is served."
    )
    resumed: bool = Field(default=False, description="A redial that kept a dropped call's place.")


class AgentRow(BaseModel):
    id: int
    name: str
    queues: list[str]
    state: AgentState
    state_since: datetime
    seconds_in_state: float
    call_id: int | None
    call_queue: str | None
    customer_name: str | None
    customer_number: str | None
    handled_today: int
    last_seen_at: datetime | None


class ChartPoint(BaseModel):
    """One sample for the last hour's chart: waiting calls and window service level per queue."""

    at: datetime
    waiting: dict[str, int]
    service_level: dict[str, float | None]


class Board(BaseModel):
    """Everything one dashboard shows."""

    stats: Stats
    waiting: list[WaitingRow]
    agents: list[AgentRow]


class SnapshotMessage(BaseModel):
    type: Literal["snapshot"] = "snapshot"
    board: Board
    chart: list[ChartPoint]


class ChangeMessage(BaseModel):
    """What changed since the previous message: only the parts that did (the rest stand)."""

    type: Literal["change"] = "change"
    at: datetime
    stats: Stats | None = None
    waiting: list[WaitingRow] | None = None
    agents: list[AgentRow] | None = None
    point: ChartPoint | None = None
