"""The generic JSON adapter: any PBX that can post JSON and read the answer.

``POST /telephony/generic/events`` takes ``call.incoming``, ``call.digits``,
``call.hangup`` and ``call.callback_requested``, each signed with ``Callcenter-Signature`` (see
``signing``); the signature is checked over the raw body before anything is
parsed or stored. The answer says what to do with the caller now:
``wait`` (with position and estimated wait), ``gather`` (ask an unknown
caller for a customer number, if configured), ``connect`` (an agent took
the call; its endpoint is in the answer) or ``hangup`` (the call is over).

A ``wait`` answer says ``offer_callback`` when the queue's rule offers the
caller a callback; the PBX sends ``call.callback_requested`` (with the number
the caller confirmed, or none for the calling number) if they take it, and
the answer is ``hangup`` with the number: the caller keeps their place
without holding.

Commands reach the PBX one of two ways. With ``CALLCENTER_GENERIC_CALLBACK_URL``
set, the ``GenericConnector`` posts ``connect``, ``hangup`` and ``callback``
there, signed the same way (``callback`` rings the caller, bridges them to
the agent and answers ``{"result": ...}`` once the ring is over). Without
it (and then no callback is offered), the PBX polls: it sends the same ``call.incoming``
again (idempotent: nothing is enqueued twice) and reads the action from the
answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator

from callcenter import app_keys
from callcenter.errors import (
    BadRequest,
    CallerNotReached,
    InvalidSignature,
    PeerCallGone,
    PeerFailed,
    PeerOutcomeUnknown,
    Unprocessable,
)
from callcenter.http.problems import validation_problem
from callcenter.http.routing import Routes
from callcenter.queue.models import CallState
from callcenter.telephony_adapters import signing
from callcenter.telephony_adapters.base import (
    GENERIC,
    AgentEndpoint,
    CallbackRequest,
    CallEvent,
    Digits,
    Hangup,
    Incoming,
    PeerCall,
    Ring,
    send_failure,
)
from callcenter.telephony_adapters.gateway import CallView
from callcenter.telephony_adapters.webhooks import read_body

routes = Routes("telephony")

#: The time a command's answer gets beyond a callback's ring (the session's limit).
_COMMAND_SECONDS = 5.0

#: What a gather answer asks the PBX for.
GATHER_MAX_DIGITS = 16

PeerCallId = Annotated[str, Field(min_length=1, max_length=180)]


class _Event(BaseModel):
    # Unknown fields are ignored: a PBX may send more than we read (ids, timestamps).
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: object) -> object:
        """PostgreSQL text cannot hold NUL: refused here naming the field, not at the database."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("contains a NUL character, which cannot be stored")
        return value


class GenericIncoming(_Event):
    type: Literal["call.incoming"]
    call_id: PeerCallId = Field(description="The PBX's id of the call; repeats are answered, "
                                "never enqueued twice.")  # fmt: skip
    from_: str | None = Field(
        default=None, alias="from", max_length=64, description="The calling number (ANI)."
    )
    to: str | None = Field(default=None, max_length=64, description="The number dialled.")
    customer_number: str | None = Field(
        default=None, max_length=64, description="Collected by the PBX's own IVR, if any."
    )
    queue: str | None = Field(default=None, max_length=63, description="Default: the setting.")


class GenericDigits(_Event):
    type: Literal["call.digits"]
    call_id: PeerCallId
    digits: str = Field(min_length=1, max_length=64, description="What the caller typed.")


class GenericHangup(_Event):
    type: Literal["call.hangup"]
    call_id: PeerCallId
    cause: str | None = Field(default=None, max_length=100, description="The PBX's reason.")


class GenericCallbackRequested(_Event):
    type: Literal["call.callback_requested"]
    call_id: PeerCallId
    number: str | None = Field(
        default=None,
        max_length=64,
        description="The number the caller confirmed or typed to be rung at; absent: the "
        "calling number.",
    )


_Events = GenericIncoming | GenericDigits | GenericHangup | GenericCallbackRequested


class GenericEvent(RootModel[_Events]):
    """One event from the PBX; ``type`` says which."""

    root: Annotated[_Events, Field(discriminator="type")]


_MODELS: dict[str, type[_Events]] = {
    "call.incoming": GenericIncoming,
    "call.digits": GenericDigits,
    "call.hangup": GenericHangup,
    "call.callback_requested": GenericCallbackRequested,
}


class GenericCall(BaseModel):
    id: int = Field(description="Our id of the call.")
    state: CallState
    queue: str
    position: int | None = Field(description="1 = next to be served; null once answered.")
    estimated_wait_seconds: float | None
    tier: str | None
    customer_known: bool = Field(description="The caller is a known customer.")
    resumed: bool = Field(
        default=False,
        description="A redial that took back the place of the caller's dropped call "
        '(a PBX may say "welcome back, you kept your place").',
    )


class GenericAgent(BaseModel):
    name: str
    endpoint: str | None = Field(description="What the PBX dials to reach the agent.")


class GatherSpec(BaseModel):
    max_digits: int
    finish_on_key: str
    retry: bool = Field(description="The last digits named nobody: ask again.")


class GenericCallback(BaseModel):
    number: str = Field(description="Whom the service rings when an agent takes the call.")


class GenericReply(BaseModel):
    action: Literal["wait", "gather", "connect", "hangup"]
    call_id: str = Field(description="The PBX's id of the call, echoed.")
    call: GenericCall | None
    agent: GenericAgent | None = Field(default=None, description="With connect: whom to ring.")
    gather: GatherSpec | None = Field(default=None, description="With gather: what to collect.")
    offer_callback: bool = Field(
        default=False,
        description="With wait: offer the caller a callback now (they keep their place); "
        "the PBX sends call.callback_requested if they take it.",
    )
    callback: GenericCallback | None = Field(
        default=None,
        description="The caller takes a callback (the action is hangup: they need not hold).",
    )
    note: str | None = Field(default=None, description="Why the event changed nothing, if so.")


class GenericCommand(BaseModel):
    """What ``GenericConnector`` posts to the callback URL."""

    action: Literal["connect", "hangup", "callback"]
    call_id: str
    agent: GenericAgent | None = None
    number: str | None = Field(default=None, description="With callback: whom to ring.")
    ring_seconds: float | None = Field(
        default=None, description="With callback: how long to ring before giving up."
    )


class GenericRingResult(BaseModel):
    """The PBX's answer to a ``callback`` command, once the ring is over."""

    model_config = ConfigDict(extra="ignore")

    result: Literal["answered", "no_answer", "busy", "failed"]


def parse_event(body: bytes) -> CallEvent | web.Response:
    """The body as one of our events; 400 for bytes that are not a JSON object,
    422 naming the field (``type`` for an unknown event) for one that does not fit."""
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise BadRequest("the body is not valid JSON: it is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object with a type")
    kind = data.get("type")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise Unprocessable(
            f"unknown event type {kind!r}: expected one of {', '.join(_MODELS)}", field="type"
        )
    try:
        event = model.model_validate(data)
    except ValidationError as exc:
        return validation_problem(exc, "request body")
    if isinstance(event, GenericIncoming):
        return Incoming(
            event.call_id,
            ani=event.from_,
            customer_number=event.customer_number,
            queue=event.queue,
            dialed=event.to,
        )
    if isinstance(event, GenericDigits):
        return Digits(event.call_id, event.digits)
    if isinstance(event, GenericCallbackRequested):
        return CallbackRequest(event.call_id, event.number)
    return Hangup(event.call_id, event.cause)


@routes.route(
    "POST",
    "/telephony/generic/events",
    summary="A PBX's call event (call.incoming, call.digits, call.hangup, "
    "call.callback_requested), signed with "
    "Callcenter-Signature; the answer says what to do with the caller",
    raw_body=GenericEvent,
    response=GenericReply,
    errors=[403, 404],
    access="peer",
)
async def generic_events(request: web.Request) -> web.StreamResponse:
    settings = request.app[app_keys.SETTINGS]
    secret = settings.generic_webhook_secret
    if secret is None:
        raise InvalidSignature(
            "the generic adapter has no secret: set CALLCENTER_GENERIC_WEBHOOK_SECRET"
        )
    body = await read_body(request, settings.webhook_max_bytes, seconds=settings.body_read_seconds)
    signing.verify(
        request.headers.get(signing.HEADER),
        body,
        secret.get_secret_value().encode(),
        now=time.time(),
        tolerance=settings.generic_tolerance_seconds,
    )
    event = parse_event(body)
    if isinstance(event, web.Response):
        return event
    view = await request.app[app_keys.GATEWAY].handle(GENERIC, event)
    reply = _reply(view, gather_unknown=settings.generic_gather_unknown)
    return web.json_response(text=reply.model_dump_json())


def _reply(view: CallView, *, gather_unknown: bool) -> GenericReply:
    """The PBX's answer, from the gateway's view alone (it carries the connected agent)."""
    call = view.call
    if call is None:
        return GenericReply(action="hangup", call_id=view.peer_call_id, call=None, note=view.note)
    summary = GenericCall(
        id=call.id,
        state=call.state,
        queue=call.queue,
        position=call.position,
        estimated_wait_seconds=call.estimated_wait_seconds,
        tier=call.tier,
        customer_known=view.known_caller,
        resumed=call.resumed is not None,
    )
    reply = GenericReply(action="wait", call_id=view.peer_call_id, call=summary, note=view.note)
    if call.callback is not None and call.state is CallState.waiting:
        # A virtual call: the caller need not hold; we ring them when an agent takes it.
        reply.action = "hangup"
        reply.callback = GenericCallback(number=call.callback.number)
    elif call.state is CallState.connected and view.agent is not None:
        reply.action = "connect"
        reply.agent = GenericAgent(name=view.agent.name, endpoint=view.agent.endpoint or None)
    elif call.state is not CallState.waiting:
        reply.action = "hangup"
    elif gather_unknown and not view.known_caller and view.digits != "identified":
        reply.action = "gather"
        reply.gather = GatherSpec(
            max_digits=GATHER_MAX_DIGITS, finish_on_key="#", retry=view.digits == "not_found"
        )
    else:
        reply.offer_callback = view.offer_callback
    return reply


class GenericConnector:
    """Posts signed ``connect`` and ``hangup`` commands to the PBX's callback URL."""

    peer = GENERIC
    rings_back = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.url = url
        self.secret = secret
        self.clock = clock

    async def connect(self, call: PeerCall, agent: AgentEndpoint) -> None:
        command = GenericCommand(
            action="connect",
            call_id=call.peer_call_id,
            agent=GenericAgent(name=agent.name, endpoint=agent.endpoint),
        )
        await self._post(command)

    async def hangup(self, call: PeerCall) -> None:
        await self._post(GenericCommand(action="hangup", call_id=call.peer_call_id))

    async def ring_back(
        self, call: PeerCall, agent: AgentEndpoint, number: str, ring_seconds: float
    ) -> Ring:
        """The PBX rings ``number`` and answers once the ring is over: ``answered`` (the
        caller is bridged to the agent), or ``no_answer``, ``busy``, ``failed``."""
        command = GenericCommand(
            action="callback",
            call_id=call.peer_call_id,
            agent=GenericAgent(name=agent.name, endpoint=agent.endpoint),
            number=number,
            ring_seconds=ring_seconds,
        )
        # The answer waits for the ring: the session's command limit plus the ring.
        limit = aiohttp.ClientTimeout(total=2 * _COMMAND_SECONDS + ring_seconds)
        text = await self._post(command, limit=limit)
        try:
            answer = GenericRingResult.model_validate_json(text)
        except ValidationError as exc:
            raise PeerOutcomeUnknown(
                f"the PBX answered the callback command with no result: {text[:200]!r}"
            ) from exc
        if answer.result == "answered":
            return Ring(leg=None, answered=True)
        result = "failed" if answer.result == "failed" else "no_answer"
        raise CallerNotReached(f"the PBX rang {number}: {answer.result}", result=result)

    async def _post(
        self, command: GenericCommand, *, limit: aiohttp.ClientTimeout | None = None
    ) -> str:
        """Post ``command``; the PBX's answer text (2xx), or the failure raised."""
        body = command.model_dump_json(exclude_none=True).encode()
        headers = {
            "Content-Type": "application/json",
            signing.HEADER: signing.header_value([self.secret], int(self.clock()), body),
        }
        extra: dict[str, Any] = {} if limit is None else {"timeout": limit}
        try:
            async with self.session.post(self.url, data=body, headers=headers, **extra) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise send_failure(exc, f"the {command.action} command") from exc
        if status >= 300:
            error = f"the PBX answered {command.action} with {status}: {text[:200]}"
            if status == 410:  # Gone: the PBX no longer has the call
                raise PeerCallGone(error)
            raise PeerFailed(error)
        return text
