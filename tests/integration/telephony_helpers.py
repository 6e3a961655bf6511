"""Helpers for the telephony tests: a recording connector and an agent ready for calls."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient

from callcenter.telephony_adapters.base import AgentEndpoint, PeerCall
from tests.integration.queue_helpers import Panel


@dataclass
class RecordingConnector:
    """A connector that records every command; the first ``fail`` connects raise."""

    peer: str
    fail: int = 0
    rings_back: bool = False
    connects: list[tuple[PeerCall, AgentEndpoint]] = field(default_factory=list)
    hangups: list[PeerCall] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self, call: PeerCall, agent: AgentEndpoint) -> None:
        self.connects.append((call, agent))
        if len(self.connects) <= self.fail:
            raise ConnectionRefusedError("the fake PBX refuses")
        self.connected.set()

    async def hangup(self, call: PeerCall) -> None:
        self.hangups.append(call)


async def make_agent_with_endpoint(
    client: TestClient[Any, Any], name: str, endpoint: str | None, queues: list[str] | None = None
) -> tuple[int, str]:
    body: dict[str, Any] = {"name": name, "queues": queues or ["general"]}
    if endpoint is not None:
        body["endpoint"] = endpoint
    resp = await client.post("/api/agents", json=body)
    assert resp.status == 201, await resp.text()
    data = await resp.json()
    assert data["agent"]["endpoint"] == endpoint
    return data["agent"]["id"], data["token"]


async def available_panel(client: TestClient[Any, Any], token: str) -> Panel:
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    # The ack, not the state: with a call waiting, the next state is already "offered".
    await panel.until(lambda m: m["type"] == "ack" and m["to"] == "available")
    return panel


async def accept_next_offer(panel: Panel) -> int:
    """Accept the next offer on ``panel``; returns the call id."""
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    ack = await panel.until(lambda m: m["type"] == "ack" and m["to"] == "accept")
    call_id: int = ack["call_id"]
    return call_id
