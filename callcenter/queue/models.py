"""Wire models of the hold queue: calls, queues, agents, as integrators and supervisors see them."""

from __future__ import annotations

from datetime import datetime, time
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

from callcenter.customers.models import CustomerSummary, Outcome
from callcenter.queue import policy
from callcenter.queue.policy import PolicyName

QueueName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
]
ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
AgentName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
]
#: Where a PBX reaches an agent: a Twilio client (``client:ada``), a SIP URI
#: (``sip:ada@pbx.example``), an E.164 number (``+15551230000``) or an
#: Asterisk channel technology and resource (``PJSIP/1001``).
AgentEndpointText = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=200,
        pattern=r"^(client:[A-Za-z0-9_.@-]{1,120}|sips?:[^\s<>\"]{1,190}|\+[1-9][0-9]{6,14}"
        r"|[A-Za-z][A-Za-z0-9_]{0,31}/[^\s<>\"]{1,160})$",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallState(StrEnum):
    waiting = "waiting"
    connected = "connected"
    completed = "completed"
    abandoned = "abandoned"
    transferred = "transferred"


class AgentState(StrEnum):
    offline = "offline"
    available = "available"
    offered = "offered"
    on_call = "on_call"
    wrap_up = "wrap_up"
    not_responding = "not_responding"


class EndOutcome(StrEnum):
    completed = "completed"
    abandoned = "abandoned"
    transferred = "transferred"


class CallbackRule(_Strict):
    """When a caller holding in this queue is offered a callback, and how it is rung.

    The caller who takes it keeps their place: the call stays in the queue
    with its service key (see ``callcenter.queue.policy``).
    """

    after_seconds: float = Field(
        default=60,
        ge=0,
        le=86_400,
        description="Offered when the caller's estimated wait is at least this (0: always).",
    )
    tiers: list[Annotated[str, StringConstraints(max_length=40)]] | None = Field(
        default=None,
        max_length=20,
        description='Only callers of these tiers are offered it ("unknown": unidentified '
        "callers); null: everyone. Offering it first to valuable tiers changes how they "
        "wait, never when anyone is served.",
    )
    hours: str | None = Field(
        default=None,
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="Opening hours in which it is offered, HH:MM-HH:MM local time "
        "(22:00-06:00 spans midnight); null: always.",
    )
    timezone: str = Field(default="UTC", max_length=64, description="The zone of hours.")
    attempts: int = Field(
        default=3, ge=1, le=10, description="Rings before the call ends callback_failed."
    )
    retry_seconds: float = Field(
        default=120, ge=1, le=3600, description="Wait after a ring nobody answered."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: a name that is a folder of the zone database ("America").
            raise ValueError(f"unknown time zone {value!r} (an IANA name: Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _some_hours(self) -> CallbackRule:
        if self.hours is not None:
            opens, closes = self.hours.split("-")
            if opens == closes:
                raise ValueError("hours must not open and close at the same minute")
        return self

    #: The pure rule, built once: the directory keeps a queue's config until it
    #: changes, and every webhook of a caller holding in the queue asks for it.
    _pure: policy.CallbackRule | None = PrivateAttr(default=None)

    def rule(self) -> policy.CallbackRule:
        """The pure rule ``policy.callback_offered`` applies."""
        if self._pure is None:
            self._pure = self._build_rule()
        return self._pure

    def _build_rule(self) -> policy.CallbackRule:
        hours = None
        if self.hours is not None:
            opens, closes = (time.fromisoformat(t) for t in self.hours.split("-"))
            hours = (opens, closes)
        tiers = frozenset(self.tiers) if self.tiers is not None else None
        return policy.CallbackRule(after_seconds=self.after_seconds, tiers=tiers, hours=hours)

    def local_time(self, now: datetime) -> time:
        """``now`` on the clock of ``timezone``, as ``hours`` is read."""
        return now.astimezone(ZoneInfo(self.timezone)).time()


class QueueConfig(_Strict):
    """How one queue orders and serves its callers."""

    policy: PolicyName = PolicyName.value
    credits: dict[str, Annotated[float, Field(ge=0, le=3600)]] = Field(
        default_factory=dict,
        description="Tier to seconds of credit (value policy). Empty: the built-in defaults.",
    )
    offset_seconds: float = Field(
        default=0, ge=-3600, le=3600, description="Added to every call's credit in this queue."
    )
    offer_timeout_seconds: float = Field(default=15, ge=1, le=300)
    wrap_up_seconds: float = Field(
        default=10,
        ge=0,
        le=3600,
        description="Seconds an agent stays in wrap-up after a call (0: straight to available).",
    )
    wrap_up_max_seconds: float = Field(
        default=120,
        ge=0,
        le=3600,
        description="The longest an agent who is still writing may hold its wrap-up, from the "
        "call's end, by asking for more time (wrap_up_extend); never less than "
        "wrap_up_seconds. 0: no extensions.",
    )
    overflow_after_seconds: float | None = Field(
        default=None, gt=0, description="From this wait on, overflow agents may take the call too."
    )
    max_wait_seconds: float | None = Field(
        default=None,
        gt=0,
        description="At this wait the call moves to overflow_queue with its key, "
        "or ends transferred (reason max_wait) when there is none.",
    )
    overflow_queue: QueueName | None = None
    service_level_seconds: float = Field(default=20, gt=0)
    callback: CallbackRule | None = Field(
        default=None, description="When callers are offered a callback; null: never."
    )
    redial_window_seconds: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="A customer who calls this queue again within this many seconds of an "
        "abandoned call resumes that call's place; null: every call starts afresh.",
    )


class Queue(QueueConfig):
    name: str


class CallIn(_Strict):
    """An incoming call, as a telephony adapter hands it in."""

    call_id: ExternalId = Field(description="The peer's call id; a repeat is a no-op.")
    queue: QueueName = "general"
    ani: str | None = Field(default=None, max_length=64, description="The calling number.")
    customer_number: str | None = Field(
        default=None, max_length=64, description="Typed in the IVR, if already known."
    )


class IdentifyCallIn(_Strict):
    customer_number: str = Field(min_length=1, max_length=64)


class PriorityIn(_Strict):
    """A supervisor's credit for one call; null returns it to its tier's credit."""

    credit_seconds: float | None = Field(
        description="Seconds of credit, within 0 and the queue's maximum credit."
    )


class MoveIn(_Strict):
    """Where a supervisor moves a waiting call; it keeps its service key."""

    queue: QueueName


class QueuePatch(_Strict):
    """A change to a queue's configuration: only the fields given change.

    ``PUT`` replaces the whole configuration (a field left out goes back to its
    default); this leaves every other field as it is. A nullable field given as
    null is cleared.
    """

    policy: PolicyName | None = None
    credits: dict[str, Annotated[float, Field(ge=0, le=3600)]] | None = None
    offset_seconds: float | None = Field(default=None, ge=-3600, le=3600)
    offer_timeout_seconds: float | None = Field(default=None, ge=1, le=300)
    wrap_up_seconds: float | None = Field(default=None, ge=0, le=3600)
    wrap_up_max_seconds: float | None = Field(default=None, ge=0, le=3600)
    overflow_after_seconds: float | None = Field(default=None, gt=0)
    max_wait_seconds: float | None = Field(default=None, gt=0)
    overflow_queue: QueueName | None = None
    service_level_seconds: float | None = Field(default=None, gt=0)
    callback: CallbackRule | None = None
    redial_window_seconds: float | None = Field(default=None, gt=0, le=86_400)

    @model_validator(mode="after")
    def _changes_something(self) -> QueuePatch:
        if not self.model_fields_set:
            raise ValueError("give at least one field of the queue's configuration")
        nullable = {
            "overflow_after_seconds",
            "max_wait_seconds",
            "overflow_queue",
            "callback",
            "redial_window_seconds",
        }
        for name in self.model_fields_set - nullable:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class EndIn(_Strict):
    outcome: EndOutcome
    reason: str | None = Field(default=None, max_length=200)


class Call(BaseModel):
    id: int
    call_id: str = Field(description="The peer's call id.")
    queue: str
    state: CallState
    ani: str | None
    customer: CustomerSummary | None
    identified_by: str | None
    tier: str | None
    credit_seconds: float
    credit_explicit: bool
    service_key: datetime
    enqueued_at: datetime
    connected_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    agent_id: int | None
    offered_to: int | None = Field(description="The agent the call is offered to right now.")
    position: int | None = Field(description="1 = next to be served; null once answered.")
    estimated_wait_seconds: float | None = Field(
        description="Recomputed now from the live answer rate and staffing; null: no basis yet."
    )
    ewt_at_enqueue: float | None
    bumped_by: str | None = Field(
        default=None, description="Who set the call's credit by hand (role:name), if anyone."
    )
    callback: CallbackState | None = Field(
        default=None,
        description="The caller chose to be called back: the call waits without them on the "
        "line, in the same place; null: an ordinary call.",
    )
    resumed: Resumed | None = Field(
        default=None, description="This call resumed the place of the caller's dropped call."
    )


class CallbackState(BaseModel):
    """A virtual call: the caller hung up to be rung back when an agent accepts."""

    number: str = Field(description="Whom to ring, E.164.")
    requested_at: datetime
    attempts: int = Field(description="Rings so far.")
    retry_at: datetime | None = Field(
        description="Out of the queue until then, after a ring nobody answered."
    )
    answered_at: datetime | None = Field(description="The caller picked up the current ring.")


class Resumed(BaseModel):
    """A redial put back at the place of the call it follows."""

    call_id: int = Field(description="Our id of the abandoned call whose place it took.")
    waited_before_seconds: float = Field(description="How long the caller had waited before.")
    arrived_at: datetime = Field(
        description="The arrival its place counts from: the first call's, not this one's."
    )


class EnqueueAnswer(BaseModel):
    created: bool = Field(description="False when the call id was already known (a retry).")
    identify: Outcome | None = Field(description="How the caller was identified; null on a retry.")
    call: Call
    #: Not part of the API's answer: see ``peer_hung_up``.
    _peer_hung_up: bool = PrivateAttr(default=False)

    @property
    def peer_hung_up(self) -> bool:
        """A peer's call just created whose hang-up came first (its tombstone), as the
        enqueue's own statement read it; the telephony gateway then ends the call."""
        return self._peer_hung_up


class WaitingCall(BaseModel):
    id: int
    call_id: str
    position: int
    customer: CustomerSummary | None
    tier: str | None
    credit_seconds: float
    credit_explicit: bool
    service_key: datetime
    enqueued_at: datetime
    waited_seconds: float
    estimated_wait_seconds: float | None
    offered_to: int | None
    callback: bool = Field(
        default=False, description="A virtual call: the caller is rung back when it is served."
    )
    resumed: bool = Field(default=False, description="A redial that resumed a dropped call.")


class QueueCalls(BaseModel):
    queue: str
    calls: list[WaitingCall]


class QueueSummary(BaseModel):
    name: str
    config: QueueConfig
    waiting: int
    offered: int
    longest_wait_seconds: float | None
    agents_staffed: int
    agents_available: int
    answered: int = Field(description="Calls answered in the stats window.")
    abandoned: int = Field(description="Calls abandoned in the stats window.")
    service_level: float | None = Field(
        description="Share of the window's answered calls answered within service_level_seconds."
    )
    estimated_wait_seconds: float | None = Field(description="For a new standard caller now.")
    callbacks_waiting: int = Field(
        default=0,
        description="Virtual calls among the waiting: callers who took a callback, in their "
        "place, rung when an agent takes the call.",
    )
    callbacks_set_aside: int = Field(
        default=0,
        description="Callbacks whose ring nobody answered, out of the queue until their retry "
        "(then back in their place).",
    )


class QueueList(BaseModel):
    window_seconds: float
    queues: list[QueueSummary]


class AgentIn(_Strict):
    name: AgentName
    queues: list[QueueName] = Field(min_length=1, max_length=50)
    overflow_queues: list[QueueName] = Field(default_factory=list, max_length=50)
    endpoint: AgentEndpointText | None = Field(
        default=None,
        description="Where the PBX reaches the agent: client:NAME, sip:URI, +E164 "
        "or TECH/RESOURCE.",
    )


class AgentPatch(_Strict):
    """A change to an agent: the fields given change; ``endpoint: null`` removes the endpoint."""

    endpoint: AgentEndpointText | None = Field(
        default=None,
        description="Where the PBX reaches the agent: client:NAME, sip:URI, +E164 or "
        "TECH/RESOURCE.",
    )
    queues: list[QueueName] | None = Field(default=None, min_length=1, max_length=50)
    overflow_queues: list[QueueName] | None = Field(default=None, max_length=50)

    @model_validator(mode="after")
    def _changes_something(self) -> AgentPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of endpoint, queues, overflow_queues")
        if "queues" in self.model_fields_set and self.queues is None:
            raise ValueError("queues: an agent serves at least one queue")
        return self


class Agent(BaseModel):
    id: int
    name: str
    queues: list[str]
    overflow_queues: list[str]
    state: AgentState
    state_since: datetime
    idle_since: datetime | None
    call_id: int | None
    wrap_up_until: datetime | None
    last_seen_at: datetime | None
    endpoint: str | None = None
    token_expires_at: datetime | None = Field(
        default=None, description="When the agent's token stops working (null: never)."
    )
    removed_at: datetime | None = None


class QueueWaiting(BaseModel):
    """Callers waiting in one queue, as an agent sees it before going available."""

    name: str
    waiting: int
    oldest_enqueued_at: datetime | None = Field(
        description="When the caller who has waited longest arrived (null: nobody waits)."
    )


class Priority(BaseModel):
    """Why the call was served when it was: shown before the agent accepts."""

    tier: str | None
    credit_seconds: float
    explicit: bool = Field(description="A supervisor set the credit.")
    reason: str


class Offer(BaseModel):
    """A call offered to an agent, as the agent sees it before accepting."""

    offer_id: int
    call_id: int
    queue: str
    expires_at: datetime
    enqueued_at: datetime
    ani: str | None
    tier: str | None
    customer: CustomerSummary | None
    priority: Priority
    callback: str | None = Field(
        default=None,
        description="For a callback, the number the service rings when the agent accepts "
        "(the caller is not on the line).",
    )
    resumed: Resumed | None = Field(
        default=None, description="The caller called back after a drop and kept their place."
    )


class AgentCreated(BaseModel):
    agent: Agent
    token: str = Field(description="Shown once: the agent panel's credential for /ws/agent.")


class AgentList(BaseModel):
    agents: list[Agent]
