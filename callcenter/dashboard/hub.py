"""The dashboards' stream: ``GET /ws/dashboard``, one reading fanned out to every screen.

A supervisor's or admin's token opens it (``?token=`` or ``Authorization:
Bearer``; an agent's gets 403, none 401; a foreign ``Origin`` 403; the Host
check of every route applies). The socket gets a ``snapshot`` (the whole
board and the last hour's chart), then ``change`` messages holding only the
parts that changed; every message carries ``seq``, 1, 2, 3… per socket, so a
page that sees a gap knows it missed something and asks again (``resync``).

Driven by the event bus, never by polling per dashboard: ``queue:``, ``offered:``,
``agent:``, ``ended:``, ``queues`` and ``customer:`` events mark the board
stale; one task reads it once (``DashboardStats.read``, a few bounded
statements) and fans the result out to every socket, at most once per
``min_interval`` however many events came (coalesced), plus a refresh every
``refresh_seconds`` so waits and the window's figures age on screen. Nothing
is read while no dashboard is open. Each socket has its own bounded outbox
and writer: a dashboard that cannot keep up is closed (4008) and, coming
back, gets a fresh snapshot; it never holds up the others or the router,
which only ever hands the bus an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import WSMsgType, web

from callcenter.dashboard.models import (
    Board,
    ChangeMessage,
    ChartPoint,
    SnapshotMessage,
)
from callcenter.dashboard.stats import DashboardStats
from callcenter.errors import Forbidden, Unauthorized
from callcenter.events import EventBus, Subscription
from callcenter.http.auth import Gate, bearer_token
from callcenter.runtime import TRANSIENT_DB_ERRORS, Supervisor

_log = logging.getLogger(__name__)

#: Events after which the board may have changed.
KINDS = frozenset({"queue", "offered", "agent", "ended", "queues", "customer"})

#: Messages a dashboard may have unsent before it is dropped (it resyncs on reconnect).
OUTBOX = 32

#: How often the open dashboards' tokens are checked again (sign-out, removal, expiry).
TOKEN_CHECK_SECONDS = 5.0


class DashboardSocket:
    """One open dashboard: numbered messages through a bounded outbox."""

    def __init__(self, ws: web.WebSocketResponse, who: str, token: str = "") -> None:
        self.ws = ws
        self.who = who
        #: The token it opened with, checked again now and then: a session signed out,
        #: a person removed, a token revoked or expired closes the dashboard (4401).
        self.token = token
        self._seq = count(1)
        self._outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX)
        self.dropped = False
        self.closing: asyncio.Task[bool] | None = None
        self.writer = asyncio.create_task(self._write(), name=f"dashboard-{who}-writer")

    def send_json(self, body: str) -> None:
        """Queue a message serialised once for every socket; ``seq`` goes in front."""
        if self.dropped:
            return
        text = f'{{"seq":{next(self._seq)},{body[1:]}'
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            _log.warning("dashboard of %s cannot keep up; closing it", self.who)
            self.dropped = True
            self.writer.cancel()
            self.closing = asyncio.create_task(
                self.ws.close(code=4008, message=b"too slow; reconnect")
            )

    async def _write(self) -> None:
        while True:
            text = await self._outbox.get()
            if self.ws.closed:
                return
            await self.ws.send_str(text)


class DashboardHub:
    def __init__(
        self,
        stats: DashboardStats,
        *,
        pool: asyncpg.Pool[Any],
        bus: EventBus,
        gate: Gate,
        allowed_origins: Sequence[str] = (),
        min_interval: float = 0.25,
        refresh_seconds: float = 5.0,
        heartbeat_seconds: float = 20.0,
    ) -> None:
        self.stats = stats
        self.pool = pool
        self.bus = bus
        self.gate = gate
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.min_interval = min_interval
        self.refresh_seconds = refresh_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.sockets: set[DashboardSocket] = set()
        self.board: Board | None = None
        self._parts: dict[str, str] = {}
        #: The last hour, derived from the buckets (``chart.py``), and its newest bucket.
        self.chart: list[ChartPoint] = []
        self._chart_last: int | None = None
        self._snapshot_cache: tuple[Board, list[ChartPoint], str] | None = None
        self._stale = asyncio.Event()
        self._read_lock = asyncio.Lock()
        self.supervisor = Supervisor("dashboard hub", duty="dashboards are not updated")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DashboardHub]:
        sub = self.bus.subscribe(10_000, kinds=KINDS)
        self.supervisor.start("dashboard-events", functools.partial(self._listen, sub))
        self.supervisor.start("dashboard-fanout", self._fanout)
        try:
            yield self
        finally:
            self.bus.unsubscribe(sub)
            await self.supervisor.stop()
            for s in list(self.sockets):
                s.writer.cancel()
                await s.ws.close(code=1001, message=b"server shutting down")

    @property
    def failure(self) -> str | None:
        return self.supervisor.failure

    # -- reading -----------------------------------------------------------------

    async def read(self) -> Board:
        """A fresh board (one reading at a time: the day's buckets are shared)."""
        async with self._read_lock, self.pool.acquire() as conn:
            board = await self.stats.read(conn)
            return board

    async def current(self) -> Board:
        """The latest board if it is younger than ``min_interval``, else a fresh one
        (``GET /api/stats`` shares the stream's readings instead of adding its own)."""
        board = self.board
        if board is not None and datetime.now(UTC) - board.stats.at < timedelta(
            seconds=self.min_interval
        ):
            return board
        return await self.read()

    async def _listen(self, sub: Subscription) -> None:
        self._stale.set()  # a restarted listener may have missed an event
        while True:
            await sub.get()  # any of KINDS, or resync: the board is read again
            self._stale.set()

    async def _fanout(self) -> None:
        loop = asyncio.get_running_loop()
        last_check = loop.time()
        while True:
            if loop.time() - last_check >= TOKEN_CHECK_SECONDS:
                last_check = loop.time()
                try:
                    await self._close_revoked()
                except TRANSIENT_DB_ERRORS as exc:
                    _log.warning("dashboard tokens not checked (%r); next time", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stale.wait(), self.refresh_seconds)
            self._stale.clear()
            if not self.sockets:
                self.board = None  # nobody looks: nothing is read, and the next one reads anew
                self._parts = {}
                continue
            try:
                board = await self.read()
            except TRANSIENT_DB_ERRORS as exc:
                _log.warning("dashboard board not read (%r); trying again", exc)
                self._stale.set()
                await asyncio.sleep(1.0)
                continue
            self._publish(board, self._chart(board))
            await asyncio.sleep(self.min_interval)  # coalesce: the next batch waits

    async def _close_revoked(self) -> None:
        """Close the dashboards whose token no longer stands for a supervisor or admin."""
        verdicts: dict[str, bool] = {}
        for s in list(self.sockets):
            if s.token not in verdicts:
                found = await self.gate.still(s.token)
                verdicts[s.token] = found is not None and found.may("supervisor")
            if not verdicts[s.token] and s.closing is None:
                _log.info("dashboard of %s: its token no longer opens it; closing", s.who)
                self.sockets.discard(s)
                s.dropped = True
                s.closing = asyncio.create_task(
                    s.ws.close(code=4401, message=b"signed out or revoked; sign in again")
                )

    def _chart(self, board: Board) -> ChartPoint | None:
        """Derive the chart again when a 10 s bucket has ended since the last time; the
        newest point then goes out with the change (pages replace a point of the same
        ``at``). Derived from the database's buckets, so every instance draws the same
        hour, and a restart draws it in full at once."""
        last = self.stats.buckets.index(board.stats.at.timestamp()) - 1
        if last == self._chart_last and self.chart:
            return None
        self._chart_last = last
        self.chart = self.stats.chart(board)
        return self.chart[-1] if self.chart else None

    def _publish(self, board: Board, point: ChartPoint | None) -> None:
        """Send each socket what changed since the board it last got (one serialisation)."""
        parts = {
            "stats": board.stats.model_dump_json(exclude={"at"}),
            "waiting": json.dumps(
                [w.model_dump(mode="json", exclude={"waited_seconds"}) for w in board.waiting]
            ),
            "agents": json.dumps(
                [a.model_dump(mode="json", exclude={"seconds_in_state"}) for a in board.agents]
            ),
        }
        changed = {k for k, v in parts.items() if self._parts.get(k) != v}
        self._parts = parts
        self.board = board
        if not changed and point is None:
            return
        message = ChangeMessage(
            at=board.stats.at,
            stats=board.stats if "stats" in changed else None,
            waiting=board.waiting if "waiting" in changed else None,
            agents=board.agents if "agents" in changed else None,
            point=point,
        ).model_dump_json(exclude_none=True)
        for s in list(self.sockets):
            s.send_json(message)

    # -- the endpoint --------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, request):
            raise Forbidden(f"origin {origin!r} may not open a dashboard", field="Origin")
        token = request.query.get("token") or bearer_token(request)
        if not token:
            raise Unauthorized("a supervisor's token is needed (?token= or Authorization: Bearer)")
        who = await self.gate.authenticate(request, token)
        if not who.may("supervisor"):
            raise Forbidden(f"the dashboard needs the supervisor role; {who.who} does not have it")
        ws = web.WebSocketResponse(
            heartbeat=self.heartbeat_seconds, compress=False, max_msg_size=4096
        )
        await ws.prepare(request)
        sock = DashboardSocket(ws, who.who, token)
        try:
            if not await self._snapshot(sock):
                return ws
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(sock, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    sock.send_json(_error(400, "send JSON text, not binary"))
        finally:
            self.sockets.discard(sock)
            sock.writer.cancel()
            if sock.closing is not None:
                # Closed by another task (revoked, too slow): finish the handshake first.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(sock.closing), timeout=5)
        return ws

    async def _snapshot(self, sock: DashboardSocket) -> bool:
        """Send ``sock`` the whole board and, from then on, every change.

        The snapshot is the board last fanned out, so the changes that follow
        are relative to what the socket holds; it is sent and the socket joins
        the fan-out with no ``await`` in between, so no change can slip in
        before it or be missed after it. With no board yet, one is read: then
        the next fan-out sends every part again, to everyone.
        """
        fresh: Board | None = None
        if self.board is None:
            try:
                fresh = await self.read()
            except TRANSIENT_DB_ERRORS as exc:
                _log.warning("dashboard snapshot not read (%r); closing", exc)
                await sock.ws.close(code=1011, message=b"the database did not answer; reconnect")
                return False
        board = self.board or fresh
        assert board is not None
        if board is fresh:
            self._parts = {}
            self._stale.set()
            self._chart(board)
        self.sockets.add(sock)
        sock.send_json(self._snapshot_text(board))
        return True

    def _snapshot_text(self, board: Board) -> str:
        """The snapshot serialised once for every dashboard that (re)connects to the same
        board and chart: with the hour's 360 points it is tens of kilobytes, and fifty
        dashboards come back together after a restart."""
        cached = self._snapshot_cache
        if cached is not None and cached[0] is board and cached[1] is self.chart:
            return cached[2]
        text = SnapshotMessage(board=board, chart=self.chart).model_dump_json()
        # The objects themselves are kept (not their ids, which a new object may reuse).
        self._snapshot_cache = (board, self.chart, text)
        return text

    async def _on_text(self, sock: DashboardSocket, text: str) -> None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            sock.send_json(_error(400, f"not JSON: {exc}"))
            return
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "ping":
            sock.send_json('{"type":"pong"}')
        elif kind == "resync":
            await self._snapshot(sock)
        else:
            sock.send_json(_error(422, "type must be ping or resync", field="type"))

    def _origin_allowed(self, origin: str, request: web.Request) -> bool:
        if origin.rstrip("/") in self.allowed_origins:
            return True
        try:
            return urlsplit(origin).netloc == request.host
        except ValueError:  # not a URL at all (``http://[``): not an origin we know
            return False


def _error(status: int, detail: str, field: str | None = None) -> str:
    return json.dumps({"type": "error", "status": status, "detail": detail, "field": field})
