"""The agent's side of the queue: offers over /ws/agent, accept, reject, timeout, reconnect."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.conftest import ADMIN_TOKEN, AppFactory
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    eventually,
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
    assert offer["priority"] == {
        "tier": "platinum",
        "credit_seconds": 120.0,
        "explicit": False,
        "reason": "platinum customer: served as if they had called 120 s earlier",
    }

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


async def _service_key(pool: asyncpg.Pool[Any], call_id: int) -> Any:
    return await pool.fetchval("SELECT service_key FROM waiting_calls WHERE call_id = $1", call_id)


async def test_reject_returns_call_with_its_key_and_sidelines_agent(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    _, token_a = await make_agent(client, "ada")
    panel_a = await Panel.open(client, token_a)
    await panel_a.send(type="available")
    await panel_a.state("available")
    call_id = (await enqueue(client, "pbx-r", ani="+12125550199"))["call"]["id"]
    key = await _service_key(pool, call_id)
    offer = await panel_a.until(lambda m: m["type"] == "offer")

    await panel_a.send(type="reject", offer_id=offer["offer_id"])
    await panel_a.state("not_responding")
    assert await _service_key(pool, call_id) == key
    # A second agent gets it; the first gets nothing until it says it is available.
    _, token_b = await make_agent(client, "bob")
    panel_b = await Panel.open(client, token_b)
    await panel_b.send(type="available")
    second = await panel_b.until(lambda m: m["type"] == "offer")
    assert second["call_id"] == call_id
    assert not [m for m in panel_a.received if m["type"] == "offer" and m is not offer]
    results = await pool.fetch(
        "SELECT agent_id, result FROM call_offers WHERE call_id = $1 ORDER BY id", call_id
    )
    assert [r["result"] for r in results] == ["rejected", None]
    await panel_a.close()
    await panel_b.close()


async def test_offer_timeout_returns_call_and_agent_is_not_responding(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    await make_queue(client, "general", offer_timeout_seconds=1)
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    call_id = (await enqueue(client, "pbx-t"))["call"]["id"]
    key = await _service_key(pool, call_id)
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.state("not_responding", timeout=4)
    row = await pool.fetchrow(
        "SELECT offered_to, service_key FROM waiting_calls WHERE call_id = $1", call_id
    )
    assert row["offered_to"] is None
    assert row["service_key"] == key
    result = await pool.fetchval("SELECT result FROM call_offers WHERE id = $1", offer["offer_id"])
    assert result == "timeout"
    # Accepting the expired offer is refused with a reason; the socket stays open.
    await panel.send(type="accept", offer_id=offer["offer_id"], ref=7)
    error = await panel.until(lambda m: m["type"] == "error")
    assert error["ref"] == 7
    assert error["status"] == 409
    await panel.send(type="ping")
    assert (await panel.until(lambda m: m["type"] == "pong"))["type"] == "pong"
    await panel.close()


async def test_reconnect_within_grace_sees_pending_offer(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    call_id = (await enqueue(client, "pbx-g"))["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.close()

    again = await Panel.open(client, token)
    state = await again.next()
    assert state["seq"] == 1
    assert state["agent"]["state"] == "offered"
    assert state["offer"]["offer_id"] == offer["offer_id"]
    repeated = await again.next()
    assert repeated["type"] == "offer"
    assert repeated["call_id"] == call_id
    await again.send(type="accept", offer_id=offer["offer_id"])
    await again.state("on_call")
    await again.close()


async def test_agent_gone_past_grace_goes_offline_and_offer_returns(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**(FAST | {"agent_grace_seconds": 0.6}))
    await make_queue(client, "general", offer_timeout_seconds=60)
    agent_id, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    call_id = (await enqueue(client, "pbx-d"))["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.close()

    async def offline() -> bool:
        state = await pool.fetchval("SELECT state FROM agents WHERE id = $1", agent_id)
        return bool(state == "offline")

    await eventually(offline, timeout=5)
    assert (
        await pool.fetchval("SELECT offered_to FROM waiting_calls WHERE call_id = $1", call_id)
        is None
    )
    result = await pool.fetchval("SELECT result FROM call_offers WHERE id = $1", offer["offer_id"])
    assert result == "withdrawn"


async def test_caller_hangs_up_while_offered(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    call_id = (await enqueue(client, "pbx-h"))["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    resp = await client.post(f"/api/calls/{call_id}/end", json={"outcome": "abandoned"})
    assert resp.status == 200
    assert (await resp.json())["state"] == "abandoned"
    state = await panel.until(lambda m: m["type"] == "state" and m["offer"] is None)
    assert state["agent"]["state"] == "available"
    await panel.send(type="accept", offer_id=offer["offer_id"])
    assert (await panel.until(lambda m: m["type"] == "error"))["status"] == 409
    result = await pool.fetchval("SELECT result FROM call_offers WHERE id = $1", offer["offer_id"])
    assert result == "withdrawn"
    await panel.close()


async def test_bad_messages_get_errors_and_socket_stays(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    _, token = await make_agent(client, "ada")
    other_id, other_token = await make_agent(client, "bob")
    panel = await Panel.open(client, token)
    await panel.next()
    await panel.ws.send_str("{not json")
    assert (await panel.next())["status"] == 400
    await panel.send(type="dance")
    assert (await panel.next())["status"] == 422
    await panel.send(type="accept", offer_id="x", ref="a")
    error = await panel.next()
    assert error["status"] == 422
    assert error["ref"] == "a"
    assert "offer_id" in error["field"]
    await panel.send(type="accept", offer_id=999999)
    missing = await panel.next()
    assert missing["status"] == 404

    # An offer made to another agent cannot be taken, and the answer does not tell
    # it apart from an offer that does not exist.
    other = await Panel.open(client, other_token)
    await other.send(type="available")
    await enqueue(client, "pbx-b")
    offer = await other.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    refused = await panel.until(lambda m: m["type"] == "error")
    assert refused["status"] == 404
    assert refused["detail"] == missing["detail"].replace("999999", str(offer["offer_id"]))
    await panel.send(type="ping", ref=1)
    assert (await panel.until(lambda m: m["type"] == "pong"))["ref"] == 1
    assert other_id
    await panel.close()
    await other.close()


async def test_socket_needs_a_valid_token_and_origin(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    _, token = await make_agent(client, "ada")
    resp = await client.get("/ws/agent")
    assert resp.status == 401
    assert (await resp.json())["status"] == 401
    assert (await client.get("/ws/agent?token=nope")).status == 401
    evil = await client.get(f"/ws/agent?token={token}", headers={"Origin": "https://evil.example"})
    assert evil.status == 403
    ws = await client.ws_connect("/ws/agent", headers={"Authorization": f"Bearer {token}"})
    first = await ws.receive_json(timeout=5)
    assert first["type"] == "state"
    await ws.close()


async def test_metrics_count_calls_offers_and_waits(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    # Withheld callers: nobody is identified, so the tier label is "unknown".
    call_id = (await enqueue(client, "pbx-m"))["call"]["id"]
    await enqueue(client, "pbx-m2")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")
    await panel.send(type="end", call_id=call_id)
    await panel.state("wrap_up")

    async def counted() -> bool:
        text = await (await client.get("/metrics")).text()
        return 'callcenter_calls_waiting{queue="general",tier="unknown"} 1.0' in text

    await eventually(counted, timeout=5)
    text = await (await client.get("/metrics")).text()
    assert 'callcenter_calls_enqueued_total{queue="general",tier="unknown"} 2.0' in text
    assert 'callcenter_offers_total{result="made"} 1.0' in text
    assert 'callcenter_offers_total{result="accepted"} 1.0' in text
    assert 'callcenter_calls_ended_total{outcome="completed",queue="general"} 1.0' in text
    assert 'callcenter_answer_wait_seconds_count{queue="general",tier="unknown"} 1.0' in text
    await panel.close()


async def test_no_wrap_up_means_available_as_the_call_ends(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    await make_queue(client, "general", wrap_up_seconds=0)
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    call_id = (await enqueue(client, "pbx-w0"))["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")
    await panel.send(type="end", call_id=call_id)
    after = await panel.until(lambda m: m["type"] == "state" and m["agent"]["state"] != "on_call")
    assert after["agent"]["state"] == "available"
    assert after["call"] is None
    # And the next call comes without the panel asking.
    await enqueue(client, "pbx-w1")
    assert (await panel.until(lambda m: m["type"] == "offer"))["offer_id"] != offer["offer_id"]
    await panel.close()


async def test_only_an_agents_token_opens_the_agent_doors(app_factory: AppFactory) -> None:
    """Every agent door resolves a token through the gate (one path, one count of wrong
    tokens) and takes an agent's token only: an admin's is as unknown as a made-up one."""
    admin = await app_factory(**FAST)
    _, token = await make_agent(admin, "ada")
    client = await app_factory(**FAST, headers={})
    made_up = "not-a-token-of-anyone"
    for presented in (ADMIN_TOKEN, made_up):
        resp = await client.get("/ws/agent", params={"token": presented})
        assert resp.status == 401
        assert (await resp.json())["detail"] == "unknown agent token"
        session = await client.get(
            "/agent/session", headers={"Authorization": f"Bearer {presented}"}
        )
        assert session.status == 401
        assert (await session.json())["detail"] == "unknown agent token"
    # The agent's own token opens both.
    ok = await client.get("/agent/session", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200 and (await ok.json())["name"] == "ada"
    ws = await client.ws_connect(f"/ws/agent?token={token}")
    await ws.close()
