"""One simulated run against a service that is already up: set up, drive, sum up.

Setting up uses the API with an admin token (queues, agents, a supervisor),
as an operator would; the traffic itself uses only the peer's webhook and the
agents' websockets. ``Traffic`` is reused by the demo and the whole-path
benchmark: they differ in the service they start and the rates they ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from callcenter.queue.policy import PolicyName, make_policy
from callcenter.simulation.agents import AgentLedger, Behaviour, SimAgent
from callcenter.simulation.distributions import gap, pick_weighted
from callcenter.simulation.pbx import Pbx, PbxCall
from callcenter.simulation.population import Population
from callcenter.simulation.summary import CallFact, Summary, summarise

_log = logging.getLogger(__name__)

#: The shape of the floor: queues, who serves which, and where calls go.
#: Callers expected to wait 10 s or more are offered a callback (they keep their
#: place); a ring nobody answers is tried once more 15 s later.
CALLBACK = {"after_seconds": 10, "attempts": 2, "retry_seconds": 15}
QUEUES: dict[str, dict[str, Any]] = {
    # Overflow: after this wait, agents who list the queue as overflow may take the call.
    # A caller who drops and rings again within 2 minutes gets their place back.
    "general": {
        "service_level_seconds": 20,
        "overflow_after_seconds": 30,
        "callback": CALLBACK,
        "redial_window_seconds": 120,
    },
    "billing": {
        "service_level_seconds": 30,
        "overflow_after_seconds": 40,
        "callback": CALLBACK,
        "redial_window_seconds": 120,
    },
}
CALL_MIX: tuple[tuple[str, float], ...] = (("general", 0.7), ("billing", 0.3))


@dataclass
class Plan:
    """What a run looks like; the defaults keep a 2-core machine's service at ease."""

    rate: float = 1.0  # calls per second
    agents: int = 14
    policy: str = "value"
    seed: int = 1
    mean_patience: float = 60.0
    # The caller's idea of the talk; a call lasts the shorter of theirs and the agent's
    # (Behaviour.mean_talk). Measured: 9.7 s of talk and 3.1 s of wrap-up a call, so 14
    # agents at 1 call a second are busy over 90 % of the time and callers queue now and then.
    mean_talk: float = 16.0
    offer_timeout: float = 8.0
    behaviour: Behaviour = field(default_factory=Behaviour)


def agent_queues(i: int) -> tuple[list[str], list[str]]:
    """Agent ``i``'s queues and overflow queues: most take general, some billing,
    some both; each side helps the other after the overflow wait."""
    slot = i % 5
    if slot in (0, 1, 2):
        return ["general"], ["billing"]
    if slot == 3:
        return ["billing"], ["general"]
    return ["general", "billing"], []


@dataclass
class Floor:
    """What setting up made: the credentials a person needs to join in."""

    agents: list[tuple[str, str]]  # (name, token) of the simulated agents
    extra_agent: tuple[str, str] | None  # for the person at the keyboard
    supervisor: tuple[str, str] | None  # (name, password)
    targets: dict[str, float]
    bound: float | None
    tiers: list[str]


class Api:
    """The few admin calls setting up needs."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http = http
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(
            method, self.base + path, json=body, headers=self.headers
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status // 100 != 2:
                raise RuntimeError(f"{method} {path}: {resp.status} {data}")
            return data


async def set_up(
    api: Api,
    plan: Plan,
    tiers: Sequence[str],
    *,
    extra_agent: bool,
    supervisor: bool,
) -> Floor:
    """Queues, agents and a supervisor, under stable names: on a kept database the
    same names are taken over (new tokens, a new password) rather than piling up."""
    for name, settings in QUEUES.items():
        config = {"policy": plan.policy, "offer_timeout_seconds": plan.offer_timeout} | settings
        await api.call("PUT", f"/api/queues/{name}", config)
    existing = {a["name"]: a["id"] for a in (await api.call("GET", "/api/agents"))["agents"]}
    made: list[tuple[str, str]] = []
    for i in range(plan.agents):
        queues, overflow = agent_queues(i)
        name = f"sim-{i + 1:02d}"
        token = await _agent(api, existing, name, queues, overflow, f"client:{name}")
        made.append((name, token))
    extra = None
    if extra_agent:
        token = await _agent(api, existing, "you", list(QUEUES), [], "client:you")
        extra = ("you", token)
    boss = None
    if supervisor:
        boss = ("supervisor", await _person(api, "supervisor", "supervisor"))
    policy = make_policy(PolicyName(plan.policy), {}, tiers)
    bound = None if policy.name is PolicyName.strict else policy.overtaking_bound
    targets = {n: float(s["service_level_seconds"]) for n, s in QUEUES.items()}
    return Floor(made, extra, boss, targets, bound, list(tiers))


async def _agent(
    api: Api,
    existing: dict[str, int],
    name: str,
    queues: list[str],
    overflow: list[str],
    endpoint: str,
) -> str:
    """The agent ``name`` as asked, and a fresh token for it."""
    body = {"queues": queues, "overflow_queues": overflow, "endpoint": endpoint}
    agent_id = existing.get(name)
    if agent_id is None:
        answer = await api.call("POST", "/api/agents", body | {"name": name})
        return str(answer["token"])
    await api.call("PATCH", f"/api/agents/{agent_id}", body)
    answer = await api.call("POST", f"/api/agents/{agent_id}/token")
    return str(answer["token"])


async def _person(api: Api, name: str, role: str) -> str:
    """The person ``name`` with a new password, which is returned."""
    password = secrets.token_urlsafe(12)
    people = (await api.call("GET", "/api/people"))["people"]
    found = next((p for p in people if p["name"] == name), None)
    if found is None:
        await api.call("POST", "/api/people", {"name": name, "role": role, "password": password})
    else:
        await api.call("PATCH", f"/api/people/{found['id']}", {"password": password})
    return password


class Traffic:
    """Callers and agents for one run, and what they saw."""

    def __init__(
        self, pbx: Pbx, population: Population, plan: Plan, floor: Floor, *, run_id: str
    ) -> None:
        self.base_url = pbx.base_url
        self.plan = plan
        self.floor = floor
        self.population = population
        self.run_id = run_id
        self.rng = random.Random(plan.seed)
        self.pbx = pbx
        self.ledger = AgentLedger()
        self.agents: list[SimAgent] = []
        self._agent_tasks: list[asyncio.Task[None]] = []
        self.started = time.monotonic()
        self.ended: float | None = None

    async def start_agents(self) -> None:
        ws_url = self.base_url.replace("http", "ws", 1) + "/ws/agent"
        behaviour = self.plan.behaviour
        for i, (name, token) in enumerate(self.floor.agents):
            rng = random.Random(self.plan.seed * 1000 + i)
            agent = SimAgent(name, token, ws_url, rng, behaviour, self.ledger, self.pbx.steps)
            self.agents.append(agent)
            self._agent_tasks.append(asyncio.create_task(self._agent(agent)))
        await asyncio.wait_for(asyncio.gather(*(a.ready.wait() for a in self.agents)), 30)

    async def _agent(self, agent: SimAgent) -> None:
        try:
            await agent.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a socket that drops is a fault of the run, not its end
            self.ledger.errors.append(f"{agent.name}: socket ended: {exc!r}")

    async def callers(self, stop: asyncio.Event) -> None:
        """Poisson arrivals until ``stop``."""
        n = 0
        self.started = time.monotonic()
        next_at = time.monotonic()
        while not stop.is_set():
            next_at += gap(self.rng, self.plan.rate)
            delay = next_at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    break
                except TimeoutError:
                    pass
            n += 1
            caller = self.population.draw(self.rng)
            queue = pick_weighted(self.rng, CALL_MIX)
            self.pbx.place(f"demo-{self.run_id}-{n}", caller, queue)

    async def finish(self, drain_seconds: float = 20.0, api: Api | None = None) -> None:
        """The end of the run: every call still up is dropped, agents wrap up and leave.

        ``api``: the callers still waiting for their callback are not on any line,
        so no hang-up reaches the service for them; their calls are ended through
        the API instead (abandoned, the demo ended), as a supervisor would.
        """
        self.ended = time.monotonic()
        for agent in self.agents:
            agent.wind_down()  # wrap up at once from now on, and ask for no more calls
        await self.pbx.hang_up_all()
        if api is not None:
            await asyncio.gather(
                *(self._end_callback(api, c) for c in self.pbx.waiting_for_callback())
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(a.free.wait() for a in self.agents)), drain_seconds
            )
        await asyncio.gather(*(a.stop() for a in self.agents), return_exceptions=True)
        await asyncio.wait(self._agent_tasks, timeout=10)
        for task in self._agent_tasks:
            task.cancel()

    async def _end_callback(self, api: Api, call: PbxCall) -> None:
        """End a callback the run did not get to; one that is ringing right now is
        waited out (its ring comes back unanswered: the caller is cut off)."""
        self.pbx.cut_off(call)
        if call.id is None:
            return
        for _ in range(40):
            found = await api.call("GET", f"/api/calls/{call.id}")
            if found["state"] != "waiting" and found["state"] != "connected":
                return
            if found["state"] == "waiting":
                with contextlib.suppress(RuntimeError):  # it moved meanwhile: look again
                    await api.call(
                        "POST",
                        f"/api/calls/{call.id}/end",
                        {"outcome": "abandoned", "reason": "the demo ended before its callback"},
                    )
                    return
            await asyncio.sleep(0.25)

    async def facts(self, api: Api) -> list[CallFact]:
        """Every call of the run, read back from the service."""
        ids = [c.id for c in self.pbx.calls.values() if c.id is not None]
        cut = {c.id for c in self.pbx.calls.values() if c.ended_by == "cutoff" and c.id}
        sem = asyncio.Semaphore(16)

        async def one(call_id: int) -> CallFact:
            async with sem:
                data = await api.call("GET", f"/api/calls/{call_id}")
            return CallFact(
                id=data["id"],
                queue=data["queue"],
                state=data["state"],
                tier=data["tier"] or "unknown",
                enqueued_at=datetime.fromisoformat(data["enqueued_at"]),
                connected_at=_time(data["connected_at"]),
                ended_at=_time(data["ended_at"]),
                cut_off=data["id"] in cut and data["connected_at"] is None,
                callback=data["callback"] is not None,
                callback_answered=(data["callback"] or {}).get("answered_at") is not None,
                end_reason=data["end_reason"],
                resumed=data["resumed"] is not None,
                arrived_at=_time((data["resumed"] or {}).get("arrived_at")),
            )

        return list(await asyncio.gather(*(one(i) for i in sorted(set(ids)))))

    def faults(self) -> list[str]:
        found = list(self.ledger.errors[:10])
        counts = self.pbx.counts
        if counts.double_connects:
            found.append(f"{counts.double_connects} calls were told to connect twice")
        if self.ledger.double_accepts:
            found.append(f"{self.ledger.double_accepts} calls were accepted by two agents")
        if counts.refused or counts.failed:
            found.append(f"{counts.refused} webhook events refused, {counts.failed} unanswered")
        return found

    def offer_delays(self) -> list[float]:
        """Webhook sent -> offer on a socket, for each call's first offer to an agent
        who was already idle when the call came in: the routing latency one feels."""
        delays = []
        seen: set[int] = set()
        for call_id, offered, idle_since in self.ledger.offers_seen:
            call = self.pbx.by_id.get(call_id)
            if call is None or call_id in seen:
                continue
            seen.add(call_id)
            if idle_since is not None and idle_since <= call.sent_at:
                delays.append(offered - call.sent_at)
        return delays

    def ledger_json(self) -> dict[str, Any]:
        """What the PBX and the agents hold the service to: every call it took
        (peer id to its id) and every answer it acknowledged."""
        answers = [[c, k, False] for c, k in self.ledger.answered.items()]
        answers += [[c, k, True] for c, k in self.ledger.skipped.items()]
        placed = {c.call_id: c.id for c in self.pbx.calls.values() if c.id is not None}
        offered = sorted(self.ledger.offered)
        return {"placed": placed, "answers": sorted(answers), "offers": offered}

    def summary(self, facts: list[CallFact]) -> Summary:
        end = self.ended or time.monotonic()
        return summarise(
            facts,
            seconds=end - self.started,
            policy=self.plan.policy,
            tiers=self.floor.tiers,
            targets=self.floor.targets,
            bound=self.floor.bound,
            questions_answered=len(self.ledger.answered),
            questions_skipped=len(self.ledger.skipped),
            value_served=self.ledger.value_served,
            offer_delays=self.offer_delays(),
            faults=self.faults(),
        )


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def new_run_id() -> str:
    return secrets.token_hex(3)
