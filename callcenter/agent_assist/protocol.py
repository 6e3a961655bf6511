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
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from callcenter.customers.models import CustomerSummary
from callcenter.queue.models import Agent, Call

Ref = Annotated[str | int | None, Field(default=None, description="Echoed in the answer.")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ref: Ref = None


class Available(_In):
    """Ready for the next call (also ends wrap-up and *not responding*)."""

    type: Literal["available"]


class Offline(_In):
    """Take no calls (a break); the socket may stay open."""

    type: Literal["offline"]


class Accept(_In):
    type: Literal["accept"]
    offer_id: int = Field(gt=0)


class Reject(_In):
    type: Literal["reject"]
    offer_id: int = Field(gt=0)


class End(_In):
    """The agent ends its call: completed, or transferred elsewhere."""

    type: Literal["end"]
    call_id: int = Field(gt=0)
    outcome: Literal["completed", "transferred"] = "completed"


class Ping(_In):
    type: Literal["ping"]


ClientMessage = Annotated[
    Available | Offline | Accept | Reject | End | Ping, Field(discriminator="type")
]
CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class Priority(BaseModel):
    """Why the call was served when it was: shown before the agent accepts."""

    tier: str | None
    credit_seconds: float
    explicit: bool = Field(description="A supervisor set the credit.")
    reason: str


class Offer(BaseModel):
    offer_id: int
    call_id: int
    queue: str
    expires_at: datetime
    enqueued_at: datetime
    ani: str | None
    tier: str | None
    customer: CustomerSummary | None
    priority: Priority


class StateMessage(BaseModel):
    type: Literal["state"] = "state"
    agent: Agent
    offer: Offer | None
    call: Call | None


class OfferMessage(Offer):
    type: Literal["offer"] = "offer"


class AckMessage(BaseModel):
    type: Literal["ack"] = "ack"
    ref: str | int | None
    to: str
    call_id: int | None = None


class ErrorMessage(BaseModel):
    type: Literal["error"] = "error"
    ref: str | int | None = None
    status: int
    detail: str
    field: str | None = None


class PongMessage(BaseModel):
    type: Literal["pong"] = "pong"
    ref: str | int | None = None


ServerMessage = StateMessage | OfferMessage | AckMessage | ErrorMessage | PongMessage
