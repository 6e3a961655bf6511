"""What a security review of the access work found, each held by a test.

Every one of these reproduced before its fix: a socket that outlived its
token, a throttle that locked out the right tokens or let concurrent
guesses through, erase leaving a pending link, ``verify`` unaudited, a
password change that kept the old sessions, an agent telling another
agent's call from a missing one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from aiohttp import WSMsgType

from tests.conftest import ADMIN, AppFactory
from tests.integration.dashboard_helpers import bearer, person
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    make_agent,
    make_customer,
    make_queue,
)

NOBODY = {"Authorization": ""}


async def _closed_with(ws: Any, code: int, timeout: float = 20) -> None:
    """Read until the close frame; it must carry ``code``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - loop.time()))
        if msg.type is WSMsgType.TEXT:
            continue
        assert msg.type is WSMsgType.CLOSE and msg.data == code, msg
        return


async def test_a_dashboard_closes_when_its_session_ends(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    token = await person(client, "sue")
    ws = await client.ws_connect(f"/ws/dashboard?token={token}", headers=NOBODY)
    assert json.loads((await ws.receive(timeout=10)).data)["type"] == "snapshot"
    assert (await client.delete("/api/session", headers=bearer(token))).status == 204
    await _closed_with(ws, 4401)


async def test_a_dashboard_closes_when_its_person_is_removed(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    token = await person(client, "sue")
    ws = await client.ws_connect(f"/ws/dashboard?token={token}", headers=NOBODY)
    assert json.loads((await ws.receive(timeout=10)).data)["type"] == "snapshot"
    people = await (await client.get("/api/people", headers=ADMIN)).json()
    sue = next(p for p in people["people"] if p["name"] == "sue")
    assert (await client.delete(f"/api/people/{sue['id']}", headers=ADMIN)).status == 200
    await _closed_with(ws, 4401)


async def test_an_agent_panel_closes_when_its_token_expires(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    agent_id, token = await make_agent(client, "ada")
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE agents SET token_expires_at = now() + interval '1 second' WHERE id = $1",
            agent_id,
        )
    panel = await Panel.open(client, token)
    await _closed_with(panel.ws, 4401)


async def test_a_right_token_works_while_wrong_ones_are_refused(
    app_factory: AppFactory,
) -> None:
    # Behind one proxy every client has one address: someone's guesses must not lock
    # the others out.
    client = await app_factory(auth_failures_per_minute=3, headers=NOBODY)
    statuses = [(await client.get("/api/queues", headers=bearer("guess"))).status for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    assert (await client.get("/api/queues", headers=ADMIN)).status == 200
    # The agent doors count wrong tokens too.
    other = await app_factory(auth_failures_per_minute=2, headers=NOBODY)
    seen = [(await other.get("/agent/session", headers=bearer("x"))).status for _ in range(3)]
    assert seen == [401, 401, 429]


async def test_concurrent_wrong_passwords_do_not_slip_under_the_limit(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(auth_failures_per_minute=5, headers=NOBODY)
    made = await client.post(
        "/api/people",
        json={"name": "ann", "role": "admin", "password": "right-password-123"},
        headers=ADMIN,
    )
    assert made.status == 201
    answers = await asyncio.gather(
        *(
            client.post("/api/session", json={"name": "ann", "password": f"wrong-{i}"})
            for i in range(20)
        )
    )
    statuses = sorted(a.status for a in answers)
    assert statuses.count(401) == 5 and statuses.count(429) == 15, statuses


async def test_a_new_password_ends_the_old_sessions(client: Any) -> None:
    token = await person(client, "ann", "admin")
    assert (await client.get("/api/people", headers=bearer(token))).status == 200
    people = await (await client.get("/api/people")).json()
    ann = next(p for p in people["people"] if p["name"] == "ann")
    changed = await client.patch(
        f"/api/people/{ann['id']}", json={"password": "a brand new passphrase"}
    )
    assert changed.status == 200
    assert (await client.get("/api/people", headers=bearer(token))).status == 401


async def test_ending_another_agents_call_reads_like_a_missing_one(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**FAST)
    await make_queue(client, "general")
    _, ada = await make_agent(client, "ada")
    _, bob = await make_agent(client, "bob")
    pa = await Panel.open(client, ada)
    await pa.send(type="available")
    await pa.state("available")
    answer = await enqueue(client, "pbx-1", ani="+12125550100")
    offer = await pa.until(lambda m: m["type"] == "offer")
    await pa.send(type="accept", offer_id=offer["offer_id"])
    await pa.state("on_call")
    call_id = answer["call"]["id"]
    pb = await Panel.open(client, bob)
    await pb.send(type="end", call_id=call_id, outcome="completed", ref="a")
    theirs = await pb.until(lambda m: m["type"] == "error")
    await pb.send(type="end", call_id=999999, outcome="completed", ref="b")
    missing = await pb.until(lambda m: m["type"] == "error")
    assert theirs["status"] == missing["status"] == 404
    assert theirs["detail"].replace(str(call_id), "N") == missing["detail"].replace("999999", "N")


async def test_erase_drops_the_pending_link_and_verify_refuses_it(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    await make_queue(client, "general", wrap_up_seconds=600)
    cust = await make_customer(client, "C1001", 30000, "+12125550100")
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    answer = await enqueue(client, "pbx-1", ani="+442079460018", customer_number="C1001")
    call_id = answer["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.until(lambda m: m["type"] == "panel")
    await panel.send(type="end", call_id=call_id, outcome="completed", ref="e")
    await panel.until(lambda m: m["type"] == "ack" and m.get("ref") == "e")
    assert (await client.post(f"/api/customers/{cust}/erase")).status == 200
    async with pool.acquire() as conn:
        left = await conn.fetchrow(
            "SELECT link_phone, link_customer_id FROM calls WHERE id = $1", call_id
        )
        assert left["link_phone"] is None and left["link_customer_id"] is None
    await panel.send(type="verify", call_id=call_id, ref="v")
    refused = await panel.until(lambda m: m.get("ref") == "v")
    assert refused["type"] == "error" and refused["status"] == 409
    async with pool.acquire() as conn:
        phones = await conn.fetchval(
            "SELECT count(*) FROM customer_phones WHERE customer_id = $1", cust
        )
    assert phones == 0


async def test_verify_is_in_the_audit_log(app_factory: AppFactory, pool: asyncpg.Pool[Any]) -> None:
    client = await app_factory(**FAST)
    await make_queue(client, "general")
    cust = await make_customer(client, "C1001", 30000, "+12125550100")
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    answer = await enqueue(client, "pbx-1", ani="+442079460018", customer_number="C1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.until(lambda m: m["type"] == "panel")
    await panel.send(type="verify", call_id=answer["call"]["id"], ref="v")
    ack = await panel.until(lambda m: m.get("ref") == "v")
    assert ack["type"] == "ack", ack
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT who, action, detail FROM customer_audit WHERE customer_id = $1 "
            "AND action = 'verify'",
            cust,
        )
    assert len(rows) == 1 and rows[0]["who"] == "agent:ada"
    detail = rows[0]["detail"]
    assert (json.loads(detail) if isinstance(detail, str) else detail)["linked"] is True


async def test_an_origin_that_is_not_a_url_is_refused_not_a_500(client: Any) -> None:
    for path in ("/ws/agent?token=x", "/ws/dashboard?token=x"):
        resp = await client.get(path, headers={"Origin": "http://["})
        assert resp.status == 403, (path, resp.status)
