"""The generic JSON adapter end to end: signed events in, signed commands out to a fake PBX."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, eventually, make_customer
from tests.integration.telephony_fakes import GENERIC_SECRET, FakePBX, post_generic
from tests.integration.telephony_helpers import (
    accept_next_offer,
    available_panel,
    make_agent_with_endpoint,
)

ServerFactory = Callable[..., Awaitable[TestServer]]


def _event(kind: str, call_id: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, "call_id": call_id, **fields}).encode()


async def _generic_app(
    app_factory: AppFactory, pbx_url: str | None = None, **changes: Any
) -> TestClient[Any, Any]:
    return await app_factory(
        **(
            FAST
            | {
                "generic_webhook_secret": SecretStr(GENERIC_SECRET),
                "generic_callback_url": pbx_url,
                "connect_backoff_seconds": 0.05,
            }
            | changes
        )
    )


async def _calls(pool: asyncpg.Pool[Any]) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM calls")
    return count


async def test_a_call_waits_is_accepted_connected_at_the_pbx_and_completes(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx = FakePBX()
    server = await aiohttp_server(pbx.app(), host="127.0.0.1")
    client = await _generic_app(app_factory, str(server.make_url("/pbx/commands")))
    customer_id = await make_customer(client, "C-1", 30000, "+12125550100")
    _, token = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")

    status, reply = await post_generic(
        client,
        _event("call.incoming", "pbx-1", **{"from": "(212) 555-0100", "to": "+14155550100"}),
    )
    assert status == 200, reply
    assert reply["action"] == "wait" and reply["call_id"] == "pbx-1"
    assert reply["call"]["position"] == 1 and reply["call"]["customer_known"] is True
    assert reply["call"]["tier"] == "platinum"
    # A retried delivery is answered from the stored call.
    status, again = await post_generic(client, _event("call.incoming", "pbx-1"))
    assert status == 200 and again["call"]["id"] == reply["call"]["id"]
    assert await _calls(pool) == 1

    panel = await available_panel(client, token)
    assert await accept_next_offer(panel) == reply["call"]["id"]
    await eventually(lambda: _true(bool(pbx.commands)))
    assert pbx.commands == [
        {
            "action": "connect",
            "call_id": "pbx-1",
            "agent": {"name": "ada", "endpoint": "sip:ada@pbx.example"},
        }
    ]
    assert pbx.bad_signatures == 0
    status, polled = await post_generic(client, _event("call.incoming", "pbx-1"))
    assert polled["action"] == "connect" and polled["agent"]["endpoint"] == "sip:ada@pbx.example"

    status, done = await post_generic(client, _event("call.hangup", "pbx-1", cause="normal"))
    assert status == 200 and done["action"] == "hangup"
    assert done["call"]["state"] == "completed"
    await panel.state("wrap_up")
    history = await (await client.get(f"/api/customers/{customer_id}/history")).json()
    assert history["interactions"][0]["outcome"] == "completed"
    await panel.close()


async def _true(value: bool) -> bool:
    return value


async def test_a_caller_who_hangs_up_while_waiting_is_abandoned(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _generic_app(app_factory)
    status, reply = await post_generic(client, _event("call.incoming", "pbx-2", **{"from": None}))
    assert status == 200 and reply["action"] == "wait"
    status, gone = await post_generic(client, _event("call.hangup", "pbx-2"))
    assert status == 200 and gone["call"]["state"] == "abandoned"
    # Digits after the hang-up change nothing; the answer says hang up.
    status, late = await post_generic(client, _event("call.digits", "pbx-2", digits="1234"))
    assert status == 200 and late["action"] == "hangup" and "abandoned" in late["note"]
    assert await pool.fetchval("SELECT count(*) FROM waiting_calls") == 0


async def test_a_hangup_before_its_incoming_never_queues_the_call(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _generic_app(app_factory)
    status, early = await post_generic(client, _event("call.hangup", "pbx-3"))
    assert status == 200 and early["action"] == "hangup" and early["call"] is None
    status, late = await post_generic(client, _event("call.incoming", "pbx-3"))
    assert status == 200 and late["action"] == "hangup"
    assert late["call"]["state"] == "abandoned"
    assert await pool.fetchval("SELECT count(*) FROM waiting_calls") == 0


async def test_unknown_callers_are_asked_for_their_number_when_configured(
    app_factory: AppFactory,
) -> None:
    client = await _generic_app(app_factory, generic_gather_unknown=True)
    await make_customer(client, "C-42", 6000, "+12125550142")
    incoming = _event("call.incoming", "pbx-4", **{"from": "+44 20 7946 0018"})
    status, reply = await post_generic(client, incoming)
    assert reply["action"] == "gather" and reply["gather"]["retry"] is False
    status, wrong = await post_generic(client, _event("call.digits", "pbx-4", digits="999"))
    assert wrong["action"] == "gather" and wrong["gather"]["retry"] is True
    status, right = await post_generic(client, _event("call.digits", "pbx-4", digits="C-42"))
    assert status == 200 and right["action"] == "wait"
    assert right["call"]["customer_known"] is True and right["call"]["tier"] == "gold"
    # A known caller is never asked.
    status, known = await post_generic(
        client, _event("call.incoming", "pbx-5", **{"from": "+12125550142"})
    )
    assert known["action"] == "wait"


async def test_bad_signatures_are_403_and_store_nothing(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _generic_app(app_factory)
    body = _event("call.incoming", "pbx-6")
    now = int(time.time())
    cases = [
        {"header": ""},
        {"secrets": ["not-the-secret"]},
        {"timestamp": now - 301},
        {"timestamp": now + 301},
        {"header": f"t={now},v1=00"},
    ]
    for case in cases:
        status, problem = await post_generic(client, body, **case)
        assert status == 403, (case, problem)
        assert problem["title"] == "Invalid signature" and problem["detail"]
    # A sender rotating its secret signs with both; one match is enough.
    status, _ = await post_generic(client, body, secrets=["old-secret", GENERIC_SECRET])
    assert status == 200
    assert await _calls(pool) == 1
    unsigned = await client.post("/telephony/generic/events", data=_event("call.incoming", "x"))
    assert unsigned.status == 403
    assert await _calls(pool) == 1


async def test_an_unconfigured_adapter_refuses_everything(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    status, problem = await post_generic(client, _event("call.incoming", "pbx-7"))
    assert status == 403 and "CALLCENTER_GENERIC_WEBHOOK_SECRET" in problem["detail"]
    assert await _calls(pool) == 0


async def test_malformed_events_are_4xx_never_500(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _generic_app(app_factory, webhook_max_bytes=2048)
    cases: list[tuple[bytes, int, str | None]] = [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b"", 400, None),
        (_event("call.transfer", "pbx-8"), 422, "type"),
        (json.dumps({"call_id": "pbx-8"}).encode(), 422, "type"),
        (_event("call.incoming", ""), 422, "call_id"),
        (_event("call.incoming", "x" * 181), 422, "call_id"),
        (_event("call.incoming", "pbx-8", queue="nope"), 422, "queue"),
        (_event("call.incoming", "pbx-8", **{"from": 12}), 422, "from"),
        (_event("call.digits", "pbx-8"), 422, "digits"),
        (_event("call.digits", "never-came", digits="1"), 404, "call_id"),
        (_event("call.incoming", "pbx-8", pad="x" * 3000), 413, None),
    ]
    for body, expected, field in cases:
        status, problem = await post_generic(client, body)
        assert status == expected, (body[:60], problem)
        if field is not None:
            assert problem["field"] == field, (body[:60], problem)
        if expected == 422 and field == "type":
            assert "call.transfer" in problem["detail"] or "None" in problem["detail"]
    assert await _calls(pool) == 0


async def test_a_refusing_pbx_gets_retries_then_the_call_goes_back(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    refused: list[int] = []

    async def busy(request: web.Request) -> web.Response:
        refused.append(1)
        return web.json_response({"error": "busy"}, status=503)

    app = web.Application()
    app.router.add_post("/pbx/commands", busy)
    server = await aiohttp_server(app, host="127.0.0.1")
    client = await _generic_app(app_factory, str(server.make_url("/pbx/commands")))
    _, token = await make_agent_with_endpoint(client, "ada", "PJSIP/1001")
    panel = await available_panel(client, token)
    _, reply = await post_generic(client, _event("call.incoming", "pbx-9"))
    call_id = reply["call"]["id"]
    assert await accept_next_offer(panel) == call_id
    await panel.state("not_responding")
    assert len(refused) == 3
    _, again = await post_generic(client, _event("call.incoming", "pbx-9"))
    assert again["action"] == "wait" and again["call"]["state"] == "waiting"
    await panel.close()


async def test_hostile_but_signed_bodies_are_4xx_never_500(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """Text PostgreSQL cannot store (NUL), deep nesting: a clear 4xx, nothing stored."""
    client = await _generic_app(app_factory)
    cases: list[tuple[bytes, int, str | None]] = [
        (_event("call.incoming", "pbx-n1", **{"from": "+1212\u0000555"}), 422, "from"),
        (_event("call.incoming", "pbx-n2", customer_number="C\u00001"), 422, "customer_number"),
        (_event("call.hangup", "pbx-n3", cause="normal\u0000"), 422, "cause"),
        (b"[" * 5000 + b"]" * 5000, 400, None),
        (b'{"type": "call.incoming", "call_id": "pbx-n4", "x": ' + b"[" * 5000 + b"]" * 5000
         + b"}", 400, None),
    ]  # fmt: skip
    for body, expected, field in cases:
        status, problem = await post_generic(client, body)
        assert status == expected, (body[:60], problem)
        assert problem["detail"]
        if field is not None:
            assert problem["field"] == field, (body[:60], problem)
    assert await _calls(pool) == 0
    # Digits with a NUL for a waiting call: refused, the call still waits.
    status, reply = await post_generic(client, _event("call.incoming", "pbx-n5"))
    assert status == 200 and reply["action"] == "wait"
    status, problem = await post_generic(client, _event("call.digits", "pbx-n5", digits="1\u00002"))
    assert status == 422 and problem["field"] == "digits", problem
    status, again = await post_generic(client, _event("call.incoming", "pbx-n5"))
    assert again["call"]["state"] == "waiting"


async def test_a_pbx_answering_410_gone_ends_the_call_without_retries(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """410 Gone to a connect: the caller is no longer there; no retry, no requeue."""
    tries: list[int] = []

    async def gone(request: web.Request) -> web.Response:
        tries.append(1)
        return web.json_response({"error": "no such call"}, status=410)

    app = web.Application()
    app.router.add_post("/pbx/commands", gone)
    server = await aiohttp_server(app, host="127.0.0.1")
    client = await _generic_app(app_factory, str(server.make_url("/pbx/commands")))
    await client.put("/api/queues/general", json={"wrap_up_seconds": 30})
    _, token = await make_agent_with_endpoint(client, "ada", "PJSIP/1001")
    panel = await available_panel(client, token)
    _, reply = await post_generic(client, _event("call.incoming", "pbx-g1"))
    call_id = reply["call"]["id"]
    assert await accept_next_offer(panel) == call_id
    await panel.state("wrap_up")
    assert len(tries) == 1
    state = await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id)
    assert state == "completed"
    await panel.close()


async def test_a_pbx_that_answers_too_late_is_not_sent_the_connect_again(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """No answer in time: the PBX may have bridged the caller already, so the connect is
    neither repeated nor undone; the call stays with its agent and a poll says connect."""
    received: list[dict[str, Any]] = []

    async def slow(request: web.Request) -> web.Response:
        received.append(await request.json())
        await asyncio.sleep(1.0)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/pbx/commands", slow)
    server = await aiohttp_server(app, host="127.0.0.1")
    client = await _generic_app(
        app_factory, str(server.make_url("/pbx/commands")), connect_timeout_seconds=0.3
    )
    _, token = await make_agent_with_endpoint(client, "ada", "PJSIP/1001")
    panel = await available_panel(client, token)
    _, reply = await post_generic(client, _event("call.incoming", "pbx-s1"))
    call_id = reply["call"]["id"]
    assert await accept_next_offer(panel) == call_id

    async def settled() -> bool:
        state = await pool.fetchval("SELECT state FROM call_bridges WHERE call_id = $1", call_id)
        return bool(state == "connected")

    await eventually(settled)
    await asyncio.sleep(1.0)  # longer than the retries would have taken
    assert [c["action"] for c in received] == ["connect"]
    _, polled = await post_generic(client, _event("call.incoming", "pbx-s1"))
    assert polled["action"] == "connect" and polled["call"]["state"] == "connected"
    await panel.close()
