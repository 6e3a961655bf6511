"""The Asterisk ARI adapter: a websocket client for Stasis events, REST for commands.

The service connects to ``/ari/events?app=<app>`` as a client and keeps
reconnecting with backoff. What Asterisk tells it becomes the gateway's
three call events:

* ``StasisStart`` of a caller (the dialplan ran ``Stasis(<app>[,<queue>])``)
  is an ``Incoming``: the caller is identified and enqueued, then the channel
  is answered and hears music on hold.
* ``ChannelDtmfReceived`` keys are put together into a customer number
  (``dtmf.DigitCollector``: digits until ``#`` or a pause) and sent as
  ``Digits``, which identifies the caller again and moves the call by value.
* ``ChannelHangupRequest``, ``StasisEnd`` and ``ChannelDestroyed`` of a
  caller are a ``Hangup``: abandoned while waiting, completed once connected.

The gateway is idempotent by the channel id, so a repeated or late event
never enqueues twice. Events of one channel are handled one after the other
in their order; different channels side by side.

After every (re)connect, and after a frame it could not read, the adapter
**reconciles**: the calls our records hold open are compared with the
channels Asterisk still has in the application (``GET /ari/channels``).
A call whose channel is gone ended while nobody listened and is closed; a
channel in the application that we never saw is handed in. The open calls
are read *before* the channels, so a call that arrives in between is never
taken for gone.

Connecting (``Connector.connect``, called by the bridger once an agent
accepted) originates the agent's endpoint into the application, with
``appArgs=agent,<call id>,<caller channel>``, ringing for ``ring_seconds``
(``CALLCENTER_ARI_RING_SECONDS``, the originate's own timeout). When the agent
answers, its channel enters the application: the caller's music stops, a
mixing bridge is created, and both channels are added to it; only then does
``connect`` return. If the agent's phone rings out, is busy or fails,
Asterisk reports the leg destroyed and ``connect`` raises ``AgentNotReached``
(so does a leg Asterisk never reports on within the ring time and a little
more, after hanging it up): the bridger puts the call back in its queue and
the agent is not responding. The bridger's own limit on one connect is longer
than the ring, so it never cuts a ringing phone off with an unknown outcome.
With Local channels (``Local/…@agents``) Asterisk also reports the leg's
``;2`` half; it is not a caller and is ignored.
When either side of a bridged call hangs up, the other side is hung up too
and the bridge destroyed. A call that ends on our side (the agent's panel, a
supervisor, the queue's maximum wait) has its caller's channel hung up.

One Asterisk application has one event websocket: a newer connection for the
same application replaces the older, which then gets ``ApplicationReplaced``
and no more events. The adapter then closes its websocket and reconnects with
backoff (taking the application back), and ``connected`` (so
``callcenter_ari_connected`` and ``/readyz``) says it is not connected until
it is. Run the adapter in one service instance per ``ARI_APP``: two would take
the application from each other.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import random
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus, WebSocketException

from callcenter.config import Settings
from callcenter.errors import (
    AgentNotReached,
    CallCenterError,
    MalformedEvent,
    PeerFailed,
    PeerRequestFailed,
    Unprocessable,
)
from callcenter.queue.models import CallState
from callcenter.runtime import TRANSIENT_DB_ERRORS, Supervisor
from callcenter.telephony_adapters.ari_events import (
    GONE,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Ignored,
    StasisStart,
    parse_event,
)
from callcenter.telephony_adapters.ari_rest import AriRest
from callcenter.telephony_adapters.base import (
    ARI,
    AgentEndpoint,
    Digits,
    Hangup,
    Incoming,
    PeerCall,
    Ring,
)
from callcenter.telephony_adapters.dtmf import DigitCollector
from callcenter.telephony_adapters.gateway import CallView, TelephonyGateway

_log = logging.getLogger(__name__)


#: Our agent legs and their bridges: ``cc-agent-<call id>-<attempt>``, ``cc-bridge-…``.
AGENT_LEG = re.compile(r"^cc-agent-(\d+)-([0-9a-f]{8})$")
#: The other half of an agent leg that is a Local channel (``<leg id>;2``): not a caller.
AGENT_LEG_HALF = re.compile(r"^cc-agent-\d+-[0-9a-f]{8};\d+$")
#: First ``appArgs`` word of an agent leg: ``agent,<call id>,<caller channel>``.
AGENT_ARG = "agent"
QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

#: First pause before reconnecting; doubles up to ``ari_reconnect_max_seconds``.
RECONNECT_MIN_SECONDS = 0.1
#: A connection that lived this long resets the backoff.
STABLE_SECONDS = 2.0
#: Pause before a failed reconciliation is tried again.
RECONCILE_RETRY_SECONDS = 1.0
#: Channels remembered as gone, so the three events of one hang-up cost one hand-in.
GONE_MEMORY = 10_000


@dataclass(frozen=True)
class AriConfig:
    url: str
    user: str
    password: str
    app: str
    dtmf_timeout_seconds: float
    moh_class: str
    ring_seconds: int
    reconnect_max_seconds: float
    release_seconds: float = 1.0
    #: Time limit of one REST command (``CALLCENTER_CONNECT_TIMEOUT_SECONDS``).
    command_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AriConfig | None:
        """The adapter's settings, or None when ``ARI_URL`` is not set (no adapter)."""
        if settings.ari_url is None:
            return None
        password = settings.ari_password.get_secret_value() if settings.ari_password else ""
        return cls(
            url=settings.ari_url,
            user=settings.ari_user,
            password=password,
            app=settings.ari_app,
            dtmf_timeout_seconds=settings.ari_dtmf_timeout_seconds,
            moh_class=settings.ari_moh_class,
            ring_seconds=settings.ari_ring_seconds,
            reconnect_max_seconds=settings.ari_reconnect_max_seconds,
            release_seconds=settings.sweep_seconds,
            command_seconds=settings.connect_timeout_seconds,
        )

    @property
    def events_url(self) -> str:
        base = self.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}/ari/events?{urlencode({'app': self.app})}"

    @property
    def headers(self) -> dict[str, str]:
        """HTTP Basic credentials for the websocket and every REST call (none: no user)."""
        if not self.user:
            return {}
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}


@dataclass
class AgentLeg:
    """One attempt to reach an agent for a call: its channel, bridge and outcome."""

    call_id: int
    caller: str
    channel_id: str
    answered: asyncio.Future[None]
    bridged: bool = False

    @property
    def bridge_id(self) -> str:
        return bridge_of(self.channel_id)


def bridge_of(agent_channel_id: str) -> str:
    return agent_channel_id.replace("cc-agent-", "cc-bridge-", 1)


def agent_args(channel: Channel) -> tuple[int, str] | None:
    """``(call id, caller channel)`` if ``channel`` is one of our agent legs in the app."""
    if not AGENT_LEG.match(channel.id):
        return None
    parts = (channel.dialplan.app_data or "").split(",")
    if len(parts) >= 4 and parts[1] == AGENT_ARG and parts[2].isdigit() and parts[3]:
        return int(parts[2]), parts[3]
    return None


def queue_from_args(args: Iterable[str]) -> str | None:
    """``Stasis(<app>,<queue>)`` names the queue; None leaves it to the gateway's default."""
    first = next(iter(args), "").strip()
    return first if QUEUE_NAME.match(first) else None


class AriMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "callcenter_ari_connected", "1 while the ARI event websocket is open", registry=registry
        )
        self.connects = Counter(
            "callcenter_ari_connects", "ARI event websocket connections opened", registry=registry
        )
        self.malformed = Counter(
            "callcenter_ari_malformed_events", "ARI frames that were not events", registry=registry
        )
        self.reconciled = Counter(
            "callcenter_ari_reconciled",
            "Calls changed by reconciling with Asterisk, by what was done",
            ["action"],
            registry=registry,
        )


class AriAdapter:
    """The ARI client, and the ``Connector`` of peer ``ari``."""

    peer = ARI
    #: Not yet: its callers are never offered a callback, so nothing asks it to ring one.
    rings_back = False

    def __init__(
        self,
        config: AriConfig,
        gateway: TelephonyGateway,
        session: aiohttp.ClientSession,
        *,
        metrics: AriMetrics | None = None,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.rest = AriRest(session, config.url, config.headers, timeout=config.command_seconds)
        self.metrics = metrics
        self.connected = asyncio.Event()
        self.connections = 0
        self.reconciles = 0
        self.supervisor = Supervisor("ARI adapter", duty="Asterisk calls are not served")
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._collectors: dict[str, DigitCollector] = {}
        self._dtmf_timers: dict[str, asyncio.TimerHandle] = {}
        self._legs: dict[str, AgentLeg] = {}
        self._gone: OrderedDict[str, None] = OrderedDict()
        #: Caller channels whose call is open (waiting or connected) as far as we know.
        self._live: set[str] = set()
        self._reconcile_wanted = asyncio.Event()
        self._down_because: str | None = None
        self._down("not connected yet")
        #: Set by ``ApplicationReplaced``: the open websocket is deaf and must be closed.
        self._replaced = False

    # -- running ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AriAdapter]:
        """Read events for the life of the block; the tasks are supervised (``failure``)."""
        self.gateway.register(self)
        self.supervisor.start("ari-events", self._read_forever)
        self.supervisor.start("ari-reconcile", self._reconciler)
        self.supervisor.start("ari-release", self._releaser)
        try:
            yield self
        finally:
            for handle in self._dtmf_timers.values():
                handle.cancel()
            for leg in self._legs.values():
                if not leg.answered.done():
                    leg.answered.cancel()
            lanes = list(self._lanes.values())
            for task in lanes:
                task.cancel()
            await asyncio.gather(self.supervisor.stop(), *lanes, return_exceptions=True)
            self.gateway.connectors.pop(self.peer, None)

    @property
    def failure(self) -> str | None:
        """What of the adapter is down (``/readyz`` says so), or None.

        A task that died, or the event websocket not open: without it Asterisk
        hangs up every new caller (``Stasis app … doesn't exist``), so the
        service is not ready to serve Asterisk's calls.
        """
        return self.supervisor.failure

    def _down(self, reason: str | None) -> None:
        """Why the event websocket is not open (None: it is); ``failure`` says so."""
        self._down_because = reason
        problem = None if reason is None else f"the ARI event websocket is not open: {reason}"
        self.supervisor.report("ari-events-open", problem)

    def _spawn(self, work: Awaitable[Any], what: str) -> None:
        self.supervisor.spawn(self._guard(work, what), what)

    # -- the event websocket -----------------------------------------------------

    async def _read_forever(self) -> None:
        loop = asyncio.get_running_loop()
        delay = RECONNECT_MIN_SECONDS
        while True:
            opened_at: float | None = None
            self._replaced = False
            try:
                async with ws_connect(
                    self.config.events_url,
                    additional_headers=self.config.headers,
                    open_timeout=5,
                    ping_interval=10,
                    ping_timeout=10,
                    proxy=None,
                ) as ws:
                    opened_at = loop.time()
                    self._opened()
                    async for frame in ws:
                        self._on_frame(frame)
                        if self._replaced:
                            break  # deaf from here on: closing it lets us reconnect
                if self._replaced:
                    self._down("another ARI client took the application over")
                    _log.error(
                        "another ARI client took over application %s (ApplicationReplaced): "
                        "reconnecting to take it back; run one adapter per ARI_APP",
                        self.config.app,
                    )
                else:
                    self._down("closed by Asterisk")
                    _log.warning("ARI event websocket closed by Asterisk; reconnecting")
            except InvalidStatus as exc:
                status = exc.response.status_code
                hint = " (check ARI_USER and ARI_PASSWORD)" if status == 401 else ""
                self._down(f"Asterisk refused it: HTTP {status}{hint}")
                _log.error("Asterisk refused the ARI event websocket: HTTP %s%s", status, hint)
            except (OSError, TimeoutError, WebSocketException) as exc:
                self._down(f"lost or unreachable: {exc!r}")
                _log.warning("ARI event websocket lost or unreachable: %r; reconnecting", exc)
            finally:
                if self.connected.is_set():
                    self.connected.clear()
                    if self.metrics is not None:
                        self.metrics.connected.set(0)
                if self._down_because is None:  # cancelled, or a fault in handling a frame
                    self._down("not reading events")
            stable = opened_at is not None and loop.time() - opened_at >= STABLE_SECONDS
            # A connection that was taken over does not reset the backoff: two adapters
            # on one application would otherwise take it from each other without pause.
            if stable and not self._replaced:
                delay = RECONNECT_MIN_SECONDS
            # Jitter, so many adapters do not hammer a restarted Asterisk in step.
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.config.reconnect_max_seconds)

    def _opened(self) -> None:
        self.connections += 1
        self._down(None)
        self.connected.set()
        if self.metrics is not None:
            self.metrics.connected.set(1)
            self.metrics.connects.inc()
        _log.info("ARI event websocket open (application %s)", self.config.app)
        # Whatever happened while nobody listened is read back from Asterisk.
        self.reconcile_soon()

    def _on_frame(self, frame: str | bytes) -> None:
        try:
            event = parse_event(frame)
        except MalformedEvent as exc:
            if self.metrics is not None:
                self.metrics.malformed.inc()
            _log.warning("ARI sent a frame that is not an event (%s): %.200r", exc.detail, frame)
            # It may have been an event we needed: read the state back instead.
            self.reconcile_soon()
            return
        if isinstance(event, Ignored):
            if event.type == "ApplicationReplaced":
                # Asterisk sends this websocket nothing more, nor closes it.
                self._replaced = True
            return
        channel = event.channel
        if isinstance(event, StasisStart):
            if event.args[:1] == [AGENT_ARG] and AGENT_LEG.match(channel.id):
                self._in_lane(channel.id, self._agent_answered(channel), "agent answered")
            else:
                self._in_lane(channel.id, self._caller_arrived(channel, event.args), "StasisStart")
        elif isinstance(event, ChannelDtmfReceived):
            self._in_lane(channel.id, self._key(channel.id, event.digit), "DTMF")
        elif isinstance(event, GONE):
            self._in_lane(channel.id, self._channel_gone(channel, _cause(event)), event.type)

    # -- per-channel order -------------------------------------------------------

    def _in_lane(self, key: str, work: Awaitable[None], what: str) -> None:
        """Run ``work`` after every earlier piece of work of the same channel."""
        before = self._lanes.get(key)
        task = asyncio.create_task(self._after(before, work, f"{what} {key}"))
        self._lanes[key] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._lanes.get(key) is t:
                del self._lanes[key]
            # Cancelled (at shutdown) before its turn came: the work never ran,
            # and is closed so that Python does not warn it was never awaited.
            if inspect.iscoroutine(work) and inspect.getcoroutinestate(work) == "CORO_CREATED":
                work.close()

        task.add_done_callback(done)

    async def _after(
        self, before: asyncio.Task[None] | None, work: Awaitable[None], what: str
    ) -> None:
        if before is not None:
            await asyncio.wait([before])
        await self._guard(work, what)

    async def _guard(self, work: Awaitable[Any], what: str) -> None:
        """One event's handling: a failure is logged; a lost database write is reconciled."""
        try:
            await work
        except CallCenterError as exc:
            _log.warning("ARI %s: %s", what, exc.detail)
        except TRANSIENT_DB_ERRORS as exc:
            _log.error("ARI %s: the database failed (%r); reconciling", what, exc)
            self.reconcile_soon(RECONCILE_RETRY_SECONDS)
        except Exception:
            # A fault in handling one event must not stop the others; it is logged
            # in full, and the next reconciliation repairs what it left undone.
            _log.exception("ARI %s failed", what)
            self.reconcile_soon(RECONCILE_RETRY_SECONDS)

    # -- callers -------------------------------------------------------------------

    async def _caller_arrived(self, channel: Channel, args: list[str]) -> None:
        view = await self._hand_in(channel, queue_from_args(args))
        await self._after_hand_in(channel, view)

    async def _hand_in(self, channel: Channel, queue: str | None) -> CallView:
        incoming = Incoming(
            peer_call_id=channel.id,
            ani=channel.caller.number or None,
            queue=queue,
            dialed=channel.dialplan.exten,
        )
        try:
            return await self.gateway.handle(ARI, incoming)
        except Unprocessable as exc:
            if exc.field != "queue" or queue is None:
                raise
            _log.warning("Stasis() named queue %r: %s; using the default queue", queue, exc.detail)
            return await self.gateway.handle(ARI, replace(incoming, queue=None))

    async def _after_hand_in(self, channel: Channel, view: CallView) -> None:
        """A new waiting caller is answered and hears music; a caller whose call ended is let go.

        A repeat (the same StasisStart twice, or a reconciliation that found a
        caller its StasisStart had just handed in) changes nothing at Asterisk.
        """
        if view.state in (CallState.waiting, CallState.connected):
            self._live.add(channel.id)
        if view.waiting:
            if view.created:
                if channel.state != "Up":
                    await self._quietly(self.rest.answer(channel.id))
                await self._quietly(self.rest.start_moh(channel.id, self.config.moh_class))
        elif view.state is not CallState.connected:
            # Our record is closed (the caller was given up on, or hung up before we
            # saw them): a channel left in the application would sit there forever.
            _log.info("ARI channel %s: its call is %s; hanging it up", channel.id, view.state)
            await self._quietly(self.rest.hangup(channel.id))

    async def _key(self, channel_id: str, key: str) -> None:
        if AGENT_LEG.match(channel_id):
            return
        loop = asyncio.get_running_loop()
        collector = self._collectors.get(channel_id)
        if collector is None:
            collector = DigitCollector(timeout=self.config.dtmf_timeout_seconds)
            self._collectors[channel_id] = collector
        number = collector.press(key, loop.time())
        self._arm_dtmf(channel_id, collector)
        if number is not None:
            await self._typed(channel_id, number)

    def _arm_dtmf(self, channel_id: str, collector: DigitCollector) -> None:
        old = self._dtmf_timers.pop(channel_id, None)
        if old is not None:
            old.cancel()
        deadline = collector.deadline
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        self._dtmf_timers[channel_id] = loop.call_at(deadline, self._dtmf_due, channel_id)

    def _dtmf_due(self, channel_id: str) -> None:
        self._dtmf_timers.pop(channel_id, None)
        self._in_lane(channel_id, self._dtmf_expired(channel_id), "DTMF timeout")

    async def _dtmf_expired(self, channel_id: str) -> None:
        collector = self._collectors.get(channel_id)
        if collector is None:
            return
        number = collector.expire(asyncio.get_running_loop().time())
        if number is not None:
            await self._typed(channel_id, number)

    async def _typed(self, channel_id: str, number: str) -> None:
        view = await self.gateway.handle(ARI, Digits(peer_call_id=channel_id, digits=number))
        _log.info("ARI channel %s typed a customer number: %s", channel_id, view.digits)

    async def _channel_gone(self, channel: Channel, cause: str | None) -> None:
        if AGENT_LEG_HALF.match(channel.id):
            return  # the dialled side of a Local agent leg; the leg itself reports
        if AGENT_LEG.match(channel.id):
            await self._agent_gone(channel, cause)
            return
        if channel.id in self._gone:
            return  # the second and third event of one hang-up
        await self._caller_gone(channel.id, cause)

    async def _caller_gone(self, channel_id: str, cause: str | None) -> None:
        self._forget_dtmf(channel_id)
        self._live.discard(channel_id)
        await self.gateway.handle(ARI, Hangup(peer_call_id=channel_id, cause=cause))
        self._remember_gone(channel_id)
        for leg in [leg for leg in self._legs.values() if leg.caller == channel_id]:
            if not leg.answered.done():
                # ``connect`` is waiting for this leg: it fails and releases the leg.
                leg.answered.set_exception(PeerRequestFailed("the caller hung up"))
            else:
                await self._release_leg(leg)

    def _forget_dtmf(self, channel_id: str) -> None:
        self._collectors.pop(channel_id, None)
        timer = self._dtmf_timers.pop(channel_id, None)
        if timer is not None:
            timer.cancel()

    def _remember_gone(self, channel_id: str) -> None:
        self._gone[channel_id] = None
        while len(self._gone) > GONE_MEMORY:
            self._gone.popitem(last=False)

    # -- agents: the connector ------------------------------------------------------------

    async def connect(self, call: PeerCall, agent: AgentEndpoint) -> None:
        """Ring the agent's endpoint; once it answers, bridge it with the caller.

        Returns when both are in one mixing bridge; raises when the endpoint
        cannot be reached or the caller is gone. Each attempt rings a new leg,
        so a repeat after a failure or a timeout starts afresh.
        """
        for earlier in self._legs.values():
            if earlier.call_id == call.id and earlier.bridged:
                return  # a repeat of a connect that succeeded after all
        loop = asyncio.get_running_loop()
        leg = AgentLeg(
            call_id=call.id,
            caller=call.peer_call_id,
            channel_id=f"cc-agent-{call.id}-{uuid.uuid4().hex[:8]}",
            answered=loop.create_future(),
        )
        self._legs[leg.channel_id] = leg
        try:
            await self.rest.originate(
                endpoint=agent.endpoint,
                app=self.config.app,
                app_args=(AGENT_ARG, str(call.id), call.peer_call_id),
                channel_id=leg.channel_id,
                caller_id=call.record.ani,
                ring_seconds=self.config.ring_seconds,
                variables={"CALLCENTER_CALL_ID": str(call.id)},
            )
            # Asterisk ends the ring itself (the originate's timeout) and reports the leg
            # destroyed; this bound only covers a report that never comes.
            limit = self.config.ring_seconds + self.config.command_seconds / 2
            try:
                await asyncio.wait_for(asyncio.shield(leg.answered), limit)
            except TimeoutError:
                raise AgentNotReached(
                    f"the agent's endpoint {agent.endpoint} did not answer within {limit:g} s "
                    "and Asterisk did not report the leg"
                ) from None
        except BaseException:
            # Not answered in time, refused, or the caller left: this leg must not ring on.
            if not leg.answered.done():
                leg.answered.cancel()  # an answer that comes now finds nobody waiting
            if not leg.bridged:
                self._legs.pop(leg.channel_id, None)
                self._spawn(self._release_leg(leg), f"release agent leg {leg.channel_id}")
            raise

    async def ring_back(
        self, call: PeerCall, agent: AgentEndpoint, number: str, ring_seconds: float
    ) -> Ring:
        """This peer does not ring callers back (``rings_back`` is false)."""
        raise PeerFailed(f"{self.peer} does not ring callers back")

    async def hangup(self, call: PeerCall) -> None:
        """End the caller's channel; its events then end the call and release any agent leg."""
        try:
            await self.rest.hangup(call.peer_call_id)
        except PeerRequestFailed as exc:
            if exc.peer_status != 404:  # gone already is what we wanted
                raise

    async def _agent_answered(self, channel: Channel) -> None:
        leg = self._legs.get(channel.id)
        if leg is None or leg.answered.done():
            # Nobody waits for this leg any more (the connect timed out, or this
            # process restarted): the bridger has moved on, so must the phone.
            _log.info("ARI agent leg %s answered after its connect gave up; hanging up", channel.id)
            await self._quietly(self.rest.hangup(channel.id))
            return
        try:
            await self.rest.stop_moh(leg.caller)
            await self.rest.create_bridge(leg.bridge_id, name=f"call-{leg.call_id}")
            await self.rest.add_channels(leg.bridge_id, [leg.caller, leg.channel_id])
        except PeerRequestFailed as exc:
            # The caller may be put back in the queue: give them their music back.
            await self._quietly(self.rest.start_moh(leg.caller, self.config.moh_class))
            if not leg.answered.done():
                leg.answered.set_exception(exc)
            return
        if leg.answered.done():
            # ``connect`` gave up while we bridged: it hangs the leg up and the call goes
            # back to the queue, where the caller hears music again.
            await self._quietly(self.rest.start_moh(leg.caller, self.config.moh_class))
            return
        leg.bridged = True
        leg.answered.set_result(None)
        _log.info("ARI call %s: caller %s bridged with %s", leg.call_id, leg.caller, channel.id)

    async def _agent_gone(self, channel: Channel, cause: str | None) -> None:
        leg = self._legs.get(channel.id)
        if leg is None:
            return
        if not leg.answered.done():
            detail = f"the agent's endpoint did not answer ({cause or 'no cause'})"
            leg.answered.set_exception(AgentNotReached(detail))
            self._legs.pop(channel.id, None)
            return
        if leg.bridged:
            # The agent hung up: the conversation is over for the caller too.
            _log.info("ARI call %s: the agent hung up; hanging up the caller", leg.call_id)
            await self._quietly(self.rest.hangup(leg.caller))
        await self._release_leg(leg)

    async def _release_leg(self, leg: AgentLeg) -> None:
        self._legs.pop(leg.channel_id, None)
        await self._quietly(self.rest.hangup(leg.channel_id))
        await self._quietly(self.rest.destroy_bridge(leg.bridge_id))

    async def _quietly(self, request: Awaitable[Any]) -> None:
        """A command whose failure changes nothing we record: 404 is fine, the rest is logged."""
        try:
            await request
        except PeerRequestFailed as exc:
            if exc.peer_status != 404:
                _log.warning("%s", exc.detail)

    # -- calls ended on our side ------------------------------------------------------------

    async def _releaser(self) -> None:
        """Let go of callers whose call ended here, not at the phone.

        An agent ends the call in the panel, a supervisor ends it, or the queue
        gives up on it (maximum wait with nowhere to overflow): the record is
        closed but the caller's channel still sits in the application, on hold
        music or in a bridge. Checked every ``release_seconds`` for the
        channels this adapter holds; each is hung up, and its hang-up events
        then release the agent's leg and the bridge.
        """
        while True:
            await asyncio.sleep(self.config.release_seconds)
            if not self._live:
                continue
            try:
                ended = await self.gateway.ended_calls(ARI, list(self._live))
            except TRANSIENT_DB_ERRORS as exc:
                _log.warning("ARI: could not check for ended calls (%r)", exc)
                continue
            for channel_id, state in ended:
                self._live.discard(channel_id)
                _log.info("ARI call of channel %s ended %s here; hanging up", channel_id, state)
                self._in_lane(channel_id, self._quietly(self.rest.hangup(channel_id)), "release")

    # -- reconciling -------------------------------------------------------------------

    def reconcile_soon(self, delay: float = 0.0) -> None:
        if delay <= 0:
            self._reconcile_wanted.set()
        else:
            asyncio.get_running_loop().call_later(delay, self._reconcile_wanted.set)

    async def _reconciler(self) -> None:
        # Once at every (re)start: a restarted reconciler may have taken a request with it.
        self.reconcile_soon()
        while True:
            await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            if not self.connected.is_set():
                continue  # the next connection asks again
            try:
                await self.reconcile()
            except (CallCenterError, *TRANSIENT_DB_ERRORS) as exc:
                detail = exc.detail if isinstance(exc, CallCenterError) else repr(exc)
                _log.warning("ARI reconciliation failed (%s); trying again", detail)
                self.reconcile_soon(RECONCILE_RETRY_SECONDS)
            except Exception:
                _log.exception("ARI reconciliation failed; trying again")
                self.reconcile_soon(RECONCILE_RETRY_SECONDS)

    async def reconcile(self) -> dict[str, int]:
        """Bring our records in line with the channels Asterisk has in the application."""
        open_calls = await self.gateway.open_calls(ARI)
        ours = [c for c in await self.rest.channels() if c.in_app(self.config.app)]
        callers = {c.id: c for c in ours if agent_args(c) is None}
        done: dict[str, int] = {"gone": 0, "adopted": 0, "orphan_legs": 0}
        work: list[asyncio.Task[None]] = []

        def run(key: str, coro: Awaitable[None], what: str) -> None:
            self._in_lane(key, coro, what)
            work.append(self._lanes[key])

        for channel_id in sorted(open_calls - callers.keys()):
            done["gone"] += 1
            run(channel_id, self._caller_gone(channel_id, "gone from Asterisk"), "reconcile gone")
        for channel in callers.values():
            if channel.id not in open_calls:
                done["adopted"] += 1
            run(channel.id, self._adopt(channel), "reconcile adopt")
        for channel in ours:
            found = agent_args(channel)
            if found is None:
                continue
            call_id, caller = found
            if caller not in callers:
                done["orphan_legs"] += 1
                run(channel.id, self._quietly(self.rest.hangup(channel.id)), "orphan leg")
            elif channel.id not in self._legs:
                # Bridged before this process started: tear it down when a side hangs up.
                future = asyncio.get_running_loop().create_future()
                future.set_result(None)
                self._legs[channel.id] = AgentLeg(call_id, caller, channel.id, future, True)
        await asyncio.gather(*work, return_exceptions=True)
        self.reconciles += 1
        if self.metrics is not None:
            for action, n in done.items():
                self.metrics.reconciled.labels(action).inc(n)
        if any(done.values()):
            _log.warning("ARI reconciled with Asterisk: %s", done)
        return done

    async def _adopt(self, channel: Channel) -> None:
        args = (channel.dialplan.app_data or "").split(",")[1:]
        view = await self._hand_in(channel, queue_from_args(args))
        await self._after_hand_in(channel, view)


def _cause(event: Any) -> str | None:
    if isinstance(event, ChannelDestroyed) and event.cause_txt:
        return event.cause_txt
    if isinstance(event, ChannelHangupRequest | ChannelDestroyed) and event.cause is not None:
        return f"cause {event.cause}"
    return None
