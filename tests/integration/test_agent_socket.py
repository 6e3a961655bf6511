"""The agent's side of the queue: offers over /ws/agent, accept, reject, timeout, reconnect."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.conftest import AppFactory
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    make_agent,
    make_customer,
    make_queue,
)


async def test_offer_accept_end_wrap_up(app_factory: AppFactory, pool: asyncpg.Pool[Any]) -> None:
    client = await app_factory(**FAST)
    await make_queue(client, "general", wrap_up_seconds=0.5)
    customer_id = await make_customer(client, "C-1", 30000, "+12125550100")
    agent_id, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    first = await panel.next()
    assert first["type"] == "state" and first["seq"] == 1
    assert first["agent"]["state"] == "offline" and first["offer"] is None

    await panel.send(type="available", ref="r1")
    ack = await panel.until(lambda m: m["type"] == "ack")
    assert ack["ref"] == "r1" and ack["to"] == "available"
    await panel.state("available")

    answer = await enqueue(client, "pbx-1", ani="(212) 555-0100")
    assert answer["created"] is True and answer["identify"] == "known"
    call_id = answer["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == call_id
    assert offer["customer"]["id"] == customer_id and offer["tier"] == "platinum"

    await panel.send(type="accept", offer_id=offer["offer_id"])
    accepted = await panel.until(lambda m: m["type"] == "ack")
    assert accepted["call_id"] == call_id
    on_call = await panel.state("on_call")
    assert on_call["call"]["id"] == call_id and on_call["call"]["state"] == "connected"

    await panel.send(type="end", call_id=call_id, outcome="completed")
    await panel.state("wrap_up")
    await panel.state("available", timeout=5)

    resp = await client.get(f"/api/calls/{call_id}")
    call = await resp.json()
    assert call["state"] == "completed" and call["agent_id"] == agent_id
    history = await (await client.get(f"/api/customers/{customer_id}/history")).json()
    assert history["interactions"][0]["outcome"] == "completed"
    assert history["interactions"][0]["agent"] == "ada"
    seqs = [m["seq"] for m in panel.received]
    assert seqs == list(range(1, len(seqs) + 1))
    await panel.close()
