"""The agent websocket hub: ``GET /ws/agent``.

One socket per agent session, authenticated by the agent's token before the
upgrade. The hub turns ``agent:<id>`` events into pushes for the agents whose
sockets it holds: it re-reads the agent's state (the event carries only the
id) and sends ``state``, plus ``offer`` the first time a new offer shows up,
plus the assist ``panel`` the first time a socket sees the agent holding a
call (so after accept, and again after a reconnect). The panel, the history
pages and the wrap-up go only to the agent whose call it is.

Each connection has its own bounded outbox and writer task, so one slow panel
never holds up the others; a panel that cannot keep up is disconnected and,
reconnecting, gets its full state again. While a socket is open the hub
refreshes the agent's ``last_seen_at``; when it closes nothing changes at
once: the router takes the agent offline only after the grace period, so a
panel that reconnects in time finds its state (and its offer) as it left it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from itertools import count
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import WSMsgType, web
from prometheus_client import Histogram
from pydantic import BaseModel, ValidationError

from callcenter.agent_assist.panel import PanelBuilder
from callcenter.agent_assist.protocol import (
    CLIENT_MESSAGE,
    Accept,
    AckMessage,
    Available,
    End,
    ErrorMessage,
    HistoryRequest,
    Offer,
    OfferMessage,
    Offline,
    Ping,
    PongMessage,
    Priority,
    Reject,
    StateMessage,
    WrapUp,
)
from callcenter.agent_assist.wrap_up import WrapUpDesk, own_call
from callcenter.db.pool import Conn
from callcenter.errors import CallCenterError, Forbidden, Unauthorized
from callcenter.events import Event, EventBus, Subscription
from callcenter.queue import agents
from callcenter.queue.calls import CallDesk, caller_summary
from callcenter.queue.models import Agent, AgentState, EndOutcome
from callcenter.queue.policy import explain_credit
from callcenter.queue.router import Router
from callcenter.queue.sql import Q

_log = logging.getLogger(__name__)

OUTBOX = 256


class AgentSocket:
    """One open panel: numbered messages through a bounded outbox."""

    def __init__(self, agent_id: int, ws: web.WebSocketResponse) -> None:
        self.agent_id = agent_id
        self.ws = ws
        self._seq = count(1)
        self._outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX)
        self.offers_sent: set[int] = set()
        self.panels_sent: set[int] = set()
        self.closing: asyncio.Task[bool] | None = None
        self.writer = asyncio.create_task(self._write(), name=f"agent-{agent_id}-writer")

    def send(self, message: BaseModel) -> None:
        self.send_json(message.model_dump_json())

    def send_json(self, body: str) -> None:
        """Send a message serialised as a JSON object, numbered for this socket.

        The ``seq`` goes in front of the other fields, so a message for several
        sockets (an agent's panel open twice) is serialised once for all.
        """
        assert body.startswith('{"'), body
        text = f'{{"seq":{next(self._seq)},{body[1:]}'
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            _log.warning("agent %s panel cannot keep up; disconnecting it", self.agent_id)
            self.writer.cancel()
            self.closing = asyncio.create_task(self.ws.close(code=4008, message=b"too slow"))

    async def _write(self) -> None:
        while True:
            text = await self._outbox.get()
            if self.ws.closed:
                return
            await self.ws.send_str(text)


class AgentHub:
    def __init__(
        self,
        router: Router,
        panels: PanelBuilder,
        wrap_ups: WrapUpDesk,
        *,
        heartbeat_seconds: float = 10.0,
        grace_seconds: float = 30.0,
        allowed_origins: Sequence[str] = (),
        panel_seconds: Histogram | None = None,
    ) -> None:
        self.router = router
        self.panels = panels
        self.wrap_ups = wrap_ups
        self.desk: CallDesk = router.desk
        self.pool: asyncpg.Pool[Any] = router.pool
        self.bus: EventBus = router.bus
        self.heartbeat_seconds = heartbeat_seconds
        self.panel_seconds = panel_seconds
        # Refresh presence well within the grace period, so a connected agent never lapses.
        self.presence_seconds = max(0.05, min(heartbeat_seconds / 2, grace_seconds / 3))
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self._sockets: dict[int, set[AgentSocket]] = {}
        self._pushing: set[int] = set()
        self._stale: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AgentHub]:
        sub = self.bus.subscribe(10_000, kinds={"agent"})
        tasks = [
            asyncio.create_task(self._listen(sub), name="agent-hub-events"),
            asyncio.create_task(self._presence(), name="agent-hub-presence"),
        ]
        try:
            yield self
        finally:
            self.bus.unsubscribe(sub)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, *self._tasks, return_exceptions=True)
            for sockets in list(self._sockets.values()):
                for s in list(sockets):
                    await s.ws.close(code=1001, message=b"server shutting down")

    # -- the endpoint ------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, request):
            raise Forbidden(f"origin {origin!r} may not open an agent socket")
        token = request.query.get("token") or _bearer(request.headers.get("Authorization", ""))
        if not token:
            raise Unauthorized("an agent token is needed (?token= or Authorization: Bearer)")
        async with self.pool.acquire() as conn:
            agent_id = await agents.agent_for_token(conn, token)
            if agent_id is None:
                raise Unauthorized("unknown agent token")
            await agents.mark_seen(conn, [agent_id])
        # No permessage-deflate: the messages are a few kB of JSON to a desk on
        # the same network, and deflating each one cost the service more CPU per
        # routed call than anything else it did with the socket.
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_seconds, compress=False)
        await ws.prepare(request)
        sock = AgentSocket(agent_id, ws)
        self._sockets.setdefault(agent_id, set()).add(sock)
        try:
            await self._push([sock])
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(sock, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    sock.send(ErrorMessage(status=400, detail="send JSON text, not binary"))
        finally:
            self._sockets[agent_id].discard(sock)
            if not self._sockets[agent_id]:
                del self._sockets[agent_id]
            sock.writer.cancel()
        return ws

    def _origin_allowed(self, origin: str, request: web.Request) -> bool:
        if origin.rstrip("/") in self.allowed_origins:
            return True
        return urlsplit(origin).netloc == request.host

    async def _on_text(self, sock: AgentSocket, text: str) -> None:
        ref: Any = None
        try:
            data = json.loads(text)
            if isinstance(data, dict):
                ref = data.get("ref")
            message = CLIENT_MESSAGE.validate_python(data)
        except json.JSONDecodeError as exc:
            sock.send(ErrorMessage(status=400, detail=f"not JSON: {exc}"))
            return
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            sock.send(
                ErrorMessage(
                    ref=ref if isinstance(ref, str | int) else None,
                    status=422,
                    detail=f"{where}: {first['msg']}" if where else first["msg"],
                    field=where or None,
                )
            )
            return
        agent_id = sock.agent_id
        try:
            call_id: int | None = None
            if isinstance(message, Ping):
                sock.send(PongMessage(ref=message.ref))
                return
            if isinstance(message, Available):
                await self.router.available(agent_id)
            elif isinstance(message, Offline):
                await self.router.offline(agent_id)
            elif isinstance(message, Accept):
                call_id = await self.router.accept(agent_id, message.offer_id)
            elif isinstance(message, Reject):
                await self.router.reject(agent_id, message.offer_id)
            elif isinstance(message, End):
                call_id = message.call_id
                await self.router.end_call(agent_id, message.call_id, EndOutcome(message.outcome))
            elif isinstance(message, HistoryRequest):
                async with self.pool.acquire() as conn:
                    await own_call(conn, agent_id, message.call_id)
                    page = await self.panels.history(conn, message.call_id, message.before)
                sock.send(page.model_copy(update={"ref": message.ref}))
                return
            elif isinstance(message, WrapUp):
                call_id = message.call_id
                await self.wrap_ups.wrap_up(agent_id, message, datetime.now(UTC))
            sock.send(AckMessage(ref=message.ref, to=message.type, call_id=call_id))
        except CallCenterError as exc:
            sock.send(
                ErrorMessage(ref=message.ref, status=exc.status, detail=exc.detail, field=exc.field)
            )

    # -- pushing -------------------------------------------------------------------

    async def _listen(self, sub: Subscription) -> None:
        while True:
            event: Event = await sub.get()
            if event.kind == "resync":
                for agent_id in list(self._sockets):
                    self._schedule(agent_id)
            elif event.kind == "agent" and event.key.isdigit():
                agent_id = int(event.key)
                if agent_id in self._sockets:
                    self._schedule(agent_id)

    def _schedule(self, agent_id: int) -> None:
        """Push an agent's state soon; pushes for different agents run side by side,
        and events that arrive while a push for the same agent runs fold into one more."""
        if agent_id in self._pushing:
            self._stale.add(agent_id)
            return
        self._pushing.add(agent_id)
        task = asyncio.create_task(self._push_agent(agent_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push_agent(self, agent_id: int) -> None:
        try:
            while True:
                self._stale.discard(agent_id)
                sockets = list(self._sockets.get(agent_id, ()))
                if not sockets:
                    return
                try:
                    await self._push(sockets)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    _log.warning("could not push agent %s state: %s", agent_id, exc)
                if agent_id not in self._stale:
                    return
        finally:
            self._pushing.discard(agent_id)

    async def _push(self, sockets: list[AgentSocket]) -> None:
        """Send the current state to ``sockets`` (and each new offer once)."""
        by_agent: dict[int, list[AgentSocket]] = {}
        for s in sockets:
            by_agent.setdefault(s.agent_id, []).append(s)
        async with self.pool.acquire() as conn:
            for agent_id, group in by_agent.items():
                row = await conn.fetchrow(Q["agent_snapshot"], agent_id)
                if row is None:
                    continue
                known = set(row.keys())
                agent = Agent.model_validate({k: row[k] for k in Agent.model_fields if k in known})
                offer = _offer(row) if row["offer_id"] is not None else None
                call = None
                if agent.call_id is not None and agent.state in (
                    AgentState.on_call,
                    AgentState.wrap_up,
                ):
                    call = await self.desk.get(conn, agent.call_id)
                state = StateMessage(agent=agent, offer=offer, call=call).model_dump_json()
                for s in group:
                    s.send_json(state)
                    if offer is not None and offer.offer_id not in s.offers_sent:
                        s.offers_sent.add(offer.offer_id)
                        s.send(OfferMessage(**offer.model_dump()))
                if call is not None and any(call.id not in s.panels_sent for s in group):
                    await self._send_panel(conn, call.id, group)

    async def _send_panel(self, conn: Conn, call_id: int, group: list[AgentSocket]) -> None:
        """The assist panel, once per socket and call (a reconnecting panel gets it again)."""
        started = time.perf_counter()
        panel = await self.panels.build(conn, call_id, datetime.now(UTC))
        if panel is None:
            return
        body = panel.model_dump_json()
        for s in group:
            if call_id not in s.panels_sent:
                s.panels_sent.add(call_id)
                s.send_json(body)
        if self.panel_seconds is not None:
            self.panel_seconds.observe(time.perf_counter() - started)

    async def _presence(self) -> None:
        """Keep connected agents seen, so the sweep knows who is really there."""
        while True:
            await asyncio.sleep(self.presence_seconds)
            ids = list(self._sockets)
            if not ids:
                continue
            try:
                async with self.router.soft_pool.acquire() as conn:
                    await agents.mark_seen(conn, ids)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                _log.warning("could not refresh agent presence: %s", exc)


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _offer(row: asyncpg.Record) -> Offer:
    return Offer(
        offer_id=row["offer_id"],
        call_id=row["offer_call_id"],
        queue=row["queue"],
        expires_at=row["offer_expires_at"],
        enqueued_at=row["enqueued_at"],
        ani=row["ani"],
        tier=row["tier"],
        customer=caller_summary(row),
        priority=Priority(
            tier=row["tier"],
            credit_seconds=row["credit_seconds"],
            explicit=row["credit_explicit"],
            reason=explain_credit(row["tier"], row["credit_seconds"], row["credit_explicit"]),
        ),
    )
