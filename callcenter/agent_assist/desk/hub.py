"""The agent websocket hub: ``GET /ws/agent``.

One socket per agent session, authenticated by the agent's token before the
upgrade. The hub turns ``agent:<id>`` events into pushes for the agents whose
sockets it holds: the event carries the agent's snapshot (the agents'
trigger, migration 0024; a bare ``agent:<id>`` makes it read the same
snapshot) and the hub sends ``state``, plus ``offer`` the first time a new offer shows up,
plus the assist ``panel`` the first time a socket sees the agent holding a
call (so after accept, and again after a reconnect). The socket that accepts
has its panel read by the accept's own statement (``accept.py``), sent right
after the state that shows the call; the others read it then. The panel, the
history pages and the wrap-up go only to the agent whose call it is.

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
import functools
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import WSMsgType, web
from aiolimiter import AsyncLimiter
from prometheus_client import Histogram
from pydantic import BaseModel, ValidationError

from callcenter.agent_assist.desk.accept import Accepted, accept
from callcenter.agent_assist.desk.callers import create_caller, find_callers, pick_caller
from callcenter.agent_assist.desk.verify import verify
from callcenter.agent_assist.desk.wrap_up import Shown, WrapUpDesk, followed, own_call, shown_on
from callcenter.agent_assist.knowledge.panel import PanelBuilder
from callcenter.agent_assist.protocol import (
    CLIENT_MESSAGE,
    Accept,
    AckMessage,
    Available,
    CallerCandidate,
    CallersMessage,
    ClientMessage,
    CreateCaller,
    End,
    ErrorMessage,
    FindCaller,
    HistoryRequest,
    OfferMessage,
    Offline,
    PanelMessage,
    PickCaller,
    Ping,
    PongMessage,
    QueuesMessage,
    Reject,
    StateMessage,
    Verify,
    WrapUp,
    WrapUpExtend,
)
from callcenter.db.pool import Conn
from callcenter.errors import (
    CallCenterError,
    Forbidden,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from callcenter.events import Event, EventBus, Subscription
from callcenter.http.auth import UNKNOWN_AGENT, Gate, bearer_token
from callcenter.http.problems import first_error
from callcenter.http.text import describe, unstorable_field
from callcenter.queue import agents
from callcenter.queue.calls import CallDesk
from callcenter.queue.models import AgentState, EndOutcome
from callcenter.queue.router import Router
from callcenter.runtime import TRANSIENT_DB_ERRORS, Supervisor

_log = logging.getLogger(__name__)

OUTBOX = 256

#: How long a stopping service gives each panel to finish its message and close.
SHUTDOWN_SECONDS = 3.0

#: The queue figures the panels show are read at most this often, however busy the
#: queues (one statement for every queue of every connected agent) ...
QUEUES_EVERY_SECONDS = 0.5
#: ... and at least this often, should an event that changed them have been missed.
QUEUES_BACKSTOP_SECONDS = 5.0


@dataclass(frozen=True)
class SocketLimits:
    """What one agent may ask of the hub: message size, message rate, open panels."""

    max_message_bytes: int = 65_536
    messages_per_second: int = 20
    max_sockets: int = 4
    #: Searches for a caller per agent and minute: enough to try a name, a number and a
    #: phone a few times on each of several calls, far too few to browse the customers.
    searches_per_minute: int = 12


class AgentSocket:
    """One open panel: numbered messages through a bounded outbox."""

    def __init__(
        self,
        agent_id: int,
        ws: web.WebSocketResponse,
        token: str = "",
        *,
        remote: str | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.ws = ws
        #: Where the panel is (its reads of customers' records are audited with it).
        self.remote = remote
        #: ``agent:<name>``, once the first state push has read the agent.
        self.who: str | None = None
        #: The token it opened with: a resync checks it is still good (a revoke may be lost).
        self.token = token
        #: When that token expires: the presence loop closes the panel then.
        self.expires_at: datetime | None = None
        self._seq = count(1)
        self._outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX)
        #: The offer this socket was last sent, and the call whose assist panel it was
        #: last sent: an agent has one offer and one call at a time, so only the current
        #: ones can be sent twice (a set of every id ever sent grew for the socket's life).
        self.offer_sent: int | None = None
        self.panel_sent: int | None = None
        #: The panel its last accept read with it (``accept.Accepted``), sent after the
        #: state that shows that call instead of a read of its own; dropped once sent,
        #: off the call, or when the caller's record changes (``_repanel``).
        self.accepted: Accepted | None = None
        #: The version (``agents.state_version``) of the state last sent: an older one
        #: (a read overtaken by a notification) is never sent after it.
        self.version = -1
        #: Whether the client asked for ``queues`` messages (``/ws/agent?queues=1``).
        self.wants_queues = False
        #: The agent's queues (from its last state) and the figures last sent for them.
        self.queues: list[str] = []
        self.queues_sent: str | None = None
        self.closing: asyncio.Task[bool] | None = None
        #: Its messages' rate (the hub's ``SocketLimits``), made with the first message.
        self.limiter: AsyncLimiter | None = None
        #: Held while a message from the panel is acted on: a shutdown waits for it.
        self.handling = asyncio.Lock()
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
            try:
                if self.ws.closed:
                    return
                await self.ws.send_str(text)
            finally:
                self._outbox.task_done()

    async def flush(self) -> None:
        """Until every message queued so far is written (the writer may be gone: then now)."""
        if not self.writer.done():
            await self._outbox.join()


class AgentHub:
    """The sockets of this instance's agents, and the pushes that keep them current.

    It is handed what it uses: the queue's objects (the router for what an
    agent does, the desk to read a call, ``queue.agents`` for the agent's
    snapshot), the durable pool, the soft pool for presence (a lost refresh is
    redone a moment later, so it need not wait for the disk) and the bus.
    """

    def __init__(
        self,
        router: Router,
        desk: CallDesk,
        panels: PanelBuilder,
        wrap_ups: WrapUpDesk,
        *,
        pool: asyncpg.Pool[Any],
        soft_pool: asyncpg.Pool[Any],
        bus: EventBus,
        heartbeat_seconds: float = 10.0,
        grace_seconds: float = 30.0,
        allowed_origins: Sequence[str] = (),
        panel_seconds: Histogram | None = None,
        limits: SocketLimits | None = None,
        gate: Gate,
    ) -> None:
        self.router = router
        self.desk = desk
        self.panels = panels
        self.wrap_ups = wrap_ups
        self.pool = pool
        self.soft_pool = soft_pool
        self.bus = bus
        self.heartbeat_seconds = heartbeat_seconds
        self.panel_seconds = panel_seconds
        # Refresh presence well within the grace period, so a connected agent never lapses.
        self.presence_seconds = max(0.05, min(heartbeat_seconds / 2, grace_seconds / 3))
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.limits = limits or SocketLimits()
        #: Counts wrong agent tokens with the API's (one limit per address for every door).
        self.gate = gate
        #: Searches per agent, whichever of its panels asks (see ``_take``).
        self._searches: dict[int, AsyncLimiter] = {}
        #: Per agent: the call its searches were for, and the customers they found (a pick
        #: must be one of them, or of the call's shared phone).
        self._found: dict[int, tuple[int, set[int]]] = {}
        self._sockets: dict[int, set[AgentSocket]] = {}
        self._pushing: set[int] = set()
        self._stale: set[int] = set()
        #: Agents whose pushes wait for a message being acted on (``_pushes_after``).
        self._holds: Counter[int] = Counter()
        #: Per agent, the latest snapshot its row's change sent with its notification,
        #: not pushed yet; and the agents whose next push must read (a panel opened, a
        #: resync, a change the agent's row does not show). See ``_push``.
        self._fresh: dict[int, str] = {}
        self._read: set[int] = set()
        #: The running push task of each agent (the agents in ``_pushing``).
        self._push_tasks: dict[int, asyncio.Task[None]] = {}
        #: Per agent with a socket here, what the panel built here last showed of its
        #: call, while its pushed state holds that call: its wrap-up needs no read
        #: (``WrapUpDesk.wrap_up``). Dropped with the call, or with the agent's last socket.
        self._shown: dict[int, Shown] = {}
        self._queues_changed = asyncio.Event()
        #: ``revoked`` and ``resync`` events taken so far: a panel whose token was looked
        #: up while one came in is checked again once it is among the panels (``handle``).
        self._revokes = 0
        self.supervisor = Supervisor("agent hub", duty="agents' panels are not pushed")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AgentHub]:
        """Push and keep presence for the life of the block (supervised: restarted if they die)."""
        sub = self.bus.subscribe(10_000, kinds={"agent", "revoked"})
        self.supervisor.start("agent-hub-events", functools.partial(self._listen, sub))
        self.supervisor.start("agent-hub-presence", self._presence)
        waits = self.bus.subscribe(10_000, kinds={"queue", "offered", "ended", "agent"})
        self.supervisor.start("agent-hub-queues", functools.partial(self._watch_queues, waits))
        try:
            yield self
        finally:
            self.bus.unsubscribe(waits)
            self.bus.unsubscribe(sub)
            await self.supervisor.stop()
            for sockets in list(self._sockets.values()):
                for s in list(sockets):
                    await s.ws.close(code=1001, message=b"server shutting down")

    async def shutdown(self) -> None:
        """The service is stopping: every panel is told to reconnect elsewhere, at once.

        Each socket first finishes the message it is acting on and writes what
        is queued for it (the ack of a Finish sent just before), then gets a
        close frame 1012 (service restart), on which the page reconnects
        straight away (behind a load balancer, to another instance; the agent
        keeps its state there for the grace period). Without this the sockets
        stayed open until the process died, the page said "Connected" for about
        16 s, and a Finish sent meanwhile was never answered.
        """
        sockets = [s for group in list(self._sockets.values()) for s in list(group)]
        if not sockets:
            return
        _log.info("closing %d agent panels: service restart", len(sockets))
        await asyncio.gather(*(self._close_for_restart(s) for s in sockets), return_exceptions=True)

    async def _close_for_restart(self, sock: AgentSocket) -> None:
        try:
            async with asyncio.timeout(SHUTDOWN_SECONDS):
                async with sock.handling:
                    if sock.closing is not None:
                        return  # closed already (revoked, too slow)
                    await sock.flush()
                    sock.closing = asyncio.create_task(
                        sock.ws.close(code=1012, message=b"service restarting; reconnect")
                    )
                await asyncio.shield(sock.closing)
        except TimeoutError:
            _log.warning("agent %s panel did not close in %s s", sock.agent_id, SHUTDOWN_SECONDS)

    @property
    def failure(self) -> str | None:
        """What of the hub is down (``/readyz`` says so), or None."""
        return self.supervisor.failure

    # -- the endpoint ------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, request):
            raise Forbidden(f"origin {origin!r} may not open an agent socket")
        token = request.query.get("token") or bearer_token(request)
        if not token:
            raise Unauthorized("an agent token is needed (?token= or Authorization: Bearer)")
        # The one path that resolves a token, counted with the address's wrong tokens
        # (429 past the limit); only an agent's token opens an agent's socket. The same
        # statement marks the agent seen (``present``), as the presence loop goes on to.
        revokes = self._revokes
        found = await self.gate.authenticate(
            request, token, kind="agent", wrong=UNKNOWN_AGENT, present=True
        )
        agent_id = found.id
        if agent_id is None:  # an agent principal always carries its id
            raise Unauthorized(UNKNOWN_AGENT)
        if len(self._sockets.get(agent_id, ())) >= self.limits.max_sockets:
            raise TooManyRequests(
                f"this agent has {self.limits.max_sockets} panels open already; close one",
                retry_after=5,
            )
        # No permessage-deflate: the messages are a few kB of JSON to a desk on
        # the same network, and deflating each one cost the service more CPU per
        # routed call than anything else it did with the socket.
        # A message over the limit gets an error; one far over it is not even read (1009).
        ws = web.WebSocketResponse(
            heartbeat=self.heartbeat_seconds,
            compress=False,
            max_msg_size=4 * self.limits.max_message_bytes,
        )
        await ws.prepare(request)
        sock = AgentSocket(agent_id, ws, token, remote=request.remote)
        sock.expires_at = found.expires_at
        # ``queues`` messages only for a client that asks (the page does): a client written
        # before them reads exactly the messages it always did.
        sock.wants_queues = request.query.get("queues") in ("1", "true")
        self._sockets.setdefault(agent_id, set()).add(sock)
        try:
            try:
                if self._revokes != revokes:
                    # A revoke came in after the token was looked up: its check of the
                    # open panels may have run before this one was among them, and the
                    # old token (a leaked one, a removed agent's) kept a live panel.
                    await self._close_revoked(agent_id)
                if sock.closing is None:
                    await self._push_first(sock)
            except TRANSIENT_DB_ERRORS as exc:
                # Without its first state the panel shows nothing true: it reconnects.
                _log.warning("agent %s socket: no state to send (%r); closing it", agent_id, exc)
                await ws.close(code=1011, message=b"the database did not answer; reconnect")
                return ws
            async for msg in ws:
                async with sock.handling:
                    if sock.closing is not None:
                        break  # shutting down: nothing more is acted on
                    if msg.type == WSMsgType.TEXT and await self._within_limits(sock, msg.data):
                        await self._on_text(sock, msg.data)
                    elif msg.type == WSMsgType.BINARY:
                        sock.send(ErrorMessage(status=400, detail="send JSON text, not binary"))
        finally:
            self._sockets[agent_id].discard(sock)
            if not self._sockets[agent_id]:
                del self._sockets[agent_id]
                self._fresh.pop(agent_id, None)
                self._read.discard(agent_id)
                self._shown.pop(agent_id, None)
            sock.writer.cancel()
            if sock.closing is not None:
                # Closed by another task (revoked, too slow): finish the closing handshake
                # before the handler returns, or the connection drops without its code.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(sock.closing), timeout=5)
        return ws

    async def _within_limits(self, sock: AgentSocket, text: str) -> bool:
        """False (and an error sent, the socket kept) for a message too big or too soon."""
        if len(text.encode()) > self.limits.max_message_bytes:
            detail = f"a message may be at most {self.limits.max_message_bytes} bytes"
            sock.send(ErrorMessage(status=413, detail=detail))
            return False
        if sock.limiter is None:
            sock.limiter = AsyncLimiter(self.limits.messages_per_second, 1)
        if not await _take(sock.limiter):
            detail = f"at most {self.limits.messages_per_second} messages a second; slow down"
            sock.send(ErrorMessage(status=429, detail=detail))
            return False
        return True

    def _origin_allowed(self, origin: str, request: web.Request) -> bool:
        if origin.rstrip("/") in self.allowed_origins:
            return True
        try:
            return urlsplit(origin).netloc == request.host
        except ValueError:  # not a URL at all (``http://[``): not an origin we know
            return False

    async def _on_text(self, sock: AgentSocket, text: str) -> None:
        ref: Any = None
        try:
            data = json.loads(text)
            if isinstance(data, dict):
                ref = data.get("ref")
            # The REST rule for text the database cannot store, here too: an error, not a
            # closed socket, and nothing of the message is acted on.
            bad = unstorable_field(data)
            if bad is not None:
                raise Unprocessable(describe(bad), field=bad or None)
            message = CLIENT_MESSAGE.validate_python(data)
        except json.JSONDecodeError as exc:
            sock.send(ErrorMessage(status=400, detail=f"not JSON: {exc}"))
            return
        except Unprocessable as exc:
            # The ref is echoed only if it can be: it may be the text at fault.
            storable = isinstance(ref, int) or (
                isinstance(ref, str) and unstorable_field(ref) is None
            )
            ref_ok = ref if storable else None
            sock.send(ErrorMessage(ref=ref_ok, status=422, detail=exc.detail, field=exc.field))
            return
        except ValidationError as exc:
            field, detail = first_error(exc)
            ref_ok = ref if isinstance(ref, str | int) else None
            sock.send(ErrorMessage(ref=ref_ok, status=422, detail=detail, field=field))
            return
        agent_id = sock.agent_id
        if isinstance(message, Ping):
            sock.send(PongMessage(ref=message.ref))
            return
        # What changes the agent's state holds its pushes: the ack goes out before that
        # state. Reads, and the caller's identity (its panel follows the ack), do not.
        quiet = isinstance(
            message, HistoryRequest | FindCaller | Verify | PickCaller | CreateCaller
        )
        async with contextlib.nullcontext() if quiet else self._pushes_after(agent_id):
            await self._act(sock, message)

    async def _act(self, sock: AgentSocket, message: ClientMessage) -> None:
        """Do what ``message`` asks and answer it (an ``ack``, or an ``error`` naming the
        field); the agent's socket stays open whatever happens."""
        agent_id = sock.agent_id
        try:
            call_id: int | None = None
            if isinstance(message, Available):
                await self.router.available(agent_id)
            elif isinstance(message, Offline):
                await self.router.offline(agent_id)
            elif isinstance(message, Accept):
                # The caller's panel is read with the accept, for this socket (audited so).
                taken = await accept(
                    self.router,
                    self.panels,
                    agent_id,
                    message.offer_id,
                    who=sock.who or f"agent:{agent_id}",
                    remote=sock.remote,
                )
                call_id = taken.call_id
                sock.accepted = taken if taken.panel is not None else None
            elif isinstance(message, Reject):
                await self.router.reject(agent_id, message.offer_id)
            elif isinstance(message, End):
                call_id = message.call_id
                await self.router.end_call(agent_id, message.call_id, EndOutcome(message.outcome))
            elif isinstance(message, HistoryRequest):
                async with self.pool.acquire() as conn:
                    await own_call(conn, agent_id, message.call_id)
                    page = await self.panels.history(
                        conn,
                        message.call_id,
                        message.before,
                        who=sock.who or f"agent:{agent_id}",
                        remote=sock.remote,
                    )
                sock.send(page.model_copy(update={"ref": message.ref}))
                return
            elif isinstance(message, Verify):
                async with self.pool.acquire() as conn:
                    await verify(conn, agent_id, message.call_id)
                    now = await self.panels.recognised(conn, message.call_id)
                sock.send(
                    AckMessage(
                        ref=message.ref, to=message.type, call_id=message.call_id, recognised=now
                    )
                )
                self._repanel(sock, message.call_id)
                return
            elif isinstance(message, WrapUpExtend):
                async with self.pool.acquire() as conn:
                    await own_call(conn, agent_id, message.call_id)
                # The ack carries the new end of the wrap-up; the state with it comes after.
                until = await self.router.extend_wrap_up(agent_id, message.call_id, message.seconds)
                sock.send(
                    AckMessage(
                        ref=message.ref,
                        to=message.type,
                        call_id=message.call_id,
                        wrap_up_until=until,
                    )
                )
                return
            elif isinstance(message, FindCaller):
                await self._find_caller(sock, message)
                return
            elif isinstance(message, PickCaller | CreateCaller):
                await self._pick_caller(sock, message)
                return
            elif isinstance(message, WrapUp):
                call_id = message.call_id
                await self.wrap_ups.wrap_up(
                    agent_id,
                    message,
                    datetime.now(UTC),
                    who=sock.who,
                    remote=sock.remote,
                    shown=self._shown.get(agent_id),
                )
                # Wrapped up: nothing of the call is needed any more, whatever comes next.
                if (shown := self._shown.get(agent_id)) and shown.call_id == call_id:
                    del self._shown[agent_id]
            sock.send(AckMessage(ref=message.ref, to=message.type, call_id=call_id))
        except CallCenterError as exc:
            sock.send(
                ErrorMessage(ref=message.ref, status=exc.status, detail=exc.detail, field=exc.field)
            )
        except TRANSIENT_DB_ERRORS as exc:
            # The socket outlives a database restart: the agent is told to try again.
            _log.warning("agent %s %s: no database (%r)", agent_id, message.type, exc)
            sock.send(
                ErrorMessage(
                    ref=message.ref, status=503, detail="the database did not answer; try again"
                )
            )

    async def _find_caller(self, sock: AgentSocket, message: FindCaller) -> None:
        """Search for the caller of the agent's call: a few a minute, one call at a time."""
        agent_id = sock.agent_id
        searches = self._searches.get(agent_id)
        if searches is None:
            searches = self._searches[agent_id] = AsyncLimiter(self.limits.searches_per_minute)
        if not await _take(searches):
            raise TooManyRequests(
                f"at most {self.limits.searches_per_minute} searches a minute: ask the caller "
                "for their customer number",
                retry_after=10,
            )
        async with self.pool.acquire() as conn:
            found = await find_callers(
                conn,
                agent_id,
                message.call_id,
                message.query,
                region=self.desk.rules.region,
                who=sock.who or f"agent:{agent_id}",
                remote=sock.remote,
            )
        kept = self._found.get(agent_id)
        if kept is None or kept[0] != message.call_id:
            kept = self._found[agent_id] = (message.call_id, set())
        kept[1].update(c.id for c in found)
        candidates = [CallerCandidate.model_validate(c, from_attributes=True) for c in found]
        sock.send(CallersMessage(ref=message.ref, call_id=message.call_id, candidates=candidates))

    async def _pick_caller(self, sock: AgentSocket, message: PickCaller | CreateCaller) -> None:
        """The agent's pick (or new customer) identifies the call; every tab gets the new panel."""
        agent_id = sock.agent_id
        who = sock.who or f"agent:{agent_id}"
        async with self.pool.acquire() as conn:
            if isinstance(message, PickCaller):
                kept = self._found.get(agent_id)
                shown = kept[1] if kept is not None and kept[0] == message.call_id else set()
                await pick_caller(
                    conn,
                    self.desk,
                    agent_id,
                    message.call_id,
                    message.customer_id,
                    shown=shown,
                    who=who,
                    remote=sock.remote,
                )
                customer_id = message.customer_id
            else:
                name = " ".join(message.name.split())
                if not name:
                    raise Unprocessable("the caller's name is empty", field="name")
                customer_id = await create_caller(
                    conn, self.desk, agent_id, message.call_id, name, who=who, remote=sock.remote
                )
            now = await self.panels.recognised(conn, message.call_id)
        sock.send(
            AckMessage(
                ref=message.ref,
                to=message.type,
                call_id=message.call_id,
                recognised=now,
                customer_id=customer_id,
            )
        )
        self._repanel(sock, message.call_id, everyone=True)

    def _repanel(self, sock: AgentSocket, call_id: int, *, everyone: bool = False) -> None:
        """The agent's other open panels get the call's panel again (the one that sent
        ``verify`` has the news in its ack), so no tab keeps offering a stale link;
        ``everyone``: this one too (the caller changed: a new customer, a new history)."""
        mine = self._sockets.get(sock.agent_id, ())
        for s in mine:
            if s.accepted is not None and s.accepted.call_id == call_id:
                s.accepted = None  # read before the change: a panel not sent yet reads again
        others = [s for s in mine if everyone or s is not sock]
        for s in others:
            if s.panel_sent == call_id:
                s.panel_sent = None
        if others:
            self._schedule(sock.agent_id)

    # -- pushing -------------------------------------------------------------------

    async def _listen(self, sub: Subscription) -> None:
        # Every socket is pushed at (re)start: a restarted listener may have lost an event.
        for agent_id in list(self._sockets):
            self._schedule(agent_id)
        while True:
            event: Event = await sub.get()
            if event.kind in ("resync", "revoked"):
                self._revokes += 1
            if event.kind == "resync":
                self.supervisor.spawn(self._close_revoked(), "check tokens after a resync")
                for agent_id in list(self._sockets):
                    self._schedule(agent_id)
            elif event.kind == "revoked" and event.key.isdigit():
                self.supervisor.spawn(self._close_revoked(int(event.key)), "close revoked panels")
            elif event.kind == "agent" and event.key.isdigit():
                agent_id = int(event.key)
                if agent_id in self._sockets:
                    self._schedule(agent_id, event.data)

    async def _close_revoked(self, agent_id: int | None = None) -> None:
        """Close the panels whose token no longer opens the desk (reset, removed, expired).

        ``agent_id`` names the agent a ``revoked`` event was about; None checks every
        open panel (after a resync, a revoke may have been among the lost events).
        """
        sockets = [
            s
            for group in list(self._sockets.values())
            for s in list(group)
            if agent_id is None or s.agent_id == agent_id
        ]
        if not sockets:
            return
        still: dict[str, int | None] = {}
        for s in sockets:
            if s.token not in still:
                now = await self.gate.still(s.token, kind="agent")
                still[s.token] = now.id if now is not None and now.kind == "agent" else None
        for s in sockets:
            if still[s.token] != s.agent_id and not s.ws.closed and s.closing is None:
                _log.info("agent %s: its token no longer opens the desk; closing", s.agent_id)
                s.closing = asyncio.create_task(
                    s.ws.close(code=4401, message=b"token revoked; sign in again")
                )

    def _close_expired(self) -> None:
        """Panels whose token has expired since they opened are closed (4401), as a
        revoked one is: an expired token opens nothing, not even a socket left open."""
        now = datetime.now(UTC)
        for group in list(self._sockets.values()):
            for s in list(group):
                if s.expires_at is not None and s.expires_at <= now and s.closing is None:
                    _log.info("agent %s: its token expired; closing its panel", s.agent_id)
                    s.closing = asyncio.create_task(
                        s.ws.close(code=4401, message=b"token expired; sign in again")
                    )

    def _schedule(self, agent_id: int, data: str | None = None) -> None:
        """Push an agent's state soon; pushes for different agents run side by side,
        and events that arrive while a push for the same agent runs fold into one more.

        ``data``: the agent's snapshot as its change's notification carried it (the
        push needs no read unless something else asks for one); None: read it.
        """
        if data is None:
            self._read.add(agent_id)
        else:
            self._fresh[agent_id] = data
        self._start(agent_id)

    def _start(self, agent_id: int) -> None:
        """Start the agent's push task, or mark it stale for the push or hold running."""
        if agent_id in self._pushing or agent_id in self._holds:
            self._stale.add(agent_id)
            return
        self._pushing.add(agent_id)
        task = self.supervisor.spawn(self._push_agent(agent_id), f"push agent {agent_id}")
        self._push_tasks[agent_id] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._push_tasks.get(agent_id) is t:
                del self._push_tasks[agent_id]

        task.add_done_callback(done)

    @contextlib.asynccontextmanager
    async def _pushes_after(self, agent_id: int) -> AsyncIterator[None]:
        """The agent's pushes wait for the block: what it sends (an ``ack``) comes before
        the state its change causes.

        The change notifies at its commit, and the push that follows could reach the
        socket before the ``ack`` the handler sends once the statement returns (a
        client that reads the ack, then the next state, saw the state before the
        change). A push already running finishes first; events during the block
        fold into one push after it, as events during a push do.
        """
        while (running := self._push_tasks.get(agent_id)) is not None:
            await asyncio.wait({running})
        # Held by a count: two panels of one agent may each be acting on a message.
        self._holds[agent_id] += 1
        try:
            yield
        finally:
            self._holds[agent_id] -= 1
            if not self._holds[agent_id]:
                del self._holds[agent_id]
                if agent_id in self._stale:
                    self._stale.discard(agent_id)
                    self._start(agent_id)

    async def _push_agent(self, agent_id: int) -> None:
        try:
            while True:
                self._stale.discard(agent_id)
                sockets = list(self._sockets.get(agent_id, ()))
                if not sockets:
                    return
                fresh = self._fresh.pop(agent_id, None)
                read = agent_id in self._read or fresh is None
                self._read.discard(agent_id)
                try:
                    await self._push(agent_id, sockets, None if read else fresh)
                except TRANSIENT_DB_ERRORS as exc:
                    _log.warning("could not push agent %s state: %s", agent_id, exc)
                if agent_id not in self._stale:
                    return
        finally:
            self._pushing.discard(agent_id)

    async def _push_first(self, sock: AgentSocket) -> None:
        """A panel that opens gets the agent's state read for it alone: what is due to
        the agent's other panels (a notification not pushed yet, a read asked for) is
        left to their push."""
        async with self.pool.acquire() as conn:
            found = await agents.snapshot(conn, sock.agent_id)
        if found is not None:
            await self._show(found, [sock], read=True)

    async def _push(self, agent_id: int, group: list[AgentSocket], fresh: str | None) -> None:
        """Send the agent's current state to its panels ``group`` (and each new offer once).

        The state is ``fresh``, the snapshot the agent's last change sent with its
        notification, when that is all that happened since the last push; None:
        it is read (a resync, or a change the agent's row does not show, such as
        the held call's caller identified). Notifications arrive in commit order,
        so the latest sent snapshot is the agent's latest row.
        """
        if fresh is not None:
            await self._show(agents.snapshot_of(json.loads(fresh)), group, read=False)
            return
        async with self.pool.acquire() as conn:
            found = await agents.snapshot(conn, agent_id)
        if found is not None:
            await self._show(found, group, read=True)

    async def _show(
        self, found: agents.AgentSnapshot, sockets: list[AgentSocket], *, read: bool
    ) -> None:
        """``_send_state``; what a panel built here showed follows the state it sent."""
        if await self._send_state(found, sockets, read=read):
            self._follow(found.agent.id, found.agent.call_id, found.agent.state)

    async def _send_state(
        self, found: agents.AgentSnapshot, sockets: list[AgentSocket], *, read: bool
    ) -> bool:
        """``found`` to each of ``sockets`` that has not seen it or anything newer
        (False: none needed it).

        By version, per panel: a snapshot older than what a panel has (a read that a
        notification overtook) is not sent to it; one of the same version is sent
        only when read (a change the agent's row does not count, such as the held
        call's caller identified, is only ever read).
        """
        group = [
            s for s in sockets if found.version > s.version or (read and found.version == s.version)
        ]
        if not group:
            return False
        for s in group:
            s.version = found.version
        agent, offer = found.agent, found.offer
        call = found.call
        if (
            call is None
            and agent.call_id is not None
            and agent.state
            in (
                AgentState.on_call,
                AgentState.wrap_up,
            )
        ):
            # The call it holds waits again: read with its position.
            async with self.pool.acquire() as conn:
                call = await self.desk.get(conn, agent.call_id)
        state = StateMessage(agent=agent, offer=offer, call=call).model_dump_json()
        for s in group:
            s.who = f"agent:{agent.name}"
            if s.wants_queues and s.queues != agent.queues:
                s.queues = list(agent.queues)
                self._queues_changed.set()
            s.send_json(state)
            if offer is not None and offer.offer_id != s.offer_sent:
                s.offer_sent = offer.offer_id
                s.send(OfferMessage(**offer.model_dump()))
            if call is None:
                s.panel_sent = None  # off the call: the next one (even this) is new
                s.accepted = None
        if call is not None and any(call.id != s.panel_sent for s in group):
            async with self.pool.acquire() as conn:
                await self._send_panel(conn, call.id, group)
        return True

    async def _send_panel(self, conn: Conn, call_id: int, group: list[AgentSocket]) -> None:
        """The assist panel, once per socket and call (a reconnecting panel gets it again).

        A socket whose accept read the panel (``AgentSocket.accepted``) gets that one,
        built now; the others read it, once for all of them, audited as the first
        one's read.
        """
        started = time.perf_counter()
        due = [s for s in group if s.panel_sent != call_id]
        for s in due:
            taken, s.accepted = s.accepted, None
            if taken is not None and taken.call_id == call_id and taken.panel is not None:
                built = await self.panels.of_row(conn, taken.panel, datetime.now(UTC))
                self._remember(s.agent_id, built)
                if s.panel_sent != call_id:
                    s.panel_sent = call_id
                    s.send_json(built.model_dump_json())
        rest = [s for s in due if s.panel_sent != call_id]
        if rest:
            reader = rest[0]
            panel = await self.panels.build(
                conn,
                call_id,
                datetime.now(UTC),
                who=reader.who or f"agent:{reader.agent_id}",
                remote=reader.remote,
            )
            if panel is None:
                return
            self._remember(reader.agent_id, panel)
            body = panel.model_dump_json()
            for s in rest:
                if s.panel_sent != call_id:
                    s.panel_sent = call_id
                    s.send_json(body)
        if self.panel_seconds is not None:
            self.panel_seconds.observe(time.perf_counter() - started)

    def _remember(self, agent_id: int, panel: PanelMessage) -> None:
        """What ``panel``, built here, shows of its call, for the agent's wrap-up; not for
        an agent whose last socket here closed while it was built."""
        if agent_id in self._sockets:
            self._shown[agent_id] = shown_on(panel)

    def _follow(self, agent_id: int, call_id: int | None, state: AgentState) -> None:
        """What the agent's panel showed here, after its state (``state``, holding
        ``call_id``) was pushed: dropped once it no longer holds the call."""
        now = followed(self._shown.get(agent_id), state, call_id)
        if now is None:
            self._shown.pop(agent_id, None)
        else:
            self._shown[agent_id] = now

    async def _watch_queues(self, sub: Subscription) -> None:
        """Push the callers waiting in each panel's queues when they change.

        Woken by the queue's events (a call in, answered, gone) and folded: at
        most one reading per ``QUEUES_EVERY_SECONDS`` whatever the load, and one
        every ``QUEUES_BACKSTOP_SECONDS`` in case an event was missed. A panel is
        sent only figures that differ from what it has.
        """

        async def heard() -> None:
            while True:
                await sub.get()
                self._queues_changed.set()

        listener = asyncio.create_task(heard(), name="agent-hub-queue-events")
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(QUEUES_BACKSTOP_SECONDS):
                        await self._queues_changed.wait()
                self._queues_changed.clear()
                try:
                    await self._push_queues()
                except TRANSIENT_DB_ERRORS as exc:
                    _log.warning("could not read the waiting callers: %s", exc)
                await asyncio.sleep(QUEUES_EVERY_SECONDS)
        finally:
            listener.cancel()

    async def _push_queues(self) -> None:
        sockets = [
            s
            for group in list(self._sockets.values())
            for s in group
            if s.wants_queues and s.queues
        ]
        if not sockets:
            return
        names = sorted({q for s in sockets for q in s.queues})
        async with self.pool.acquire() as conn:
            figures = {w.name: w for w in await agents.waiting_in(conn, names)}
        for s in sockets:
            body = QueuesMessage(
                queues=[figures[q] for q in sorted(s.queues) if q in figures]
            ).model_dump_json()
            if body != s.queues_sent:
                s.queues_sent = body
                s.send_json(body)

    async def _presence(self) -> None:
        """Keep connected agents seen, so the sweep knows who is really there."""
        while True:
            await asyncio.sleep(self.presence_seconds)
            ids = list(self._sockets)
            if not ids:
                continue
            self._close_expired()
            try:
                async with self.soft_pool.acquire() as conn:
                    await agents.mark_seen(conn, ids)
            except TRANSIENT_DB_ERRORS as exc:
                _log.warning("could not refresh agent presence: %s", exc)


async def _take(limiter: AsyncLimiter) -> bool:
    """One unit of ``limiter`` if it has one now; False (nothing taken) if it would wait.

    A leaky bucket per socket and per agent (aiolimiter) instead of ``limits``'
    in-memory moving window: that storage starts a new ``threading.Timer`` thread
    on a hit whenever the last one has fired (10 ms after it started), up to a
    hundred threads a second while agents talk (3.5 % of the service's CPU at 30
    calls/s, py-spy, benchmarks/README.md).
    """
    if not limiter.has_capacity():
        return False
    await limiter.acquire()  # has capacity: returns without waiting
    return True
