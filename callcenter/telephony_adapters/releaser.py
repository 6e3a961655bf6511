"""Let go of the caller at the telephony peer when a call ends on our side, exactly once.

An agent ends the call from the panel, a supervisor ends it, or the queue
gives up at the maximum wait: our record is closed, but the peer still holds
the caller on hold music or in the bridge with the agent. The call's one row
in ``call_releases`` says who lets the caller go, and it is written by the end
itself where it can be (``finish_call``, migration 0021): while a releaser
runs, it registers with the ``CallDesk`` (``Releases``), and an end of a call
of one of its peers records the release in the same statement, as
``not_needed`` when the end's reason alone says so
(``release_policy.by_reason``: the peer reported the hang-up), else claimed by
this releaser; once it is committed the releaser is handed what was recorded
(``take``: a claim to carry out, or a not-needed to count). Any other end
(a call of a peer this instance does not command, an end inside a larger
transaction) publishes ``release:<call id>`` after commit; the event
reaches the releaser of every instance, and each tries to claim the row, the
claim answering with the call (one round trip). The holder of a claim asks
``release_policy.decide`` whether the peer needs a hang-up and, if so, sends
the peer's ``Connector.hangup`` (Twilio: the REST update
``Status=completed``; generic: the signed ``hangup`` command to the callback
URL). A call that needs nothing (a transfer, a callback whose caller was on
no line) gets its row marked ``not_needed``, so no pass reads it again.

A failed hang-up is retried with exponential backoff, then given up loudly
(the record says ``failed`` and why); it never reaches the request that
ended the call, which returned long before. Repeating a hang-up is harmless
(a peer that no longer has the call says so, and that counts as done), so
even a hang-up whose answer was lost is tried again.

A claim carries a lease that every attempt renews; when its instance dies,
the catch-up pass of another takes it over. A release carried out is
written to its row with the others of a short window (``release_marks``), one
statement for all of them: nothing waits for that mark, and one lost with
its instance only means a second, harmless hang-up after the lease. The same slow pass (and every
``resync``) releases recently ended calls that have no record, so a lost
event delays a release but never drops it.

Peers without a connector are left alone: the generic PBX without a callback
URL learns the end from the answer to its next poll (``hangup``). Asterisk is
left out on purpose: its adapter lets go of the channels it holds itself
(``AriAdapter._releaser``), and a second hang-up path would only double up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta
from typing import Self

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from callcenter.errors import PeerCallGone
from callcenter.queue.calls import CallDesk, call_of
from callcenter.queue.models import CallState
from callcenter.telephony_adapters.base import ARI, PeerCall
from callcenter.telephony_adapters.call_worker import CallWorker
from callcenter.telephony_adapters.gateway import TelephonyGateway
from callcenter.telephony_adapters.release_marks import ReleaseMarks
from callcenter.telephony_adapters.release_policy import by_reason, decide
from callcenter.telephony_adapters.sql import Q

_log = logging.getLogger(__name__)


#: Peers whose adapter releases its callers itself.
SELF_RELEASING = frozenset({ARI})

#: How far back the catch-up pass looks for ended calls without a release record.
#: Lost events are rare (a listener reconnect sends ``resync`` at once); this
#: covers an instance that was down or busy for a while, and keeps the pass small.
CATCH_UP_WINDOW_SECONDS = 900.0

#: Releases the catch-up pass runs side by side (a slow peer must not make it crawl).
CATCH_UP_PARALLEL = 8

#: Calls one catch-up pass takes at most; the next pass goes on from there.
CATCH_UP_BATCH = 500

#: How far before its last mark a pass looks again. ``ended_at`` is stamped
#: when the ending transaction starts, and that transaction may wait for the
#: call's row lock up to the pool's 30-second statement timeout before it
#: commits; a call ended so late must still be found by a pass after it.
CATCH_UP_OVERLAP = timedelta(seconds=40)


def releases_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "callcenter_telephony_releases",
        "Calls ended on our side and let go of at their telephony peer, by peer and result "
        "(released, gone, retried, failed, not_needed)",
        ["peer", "result"],
        registry=registry,
    )


class Releaser(CallWorker):
    event_kind = "release"
    name = "releaser"
    duty = "ended calls are not hung up"

    def __init__(
        self,
        desk: CallDesk,
        gateway: TelephonyGateway,
        *,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 5.0,
        catch_up_seconds: float = 5.0,
        results: Counter | None = None,
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
        #: The releases carried out, written a window at a time (``release_marks``).
        self.marks = ReleaseMarks(desk.pool, self.instance)
        #: Ended calls before this instant were all looked at by an earlier pass,
        #: for these peers (a peer registered later resets it).
        self._checked: tuple[datetime, tuple[str, ...]] | None = None

    async def handle(self, call_id: int) -> str | None:
        return await self.release(call_id)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        """Follow the events and catch up, and take the releases the ends of this
        instance claim for it (registered with the desk), for the life of the block."""
        try:
            async with super().running():
                self.supervisor.start("releaser-marks", self.marks.run)
                self.desk.releases = self
                try:
                    yield self
                finally:
                    if self.desk.releases is self:
                        self.desk.releases = None
        finally:
            await self.marks.write_all()  # the last window's, once nothing adds to it

    # -- what the end asks (``callcenter.queue.calls.Releases``) ----------------

    def peers(self) -> list[str]:
        """The peers whose callers this releaser lets go of: those with a connector,
        but for the ones whose adapter releases its callers itself."""
        return sorted(p for p in self.gateway.connectors if p not in SELF_RELEASING)

    def settled(self, reason: str | None) -> str | None:
        decision = by_reason(reason)
        return None if decision is None or decision.needed else decision.why

    def take(self, recorded: asyncpg.Record) -> None:
        if recorded["release"] == "not_needed":
            self._count(recorded["peer"], "not_needed")
            return
        self.supervisor.spawn(self._carry_out(recorded), f"call {recorded['id']}")

    # -- the work --------------------------------------------------------------

    async def catch_up(self) -> int:
        """Take over dead claims; release recently ended calls without a record.

        Returns how many calls this pass looked at.
        """
        peers = self.peers()
        if not peers:
            return 0
        since = None
        if self._checked is not None and self._checked[1] == tuple(peers):
            since = self._checked[0] - CATCH_UP_OVERLAP
        async with self.desk.pool.acquire() as conn:
            clock: datetime = await conn.fetchval(Q["clock"])
            expired = await conn.fetch(Q["expired_releases"])
            missed = await conn.fetch(
                Q["unreleased_calls"], peers, CATCH_UP_WINDOW_SECONDS, since, CATCH_UP_BATCH
            )
        for row in expired:
            _log.error(
                "release claim of call %s by %s expired after %s attempts: taking it over",
                row["call_id"],
                row["claimed_by"],
                row["attempts"],
            )
        ids = [r["call_id"] for r in expired] + [r["id"] for r in missed]
        await self._release_all(ids)
        # Only a pass that went through moves the mark; a full batch moves it to
        # its last call, so the rest comes next time.
        mark = missed[-1]["ended_at"] if len(missed) == CATCH_UP_BATCH else clock
        self._checked = (mark, tuple(peers))
        return len(ids)

    async def _release_all(self, call_ids: Iterable[int]) -> None:
        gate = asyncio.Semaphore(CATCH_UP_PARALLEL)

        async def one(call_id: int) -> None:
            async with gate:
                await self.release(call_id)

        await asyncio.gather(*(one(call_id) for call_id in call_ids))

    async def release(self, call_id: int) -> str | None:
        """Claim the release of ``call_id`` and, if the peer needs it, hang the caller up.

        Returns what happened (``released``, ``gone``, ``failed``,
        ``not_needed``), or None when there was nothing for this instance to
        do: the call has not ended, is not of a peer this instance commands,
        or its release is claimed or done already.
        """
        peers = self.peers()
        if not peers:
            return None
        async with self.desk.pool.acquire() as conn:
            # Claim first, with the call in the answer: one round trip, and the policy
            # decides on what it returns.
            row = await conn.fetchrow(
                Q["claim_release"], call_id, peers, self.instance, self.lease_seconds
            )
        if row is None:
            return None
        return await self._carry_out(row)

    async def _carry_out(self, row: asyncpg.Record) -> str | None:
        """The release this instance claimed (``claim_release``'s answer, or the end's
        own, ``finish_call``'s, which has the same columns): decided, then carried out.

        A call that needs nothing is marked so; one that needs a hang-up gets it.
        """
        call_id: int = row["id"]
        peer: str = row["peer"]
        peer_call_id: str = row["peer_call_id"]
        callback = row["callback_number"] is not None
        decision = decide(
            CallState(row["state"]),
            row["end_reason"],
            off_the_line=callback and row["callback_answered_at"] is None,
        )
        if not decision.needed:
            async with self.desk.pool.acquire() as conn:
                await conn.execute(Q["release_not_needed"], call_id, self.instance, decision.why)
            _log.debug(
                "call %s (%s) needs no hang-up: %s", call_id, row["external_id"], decision.why
            )
            self._count(peer, "not_needed")
            return "not_needed"
        connector = self.gateway.connectors.get(peer)
        if connector is None:
            # Unregistered meanwhile: the claim's lease runs out and another instance takes it.
            return None
        # An ended call: what ``CallDesk.get`` answers for it is ``call_of`` its row.
        call = PeerCall(
            peer=peer,
            peer_call_id=peer_call_id,
            record=call_of(row),
            leg=row["leg"] if callback else None,
        )
        error = "not attempted"
        for attempt in range(self.attempts):
            try:
                await asyncio.wait_for(connector.hangup(call), self.timeout_seconds)
            except PeerCallGone as exc:
                # The caller is gone at the peer already: that is all we wanted.
                _log.info(
                    "call %s (%s) was gone at %s already: %s",
                    call_id,
                    call.record.call_id,
                    peer,
                    exc,
                )
                self.marks.add(call_id, "gone", str(exc), decision.why)
                self._count(peer, "gone")
                return "gone"
            except Exception as exc:  # any failure of a peer: retried, never raised
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                _log.warning(
                    "hang-up of call %s (%s) at %s failed, attempt %s of %s: %s",
                    call_id,
                    call.record.call_id,
                    peer,
                    attempt + 1,
                    self.attempts,
                    error,
                )
                self._count(peer, "retried")
                async with self.desk.pool.acquire() as conn:
                    await conn.execute(
                        Q["release_attempt_failed"],
                        call_id,
                        self.instance,
                        error[:500],
                        self.lease_seconds,
                        decision.why,
                    )
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(self.backoff_seconds * 2**attempt)
                continue
            self.marks.add(call_id, "released", None, decision.why)
            self._count(peer, "released")
            _log.info(
                "call %s (%s) %s: hung up at %s", call_id, call.record.call_id, decision.why, peer
            )
            return "released"
        _log.error(
            "CALLER NOT RELEASED: call %s (%s) %s, but %s did not take the hang-up in %s "
            "attempts; last error: %s. The caller may still be on the line: end the call at "
            "the peer by hand.",
            call_id,
            call.record.call_id,
            decision.why,
            peer,
            self.attempts,
            error,
        )
        async with self.desk.pool.acquire() as conn:
            await conn.execute(Q["release_failed"], call_id, self.instance, decision.why)
        self._count(peer, "failed")
        return "failed"
