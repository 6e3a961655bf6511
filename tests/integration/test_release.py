"""Callers are let go of at their peer when their call ends on our side, exactly once.

Against the fakes that speak the peers' wire formats: the fake Twilio REST API
records every call update, the fake PBX every signed command. The release
record (``call_releases``) says what the releaser decided, so a test that
expects nothing to be sent waits for that record instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from callcenter import app_keys
from callcenter.app import METRICS
from callcenter.telephony_adapters.base import Incoming
from callcenter.telephony_adapters.gateway import TelephonyGateway
from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, eventually
from tests.integration.telephony_fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    GENERIC_SECRET,
    PUBLIC_URL,
    FakePBX,
    FakeTwilioAPI,
    call_sid,
    post_generic,
    post_twilio,
    voice_params,
)
from tests.integration.telephony_helpers import (
    RecordingConnector,
    accept_next_offer,
    available_panel,
    make_agent_with_endpoint,
)

ServerFactory = Callable[..., Awaitable[TestServer]]

#: Quick retries so the failure paths finish within a test.
QUICK = FAST | {"connect_backoff_seconds": 0.05, "release_backoff_seconds": 0.05}
#: A catch-up pass far beyond a test's time: only the ended event can release the call.
EVENTS_ONLY = {"sweep_seconds": 60.0}


async def _twilio_app(
    app_factory: AppFactory, api: TestServer, **changes: Any
) -> TestClient[Any, Any]:
    return await app_factory(
        **(
            QUICK
            | {
                "twilio_auth_token": SecretStr(AUTH_TOKEN),
                "twilio_account_sid": ACCOUNT_SID,
                "public_url": PUBLIC_URL,
                "twilio_api_base": str(api.make_url("")).rstrip("/"),
            }
            | changes
        )
    )


async def _generic_app(
    app_factory: AppFactory, pbx: TestServer | None, **changes: Any
) -> TestClient[Any, Any]:
    callback = str(pbx.make_url("/pbx/commands")) if pbx is not None else None
    return await app_factory(
        **(
            QUICK
            | {
                "generic_webhook_secret": SecretStr(GENERIC_SECRET),
                "generic_callback_url": callback,
            }
            | changes
        )
    )


async def _pbx(aiohttp_server: ServerFactory, **fake: Any) -> tuple[FakePBX, TestServer]:
    pbx = FakePBX(**fake)
    return pbx, await aiohttp_server(pbx.app(), host="127.0.0.1")


def _event(kind: str, call_id: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, "call_id": call_id, **fields}).encode()


async def _incoming(client: TestClient[Any, Any], peer_call_id: str) -> int:
    status, reply = await post_generic(client, _event("call.incoming", peer_call_id))
    assert status == 200 and reply["action"] == "wait", reply
    call_id: int = reply["call"]["id"]
    return call_id


async def _release(pool: asyncpg.Pool[Any], call_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT state, note, attempts, claimed_by, last_error FROM call_releases"
        " WHERE call_id = $1",
        call_id,
    )
    return row


async def _settled(pool: asyncpg.Pool[Any], call_id: int, state: str) -> asyncpg.Record:
    """Wait until the call's release record is in ``state``; returns it."""

    async def check() -> bool:
        row = await _release(pool, call_id)
        return row is not None and row["state"] == state

    await eventually(check)
    row = await _release(pool, call_id)
    assert row is not None
    return row


async def _hangups(pbx: FakePBX) -> list[dict[str, Any]]:
    return [c for c in pbx.commands if c["action"] == "hangup"]


async def _end(client: TestClient[Any, Any], call_id: int, outcome: str, **body: Any) -> None:
    resp = await client.post(f"/api/calls/{call_id}/end", json={"outcome": outcome, **body})
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("message", ["end", "wrap_up"])
async def test_an_agent_ending_a_twilio_call_hangs_the_caller_up_once(
    message: str, app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _twilio_app(app_factory, api, **EVENTS_ONLY)
    _, token = await make_agent_with_endpoint(client, "ada", "client:ada")
    sid = call_sid(1)
    status, _ = await post_twilio(
        client, "/telephony/twilio/voice", voice_params(sid, "+12125550101")
    )
    assert status == 200
    panel = await available_panel(client, token)
    call_id = await accept_next_offer(panel)

    async def connected() -> bool:
        return len(fake.updates) == 1

    await eventually(connected)
    assert "Twiml" in fake.updates[0][1]

    await panel.send(type=message, call_id=call_id, outcome="completed", ref="bye")
    ack = await panel.until(lambda m: m["type"] in ("ack", "error") and m.get("ref") == "bye")
    assert ack["type"] == "ack", ack
    row = await _settled(pool, call_id, "released")
    assert row["attempts"] == 1 and "completed on our side" in row["note"]
    assert fake.updates[1:] == [(sid, {"Status": "completed"})]

    # Twilio's status callback for the call we ended, and every later pass, send nothing more.
    params = [p for p in voice_params(sid, "+12125550101") if p[0] != "CallStatus"]
    status, _ = await post_twilio(
        client, "/telephony/twilio/status", [*params, ("CallStatus", "completed")]
    )
    assert status == 200
    await client.app[app_keys.RELEASER].catch_up()
    assert await client.app[app_keys.RELEASER].release(call_id) is None
    assert len(fake.updates) == 2
    call = await (await client.get(f"/api/calls/{call_id}")).json()
    assert call["state"] == "completed" and call["end_reason"] is None
    await panel.close()


async def test_a_supervisor_ending_a_waiting_generic_call_sends_one_hangup(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx, server = await _pbx(aiohttp_server)
    client = await _generic_app(app_factory, server, **EVENTS_ONLY)
    call_id = await _incoming(client, "pbx-1")
    await _end(client, call_id, "abandoned", reason="caller left a voicemail instead")
    row = await _settled(pool, call_id, "released")
    assert await _hangups(pbx) == [{"action": "hangup", "call_id": "pbx-1"}]
    assert pbx.bad_signatures == 0
    assert "caller left a voicemail" in row["note"]
    # The PBX's next poll says hang up too, and its hang-up event changes nothing.
    _, polled = await post_generic(client, _event("call.incoming", "pbx-1"))
    assert polled["action"] == "hangup" and polled["call"]["state"] == "abandoned"
    _, gone = await post_generic(client, _event("call.hangup", "pbx-1"))
    assert gone["call"]["state"] == "abandoned"
    assert await client.app[app_keys.RELEASER].catch_up() == 0
    assert len(await _hangups(pbx)) == 1


async def test_without_a_callback_url_the_pbx_learns_the_end_from_its_next_poll(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await _generic_app(app_factory, None)
    call_id = await _incoming(client, "pbx-2")
    await _end(client, call_id, "abandoned")
    _, polled = await post_generic(client, _event("call.incoming", "pbx-2"))
    assert polled["action"] == "hangup" and polled["call"]["state"] == "abandoned"
    releaser = client.app[app_keys.RELEASER]
    # No command can reach this PBX: nothing is claimed, nothing recorded.
    assert await releaser.release(call_id) is None
    assert await releaser.catch_up() == 0
    assert await pool.fetchval("SELECT count(*) FROM call_releases") == 0


async def test_a_call_given_up_at_its_maximum_wait_is_hung_up(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx, server = await _pbx(aiohttp_server)
    client = await _generic_app(app_factory, server)
    resp = await client.put("/api/queues/general", json={"max_wait_seconds": 0.3})
    assert resp.status in (200, 201), await resp.text()
    call_id = await _incoming(client, "pbx-3")
    row = await _settled(pool, call_id, "released")
    assert "maximum wait" in row["note"]
    call = await (await client.get(f"/api/calls/{call_id}")).json()
    assert (call["state"], call["end_reason"]) == ("transferred", "max_wait")
    assert await _hangups(pbx) == [{"action": "hangup", "call_id": "pbx-3"}]


async def test_the_peers_own_hangup_sends_nothing(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx, server = await _pbx(aiohttp_server)
    client = await _generic_app(app_factory, server)
    # One caller hangs up while waiting; the other after talking to the agent.
    waiting = await _incoming(client, "pbx-4")
    _, gone = await post_generic(client, _event("call.hangup", "pbx-4", cause="normal"))
    assert gone["call"]["state"] == "abandoned"
    _, token = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")
    talked = await _incoming(client, "pbx-5")
    panel = await available_panel(client, token)
    assert await accept_next_offer(panel) == talked

    async def connect_sent() -> bool:
        return any(c["action"] == "connect" for c in pbx.commands)

    await eventually(connect_sent)
    _, done = await post_generic(client, _event("call.hangup", "pbx-5"))
    assert done["call"]["state"] == "completed"
    # A hang-up that came before its incoming is recorded abandoned; it needs nothing either.
    await post_generic(client, _event("call.hangup", "pbx-6"))
    _, late = await post_generic(client, _event("call.incoming", "pbx-6"))
    assert late["action"] == "hangup"
    # pbx-6 never ended through the desk (no event): the catch-up pass records it.
    for call_id in (waiting, talked, late["call"]["id"]):
        row = await _settled(pool, call_id, "not_needed")
        assert row["note"] == "the peer reported the hang-up"
    await client.app[app_keys.RELEASER].catch_up()
    assert await _hangups(pbx) == []
    await panel.close()


async def test_a_twilio_callers_own_hangup_sends_no_update(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _twilio_app(app_factory, api)
    sid = call_sid(7)
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, "+12125550107"))
    params = [p for p in voice_params(sid, "+12125550107") if p[0] != "CallStatus"]
    status, _ = await post_twilio(
        client,
        "/telephony/twilio/status",
        [*params, ("CallStatus", "completed"), ("QueueResult", "hangup")],
    )
    assert status == 200
    call_id = await pool.fetchval("SELECT id FROM calls")
    await _settled(pool, call_id, "not_needed")
    assert fake.updates == [] and fake.tried_ended == 0


@pytest.mark.parametrize("by", ["agent", "supervisor"])
async def test_a_transfer_by_an_agent_or_a_supervisor_sends_nothing(
    by: str, app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx, server = await _pbx(aiohttp_server)
    client = await _generic_app(app_factory, server)
    call_id = await _incoming(client, "pbx-8")
    panel = None
    if by == "agent":
        _, token = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")
        panel = await available_panel(client, token)
        assert await accept_next_offer(panel) == call_id
        await panel.send(type="end", call_id=call_id, outcome="transferred", ref="t")
        ack = await panel.until(lambda m: m["type"] in ("ack", "error") and m.get("ref") == "t")
        assert ack["type"] == "ack", ack
    else:
        await _end(client, call_id, "transferred", reason="to the billing team")
    row = await _settled(pool, call_id, "not_needed")
    assert "went on through the phone system" in row["note"]
    assert await _hangups(pbx) == []
    if panel is not None:
        await panel.close()


async def test_two_instances_hang_each_call_up_exactly_once(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    pbx, server = await _pbx(aiohttp_server)
    one = await _generic_app(app_factory, server, **EVENTS_ONLY)
    two = await _generic_app(app_factory, server, **EVENTS_ONLY)
    ids = [await _incoming(one if n % 2 else two, f"pbx-2{n}") for n in range(6)]
    await asyncio.gather(
        *(_end(two if n % 2 else one, call_id, "abandoned") for n, call_id in enumerate(ids))
    )
    for call_id in ids:
        await _settled(pool, call_id, "released")
    # Both catch-ups, and the events each instance got, find nothing left to do.
    assert await one.app[app_keys.RELEASER].catch_up() == 0
    assert await two.app[app_keys.RELEASER].catch_up() == 0
    assert sorted(c["call_id"] for c in await _hangups(pbx)) == [f"pbx-2{n}" for n in range(6)]
    claimers = await pool.fetch("SELECT DISTINCT claimed_by FROM call_releases")
    instances = {one.app[app_keys.RELEASER].instance, two.app[app_keys.RELEASER].instance}
    assert {r["claimed_by"] for r in claimers} <= instances


async def test_a_failing_peer_is_retried_then_given_up_loudly(
    app_factory: AppFactory,
    aiohttp_server: ServerFactory,
    pool: asyncpg.Pool[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pbx, server = await _pbx(aiohttp_server, fail=2)
    client = await _generic_app(app_factory, server, release_attempts=3)
    first = await _incoming(client, "pbx-30")
    await _end(client, first, "abandoned")
    row = await _settled(pool, first, "released")
    assert row["attempts"] == 3 and "503" in row["last_error"]
    assert pbx.refused == 2 and len(await _hangups(pbx)) == 1

    pbx.fail = 100
    second = await _incoming(client, "pbx-31")
    with caplog.at_level(logging.ERROR, logger="callcenter.telephony_adapters.releaser"):
        # The request that ends the call is answered at once, whatever the peer does.
        await _end(client, second, "abandoned")
        row = await _settled(pool, second, "failed")
    assert row["attempts"] == 3 and "503" in row["last_error"]
    assert any("CALLER NOT RELEASED" in r.getMessage() for r in caplog.records)
    assert pbx.refused == 5
    call = await (await client.get(f"/api/calls/{second}")).json()
    assert call["state"] == "abandoned"
    # A failed release is not tried again by the catch-up: it was given up, loudly.
    assert await client.app[app_keys.RELEASER].catch_up() == 0


async def test_a_twilio_caller_already_gone_counts_as_released(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    fake = FakeTwilioAPI()
    api = await aiohttp_server(fake.app(), host="127.0.0.1")
    client = await _twilio_app(app_factory, api)
    sid = call_sid(9)
    await post_twilio(client, "/telephony/twilio/voice", voice_params(sid, "+12125550109"))
    call_id = await pool.fetchval("SELECT id FROM calls")
    fake.ended.add(sid)  # the caller left, and Twilio's callback has not come yet
    await _end(client, call_id, "abandoned")
    row = await _settled(pool, call_id, "gone")
    assert "21220" in row["last_error"] and row["attempts"] == 1
    assert fake.tried_ended == 1 and fake.updates == []


async def test_lost_events_and_dead_claims_are_caught_up(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**QUICK)
    gateway = client.app[app_keys.GATEWAY]
    releaser = client.app[app_keys.RELEASER]
    lost = await gateway.handle("generic", Incoming("c-1"))
    dead = await gateway.handle("generic", Incoming("c-2"))
    assert lost.call is not None and dead.call is not None
    # Both end while this instance commands no generic PBX: their events find nothing to do.
    await _end(client, lost.call.id, "abandoned")
    await _end(client, dead.call.id, "abandoned")
    assert await releaser.release(lost.call.id) is None
    # Another instance claimed the second one, then died before it sent the hang-up.
    await pool.execute(
        "INSERT INTO call_releases (call_id, state, note, claimed_by, lease_until)"
        " VALUES ($1, 'claimed', 'ended abandoned on our side', 'dead-host:1:x',"
        " now() - interval '1 second')",
        dead.call.id,
    )
    fake = RecordingConnector("generic")
    gateway.register(fake)

    async def both_hung_up() -> bool:
        return len(fake.hangups) == 2

    await releaser.catch_up()
    await eventually(both_hung_up)
    assert sorted(c.peer_call_id for c in fake.hangups) == ["c-1", "c-2"]
    taken = await _settled(pool, dead.call.id, "released")
    assert taken["claimed_by"] == releaser.instance
    await _settled(pool, lost.call.id, "released")
    await releaser.catch_up()
    assert len(fake.hangups) == 2


async def test_ari_calls_are_left_to_the_ari_adapter(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**QUICK)
    gateway = client.app[app_keys.GATEWAY]
    fake = RecordingConnector("ari")
    generic = RecordingConnector("generic")
    gateway.register(fake)
    gateway.register(generic)
    view = await gateway.handle("ari", Incoming("1754402591.17"))
    assert view.call is not None
    await _end(client, view.call.id, "abandoned")
    releaser = client.app[app_keys.RELEASER]
    assert await releaser.release(view.call.id) is None
    assert await releaser.catch_up() == 0
    assert fake.hangups == [] and generic.hangups == []
    assert await pool.fetchval("SELECT count(*) FROM call_releases") == 0


async def _ended_unreleased(
    gateway: TelephonyGateway, pool: asyncpg.Pool[Any], peer_call_id: str, seconds_ago: int
) -> None:
    """A generic call that ended ``seconds_ago`` with no ended event heard."""
    answer = await gateway.handle("generic", Incoming(peer_call_id))
    assert answer.call is not None
    await pool.execute(
        "UPDATE calls SET state = 'abandoned', ended_at = now() - make_interval(secs => $2)"
        " WHERE id = $1",
        answer.call.id,
        seconds_ago,
    )
    await pool.execute("DELETE FROM waiting_calls WHERE call_id = $1", answer.call.id)


async def test_each_pass_goes_on_from_the_last_one(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """A pass reads the calls ended since the previous one (and a little before),
    not the whole window, yet a call whose event was lost after it is still found."""
    client = await app_factory(**(QUICK | EVENTS_ONLY))
    gateway = client.app[app_keys.GATEWAY]
    releaser = client.app[app_keys.RELEASER]
    fake = RecordingConnector("generic")
    gateway.register(fake)
    # Ended a minute ago and never released (its instance died before recording
    # anything, say): the first pass reads the whole window and finds it.
    await _ended_unreleased(gateway, pool, "m-1", 60)
    assert await releaser.catch_up() == 1
    # Now one whose ended event is lost: the next pass, reading on from the
    # last, releases it.
    await _ended_unreleased(gateway, pool, "m-2", 0)
    assert await releaser.catch_up() == 1
    assert sorted(c.peer_call_id for c in fake.hangups) == ["m-1", "m-2"]
    # An unreleased call that ended well before the last pass is not read again
    # by the passes that follow (the window is not rescanned every 5 s) ...
    await _ended_unreleased(gateway, pool, "m-3", 60)
    assert await releaser.catch_up() == 0
    # ... but a peer registered since makes the next pass read the whole window.
    gateway.register(RecordingConnector("twilio"))
    assert await releaser.catch_up() == 1
    assert sorted(c.peer_call_id for c in fake.hangups) == ["m-1", "m-2", "m-3"]


async def test_releases_the_end_records_are_counted_like_the_releasers_own(
    app_factory: AppFactory, aiohttp_server: ServerFactory, pool: asyncpg.Pool[Any]
) -> None:
    """The end records the release itself (``finish_call``): a peer's hang-up as not
    needed, an end on our side claimed and carried out; ``/metrics`` counts both."""
    pbx, server = await _pbx(aiohttp_server)
    client = await _generic_app(app_factory, server, **EVENTS_ONLY)
    hung_up = await _incoming(client, "pbx-30")
    ended = await _incoming(client, "pbx-31")
    _, gone = await post_generic(client, _event("call.hangup", "pbx-30"))
    assert gone["call"]["state"] == "abandoned"
    await _end(client, ended, "abandoned")
    await _settled(pool, hung_up, "not_needed")
    await _settled(pool, ended, "released")
    registry = client.app[METRICS]

    def counted(result: str) -> float | None:
        labels = {"peer": "generic", "result": result}
        return registry.get_sample_value("callcenter_telephony_releases_total", labels)

    assert counted("not_needed") == 1 and counted("released") == 1
    assert await _hangups(pbx) == [{"action": "hangup", "call_id": "pbx-31"}]
