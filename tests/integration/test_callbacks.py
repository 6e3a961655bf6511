"""Callbacks and redials on the generic peer, end to end: the caller keeps their place.

Signed events go in through the real webhook, the service's signed
``callback`` command goes out to a fake PBX that answers the ring as each
test asks, agents work on the real ``/ws/agent``, and every check of order
reads the real SQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from callcenter import app_keys
from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, eventually, make_customer, make_queue
from tests.integration.telephony_fakes import GENERIC_SECRET, FakePBX, post_generic
from tests.integration.telephony_helpers import (
    accept_next_offer,
    available_panel,
    make_agent_with_endpoint,
)

ServerFactory = Callable[..., Awaitable[TestServer]]

#: Callbacks offered to everyone at once, two rings a second apart.
RULE = {"after_seconds": 0, "attempts": 2, "retry_seconds": 1}


def _event(kind: str, call_id: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, "call_id": call_id, **fields}).encode()


async def _service(
    app_factory: AppFactory,
    aiohttp_server: ServerFactory,
    pbx: FakePBX,
    settings: dict[str, Any] | None = None,
    **queue: Any,
) -> TestClient[Any, Any]:
    """The service with the fake PBX as its callback URL (``settings``: more changes),
    and queue ``general`` configured with ``queue``."""
    server = await aiohttp_server(pbx.app(), host="127.0.0.1")
    client = await app_factory(
        **(
            FAST
            | {
                "generic_webhook_secret": SecretStr(GENERIC_SECRET),
                "generic_callback_url": str(server.make_url("/pbx/commands")),
                "connect_backoff_seconds": 0.05,
            }
            | (settings or {})
        )
    )
    await make_queue(client, "general", **queue)
    return client


async def _arrive(client: TestClient[Any, Any], peer_call_id: str, ani: str) -> dict[str, Any]:
    status, reply = await post_generic(
        client, _event("call.incoming", peer_call_id, **{"from": ani})
    )
    assert status == 200, reply
    return reply


async def _call(client: TestClient[Any, Any], call_id: int) -> dict[str, Any]:
    resp = await client.get(f"/api/calls/{call_id}")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def _order(client: TestClient[Any, Any]) -> list[int]:
    resp = await client.get("/api/queues/general/calls")
    assert resp.status == 200
    return [c["id"] for c in (await resp.json())["calls"]]


async def _take_callback(client: TestClient[Any, Any], peer_call_id: str, **fields: Any) -> Any:
    status, reply = await post_generic(
        client, _event("call.callback_requested", peer_call_id, **fields)
    )
    assert status == 200, reply
    return reply


async def _agent_state(pool: asyncpg.Pool[Any], agent_id: int) -> str:
    state: str = await pool.fetchval("SELECT state FROM agents WHERE id = $1", agent_id)
    return state


async def test_a_caller_who_takes_a_callback_keeps_their_place_and_is_rung_back(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx = FakePBX()
    client = await _service(app_factory, aiohttp_server, pbx, callback=RULE, wrap_up_seconds=0)
    for n, phone in enumerate(["+12125550101", "+12125550102", "+12125550103"], 1):
        await make_customer(client, f"C-{n}", 100, phone)
    first = await _arrive(client, "pbx-1", "+12125550101")
    second = await _arrive(client, "pbx-2", "+12125550102")
    third = await _arrive(client, "pbx-3", "+12125550103")
    # The queue's rule offers the callback to a caller holding.
    assert second["action"] == "wait" and second["offer_callback"] is True
    before = await _order(client)
    keys_before = await pool.fetch(
        "SELECT call_id, service_key FROM waiting_calls ORDER BY call_id"
    )

    taken = await _take_callback(client, "pbx-2")
    assert taken["action"] == "hangup" and taken["callback"] == {"number": "+12125550102"}
    # The caller hangs up: the call stays, a virtual call in the same place.
    status, hung = await post_generic(client, _event("call.hangup", "pbx-2"))
    assert status == 200 and hung["action"] == "hangup"
    assert hung["call"]["state"] == "waiting"
    assert await _order(client) == before == [c["call"]["id"] for c in (first, second, third)]
    keys_after = await pool.fetch("SELECT call_id, service_key FROM waiting_calls ORDER BY call_id")
    assert keys_after == keys_before
    listed = (await (await client.get("/api/queues/general/calls")).json())["calls"]
    assert [c["callback"] for c in listed] == [False, True, False]
    # Asking again is a no-op, and a virtual call is offered no callback.
    again = await _take_callback(client, "pbx-2", number="+12125550199")
    assert again["callback"] == {"number": "+12125550102"} and again["note"]
    status, polled = await post_generic(client, _event("call.incoming", "pbx-2"))
    assert polled["offer_callback"] is False and polled["action"] == "hangup"

    agent_id, token = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")
    panel = await available_panel(client, token)
    assert await accept_next_offer(panel) == first["call"]["id"]
    await post_generic(client, _event("call.hangup", "pbx-1"))
    # Next in line is the virtual call; the offer says so.
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == second["call"]["id"]
    assert offer["callback"] == "+12125550102"
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await eventually(lambda: _has(pbx, "callback"))
    ring = next(c for c in pbx.commands if c["action"] == "callback")
    assert ring == {
        "action": "callback",
        "call_id": "pbx-2",
        "agent": {"name": "ada", "endpoint": "sip:ada@pbx.example"},
        "number": "+12125550102",
        "ring_seconds": 30.0,
    }

    async def answered() -> bool:
        row = await pool.fetchrow(
            "SELECT callback_answered_at, state FROM calls WHERE id = $1", second["call"]["id"]
        )
        return row["callback_answered_at"] is not None and row["state"] == "connected"

    await eventually(answered)
    # The conversation on the callback leg ends with its hang-up: completed.
    status, ended = await post_generic(client, _event("call.hangup", "pbx-2"))
    assert ended["call"]["state"] == "completed"
    attempts = await pool.fetch(
        "SELECT result, agent_id, number FROM callback_attempts WHERE call_id = $1",
        second["call"]["id"],
    )
    assert [dict(a) for a in attempts] == [
        {"result": "answered", "agent_id": agent_id, "number": "+12125550102"}
    ]
    # No hang-up command is sent for a caller who hung up themselves.
    assert not [c for c in pbx.commands if c["action"] == "hangup"]
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == third["call"]["id"] and offer.get("callback") is None
    await panel.close()


async def _has(pbx: FakePBX, action: str, count: int = 1) -> bool:
    return len([c for c in pbx.commands if c["action"] == action]) >= count


async def test_a_callback_nobody_answers_frees_the_agent_retries_and_ends_callback_failed(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx = FakePBX(rings=["no_answer", "busy"])
    client = await _service(app_factory, aiohttp_server, pbx, callback=RULE)
    reply = await _arrive(client, "pbx-7", "+12125550107")
    call_id = reply["call"]["id"]
    await _take_callback(client, "pbx-7")
    await post_generic(client, _event("call.hangup", "pbx-7"))
    key = await pool.fetchval("SELECT service_key FROM calls WHERE id = $1", call_id)

    agent_id, token = await make_agent_with_endpoint(client, "bo", "sip:bo@pbx.example")
    panel = await available_panel(client, token)
    assert await accept_next_offer(panel) == call_id
    # Not answered: the agent is free at once, the call out of the queue until the retry.
    await panel.until(lambda m: m["type"] == "state" and m["agent"]["state"] == "available")
    row = await pool.fetchrow(
        "SELECT state, callback_retry_at, callback_attempts, agent_id FROM calls WHERE id = $1",
        call_id,
    )
    assert row["state"] == "waiting" and row["agent_id"] is None
    assert row["callback_attempts"] == 1
    # It comes back after the delay with its key, and rings again.
    assert await accept_next_offer(panel) == call_id
    assert await pool.fetchval("SELECT service_key FROM calls WHERE id = $1", call_id) == key

    async def over() -> bool:
        state = await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id)
        return bool(state == "abandoned")

    await eventually(over)
    ended = await pool.fetchrow(
        "SELECT end_reason, callback_retry_at, agent_id FROM calls WHERE id = $1", call_id
    )
    assert ended["end_reason"] == "callback_failed" and ended["callback_retry_at"] is None
    assert await _agent_state(pool, agent_id) == "available"
    results = await pool.fetch(
        "SELECT result, cause FROM callback_attempts WHERE call_id = $1 ORDER BY id", call_id
    )
    assert [r["result"] for r in results] == ["no_answer", "no_answer"]
    assert "busy" in results[1]["cause"]
    # Every ring is in the call's timeline, and nobody is asked to hang up a line
    # nobody is on.
    resp = await client.get(f"/api/calls/{call_id}/timeline")
    kinds = [e["kind"] for e in (await resp.json())["events"]]
    assert kinds.count("callback_rang") == 2 and "callback_requested" in kinds
    await eventually(
        lambda: _released(pool, call_id, "not_needed"),
    )
    assert not [c for c in pbx.commands if c["action"] == "hangup"]
    await panel.close()


async def _released(pool: asyncpg.Pool[Any], call_id: int, state: str) -> bool:
    found = await pool.fetchval("SELECT state FROM call_releases WHERE call_id = $1", call_id)
    return bool(found == state)


async def test_a_callback_answered_after_a_supervisor_ended_the_call_lets_the_caller_go(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx = FakePBX(ring_gate=asyncio.Event())
    client = await _service(app_factory, aiohttp_server, pbx, callback=RULE)
    reply = await _arrive(client, "pbx-8", "+12125550108")
    call_id = reply["call"]["id"]
    await _take_callback(client, "pbx-8")
    await post_generic(client, _event("call.hangup", "pbx-8"))
    _, token = await make_agent_with_endpoint(client, "cy", "sip:cy@pbx.example")
    panel = await available_panel(client, token)
    assert await accept_next_offer(panel) == call_id
    await asyncio.wait_for(pbx.ringing.wait(), 5)
    resp = await client.post(
        f"/api/calls/{call_id}/end", json={"outcome": "transferred", "reason": "supervisor"}
    )
    assert resp.status == 200, await resp.text()
    assert pbx.ring_gate is not None
    pbx.ring_gate.set()  # the caller picks up a call that is over
    await eventually(lambda: _has(pbx, "hangup"))
    assert await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id) == "transferred"
    assert (
        await pool.fetchval("SELECT callback_answered_at FROM calls WHERE id = $1", call_id) is None
    )
    await panel.close()


async def test_bad_callback_requests_are_refused_naming_the_field_and_change_nothing(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx = FakePBX()
    client = await _service(app_factory, aiohttp_server, pbx, callback=RULE)
    await _arrive(client, "pbx-20", "+12125550120")
    withheld = await _arrive(client, "pbx-21", "anonymous")
    assert withheld["offer_callback"] is True

    async def refused(peer_call_id: str, status: int, field: str, **fields: Any) -> None:
        got, body = await post_generic(
            client, _event("call.callback_requested", peer_call_id, **fields)
        )
        assert got == status, body
        assert body.get("field") == field or field in json.dumps(body), body

    await refused("pbx-20", 422, "number", number="not a number")
    await refused("pbx-20", 422, "number", number="+1 900 555 0100")  # premium rate
    await refused("pbx-21", 422, "ani")  # withheld, and no number typed
    await refused("pbx-99", 404, "call_id")  # never handed in
    assert await pool.fetchval("SELECT count(*) FROM calls WHERE callback_number IS NOT NULL") == 0
    # A call that no longer waits cannot take one.
    await post_generic(client, _event("call.hangup", "pbx-20"))
    await refused("pbx-20", 409, "call_id")
    # A typed number is used instead of a withheld one.
    taken = await _take_callback(client, "pbx-21", number="(212) 555-0121")
    assert taken["callback"] == {"number": "+12125550121"}
    # A bad rule is refused naming its field.
    resp = await client.patch("/api/queues/general", json={"callback": {"tiers": ["diamond"]}})
    assert resp.status == 422 and "callback.tiers" in await resp.text()
    resp = await client.patch("/api/queues/general", json={"callback": {"timezone": "Mars/Base"}})
    assert resp.status == 422 and "timezone" in await resp.text()


async def test_a_peer_that_cannot_ring_back_offers_no_callback_and_takes_none(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    # No callback URL: the service cannot command this PBX, so it cannot ring anyone.
    client = await app_factory(**(FAST | {"generic_webhook_secret": SecretStr(GENERIC_SECRET)}))
    await make_queue(client, "general", callback=RULE)
    reply = await _arrive(client, "pbx-70", "+12125550170")
    assert reply["offer_callback"] is False
    status, body = await post_generic(client, _event("call.callback_requested", "pbx-70"))
    assert status == 409 and body["field"] == "type", body
    assert await pool.fetchval("SELECT count(*) FROM calls WHERE callback_number IS NOT NULL") == 0


async def test_no_callback_is_offered_outside_the_rule(
    app_factory: AppFactory, aiohttp_server: ServerFactory
) -> None:
    pbx = FakePBX()
    client = await _service(
        app_factory, aiohttp_server, pbx, callback={"after_seconds": 0, "tiers": ["platinum"]}
    )
    await make_customer(client, "C-P", 30000, "+12125550130")
    platinum = await _arrive(client, "pbx-30", "+12125550130")
    standard = await _arrive(client, "pbx-31", "+12125550131")
    assert platinum["offer_callback"] is True and standard["offer_callback"] is False
    # A long threshold: no wait is known to be that long yet.
    await make_queue(client, "general", callback={"after_seconds": 600})
    later = await _arrive(client, "pbx-32", "+12125550132")
    assert later["offer_callback"] is False


async def test_a_redial_within_the_window_resumes_the_old_key_and_never_a_better_one(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx = FakePBX()
    client = await _service(app_factory, aiohttp_server, pbx, redial_window_seconds=60)
    await make_customer(client, "C-R", 100, "+12125550140")
    dropped = await _arrive(client, "pbx-40", "+12125550140")
    behind = await _arrive(client, "pbx-41", "+12125550141")
    await post_generic(client, _event("call.hangup", "pbx-40"))
    old_key = await pool.fetchval(
        "SELECT service_key FROM calls WHERE id = $1", dropped["call"]["id"]
    )
    redial = await _arrive(client, "pbx-42", "+12125550140")
    assert redial["call"]["resumed"] is True
    call = await _call(client, redial["call"]["id"])
    assert call["resumed"]["call_id"] == dropped["call"]["id"]
    assert call["resumed"]["waited_before_seconds"] >= 0
    assert call["position"] == 1  # ahead of the caller who arrived after the first call
    new_key = await pool.fetchval("SELECT service_key FROM calls WHERE id = $1", call["id"])
    assert new_key == old_key
    assert await _order(client) == [call["id"], behind["call"]["id"]]

    # The agent's offer says so.
    _, token = await make_agent_with_endpoint(client, "di", "sip:di@pbx.example")
    panel = await available_panel(client, token)
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == call["id"]
    assert offer["resumed"]["call_id"] == dropped["call"]["id"]
    await panel.send(type="reject", offer_id=offer["offer_id"])
    await panel.close()

    # Dropping again and redialling resumes the same place, not an earlier one.
    await post_generic(client, _event("call.hangup", "pbx-42"))
    again = await _arrive(client, "pbx-43", "+12125550140")
    assert (await _call(client, again["call"]["id"]))["resumed"]["call_id"] == call["id"]
    assert (
        await pool.fetchval("SELECT service_key FROM calls WHERE id = $1", again["call"]["id"])
        == old_key
    )

    # Out of the window, a redial starts afresh at the back.
    await post_generic(client, _event("call.hangup", "pbx-43"))
    await pool.execute(
        "UPDATE calls SET ended_at = ended_at - interval '61 seconds',"
        " enqueued_at = enqueued_at - interval '61 seconds' WHERE id = $1",
        again["call"]["id"],
    )
    fresh = await _arrive(client, "pbx-44", "+12125550140")
    assert fresh["call"]["resumed"] is False
    assert await _order(client) == [behind["call"]["id"], fresh["call"]["id"]]


async def test_without_a_window_a_redial_starts_afresh(
    app_factory: AppFactory, aiohttp_server: ServerFactory
) -> None:
    pbx = FakePBX()
    client = await _service(app_factory, aiohttp_server, pbx)
    await make_customer(client, "C-S", 100, "+12125550150")
    await _arrive(client, "pbx-50", "+12125550150")
    behind = await _arrive(client, "pbx-51", "+12125550151")
    await post_generic(client, _event("call.hangup", "pbx-50"))
    redial = await _arrive(client, "pbx-52", "+12125550150")
    assert redial["call"]["resumed"] is False
    assert (await _call(client, redial["call"]["id"]))["resumed"] is None
    assert await _order(client) == [behind["call"]["id"], redial["call"]["id"]]


async def test_a_virtual_call_never_gives_up_at_the_maximum_wait(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx = FakePBX()
    client = await _service(app_factory, aiohttp_server, pbx, callback=RULE, max_wait_seconds=0.5)
    virtual = await _arrive(client, "pbx-60", "+12125550160")
    await _take_callback(client, "pbx-60")
    holding = await _arrive(client, "pbx-61", "+12125550161")

    async def gave_up() -> bool:
        state = await pool.fetchval("SELECT state FROM calls WHERE id = $1", holding["call"]["id"])
        return bool(state == "transferred")

    await eventually(gave_up)
    assert (
        await pool.fetchval("SELECT state FROM calls WHERE id = $1", virtual["call"]["id"])
        == "waiting"
    )


async def test_a_caller_who_rings_again_while_waiting_for_their_callback_takes_its_place(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx = FakePBX()
    client = await _service(app_factory, aiohttp_server, pbx, callback=RULE)
    await make_customer(client, "C-W", 100, "+12125550180")
    virtual = await _arrive(client, "pbx-80", "+12125550180")
    await _take_callback(client, "pbx-80")
    await post_generic(client, _event("call.hangup", "pbx-80"))
    behind = await _arrive(client, "pbx-81", "+12125550181")
    key = await pool.fetchval("SELECT service_key FROM calls WHERE id = $1", virtual["call"]["id"])

    again = await _arrive(client, "pbx-82", "+12125550180")
    assert again["call"]["resumed"] is True and again["action"] == "wait"
    assert await _order(client) == [again["call"]["id"], behind["call"]["id"]]
    assert (
        await pool.fetchval("SELECT service_key FROM calls WHERE id = $1", again["call"]["id"])
        == key
    )
    old = await pool.fetchrow(
        "SELECT state, end_reason FROM calls WHERE id = $1", virtual["call"]["id"]
    )
    assert dict(old) == {"state": "abandoned", "end_reason": "rang_again"}
    # Nobody is rung for the old call, and no hang-up is sent for a line nobody is on.
    await eventually(lambda: _released(pool, virtual["call"]["id"], "not_needed"))
    assert pbx.commands == []


async def test_a_ring_whose_outcome_is_unknown_stays_with_the_agent_until_a_hang_up(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    # The PBX never answers the callback command: the caller may be talking to the
    # agent already, so the ring is neither repeated nor counted as not answered, and
    # the PBX's hang-up (or the agent's end) closes the call.
    pbx = FakePBX(ring_gate=asyncio.Event())
    quick = {"connect_timeout_seconds": 0.5, "callback_ring_seconds": 5.0}
    client = await _service(app_factory, aiohttp_server, pbx, quick, callback=RULE)
    reply = await _arrive(client, "pbx-90", "+12125550190")
    call_id = reply["call"]["id"]
    await _take_callback(client, "pbx-90")
    agent_id, token = await make_agent_with_endpoint(client, "fe", "sip:fe@pbx.example")
    panel = await available_panel(client, token)
    assert await accept_next_offer(panel) == call_id

    async def unknown() -> bool:
        error = await pool.fetchval(
            "SELECT last_error FROM call_bridges WHERE call_id = $1", call_id
        )
        return error is not None and error.startswith("outcome unknown")

    await eventually(unknown, timeout=15)
    await pool.execute(
        "UPDATE callback_attempts SET started_at = started_at - interval '1 hour'"
        " WHERE call_id = $1",
        call_id,
    )
    await client.app[app_keys.BRIDGER].catch_up()  # the watchdog leaves it alone
    assert await _agent_state(pool, agent_id) == "on_call"
    assert len([c for c in pbx.commands if c["action"] == "callback"]) == 1
    status, ended = await post_generic(client, _event("call.hangup", "pbx-90"))
    assert status == 200 and ended["call"]["state"] == "completed"
    assert pbx.ring_gate is not None
    pbx.ring_gate.set()
    await panel.close()


async def test_a_typed_customer_number_takes_over_no_place(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    # Anyone can read a customer number off a letter: typed, it serves that one call,
    # and must not end the customer's callback nor take their dropped call's place.
    pbx = FakePBX()
    client = await _service(
        app_factory, aiohttp_server, pbx, callback=RULE, redial_window_seconds=300
    )
    await make_customer(client, "C-T", 100, "+12125550185")
    virtual = await _arrive(client, "pbx-85", "+12125550185")
    await _take_callback(client, "pbx-85")
    dropped = await _arrive(client, "pbx-86", "+12125550186")
    await post_generic(client, _event("call.hangup", "pbx-86"))
    status, typed = await post_generic(
        client,
        _event("call.incoming", "pbx-87", **{"from": "anonymous", "customer_number": "C-T"}),
    )
    assert status == 200 and typed["call"]["customer_known"] is True
    assert typed["call"]["resumed"] is False
    assert (
        await pool.fetchval("SELECT state FROM calls WHERE id = $1", virtual["call"]["id"])
        == "waiting"
    )
    assert dropped["call"]["id"] not in await pool.fetch("SELECT resumed_from FROM calls")


async def test_a_ring_the_pbx_refused_uses_up_none_of_the_callers_attempts(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    # The PBX answers 503 to the callback command: the caller's phone never rang, so
    # the call goes back in its place as after a failed connect, attempts untouched.
    pbx = FakePBX(fail=1)
    client = await _service(app_factory, aiohttp_server, pbx, callback=RULE)
    reply = await _arrive(client, "pbx-95", "+12125550195")
    call_id = reply["call"]["id"]
    await _take_callback(client, "pbx-95")
    _, token = await make_agent_with_endpoint(client, "gi", "sip:gi@pbx.example")
    panel = await available_panel(client, token)
    assert await accept_next_offer(panel) == call_id
    await panel.until(lambda m: m["type"] == "state" and m["agent"]["state"] == "not_responding")
    row = await pool.fetchrow(
        "SELECT state, callback_attempts, callback_retry_at FROM calls WHERE id = $1", call_id
    )
    assert dict(row) == {"state": "waiting", "callback_attempts": 0, "callback_retry_at": None}
    ring = await pool.fetchrow("SELECT result FROM callback_attempts WHERE call_id = $1", call_id)
    assert ring["result"] == "cancelled"
    # Back in the queue at once with its key: the next accept rings the caller.
    await panel.send(type="available")
    assert await accept_next_offer(panel) == call_id
    await eventually(lambda: _has(pbx, "callback"))
    await panel.close()


async def test_the_queue_summary_counts_callbacks_waiting_and_set_aside(
    app_factory: AppFactory, aiohttp_server: ServerFactory
) -> None:
    pbx = FakePBX(rings=["no_answer"])
    rule = RULE | {"retry_seconds": 600}
    client = await _service(app_factory, aiohttp_server, pbx, callback=rule)

    async def general() -> dict[str, Any]:
        listed = (await (await client.get("/api/queues")).json())["queues"]
        found: dict[str, Any] = next(q for q in listed if q["name"] == "general")
        return found

    reply = await _arrive(client, "pbx-97", "+12125550197")
    holding = await _arrive(client, "pbx-98", "+12125550198")
    await _take_callback(client, "pbx-97")
    summary = await general()
    assert (summary["waiting"], summary["callbacks_waiting"]) == (2, 1)
    assert summary["callbacks_set_aside"] == 0
    stats = await (await client.get("/api/stats")).json()
    dashboard = next(q for q in stats["queues"] if q["name"] == "general")
    assert (dashboard["waiting"], dashboard["callbacks_waiting"]) == (2, 1)
    _, token = await make_agent_with_endpoint(client, "ha", "sip:ha@pbx.example")
    panel = await available_panel(client, token)
    assert await accept_next_offer(panel) == reply["call"]["id"]
    # Nobody picks up: the agent is free at once, and offered the caller holding.
    await panel.until(lambda m: m["type"] == "offer" and m["call_id"] == holding["call"]["id"])
    summary = await general()
    assert summary["callbacks_set_aside"] == 1 and summary["callbacks_waiting"] == 0
    # The dashboard's figures say the same.
    stats = await (await client.get("/api/stats")).json()
    dashboard = next(q for q in stats["queues"] if q["name"] == "general")
    assert (dashboard["callbacks_waiting"], dashboard["callbacks_set_aside"]) == (0, 1)
    await panel.close()
