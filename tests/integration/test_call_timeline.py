"""Supervisors' actions in the action log, and a call's timeline with who did what."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import AppFactory
from tests.integration.dashboard_helpers import bearer, person
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    make_agent,
    make_customer,
    make_queue,
)

Client = TestClient[Any, Any]
Json = dict[str, Any]


async def timeline(client: Client, call_id: int, headers: dict[str, str]) -> list[Json]:
    resp = await client.get(f"/api/calls/{call_id}/timeline", headers=headers)
    assert resp.status == 200, await resp.text()
    body: Json = await resp.json()
    assert body["call"]["id"] == call_id
    events: list[Json] = body["events"]
    return events


async def test_a_calls_timeline_says_what_happened_and_who_did_it(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    await make_queue(client, "sales")
    sam = bearer(await person(client, "sam"))
    customer_id = await make_customer(client, "C-1", 10_000, "+12125550100")
    _, ada_token = await make_agent(client, "ada")
    _, bob_token = await make_agent(client, "bob", queues=["sales"])
    call = (await enqueue(client, "pbx-t1", ani="+12125550100"))["call"]
    call_id = call["id"]

    bumped = await client.post(
        f"/api/calls/{call_id}/priority", json={"credit_seconds": 30}, headers=sam
    )
    assert bumped.status == 200, await bumped.text()
    ada = await Panel.open(client, ada_token)
    await ada.send(type="available")
    offer = await ada.until(lambda m: m["type"] == "offer")
    await ada.send(type="reject", offer_id=offer["offer_id"])
    await ada.state("not_responding")
    await ada.close()
    moved = await client.post(f"/api/calls/{call_id}/move", json={"queue": "sales"}, headers=sam)
    assert moved.status == 200, await moved.text()
    pinned = await client.put(
        f"/api/customers/{customer_id}/tier-pin",
        json={"tier": "gold", "reason": "kept as promised"},
        headers=sam,
    )
    assert pinned.status == 200, await pinned.text()
    bob = await Panel.open(client, bob_token)
    await bob.send(type="available")
    offer = await bob.until(lambda m: m["type"] == "offer")
    await bob.send(type="accept", offer_id=offer["offer_id"])
    await bob.state("on_call")
    await bob.send(type="wrap_up", call_id=call_id, ref="w1", notes="sorted")
    ack = await bob.until(lambda m: m["type"] in ("ack", "error"))
    assert ack["type"] == "ack", ack
    await bob.close()

    events = await timeline(client, call_id, sam)
    said = [(e["kind"], e["who"]) for e in events]
    assert said == [
        ("arrived", None),
        ("bump_call", "supervisor:sam"),
        ("offered", None),
        ("rejected", "agent:ada"),
        ("move_call", "supervisor:sam"),
        ("pin_tier", "supervisor:sam"),
        ("offered", None),
        ("accepted", "agent:bob"),
        ("ended", "agent:bob"),
        ("wrapped_up", "agent:bob"),
    ], said
    text = [e["text"] for e in events]
    assert text[0] == "arrived in general, identified by phone"
    assert text[1] == "bumped to 30 s of credit by supervisor:sam"
    assert text[2] == "offered to agent ada" and text[6] == "offered to agent bob"
    assert text[4] == "moved from general to sales by supervisor:sam"
    assert text[5] == "caller's tier pinned to gold by supervisor:sam"
    assert text[8] == "completed by agent bob"
    ats = [e["at"] for e in events]
    assert ats == sorted(ats)

    # The action log holds each action once, with the actor from the session.
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT who, action, call_id, queue FROM action_audit ORDER BY id")
    assert [(r["who"], r["action"], r["call_id"], r["queue"]) for r in rows] == [
        ("admin:bootstrap", "put_queue", None, "sales"),
        ("supervisor:sam", "bump_call", call_id, "general"),
        ("supervisor:sam", "move_call", call_id, "sales"),
    ]


async def test_ends_offline_and_queue_changes_are_audited_and_shown(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    sam = bearer(await person(client, "sam"))
    agent_id, token = await make_agent(client, "ada")
    ringing = (await enqueue(client, "pbx-r"))["call"]["id"]
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.until(lambda m: m["type"] == "offer")
    resp = await client.post(f"/api/agents/{agent_id}/offline", headers=sam)
    assert resp.status == 200, await resp.text()
    await panel.state("offline")
    await panel.close()
    ended = await client.post(
        f"/api/calls/{ringing}/end", json={"outcome": "transferred"}, headers=sam
    )
    assert ended.status == 200, await ended.text()
    again = await client.post(
        f"/api/calls/{ringing}/end", json={"outcome": "transferred"}, headers=sam
    )
    assert again.status == 200  # a repeat changes nothing and records nothing
    patched = await client.patch("/api/queues/general", json={"service_level_seconds": 30})
    assert patched.status == 200, await patched.text()

    events = await timeline(client, ringing, sam)
    said = [(e["kind"], e["who"]) for e in events]
    assert said == [
        ("arrived", None),
        ("offered", None),
        ("withdrawn", None),
        ("force_offline", "supervisor:sam"),
        ("ended", "supervisor:sam"),
    ], said
    assert events[3]["text"] == "agent ada forced offline by supervisor:sam; the offer went back"
    assert events[4]["text"] == "ended transferred by supervisor:sam"
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT who, action, call_id, agent_id, queue, detail FROM action_audit ORDER BY id"
        )
        assert [(r["who"], r["action"], r["call_id"], r["agent_id"], r["queue"]) for r in rows] == [
            ("supervisor:sam", "force_offline", ringing, agent_id, None),
            ("supervisor:sam", "end_call", ringing, None, "general"),
            ("admin:bootstrap", "patch_queue", None, None, "general"),
        ]
        assert rows[0]["detail"] == {"withdrawn_calls": [ringing]}
        assert rows[2]["detail"] == {"fields": ["service_level_seconds"]}
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE action_audit SET who = 'someone-else'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM action_audit")
    # An admin reads the log through the API, newest first, filtered and paged.
    assert (await client.get("/api/actions", headers=sam)).status == 403
    listed = await (await client.get(f"/api/actions?call={ringing}&limit=1")).json()
    assert [e["action"] for e in listed["entries"]] == ["end_call"]
    older = await (
        await client.get(f"/api/actions?call={ringing}&before={listed['next_before']}")
    ).json()
    assert [(e["action"], e["who"]) for e in older["entries"]] == [
        ("force_offline", "supervisor:sam")
    ]
    assert older["next_before"] is None
    bad = await client.get("/api/actions?call=abc")
    assert bad.status == 422 and (await bad.json())["field"] == "call"


async def test_the_timeline_is_for_supervisors_and_names_an_unknown_call(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**FAST)
    _, agent_token = await make_agent(client, "ada")
    sam = bearer(await person(client, "sam"))
    call_id = (await enqueue(client, "pbx-a"))["call"]["id"]
    anonymous = await client.get(f"/api/calls/{call_id}/timeline", headers={"Authorization": ""})
    assert anonymous.status == 401
    agent = await client.get(f"/api/calls/{call_id}/timeline", headers=bearer(agent_token))
    assert agent.status == 403
    missing = await client.get("/api/calls/999999/timeline", headers=sam)
    assert missing.status == 404
    body = await missing.json()
    assert body["field"] == "call_id" and "999999" in body["detail"]
    assert (await client.get("/api/calls/abc/timeline", headers=sam)).status == 404
    waiting = await timeline(client, call_id, sam)
    assert [e["kind"] for e in waiting] == ["arrived"]
    assert waiting[0]["text"] == "arrived in general as unknown, number withheld, not identified"
    spec = await (await client.get("/openapi.json")).json()
    op = spec["paths"]["/api/calls/{call_id}/timeline"]["get"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/Timeline")
