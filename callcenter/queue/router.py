"""The router: matches waiting calls with free agents and looks after open offers.

It runs in every instance and coordinates through PostgreSQL alone: each
match is one statement (``offer_next``) that locks the agent and the call with
``SKIP LOCKED``, so two routers never offer one call or one agent twice. It
is woken by events (a call enqueued or moved, an agent's state changed), never
by polling the queue; a slow sweep covers a lost notification and the clocks
(offer timeouts, agents gone past their grace period, wrap-up ends, maximum
waits, callbacks due again after a ring nobody answered). An offer's timeout
is also armed as a local timer, so it fires on
time; whichever of timer and sweep comes first returns the call, the other
finds nothing to do. A new call's first step is made by the enqueue itself:
its statement runs the same claim (``queue_offer_next``, migration 0027) and
hands the offer it made to this router (``made``, registered with the desk as
``calls.Offers`` while the router runs). So do the statements that free an
agent (its wrap-up, its ``available``), which then ask for a round only when
a call may have moved unseen by their claim (``freed``).

The queue never talks to sockets: an offer is published as ``agent:<id>``
and the agent hub (in whichever instance holds that agent's socket) pushes it.

Offers and the clocks' state changes are soft state: they commit on
``soft_pool``, whose commits do not wait for the disk. If PostgreSQL crashed
in the fraction of a second before they reached it, the calls would be back
waiting with their keys and the agents back where they were: an agent's
accept of a lost offer gets "no such offer", and the next dispatch offers the
call again. A call moved to its overflow queue by the clock and lost the
same way is moved again by the next sweep. Calls, accepts, ends and answers
stay on the durable pool (and so does an offer the enqueue makes: it commits
with the call). Measured with the routing benchmark on two cores:
at 200 calls/s it makes no difference to the latency, but at 300/s it is
what keeps up (p50 7-8 ms; with every commit durable the queue fell behind,
p50 2-2.3 s), and PostgreSQL's CPU per call drops from 3.3 to 2.8 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from callcenter.customers.audit import Audit
from callcenter.db.pool import Conn
from callcenter.errors import Conflict, NotFound
from callcenter.events import CHANNEL, Event, EventBus
from callcenter.queue import actions, agents, callbacks
from callcenter.queue.calls import Bridges, CallDesk, MadeOffer
from callcenter.queue.models import AgentState, CallState, EndOutcome
from callcenter.queue.sql import Q
from callcenter.runtime import TRANSIENT_DB_ERRORS, Supervisor

_log = logging.getLogger(__name__)

#: Offers made in one dispatch round before yielding to other work.
ROUND = 200

#: Events after which a call and a free agent may match: a call waiting or
#: back (queue), an agent free (free), a queue's config, or lost events (resync).
WAKING = frozenset({"queue", "free", "queues", "resync"})

#: The end reason of a call past its queue's maximum wait with nowhere to overflow.
MAX_WAIT = "max_wait"

#: Events after which a call may wait that a claim running at the same time did not
#: see (``Router.freed``): a call waiting or back, a queue's config, lost events.
MOVED = frozenset({"queue", "queues", "resync"})

#: What statements that publish their own events put before an id (see ``Event.encode``).
CONNECT_PREFIX = Event("connect").encode()


async def offer_next(conn: Conn) -> asyncpg.Record | None:
    """Match the longest-idle free agent with its next call, if any pair is left.

    One statement; the agent's panel hears of the offer from the agents' trigger,
    which sends its snapshot at commit (migration 0024).
    """
    row: asyncpg.Record | None = await conn.fetchrow(Q["offer_next"])
    return row


@dataclass(frozen=True)
class WithAccept:
    """A read of a room above the queue that rides on an accept's round trip.

    ``statement`` calls the SQL function ``accept_offer`` with the accept's
    arguments, ``$1`` to ``$7`` (``accept_arguments``), returns its row as the
    column ``accepted`` and adds its own columns, from its ``arguments`` (``$8``
    on); no row when the accept took nothing. The agent desk reads the caller's
    panel so (issue 21): the queue runs the accept as always and hands the row back
    whole, knowing nothing of what else it holds.
    """

    statement: str
    arguments: tuple[Any, ...] = ()


def accept_arguments(offer_id: int, agent_id: int, bridges: Bridges | None) -> tuple[Any, ...]:
    """The SQL function ``accept_offer``'s arguments (see ``accept_offer`` below)."""
    return (
        offer_id,
        agent_id,
        CHANNEL,
        CONNECT_PREFIX,
        None if bridges is None else bridges.peers(),
        None if bridges is None else bridges.instance,
        None if bridges is None else bridges.lease_seconds,
    )


async def accept_offer(
    conn: Conn, offer_id: int, agent_id: int, bridges: Bridges | None = None
) -> asyncpg.Record | None:
    """The agent takes its open offer; None when it is not open (any more) or not its own.

    One statement. For a call of a peer that ``bridges`` (this instance's bridger)
    connects, it also records the bridge's claim for it (``bridge_id`` in the answer,
    with all the connect needs; the caller hands it over once this returned); else it
    publishes ``connect:<call id>`` and the bridger of whichever instance claims it
    bridges the caller. The agent's change goes out with its snapshot from the
    agents' trigger (migration 0024).
    """
    row = await _accepting(conn, offer_id, agent_id, bridges)
    accepted: asyncpg.Record | None = None if row is None else row["accepted"]
    return accepted


async def _accepting(
    conn: Conn,
    offer_id: int,
    agent_id: int,
    bridges: Bridges | None,
    also: WithAccept | None = None,
) -> asyncpg.Record | None:
    """The accept's statement (``also``'s, when given) and its row, the accept's own
    as ``accepted``; None when it took nothing."""
    statement, more = (Q["accept_offer"], ()) if also is None else (also.statement, also.arguments)
    row: asyncpg.Record | None = await conn.fetchrow(
        statement, *accept_arguments(offer_id, agent_id, bridges), *more
    )
    return row


class Router:
    def __init__(
        self,
        desk: CallDesk,
        *,
        sweep_seconds: float = 1.0,
        agent_grace_seconds: float = 30.0,
        soft_pool: asyncpg.Pool[Any] | None = None,
    ) -> None:
        self.desk = desk
        self.pool: asyncpg.Pool[Any] = desk.pool
        self.soft_pool: asyncpg.Pool[Any] = soft_pool if soft_pool is not None else desk.pool
        self.bus: EventBus = desk.bus
        self.sweep_seconds = sweep_seconds
        self.agent_grace_seconds = agent_grace_seconds
        self._wake = asyncio.Event()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self.supervisor = Supervisor("router", duty="no call is offered or no clock runs")
        self.offers_made = 0
        #: Rounds asked for (``wake``) and rounds run (``dispatch``), counted.
        self.wakes = 0
        self.rounds = 0
        # ``MOVED`` events taken by the listener so far: ``watch`` and ``freed``.
        self._moved = 0

    # -- running ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Router]:
        """Dispatch, listen and sweep for the life of the block (supervised: restarted)."""
        sub = self.bus.subscribe(10_000, kinds=WAKING | {"customer"})
        self.supervisor.start("router-dispatch", self._dispatcher)
        self.supervisor.start("router-events", functools.partial(self._listen, sub))
        self.supervisor.start("router-sweep", self._sweeper)
        self.desk.offers = self  # the enqueue claims for this router (``made``)
        try:
            yield self
        finally:
            if self.desk.offers is self:
                self.desk.offers = None
            self.bus.unsubscribe(sub)
            for handle in self._timers.values():
                handle.cancel()
            await self.supervisor.stop()

    @property
    def failure(self) -> str | None:
        """What of the router is down (``/readyz`` says so), or None."""
        return self.supervisor.failure

    def wake(self) -> None:
        self.wakes += 1
        self._wake.set()

    async def _dispatcher(self) -> None:
        # A first round at once: at the start, and after a restart (the wake-up
        # that the dead run had taken may not have been served).
        self.wake()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.dispatch()
            except TRANSIENT_DB_ERRORS as exc:
                _log.warning("dispatch failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                self.wake()

    async def _listen(self, sub: Any) -> None:
        while True:
            event: Event = await sub.get()
            if event.kind in ("queues", "resync"):
                self.desk.directory.invalidate()
            if event.kind in MOVED:
                self._moved += 1
            if event.kind == "customer":
                self.supervisor.spawn(
                    self.desk.rekey_customer(int(event.key)), f"rekey customer {event.key}"
                )
            elif event.kind in WAKING:
                self.wake()

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep()
            except TRANSIENT_DB_ERRORS as exc:
                _log.warning("sweep failed (%s); next one in %ss", exc, self.sweep_seconds)

    # -- matching --------------------------------------------------------------

    async def dispatch(self) -> int:
        """Offer waiting calls to free agents until no pair is left; return how many.

        The round stops when an offer says no other pair may be left (its
        ``more``), without a last ``offer_next`` that finds nothing: that was a
        round trip on every call (issue 21). No pair is left waiting by it, on
        one instance or several, because ``more`` is false only when the
        offer's own snapshot holds no other available agent serving a queue with
        another unoffered call (a superset of the pairs the claim could make:
        rows another router holds but has not committed still count as free).
        So a pair that exists after the round must have been made by a commit
        after that snapshot: a call enqueued or returned, an agent freed, an
        offer withdrawn, a queue changed. Each of those publishes its event at
        commit (``queue``, ``free``, ``queues``: ``WAKING``), which reaches every
        instance's router after this round cleared its wake-up flag (the flag
        is cleared before the round starts), so a new round follows. What no
        event announces (a call's widen time passing, a lost notification
        before the listener's resync) the sweep's wake-up covers, as before.

        A new call's enqueue makes the first step of its round itself (the same
        claim in its statement, handed over to ``made``), and its event wakes
        no router, ``offered:<queue>`` instead of ``queue``, only when the offer
        it made is of that very call: then its commit made no pair, since the
        call it adds is offered and the agent it took is busy, and a pair that
        exists after it comes from another commit, announced as above. (When
        that offer's ``more`` is true, ``made`` wakes this router, as a round
        would have gone on.) When its claim made no offer (no free agent in its
        snapshot, or only one another claim held) or offered an older call, the
        new call waits and its event is ``queue`` as before, and must be: an
        agent freed by a transaction concurrent with the enqueue was invisible
        to the claim's snapshot, and that agent's ``free`` round may have run
        before the call was committed and not seen it, so only the enqueue's
        commit can bring the two together
        (``tests/integration/test_enqueue_offer.py`` holds the enqueue's commit
        at that point).
        """
        made = 0
        async with self.soft_pool.acquire() as conn:
            while made < ROUND:
                row = await offer_next(conn)
                if row is None:
                    break
                made += 1
                self._arm(row["offer_id"], row["expires_at"])
                if not row["more"]:
                    break
        self.rounds += 1
        self._count(made)
        if made == ROUND:
            self.wake()
        return made

    def made(self, offer: MadeOffer) -> None:
        """An offer a statement that runs the claim made (the enqueue's, the wrap-up's,
        the available's: ``calls.Offers``), committed: one of this router's, as if its
        round had made it. When its ``more`` says another pair may be left, a round
        follows, as the round would have gone on."""
        self._arm(offer.offer_id, offer.expires_at)
        self._count(1)
        if offer.more:
            self.wake()

    def watch(self) -> int:
        """The mark ``freed`` compares with (``calls.Offers``)."""
        return self._moved

    def freed(self, mark: int) -> None:
        """An agent freed by a statement that ran the claim itself has committed (the
        wrap-up's, the available's: ``calls.Offers``): a round only if a ``MOVED``
        event came in after ``mark``, taken just before that statement was sent.

        The claim saw the agent free and every call committed before its snapshot,
        so it offered the agent a call, or none of those could pair with it (a
        superset of what it could see failing, as in ``dispatch``: the ``more`` of
        its offer covers the rest of its snapshot). A call it could not see was
        enqueued, returned or moved by a transaction that committed after that
        snapshot, or it was the head of a queue that a concurrent claim held and
        let go (the claim skipped it as locked); either commit sends a ``MOVED``
        event (a claim announces each head it let go, migration 0030), which
        reaches this listener after the commit. If it came before ``mark``, the
        commit was before the statement was sent, so before the snapshot: not a
        call the claim missed. If it came after ``mark`` and before now, its round
        may have run before this statement committed and missed the agent: so one
        more round runs now. If it comes later, the round it wakes runs after this
        commit and sees both.
        So no agent freed here is left beside a call, and a wrap-up while nothing
        moves takes no round at all (issue 21: it took one every call)."""
        if self._moved != mark:
            self.wake()

    def _count(self, made: int) -> None:
        self.offers_made += made
        if made and self.desk.metrics is not None:
            self.desk.metrics.offers.labels("made").inc(made)

    def _arm(self, offer_id: int, expires_at: datetime) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires_at.timestamp() - time.time()) + 0.05
        self._timers[offer_id] = loop.call_later(delay, self._expire, offer_id)

    def _expire(self, offer_id: int) -> None:
        self._timers.pop(offer_id, None)
        self.supervisor.spawn(
            self._return([offer_id], "timeout", "not_responding"), f"time out offer {offer_id}"
        )

    def _disarm(self, offer_id: int) -> None:
        handle = self._timers.pop(offer_id, None)
        if handle is not None:
            handle.cancel()

    async def _return(
        self, offer_ids: Sequence[int], result: str, agent_state: str, conn: Conn | None = None
    ) -> list[asyncpg.Record]:
        """Close open offers; their calls keep their keys. Publishes what changed."""
        if not offer_ids:
            return []
        if conn is None:
            async with self.soft_pool.acquire() as own:
                return await self._return(offer_ids, result, agent_state, own)
        rows = await conn.fetch(Q["return_offers"], list(offer_ids), result, agent_state)
        if rows and self.desk.metrics is not None:
            self.desk.metrics.offers.labels(result).inc(len(rows))
        events = [Event("agent", str(r["agent_id"])) for r in rows]
        events += [Event("queue", r["queue"]) for r in rows]
        await self.bus.publish(conn, events)
        return rows

    # -- what an agent does ------------------------------------------------------

    async def accept(
        self, agent_id: int, offer_id: int, also: WithAccept | None = None
    ) -> asyncpg.Record:
        """The agent takes the offered call, and ``also`` is read in the same round
        trip; returns the statement's row, the accept's own as ``accepted`` (the
        call's id is its ``call_id``).

        A closed offer, or another agent's, raises (404, 409 naming ``offer_id``),
        and nothing of ``also`` is read.
        """
        bridges = self.desk.bridges
        async with self.pool.acquire() as conn:
            row = await _accepting(conn, offer_id, agent_id, bridges, also)
            if row is None:
                await self._explain_closed(conn, agent_id, offer_id)
            assert row is not None
            accepted: asyncpg.Record = row["accepted"]
            self._disarm(offer_id)
            if bridges is not None and accepted["bridge_id"] is not None:
                # Committed (the accept is a statement of its own): the bridger connects.
                bridges.take(accepted)
            if self.desk.metrics is not None:
                self.desk.metrics.offers.labels("accepted").inc()
                self.desk.metrics.answer_wait.labels(
                    accepted["queue"], accepted["tier"] or "unknown"
                ).observe(accepted["waited"])
            return row

    async def reject(self, agent_id: int, offer_id: int) -> None:
        """The call goes back with its key; the agent gets nothing until available again."""
        async with self.pool.acquire() as conn:
            offer = await self._own_offer(conn, agent_id, offer_id)
            rows = await self._return([offer_id], "rejected", "not_responding", conn)
            if not rows:
                await self._explain_closed(conn, agent_id, offer["id"])
            self._disarm(offer_id)

    async def available(self, agent_id: int) -> None:
        async with self.pool.acquire() as conn:
            # Its own statement runs the claim while this router runs (``calls.Offers``).
            if not await agents.set_available(conn, agent_id, self.desk.offers):
                agent = await agents.get_agent(conn, agent_id)
                if agent.state is AgentState.offered:
                    return  # already taking calls: an offer came first (a wrap-up ended)
                raise Conflict(f"agent {agent_id} is {agent.state.value}, it cannot be available")

    async def extend_wrap_up(self, agent_id: int, call_id: int, seconds: float) -> datetime:
        """The agent is still writing the wrap-up of ``call_id``: hold it ``seconds`` more.

        Bounded by the queue's ``wrap_up_max_seconds`` from the call's end; the
        new end of the wrap-up is returned (and pushed to the agent's panels). 409
        when the agent is not in that wrap-up, or it is at its maximum already.
        """
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(Q["extend_wrap_up"], agent_id, call_id, seconds)
        if row is None:
            raise Conflict(
                f"you are not in the wrap-up of call {call_id} (it is over, or you are "
                "available again); what you typed can still be saved",
                field="call_id",
            )
        until: datetime = row["wrap_up_until"]
        if until <= row["was"]:
            raise Conflict(
                f"the wrap-up of call {call_id} is at its queue's maximum; finish it "
                "(what you type after it ends is kept and can still be saved)",
                field="seconds",
            )
        return until

    async def offline(self, agent_id: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            # One transaction: nobody sees the agent offline while it still holds an offer.
            offers = await agents.set_offline(conn, agent_id)
            await self._return(offers, "withdrawn", "offline", conn)
            await self.bus.publish(conn, [Event("agent", str(agent_id))])

    async def force_offline(self, agent_id: int, audit: Audit) -> None:
        """A supervisor (``audit.who``) takes an agent out of routing; its open offer goes
        back with its key. The agent's panel hears it and may go available again.

        The entry names the call whose offer was withdrawn (an agent rings with one
        offer at a time), so that call's timeline says who took its agent away.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            offers = await agents.force_offline(conn, agent_id)
            returned = await self._return(offers, "withdrawn", "offline", conn)
            calls = [r["call_id"] for r in returned]
            await actions.record(
                conn,
                audit,
                agent_id=agent_id,
                call_id=calls[0] if calls else None,
                withdrawn_calls=calls,
            )
            await self.bus.publish(conn, [Event("agent", str(agent_id))])
        _log.info("agent %s forced offline by %s", agent_id, audit.who)

    async def end_call(self, agent_id: int, call_id: int, outcome: EndOutcome) -> None:
        await self.desk.finish(call_id, outcome, agent_id=agent_id)

    async def _own_offer(self, conn: Conn, agent_id: int, offer_id: int) -> asyncpg.Record:
        offer: asyncpg.Record | None = await conn.fetchrow(Q["offer"], offer_id)
        if offer is None or offer["agent_id"] != agent_id:
            # The same answer for both: an agent learns nothing of other agents' offers.
            raise NotFound(f"no offer {offer_id} of yours", field="offer_id")
        return offer

    async def _explain_closed(self, conn: Conn, agent_id: int, offer_id: int) -> None:
        offer = await self._own_offer(conn, agent_id, offer_id)
        if offer["open"] and offer["result"] is None:
            # Expired, and neither the timer nor the sweep got to it yet.
            await self._return([offer_id], "timeout", "not_responding", conn)
            raise Conflict(f"offer {offer_id} has expired", field="offer_id")
        raise Conflict(
            f"offer {offer_id} is closed ({offer['result'] or 'expired'})", field="offer_id"
        )

    # -- the clocks --------------------------------------------------------------

    async def sweep(self) -> None:
        """Everything time decides; idempotent, so every instance may run it."""
        async with self.soft_pool.acquire() as conn:
            expired = [r["offer_id"] for r in await conn.fetch(Q["expired_offers"])]
            await self._return(expired, "timeout", "not_responding", conn)
            async with conn.transaction():
                # Their offers' waiting rows first, then the agents (the lock order).
                await conn.fetch(Q["lock_offers_of_gone_agents"], self.agent_grace_seconds)
                gone = [
                    r["id"] for r in await conn.fetch(Q["agents_gone"], self.agent_grace_seconds)
                ]
                if gone:
                    _log.info("agents %s went offline: not seen for the grace period", gone)
                    offers = [r["offer_id"] for r in await conn.fetch(Q["offers_of_agents"], gone)]
                    await self._return(offers, "withdrawn", "offline", conn)
            ready = [r["id"] for r in await conn.fetch(Q["wrap_ups_done"])]
            events = [Event("agent", str(a)) for a in [*gone, *ready]]
            await self.bus.publish(conn, events + [Event("free", str(a)) for a in ready])
            await self._give_up(conn)
            await callbacks.due(conn, self.bus)
        self.wake()

    async def _give_up(self, conn: Conn) -> None:
        """Calls past their queue's maximum wait: to the overflow queue, or end transferred."""
        for row in await conn.fetch(Q["given_up"]):
            target = row["overflow_queue"]
            if target is not None:
                queue = await self.desk.directory.get(conn, target)
                await conn.execute(
                    Q["move_to_queue"],
                    row["call_id"],
                    target,
                    queue.overflow_after_seconds,
                    queue.max_wait_seconds,
                )
                await self.bus.publish(conn, [Event("queue", row["queue"]), Event("queue", target)])
            else:
                await self.desk.finish(
                    row["call_id"], EndOutcome.transferred, MAX_WAIT, expect=CallState.waiting
                )
