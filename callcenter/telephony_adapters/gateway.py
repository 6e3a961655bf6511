"""The one door from every telephony adapter into the hold queue.

An adapter verifies and parses its peer's request, then calls
``TelephonyGateway.handle(peer, event)``; the answer, a ``CallView``, is
what the adapter turns into its peer's reply (TwiML, JSON). All the rules of
a call's life at the telephone live here once, not per adapter:

* **Idempotent by the peer's call id.** The call is ``<peer>:<peer call id>``
  in ``calls.external_id`` (unique); a retried or duplicated ``Incoming`` is
  answered from the stored call and never enqueues twice.
* **Digits** identify the caller again while the call waits (and move it by
  value); on a call that is connected or ended they change nothing and the
  answer says so.
* **Hangup**: a waiting call ends *abandoned*, a connected one *completed*
  (its agent goes to wrap-up), an ended one stays as it is.
* **Out of order**: a hang-up for a call we have not seen leaves a tombstone;
  the late ``Incoming`` then records the call as abandoned with no wait (the
  caller is identified and their history gets the contact) instead of
  queueing a caller who is gone. Both sides check again after writing, so a
  hang-up and an incoming racing each other still end abandoned.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field, ValidationError

from callcenter.customers.models import Outcome
from callcenter.errors import Conflict, NotFound, Unprocessable
from callcenter.queue.calls import CallDesk
from callcenter.queue.models import Call, CallIn, CallState, EndOutcome
from callcenter.telephony_adapters.base import (
    MAX_PEER_CALL_ID,
    PEERS,
    CallEvent,
    Connector,
    Digits,
    Hangup,
    Incoming,
    external_id,
)
from callcenter.telephony_adapters.sql import Q

#: Every end reason the gateway writes starts with this: the peer reported the
#: hang-up, so the peer needs no word from us about it (see ``release_policy``).
HANGUP = "hangup"
#: The end reason of a call whose hang-up came before its incoming.
GONE_BEFORE_INCOMING = f"{HANGUP}_before_incoming"

DigitsResult = Literal["identified", "not_found", "ignored"]


class CallView(BaseModel):
    """What an adapter needs to answer its peer after an event."""

    peer: str
    peer_call_id: str
    created: bool = Field(default=False, description="This event put the call in our records.")
    identify: Outcome | None = Field(
        default=None, description="How the caller was identified, when this event created it."
    )
    digits: DigitsResult | None = Field(
        default=None, description="What typed digits did: identified the caller, named nobody, "
        "or were ignored because the call no longer waits.",
    )  # fmt: skip
    note: str | None = Field(default=None, description="Why an event changed nothing.")
    call: Call | None = Field(
        default=None, description="Our record; null when a hang-up came before any incoming."
    )

    @property
    def state(self) -> CallState | None:
        return None if self.call is None else self.call.state

    @property
    def waiting(self) -> bool:
        return self.state is CallState.waiting

    @property
    def known_caller(self) -> bool:
        """A real customer (not a provisional one made up for an unknown number)."""
        customer = None if self.call is None else self.call.customer
        return customer is not None and not customer.provisional


def telephony_events_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "callcenter_telephony_events",
        "Telephony events by peer, kind and what they did",
        ["peer", "event", "result"],
        registry=registry,
    )


class TelephonyGateway:
    """Maps peers' call events onto the call desk; holds the peers' connectors."""

    def __init__(
        self,
        desk: CallDesk,
        *,
        default_queue: str = "general",
        events: Counter | None = None,
        connectors: Iterable[Connector] = (),
    ) -> None:
        self.desk = desk
        self.default_queue = default_queue
        self._events = events
        self.connectors: dict[str, Connector] = {}
        for connector in connectors:
            self.register(connector)

    def register(self, connector: Connector) -> None:
        """Let the bridger connect calls of ``connector.peer`` (an adapter calls this at start)."""
        if connector.peer not in PEERS:
            raise ValueError(f"unknown peer {connector.peer!r}")
        self.connectors[connector.peer] = connector

    async def handle(self, peer: str, event: CallEvent) -> CallView:
        if peer not in PEERS:
            raise ValueError(f"unknown peer {peer!r}")
        _check_peer_call_id(event.peer_call_id)
        if isinstance(event, Incoming):
            _check_storable(event.ani, "ani")
            _check_storable(event.customer_number, "customer_number")
        elif isinstance(event, Digits):
            _check_storable(event.digits, "digits")
        else:
            # A hang-up must end the call whatever its free-text cause holds.
            event = Hangup(event.peer_call_id, _storable_text(event.cause))
        if isinstance(event, Incoming):
            view = await self._incoming(peer, event)
            kind = "incoming"
            result = "created" if view.created else "repeat"
            if view.call is not None and view.call.end_reason == GONE_BEFORE_INCOMING:
                result = "gone"
        elif isinstance(event, Digits):
            view = await self._digits(peer, event)
            kind, result = "digits", view.digits or "ignored"
        else:
            view = await self._hangup(peer, event)
            kind = "hangup"
            result = view.state.value if view.state is not None else "tombstone"
        if self._events is not None:
            self._events.labels(peer, kind, result).inc()
        return view

    async def connect_failed(
        self, peer: str, peer_call_id: str, cause: str, *, bridge_id: int | None = None
    ) -> CallView:
        """The peer reports that the agent's leg of a connect never answered.

        The connect command itself succeeded (so the bridger counted it
        connected), but the agent's phone did not pick up: the caller goes back
        to the queue with their original key and the agent becomes *not
        responding*, as after a failed connect. A call not connected any more is
        left as it is, and so is one whose live connect is not ``bridge_id``
        (the report, repeated or late, is about an earlier connect).
        """
        _check_peer_call_id(peer_call_id)
        ext = external_id(peer, peer_call_id)
        call = await self.desk.by_external_id(ext)
        if call is None:
            raise NotFound(f"no call {peer_call_id!r} from {peer}", field="call_id")
        note = f"the call is {call.state.value}"
        if bridge_id is not None and call.state is CallState.connected:
            async with self.desk.pool.acquire() as conn:
                live = await conn.fetchval(Q["live_bridge"], call.id)
            if live != bridge_id:
                note = f"a report about an earlier connect ({bridge_id}): nothing changes"
                if self._events is not None:
                    self._events.labels(peer, "connect_failed", "stale").inc()
                return CallView(peer=peer, peer_call_id=peer_call_id, call=call, note=note)
        if call.state is CallState.connected and call.agent_id is not None:
            if await self.desk.requeue(call.id, call.agent_id):
                note = f"back in the queue: {cause}"
                # Back first, then the claim released, so a catch-up never re-dials.
                async with self.desk.pool.acquire() as conn:
                    await conn.execute(Q["release_bridge"], call.id, cause[:500])
            call = await self.desk.call(call.id)
        if self._events is not None:
            self._events.labels(peer, "connect_failed", call.state.value).inc()
        return CallView(peer=peer, peer_call_id=peer_call_id, call=call, note=note)

    # -- the three events ------------------------------------------------------

    async def _incoming(self, peer: str, event: Incoming) -> CallView:
        ext = external_id(peer, event.peer_call_id)
        try:
            data = CallIn(
                call_id=ext,
                queue=event.queue or self.default_queue,
                ani=event.ani,
                customer_number=event.customer_number or None,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Unprocessable(f"{where}: {first['msg']}", field=where) from None
        if await self._tombstone(ext) is not None:
            answer = await self.desk.record_gone(data, GONE_BEFORE_INCOMING)
            return CallView(
                peer=peer,
                peer_call_id=event.peer_call_id,
                created=answer.created,
                identify=answer.identify,
                note="the caller hung up before the call was handed in",
                call=answer.call,
            )
        answer = await self.desk.incoming(data)
        call = answer.call
        if answer.created and await self._tombstone(ext) is not None:
            # A hang-up raced this incoming and found no call: end it here.
            call = await self._close(call, None)
        return CallView(
            peer=peer,
            peer_call_id=event.peer_call_id,
            created=answer.created,
            identify=answer.identify,
            call=call,
        )

    async def _digits(self, peer: str, event: Digits) -> CallView:
        digits = event.digits.strip()
        if not digits or len(digits) > 64:
            raise Unprocessable("digits must be 1 to 64 characters", field="digits")
        ext = external_id(peer, event.peer_call_id)
        call = await self.desk.by_external_id(ext)
        view = CallView(peer=peer, peer_call_id=event.peer_call_id, call=call)
        if call is None:
            if await self._tombstone(ext) is not None:
                return view.model_copy(
                    update={"digits": "ignored", "note": "the caller has hung up"}
                )
            raise NotFound(
                f"no call {event.peer_call_id!r} from {peer}: send its incoming event first",
                field="call_id",
            )
        if call.state is not CallState.waiting:
            return view.model_copy(
                update={"digits": "ignored", "note": f"the call is {call.state.value}"}
            )
        try:
            call = await self.desk.identify(call.id, digits)
        except Unprocessable:
            return view.model_copy(update={"digits": "not_found"})
        except Conflict:  # it ended while we identified
            call = await self.desk.call(call.id)
            return CallView(
                peer=peer,
                peer_call_id=event.peer_call_id,
                call=call,
                digits="ignored",
                note=f"the call is {call.state.value}",
            )
        return CallView(peer=peer, peer_call_id=event.peer_call_id, call=call, digits="identified")

    async def _hangup(self, peer: str, event: Hangup) -> CallView:
        ext = external_id(peer, event.peer_call_id)
        call = await self.desk.by_external_id(ext)
        if call is None:
            async with self.desk.pool.acquire() as conn:
                await conn.execute(Q["add_tombstone"], ext, event.cause)
            # An incoming may have slipped in between; it will see the tombstone
            # too, but if it finished already, this side must end the call.
            call = await self.desk.by_external_id(ext)
            if call is None:
                return CallView(
                    peer=peer,
                    peer_call_id=event.peer_call_id,
                    note="hang-up before the call was handed in: recorded",
                )
        return CallView(
            peer=peer, peer_call_id=event.peer_call_id, call=await self._close(call, event.cause)
        )

    # -- helpers ---------------------------------------------------------------

    async def _close(self, call: Call, cause: str | None) -> Call:
        """End a call on hang-up by its state now: abandoned, completed, or as it is."""
        reason = f"{HANGUP}: {cause}" if cause else HANGUP
        for _ in range(5):
            if call.state is CallState.waiting:
                outcome = EndOutcome.abandoned
            elif call.state is CallState.connected:
                outcome = EndOutcome.completed
            else:
                return call
            try:
                # ``expect``: if an accept (or a requeue) moved the call meanwhile,
                # end() changes nothing and we look again by its new state.
                result = await self.desk.end(call.id, outcome, reason, expect=call.state)
            except Conflict:
                result = await self.desk.call(call.id)
            if result.state not in (CallState.waiting, CallState.connected):
                return result
            call = result
        return call

    async def _tombstone(self, ext: str) -> str | None:
        async with self.desk.pool.acquire() as conn:
            row = await conn.fetchrow(Q["tombstone"], ext)
        if row is None:
            return None
        return str(row["cause"] or "")


def _check_peer_call_id(value: str) -> None:
    fits = 0 < len(value) <= MAX_PEER_CALL_ID
    if not fits or not value.isprintable() or value != value.strip():
        raise Unprocessable(
            f"the peer's call id must be 1 to {MAX_PEER_CALL_ID} printable characters "
            "without surrounding spaces",
            field="call_id",
        )


def _unstorable(value: str) -> bool:
    """PostgreSQL text holds no NUL and only valid UTF-8 (no lone surrogates)."""
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_storable(value: str | None, field: str) -> None:
    if value is not None and _unstorable(value):
        raise Unprocessable(
            f"{field} holds a NUL or an invalid character, which cannot be stored", field=field
        )


def _storable_text(value: str | None) -> str | None:
    """Free text made storable: the unstorable characters become U+FFFD."""
    if value is None or not _unstorable(value):
        return value
    return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in value)
