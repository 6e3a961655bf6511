"""The life of a call in the hold queue, from the adapter's hand-in to its one outcome.

``incoming`` is the top of the data flow in DESIGN.md: identify the caller,
take their tier, turn it into a credit by the queue's policy, and enqueue with
``service_key = arrival - credit - queue offset`` (the SQL function
``queue_service_key``, twin of ``policy.service_key``). Every change is committed first and then
announced on the event bus (``queue:<name>``), which is what wakes the router
and reorders nothing by polling: the key *is* the order. The enqueue also
makes the router's one step itself (the claim, migration 0027) and hands the
offer it made to this instance's router (``Offers``); when that offer is of
the new call its event is ``offered:<name>``, which wakes no router (see
``Router.dispatch`` for why nothing is left waiting).

Every call ends in exactly one of completed, abandoned or transferred; a
repeat of the same end (a retried webhook) answers the state again, a
different end of an ended call is a conflict.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from callcenter.customers import identity
from callcenter.customers import store as customer_store
from callcenter.customers.audit import Audit
from callcenter.customers.models import CustomerSummary, Outcome, Resolution
from callcenter.customers.store import CustomerRules
from callcenter.db.pool import Conn
from callcenter.errors import Conflict, NotFound, Unprocessable
from callcenter.events import CHANNEL, Event, EventBus, payloads
from callcenter.queue import actions, policy
from callcenter.queue.directory import QueueDirectory
from callcenter.queue.ewt import QueueRates, estimated_wait
from callcenter.queue.metrics import QueueMetrics
from callcenter.queue.models import (
    Call,
    CallbackState,
    CallIn,
    CallState,
    EndOutcome,
    EnqueueAnswer,
    Queue,
    QueueCalls,
    QueueList,
    QueueSummary,
    Resumed,
    WaitingCall,
)
from callcenter.queue.rates import Bucket, RateWindow
from callcenter.queue.sql import Q

_log = logging.getLogger(__name__)

#: The end reason of a call waiting for its callback whose caller rang in again
#: (the new call took its place).
RANG_AGAIN = "rang_again"

#: Seconds a queue's rates reading is reused (see ``CallDesk._rates``).
RATES_TTL = 1.0

_ENDED = {CallState.completed, CallState.abandoned, CallState.transferred}

#: A telephony peer and its own id of the call (``("generic", "pbx-42")``), stored
#: beside ``external_id`` so nobody parses it back out of that string.
PeerRef = tuple[str, str]


def _pending_link(resolution: Resolution) -> tuple[str | None, int | None]:
    """The phone and customer a typed number would link, kept on the call until the
    agent confirms who is calling; (None, None) when nothing waits for that."""
    if resolution.outcome is not Outcome.pending or resolution.customer is None:
        return None, None
    return resolution.phone, resolution.customer.id


class Releases(Protocol):
    """Who lets the caller go at the telephony peer when a call ends on our side (the
    telephony room's releaser), as the end sees it: the end records the release in
    its own statement (``finish_call``) instead of leaving it to a claim after."""

    #: The name its claims carry, and how long one lasts before another instance
    #: may take it over.
    instance: str
    lease_seconds: float

    def peers(self) -> list[str]:
        """The peers whose calls it lets go of."""

    def settled(self, reason: str | None) -> str | None:
        """Why no hang-up is needed, when an end's reason alone says so; else None."""

    def take(self, recorded: asyncpg.Record) -> None:
        """What the end recorded for it (``finish_call``'s answer, committed): a claim
        to carry out, or a release not needed (counted like the ones it decides)."""


class Bridges(Protocol):
    """Who connects an accepted call at its telephony peer (the telephony room's
    bridger), as the accept sees it: the accept records the bridge's claim in its own
    statement (``accept_offer``) instead of leaving it to a claim after its event."""

    #: The name its claims carry, and how long one lasts before the catch-up of
    #: another instance gives it up and claims the call again.
    instance: str
    lease_seconds: float

    def peers(self) -> list[str]:
        """The peers whose calls it connects."""

    def take(self, recorded: asyncpg.Record) -> None:
        """The claim the accept recorded for it (``accept_offer``'s answer, committed,
        with the columns ``claim_bridge`` answers): a connect to carry out."""


def may_take_over_callback(candidates: Sequence[Mapping[str, Any]] | None, customer: int) -> bool:
    """Whether a call of ``customer`` may be waiting for its callback, by the first look-up.

    Its candidates say so per customer (``callback_waiting``, migration 0028).
    Without them, or without that column, the answer is yes: the takeover's lock
    is then taken, as it always was. A callback asked for on another line of the
    same customer after the look-up and before this enqueue is not taken over;
    both calls then go on, each in its place, as two calls of one customer do.
    """
    if candidates is None:
        return True
    return any(
        r["id"] == customer and r.get("callback_waiting", True) is not False for r in candidates
    )


@dataclass(frozen=True)
class MadeOffer:
    """An offer a statement that runs the claim made, committed: the router's claim's
    answer (``queue_offer_next``), as ``offer_next`` returns it to a
    dispatch round."""

    offer_id: int
    call_id: int
    agent_id: int
    expires_at: datetime
    queue: str
    #: Another pair may be left in the claim's snapshot (a round should follow).
    more: bool


class Offers(Protocol):
    """This instance's router, as the statements that run its claim see it: the
    enqueue, and the wrap-up and the ``available`` that free an agent, run the
    router's claim in their own statement and hand over the offer they made, so the
    router treats it as one of its own (it registers itself while it runs; the queue
    layer never imports the router)."""

    def made(self, offer: MadeOffer) -> None:
        """An offer such a statement made, committed: arm its timer, count it, and run
        a round when its ``more`` says another pair may be left."""

    def watch(self) -> int:
        """A mark to take just before a statement that frees an agent and runs the
        claim is sent; ``freed`` is handed it once that statement has committed."""

    def freed(self, mark: int) -> None:
        """An agent was freed by a committed statement that ran the claim itself
        (sent after ``watch`` gave ``mark``): run a round only when a call may have
        come in unseen by that claim (see ``Router.freed``)."""


@dataclass
class CallDesk:
    """Everything a call's lifecycle needs, created once per application."""

    pool: asyncpg.Pool[Any]
    bus: EventBus
    directory: QueueDirectory
    rules: CustomerRules
    stats_window_seconds: float = 900.0
    metrics: QueueMetrics | None = None
    #: This instance's releaser while it runs (it registers itself), else None.
    releases: Releases | None = None
    #: This instance's bridger while it runs (it registers itself), else None.
    bridges: Bridges | None = None
    #: This instance's router while it runs (it registers itself), else None: the
    #: enqueue claims an offer only when someone here takes it over.
    offers: Offers | None = None
    _rates_cache: dict[str, tuple[float, QueueRates]] = field(default_factory=dict)
    _windows: dict[str, RateWindow] = field(default_factory=dict)

    @asynccontextmanager
    async def _using(self, conn: Conn | None) -> AsyncIterator[Conn]:
        """The caller's connection, or one from the pool for this call only.

        A caller that makes several calls for one event (the telephony
        gateway) passes its own, so the event takes one connection instead
        of one per call; the API passes none.
        """
        if conn is not None:
            yield conn
        else:
            async with self.pool.acquire() as acquired:
                yield acquired

    # -- hand-in ---------------------------------------------------------------

    async def incoming(
        self,
        data: CallIn,
        *,
        conn: Conn | None = None,
        peer: PeerRef | None = None,
        unknown: bool = False,
        candidates: Sequence[Mapping[str, Any]] | None = None,
    ) -> EnqueueAnswer:
        """Identify, value and enqueue a new call; a known ``call_id`` answers the stored call.

        ``peer``: the telephony peer that handed it in, stored in its own columns.
        ``unknown``: the caller has just looked ``call_id`` up on ``conn`` and
        found no call, so that look-up is not repeated (a duplicate racing
        this one is still caught by the insert's ``ON CONFLICT``).
        ``candidates``: who the caller's phone and typed number point at, read by
        the caller with that look-up (see ``identity.resolve``'s ``found``).
        """
        async with self._using(conn) as conn:
            if not unknown:
                # The look-up and who the caller may be, in one round trip.
                phone, typed = identity.terms(data.ani, data.customer_number, self.rules.region)
                candidates = await conn.fetch(Q["known_call_identify"], data.call_id, phone, typed)
                if candidates[0]["call_id"] is not None:
                    call = await self.get(conn, candidates[0]["call_id"])
                    return EnqueueAnswer(created=False, identify=None, call=call)
            queue, resolution = await self._resolve(conn, data, candidates)
            customer = resolution.customer
            tier = customer.tier if customer is not None else None
            credit = policy.credit(self.directory.policy(queue), tier)
            rates = await self._rates(conn, queue)
            ani = resolution.phone or (data.ani or None)
            recognised = identity.recognised_by(resolution)
            # A caller recognised by their phone may take back a place: a dropped
            # call's (redial), or their own callback's, locked first so nobody is
            # offered or rung that call while this one takes it over. The lock
            # needs a transaction, taken only when the first look-up saw such a call.
            trusted = customer is not None and recognised == "phone"
            takeover = (
                trusted
                and queue.callback is not None
                and customer is not None
                and may_take_over_callback(candidates, customer.id)
            )
            async with conn.transaction() if takeover else nullcontext():
                if takeover:
                    assert customer is not None
                    await conn.fetch(Q["lock_waiting_callback"], customer.id, queue.name)
                offers = self._offering(conn)
                row = await conn.fetchrow(
                    Q["enqueue"],
                    data.call_id,
                    queue.name,
                    ani,
                    customer.id if customer is not None else None,
                    recognised,
                    tier,
                    credit,
                    queue.offset_seconds,
                    rates.staffed,
                    queue.overflow_after_seconds,
                    queue.max_wait_seconds,
                    CHANNEL,
                    Event("queue", queue.name).encode(),
                    *(peer or (None, None)),
                    *_pending_link(resolution),
                    queue.redial_window_seconds if trusted else None,
                    takeover,
                    rates.available,
                    rates.service_rate,
                    offers is not None,
                    Event("offered", queue.name).encode(),
                )
                if row is not None and row["resumed_state"] == CallState.waiting:
                    # The caller rang in again while waiting for their callback: this
                    # call has its place now, and the virtual call it replaces ends.
                    await self._finish(
                        conn, row["resumed_from"], EndOutcome.abandoned, RANG_AGAIN,
                        CallState.waiting, None,
                    )  # fmt: skip
            made = made_offer(row)
            if made is not None:
                assert offers is not None  # no claim without a router to take it
                offers.made(made)  # committed: the statement ran on its own
            if row is None:  # the same call id arrived twice at once
                call_id = await conn.fetchval(Q["call_id_by_external"], data.call_id)
                return EnqueueAnswer(
                    created=False, identify=None, call=await self.get(conn, call_id)
                )
            if self.metrics is not None:
                self.metrics.enqueued.labels(queue.name, tier or "unknown").inc()
            # Counted and estimated by the enqueue itself (``wait_for``'s SQL twin).
            ahead: int = row["ahead"]
            ewt: float | None = row["ewt_at_enqueue"]
            resumed = None
            if row["resumed_from"] is not None:
                # A redial took an older place than its arrival: count where that is.
                resumed = resumed_from(row)
                position = await conn.fetchval(
                    Q["position"], queue.name, row["service_key"], row["id"]
                )
                ahead = position - 1
                ewt = estimated_wait(ahead, rates)
            # The answer is the call as this statement stored it (and offered it, when its
            # claim made this call's offer): nothing to read back.
            offered_to = made.agent_id if made is not None and made.call_id == row["id"] else None
            call = Call(
                id=row["id"],
                call_id=data.call_id,
                queue=queue.name,
                state=CallState.waiting,
                ani=ani,
                customer=customer,
                identified_by=recognised,
                tier=tier,
                credit_seconds=credit,
                credit_explicit=False,
                service_key=row["service_key"],
                enqueued_at=row["enqueued_at"],
                connected_at=None,
                ended_at=None,
                end_reason=None,
                agent_id=None,
                offered_to=offered_to,
                position=ahead + 1,
                estimated_wait_seconds=ewt,
                ewt_at_enqueue=ewt,
                resumed=resumed,
            )
            answer = EnqueueAnswer(created=True, identify=resolution.outcome, call=call)
            answer._peer_hung_up = bool(row["hung_up"])
            return answer

    async def _known(self, conn: Conn, external_id: str) -> EnqueueAnswer | None:
        """The stored call for a peer's call id that arrives again (a retry), if any."""
        existing = await conn.fetchval(Q["call_id_by_external"], external_id)
        if existing is None:
            return None
        return EnqueueAnswer(created=False, identify=None, call=await self.get(conn, existing))

    async def _resolve(
        self, conn: Conn, data: CallIn, found: Sequence[Mapping[str, Any]] | None = None
    ) -> tuple[Queue, Resolution]:
        queue = await self.directory.require(conn, data.queue, field="queue")
        resolution = await identity.resolve(
            conn,
            data.ani,
            data.customer_number,
            region=self.rules.region,
            lowest_tier=self.rules.lowest_tier,
            found=found,
        )
        return queue, resolution

    async def record_gone(
        self,
        data: CallIn,
        reason: str | None,
        *,
        conn: Conn | None = None,
        peer: PeerRef | None = None,
    ) -> EnqueueAnswer:
        """A call that hung up before it was handed in: record it, never queue it.

        The caller is identified as usual (their history gets the abandoned
        contact, waited 0 s); a repeat answers the stored call, like ``incoming``.
        """
        async with self._using(conn) as conn:
            known = await self._known(conn, data.call_id)
            if known is not None:
                return known
            queue, resolution = await self._resolve(conn, data)
            customer = resolution.customer
            async with conn.transaction():
                call_id = await conn.fetchval(
                    Q["record_gone_call"],
                    data.call_id,
                    queue.name,
                    resolution.phone or (data.ani or None),
                    customer.id if customer is not None else None,
                    identity.recognised_by(resolution),
                    customer.tier if customer is not None else None,
                    reason,
                    *(peer or (None, None)),
                )
                if call_id is not None:  # its contact in the history; nobody to tell
                    await conn.execute(
                        Q["close_call"],
                        call_id,
                        EndOutcome.abandoned.value,
                        reason,
                        None,
                        0.0,
                        CHANNEL,
                        [],
                    )
            created = call_id is not None
            if not created:
                call_id = await conn.fetchval(Q["call_id_by_external"], data.call_id)
            elif self.metrics is not None:
                self.metrics.ended.labels(queue.name, EndOutcome.abandoned.value).inc()
            return EnqueueAnswer(
                created=created,
                identify=resolution.outcome if created else None,
                call=await self.get(conn, call_id),
            )

    async def requeue(self, call_id: int, agent_id: int, *, conn: Conn | None = None) -> bool:
        """Put a connected call back in its queue with its original key.

        For when the telephony peer could not connect the caller to the agent
        who accepted: the caller is still on the line and must not be lost. The
        agent goes to *not responding*. False when the call is no longer
        connected to that agent (it ended meanwhile): nothing changes then.
        """
        async with self._using(conn) as conn:
            queue_name = await conn.fetchval(Q["call_queue"], call_id)
            if queue_name is None:
                return False
            queue = await self.directory.get(conn, queue_name)
            back = await conn.fetchval(
                Q["requeue_connected"],
                call_id,
                agent_id,
                queue.overflow_after_seconds,
                queue.max_wait_seconds,
            )
            if back is None:
                return False
            # The agent's new state (not responding) goes out from the agents' trigger.
            await self.bus.publish(conn, [Event("queue", back)])
            return True

    async def by_external_id(self, external_id: str, *, conn: Conn | None = None) -> Call | None:
        """The call a peer knows by ``external_id``, or None if it was never handed in."""
        async with self._using(conn) as conn:
            call_id = await conn.fetchval(Q["call_id_by_external"], external_id)
            return None if call_id is None else await self.get(conn, call_id)

    async def identify(
        self,
        call_id: int,
        customer_number: str,
        *,
        conn: Conn | None = None,
        audit: Audit | None = None,
    ) -> Call:
        """The IVR collected a customer number: identify again and move the call by value.

        ``audit``: it came through the API (an integration's token); its entry goes in
        the action log with the change, so the call's timeline shows when and by whom.
        """
        async with self._using(conn) as conn:
            row = await self._identifiable(conn, call_id)
            resolution = await identity.resolve(
                conn,
                row["ani"],
                customer_number,
                region=self.rules.region,
                lowest_tier=self.rules.lowest_tier,
            )
            # A typed number that names nobody is refused even when the phone
            # names someone: the IVR asked for it, so it should ask again.
            if resolution.customer is None or resolution.customer_number_not_found:
                raise Unprocessable(
                    f"customer number {customer_number!r} identifies nobody",
                    field="customer_number",
                )
            return await self._reidentify(conn, row, resolution, audit)

    async def identify_as(self, call_id: int, customer_id: int, *, conn: Conn) -> Resolution:
        """An agent picked the caller of ``call_id``: the same path as the IVR's number.

        The call's customer, tier and key follow the pick (so its contact goes
        into that customer's history when it ends) and a phone that is nobody's
        waits as a pending link, exactly as for a typed number; the agent's
        confirmation that releases it is the caller's to record, in the same
        transaction (``conn`` is the caller's, for that reason).
        """
        row = await self._identifiable(conn, call_id)
        resolution = await identity.resolve_pick(
            conn, row["ani"], customer_id, region=self.rules.region
        )
        if resolution.customer is None:
            raise NotFound(f"no customer with id {customer_id}", field="customer_id")
        await self._reidentify(conn, row, resolution)
        return resolution

    async def _identifiable(self, conn: Conn, call_id: int) -> asyncpg.Record:
        row: asyncpg.Record | None = await conn.fetchrow(Q["call"], call_id)
        if row is None:
            raise NotFound(f"no call with id {call_id}")
        if row["state"] in _ENDED:
            raise Conflict(f"call {call_id} has ended ({row['state']})")
        return row

    async def _reidentify(
        self,
        conn: Conn,
        row: asyncpg.Record,
        resolution: Resolution,
        audit: Audit | None = None,
    ) -> Call:
        """Serve call ``row`` as ``resolution``'s customer: new credit (unless a supervisor
        set one), tier and key, the pending link, the action log (``audit``: who), and
        the queue told."""
        customer = resolution.customer
        assert customer is not None
        call_id = row["id"]
        queue = await self.directory.get(conn, row["queue"])
        credit = (
            row["credit_seconds"]
            if row["credit_explicit"]
            else policy.credit(self.directory.policy(queue), customer.tier)
        )
        async with conn.transaction():
            await conn.execute(
                Q["set_key"],
                call_id,
                credit,
                row["credit_explicit"],
                customer.tier,
                customer.id,
                identity.recognised_by(resolution),
                queue.offset_seconds,
            )
            await conn.execute(Q["set_pending_link"], call_id, *_pending_link(resolution))
            if audit is not None:
                await actions.record(
                    conn, audit, call_id=call_id, queue=queue.name, tier=customer.tier
                )
        await self.bus.publish(conn, [Event("queue", queue.name)])
        return await self.get(conn, call_id)

    async def set_credit(
        self, call_id: int, credit_seconds: float | None, audit: Audit | None = None
    ) -> Call:
        """A supervisor's bump: an explicit credit within the queue's bounds, or the tier's.

        ``audit`` says who did it (the signed-in principal): its entry goes in the
        action log with the change, and its ``who`` is kept on the call so the
        dashboard says who moved it (null when the tier's credit is back).
        """
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(Q["call"], call_id)
                if row is None:
                    raise NotFound(f"no call with id {call_id}")
                if row["state"] != CallState.waiting:
                    raise Conflict(f"call {call_id} is not waiting ({row['state']})")
                queue = await self.directory.get(conn, row["queue"])
                rule = self.directory.policy(queue)
                if credit_seconds is not None and not (
                    rule.min_credit <= credit_seconds <= rule.max_credit
                ):
                    raise Unprocessable(
                        f"credit must be between {rule.min_credit:g} and {rule.max_credit:g} "
                        f"seconds in queue {queue.name!r}",
                        field="credit_seconds",
                    )
                explicit = credit_seconds is not None
                credit = policy.credit(rule, row["tier"], credit_seconds)
                await conn.execute(
                    Q["set_key"], call_id, credit, explicit, None, None, None, queue.offset_seconds
                )
                by = audit.who if audit is not None and explicit else None
                await conn.execute(Q["set_bumped_by"], call_id, by)
                if audit is not None:
                    await actions.record(
                        conn, audit, call_id=call_id, queue=queue.name, credit_seconds=credit
                    )
                await self.bus.publish(conn, [Event("queue", queue.name)])
            # The answer is read on the same connection, after the commit.
            return await self.get(conn, call_id)

    async def move(self, call_id: int, target: str, audit: Audit) -> Call:
        """A supervisor (``audit.who``) moves a waiting call to queue ``target``.

        It keeps its service key, so it takes the place in the new queue its
        arrival and credit give it (the bound holds there too: credits are
        bounded by the same rule). Its credit is not recomputed for the new
        queue's policy: a caller is not demoted for being moved. Refused while
        it is being offered (the agent may be accepting it: 409, try again).
        """
        async with self.pool.acquire() as conn:
            queue = await self.directory.require(conn, target, field="queue")
            async with conn.transaction():
                row = await conn.fetchrow(Q["lock_call"], call_id)
                if row is None:
                    raise NotFound(f"no call with id {call_id}")
                if row["state"] != CallState.waiting:
                    raise Conflict(f"call {call_id} is not waiting ({row['state']})")
                if row["queue"] == queue.name:
                    raise Unprocessable(
                        f"call {call_id} already waits in {queue.name!r}", field="queue"
                    )
                moved = await conn.fetchval(
                    Q["move_waiting"],
                    call_id,
                    queue.name,
                    queue.overflow_after_seconds,
                    queue.max_wait_seconds,
                )
                if moved is None:
                    raise Conflict(
                        f"call {call_id} is being offered to an agent right now, or set "
                        "aside until its callback is rung again; try again",
                        field="call_id",
                    )
                await actions.record(
                    conn, audit, call_id=call_id, queue=queue.name, from_queue=row["queue"]
                )
                await self.bus.publish(
                    conn, [Event("queue", row["queue"]), Event("queue", queue.name)]
                )
            _log.info(
                "call %s moved from %s to %s by %s", call_id, row["queue"], queue.name, audit.who
            )
            return await self.get(conn, call_id)

    async def rekey_customer(self, customer_id: int) -> int:
        """The customer's tier changed: move their waiting calls. Returns how many moved."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(Q["waiting_calls_of_customer"], customer_id)
            rows = [r for r in rows if not r["credit_explicit"]]
            if not rows:
                return 0
            customer = await customer_store.get_customer(conn, customer_id)
            queues: set[str] = set()
            for r in rows:
                queue = await self.directory.get(conn, r["queue"])
                credit = policy.credit(self.directory.policy(queue), customer.tier)
                await conn.execute(
                    Q["set_key"], r["id"], credit, False, customer.tier, None, None,
                    queue.offset_seconds,
                )  # fmt: skip
                queues.add(queue.name)
            await self.bus.publish(conn, [Event("queue", q) for q in queues])
            return len(rows)

    # -- the end ---------------------------------------------------------------

    async def end(
        self,
        call_id: int,
        outcome: EndOutcome,
        reason: str | None = None,
        *,
        expect: CallState | None = None,
        agent_id: int | None = None,
        conn: Conn | None = None,
        audit: Audit | None = None,
    ) -> Call:
        """End a call with its one outcome (idempotent for the same outcome); see ``finish``.

        ``audit``: a person ended it through the API; the entry is written with the
        end (a repeat of an end already made writes none). Returns the call as it is now.
        """
        async with self._using(conn) as conn:
            row = await self._finish(conn, call_id, outcome, reason, expect, agent_id, audit)
            return await self._as_is(conn, row)

    async def hang_up(
        self, reason: str, *, call_id: int | None = None, external_id: str | None = None,
        spare_callback: bool = False, conn: Conn,
    ) -> Call | None:  # fmt: skip
        """The caller hung up: end the call by its state, in one round trip.

        A waiting call ends abandoned, a connected one completed, an ended one
        stays as it is; the state is the one under the call's lock, so an
        accept that moves the call meanwhile is seen, not raced. The call is
        ``call_id``, or the peer's call known as ``external_id``. None when
        nothing changed for the telephony door to look closer at: there is no
        call of ``external_id``, or (``spare_callback``) it is a callback call
        whose caller is on no line (they hung up to be rung back, or before
        picking up the ring). Returns the call as it is now.
        """
        releases = self._releasing(conn)
        row = await self._finish_row(
            conn, call_id, None, reason, None, None, releases, external_id, spare_callback
        )
        if row["result"] in ("unknown", "callback"):
            return None
        self._raise_or_count(row, call_id if call_id is not None else row["id"], None, None)
        self._hand_over(releases, row)
        return await self._as_is(conn, row)

    async def finish(
        self,
        call_id: int,
        outcome: EndOutcome,
        reason: str | None = None,
        *,
        expect: CallState | None = None,
        agent_id: int | None = None,
    ) -> None:
        """End a call with its one outcome (idempotent for the same outcome).

        ``expect``: end it only if it is still in that state (the sweep ending a
        call at its maximum wait must not end one an agent just answered).
        ``agent_id``: the agent ending it must be the one it is connected to.
        Unlike ``end`` it does not read the call back: for callers that do not
        show it (an agent's panel gets its state pushed anyway).
        """
        async with self.pool.acquire() as conn:
            await self._finish(conn, call_id, outcome, reason, expect, agent_id)

    async def _finish(
        self,
        conn: Conn,
        call_id: int,
        outcome: EndOutcome,
        reason: str | None,
        expect: CallState | None,
        agent_id: int | None,
        audit: Audit | None = None,
    ) -> asyncpg.Record:
        """The end in one statement (``finish_call``, migration 0021): no transaction of
        its own, unless an audit entry must be written with it."""
        releases = self._releasing(conn)
        async with conn.transaction() if audit is not None else nullcontext():
            row = await self._finish_row(conn, call_id, outcome, reason, expect, agent_id, releases)
            self._raise_or_count(row, call_id, outcome, agent_id)
            if audit is not None and row["result"] == "closed":
                await actions.record(
                    conn,
                    audit,
                    call_id=call_id,
                    agent_id=row["held_by"],
                    queue=row["queue"],
                    outcome=outcome.value,
                    was=row["was"],
                )
        self._hand_over(releases, row)
        return row

    def _offering(self, conn: Conn) -> Offers | None:
        """The router an enqueue on ``conn`` may claim an offer for: none while ``conn``
        is in a transaction (a redial's takeover, a caller's own), whose commit comes
        after the enqueue returns and which may hold the very call it replaces; the
        call's ``queue`` event then wakes the routers, as before."""
        return None if conn.is_in_transaction() else self.offers

    def _releasing(self, conn: Conn) -> Releases | None:
        """The releaser an end on ``conn`` may record its release for: none while
        ``conn`` is in a transaction of its caller's, whose commit (or rollback)
        comes after the end returns; the release is then left to the event."""
        return None if conn.is_in_transaction() else self.releases

    @staticmethod
    def _hand_over(releases: Releases | None, row: asyncpg.Record) -> None:
        """What the end recorded of the release, to the releaser it recorded it for."""
        if releases is not None and row["release"] is not None:
            releases.take(row)

    async def _finish_row(
        self,
        conn: Conn,
        call_id: int | None,
        outcome: EndOutcome | None,
        reason: str | None,
        expect: CallState | None,
        agent_id: int | None,
        releases: Releases | None,
        external_id: str | None = None,
        spare_callback: bool = False,
    ) -> asyncpg.Record:
        row: asyncpg.Record | None = await conn.fetchrow(
            Q["finish_call"],
            call_id,
            external_id,
            None if outcome is None else outcome.value,
            reason,
            None if expect is None else expect.value,
            agent_id,
            spare_callback,
            CHANNEL,
            # The events it sends, by their prefixes: ``agent:<id>`` and ``free:<id>``
            # for the agent it frees or sends to wrap-up, ``ended:<call id>`` for
            # whoever shows an end.
            Event("agent").encode(),
            Event("free").encode(),
            Event("ended").encode(),
            # The release at the peer: recorded here for the calls of ``releases``'
            # peers, else ``release:<call id>`` tells the other instances' releasers.
            None if releases is None else releases.peers(),
            None if releases is None else releases.instance,
            None if releases is None else releases.lease_seconds,
            None if releases is None else releases.settled(reason),
            Event("release").encode(),
        )
        assert row is not None  # the function always answers one row
        return row

    def _raise_or_count(
        self,
        row: asyncpg.Record,
        call_id: int,
        outcome: EndOutcome | None,
        agent_id: int | None,
    ) -> None:
        """What ``finish_call`` answered, as the errors an end raises; a close is counted."""
        result: str = row["result"]
        if result == "closed":
            if self.metrics is not None:
                self.metrics.ended.labels(row["queue"], row["state"]).inc()
        elif result in ("not_found", "not_yours"):
            if agent_id is not None:
                # An agent hears the same of another agent's call as of one that is not there.
                raise NotFound(f"no call {call_id} of yours", field="call_id")
            raise NotFound(f"no call with id {call_id}")
        elif result == "ended":
            raise Conflict(f"call {call_id} already ended {row['was']}", field="outcome")
        elif result in ("not_waiting", "not_connected"):
            assert outcome is not None
            only = "a waiting call is abandoned" if result == "not_waiting" else (
                "a connected call completes"
            )  # fmt: skip
            raise Conflict(f"call {call_id} is {row['was']}: only {only}", field="outcome")

    async def _as_is(self, conn: Conn, row: asyncpg.Record) -> Call:
        """The call from ``finish_call``'s answer; one that waits still is read with its
        position (which the answer does not count)."""
        if row["state"] == CallState.waiting:
            return await self.get(conn, row["id"])
        return call_of(row)

    # -- reading ---------------------------------------------------------------

    async def _rates(self, conn: Conn, queue: Queue) -> QueueRates:
        """The queue's live rates, read at most once per ``RATES_TTL`` per queue.

        A reading fetches only the last seconds of answers (the older part of
        the window is kept in buckets, see ``callcenter.queue.rates``), and a
        rate that is a second old estimates a wait just as well, so every
        enqueue and every read within that second shares one reading.
        """
        now = time.monotonic()
        cached = self._rates_cache.get(queue.name)
        if cached is not None and now - cached[0] < RATES_TTL:
            rates = cached[1]
        else:
            window = self._windows.get(queue.name)
            if window is None:
                window = self._windows[queue.name] = RateWindow(self.stats_window_seconds)
            asked_at = time.time()
            since = window.since(asked_at)
            rows = await conn.fetch(Q["queue_rates"], queue.name, since, window.bucket_seconds)
            clock = rows[0]["now"]
            window.fold(
                clock,
                since,
                [
                    (r["b"], Bucket(r["answered"], r["ended"], r["talk"]))
                    for r in rows
                    if r["b"] is not None
                ],
                local_now=asked_at,
            )
            totals = window.totals(clock)
            rates = QueueRates(
                answered=totals.answered,
                window_seconds=totals.covered_seconds,
                mean_handle_seconds=totals.mean_talk_seconds,
                staffed=rows[0]["staffed"],
                available=rows[0]["available"],
            )
            self._rates_cache[queue.name] = (now, rates)
        if rates.mean_handle_seconds is None:
            return rates
        return replace(rates, mean_handle_seconds=rates.mean_handle_seconds + queue.wrap_up_seconds)

    async def rates(self, conn: Conn, queue: Queue) -> QueueRates:
        """The queue's live rates as EWT uses them (shared with every reader; see ``_rates``)."""
        return await self._rates(conn, queue)

    async def get(self, conn: Conn, call_id: int, *, position: int | None = None) -> Call:
        """A call as the API shows it; ``position`` when the caller just counted it."""
        row = await conn.fetchrow(Q["call"], call_id)
        if row is None:
            raise NotFound(f"no call with id {call_id}")
        ewt = None
        if row["state"] != CallState.waiting:
            position = None
        else:
            if position is None:
                position = await conn.fetchval(
                    Q["position"], row["queue"], row["service_key"], row["id"]
                )
            assert position is not None
            queue = await self.directory.get(conn, row["queue"])
            ewt = estimated_wait(position - 1, await self._rates(conn, queue))
        return call_of(row, position=position, ewt=ewt)

    async def call(self, call_id: int) -> Call:
        async with self.pool.acquire() as conn:
            return await self.get(conn, call_id)

    async def refresh_waiting_gauge(self) -> None:
        """Count the waiting calls by queue and tier into the ``/metrics`` gauge."""
        if self.metrics is None:
            return
        async with self.pool.acquire() as conn:
            counts = await conn.fetch(Q["waiting_counts"])
        self.metrics.set_waiting((r["queue"], r["tier"], r["n"]) for r in counts)

    async def waiting(self, queue_name: str, limit: int) -> QueueCalls:
        async with self.pool.acquire() as conn:
            queue = await self.directory.get(conn, queue_name)
            rates = await self._rates(conn, queue)
            rows = await conn.fetch(Q["waiting_in_queue"], queue.name, limit)
        calls = [
            WaitingCall(
                id=r["call_id"],
                call_id=r["external_id"],
                position=i + 1,
                customer=caller_summary(r),
                tier=r["tier"],
                credit_seconds=r["credit_seconds"],
                credit_explicit=r["credit_explicit"],
                service_key=r["service_key"],
                enqueued_at=r["enqueued_at"],
                waited_seconds=float(r["waited"]),
                estimated_wait_seconds=estimated_wait(i, rates),
                offered_to=r["offered_to"],
                callback=r["callback"],
                resumed=r["resumed"],
            )
            for i, r in enumerate(rows)
        ]
        return QueueCalls(queue=queue.name, calls=calls)

    async def summaries(self) -> QueueList:
        window = self.stats_window_seconds
        async with self.pool.acquire() as conn:
            queues = {q.name: q for q in await self.directory.all(conn)}
            rows = await conn.fetch(Q["queue_summaries"], window)
            out = []
            for r in rows:
                queue = queues.get(r["name"]) or await self.directory.get(conn, r["name"])
                rates = await self._rates(conn, queue)
                answered = r["answered"]
                out.append(
                    QueueSummary(
                        name=queue.name,
                        config=queue,
                        waiting=r["waiting"],
                        offered=r["offered"],
                        longest_wait_seconds=(
                            float(r["longest_wait"]) if r["longest_wait"] is not None else None
                        ),
                        agents_staffed=r["staffed"],
                        agents_available=r["available"],
                        answered=answered,
                        abandoned=r["abandoned"],
                        service_level=r["answered_in_sl"] / answered if answered else None,
                        estimated_wait_seconds=estimated_wait(r["waiting"], rates),
                        callbacks_waiting=r["callbacks_waiting"],
                        callbacks_set_aside=r["callbacks_set_aside"],
                    )
                )
        return QueueList(window_seconds=window, queues=out)


@dataclass(frozen=True)
class Freeing:
    """How a statement that frees an agent (the wrap-up, ``available``) lets the
    routers know, one rule for both (``freeing`` makes it): with this instance's
    router running (``offers``), the statement runs the router's claim itself and the
    router takes what it made once it committed (``committed``); else it notifies
    ``events`` (``free:<id>``) at commit and a round offers the agent its call."""

    offers: Offers | None
    #: The payloads the statement notifies at commit.
    events: list[str]
    #: ``Offers.watch``'s mark, taken before the statement is sent.
    mark: int

    @property
    def claim(self) -> bool:
        """Whether the statement runs the claim (its ``offer_*`` columns answer it)."""
        return self.offers is not None

    def committed(self, row: asyncpg.Record) -> None:
        """The statement freed the agent and committed, answering ``row``."""
        if self.offers is None:
            return
        made = made_offer(row)
        if made is not None:
            self.offers.made(made)
        self.offers.freed(self.mark)


def freeing(offers: Offers | None, agent_id: int) -> Freeing:
    """The ``Freeing`` of agent ``agent_id`` by a statement about to be sent."""
    if offers is None:
        return Freeing(None, payloads([Event("free", str(agent_id))]), 0)
    return Freeing(offers, [], offers.watch())


def made_offer(row: asyncpg.Record | None) -> MadeOffer | None:
    """The offer a statement that ran the claim made (its ``offer_*`` columns), if any."""
    if row is None or row["offer_id"] is None:
        return None
    return MadeOffer(
        offer_id=row["offer_id"],
        call_id=row["offer_call_id"],
        agent_id=row["offer_agent_id"],
        expires_at=row["offer_expires_at"],
        queue=row["offer_queue"],
        more=row["offer_more"],
    )


def call_of(
    row: Mapping[str, Any] | asyncpg.Record,
    *,
    position: int | None = None,
    ewt: float | None = None,
) -> Call:
    """A call as the API shows it, from a ``call`` row (``get``), or the held call an
    agent's snapshot reads with the agent (``agent_snapshot``'s ``held_`` columns), so the
    panel's push takes one round trip for the agent and its call."""
    return Call(
        id=row["id"],
        call_id=row["external_id"],
        queue=row["queue"],
        state=row["state"],
        ani=row["ani"],
        customer=caller_summary(row),
        identified_by=row["identified_by"],
        tier=row["tier"],
        credit_seconds=row["credit_seconds"],
        credit_explicit=row["credit_explicit"],
        service_key=row["service_key"],
        enqueued_at=row["enqueued_at"],
        connected_at=row["connected_at"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
        agent_id=row["agent_id"],
        offered_to=row["offered_to"],
        position=position,
        estimated_wait_seconds=ewt,
        ewt_at_enqueue=row["ewt_at_enqueue"],
        bumped_by=row["bumped_by"],
        callback=callback_state(row),
        resumed=resumed_from(row),
    )


def caller_summary(row: Mapping[str, Any] | asyncpg.Record) -> CustomerSummary | None:
    """The caller from a call row joined with its customer (``customer_*`` columns)."""
    if row["customer_id"] is None:
        return None
    return CustomerSummary(
        id=row["customer_id"],
        customer_number=row["customer_number"],
        name=row["customer_name"] or "",
        tier=row["tier"] or "",
        provisional=bool(row["provisional"]),
    )


def callback_state(row: Mapping[str, Any] | asyncpg.Record) -> CallbackState | None:
    """A virtual call's callback, from a call row (``callback_*`` columns)."""
    if row["callback_number"] is None:
        return None
    return CallbackState(
        number=row["callback_number"],
        requested_at=row["callback_requested_at"],
        attempts=row["callback_attempts"],
        retry_at=row["callback_retry_at"],
        answered_at=row["callback_answered_at"],
    )


def resumed_from(row: Mapping[str, Any] | asyncpg.Record) -> Resumed | None:
    """The dropped call a redial resumed, from a call row."""
    if row["resumed_from"] is None:
        return None
    return Resumed(
        call_id=row["resumed_from"],
        waited_before_seconds=row["waited_before_seconds"] or 0.0,
        arrived_at=row["resumed_arrival"],
    )
