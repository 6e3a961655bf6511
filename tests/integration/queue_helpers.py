"""Helpers for the queue tests: apps with quick clocks, agents, panels and calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient

from callcenter.config import Settings
from callcenter.queue.sql import Q as QUEUE_Q

#: Fast clocks so timeouts and grace periods happen within a test.
FAST = {"sweep_seconds": 0.2, "agent_grace_seconds": 2.0, "agent_heartbeat_seconds": 5.0}


def fast_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=FAST | changes)


async def make_queue(client: TestClient[Any, Any], name: str, **config: Any) -> dict[str, Any]:
    resp = await client.put(f"/api/queues/{name}", json=config)
    assert resp.status in (200, 201), await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def make_agent(
    client: TestClient[Any, Any],
    name: str,
    queues: list[str] | None = None,
    overflow_queues: list[str] | None = None,
) -> tuple[int, str]:
    resp = await client.post(
        "/api/agents",
        json={
            "name": name,
            "queues": queues or ["general"],
            "overflow_queues": overflow_queues or [],
        },
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    return body["agent"]["id"], body["token"]


async def make_customer(client: TestClient[Any, Any], number: str, value: int, phone: str) -> int:
    resp = await client.post(
        "/api/customers",
        json={"customer_number": number, "lifetime_value": value, "phones": [phone]},
    )
    assert resp.status == 201, await resp.text()
    customer_id: int = (await resp.json())["id"]
    return customer_id


async def enqueue(
    client: TestClient[Any, Any], call_id: str, *, queue: str = "general", **fields: Any
) -> dict[str, Any]:
    resp = await client.post("/api/calls", json={"call_id": call_id, "queue": queue, **fields})
    assert resp.status in (200, 201), await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def add_customer(client: TestClient[Any, Any], number: str, name: str, **extra: Any) -> int:
    """A customer made through the API (``extra``: phones, figures ...); its id."""
    resp = await client.post(
        "/api/customers", json={"customer_number": number, "name": name, **extra}
    )
    assert resp.status == 201, await resp.text()
    customer_id: int = (await resp.json())["id"]
    return customer_id


async def take_call(
    client: TestClient[Any, Any], token: str, external: str, **fields: Any
) -> tuple[Panel, dict[str, Any], dict[str, Any]]:
    """An available agent's panel, a call handed in with ``fields``, accepted: the
    panel, the hand-in's answer and the assist panel message."""
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    answer = await enqueue(client, external, **fields)
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    shown = await panel.until(lambda m: m["type"] == "panel")
    assert shown["call_id"] == answer["call"]["id"]
    return panel, answer, shown


class Panel:
    """A scripted agent panel on ``/ws/agent`` that remembers every message it got."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, client: TestClient[Any, Any], token: str) -> Panel:
        ws = await client.ws_connect(f"/ws/agent?token={token}")
        return cls(ws)

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == WSMsgType.TEXT, msg
        data: dict[str, Any] = json.loads(msg.data)
        self.received.append(data)
        return data

    async def until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first message from now on that satisfies ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no matching message in {timeout}s; got {self.received}")
            try:
                message = await self.next(left)
            except TimeoutError:
                raise AssertionError(
                    f"no matching message in {timeout}s; got {self.received}"
                ) from None
            if predicate(message):
                return message

    async def state(self, agent_state: str, timeout: float = 5.0) -> dict[str, Any]:
        return await self.until(
            lambda m: m["type"] == "state" and m["agent"]["state"] == agent_state, timeout
        )

    async def close(self) -> None:
        await self.ws.close()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 5.0, every: float = 0.05
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)


async def no_call_offered_twice_at_once(pool: asyncpg.Pool[Any]) -> None:
    """No call had two open offers at any one time (an offer's life: offered until ended)."""
    overlapping = await pool.fetchval(
        """SELECT count(*) FROM call_offers a JOIN call_offers b
             ON a.call_id = b.call_id AND a.id < b.id
            WHERE b.offered_at < coalesce(a.ended_at, 'infinity')"""
    )
    assert overlapping == 0, f"{overlapping} calls offered twice at once"


async def waits_behind(
    probe: asyncpg.Connection[Any], holder: asyncpg.Connection[Any], query: str = "%"
) -> None:
    """Until some backend waits for a lock ``holder`` holds (seen from ``probe``): the
    statement under test has reached the row the test holds, whatever else is waiting.
    ``query`` (a LIKE pattern) names the statement when others may wait there too (the
    presence loop's refresh of a row the test holds, say)."""
    pid = holder.get_server_pid()

    async def blocked() -> bool:
        found = await probe.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE $1 = ANY (pg_blocking_pids(pid)) AND query LIKE $2",
            pid,
            query,
        )
        return bool(found)

    await eventually(blocked, timeout=30)


async def agent_state(pool: asyncpg.Pool[Any], agent_id: int) -> str:
    state: str = await pool.fetchval("SELECT state FROM agents WHERE id = $1", agent_id)
    return state


async def end_call(client: TestClient[Any, Any], call_id: int) -> None:
    """The call ends, completed (the API's end, as a supervisor or the PBX would)."""
    resp = await client.post(f"/api/calls/{call_id}/end", json={"outcome": "completed"})
    assert resp.status == 200, await resp.text()


async def wrap_up_clock_ends(pool: asyncpg.Pool[Any], agent_id: int) -> None:
    """The agent's wrap-up runs out now: its end is moved back and the sweep's
    statement that ends wrap-ups runs (the sweep itself may be an hour away)."""
    await pool.execute(
        "UPDATE agents SET wrap_up_until = now() - interval '1 second' WHERE id = $1", agent_id
    )
    assert [r["id"] for r in await pool.fetch(QUEUE_Q["wrap_ups_done"])] == [agent_id]
