"""The releases a releaser carried out, written to their rows a window at a time.

Once the peer took a hang-up (or said the call was gone), the release's row
says so (``released`` or ``gone``). That write was one round trip for every
call an agent or the queue ended (issue 21). Nothing waits for it: the
caller is let go of already, and the row only keeps the claim's lease from
being taken over. So the marks of one short window go in one statement: at
load a call's share of it is a small fraction of a round trip.

What a window risks is bounded and harmless: if the instance dies before
writing it, those rows stay ``claimed`` until their leases run out, and the
catch-up of another instance hangs those callers up again. A peer that no
longer has a call says so, which counts as done (see ``releaser``). A
database that is away keeps the marks for a later window (the writer backs
off); a mark the database refuses for what it holds is written alone, so it
never holds up the others, and dropped with an error if it still fails; the
releaser's stop writes what is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import asyncpg

from callcenter.db.pool import Conn
from callcenter.http.text import storable
from callcenter.runtime import TRANSIENT_DB_ERRORS
from callcenter.telephony_adapters.sql import Q

_log = logging.getLogger(__name__)

#: How long a mark waits for others to share its statement. Far below any lease
#: (tens of seconds), and nothing reads the mark in between.
WINDOW_SECONDS = 0.2

#: Marks written in one statement at most; more wait for the next.
MOST = 1000

#: Marks kept while the database is away; past it the oldest are dropped (their
#: leases run out and another instance lets those callers go again).
KEPT = 100_000

#: The longest pause between two tries while the database is away.
BACKOFF_SECONDS = 5.0


@dataclass(frozen=True)
class ReleaseMark:
    """A release carried out: ``state`` is ``released`` (the peer took the hang-up)
    or ``gone`` (the peer had no such call: ``peer_said``); ``why`` the hang-up was
    due; ``at``, this process's monotonic clock then (the row gets the database's
    clock less the mark's age, as every other time of the call)."""

    call_id: int
    state: str
    peer_said: str | None
    why: str
    at: float


class ReleaseMarks:
    """The marks of ``instance``'s claims, written by ``run`` a window at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        instance: str,
        *,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self.pool = pool
        self.instance = instance
        self.window_seconds = window_seconds
        self._pending: deque[ReleaseMark] = deque()
        self._due = asyncio.Event()
        #: Statements and marks written so far, and marks dropped (for tests and logs).
        self.statements = 0
        self.written = 0
        self.dropped = 0

    def add(self, call_id: int, state: str, peer_said: str | None, why: str) -> None:
        """A release carried out now; written with the others of its window."""
        if len(self._pending) >= KEPT:
            lost = self._pending.popleft()
            self.dropped += 1
            _log.error(
                "release marks kept past %s: call %s's is dropped; its claim's lease "
                "runs out and another instance releases it again",
                KEPT,
                lost.call_id,
            )
        self._pending.append(
            ReleaseMark(
                call_id=call_id,
                state=state,
                peer_said=None if peer_said is None else storable(peer_said[:500]),
                why=storable(why),
                at=time.monotonic(),
            )
        )
        self._due.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Write each window's marks, for as long as the releaser runs."""
        pause = self.window_seconds
        while True:
            await self._due.wait()
            await asyncio.sleep(pause)
            try:
                await self.write()
            except TRANSIENT_DB_ERRORS as exc:
                pause = min(max(pause * 2, 0.5), BACKOFF_SECONDS)
                _log.warning(
                    "%s release marks not written (%s); trying again in %.1fs",
                    len(self._pending),
                    exc,
                    pause,
                )
            else:
                pause = self.window_seconds

    async def write(self) -> int:
        """Write the marks pending now (up to ``MOST``) in one statement; how many.

        When the database refuses the batch for a value it holds, each mark is
        written alone and one that still fails is dropped (logged). On any other
        failure the marks stay pending, in their order, and the error is raised.
        """
        self._due.clear()
        batch = [self._pending.popleft() for _ in range(min(MOST, len(self._pending)))]
        if self._pending:
            self._due.set()
        if not batch:
            return 0
        try:
            async with self.pool.acquire() as conn:
                try:
                    await self._update(conn, batch)
                except asyncpg.DataError:
                    return await self._one_by_one(conn, batch)
        except BaseException:
            self._pending.extendleft(reversed(batch))
            self._due.set()
            raise
        return len(batch)

    async def _update(self, conn: Conn, batch: list[ReleaseMark]) -> None:
        now = time.monotonic()
        await conn.execute(
            Q["release_done"],
            [m.call_id for m in batch],
            self.instance,
            [m.state for m in batch],
            [m.peer_said for m in batch],
            [m.why for m in batch],
            [max(0.0, now - m.at) for m in batch],
        )
        self.statements += 1
        self.written += len(batch)

    async def _one_by_one(self, conn: Conn, batch: list[ReleaseMark]) -> int:
        written = 0
        for mark in batch:
            try:
                await self._update(conn, [mark])
            except asyncpg.DataError as exc:
                self.dropped += 1
                _log.error(
                    "the release mark of call %s cannot be stored (%s): dropped; the "
                    "caller was let go of, and the lease's end releases it again",
                    mark.call_id,
                    exc,
                )
            else:
                written += 1
        return written

    async def write_all(self) -> None:
        """Write every mark pending (the releaser stops): what cannot be written is
        logged and left to the leases; the stop goes on whatever happens."""
        try:
            while self._pending:
                await self.write()
        except Exception as exc:  # the stop must not fail for a mark
            _log.warning(
                "%s release marks not written at stop (%s): their leases run out and "
                "another instance lets those callers go again",
                len(self._pending),
                exc,
            )
