"""``/ws/dashboard`` and the supervisor's actions, against a real service and database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import asyncpg
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from tests.conftest import ADMIN, AppFactory
from tests.integration.dashboard_helpers import bearer, person
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    eventually,
    make_agent,
    make_customer,
    make_queue,
)
from tests.integration.telephony_fakes import GENERIC_SECRET, post_generic

Client = TestClient[Any, Any]
Json = dict[str, Any]


class Board:
    """A scripted dashboard: applies snapshot and change messages, checks ``seq``."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seq = 0
        self.board: Json = {}
        self.messages: list[Json] = []

    @classmethod
    async def open(cls, client: Client, token: str) -> Board:
        return cls(await client.ws_connect(f"/ws/dashboard?token={token}", headers=NOBODY))

    async def next(self, timeout: float = 5.0) -> Json:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == WSMsgType.TEXT, msg
        data: Json = json.loads(msg.data)
        self.seq += 1
        assert data["seq"] == self.seq, (data["seq"], self.seq)
        self.messages.append(data)
        if data["type"] == "snapshot":
            self.board = dict(data["board"])
        elif data["type"] == "change":
            for part in ("stats", "waiting", "agents"):
                if part in data:
                    self.board[part] = data[part]
        return data

    async def until(self, check: Callable[[Json], bool], timeout: float = 5.0) -> Json:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.board and check(self.board)):
            left = deadline - loop.time()
            assert left > 0, f"the board never matched; last: {self.board}"
            await self.next(left)
        return self.board


NOBODY = {"Authorization": ""}


def waiting_ids(board: Json) -> list[str]:
    return [w["call_id"] for w in board["waiting"]]


async def test_who_may_open_the_dashboard_socket(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    _, agent_token = await make_agent(client, "ada")
    sup = await person(client, "sam")
    assert (await client.get("/ws/dashboard", headers=NOBODY)).status == 401
    assert (await client.get("/ws/dashboard?token=nope", headers=NOBODY)).status == 401
    refused = await client.get(f"/ws/dashboard?token={agent_token}", headers=NOBODY)
    assert refused.status == 403 and "supervisor" in (await refused.json())["detail"]
    foreign = await client.get(
        f"/ws/dashboard?token={sup}", headers=NOBODY | {"Origin": "https://evil.example"}
    )
    assert foreign.status == 403
    wrong_host = await client.get(
        f"/ws/dashboard?token={sup}", headers=NOBODY | {"Host": "evil.example"}
    )
    assert wrong_host.status == 421
    # A header token works too, and an admin's.
    ws = await client.ws_connect("/ws/dashboard", headers=bearer(sup))
    assert json.loads((await ws.receive()).data)["type"] == "snapshot"
    await ws.close()
    ws = await client.ws_connect("/ws/dashboard", headers=ADMIN)
    assert json.loads((await ws.receive()).data)["type"] == "snapshot"
    await ws.close()


async def test_a_call_arrives_then_is_answered_and_the_service_level_shows_it(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**FAST)
    _, token = await make_agent(client, "ada")
    board = await Board.open(client, await person(client, "sam"))
    first = await board.next()
    assert first["type"] == "snapshot" and first["seq"] == 1
    assert first["board"]["waiting"] == [] and isinstance(first["chart"], list)

    await enqueue(client, "pbx-1")
    seen = await board.until(lambda b: waiting_ids(b) == ["pbx-1"])
    row = seen["waiting"][0]
    assert row["position"] == 1 and row["why"] == "unidentified caller: served in order of arrival"

    panel = await Panel.open(client, token)
    await panel.send(type="available")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")

    def answered(b: Json) -> bool:
        q = b["stats"]["queues"][0]
        return b["waiting"] == [] and q["window"]["answered"] == 1

    done = await board.until(answered)
    q = done["stats"]["queues"][0]
    assert q["window"]["service_level"] == 1.0
    ada = next(a for a in done["agents"] if a["name"] == "ada")
    assert ada["state"] == "on_call" and ada["handled_today"] == 1
    await panel.close()


async def test_changes_are_coalesced_and_resync_and_bad_messages_answer(
    app_factory: AppFactory,
) -> None:
    client = await app_factory(**FAST)
    board = await Board.open(client, await person(client, "sam"))
    await board.next()
    await asyncio.gather(*(enqueue(client, f"pbx-{i}") for i in range(30)))
    await board.until(lambda b: len(b["waiting"]) == 30)
    changes = [m for m in board.messages if m["type"] == "change"]
    # 30 enqueues make 30 events at least; the board is read at most ~4 times a second.
    assert 1 <= len(changes) < 15, len(changes)

    await board.ws.send_str("not json")
    error = await board.next()
    assert error["type"] == "error" and error["status"] == 400
    await board.ws.send_str(json.dumps({"type": "dance"}))
    error = await board.next()
    assert error["status"] == 422 and error["field"] == "type"
    await board.ws.send_str(json.dumps({"type": "resync"}))
    again = await board.until(lambda b: True)
    while board.messages[-1]["type"] != "snapshot":
        again = await board.next()
    assert len(again["board"]["waiting"]) == 30
    await board.ws.close()


async def test_bump_is_recorded_with_who_and_reorders_the_board(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    sup_token = await person(client, "sam")
    sup = bearer(sup_token)
    board = await Board.open(client, sup_token)
    await board.next()
    await enqueue(client, "first")
    second = (await enqueue(client, "second"))["call"]["id"]
    await board.until(lambda b: waiting_ids(b) == ["first", "second"])
    resp = await client.post(
        f"/api/calls/{second}/priority",
        json={"credit_seconds": 60, "bumped_by": "someone-else"},
        headers=sup,
    )
    assert resp.status == 422  # no name typed by the client is taken
    resp = await client.post(
        f"/api/calls/{second}/priority", json={"credit_seconds": 60}, headers=sup
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["bumped_by"] == "supervisor:sam"
    b = await board.until(lambda b: waiting_ids(b) == ["second", "first"])
    assert b["waiting"][0]["bumped_by"] == "supervisor:sam"
    assert b["waiting"][0]["why"] == "a supervisor gave this call 60 s of credit"
    too_much = await client.post(
        f"/api/calls/{second}/priority", json={"credit_seconds": 9999}, headers=sup
    )
    assert too_much.status == 422 and (await too_much.json())["field"] == "credit_seconds"
    back = await client.post(
        f"/api/calls/{second}/priority", json={"credit_seconds": None}, headers=sup
    )
    assert (await back.json())["bumped_by"] is None
    await board.ws.close()


async def test_move_keeps_the_service_key_and_refuses_bad_moves(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    await make_queue(client, "sales")
    sup = bearer(await person(client, "sam"))
    await make_customer(client, "C-1", 10_000, "+12125550100")
    moved = (await enqueue(client, "vip", ani="+12125550100"))["call"]
    resp = await client.post(f"/api/calls/{moved['id']}/move", json={"queue": "sales"}, headers=sup)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["queue"] == "sales" and body["service_key"] == moved["service_key"]
    assert body["position"] == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT queue FROM waiting_calls") == "sales"
    for payload, status, field in (
        ({"queue": "nowhere"}, 422, "queue"),
        ({"queue": "sales"}, 422, "queue"),  # already there
        ({"queue": "BAD NAME"}, 422, "queue"),
        ({}, 422, "queue"),
    ):
        bad = await client.post(f"/api/calls/{moved['id']}/move", json=payload, headers=sup)
        assert bad.status == status, await bad.text()
        assert (await bad.json())["field"] == field, payload
    missing = await client.post("/api/calls/999999/move", json={"queue": "general"}, headers=sup)
    assert missing.status == 404
    await client.post(f"/api/calls/{moved['id']}/end", json={"outcome": "abandoned"}, headers=sup)
    ended = await client.post(
        f"/api/calls/{moved['id']}/move", json={"queue": "general"}, headers=sup
    )
    assert ended.status == 409
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT queue FROM calls WHERE id = $1", moved["id"]) == "sales"


async def test_force_offline_and_patch_queue(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    agent_id, token = await make_agent(client, "ada")
    sup = bearer(await person(client, "sam"))
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    resp = await client.post(f"/api/agents/{agent_id}/offline", headers=sup)
    assert resp.status == 200 and (await resp.json())["state"] == "offline"
    await panel.state("offline")
    # On a call: refused, the call keeps its agent.
    await panel.send(type="available")
    call_id = (await enqueue(client, "pbx-1"))["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")
    busy = await client.post(f"/api/agents/{agent_id}/offline", headers=sup)
    assert busy.status == 409 and str(call_id) in (await busy.json())["detail"]
    assert (await client.post("/api/agents/999999/offline", headers=sup)).status == 404
    await panel.close()

    # PATCH changes what it is given and keeps the rest (PUT would reset credits).
    await make_queue(client, "sales", credits={"platinum": 90, "gold": 30}, wrap_up_seconds=5)
    patched = await client.patch("/api/queues/sales", json={"service_level_seconds": 45})
    assert patched.status == 200, await patched.text()
    body = await patched.json()
    assert body["service_level_seconds"] == 45
    assert body["credits"] == {"platinum": 90, "gold": 30} and body["wrap_up_seconds"] == 5
    for payload, field in (
        ({"service_level_seconds": -1}, "service_level_seconds"),
        ({"overflow_queue": "nowhere"}, "overflow_queue"),
        ({"credits": {"diamond": 5}}, "credits"),
        ({"policy": None}, None),
        ({}, None),
    ):
        bad = await client.patch("/api/queues/sales", json=payload)
        assert bad.status == 422, (payload, await bad.text())
        if field is not None:
            assert field in json.dumps(await bad.json()), payload
    assert (await client.patch("/api/queues/nowhere", json={"wrap_up_seconds": 1})).status == 404
    assert (
        await client.patch("/api/queues/sales", json={"wrap_up_seconds": 1}, headers=sup)
    ).status == 403
    kept = await (await client.get("/api/queues")).json()
    sales = next(q for q in kept["queues"] if q["name"] == "sales")
    assert sales["config"]["service_level_seconds"] == 45
    assert sales["config"]["credits"] == {"platinum": 90, "gold": 30}


async def test_metrics_show_agents_zero_series_and_service_level(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    await make_agent(client, "ada")
    await enqueue(client, "pbx-1")

    async def shown() -> bool:
        text = await (await client.get("/metrics")).text()
        return 'callcenter_calls_waiting{queue="general",tier="unknown"} 1.0' in text

    await eventually(shown)
    text = await (await client.get("/metrics")).text()
    assert 'callcenter_agents{queue="general",state="offline"} 1.0' in text
    assert 'callcenter_agents{queue="general",state="available"} 0.0' in text
    assert 'callcenter_calls_waiting{queue="general",tier="platinum"} 0.0' in text
    assert "_created" not in text


async def test_a_signed_call_offered_at_once_shows_on_the_board_ringing(
    app_factory: AppFactory,
) -> None:
    """A PBX's signed webhook for a call that a free agent is offered in the enqueue's own
    statement (migration 0027): the supervisor's board shows it waiting and ringing that
    agent, then gone once answered. (The board hears both the enqueue's ``offered:<queue>``
    and the agent's new state; either alone brings it up to date.)"""
    client = await app_factory(**FAST, generic_webhook_secret=SecretStr(GENERIC_SECRET))
    agent_id, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    board = await Board.open(client, await person(client, "sam"))
    assert (await board.next())["type"] == "snapshot"

    incoming = {"type": "call.incoming", "call_id": "ring-1", "queue": "general"}
    status, reply = await post_generic(client, json.dumps(incoming).encode())
    assert status == 200 and reply["action"] == "wait", reply
    seen = await board.until(
        lambda b: (
            [(w["call_id"], w["offered_to"]) for w in b["waiting"]]
            == [("generic:ring-1", agent_id)]
        )
    )
    assert seen["waiting"][0]["position"] == 1
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")
    await board.until(lambda b: b["waiting"] == [])
    await panel.close()
