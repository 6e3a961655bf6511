"""The Asterisk ARI adapter: a websocket client for Stasis events, REST for commands.

The service connects to ``/ari/events?app=<app>`` as a client and keeps
reconnecting with backoff. What Asterisk tells it becomes the gateway's
call events:

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

**Callbacks** (``CALLCENTER_ARI_CALLBACK_ENDPOINT`` set, e.g.
``PJSIP/{number}@trunk``; unset, the gateway offers Asterisk callers none).
When the gateway's view of a holding caller says ``offer_callback`` (at the
hand-in, and again after typed digits identified them, since their tier may
now qualify; not on a timer: the estimated wait the rule looks at shrinks as
the caller moves up, and re-asking for every holding caller on every sweep
costs a query each), the adapter plays ``CALLCENTER_ARI_CALLBACK_PROMPT``
(none: the offer stands silently) and music resumes at its
``PlaybackFinished``. A **lone 1**, ended like a customer number (``#`` or
the DTMF pause), takes it; ``12``, ``1212…`` and every other number stay
customer numbers, and without an offer so does ``1`` (a customer whose number
is ``1`` cannot type it where callbacks are offered). Then, after
``CALLCENTER_ARI_CALLBACK_CONFIRM_PROMPT``, ``#`` alone or silence for
``CALLCENTER_ARI_CALLBACK_CONFIRM_SECONDS`` confirms the calling number, and
digits then ``#`` name another; the adapter hands the gateway a
``CallbackRequest`` and, once the call waits as a virtual call, hangs the
caller's channel up (a hang-up the gateway ignores: the call keeps its
place). A number the gateway refuses (422) leaves the caller holding with the
offer standing; a repeat is a no-op.

``ring_back`` originates the dial string with ``{number}`` filled in
(``cc-callback-<call id>-<attempt>``, ``appArgs=callback,<call id>,<the call's
channel>``, ``timeout`` = the ring time). When it enters the application
(answered) ``ring_back`` returns at once and the bridger records the answer;
the caller hears music while the agent's endpoint is rung and bridged exactly
as for ``connect``. A ring that rang out, was busy, could not go out or was
destroyed is ``CallerNotReached``. An agent who then does not answer is a
failed connect (``connect_failed``, as Twilio reports its ``<Dial>``): the
call is a virtual call again in its place, the agent not responding, and the
caller, who picked up, is let go until the next agent takes the call. The
hang-up of an answered callback leg (or of the agent) ends the call: the
gateway gets the call's own channel's ``Hangup``. A call ended here while its
callback rings has the ring called off (``cancelled``); one ended just as the
caller picked up is let go by the bridger, before any agent is rung. The
reconciliation leaves callback calls to their legs: a leg still in the
application is kept (and adopted after a restart), one that vanished while
nobody listened ends its call.

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
import math
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
    CallerNotReached,
    Conflict,
    MalformedEvent,
    NotFound,
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
    Playback,
    PlaybackFinished,
    StasisStart,
    parse_event,
)
from callcenter.telephony_adapters.ari_rest import AriRest
from callcenter.telephony_adapters.base import (
    ARI,
    AgentEndpoint,
    CallbackRequest,
    Digits,
    Hangup,
    Incoming,
    PeerCall,
    Ring,
)
from callcenter.telephony_adapters.dtmf import CALLBACK_KEY, CallbackChoice, Choice, DigitCollector
from callcenter.telephony_adapters.gateway import CallView, TelephonyGateway

_log = logging.getLogger(__name__)


#: Our agent legs and their bridges: ``cc-agent-<call id>-<attempt>``, ``cc-bridge-…``.
AGENT_LEG = re.compile(r"^cc-agent-(\d+)-([0-9a-f]{8})$")
#: The other half of an agent leg that is a Local channel (``<leg id>;2``): not a caller.
AGENT_LEG_HALF = re.compile(r"^cc-agent-\d+-[0-9a-f]{8};\d+$")
#: First ``appArgs`` word of an agent leg: ``agent,<call id>,<caller channel>``.
AGENT_ARG = "agent"
#: Our rings of callers who took a callback: ``cc-callback-<call id>-<attempt>``.
CALLBACK_LEG = re.compile(r"^cc-callback-(\d+)-([0-9a-f]{8})$")
#: The other half of a callback leg that is a Local channel: not a caller.
CALLBACK_LEG_HALF = re.compile(r"^cc-callback-\d+-[0-9a-f]{8};\d+$")
#: First ``appArgs`` word of a callback leg: ``callback,<call id>,<the call's channel>``.
CALLBACK_ARG = "callback"
#: Our prompts' playback ids.
PROMPT_PREFIX = "cc-prompt-"
#: Hang-up causes (Q.850) of a callback that could not ring at all, rather than
#: one nobody picked up: unallocated or malformed number, no route, network
#: or trunk failure, congestion.
FAILED_CAUSES = frozenset({1, 2, 3, 27, 28, 34, 38, 41, 42, 47, 58})
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
    #: Dial string of a callback (``{number}``: E.164, ``{digits}``: without +);
    #: None: this adapter rings nobody back, so its callers are offered no callback.
    callback_endpoint: str | None = None
    callback_caller_id: str | None = None
    #: Media played with the offer, and once the caller took it (None: silence).
    callback_prompt: str | None = None
    callback_confirm_prompt: str | None = None
    callback_confirm_seconds: float = 8.0

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
            callback_endpoint=settings.ari_callback_endpoint,
            callback_caller_id=settings.ari_callback_caller_id,
            callback_prompt=settings.ari_callback_prompt,
            callback_confirm_prompt=settings.ari_callback_confirm_prompt,
            callback_confirm_seconds=settings.ari_callback_confirm_seconds,
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


@dataclass
class CallbackLeg:
    """One ring of a caller who took a callback: its channel and the call it serves.

    ``call_channel`` is the call's own channel (its peer call id), hung up when
    the caller took the callback; the gateway knows the call by it.
    """

    call_id: int
    call_channel: str
    channel_id: str
    answered: asyncio.Future[None]
    #: Answered and handed back to the bridger (``ring_back`` returned): the
    #: leg's hang-up now ends the call.
    bridged: bool = False
    #: Hung up by us because the call ended while it rang.
    cancelled: bool = False
    gone: bool = False

    @property
    def picked_up(self) -> bool:
        done = self.answered.done() and not self.answered.cancelled()
        return done and self.answered.exception() is None


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


def callback_args(channel: Channel) -> tuple[int, str] | None:
    """``(call id, the call's channel)`` if ``channel`` is one of our callback legs in the app."""
    if not CALLBACK_LEG.match(channel.id):
        return None
    parts = (channel.dialplan.app_data or "").split(",")
    if len(parts) >= 4 and parts[1] == CALLBACK_ARG and parts[2].isdigit() and parts[3]:
        return int(parts[2]), ",".join(parts[3:])
    return None


def dial_string(template: str, number: str) -> str:
    """The callback's dial string for E.164 ``number`` (``{number}``, ``{digits}``)."""
    return template.format(number=number, digits=number.lstrip("+"))


def ring_result(cause: int | None) -> str:
    """``failed`` for a ring that could not go out (by its cause), else ``no_answer``."""
    return "failed" if cause in FAILED_CAUSES else "no_answer"


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
    #: Set per adapter: only with a callback dial string (``callback_endpoint``).
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
        #: Its callers are offered a callback only when it can ring them back.
        self.rings_back = config.callback_endpoint is not None
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
        #: Callers offered a callback: a lone 1 now takes it.
        self._offered: set[str] = set()
        #: Callers who took it and are choosing the number, with the timers of their choice.
        self._choices: dict[str, CallbackChoice] = {}
        self._choice_timers: dict[str, asyncio.TimerHandle] = {}
        #: Our prompts playing: playback id -> channel.
        self._prompts: dict[str, str] = {}
        #: Callback rings by their channel, and by the channel of the call each serves.
        self._callback_legs: dict[str, CallbackLeg] = {}
        self._leg_of_call: dict[str, CallbackLeg] = {}
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
            for handle in [*self._dtmf_timers.values(), *self._choice_timers.values()]:
                handle.cancel()
            futures = [leg.answered for leg in self._legs.values()]
            futures += [leg.answered for leg in self._callback_legs.values()]
            for future in futures:
                if not future.done():
                    future.cancel()
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
        if isinstance(event, PlaybackFinished):
            prompted = self._prompts.get(event.playback.id)
            if prompted is not None:
                work = self._prompt_finished(event.playback)
                self._in_lane(prompted, work, "PlaybackFinished")
            return
        channel = event.channel
        if isinstance(event, StasisStart):
            if event.args[:1] == [AGENT_ARG] and AGENT_LEG.match(channel.id):
                self._in_lane(channel.id, self._agent_answered(channel), "agent answered")
            elif event.args[:1] == [CALLBACK_ARG] and CALLBACK_LEG.match(channel.id):
                self._in_lane(channel.id, self._callback_answered(channel), "callback answered")
            else:
                self._in_lane(channel.id, self._caller_arrived(channel, event.args), "StasisStart")
        elif isinstance(event, ChannelDtmfReceived):
            self._in_lane(channel.id, self._key(channel.id, event.digit), "DTMF")
        elif isinstance(event, GONE):
            gone = self._channel_gone(channel, _cause(event), _cause_code(event))
            self._in_lane(channel.id, gone, event.type)

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
        if view.waiting and view.call is not None and view.call.callback is not None:
            # The caller took a callback, and their channel outlived the hang-up we
            # sent (or is handed in again): they need not hold; the call keeps its place.
            self._live.discard(channel.id)
            _log.info("ARI channel %s waits as a callback; hanging it up", channel.id)
            await self._quietly(self.rest.hangup(channel.id))
        elif view.waiting:
            if view.created:
                if channel.state != "Up":
                    await self._quietly(self.rest.answer(channel.id))
                await self._quietly(self.rest.start_moh(channel.id, self.config.moh_class))
            await self._offer(channel.id, view)
        elif view.state is not CallState.connected:
            # Our record is closed (the caller was given up on, or hung up before we
            # saw them): a channel left in the application would sit there forever.
            _log.info("ARI channel %s: its call is %s; hanging it up", channel.id, view.state)
            await self._quietly(self.rest.hangup(channel.id))

    async def _key(self, channel_id: str, key: str) -> None:
        if _our_leg(channel_id):
            return
        loop = asyncio.get_running_loop()
        choice = self._choices.get(channel_id)
        if choice is not None:
            # The caller took the callback: these keys choose the number to ring.
            picked = choice.press(key, loop.time())
            if picked is None:
                self._arm_choice(channel_id)
            else:
                await self._choose(channel_id, picked)
            return
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
        if number == CALLBACK_KEY and channel_id in self._offered:
            await self._took_callback(channel_id)
            return
        view = await self.gateway.handle(ARI, Digits(peer_call_id=channel_id, digits=number))
        _log.info("ARI channel %s typed a customer number: %s", channel_id, view.digits)
        # Identified, the caller may now be offered a callback (their tier, their wait).
        if view.holding:
            await self._offer(channel_id, view)

    # -- callbacks: the offer and the caller's choice ------------------------------------

    async def _offer(self, channel_id: str, view: CallView) -> None:
        """Offer a holding caller a callback, once, when the gateway's view says so.

        The prompt (``callback_prompt``) says "press 1"; without one the offer
        stands silently. From now on a lone 1 (then # or the pause) takes it.
        """
        if not view.offer_callback or channel_id in self._offered or channel_id in self._choices:
            return
        self._offered.add(channel_id)
        _log.info("ARI channel %s: offered a callback", channel_id)
        if self.config.callback_prompt:
            await self._prompt(channel_id, self.config.callback_prompt)

    async def _took_callback(self, channel_id: str) -> None:
        """The caller pressed 1: # (or silence) keeps the calling number, digits name another.

        The offer stands until the caller is gone or bridged: after a number the
        gateway refused they may try again, and a repeat is the gateway's no-op.
        """
        loop = asyncio.get_running_loop()
        self._choices[channel_id] = CallbackChoice(
            timeout=self.config.callback_confirm_seconds, since=loop.time()
        )
        _log.info("ARI channel %s takes the callback; confirming the number", channel_id)
        if self.config.callback_confirm_prompt:
            await self._prompt(channel_id, self.config.callback_confirm_prompt)
        self._arm_choice(channel_id)

    def _arm_choice(self, channel_id: str) -> None:
        old = self._choice_timers.pop(channel_id, None)
        if old is not None:
            old.cancel()
        choice = self._choices.get(channel_id)
        if choice is None:
            return
        loop = asyncio.get_running_loop()
        self._choice_timers[channel_id] = loop.call_at(
            choice.deadline, self._choice_due, channel_id
        )

    def _choice_due(self, channel_id: str) -> None:
        self._choice_timers.pop(channel_id, None)
        self._in_lane(channel_id, self._choice_expired(channel_id), "callback number timeout")

    async def _choice_expired(self, channel_id: str) -> None:
        choice = self._choices.get(channel_id)
        if choice is None:
            return
        now = asyncio.get_running_loop().time()
        if channel_id in self._prompts.values():
            # The confirm prompt still plays: the window counts from its end.
            choice.restart(now)
            self._arm_choice(channel_id)
            return
        picked = choice.expire(now)
        if picked is None:
            self._arm_choice(channel_id)
        else:
            await self._choose(channel_id, picked)

    async def _choose(self, channel_id: str, picked: Choice) -> None:
        """Hand the callback to the gateway; once the call waits as one, let the caller go.

        A number the gateway refuses (422: not dialable, premium-rate, or no
        calling number to fall back on) leaves the caller holding, where they
        were, and the offer standing. A repeat changes nothing.
        """
        self._forget_choice(channel_id)
        request = CallbackRequest(peer_call_id=channel_id, number=picked.number)
        try:
            view = await self.gateway.handle(ARI, request)
        except Unprocessable as exc:
            _log.warning(
                "ARI channel %s: no callback (%s: %s); the caller keeps holding in their place",
                channel_id,
                exc.field,
                exc.detail,
            )
            return
        except (Conflict, NotFound) as exc:
            _log.warning("ARI channel %s: no callback: %s", channel_id, exc.detail)
            return
        if view.note is not None:
            _log.info("ARI channel %s: %s", channel_id, view.note)
        call = view.call
        if call is None or call.callback is None or not view.waiting:
            return
        _log.info(
            "ARI call %s waits in its place as a callback to %s; hanging up channel %s",
            call.id,
            call.callback.number,
            channel_id,
        )
        self._live.discard(channel_id)
        await self._quietly(self.rest.hangup(channel_id))

    def _forget_choice(self, channel_id: str) -> None:
        self._choices.pop(channel_id, None)
        timer = self._choice_timers.pop(channel_id, None)
        if timer is not None:
            timer.cancel()

    async def _prompt(self, channel_id: str, media: str) -> None:
        """Play ``media`` to a holding caller; the music comes back when it is over."""
        playback_id = f"{PROMPT_PREFIX}{uuid.uuid4().hex[:12]}"
        self._prompts[playback_id] = channel_id
        try:
            await self.rest.play(channel_id, media, playback_id)
        except PeerRequestFailed as exc:
            self._prompts.pop(playback_id, None)
            if exc.peer_status != 404:
                _log.warning("ARI channel %s: prompt %s not played: %s", channel_id, media,
                             exc.detail)  # fmt: skip

    async def _prompt_finished(self, playback: Playback) -> None:
        channel_id = self._prompts.pop(playback.id, None)
        if channel_id is None:
            return
        if playback.state == "failed":
            _log.warning("ARI channel %s: prompt %s failed to play (is the sound installed?)",
                         channel_id, playback.id)  # fmt: skip
        # Playing a sound stops the music on hold; the caller gets it back.
        await self._music_back(channel_id)

    def _holding(self, channel_id: str) -> bool:
        """Whether the caller of ``channel_id`` still waits on the line, not yet bridged."""
        if channel_id not in self._live or channel_id in self._gone:
            return False
        return not any(leg.caller == channel_id and leg.bridged for leg in self._legs.values())

    async def _stop_prompts(self, channel_id: str) -> None:
        for playback_id, prompted in list(self._prompts.items()):
            if prompted == channel_id:
                del self._prompts[playback_id]
                await self._quietly(self.rest.stop_playback(playback_id))

    async def _channel_gone(self, channel: Channel, cause: str | None, code: int | None) -> None:
        if AGENT_LEG_HALF.match(channel.id) or CALLBACK_LEG_HALF.match(channel.id):
            return  # the dialled side of a Local leg of ours; the leg itself reports
        if AGENT_LEG.match(channel.id):
            await self._agent_gone(channel, cause)
            return
        if CALLBACK_LEG.match(channel.id):
            await self._callback_leg_gone(channel.id, cause, code)
            return
        if channel.id in self._gone:
            return  # the second and third event of one hang-up
        await self._caller_gone(channel.id, cause)

    async def _caller_gone(self, channel_id: str, cause: str | None) -> None:
        self._forget_keys(channel_id)
        self._live.discard(channel_id)
        await self.gateway.handle(ARI, Hangup(peer_call_id=channel_id, cause=cause))
        self._remember_gone(channel_id)
        for leg in [leg for leg in self._legs.values() if leg.caller == channel_id]:
            if not leg.answered.done():
                # ``connect`` is waiting for this leg: it fails and releases the leg.
                leg.answered.set_exception(PeerRequestFailed("the caller hung up"))
            else:
                await self._release_leg(leg)

    def _forget_keys(self, channel_id: str) -> None:
        """Forget what the caller was typing, and any callback offer or choice."""
        self._collectors.pop(channel_id, None)
        timer = self._dtmf_timers.pop(channel_id, None)
        if timer is not None:
            timer.cancel()
        self._offered.discard(channel_id)
        self._forget_choice(channel_id)
        for playback_id, prompted in list(self._prompts.items()):
            if prompted == channel_id:
                del self._prompts[playback_id]

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
        await self._ring_agent(call.id, call.peer_call_id, agent, call.record.ani)

    async def _ring_agent(
        self, call_id: int, caller: str, agent: AgentEndpoint, caller_id: str | None
    ) -> None:
        """Ring ``agent`` and bridge the answered leg with channel ``caller``."""
        loop = asyncio.get_running_loop()
        leg = AgentLeg(
            call_id=call_id,
            caller=caller,
            channel_id=f"cc-agent-{call_id}-{uuid.uuid4().hex[:8]}",
            answered=loop.create_future(),
        )
        self._legs[leg.channel_id] = leg
        try:
            await self.rest.originate(
                endpoint=agent.endpoint,
                app=self.config.app,
                app_args=(AGENT_ARG, str(call_id), caller),
                channel_id=leg.channel_id,
                caller_id=caller_id,
                ring_seconds=self.config.ring_seconds,
                variables={"CALLCENTER_CALL_ID": str(call_id)},
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

    # -- callbacks: ringing the caller back ------------------------------------------------

    async def ring_back(
        self, call: PeerCall, agent: AgentEndpoint, number: str, ring_seconds: float
    ) -> Ring:
        """Ring the caller of a callback at ``number``; once they answer, ring the agent and
        bridge the two exactly as ``connect`` bridges a holding caller.

        The caller is rung first (``POST /channels`` with the callback dial
        string, ``timeout`` = ``ring_seconds``) into the application as
        ``cc-callback-<call id>-<attempt>``, ``appArgs=callback,<call id>,<the
        call's channel>``. Returns ``Ring(leg=<that channel>, answered=True)``
        as soon as they picked up (the bridger records the answer, and from
        then on the leg's hang-up ends the call); they hear music while the
        agent's endpoint is rung and bridged, as Twilio dials the agent only
        once its callee answered. An agent who then does not answer
        (``AgentNotReached``) is reported like a failed connect
        (``TelephonyGateway.connect_failed``): the call is a virtual call
        again in its place, the agent *not responding*, and the caller, who
        picked up, is let go to be rung again by the next agent. When the call
        ended while the caller's phone rang, no agent is rung: the bridger
        finds the call over and lets the caller go.

        Raises ``CallerNotReached`` when the caller's phone rang out, was
        busy, could not be rung (``failed``) or was hung up before the answer
        was handed back; the leg is then hung up, so a ring that may have gone
        out never rings on.
        """
        template = self.config.callback_endpoint
        if template is None:
            raise CallerNotReached(
                "CALLCENTER_ARI_CALLBACK_ENDPOINT is not set: Asterisk rings nobody back",
                result="failed",
            )
        endpoint = dial_string(template, number)
        loop = asyncio.get_running_loop()
        leg = CallbackLeg(
            call_id=call.id,
            call_channel=call.peer_call_id,
            channel_id=f"cc-callback-{call.id}-{uuid.uuid4().hex[:8]}",
            answered=loop.create_future(),
        )
        self._callback_legs[leg.channel_id] = leg
        self._leg_of_call[leg.call_channel] = leg
        # Checked by the releaser: a call ended here while it rings calls the ring off.
        self._live.add(leg.call_channel)
        try:
            await self._ring_caller(leg, endpoint, number, ring_seconds)
            view = await self.gateway.view(ARI, leg.call_channel)
            if leg.gone:
                raise CallerNotReached(
                    "the caller hung up the callback at once", result="no_answer"
                )
        except BaseException:
            if not leg.answered.done():
                leg.answered.cancel()
            self._drop_callback_leg(leg)
            if not leg.gone:
                self._spawn(self._quietly(self.rest.hangup(leg.channel_id)),
                            f"release callback leg {leg.channel_id}")  # fmt: skip
            raise
        # From here the leg's hang-up ends the call.
        leg.bridged = True
        if view.state is CallState.connected:
            work = self._connect_callback(leg, agent, number, call.bridge_id)
            self._spawn(work, f"connect callback {leg.channel_id}")
        else:
            # Ended while it rang (a supervisor): no agent to ring. The bridger hears
            # it was answered, finds the call over and hangs this leg up.
            _log.warning("ARI call %s: the callback was answered after the call ended (%s)",
                         call.id, view.state)  # fmt: skip
        return Ring(leg=leg.channel_id, answered=True)

    async def _connect_callback(
        self, leg: CallbackLeg, agent: AgentEndpoint, number: str, bridge_id: int | None
    ) -> None:
        """Ring the agent for a caller who picked up their callback, and bridge the two."""
        try:
            await self._ring_agent(leg.call_id, leg.channel_id, agent, number)
        except CallerNotReached:
            return  # the caller hung up first: their leg's hang-up ended the call
        except (AgentNotReached, PeerRequestFailed) as exc:
            _log.warning("ARI call %s: the agent's endpoint failed after the caller answered "
                         "the callback (%s); putting it back", leg.call_id, exc.detail)  # fmt: skip
            # Not the caller's doing: their hang-up, which comes now, must not end the call.
            self._drop_callback_leg(leg)
            leg.bridged = False
            await self.gateway.connect_failed(
                ARI, leg.call_channel, f"callback: {exc.detail}", bridge_id=bridge_id
            )
            await self._quietly(self.rest.hangup(leg.channel_id))
            return
        _log.info("ARI call %s: the rung-back caller %s is bridged with %s", leg.call_id,
                  leg.channel_id, agent.name)  # fmt: skip

    async def _ring_caller(
        self, leg: CallbackLeg, endpoint: str, number: str, ring_seconds: float
    ) -> None:
        """Originate the callback leg; returns once it answered (it entered the application)."""
        try:
            await self.rest.originate(
                endpoint=endpoint,
                app=self.config.app,
                app_args=(CALLBACK_ARG, str(leg.call_id), leg.call_channel),
                channel_id=leg.channel_id,
                caller_id=self.config.callback_caller_id,
                ring_seconds=max(1, math.ceil(ring_seconds)),
                variables={"CALLCENTER_CALL_ID": str(leg.call_id)},
            )
        except PeerRequestFailed as exc:
            # Refused (a dial string Asterisk cannot use) or no answer from Asterisk:
            # the leg we named is hung up all the same, so it never rings on.
            raise CallerNotReached(
                f"Asterisk could not ring {number} ({endpoint}): {exc.detail}", result="failed"
            ) from exc
        _log.info("ARI call %s: ringing the caller back at %s (%s)", leg.call_id, number,
                  leg.channel_id)  # fmt: skip
        # Asterisk ends the ring at the originate's timeout and reports the leg destroyed;
        # this bound only covers a report that never comes.
        limit = ring_seconds + self.config.command_seconds / 2
        try:
            await asyncio.wait_for(asyncio.shield(leg.answered), limit)
        except TimeoutError:
            raise CallerNotReached(
                f"{number} did not answer within {limit:g} s and Asterisk did not report the ring"
            ) from None

    async def _callback_answered(self, channel: Channel) -> None:
        """The caller picked up: they hear music while the agent's phone rings."""
        leg = self._callback_legs.get(channel.id)
        if leg is None or leg.answered.done():
            # Nobody waits for this ring any more (it gave up, or this process restarted).
            _log.info("ARI callback leg %s answered after its ring gave up; hanging up",
                      channel.id)  # fmt: skip
            await self._quietly(self.rest.hangup(channel.id))
            return
        await self._quietly(self.rest.start_moh(channel.id, self.config.moh_class))
        leg.answered.set_result(None)
        _log.info("ARI call %s: the caller answered the callback on %s", leg.call_id, channel.id)

    async def _callback_leg_gone(
        self, channel_id: str, cause: str | None, code: int | None
    ) -> None:
        leg = self._callback_legs.get(channel_id)
        if leg is None or leg.gone:
            return
        leg.gone = True
        if not leg.answered.done():
            result = "cancelled" if leg.cancelled else ring_result(code)
            leg.answered.set_exception(
                CallerNotReached(
                    f"the callback was not answered ({cause or 'no cause'})", result=result
                )
            )
            return  # ``ring_back`` lets go of the leg
        # The caller had picked up: the agent's ring for them is off, a conversation over.
        for agent_leg in [a for a in self._legs.values() if a.caller == channel_id]:
            if not agent_leg.answered.done():
                agent_leg.answered.set_exception(
                    CallerNotReached(
                        "the caller hung up the callback before the agent answered",
                        result="no_answer",
                    )
                )
            else:
                await self._release_leg(agent_leg)
        if leg.bridged:
            await self._end_callback_call(leg, cause)

    async def _end_callback_call(self, leg: CallbackLeg, cause: str | None) -> None:
        """The rung-back caller hung up (or the agent did): the call ends, completed."""
        self._drop_callback_leg(leg)
        delay = 0.05
        while True:
            hangup = Hangup(peer_call_id=leg.call_channel, cause=cause)
            view = await self.gateway.handle(ARI, hangup)
            if view.state is not CallState.connected or delay > self.config.command_seconds:
                break
            # The bridger records the answer right after ``ring_back`` returns; until it
            # has, the gateway takes this for the hang-up of a caller waiting to be rung.
            await asyncio.sleep(delay)
            delay *= 2
        _log.info("ARI call %s: the callback leg %s hung up; the call is %s", leg.call_id,
                  leg.channel_id, view.state)  # fmt: skip

    def _drop_callback_leg(self, leg: CallbackLeg) -> None:
        if self._callback_legs.get(leg.channel_id) is leg:
            del self._callback_legs[leg.channel_id]
        if self._leg_of_call.get(leg.call_channel) is leg:
            del self._leg_of_call[leg.call_channel]
            self._live.discard(leg.call_channel)

    async def hangup(self, call: PeerCall) -> None:
        """End the caller's channel (a callback's: its leg, ``call.leg``); its events then
        end the call and release any agent leg."""
        channel_id = call.leg or call.peer_call_id
        try:
            await self.rest.hangup(channel_id)
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
            await self._stop_prompts(leg.caller)
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
        # In conversation: a 1 pressed now is no callback.
        self._offered.discard(leg.caller)
        self._forget_choice(leg.caller)
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
                target = channel_id
                leg = self._leg_of_call.get(channel_id)
                if leg is not None:
                    # A callback: its ring (called off if still ringing) or its conversation.
                    target = leg.channel_id
                    leg.cancelled = not leg.answered.done()
                _log.info("ARI call of channel %s ended %s here; hanging up %s", channel_id,
                          state, target)  # fmt: skip
                self._in_lane(target, self._quietly(self.rest.hangup(target)), "release")

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
        # Callback legs the caller picked up; their calls are not among the open calls.
        rung = {c.id: c for c in ours if callback_args(c) is not None}
        callers = {c.id: c for c in ours if agent_args(c) is None and c.id not in rung}
        done: dict[str, int] = {"gone": 0, "adopted": 0, "orphan_legs": 0, "callbacks": 0}
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
        for channel in rung.values():
            if channel.id not in self._callback_legs:
                # Answered before this process started: its hang-up ends the call.
                done["callbacks"] += 1
                self._adopt_callback_leg(channel)
        for leg in list(self._callback_legs.values()):
            if leg.picked_up and not leg.gone and leg.channel_id not in rung:
                # Hung up while nobody listened: the conversation is over.
                done["gone"] += 1
                gone = self._callback_leg_gone(leg.channel_id, "gone from Asterisk", None)
                run(leg.channel_id, gone, "reconcile callback gone")
        for playback_id, prompted in list(self._prompts.items()):
            # Its end may have been missed: the caller gets their music back.
            del self._prompts[playback_id]
            if prompted in callers:
                run(prompted, self._music_back(prompted), "reconcile prompt")
        for channel in ours:
            found = agent_args(channel)
            if found is None:
                continue
            call_id, caller = found
            if caller not in callers and caller not in rung:
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

    def _adopt_callback_leg(self, channel: Channel) -> None:
        found = callback_args(channel)
        assert found is not None
        call_id, call_channel = found
        answered = asyncio.get_running_loop().create_future()
        answered.set_result(None)
        leg = CallbackLeg(call_id, call_channel, channel.id, answered, bridged=True)
        self._callback_legs[channel.id] = leg
        self._leg_of_call[call_channel] = leg
        self._live.add(call_channel)

    async def _music_back(self, channel_id: str) -> None:
        choice = self._choices.get(channel_id)
        if choice is not None:
            choice.restart(asyncio.get_running_loop().time())
            self._arm_choice(channel_id)
        if self._holding(channel_id):
            await self._quietly(self.rest.start_moh(channel_id, self.config.moh_class))

    async def _adopt(self, channel: Channel) -> None:
        args = (channel.dialplan.app_data or "").split(",")[1:]
        view = await self._hand_in(channel, queue_from_args(args))
        await self._after_hand_in(channel, view)


def _our_leg(channel_id: str) -> bool:
    """A leg we rang (an agent's, a callback), or the far half of one: not a holding caller."""
    return any(
        p.match(channel_id) for p in (AGENT_LEG, AGENT_LEG_HALF, CALLBACK_LEG, CALLBACK_LEG_HALF)
    )


def _cause_code(event: Any) -> int | None:
    if isinstance(event, ChannelHangupRequest | ChannelDestroyed):
        return event.cause
    return None


def _cause(event: Any) -> str | None:
    if isinstance(event, ChannelDestroyed) and event.cause_txt:
        return event.cause_txt
    if isinstance(event, ChannelHangupRequest | ChannelDestroyed) and event.cause is not None:
        return f"cause {event.cause}"
    return None
