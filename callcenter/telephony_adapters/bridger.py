"""Connect an accepted call at its peer, exactly once, whichever instance does it.

The claim is one row in ``call_bridges`` (a partial unique index allows one
live claim per call), and its holder asks the call's peer (``calls.peer``,
written by the gateway at hand-in) to connect the caller to the agent's
endpoint. It is written by the accept itself where it can be (``accept_offer``,
issue 21): while a bridger runs, it registers with the ``CallDesk``
(``Bridges``), and an accept of a call of one of its peers claims the bridge
for it in the same statement, answering with all the connect needs; once it
is committed the bridger is handed the claim (``take``) and commands the peer
with no read of its own. Any other accept (a call of a peer this instance
does not command, or no bridger here) publishes ``connect:<call id>`` at
commit; the event reaches the bridger of every instance, each tries to claim
the bridge (``claim_bridge``, answering with the call and the agent), and the
one that wins connects it.

A failed connect is retried with exponential backoff. An agent's phone that
was rung and did not answer (``AgentNotReached``) is not rung again: like
every attempt failing, it sends the call back at once. Then the call must not
be lost: it goes back to its queue with its
original service key (the agent, whose phone could not be reached, becomes
*not responding*), and after ``max_requeues`` such returns it ends
*transferred* with reason ``connect_failed`` and the peer is asked to hang
up. Either way the log says so loudly.

A claim carries a lease that every attempt renews; a claim whose instance
died is given up when the lease runs out. A slow catch-up pass (and every
``resync``) claims connected calls that have no live claim, so a lost event
delays a connect but never drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Self

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from callcenter.errors import (
    AgentNotReached,
    CallCenterError,
    CallerNotReached,
    PeerCallGone,
    PeerOutcomeUnknown,
)
from callcenter.queue import callbacks
from callcenter.queue.calls import CallDesk, call_of
from callcenter.queue.models import CallState, EndOutcome
from callcenter.telephony_adapters.base import AgentEndpoint, Hangup, PeerCall
from callcenter.telephony_adapters.call_worker import CallWorker
from callcenter.telephony_adapters.gateway import TelephonyGateway
from callcenter.telephony_adapters.sql import Q

_log = logging.getLogger(__name__)


#: The end reason of a call that never connected; the bridger hangs it up at the peer itself.
CONNECT_FAILED = "connect_failed"

#: Tombstones older than this are deleted by the catch-up pass.
TOMBSTONE_SECONDS = 86_400.0


def bridges_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "callcenter_telephony_connects",
        "Connect commands to telephony peers by peer and result "
        "(connected, retried, requeued, ended, gone, unknown; a callback's ring: "
        "answered, ringing, missed)",
        ["peer", "result"],
        registry=registry,
    )


class Bridger(CallWorker):
    event_kind = "connect"
    name = "bridger"
    duty = "accepted calls are not connected"

    def __init__(
        self,
        desk: CallDesk,
        gateway: TelephonyGateway,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 5.0,
        ring_seconds: float = 0.0,
        max_requeues: int = 2,
        catch_up_seconds: float = 5.0,
        results: Counter | None = None,
        callback_ring_seconds: float = 30.0,
    ) -> None:
        super().__init__(
            desk,
            gateway,
            attempts=attempts,
            backoff_seconds=backoff_seconds,
            timeout_seconds=timeout_seconds,
            catch_up_seconds=catch_up_seconds,
            results=results,
        )
        self.max_requeues = max_requeues
        #: One connect may ring the agent's phone: it is given one command's time to be
        #: sent, the ring, and one more command's time for the peer to report the outcome,
        #: so a phone that rings out is reported by the peer (``AgentNotReached``)
        #: before this limit cuts the connect off with an outcome it cannot know.
        self.connect_seconds = 2 * timeout_seconds + ring_seconds
        #: A callback rings the caller for this long; its command gets the same margins.
        self.callback_ring_seconds = callback_ring_seconds
        self.ring_back_seconds = 2 * timeout_seconds + callback_ring_seconds
        self.lease_seconds += max(self.connect_seconds, self.ring_back_seconds) - timeout_seconds

    async def handle(self, call_id: int) -> str | None:
        return await self.bridge(call_id)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        """Follow the events and catch up, and take the claims the accepts of this
        instance record for it (registered with the desk), for the life of the block."""
        async with super().running():
            self.desk.bridges = self
            try:
                yield self
            finally:
                if self.desk.bridges is self:
                    self.desk.bridges = None

    # -- what the accept asks (``callcenter.queue.calls.Bridges``) ---------------

    def peers(self) -> list[str]:
        """The peers whose calls this bridger connects: those with a connector."""
        return sorted(self.gateway.connectors)

    def take(self, recorded: asyncpg.Record) -> None:
        self.supervisor.spawn(self._carry_out(recorded), f"call {recorded['id']}")

    # -- the work --------------------------------------------------------------

    async def catch_up(self) -> int:
        """Give up dead claims; bridge connected calls that have no live claim. Returns how many."""
        async with self.desk.pool.acquire() as conn:
            for row in await conn.fetch(Q["expire_claims"]):
                _log.error(
                    "connect claim %s of call %s by %s expired: claiming it again",
                    row["id"],
                    row["call_id"],
                    row["claimed_by"],
                )
            await conn.execute(Q["sweep_tombstones"], TOMBSTONE_SECONDS)
            peers = self.peers()
            if not peers:
                return 0
            ids = [r["id"] for r in await conn.fetch(Q["unbridged_calls"], peers)]
            # A ring's report is due within the ring's own limit; twice that, it is lost.
            stale = await conn.fetch(Q["stale_rings"], 2 * self.ring_back_seconds, peers)
        for ring in stale:
            _log.error(
                "callback of call %s: no report of its ring %s; counting it not answered",
                ring["call_id"],
                ring["bridge_id"],
            )
            await self.gateway.callback_missed(
                ring["peer"],
                ring["peer_call_id"],
                ring["bridge_id"],
                "failed",
                "no report of the ring",
            )
        for call_id in ids:
            await self.bridge(call_id)
        return len(ids)

    async def bridge(self, call_id: int) -> str | None:
        """Claim and carry out the connect of ``call_id``.

        Returns what happened (``connected``, ``requeued``, ``ended``,
        ``gone``, ``unknown``), or None when there was nothing for this instance to do
        (another instance holds the claim, the call is not a peer's, or not
        connected).
        """
        peers = self.peers()
        if not peers:
            return None
        async with self.desk.pool.acquire() as conn:
            # One round trip: the claim answers with the agent and the call as well.
            claim = await conn.fetchrow(
                Q["claim_bridge"], call_id, peers, self.instance, self.lease_seconds
            )
        if claim is None:
            return None
        return await self._carry_out(claim)

    async def _carry_out(self, claim: asyncpg.Record) -> str:
        """The connect this instance claimed (``claim_bridge``'s answer, or the accept's
        own, ``accept_offer``'s, which has the same columns), carried out at the peer."""
        call_id: int = claim["id"]
        bridge_id: int = claim["bridge_id"]
        agent_id: int = claim["bridge_agent_id"]
        # A connected call: what ``CallDesk.get`` answers for it is ``call_of`` its row.
        record = call_of(claim)
        # The claim only takes calls of our peers, and names the peer's call.
        peer: str = claim["peer"]
        peer_call_id: str = claim["peer_call_id"]
        connector = self.gateway.connectors[peer]
        call = PeerCall(peer=peer, peer_call_id=peer_call_id, record=record, bridge_id=bridge_id)
        if claim["agent_endpoint"] is None:  # none set, or the agent is gone
            error = f"agent {agent_id} has no endpoint the PBX could dial"
            return await self._give_up(bridge_id, call, agent_id, error)
        agent = AgentEndpoint(agent_id, claim["agent_name"], claim["agent_endpoint"])
        if record.callback is not None:
            return await self._ring_back(bridge_id, call, agent, record.callback.number)
        error = "not attempted"
        for attempt in range(self.attempts):
            try:
                await asyncio.wait_for(connector.connect(call, agent), self.connect_seconds)
            except PeerCallGone as exc:
                return await self._caller_gone(bridge_id, call, str(exc))
            except AgentNotReached as exc:
                # The phone rang out or was busy: back to the queue, the agent not responding.
                return await self._give_up(bridge_id, call, agent_id, f"{exc}")
            except (PeerOutcomeUnknown, TimeoutError) as exc:
                # TimeoutError: the connector itself ran past our limit, mid-command.
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                return await self._outcome_unknown(bridge_id, call, agent, error)
            except Exception as exc:  # any failure of a peer must leave the call served
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                _log.warning(
                    "connect of call %s (%s) to agent %s failed, attempt %s of %s: %s",
                    call_id,
                    record.call_id,
                    agent.name,
                    attempt + 1,
                    self.attempts,
                    error,
                )
                self._count(peer, "retried")
                async with self.desk.pool.acquire() as conn:
                    await conn.execute(
                        Q["bridge_attempt_failed"], bridge_id, error[:500], self.lease_seconds
                    )
                fresh = await self.desk.call(call_id)
                if fresh.state is not CallState.connected or fresh.agent_id != agent_id:
                    # The caller hung up (or the call was ended) meanwhile: nothing to connect.
                    await self._mark_failed(bridge_id, f"{error}; then the call was {fresh.state}")
                    return "gone"
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(self.backoff_seconds * 2**attempt)
                continue
            async with self.desk.pool.acquire() as conn:
                await conn.execute(Q["bridge_connected"], bridge_id)
            self._count(peer, "connected")
            _log.info("call %s (%s) connected to agent %s", call_id, record.call_id, agent.name)
            return "connected"
        return await self._give_up(bridge_id, call, agent_id, error)

    async def _ring_back(
        self, bridge_id: int, call: PeerCall, agent: AgentEndpoint, number: str
    ) -> str:
        """Ring the caller of a callback and bridge them to the agent who accepted.

        One attempt per accept, never repeated: a ring that may have gone out
        is not rung twice (the caller would hear two phones). Not answered
        (``CallerNotReached``) frees the agent and the call waits out the
        queue's retry delay in its place (``TelephonyGateway.callback_missed``).
        A command that never went out (refused, unreachable) uses up none of
        the caller's attempts: the call goes back as after a failed connect.
        Returns ``answered``, ``ringing`` (the peer reports later), ``missed``,
        ``gone`` (the call ended while it rang; the caller is let go) or
        ``unknown``.
        """
        connector = self.gateway.connectors[call.peer]
        async with self.desk.pool.acquire() as conn:
            attempt = await callbacks.ringing(conn, call.id, bridge_id, agent.agent_id, number)
        _log.info(
            "call %s (%s): ringing the caller back at %s for agent %s (attempt %s)",
            call.id,
            call.record.call_id,
            number,
            agent.name,
            attempt,
        )
        try:
            ring = await asyncio.wait_for(
                connector.ring_back(call, agent, number, self.callback_ring_seconds),
                self.ring_back_seconds,
            )
        except CallerNotReached as exc:
            return await self._ring_missed(bridge_id, call, exc.result, str(exc))
        except (PeerOutcomeUnknown, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return await self._outcome_unknown(bridge_id, call, agent, error)
        except Exception as exc:  # the command never went out, or the peer refused it
            # The caller's phone did not ring: no attempt of theirs is used up. The call
            # goes back in its place as after a failed connect (the agent not responding).
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            async with self.desk.pool.acquire() as conn:
                await callbacks.not_rung(conn, call.id, bridge_id, error)
            return await self._give_up(bridge_id, call, agent.agent_id, error)
        async with self.desk.pool.acquire() as conn:
            if ring.leg is not None:
                await callbacks.record_leg(conn, bridge_id, ring.leg)
            await conn.execute(Q["bridge_connected"], bridge_id)
        if not ring.answered:
            self._count(call.peer, "ringing")
            return "ringing"
        view = await self.gateway.callback_answered(call.peer, call.peer_call_id, bridge_id)
        if view.note is not None:
            # Ended while it rang (a supervisor): the caller picked up a call that is over.
            _log.warning("call %s: the caller answered its callback late; letting them go",
                         call.id)  # fmt: skip
            with_leg = PeerCall(
                peer=call.peer,
                peer_call_id=call.peer_call_id,
                record=call.record,
                bridge_id=bridge_id,
                leg=ring.leg,
            )
            try:
                await asyncio.wait_for(connector.hangup(with_leg), self.timeout_seconds)
            except Exception as exc:  # best effort: the call is over on our side
                _log.error("hang-up of call %s's callback leg failed: %s", call.id, exc)
            self._count(call.peer, "gone")
            return "gone"
        self._count(call.peer, "answered")
        _log.info("call %s (%s): the caller answered; bridged to agent %s",
                  call.id, call.record.call_id, agent.name)  # fmt: skip
        return "answered"

    async def _ring_missed(self, bridge_id: int, call: PeerCall, result: str, error: str) -> str:
        await self.gateway.callback_missed(call.peer, call.peer_call_id, bridge_id, result, error)
        self._count(call.peer, "missed")
        return "missed"

    async def _outcome_unknown(
        self, bridge_id: int, call: PeerCall, agent: AgentEndpoint, error: str
    ) -> str:
        """The command may have been carried out: neither repeat it nor take the call back.

        Sent again, it would ring the agent a second time (Twilio restarts the
        ``<Dial>``, cutting a conversation that began); put back in the queue,
        the call could be connected to a second agent while the caller talks
        to the first. So the claim counts as connected and the peer's own
        events decide: its agent leg not answering sends the call back, the
        caller hanging up ends it (and Twilio asking the wait URL long after
        shows the command never arrived, see the Twilio adapter).
        """
        _log.error(
            "CONNECT OUTCOME UNKNOWN: call %s (%s) to agent %s: %s. Not repeated and not "
            "requeued; waiting for %s to report the agent leg or the hang-up.",
            call.id,
            call.record.call_id,
            agent.name,
            error,
            call.peer,
        )
        async with self.desk.pool.acquire() as conn:
            await conn.execute(Q["bridge_outcome_unknown"], bridge_id, error[:500])
        self._count(call.peer, "unknown")
        return "unknown"

    async def _caller_gone(self, bridge_id: int, call: PeerCall, error: str) -> str:
        """The peer says the caller has hung up: end the call as their hang-up would.

        Retrying cannot succeed, and putting the call back in the queue would
        offer a caller who is gone to the next agent (and mark this one not
        responding); the peer's own hang-up event, if it comes, changes nothing.
        """
        _log.warning(
            "call %s (%s) is gone at %s; ending it: %s",
            call.id,
            call.record.call_id,
            call.peer,
            error,
        )
        await self.gateway.handle(call.peer, Hangup(call.peer_call_id, cause=f"gone: {error}"))
        await self._mark_failed(bridge_id, error)
        self._count(call.peer, "gone")
        return "gone"

    async def _give_up(self, bridge_id: int, call: PeerCall, agent_id: int, error: str) -> str:
        """Every attempt failed: back to the queue, or (after too many returns) end it."""
        async with self.desk.pool.acquire() as conn:
            failed_before = await conn.fetchval(Q["failed_bridges_of_call"], call.id)
        if failed_before >= self.max_requeues:
            _log.error(
                "CALL NOT CONNECTED: call %s (%s) failed to connect %s times; last error: %s. "
                "Ending it transferred (connect_failed) and hanging up at the peer.",
                call.id,
                call.record.call_id,
                failed_before + 1,
                error,
            )
            result = "ended"
            try:
                await self.desk.end(call.id, EndOutcome.transferred, CONNECT_FAILED)
            except CallCenterError as exc:  # it ended otherwise meanwhile (a hang-up)
                _log.warning("call %s could not be ended transferred: %s", call.id, exc.detail)
            try:
                await asyncio.wait_for(
                    self.gateway.connectors[call.peer].hangup(call), self.timeout_seconds
                )
            except Exception as exc:  # best effort: the call is ended on our side already
                _log.error("hang-up of call %s at %s failed: %s", call.id, call.peer, exc)
        else:
            back = await self.desk.requeue(call.id, agent_id)
            result = "requeued" if back else "gone"
            _log.error(
                "CALL NOT CONNECTED: call %s (%s) could not be connected to agent %s: %s. %s",
                call.id,
                call.record.call_id,
                agent_id,
                error,
                "It is back in its queue with its original key; the agent is not responding."
                if back
                else "It is no longer connected to that agent; nothing to put back.",
            )
        # Marked failed only now, so the catch-up never sees it unclaimed before it is back.
        await self._mark_failed(bridge_id, error)
        self._count(call.peer, result)
        return result

    async def _mark_failed(self, bridge_id: int, error: str) -> None:
        async with self.desk.pool.acquire() as conn:
            await conn.execute(Q["bridge_failed"], bridge_id, error[:500])
