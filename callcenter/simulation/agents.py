"""Simulated agents on the real agent websocket (``/ws/agent``).

Each one does what a person on the panel does: goes available, takes offers
(a few are rejected or left to ring out, so re-offers show), talks, ends the
call or hears the caller hang up, answers the learning question the panel
shows (or skips it), writes a note, and wraps up. Everything goes through the
protocol documented for the panel; nothing here reaches into the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from callcenter.simulation.distributions import answer_for, chance, lognormal
from callcenter.simulation.pbx import Steps

_log = logging.getLogger(__name__)

NOTES = (
    "Explained the last statement.",
    "Updated the contact details.",
    "Customer asked about fees; sent the price list.",
    "Resolved the card question.",
    "Will follow up by email.",
)


#: Messages that may cross the caller's hang-up or an offer's expiry on a busy
#: machine: refused with 404 or 409, they are races, not faults.
RACES = frozenset({"accept", "reject", "end", "verify"})


@dataclass
class Behaviour:
    """How the simulated agents act, out of 1 and in seconds."""

    reject: float = 0.04  # reject an offer
    ignore: float = 0.03  # let an offer ring out
    mean_talk: float = 16.0  # the agent's own idea of the call's length
    mean_wrap: float = 3.0  # writing the note
    skip: float = 0.1  # skip the learning question
    verify: float = 0.8  # confirm a caller whose new number waits for a link
    pause: float = 1.5  # back to available after a rejected or missed offer
    # Start the talk once the call's assist panel is on screen rather than at the
    # accept, so that even a zero talk time wraps up with the panel's question.
    talk_after_panel: bool = False


@dataclass
class AgentLedger:
    """What the agents did, for the summary and its test."""

    offered: list[tuple[int, int, str]] = field(default_factory=list)  # offer, call, agent
    answered: dict[int, str] = field(default_factory=dict)  # call id -> question key
    skipped: dict[int, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # Net value of each answered caller, by call, as the panel showed it. A callback
    # the caller did not pick up is taken out again: the agent never spoke to them.
    value_by_call: dict[int, Decimal] = field(default_factory=dict)
    # Who accepted each call. Two agents' accepts of one call is a fault; two agents
    # shown one offer is not something a client can judge (an offer withdrawn from
    # one socket and made on another may arrive in either order): the tables can.
    accepted_by: dict[int, str] = field(default_factory=dict)
    double_accepts: int = 0

    @property
    def value_served(self) -> Decimal:
        return sum(self.value_by_call.values(), Decimal(0))

    # (call id, perf_counter of the offer, since when the agent was idle or None).
    offers_seen: list[tuple[int, float, float | None]] = field(default_factory=list)


class SimAgent:
    """One agent: a websocket and the habits of ``Behaviour``."""

    def __init__(
        self,
        name: str,
        token: str,
        ws_url: str,
        rng: random.Random,
        behaviour: Behaviour,
        ledger: AgentLedger,
        steps: Steps | None = None,
    ) -> None:
        self.steps = steps or Steps()
        self.name = name
        self.token = token
        self.ws_url = ws_url
        self.rng = rng
        self.behaviour = behaviour
        self.ledger = ledger
        self.ready = asyncio.Event()
        # Set while the agent holds no call it has yet to wrap up (a run ends on it).
        self.free = asyncio.Event()
        self.free.set()
        self.idle_since: float | None = None
        self.call_id: int | None = None
        self.ringing: int | None = None  # a callback whose caller has not picked up yet
        self.state = "offline"
        self.question: dict[int, dict[str, Any]] = {}
        self.wrapped: set[int] = set()
        self.paneled: set[int] = set()
        self.panels_seen: set[int] = set()
        self.awaiting_panel: set[int] = set()  # accepted, talk starts with the panel
        # The answer each wrap-up carries, counted once the service acknowledges it.
        self.sending: dict[int, tuple[str, bool]] = {}
        self._ws: ClientConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with websockets.connect(
            self.ws_url, additional_headers=headers, max_size=2**22
        ) as ws:
            self._ws = ws
            await self._send({"type": "available"})
            try:
                async for raw in ws:
                    await self._on(json.loads(raw))
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def wind_down(self) -> None:
        """The run is ending: wrap up at once, and do not ask for more calls."""
        self._stopping = True

    async def stop(self) -> None:
        """Leave the floor: offline, then close the socket."""
        self._stopping = True
        if self._ws is not None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._send({"type": "offline"})
                await self._ws.close()

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send(json.dumps(message))

    def _later(self, seconds: float, message: dict[str, Any], unless: Any = None) -> None:
        async def go() -> None:
            await asyncio.sleep(seconds)
            if unless is not None and unless():
                return
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._send(message)

        task = asyncio.create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on(self, m: dict[str, Any]) -> None:
        kind = m.get("type")
        if kind == "state":
            self._on_state(m)
        elif kind == "offer":
            await self._on_offer(m)
        elif kind == "panel":
            self._on_panel(m)
        elif kind == "ack":
            self._on_ack(m)
        elif kind == "error":
            if m.get("ref") == "wrap_up":
                self.free.set()  # nothing more will come of this call
            if m.get("status") in (404, 409) and m.get("ref") in RACES:
                # The caller hung up, or the offer rang out, before the message came.
                return
            self.ledger.errors.append(f"{self.name}: {m.get('status')} {m.get('detail')}")

    def _on_state(self, m: dict[str, Any]) -> None:
        agent = m["agent"]
        self.state = agent["state"]
        held = m.get("call")
        if held is not None and held.get("callback") is not None and self.state == "on_call":
            # A callback: the service rings the caller until they pick up.
            self.ringing = held["id"] if held["callback"]["answered_at"] is None else None
        elif held is not None:
            self.ringing = None  # an ordinary call, or one that ended (wrap-up)
        elif self.ringing is not None:
            # The callback's caller did not pick up: the service freed us before any talk,
            # and the call may be accepted again later (by anyone): not a double accept.
            self.ledger.value_by_call.pop(self.ringing, None)
            if self.ledger.accepted_by.get(self.ringing) == self.name:
                del self.ledger.accepted_by[self.ringing]
            self.paneled.discard(self.ringing)
            if self.call_id == self.ringing:
                self.call_id = None
                self.free.set()
            self.ringing = None
        if self.state == "available" and m.get("offer") is None:
            if self.idle_since is None:
                self.idle_since = time.perf_counter()
            self.ready.set()
        elif self.state != "offered":
            # An offer's state comes just before the offer itself, which reads this.
            self.idle_since = None
        call = m.get("call")
        if self.state == "wrap_up" and call is not None and call["id"] not in self.wrapped:
            self.wrapped.add(call["id"])
            self._wrap_up(call["id"])
        if self.state == "not_responding" and not self._stopping:
            # Missed or rejected an offer: back after a short pause, as a person would.
            self._later(self.rng.uniform(0.5, 2 * self.behaviour.pause), {"type": "available"})

    async def _on_offer(self, m: dict[str, Any]) -> None:
        call_id, offer_id = m["call_id"], m["offer_id"]
        now = time.perf_counter()
        self.ledger.offered.append((offer_id, call_id, self.name))
        self.steps.mark(call_id, "offer", now)
        self.ledger.offers_seen.append((call_id, now, self.idle_since))
        self.idle_since = None
        b = self.behaviour
        draw = self.rng.random()
        if draw < b.ignore:
            return
        if draw < b.ignore + b.reject:
            await self._send({"type": "reject", "offer_id": offer_id, "ref": "reject"})
            return
        await self._send({"type": "accept", "offer_id": offer_id, "ref": "accept"})

    def _on_ack(self, m: dict[str, Any]) -> None:
        if m.get("to") == "accept" and m.get("call_id") is not None:
            call_id = m["call_id"]
            self.steps.mark(call_id, "accept")
            other = self.ledger.accepted_by.setdefault(call_id, self.name)
            if other != self.name:
                self.ledger.double_accepts += 1
                _log.error("call %s was accepted by %s and by %s", call_id, other, self.name)
            self.call_id = call_id
            self.free.clear()
            if self.behaviour.talk_after_panel and call_id not in self.panels_seen:
                self.awaiting_panel.add(call_id)
            else:
                self._talk(call_id)
        elif m.get("to") == "wrap_up" and m.get("call_id") is not None:
            self.steps.mark(m["call_id"], "wrap_up")
            if m["call_id"] == self.call_id:
                self.free.set()
            sent = self.sending.pop(m["call_id"], None)
            if sent is not None:
                key, skipped = sent
                (self.ledger.skipped if skipped else self.ledger.answered)[m["call_id"]] = key

    def _talk(self, call_id: int) -> None:
        """Talk for a while, then end the call (unless it ended first)."""
        talk = lognormal(self.rng, self.behaviour.mean_talk, 0.6)
        self._later(
            talk,
            {"type": "end", "call_id": call_id, "ref": "end"},
            unless=lambda: call_id in self.wrapped or self._stopping,
        )

    def _on_panel(self, m: dict[str, Any]) -> None:
        call_id = m["call_id"]
        self.steps.mark(call_id, "panel")
        self.panels_seen.add(call_id)
        if m.get("question"):
            self.question[call_id] = m["question"]
        customer = m.get("customer")
        if customer is not None and call_id not in self.paneled:
            self.paneled.add(call_id)
            net = Decimal(str(customer["lifetime_value"])) - Decimal(str(customer["cost_to_serve"]))
            self.ledger.value_by_call[call_id] = net
        recognised = m.get("recognised") or {}
        if recognised.get("pending_link") and chance(self.rng, self.behaviour.verify):
            verify = {"type": "verify", "call_id": call_id, "ref": "verify"}
            self._later(self.rng.uniform(1.0, 3.0), verify)
        if call_id in self.awaiting_panel:
            self.awaiting_panel.discard(call_id)
            self._talk(call_id)

    def _wrap_up(self, call_id: int) -> None:
        message: dict[str, Any] = {
            "type": "wrap_up",
            "call_id": call_id,
            "outcome": "completed",
            "notes": self.rng.choice(NOTES),
            "available": not self._stopping,
            "ref": "wrap_up",
        }
        question = self.question.pop(call_id, None)
        if question is not None:
            value = (
                None if chance(self.rng, self.behaviour.skip) else answer_for(self.rng, question)
            )
            if value is None:
                message["answer"] = {"question_key": question["key"], "skipped": True}
            else:
                message["answer"] = {"question_key": question["key"], "value": value}
            self.sending[call_id] = (question["key"], value is None)
        wrap = min(lognormal(self.rng, self.behaviour.mean_wrap, 0.5), 8.0)
        self._later(0 if self._stopping else wrap, message)
