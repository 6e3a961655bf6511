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
database that fails the write keeps the marks for the next window; the
releaser's stop writes what is left.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from callcenter.runtime import TRANSIENT_DB_ERRORS
from callcenter.telephony_adapters.sql import Q

_log = logging.getLogger(__name__)

#: How long a mark waits for others to share its statement. Far below any lease
#: (tens of seconds), and nothing reads the mark in between.
WINDOW_SECONDS = 0.2

#: Marks written in one statement at most; more wait for the next.
MOST = 1000

#: Marks kept while the database refuses them; past it the oldest are dropped
#: (their leases run out and another instance lets those callers go again).
KEPT = 100_000


@dataclass(frozen=True)
class ReleaseMark:
    """A release carried out: ``state`` is ``released`` (the peer took the hang-up)
    or ``gone`` (the peer had no such call: ``peer_said``); ``why`` the hang-up was due."""

    call_id: int
    state: str
    peer_said: str | None
    why: str
    at: datetime


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
        self._pending: list[ReleaseMark] = []
        self._due = asyncio.Event()
        #: Statements and marks written so far (for the metrics a test reads).
        self.statements = 0
        self.written = 0

    def add(self, call_id: int, state: str, peer_said: str | None, why: str) -> None:
        """A release carried out now; written with the others of its window."""
        if len(self._pending) >= KEPT:
            dropped = self._pending.pop(0)
            _log.error(
                "release marks kept past %s: call %s's is dropped; its claim's lease "
                "runs out and another instance releases it again",
                KEPT,
                dropped.call_id,
            )
        self._pending.append(
            ReleaseMark(
                call_id=call_id,
                state=state,
                peer_said=None if peer_said is None else peer_said[:500],
                why=why,
                at=datetime.now(UTC),
            )
        )
        self._due.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Write each window's marks, for as long as the releaser runs."""
        while True:
            await self._due.wait()
            await asyncio.sleep(self.window_seconds)
            try:
                await self.write()
            except TRANSIENT_DB_ERRORS as exc:
                _log.warning(
                    "%s release marks not written (%s); trying again", len(self._pending), exc
                )

    async def write(self) -> int:
        """Write the marks pending now (up to ``MOST``) in one statement; how many.

        On a failure they stay pending, in their order, and the error is raised.
        """
        self._due.clear()
        batch, self._pending = self._pending[:MOST], self._pending[MOST:]
        if self._pending:
            self._due.set()
        if not batch:
            return 0
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    Q["release_done"],
                    [m.call_id for m in batch],
                    self.instance,
                    [m.state for m in batch],
                    [m.peer_said for m in batch],
                    [m.why for m in batch],
                    [m.at for m in batch],
                )
        except BaseException:
            self._pending[:0] = batch
            self._due.set()
            raise
        self.statements += 1
        self.written += len(batch)
        return len(batch)

    async def write_all(self) -> None:
        """Write every mark pending (the releaser stops): what cannot be written is
        logged and left to the leases."""
        try:
            while self._pending:
                await self.write()
        except TRANSIENT_DB_ERRORS as exc:
            _log.warning(
                "%s release marks not written at stop (%s): their leases run out and "
                "another instance lets those callers go again",
                len(self._pending),
                exc,
            )
