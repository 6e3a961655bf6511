"""The agent websocket's messages, validated with pydantic (the README documents them).

Every message is a JSON object with a ``type``. The server numbers its
messages per connection with ``seq`` (1, 2, 3, ...), so a panel can tell it
missed nothing on this connection; on every (re)connect the first message is
the agent's full ``state``, so a panel that reconnects sees its pending offer.
A client may put a ``ref`` on a message; the ``ack`` or ``error`` answering
it carries the same ``ref``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from callcenter.http.routing import BIGINT_MAX
from callcenter.queue.models import Agent, Call, Offer, QueueWaiting

Ref = Annotated[str | int | None, Field(default=None, description="Echoed in the answer.")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ref: Ref = None


class Available(_In):
    """Ready for the next call (also ends wrap-up and *not responding*)."""

    type: Literal["available"]


class Offline(_In):
    """Take no calls (a break); the socket may stay open. On a call: once it is over."""

    type: Literal["offline"]


class Accept(_In):
    type: Literal["accept"]
    offer_id: int = Field(gt=0, le=BIGINT_MAX)


class Reject(_In):
    type: Literal["reject"]
    offer_id: int = Field(gt=0, le=BIGINT_MAX)


class End(_In):
    """The agent ends its call: completed, or transferred elsewhere."""

    type: Literal["end"]
    call_id: int = Field(gt=0, le=BIGINT_MAX)
    outcome: Literal["completed", "transferred"] = "completed"


class Ping(_In):
    type: Literal["ping"]


class HistoryRequest(_In):
    """The next page of the caller's history (older than ``before``)."""

    type: Literal["history"]
    call_id: int = Field(gt=0, le=BIGINT_MAX)
    before: int = Field(
        gt=0, le=BIGINT_MAX, description="The oldest interaction id the panel shows."
    )


class AnswerIn(BaseModel):
    """The answer to the question shown on the call, or a skip."""

    model_config = ConfigDict(extra="forbid")
    question_key: str = Field(min_length=1, max_length=64)
    value: str | int | float | bool | None = None
    skipped: bool = False


class WrapUp(_In):
    """What the agent records about the call: it ends the call if it is still up.

    Allowed for the agent's own call while it is connected or after it ended,
    until it is wrapped up once. ``available`` sends the agent back to taking
    calls at once (ending a wrap-up timer early).
    """

    type: Literal["wrap_up"]
    call_id: int = Field(gt=0, le=BIGINT_MAX)
    outcome: Literal["completed", "transferred"] = "completed"
    notes: str | None = Field(default=None, max_length=4000)
    answer: AnswerIn | None = None
    available: bool = True


class WrapUpExtend(_In):
    """The agent is still writing the wrap-up of its call: hold the wrap-up longer.

    The wrap-up then lasts until ``seconds`` from now, at most the queue's
    ``wrap_up_max_seconds`` after the call ended (120 s unless changed); the
    ``ack`` carries the new ``wrap_up_until``. 409 once at the maximum.
    """

    type: Literal["wrap_up_extend"]
    call_id: int = Field(gt=0, le=BIGINT_MAX)
    seconds: float = Field(default=30, gt=0, le=300)


class Verify(_In):
    """The agent confirmed who is calling (their own call, connected or in wrap-up).

    Recorded with the agent and the time, by the server. A pending link (a
    customer number typed from a phone that is not theirs) is made only now.
    Sending it again changes nothing; the ``ack`` carries the new ``recognised``.
    """

    type: Literal["verify"]
    call_id: int = Field(gt=0, le=BIGINT_MAX)


class FindCaller(_In):
    """Search for the caller of the agent's own call, which the service could not name.

    Only while the call is connected and its caller unrecognised (a shared or
    withheld number, a first call, or one the agent picked before). Answered by
    ``callers`` (at most 10, audited); a few searches a minute per agent.
    """

    type: Literal["find_caller"]
    call_id: int = Field(gt=0, le=BIGINT_MAX)
    query: str = Field(
        min_length=1,
        max_length=100,
        description="A customer number, a phone number, or at least 3 letters of a name.",
    )


class PickCaller(_In):
    """The caller is this customer (one the panel listed, or a search found for this call).

    Identifies the call as the IVR's typed number does, recorded as the agent's
    confirmation; the ``ack`` carries the new ``recognised`` and a new ``panel`` follows.
    """

    type: Literal["pick_caller"]
    call_id: int = Field(gt=0, le=BIGINT_MAX)
    customer_id: int = Field(gt=0, le=BIGINT_MAX)


class CreateCaller(_In):
    """The caller is nobody we know: create the customer from the call, and pick them."""

    type: Literal["create_caller"]
    call_id: int = Field(gt=0, le=BIGINT_MAX)
    name: str = Field(min_length=1, max_length=200)


ClientMessage = Annotated[
    Available
    | Offline
    | Accept
    | Reject
    | End
    | Ping
    | HistoryRequest
    | WrapUp
    | Verify
    | WrapUpExtend
    | FindCaller
    | PickCaller
    | CreateCaller,
    Field(discriminator="type"),
]
CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class StateMessage(BaseModel):
    type: Literal["state"] = "state"
    agent: Agent
    offer: Offer | None
    call: Call | None


class QueuesMessage(BaseModel):
    """The callers waiting in the agent's queues: after the first ``state`` on every
    (re)connect, then whenever the figures change (at most twice a second)."""

    type: Literal["queues"] = "queues"
    queues: list[QueueWaiting]


class OfferMessage(Offer):
    type: Literal["offer"] = "offer"


RecognisedBy = Literal[
    "phone",
    "customer_number",
    "pending",
    "linked",
    "conflict",
    "multiple",
    "unknown",
    "withheld",
    "agent",
]


class Recognised(BaseModel):
    by: RecognisedBy
    detail: str
    pending_link: str | None = Field(
        default=None,
        description="The phone (E.164) that is linked to the customer only once the agent "
        "confirms who is calling (``verify``); null when no link waits.",
    )
    verified_by: str | None = Field(default=None, description="Who confirmed the caller.")
    verified_at: datetime | None = None


class AckMessage(BaseModel):
    type: Literal["ack"] = "ack"
    ref: str | int | None
    to: str
    call_id: int | None = None
    recognised: Recognised | None = Field(
        default=None,
        description="For ``verify``, ``pick_caller`` and ``create_caller``: how the caller "
        "stands now.",
    )
    customer_id: int | None = Field(
        default=None, description="For ``pick_caller`` and ``create_caller``: who the caller is."
    )
    wrap_up_until: datetime | None = Field(
        default=None, description="For ``wrap_up_extend``: when the wrap-up ends now."
    )


class ErrorMessage(BaseModel):
    type: Literal["error"] = "error"
    ref: str | int | None = None
    status: int
    detail: str
    field: str | None = None


class PongMessage(BaseModel):
    type: Literal["pong"] = "pong"
    ref: str | int | None = None


class CallerCandidate(BaseModel):
    """A customer who may be the caller: enough to ask "are you ...?", nothing more."""

    id: int
    customer_number: str | None
    name: str
    tier: str
    last_contact_at: datetime | None


class CallersMessage(BaseModel):
    """The answer to ``find_caller``."""

    type: Literal["callers"] = "callers"
    ref: str | int | None = None
    call_id: int
    candidates: list[CallerCandidate]


ServerMessage = (
    StateMessage
    | OfferMessage
    | AckMessage
    | ErrorMessage
    | PongMessage
    | CallersMessage
    | QueuesMessage
)


class PanelCustomer(BaseModel):
    id: int
    customer_number: str | None
    name: str
    tier: str
    tier_pinned: bool
    provisional: bool
    lifetime_value: Decimal
    annual_margin: Decimal
    cost_to_serve: Decimal
    net_value: Decimal = Field(
        description="Lifetime value minus cost to serve: the number the tier is earned on."
    )
    currency: str = Field(description="ISO 4217 code of the amounts (CALLCENTER_CURRENCY).")
    phones: list[str]


class Need(BaseModel):
    """One answer in the needs profile."""

    key: str
    question: str
    value: Any
    answered_at: datetime


class HistoryAnswer(BaseModel):
    question_key: str
    question: str
    value: Any
    skipped: bool


class HistoryItem(BaseModel):
    interaction_id: int
    call_id: int | None
    started_at: datetime
    ended_at: datetime | None
    channel: str
    agent: str | None
    outcome: str | None
    notes: str | None
    answer: HistoryAnswer | None
    waited_seconds: float | None = Field(
        default=None, description="How long the caller waited in the queue (a call's contact)."
    )


class AttemptsSince(BaseModel):
    """The caller's abandoned attempts since the last contact, as one line."""

    count: int
    longest_wait_seconds: float | None
    latest_at: datetime | None


class PanelQuestion(BaseModel):
    key: str
    text: str
    kind: str
    choices: list[str]
    min_value: float | None = None
    max_value: float | None = None


class PanelTreatment(BaseModel):
    key: str
    title: str
    kind: str
    detail: str
    reason: str = Field(description="Why the rule exists.")
    because: list[str] = Field(description="The caller's facts that made it apply.")


class HistoryMessage(BaseModel):
    type: Literal["history"] = "history"
    ref: str | int | None = Field(default=None, description="The request's ``ref``.")
    call_id: int
    items: list[HistoryItem]
    next_before: int | None = Field(description="Pass as ``before`` for the next page.")


class PanelMessage(BaseModel):
    """The assist panel for the call the agent holds (never sent for anyone else's)."""

    type: Literal["panel"] = "panel"
    call_id: int
    recognised: Recognised
    customer: PanelCustomer | None
    needs: list[Need]
    history: HistoryMessage
    question: PanelQuestion | None
    treatments: list[PanelTreatment]
    candidates: list[CallerCandidate] = Field(
        default_factory=list,
        description="A shared number (``multiple``): the customers who share it, to pick from.",
    )
    last_contact: HistoryItem | None = Field(
        default=None,
        description="The last real contact (not an abandoned attempt), shown on top.",
    )
    attempts_since: AttemptsSince | None = Field(
        default=None, description="Abandoned attempts since the last contact (or ever)."
    )
