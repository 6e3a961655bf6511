"""The telephone side of a simulated run: a PBX that speaks the generic webhook.

It does what a real PBX on the generic adapter does, from outside the
service: posts signed ``call.incoming``, ``call.digits`` and ``call.hangup``
events, follows what each answer says (``gather``: the caller types their
customer number), and takes the service's signed ``connect`` and ``hangup``
commands on its own callback URL. The signature is computed here, from the
documented scheme, rather than with the service's helper: a peer has its own
code, and a run that passes is then proof the scheme is what the docs say.

Each caller hangs up when their patience runs out while waiting (and some
ring again a little later, which may give them their place back); once
connected, they talk until they or the agent end the call. Offered a
callback (``offer_callback`` in an answer), some take it: they send
``call.callback_requested`` and hang up, and the service keeps their place;
when it sends ``callback``, the PBX rings them for a few seconds and answers
``answered`` (they talk as any connected caller) or ``no_answer``. The PBX keeps a
ledger of every call the service answered 2xx for, which a run's summary and
its test hold against the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from callcenter.simulation.distributions import lognormal, patience
from callcenter.simulation.population import Caller

_log = logging.getLogger(__name__)

HEADER = "Callcenter-Signature"
EVENTS_PATH = "/telephony/generic/events"
CALLBACK_PATH = "/pbx/commands"


def sign(secret: bytes, body: bytes, now: float) -> str:
    """The generic adapter's header: ``t=<unix seconds>,v1=<HMAC-SHA256 of "t.body">``."""
    t = int(now)
    digest = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


@dataclass
class PbxCall:
    """One call as the PBX sees it."""

    call_id: str  # the PBX's id (``peer_call_id`` in the service)
    caller: Caller
    queue: str
    sent_at: float  # perf_counter when call.incoming was sent
    patience: float
    talk: float  # how long the caller talks once connected, unless the agent ends first
    id: int | None = None  # the service's call id, from its first answer
    tier: str | None = None
    phase: str = "placing"  # placing, waiting, talking, ended
    outcome: str | None = None  # the service's final state as it answered the PBX
    ended_by: str | None = None  # caller, agent, cutoff
    connected_at: float | None = None  # perf_counter of the connect command
    connects: int = 0  # connect commands received: more than one is a fault
    callback: bool = False  # took a callback: hung up, waits for the service's ring
    #: perf_counter of the service's hang-up, kept for a call whose id is not known yet
    released_at: float | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class Steps:
    """When each call passed each step of the whole path (``perf_counter`` seconds),
    by the service's call id: the PBX and the agents mark, a benchmark reads."""

    def __init__(self) -> None:
        self.at: dict[int, dict[str, float]] = {}

    def mark(self, call_id: int, step: str, when: float | None = None) -> None:
        self.at.setdefault(call_id, {}).setdefault(step, when or time.perf_counter())


@dataclass
class PbxCounts:
    placed: int = 0
    refused: int = 0  # events the service did not answer 2xx
    failed: int = 0  # events that got no answer at all
    abandoned: int = 0
    connected: int = 0
    double_connects: int = 0


class Pbx:
    """Places simulated calls on the service and carries out its commands."""

    def __init__(
        self,
        base_url: str,
        secret: str,
        rng: random.Random,
        *,
        mean_patience: float,
        mean_talk: float,
        clock: Callable[[], float] = time.time,
        steps: Steps | None = None,
        callback_take: float = 0.5,
        callback_answer: float = 0.85,
        redial: float = 0.3,
    ) -> None:
        self.steps = steps or Steps()
        #: Of the callers offered a callback, the share who take it; of the rings,
        #: the share the caller picks up.
        self.callback_take = callback_take
        self.callback_answer = callback_answer
        #: The share of callers whose patience ran out who ring again a little later.
        self.redial = redial
        self.base_url = base_url.rstrip("/")
        self.secret = secret.encode()
        self.rng = rng
        self.mean_patience = mean_patience
        self.mean_talk = mean_talk
        self.clock = clock
        self.calls: dict[str, PbxCall] = {}
        self.by_id: dict[int, PbxCall] = {}
        self.counts = PbxCounts()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.callback_url = ""

    # -- the callback side ---------------------------------------------------------

    async def start(self) -> str:
        """Open the client session and serve the callback URL on 127.0.0.1; returns it."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200), timeout=aiohttp.ClientTimeout(total=30)
        )
        app = web.Application()
        app.router.add_post(CALLBACK_PATH, self._command)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        port = sock.getsockname()[1]
        self.callback_url = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
        return self.callback_url

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _command(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._signed(request.headers.get(HEADER, ""), body):
            return web.json_response({"detail": "bad signature"}, status=403)
        try:
            command = json.loads(body)
            action, call_id = command["action"], command["call_id"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"detail": "not a command"}, status=400)
        call = self.calls.get(call_id)
        if call is None or call.phase == "ended":
            return web.json_response({"detail": "no such call"}, status=410)
        if action == "connect":
            call.connects += 1
            if call.connects > 1:
                self.counts.double_connects += 1
                _log.error("call %s was told to connect %d times", call_id, call.connects)
            if call.phase != "talking":
                self._talking(call)
            return web.json_response({"ok": True})
        if action == "hangup":
            # The service may offer, connect and end a call before this PBX has read
            # the answer that gives its id: the release is marked once the id is known.
            call.released_at = time.perf_counter()
            if call.id is not None:
                self.steps.mark(call.id, "release", call.released_at)
            self._ended(call, "agent", outcome=None)
            return web.json_response({"ok": True})
        if action == "callback":
            return web.json_response({"result": await self._ring(call)})
        return web.json_response({"detail": f"unknown action {action!r}"}, status=400)

    async def _ring(self, call: PbxCall) -> str:
        """The service rings a caller who took a callback: they pick up, or not."""
        if not call.callback or call.phase != "callback":
            return "failed"
        await asyncio.sleep(self.rng.uniform(2.0, 6.0))
        if call.phase != "callback" or self.rng.random() >= self.callback_answer:
            return "no_answer"
        self._talking(call)
        return "answered"

    def _talking(self, call: PbxCall) -> None:
        """The caller is connected to the agent (a connect, or a callback picked up)."""
        call.phase = "talking"
        call.connected_at = time.perf_counter()
        if call.id is not None:
            self.steps.mark(call.id, "connect", call.connected_at)
        self.counts.connected += 1
        call.connected.set()

    def _signed(self, header: str, body: bytes) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        t, v1 = parts.get("t", ""), parts.get("v1", "")
        if not t.isdigit() or abs(self.clock() - int(t)) > 300:
            return False
        want = hmac.new(self.secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, v1)

    # -- the caller side -----------------------------------------------------------

    def place(self, call_id: str, caller: Caller, queue: str) -> PbxCall:
        """Ring the service with a new call; the caller's life runs as a task."""
        call = PbxCall(
            call_id=call_id,
            caller=caller,
            queue=queue,
            sent_at=time.perf_counter(),
            patience=patience(self.rng, self.mean_patience),
            talk=lognormal(self.rng, self.mean_talk, 0.6),
        )
        self.calls[call_id] = call
        task = asyncio.create_task(self._life(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call

    async def _life(self, call: PbxCall) -> None:
        event: dict[str, Any] = {
            "type": "call.incoming",
            "call_id": call.call_id,
            "from": call.caller.ani,
            "queue": call.queue,
        }
        answer = await self._send(event)
        if answer is None:
            call.phase = "ended"
            return
        self.counts.placed += 1
        self._note(call, answer)
        if call.id is not None:
            self.steps.mark(call.id, "sent", call.sent_at)
            self.steps.mark(call.id, "queued")
            if call.released_at is not None:  # the hang-up came before this answer
                self.steps.mark(call.id, "release", call.released_at)
        if call.phase == "ended":
            return
        call.phase = "waiting" if call.phase == "placing" else call.phase
        if answer.get("action") == "gather" and call.caller.typed is not None:
            # Typing takes a moment; the call already waits in its queue meanwhile.
            await self._sleep_or_connected(call, self.rng.uniform(1.5, 4.0))
            if call.phase == "waiting":
                typed = {"type": "call.digits", "call_id": call.call_id}
                answer = await self._send(typed | {"digits": call.caller.typed})
                if answer is not None:
                    self._note(call, answer)
        if call.phase == "waiting" and answer is not None and answer.get("offer_callback"):
            await self._maybe_callback(call)
        if call.phase == "callback":
            await call.connected.wait()  # no patience: the service rings when it is time
        left = call.patience - (time.perf_counter() - call.sent_at)
        if call.phase == "waiting" and left > 0:
            await self._sleep_or_connected(call, left)
        if call.phase == "waiting":
            await self.hang_up(call, "caller")
            if call.outcome == "abandoned" and self.rng.random() < self.redial:
                # They think better of it and ring again (their place may wait for them).
                await asyncio.sleep(self.rng.uniform(3.0, 15.0))
                self.place(f"{call.call_id}-again", call.caller, call.queue)
            return
        if call.phase == "talking":
            try:
                await asyncio.wait_for(call.gone.wait(), timeout=call.talk)
            except TimeoutError:
                await self.hang_up(call, "caller")

    async def _maybe_callback(self, call: PbxCall) -> None:
        """Offered a callback, the caller listens to the prompt and may take it (one
        whose number is withheld would have to type one; the simulated ones do not)."""
        if not call.caller.ani.startswith("+") or self.rng.random() >= self.callback_take:
            return
        await self._sleep_or_connected(call, self.rng.uniform(2.0, 5.0))
        if call.phase != "waiting":
            return
        taken = await self._send({"type": "call.callback_requested", "call_id": call.call_id})
        if taken is None or taken.get("callback") is None or call.phase != "waiting":
            return
        call.callback = True
        call.phase = "callback"
        # They hang up: the service keeps the call in its place.
        await self._send({"type": "call.hangup", "call_id": call.call_id})

    async def _sleep_or_connected(self, call: PbxCall, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.connected.wait(), timeout=seconds)

    async def hang_up(self, call: PbxCall, who: str) -> None:
        """The caller hangs up (or the PBX drops the call at the run's end)."""
        if call.phase == "ended":
            return
        was_waiting = call.phase in ("waiting", "placing")
        answer = await self._send({"type": "call.hangup", "call_id": call.call_id})
        state = None
        if answer is not None:
            self._note(call, answer)
            state = (answer.get("call") or {}).get("state")
        if call.phase == "ended":  # the agent's hang-up crossed ours
            return
        self._ended(call, who, outcome=state)
        if was_waiting and state == "abandoned" and who != "cutoff":
            self.counts.abandoned += 1

    def _ended(self, call: PbxCall, who: str, *, outcome: str | None) -> None:
        call.phase = "ended"
        call.ended_by = who
        call.outcome = outcome or call.outcome
        call.gone.set()

    def _note(self, call: PbxCall, answer: dict[str, Any]) -> None:
        summary = answer.get("call") or {}
        if call.id is None and isinstance(summary.get("id"), int):
            call.id = summary["id"]
            self.by_id[call.id] = call
        if summary.get("tier"):
            call.tier = summary["tier"]
        if summary.get("state"):
            call.outcome = summary["state"]

    async def _send(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Post one signed event; the answer's JSON, or None when it was not 2xx."""
        assert self._session is not None, "start() first"
        body = json.dumps(event).encode()
        headers = {
            "content-type": "application/json",
            HEADER: sign(self.secret, body, self.clock()),
        }
        try:
            async with self._session.post(
                self.base_url + EVENTS_PATH, data=body, headers=headers
            ) as resp:
                text = await resp.text()
                if resp.status // 100 != 2:
                    self.counts.refused += 1
                    _log.warning("%s %s: %s %s", event["type"], event["call_id"], resp.status, text)
                    return None
                answer: dict[str, Any] = json.loads(text)
                return answer
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.counts.failed += 1
            _log.warning("%s %s: no answer (%r)", event["type"], event["call_id"], exc)
            return None

    # -- the end of a run ----------------------------------------------------------

    def live(self) -> list[PbxCall]:
        return [c for c in self.calls.values() if c.phase not in ("ended", "callback")]

    def cut_off(self, call: PbxCall) -> None:
        """The run ends before this caller's callback: a ring now goes unanswered."""
        self._ended(call, "cutoff", outcome=None)

    def waiting_for_callback(self) -> list[PbxCall]:
        """Callers who took a callback and were not rung back (yet)."""
        return [c for c in self.calls.values() if c.phase == "callback"]

    async def hang_up_all(self) -> None:
        """Drop every call still up: waiting callers and calls in conversation."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(self.hang_up(c, "cutoff") for c in self.live()))
