"""scripts/compose-check's check of a running compose deployment (two instances).

A queue and an agent are made through instance 1; the agent's panel connects
to instance 2; a call posted to instance 1 must be offered on that panel, and
the agent accepts and ends it. Every wait is bounded. Usage:
``compose_check_flow.py BASE_1 BASE_2 ADMIN_TOKEN``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

import aiohttp


async def _state(ws: aiohttp.ClientWebSocketResponse, *want: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        msg = await ws.receive(timeout=left)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"the agent socket closed: {msg}")
        data: dict[str, Any] = json.loads(msg.data)
        if data["type"] == "state" and data["agent"]["state"] in want:
            return data
    raise AssertionError(f"the agent was not {want} within {within} s")


async def main(one: str, two: str, token: str) -> None:
    admin = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for base in (one, two):
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 200, (base, resp.status, await resp.text())
        async with http.get(f"{one}/api/queues") as resp:
            assert resp.status == 401, f"/api answered {resp.status} without a token"
        tag = uuid.uuid4().hex[:8]
        async with http.put(
            f"{one}/api/queues/general", json={"offer_timeout_seconds": 30}, headers=admin
        ) as resp:
            assert resp.status in (200, 201), await resp.text()
        async with http.post(
            f"{one}/api/agents", json={"name": f"check-{tag}", "queues": ["general"]}, headers=admin
        ) as resp:
            assert resp.status == 201, await resp.text()
            agent_token = (await resp.json())["token"]
        async with http.ws_connect(f"{two}/ws/agent?token={agent_token}") as ws:
            await ws.send_str(json.dumps({"type": "available"}))
            await _state(ws, "available", within=10)
            started = time.monotonic()
            async with http.post(
                f"{one}/api/calls",
                json={"call_id": f"compose-check-{tag}", "queue": "general"},
                headers=admin,
            ) as resp:
                assert resp.status in (200, 201), await resp.text()
                call_id = (await resp.json())["call"]["id"]
            offered = await _state(ws, "offered", within=10)
            assert offered["offer"]["call_id"] == call_id, offered
            print(
                f"call {call_id} posted to {one} was offered on {two} "
                f"in {(time.monotonic() - started) * 1000:.0f} ms"
            )
            await ws.send_str(
                json.dumps({"type": "accept", "offer_id": offered["offer"]["offer_id"]})
            )
            await _state(ws, "on_call", within=10)
            await ws.send_str(
                json.dumps({"type": "end", "call_id": call_id, "outcome": "completed"})
            )
            await _state(ws, "wrap_up", "available", within=10)
        async with http.get(f"{one}/api/calls/{call_id}", headers=admin) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            assert body["state"] == "completed", body
        print(f"the agent on {two} accepted and completed it; {one} reads it completed")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(*sys.argv[1:4]), timeout=60))
