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
  hang-up and an incoming racing each other still end abandoned (the
  incoming's check is in its enqueue statement, under a lock per peer call
  that the hang-up's tombstone takes too: migration 0020).

The gateway owns the data access of the telephony door: each event takes
**one pooled connection**, which it hands to the ``CallDesk`` methods it
calls, and starts with one statement (``peer_call``) that finds our call and
the tombstone together; a hang-up starts with the end itself instead
(``CallDesk.hang_up``: migration 0021's ``finish_call`` finds the call by the
peer's call id and ends it by its state), and reads ``peer_call`` only when
that found no call, or a callback call whose caller is on no line. An
incoming's first statement (``peer_call_identify``) also reads who the
caller may be, which the desk's identification then takes instead of reading
it again: a new call is looked up, identified and enqueued in two round trips
(issue 21; it took three connections and more round trips before: a
tombstone check on a connection of its own, before and after the enqueue,
and the desk's own look-up). The answer carries what the adapters reply with
(the call with its position and EWT, the connected agent's endpoint), so no
adapter reads the desk, the pool or the agents.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field, ValidationError

from callcenter.customers import identity
from callcenter.customers.models import Outcome
from callcenter.db.pool import Conn
from callcenter.errors import Conflict, NotFound, Unprocessable
from callcenter.http.problems import first_error
from callcenter.queue import callbacks, policy
from callcenter.queue.calls import CallDesk
from callcenter.queue.models import Call, CallIn, CallState
from callcenter.telephony_adapters.base import (
    MAX_PEER_CALL_ID,
    PEERS,
    AgentEndpoint,
    CallbackRequest,
    CallEvent,
    Connector,
    Digits,
    Hangup,
    Incoming,
    external_id,
)
from callcenter.telephony_adapters.dialable import callback_number
from callcenter.telephony_adapters.sql import Q

#: Every end reason the gateway writes starts with this: the peer reported the
#: hang-up, so the peer needs no word from us about it (see ``release_policy``).
HANGUP = "hangup"
#: The end reason of a call whose hang-up came before its incoming.
GONE_BEFORE_INCOMING = f"{HANGUP}_before_incoming"

DigitsResult = Literal["identified", "not_found", "ignored"]

_log = logging.getLogger(__name__)


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
    agent: AgentEndpoint | None = Field(
        default=None,
        description="The agent a connected call is connected to, with what the peer dials "
        "(the endpoint is empty when the agent has none).",
    )
    offer_callback: bool = Field(
        default=False,
        description="The queue's rule offers this waiting caller a callback now "
        "(press 1 to be called back, keeping their place).",
    )

    @property
    def state(self) -> CallState | None:
        return None if self.call is None else self.call.state

    @property
    def waiting(self) -> bool:
        return self.state is CallState.waiting

    @property
    def holding(self) -> bool:
        """The caller waits on the line (not a virtual call waiting for its callback)."""
        return self.waiting and self.call is not None and self.call.callback is None

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
    """Maps peers' call events onto the call desk; holds the peers' connectors.

    Every method takes one connection from the desk's pool for the whole
    event and passes it to each desk method it calls.
    """

    def __init__(
        self,
        desk: CallDesk,
        *,
        default_queue: str = "general",
        events: Counter | None = None,
        connectors: Iterable[Connector] = (),
        refused_prefixes: Iterable[str] = (),
    ) -> None:
        self.desk = desk
        self.pool: asyncpg.Pool[Any] = desk.pool
        self.default_queue = default_queue
        #: Callback numbers starting with these are refused (``dialable``).
        self.refused_prefixes = tuple(refused_prefixes)
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
        elif isinstance(event, CallbackRequest):
            _check_storable(event.number, "number")
        else:
            # A hang-up must end the call whatever its free-text cause holds.
            event = Hangup(event.peer_call_id, _storable_text(event.cause))
        async with self.pool.acquire() as conn:
            if isinstance(event, Incoming):
                view = await self._incoming(conn, peer, event)
                kind = "incoming"
                result = "created" if view.created else "repeat"
                if view.call is not None and view.call.end_reason == GONE_BEFORE_INCOMING:
                    result = "gone"
            elif isinstance(event, Digits):
                view = await self._digits(conn, peer, event)
                kind, result = "digits", view.digits or "ignored"
            elif isinstance(event, CallbackRequest):
                view = await self._callback(conn, peer, event)
                kind, result = "callback", "requested" if view.note is None else "repeat"
            else:
                view = await self._hangup(conn, peer, event)
                kind = "hangup"
                result = view.state.value if view.state is not None else "tombstone"
            view = await self._completed(conn, view)
        if self._events is not None:
            self._events.labels(peer, kind, result).inc()
        return view

    async def view(self, peer: str, peer_call_id: str) -> CallView:
        """The call as it stands (position and EWT while it waits); no event, nothing changes.

        For a peer that asks again while the caller holds (Twilio's queue
        trouble); ``call`` is None for a call we never had.
        """
        _check_peer_call_id(peer_call_id)
        async with self.pool.acquire() as conn:
            found = await _peer_call(conn, external_id(peer, peer_call_id))
            call = None if found["id"] is None else await self.desk.get(conn, found["id"])
            return await self._completed(
                conn, CallView(peer=peer, peer_call_id=peer_call_id, call=call)
            )

    async def still_at_peer(
        self, peer: str, peer_call_id: str, *, stranded_after: float
    ) -> CallView:
        """The peer says the caller is still holding in its own queue (Twilio's wait).

        Usually that is the call waiting in ours: the answer has its position
        and EWT. But for a call we count as connected whose connect command
        was sent more than ``stranded_after`` seconds ago (one whose answer
        timed out), it proves the connect never took effect: the call goes
        back to our queue with its key (see ``connect_failed``) instead of
        staying with an agent whose phone will not ring.
        """
        _check_peer_call_id(peer_call_id)
        async with self.pool.acquire() as conn:
            found = await _peer_call(conn, external_id(peer, peer_call_id))
            if found["id"] is None:
                return CallView(peer=peer, peer_call_id=peer_call_id)
            if found["state"] == CallState.connected:
                sent = await conn.fetchval(Q["bridge_sent_before"], found["id"], stranded_after)
                if sent is not None:
                    _log.error(
                        "call %s (%s) is still in %s's queue %.0f s after its connect was "
                        "sent: the connect never took effect; back to the queue",
                        found["id"],
                        external_id(peer, peer_call_id),
                        peer,
                        stranded_after,
                    )
                    return await self._connect_failed(
                        conn,
                        peer,
                        peer_call_id,
                        f"the caller was still in {peer}'s queue after the connect",
                        None,
                    )
            call = await self.desk.get(conn, found["id"])
            return await self._completed(
                conn, CallView(peer=peer, peer_call_id=peer_call_id, call=call)
            )

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
        async with self.pool.acquire() as conn:
            return await self._connect_failed(conn, peer, peer_call_id, cause, bridge_id)

    async def _connect_failed(
        self, conn: Conn, peer: str, peer_call_id: str, cause: str, bridge_id: int | None
    ) -> CallView:
        found = await _peer_call(conn, external_id(peer, peer_call_id))
        if found["id"] is None:
            raise NotFound(f"no call {peer_call_id!r} from {peer}", field="call_id")
        call_id: int = found["id"]
        state = CallState(found["state"])
        note = f"the call is {state.value}"
        if bridge_id is not None and state is CallState.connected:
            live = await conn.fetchval(Q["live_bridge"], call_id)
            if live != bridge_id:
                note = f"a report about an earlier connect ({bridge_id}): nothing changes"
                if self._events is not None:
                    self._events.labels(peer, "connect_failed", "stale").inc()
                call = await self.desk.get(conn, call_id)
                return CallView(peer=peer, peer_call_id=peer_call_id, call=call, note=note)
        agent_id: int | None = found["agent_id"]
        if (
            state is CallState.connected
            and agent_id is not None
            and await self.desk.requeue(call_id, agent_id, conn=conn)
        ):
            note = f"back in the queue: {cause}"
            # Back first, then the claim released, so a catch-up never re-dials.
            await conn.execute(Q["release_bridge"], call_id, cause[:500])
        call = await self.desk.get(conn, call_id)
        if self._events is not None:
            self._events.labels(peer, "connect_failed", call.state.value).inc()
        return CallView(peer=peer, peer_call_id=peer_call_id, call=call, note=note)

    async def open_calls(self, peer: str) -> set[str]:
        """The peer's call ids of its calls that are not over (an adapter's reconciliation)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(Q["open_calls_of_peer"], peer)
        return {r["peer_call_id"] for r in rows}

    async def ended_calls(self, peer: str, peer_call_ids: Iterable[str]) -> list[tuple[str, str]]:
        """``(peer call id, state)`` of those calls that have ended on our side."""
        ids = [external_id(peer, p) for p in peer_call_ids]
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(Q["ended_calls_of_peer"], ids)
        return [(r["peer_call_id"], r["state"]) for r in rows]

    # -- the three events ------------------------------------------------------

    async def _incoming(self, conn: Conn, peer: str, event: Incoming) -> CallView:
        ext = external_id(peer, event.peer_call_id)
        try:
            data = CallIn(
                call_id=ext,
                queue=event.queue or self.default_queue,
                ani=event.ani,
                customer_number=event.customer_number or None,
            )
        except ValidationError as exc:
            field, detail = first_error(exc)
            raise Unprocessable(detail, field=field) from None
        ref = (peer, event.peer_call_id)
        # Our call, the tombstone and who the caller may be, in one round trip.
        phone, typed = identity.terms(data.ani, data.customer_number, self.desk.rules.region)
        rows = await conn.fetch(Q["peer_call_identify"], ext, phone, typed)
        found = rows[0]  # the statement always answers a row
        if found["gone"]:
            answer = await self.desk.record_gone(data, GONE_BEFORE_INCOMING, conn=conn, peer=ref)
            return CallView(
                peer=peer,
                peer_call_id=event.peer_call_id,
                created=answer.created,
                identify=answer.identify,
                note="the caller hung up before the call was handed in",
                call=answer.call,
            )
        if found["call_id"] is not None:  # a repeat: answered from the stored call
            call = await self.desk.get(conn, found["call_id"])
            return CallView(peer=peer, peer_call_id=event.peer_call_id, call=call)
        answer = await self.desk.incoming(data, conn=conn, peer=ref, unknown=True, candidates=rows)
        call = answer.call
        if answer.created and answer.peer_hung_up:
            # A hang-up raced this incoming and found no call: end it here. The enqueue
            # read the tombstone itself, under a lock the hang-up takes too (``enqueue``).
            call = await self._close(conn, call.id, None)
        return CallView(
            peer=peer,
            peer_call_id=event.peer_call_id,
            created=answer.created,
            identify=answer.identify,
            call=call,
        )

    async def _digits(self, conn: Conn, peer: str, event: Digits) -> CallView:
        digits = event.digits.strip()
        if not digits or len(digits) > 64:
            raise Unprocessable("digits must be 1 to 64 characters", field="digits")
        found = await _peer_call(conn, external_id(peer, event.peer_call_id))
        view = CallView(peer=peer, peer_call_id=event.peer_call_id)
        if found["id"] is None:
            if found["gone"]:
                return view.model_copy(
                    update={"digits": "ignored", "note": "the caller has hung up"}
                )
            raise NotFound(
                f"no call {event.peer_call_id!r} from {peer}: send its incoming event first",
                field="call_id",
            )
        call_id: int = found["id"]
        if found["state"] != CallState.waiting:
            call = await self.desk.get(conn, call_id)
            return view.model_copy(
                update={
                    "call": call,
                    "digits": "ignored",
                    "note": f"the call is {call.state.value}",
                }
            )
        try:
            call = await self.desk.identify(call_id, digits, conn=conn)
        except Unprocessable:
            call = await self.desk.get(conn, call_id)
            return view.model_copy(update={"call": call, "digits": "not_found"})
        except Conflict:  # it ended while we identified
            call = await self.desk.get(conn, call_id)
            return CallView(
                peer=peer,
                peer_call_id=event.peer_call_id,
                call=call,
                digits="ignored",
                note=f"the call is {call.state.value}",
            )
        return CallView(peer=peer, peer_call_id=event.peer_call_id, call=call, digits="identified")

    async def _hangup(self, conn: Conn, peer: str, event: Hangup) -> CallView:
        ext = external_id(peer, event.peer_call_id)
        # The common case in one round trip: the call found by the peer's call id and
        # ended by its state. Left to the lines below: no call yet, or a callback's.
        call = await self.desk.hang_up(
            _hangup_reason(event.cause), external_id=ext, spare_callback=True, conn=conn
        )
        if call is not None:
            return CallView(peer=peer, peer_call_id=event.peer_call_id, call=call)
        found = await _peer_call(conn, ext)
        if found["id"] is None:
            await conn.execute(Q["add_tombstone"], ext, event.cause)
            # An incoming may have slipped in between; it will see the tombstone
            # too, but if it finished already, this side must end the call.
            found = await _peer_call(conn, ext)
            if found["id"] is None:
                return CallView(
                    peer=peer,
                    peer_call_id=event.peer_call_id,
                    note="hang-up before the call was handed in: recorded",
                )
        if (
            found["callback"]
            and not found["answered"]
            and not (
                found["state"] == CallState.connected
                and await conn.fetchval(Q["ring_outcome_unknown"], found["id"]) is not None
            )
        ):
            # The caller hung up to be rung back (or before picking up the ring):
            # the call keeps its place; a ring nobody answers is reported as such.
            call = await self.desk.get(conn, found["id"])
            return CallView(
                peer=peer,
                peer_call_id=event.peer_call_id,
                call=call,
                note="the caller hung up to wait for the callback: the call keeps its place",
            )
        call = await self._close(conn, found["id"], event.cause)
        return CallView(peer=peer, peer_call_id=event.peer_call_id, call=call)

    async def _callback(self, conn: Conn, peer: str, event: CallbackRequest) -> CallView:
        connector = self.connectors.get(peer)
        if connector is None or not connector.rings_back:
            # Kept, the call would wait for a ring that never comes.
            raise Conflict(
                f"{peer} cannot ring callers back here: no callback is offered or taken "
                "(see docs/telephony.md, callbacks)",
                field="type",
            )
        found = await _peer_call(conn, external_id(peer, event.peer_call_id))
        if found["id"] is None:
            raise NotFound(
                f"no call {event.peer_call_id!r} from {peer}: send its incoming event first",
                field="call_id",
            )
        call_id: int = found["id"]
        call = await self.desk.get(conn, call_id)
        raw = event.number if event.number is not None and event.number.strip() else call.ani
        number = callback_number(
            raw,
            region=self.desk.rules.region,
            refused_prefixes=self.refused_prefixes,
            field="number" if event.number else "ani",
        )
        requested = await callbacks.request(self.desk, conn, call_id, number)
        call = await self.desk.get(conn, call_id)
        note = None
        if not requested:
            assert call.callback is not None
            note = f"the caller had taken a callback to {call.callback.number} already"
        return CallView(peer=peer, peer_call_id=event.peer_call_id, call=call, note=note)

    # -- a callback's ring, as the peer reports it -----------------------------

    async def callback_answered(self, peer: str, peer_call_id: str, bridge_id: int) -> CallView:
        """The caller picked up ring ``bridge_id`` of their callback.

        ``note`` is set when the call is over (a supervisor ended it while it
        rang): then the peer must let the caller go instead of bridging them.
        """
        _check_peer_call_id(peer_call_id)
        async with self.pool.acquire() as conn:
            found = await _peer_call(conn, external_id(peer, peer_call_id))
            if found["id"] is None:
                raise NotFound(f"no call {peer_call_id!r} from {peer}", field="call_id")
            live = await callbacks.answered(conn, found["id"], bridge_id)
            call = await self.desk.get(conn, found["id"])
            note = None if live else f"the call is {call.state.value}: let the caller go"
            if self._events is not None:
                self._events.labels(peer, "callback_ring", "answered" if live else "late").inc()
            view = CallView(peer=peer, peer_call_id=peer_call_id, call=call, note=note)
            return await self._completed(conn, view)

    async def callback_missed(
        self, peer: str, peer_call_id: str, bridge_id: int, result: str, cause: str | None
    ) -> CallView:
        """Nobody answered ring ``bridge_id``: the agent is freed and the call waits
        out the queue's retry delay in its place, or ends ``callback_failed``
        after the last attempt (see ``callbacks.missed``)."""
        _check_peer_call_id(peer_call_id)
        async with self.pool.acquire() as conn:
            found = await _peer_call(conn, external_id(peer, peer_call_id))
            if found["id"] is None:
                raise NotFound(f"no call {peer_call_id!r} from {peer}", field="call_id")
            call_id: int = found["id"]
            agent_id = await conn.fetchval(Q["callback_agent"], bridge_id, call_id)
            outcome = "stale"
            if agent_id is not None:
                outcome = await callbacks.missed(
                    self.desk, conn, call_id, bridge_id, agent_id, result, cause
                )
            if outcome != "stale":
                # The ring's claim is over: the next accept rings again.
                await conn.execute(Q["release_bridge"], call_id, f"callback {result}"[:500])
            call = await self.desk.get(conn, call_id)
            if self._events is not None:
                self._events.labels(peer, "callback_ring", outcome).inc()
            note = None if outcome != "stale" else "a report about a ring that is over already"
            return CallView(peer=peer, peer_call_id=peer_call_id, call=call, note=note)

    async def callback_leg_ended(
        self, peer: str, peer_call_id: str, bridge_id: int, cause: str | None
    ) -> CallView:
        """The outbound leg of ring ``bridge_id`` hung up (a peer that names its rings).

        It ends the call, as the caller's hang-up does, only while that ring is
        the call's latest and its caller is on the line: a late report about an
        earlier ring (whose caller was let go, the call rung again since) must
        not end the conversation of the current one.
        """
        _check_peer_call_id(peer_call_id)
        async with self.pool.acquire() as conn:
            found = await _peer_call(conn, external_id(peer, peer_call_id))
            if found["id"] is None:
                raise NotFound(f"no call {peer_call_id!r} from {peer}", field="call_id")
            latest = await conn.fetchval(Q["latest_ring"], found["id"])
            state = CallState(found["state"])
            if latest == bridge_id and found["answered"] and state is CallState.connected:
                reason = _storable_text(cause)
                call = await self._close(conn, found["id"], reason)
                return CallView(peer=peer, peer_call_id=peer_call_id, call=call)
            call = await self.desk.get(conn, found["id"])
            note = f"a report about ring {bridge_id}, not the call's current one: nothing changes"
            return CallView(peer=peer, peer_call_id=peer_call_id, call=call, note=note)

    # -- helpers ---------------------------------------------------------------

    async def _close(self, conn: Conn, call_id: int, cause: str | None) -> Call:
        """End a call on hang-up by its state now: abandoned, completed, or as it is."""
        call = await self.desk.hang_up(_hangup_reason(cause), call_id=call_id, conn=conn)
        assert call is not None  # only a look-up by the peer's call id finds nothing
        return call

    async def _completed(self, conn: Conn, view: CallView) -> CallView:
        """The view with what the peer acts on: the agent of a connected call (whom it
        dials to connect it) and, for a caller holding, whether to offer a callback."""
        call = view.call
        # A callback is offered only by a peer that can ring the caller back.
        connector = self.connectors.get(view.peer)
        if view.holding and call is not None and connector is not None and connector.rings_back:
            queue = await self.desk.directory.get(conn, call.queue)
            rule = queue.callback
            if rule is not None and policy.callback_offered(
                rule.rule(),
                call.tier,
                call.estimated_wait_seconds,
                rule.local_time(datetime.now(UTC)),
            ):
                return view.model_copy(update={"offer_callback": True})
            return view
        if call is None or call.state is not CallState.connected or call.agent_id is None:
            return view
        row = await conn.fetchrow(Q["agent_endpoint"], call.agent_id)
        if row is None:
            return view
        agent = AgentEndpoint(row["id"], row["name"], row["endpoint"] or "")
        return view.model_copy(update={"agent": agent})


async def _peer_call(conn: Conn, ext: str) -> asyncpg.Record:
    """Our call for a peer's call id (``id`` null if none) and whether a tombstone waits."""
    row: asyncpg.Record | None = await conn.fetchrow(Q["peer_call"], ext)
    assert row is not None  # the statement always answers one row
    return row


def _hangup_reason(cause: str | None) -> str:
    """The end reason of a call the peer hung up (see ``HANGUP``)."""
    return f"{HANGUP}: {cause}" if cause else HANGUP


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
