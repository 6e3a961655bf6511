"""The ARI adapter end to end: a fake Asterisk on 127.0.0.1, the real service and database."""

from __future__ import annotations

import asyncio
import inspect
from base64 import b64encode
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from callcenter import app_keys
from callcenter.telephony_adapters.ari import bridge_of
from tests.conftest import AppFactory
from tests.integration.fake_ari import FakeAri
from tests.integration.queue_helpers import FAST, Panel, eventually, make_customer, make_queue

CALLER = "1754402591.17"
OTHER = "1754402600.18"

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@pytest.fixture
async def fake(app_factory: AppFactory, aiohttp_server: ServerFactory) -> AsyncIterator[FakeAri]:
    """A fake Asterisk. Its sockets close first at teardown, so the service's
    shutdown never waits on them (``app_factory`` is set up first, torn down last)."""
    fake = FakeAri()
    fake.server = await aiohttp_server(fake.make_app())  # type: ignore[attr-defined]
    yield fake
    await fake.close()


def ari_settings(fake: FakeAri, **changes: Any) -> dict[str, Any]:
    server: TestServer = fake.server  # type: ignore[attr-defined]
    return {
        **FAST,
        # model_copy does not validate: give the values as the settings hold them.
        "ari_url": str(server.make_url("")).rstrip("/"),
        "ari_user": fake.user,
        "ari_password": SecretStr(fake.password),
        "ari_dtmf_timeout_seconds": 0.5,
        "ari_reconnect_max_seconds": 0.5,
        "connect_attempts": 1,
        **changes,
    }


async def start(app_factory: AppFactory, fake: FakeAri, **changes: Any) -> TestClient[Any, Any]:
    client = await app_factory(**ari_settings(fake, **changes))
    await fake.wait_connected()
    return client


async def call_of(client: TestClient[Any, Any], channel_id: str) -> dict[str, Any] | None:
    desk = client.app[app_keys.DESK]
    call = await desk.by_external_id(f"ari:{channel_id}")
    return None if call is None else call.model_dump(mode="json")


async def call_state(client: TestClient[Any, Any], channel_id: str) -> str | None:
    call = await call_of(client, channel_id)
    return None if call is None else call["state"]


async def until_state(client: TestClient[Any, Any], channel_id: str, state: str) -> None:
    async def check() -> bool:
        return await call_state(client, channel_id) == state

    await eventually(check)


async def waiting_ids(client: TestClient[Any, Any]) -> list[str]:
    resp = await client.get("/api/queues/general/calls")
    assert resp.status == 200
    return [c["call_id"] for c in (await resp.json())["calls"]]


async def agent_panel(client: TestClient[Any, Any], endpoint: str) -> tuple[int, Panel]:
    resp = await client.post(
        "/api/agents", json={"name": "ada", "queues": ["general"], "endpoint": endpoint}
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    panel = await Panel.open(client, body["token"])
    await panel.send(type="available")
    # Not the "available" state: with a call waiting, the offer may come first.
    await panel.until(lambda m: m["type"] == "ack" and m["to"] == "available")
    return body["agent"]["id"], panel


async def test_caller_waits_agent_accepts_both_bridged_hangup_completes(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    client = await start(app_factory, fake)
    await make_customer(client, "C-1", 30000, "+12125550123")
    await fake.caller_arrives(CALLER, "+12125550123")

    await until_state(client, CALLER, "waiting")
    assert await waiting_ids(client) == [f"ari:{CALLER}"]
    call = await call_of(client, CALLER)
    assert call is not None and call["tier"] == "platinum"
    await fake.until(lambda: fake.asked("POST", f"/ari/channels/{CALLER}/moh"))
    assert fake.asked("POST", f"/ari/channels/{CALLER}/answer")
    assert fake.channels[CALLER]["state"] == "Up"

    agent_id, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == call["id"]
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("on_call")

    await fake.until(lambda: any(b["channels"] for b in fake.bridges.values()))
    (originate,) = fake.asked("POST", "/ari/channels")
    q = originate.query
    assert q["endpoint"] == "PJSIP/1001" and q["app"] == "callcenter"
    assert q["appArgs"] == f"agent,{call['id']},{CALLER}"
    assert q["callerId"] == "+12125550123"
    leg = q["channelId"]
    (create,) = fake.asked("POST", "/ari/bridges")
    assert create.query["type"] == "mixing"
    bridge = create.query["bridgeId"]
    (add,) = fake.asked("POST", f"/ari/bridges/{bridge}/addChannel")
    assert add.query["channel"].split(",") == [CALLER, leg]
    assert fake.bridges[bridge]["channels"] == [CALLER, leg]
    assert fake.asked("DELETE", f"/ari/channels/{CALLER}/moh")

    async def bridged() -> bool:
        state = await pool.fetchval("SELECT state FROM call_bridges WHERE call_id = $1", call["id"])
        return bool(state == "connected")

    await eventually(bridged)
    assert await call_state(client, CALLER) == "connected"

    # The caller hangs up: the call completes, the agent's leg and the bridge go.
    await fake.hang_up(CALLER)
    await until_state(client, CALLER, "completed")
    await fake.until(lambda: leg not in fake.channels and bridge not in fake.bridges)
    await panel.state("wrap_up")
    ended = await call_of(client, CALLER)
    assert ended is not None and ended["agent_id"] == agent_id
    assert ended["end_reason"] == "hangup: cause 16"
    await panel.close()


async def test_agent_hangs_up_ends_the_caller_too(app_factory: AppFactory, fake: FakeAri) -> None:
    client = await start(app_factory, fake)
    await fake.caller_arrives(CALLER, "+12125550123")
    await until_state(client, CALLER, "waiting")
    _, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await fake.until(lambda: any(len(b["channels"]) == 2 for b in fake.bridges.values()))
    leg = fake.asked("POST", "/ari/channels")[0].query["channelId"]

    await fake.hang_up(leg)
    await until_state(client, CALLER, "completed")
    assert CALLER not in fake.channels
    assert fake.asked("DELETE", f"/ari/channels/{CALLER}")
    await panel.close()


async def test_agent_ends_in_the_panel_the_phones_are_hung_up(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    client = await start(app_factory, fake)
    await fake.caller_arrives(CALLER, "+12125550123")
    await until_state(client, CALLER, "waiting")
    _, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await fake.until(lambda: any(len(b["channels"]) == 2 for b in fake.bridges.values()))
    leg = fake.asked("POST", "/ari/channels")[0].query["channelId"]

    await panel.send(type="end", call_id=offer["call_id"], outcome="completed")
    await fake.until(lambda: not fake.channels and not fake.bridges)
    assert fake.asked("DELETE", f"/ari/channels/{CALLER}")
    assert fake.asked("DELETE", f"/ari/channels/{leg}")
    assert await call_state(client, CALLER) == "completed"
    await panel.close()


async def test_a_call_ended_by_a_supervisor_lets_the_caller_go(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    client = await start(app_factory, fake)
    await fake.caller_arrives(CALLER, "+12125550123")
    await until_state(client, CALLER, "waiting")
    call = await call_of(client, CALLER)
    assert call is not None
    resp = await client.post(f"/api/calls/{call['id']}/end", json={"outcome": "transferred"})
    assert resp.status == 200, await resp.text()
    await fake.until(lambda: CALLER not in fake.channels)
    assert await call_state(client, CALLER) == "transferred"


async def test_caller_hangs_up_while_waiting_is_abandoned_once(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    client = await start(app_factory, fake)
    channel = await fake.caller_arrives(CALLER, "+12125550123")
    await until_state(client, CALLER, "waiting")
    # Asterisk (or a network retry) delivers the same StasisStart again: still one call.
    await fake.send(fake.event("StasisStart", args=[], channel=channel))
    await fake.hang_up(CALLER)
    await until_state(client, CALLER, "abandoned")
    assert await waiting_ids(client) == []
    count = await pool.fetchval(
        "SELECT count(*) FROM calls WHERE external_id = $1", f"ari:{CALLER}"
    )
    assert count == 1
    # A StasisStart that arrives after the hang-up does not bring the caller back.
    await fake.send(fake.event("StasisStart", args=[], channel=channel))
    await asyncio.sleep(0.2)
    assert await call_state(client, CALLER) == "abandoned"
    assert await waiting_ids(client) == []


async def test_hangup_before_stasis_start_records_abandoned_never_queues(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    client = await start(app_factory, fake)
    channel = fake.new_channel(CALLER, "+12125550123")
    await fake.send(fake.event("ChannelDestroyed", cause=16, cause_txt="Normal Clearing",
                               channel=channel))  # fmt: skip
    await fake.send(fake.event("StasisStart", args=[], channel=channel))
    await until_state(client, CALLER, "abandoned")
    assert await waiting_ids(client) == []
    # The channel Asterisk still reported is not left in the application.
    await fake.until(lambda: CALLER not in fake.channels)


async def test_stasis_argument_names_the_queue(app_factory: AppFactory, fake: FakeAri) -> None:
    client = await start(app_factory, fake)
    await make_queue(client, "sales")
    await fake.caller_arrives(CALLER, "+12125550123", args=("sales",))
    await fake.caller_arrives(OTHER, "+12125550124", args=("nosuchqueue",))
    await until_state(client, CALLER, "waiting")
    await until_state(client, OTHER, "waiting")
    assert (await call_of(client, CALLER) or {})["queue"] == "sales"
    assert (await call_of(client, OTHER) or {})["queue"] == "general"


async def test_dtmf_digits_identify_the_caller(app_factory: AppFactory, fake: FakeAri) -> None:
    client = await start(app_factory, fake)
    ada = await make_customer(client, "77001", 30000, "+442079460018")
    bob = await make_customer(client, "77002", 6000, "+442079460019")
    await fake.caller_arrives(CALLER, "anonymous")
    await fake.caller_arrives(OTHER, "anonymous")
    await until_state(client, CALLER, "waiting")
    await until_state(client, OTHER, "waiting")
    assert (await call_of(client, CALLER) or {})["customer"] is None

    # Ended with #, after a mistake wiped with *.
    await fake.press(CALLER, "99*77001#")

    async def identified(channel: str, customer: int, tier: str) -> bool:
        call = await call_of(client, channel)
        return bool(call and call["customer"] and call["customer"]["id"] == customer
                    and call["tier"] == tier)  # fmt: skip

    await eventually(lambda: identified(CALLER, ada, "platinum"))
    # Ended by a pause (CALLCENTER_ARI_DTMF_TIMEOUT_SECONDS, 0.5 s here).
    await fake.press(OTHER, "77002")
    await asyncio.sleep(0.2)
    assert (await call_of(client, OTHER) or {})["customer"] is None
    await eventually(lambda: identified(OTHER, bob, "gold"))
    # The platinum caller now goes first.
    assert await waiting_ids(client) == [f"ari:{CALLER}", f"ari:{OTHER}"]


async def test_garbage_and_a_drop_reconnect_and_reconcile(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    client = await start(app_factory, fake)
    await fake.caller_arrives(CALLER, "+12125550123")
    await fake.caller_arrives(OTHER, "+12125550124")
    await until_state(client, CALLER, "waiting")
    await until_state(client, OTHER, "waiting")
    adapter = client.app[app_keys.ARI]
    reconciles = adapter.reconciles

    # Garbage is logged and skipped; the stream stays open and is read on.
    for frame in ["{not json", b"\x00\xff", "[]", '{"type": "StasisStart"}',
                  '{"type": "StasisStart", "channel": {"name": "no id"}}']:  # fmt: skip
        await fake.send_raw(frame)
    await eventually(lambda: _true(adapter.reconciles > reconciles))
    assert fake.connections == 1 and fake.connected

    # The stream drops; while Asterisk is unreachable one caller hangs up unseen.
    fake.accepting = False
    await fake.drop()
    fake.vanish(CALLER)
    await fake.until(lambda: any(code == 503 for _, code in fake.refused))
    fake.accepting = True
    await fake.wait_connected(2)

    await until_state(client, CALLER, "abandoned")
    assert await call_state(client, OTHER) == "waiting"
    assert await waiting_ids(client) == [f"ari:{OTHER}"]
    # The caller still there keeps being served: new events are read as before.
    await fake.hang_up(OTHER)
    await until_state(client, OTHER, "abandoned")
    assert adapter.failure is None
    resp = await client.get("/readyz")
    assert resp.status == 200


async def test_reconnect_adopts_a_caller_it_never_saw(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    # A caller entered the application before the service started listening.
    fake.new_channel(CALLER, "+12125550123")
    client = await start(app_factory, fake)
    await until_state(client, CALLER, "waiting")
    await fake.until(lambda: fake.asked("POST", f"/ari/channels/{CALLER}/moh"))
    # Channels of other applications are none of our business.
    other = fake.new_channel(OTHER, "+12125550124")
    other["dialplan"].update(app_name="Dial", app_data="PJSIP/2000")
    await client.app[app_keys.ARI].reconcile()
    assert await call_of(client, OTHER) is None


async def test_agent_endpoint_not_answering_puts_the_call_back(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    fake.answer_originates = False
    client = await start(app_factory, fake)
    await fake.caller_arrives(CALLER, "+12125550123")
    await until_state(client, CALLER, "waiting")
    _, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("not_responding")
    await until_state(client, CALLER, "waiting")
    assert fake.asked("POST", "/ari/channels")
    assert not fake.asked("POST", "/ari/bridges")
    assert await waiting_ids(client) == [f"ari:{CALLER}"]
    await panel.close()


async def test_caller_hangs_up_while_the_agent_rings(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    fake.answer_originates = None
    client = await start(app_factory, fake, ari_ring_seconds=10)
    await fake.caller_arrives(CALLER, "+12125550123")
    await until_state(client, CALLER, "waiting")
    _, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await fake.until(lambda: fake.asked("POST", "/ari/channels"))
    leg = fake.asked("POST", "/ari/channels")[0].query["channelId"]
    assert fake.asked("POST", "/ari/channels")[0].query["timeout"] == "10"

    await fake.hang_up(CALLER)
    # The ringing agent leg is hung up; nothing is bridged.
    await fake.until(lambda: leg not in fake.channels)
    assert fake.asked("DELETE", f"/ari/channels/{leg}")
    assert not fake.asked("POST", "/ari/bridges")
    await until_state(client, CALLER, "completed")
    await panel.close()


async def test_a_dead_adapter_task_makes_the_service_unready(
    app_factory: AppFactory, fake: FakeAri, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start(app_factory, fake)
    assert (await client.get("/readyz")).status == 200
    adapter = client.app[app_keys.ARI]

    def broken(frame: str | bytes) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(adapter, "_on_frame", broken)
    await fake.send(fake.event("ChannelVarset", variable="X", value="1"))
    await eventually(lambda: _true(adapter.failure is not None))
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert "ARI adapter stopped" in body["detail"] and "a bug" in body["detail"]


async def test_wrong_password_is_refused_and_retried(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    client = await app_factory(**ari_settings(fake, ari_password=SecretStr("wrong")))
    await fake.until(lambda: len([c for _, c in fake.refused if c == 401]) >= 2)
    assert fake.connections == 0
    adapter = client.app[app_keys.ARI]
    assert not adapter.connected.is_set()
    # Not ready: Asterisk would hang up every caller while nobody holds the application.
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert "HTTP 401 (check ARI_USER and ARI_PASSWORD)" in (await resp.json())["detail"]


async def test_no_ari_url_no_adapter(app_factory: AppFactory) -> None:
    client = await app_factory(**FAST)
    assert app_keys.ARI not in client.app
    assert "ari" not in client.app[app_keys.GATEWAY].connectors


async def _true(value: bool) -> bool:
    return value


async def test_work_cancelled_before_its_turn_is_closed_not_left_unawaited(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    """At shutdown a channel's queued work is cancelled while it waits for the
    work ahead of it; it must not run, nor leave a "never awaited" warning."""
    client = await start(app_factory, fake)
    adapter = client.app[app_keys.ARI]
    hold = asyncio.Event()
    ran: list[str] = []

    async def first() -> None:
        await hold.wait()

    async def second() -> None:
        ran.append("second")

    adapter._in_lane("ch-lane", first(), "test")
    queued = second()
    adapter._in_lane("ch-lane", queued, "test")
    waiting = adapter._lanes["ch-lane"]
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert ran == []
    assert inspect.getcoroutinestate(queued) == "CORO_CLOSED"
    hold.set()


async def test_a_phone_that_rings_out_puts_the_call_back(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    # The bridger's time limit of one command is shorter than the ring: the ring wins.
    fake.answer_originates = None
    client = await start(app_factory, fake, ari_ring_seconds=1, connect_timeout_seconds=0.5)
    await fake.caller_arrives(CALLER, "+12125550123")
    await until_state(client, CALLER, "waiting")
    key = (await call_of(client, CALLER) or {})["service_key"]
    _, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await fake.until(lambda: fake.asked("POST", "/ari/channels"))
    assert fake.asked("POST", "/ari/channels")[0].query["timeout"] == "1"
    await panel.state("not_responding")
    await until_state(client, CALLER, "waiting")
    assert (await call_of(client, CALLER) or {})["service_key"] == key
    assert not fake.asked("POST", "/ari/bridges")
    await panel.close()


async def test_another_client_taking_the_application_is_taken_back(
    app_factory: AppFactory, fake: FakeAri
) -> None:
    client = await start(app_factory, fake)
    adapter = client.app[app_keys.ARI]
    server: TestServer = fake.server  # type: ignore[attr-defined]
    session = aiohttp.ClientSession()
    try:
        intruder = await session.ws_connect(
            server.make_url("/ari/events?app=callcenter"),
            headers={
                "Authorization": "Basic "
                + b64encode(f"{fake.user}:{fake.password}".encode()).decode()
            },
        )
        # The service is told, closes its deaf websocket and takes the application back.
        await fake.wait_connected(3)
        await intruder.close()
    finally:
        await session.close()
    await eventually(lambda: _true(adapter.connected.is_set()))
    await fake.caller_arrives(CALLER, "+12125550123")
    await until_state(client, CALLER, "waiting")
    assert (await client.get("/readyz")).status == 200


# -- callbacks ------------------------------------------------------------------------

#: Callbacks offered to every caller at once, two rings a second apart.
CALLBACK_RULE = {"after_seconds": 0, "attempts": 2, "retry_seconds": 1}
TRUNK = "PJSIP/{number}@trunk"
PRESS_1 = "sound:custom/press-1-callback"
CONFIRM = "sound:custom/callback-confirm"


async def callback_service(
    app_factory: AppFactory, fake: FakeAri, **changes: Any
) -> TestClient[Any, Any]:
    settings: dict[str, Any] = {
        "ari_callback_endpoint": TRUNK,
        "ari_callback_confirm_seconds": 0.5,
        "callback_ring_seconds": 5.0,
        **changes,
    }
    client = await start(app_factory, fake, **settings)
    await make_queue(client, "general", callback=CALLBACK_RULE, wrap_up_seconds=0)
    return client


async def db_call(pool: asyncpg.Pool[Any], channel: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT id, state, service_key, callback_number, callback_requested_at,"
        " callback_answered_at, callback_attempts, end_reason FROM calls WHERE external_id = $1",
        f"ari:{channel}",
    )
    assert row is not None
    return row


async def opted_in(pool: asyncpg.Pool[Any], channel: str) -> bool:
    return (await db_call(pool, channel))["callback_number"] is not None


def originated(fake: FakeAri, first_arg: str) -> list[Any]:
    return [
        r
        for r in fake.asked("POST", "/ari/channels")
        if r.query.get("appArgs", "").split(",")[0] == first_arg
    ]


async def test_a_caller_takes_a_callback_keeps_their_place_is_rung_back_and_bridged(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    client = await callback_service(
        app_factory, fake, ari_callback_prompt=PRESS_1, ari_callback_confirm_prompt=CONFIRM
    )
    adapter = client.app[app_keys.ARI]
    assert adapter.rings_back
    callers = {"c-1": "+12125550101", "c-2": "+12125550102", "c-3": "+12125550103"}
    for channel, number in callers.items():
        await fake.caller_arrives(channel, number)
        await until_state(client, channel, "waiting")
    # Each holding caller hears the offer, then the music again.
    await fake.until(lambda: len(fake.asked("POST", "/ari/channels/c-2/moh")) == 2)
    (offer_prompt,) = fake.asked("POST", "/ari/channels/c-2/play")
    assert offer_prompt.query["media"] == PRESS_1
    order = await waiting_ids(client)
    assert order == ["ari:c-1", "ari:c-2", "ari:c-3"]
    keys = {c: (await db_call(pool, c))["service_key"] for c in callers}

    # A lone 1 (ended with #) takes it; the caller hears the confirmation prompt and
    # confirms the number they call from with #.
    await fake.press("c-2", "1#")
    await fake.until(lambda: len(fake.asked("POST", "/ari/channels/c-2/play")) == 2)
    assert fake.asked("POST", "/ari/channels/c-2/play")[1].query["media"] == CONFIRM
    await fake.press("c-2", "#")
    await fake.until(lambda: "c-2" not in fake.channels)
    assert fake.asked("DELETE", "/ari/channels/c-2")
    # Its hang-up changes nothing: a virtual call, in the same place, with the same key.
    row = await db_call(pool, "c-2")
    assert row["state"] == "waiting" and row["callback_number"] == "+12125550102"
    assert await waiting_ids(client) == order
    assert {c: (await db_call(pool, c))["service_key"] for c in callers} == keys
    listed = (await (await client.get("/api/queues/general/calls")).json())["calls"]
    assert [c["callback"] for c in listed] == [False, True, False]

    agent_id, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == (await db_call(pool, "c-1"))["id"]
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await until_state(client, "c-1", "connected")
    await fake.hang_up("c-1")
    # The virtual call is next, before the caller who came after it.
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == row["id"] and offer["callback"] == "+12125550102"
    await panel.send(type="accept", offer_id=offer["offer_id"])

    await fake.until(lambda: any(len(b["channels"]) == 2 and "c-1" not in b["channels"]
                                 for b in fake.bridges.values()))  # fmt: skip
    (ring,) = originated(fake, "callback")
    assert ring.query["endpoint"] == "PJSIP/+12125550102@trunk"
    assert ring.query["appArgs"] == f"callback,{row['id']},c-2"
    assert ring.query["timeout"] == "5"
    leg = ring.query["channelId"]
    # The caller hears music while the agent's phone rings, then both are bridged.
    assert fake.asked("POST", f"/ari/channels/{leg}/moh")
    agent_ring = originated(fake, "agent")[-1]
    assert agent_ring.query["appArgs"] == f"agent,{row['id']},{leg}"
    assert agent_ring.query["endpoint"] == "PJSIP/1001"
    agent_leg = agent_ring.query["channelId"]
    assert fake.bridges[bridge_of(agent_leg)]["channels"] == [leg, agent_leg]

    async def answered() -> bool:
        now = await db_call(pool, "c-2")
        return now["callback_answered_at"] is not None and now["state"] == "connected"

    await eventually(answered)
    await panel.state("on_call")
    # The rung-back caller hangs up: the call is completed, the agent's leg let go.
    await fake.hang_up(leg)
    await until_state(client, "c-2", "completed")
    await fake.until(lambda: agent_leg not in fake.channels and not fake.bridges)
    ended = await db_call(pool, "c-2")
    assert ended["end_reason"] == "hangup: cause 16"
    attempts = await pool.fetch(
        "SELECT result, agent_id, number, leg FROM callback_attempts WHERE call_id = $1",
        row["id"],
    )
    assert [dict(a) for a in attempts] == [
        {"result": "answered", "agent_id": agent_id, "number": "+12125550102", "leg": leg}
    ]
    await panel.close()


async def test_a_lone_1_takes_the_offer_other_numbers_still_identify(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    """No offer prompt configured: the offer stands silently. Typed customer numbers,
    1-prefixed ones too, identify as before; a lone 1 then the pause takes the callback,
    and a number typed then # is the one rung."""
    client = await callback_service(app_factory, fake, ari_callback_confirm_prompt=CONFIRM)
    ada = await make_customer(client, "12125550188", 30000, "+442079460018")
    await fake.caller_arrives(CALLER, "anonymous")
    await until_state(client, CALLER, "waiting")
    await fake.press(CALLER, "12125550188#")

    async def identified() -> bool:
        call = await call_of(client, CALLER)
        return bool(call and call["customer"] and call["customer"]["id"] == ada)

    await eventually(identified)
    assert not await opted_in(pool, CALLER)
    # A lone 1, ended by the pause (0.5 s here), then another number and #.
    await fake.press(CALLER, "1")
    await fake.until(lambda: fake.asked("POST", f"/ari/channels/{CALLER}/play"))
    await fake.press(CALLER, "2125550199#")
    await fake.until(lambda: CALLER not in fake.channels)
    row = await db_call(pool, CALLER)
    assert row["callback_number"] == "+12125550199" and row["state"] == "waiting"
    # The confirmation was the only prompt.
    (played,) = fake.asked("POST", f"/ari/channels/{CALLER}/play")
    assert played.query["media"] == CONFIRM


async def test_without_a_callback_dial_string_no_callback_is_offered(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    client = await callback_service(
        app_factory, fake, ari_callback_endpoint=None, ari_callback_prompt=PRESS_1
    )
    assert not client.app[app_keys.ARI].rings_back
    await fake.caller_arrives(CALLER, "+12125550123")
    await until_state(client, CALLER, "waiting")
    ada = await make_customer(client, "77001", 30000, "+442079460018")
    # 1 is a customer number like any other here; the next one still identifies.
    await fake.press(CALLER, "1#")
    await fake.press(CALLER, "77001#")

    async def identified() -> bool:
        call = await call_of(client, CALLER)
        return bool(call and call["customer"] and call["customer"]["id"] == ada)

    await eventually(identified)
    assert not await opted_in(pool, CALLER)
    assert not fake.asked("POST", f"/ari/channels/{CALLER}/play")
    assert CALLER in fake.channels


async def take_callback(client: TestClient[Any, Any], fake: FakeAri, ani: str) -> None:
    """A caller from ``ani`` holds, takes the offered callback with a lone 1, confirms the
    calling number with # and is hung up by the service (their call keeps its place)."""
    await fake.caller_arrives(CALLER, ani)
    await until_state(client, CALLER, "waiting")
    await fake.press(CALLER, "1#")
    await fake.press(CALLER, "#")
    await fake.until(lambda: CALLER not in fake.channels)


async def test_a_callback_nobody_answers_frees_the_agent_retries_and_ends_callback_failed(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    client = await callback_service(app_factory, fake)
    rung = "PJSIP/+12125550107@trunk"
    fake.answers[rung] = None  # the first ring rings out (cause 19)
    await take_callback(client, fake, "+12125550107")
    row = await db_call(pool, CALLER)
    _, panel = await agent_panel(client, "PJSIP/1001")

    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await fake.until(lambda: len(originated(fake, "callback")) == 1)
    # Not answered: the agent is free at once, not "not responding"; nobody else rang.
    await panel.state("available", timeout=10)
    assert not originated(fake, "agent")
    missed = await db_call(pool, CALLER)
    assert missed["state"] == "waiting" and missed["callback_attempts"] == 1
    assert missed["service_key"] == row["service_key"]
    # Back after the retry delay, in its place; this time Asterisk cannot ring at all.
    fake.refuse_endpoints.add(rung)
    offer = await panel.until(lambda m: m["type"] == "offer", timeout=10)
    assert offer["call_id"] == row["id"]
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await until_state(client, CALLER, "abandoned")
    ended = await db_call(pool, CALLER)
    assert ended["end_reason"] == "callback_failed" and ended["callback_attempts"] == 2
    await panel.state("available")
    results = await pool.fetch(
        "SELECT result, cause FROM callback_attempts WHERE call_id = $1 ORDER BY id", row["id"]
    )
    assert [r["result"] for r in results] == ["no_answer", "failed"]
    assert "User alerting, no answer" in results[0]["cause"]
    assert "Allocation failed" in results[1]["cause"]
    # Every ring, refused ones too, was hung up: none rings on.
    legs = [r.query["channelId"] for r in originated(fake, "callback")]
    assert len(legs) == 2 and not [c for c in fake.channels if c.startswith("cc-")]
    assert fake.asked("DELETE", f"/ari/channels/{legs[1]}")
    assert not fake.asked("POST", "/ari/bridges")
    await panel.close()


async def test_bad_callback_numbers_leave_the_caller_holding_and_a_repeat_is_a_no_op(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    client = await callback_service(app_factory, fake)
    await fake.caller_arrives(CALLER, "+12125550123")
    await fake.caller_arrives(OTHER, "anonymous")
    await until_state(client, CALLER, "waiting")
    await until_state(client, OTHER, "waiting")
    ada = await make_customer(client, "77001", 30000, "+442079460018")

    async def identified(channel: str) -> bool:
        call = await call_of(client, channel)
        return bool(call and call["customer"] and call["customer"]["id"] == ada)

    # A premium-rate number, then one that is no number: refused, the caller holds on.
    # (Typed after each: a customer number, which identifies only once the choice is over.)
    await fake.press(CALLER, "1#")
    await fake.press(CALLER, "19005550100#")
    await fake.press(CALLER, "1#")
    await fake.press(CALLER, "12#")
    await fake.press(CALLER, "77001#")
    await eventually(lambda: identified(CALLER))
    # No calling number to fall back on: refused too.
    await fake.press(OTHER, "1#")
    await fake.press(OTHER, "#")
    await fake.press(OTHER, "77001#")
    await eventually(lambda: identified(OTHER))
    for channel in (CALLER, OTHER):
        assert not await opted_in(pool, channel)
        assert channel in fake.channels and not fake.asked("DELETE", f"/ari/channels/{channel}")
    assert sorted(await waiting_ids(client)) == sorted([f"ari:{CALLER}", f"ari:{OTHER}"])

    # The hang-up after the opt-in fails: the caller is still there and takes it again,
    # naming another number. Nothing changes but a second try to let them go.
    fake.refuse_hangups.add(CALLER)
    await fake.press(CALLER, "1#")
    await fake.press(CALLER, "#")
    await fake.until(lambda: len(fake.asked("DELETE", f"/ari/channels/{CALLER}")) == 1)
    first = await db_call(pool, CALLER)
    assert first["callback_number"] == "+12125550123"
    fake.refuse_hangups.clear()
    await fake.press(CALLER, "1#")
    await fake.press(CALLER, "2125550199#")
    await fake.until(lambda: CALLER not in fake.channels)
    again = await db_call(pool, CALLER)
    assert again["callback_number"] == "+12125550123"
    assert again["callback_requested_at"] == first["callback_requested_at"]
    assert again["state"] == "waiting"


async def test_a_ring_the_caller_answers_after_a_supervisor_ended_the_call_lets_them_go(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    # A slow releaser, so the caller picks up before the adapter calls the ring off.
    client = await callback_service(app_factory, fake, sweep_seconds=30)
    fake.answers["PJSIP/+12125550123@trunk"] = "held"
    await take_callback(client, fake, "+12125550123")
    row = await db_call(pool, CALLER)
    _, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await fake.until(lambda: any(c.get("state") == "Ringing" for c in fake.channels.values()))
    leg = originated(fake, "callback")[0].query["channelId"]

    resp = await client.post(f"/api/calls/{row['id']}/end", json={"outcome": "transferred"})
    assert resp.status == 200, await resp.text()
    await fake.pick_up(leg)
    # The caller is let go; the agent's phone never rings for a call that is over.
    await fake.until(lambda: leg not in fake.channels)
    assert fake.asked("DELETE", f"/ari/channels/{leg}")
    assert not originated(fake, "agent") and not fake.bridges
    ended = await db_call(pool, CALLER)
    assert ended["state"] == "transferred" and ended["callback_answered_at"] is None
    await panel.state("available")  # no wrap-up in this queue
    await panel.close()


async def test_a_supervisor_ending_a_call_whose_callback_rings_calls_the_ring_off(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    client = await callback_service(app_factory, fake)
    fake.answers["PJSIP/+12125550123@trunk"] = "held"
    await take_callback(client, fake, "+12125550123")
    row = await db_call(pool, CALLER)
    _, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await fake.until(lambda: any(c.get("state") == "Ringing" for c in fake.channels.values()))
    leg = originated(fake, "callback")[0].query["channelId"]

    resp = await client.post(f"/api/calls/{row['id']}/end", json={"outcome": "transferred"})
    assert resp.status == 200, await resp.text()
    await fake.until(lambda: leg not in fake.channels)
    assert fake.asked("DELETE", f"/ari/channels/{leg}")

    async def cancelled() -> bool:
        result = await pool.fetchval(
            "SELECT result FROM callback_attempts WHERE call_id = $1", row["id"]
        )
        return bool(result == "cancelled")

    await eventually(cancelled)
    assert (await db_call(pool, CALLER))["state"] == "transferred"
    assert not originated(fake, "agent")
    await panel.close()


async def test_a_reconnect_keeps_callback_calls_and_a_live_callback_leg(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    client = await callback_service(app_factory, fake)
    adapter = client.app[app_keys.ARI]
    for channel, number in ((CALLER, "+12125550123"), (OTHER, "+12125550124")):
        await fake.caller_arrives(channel, number)
        await until_state(client, channel, "waiting")
        await fake.press(channel, "1#")
        await fake.press(channel, "#")
        await fake.until(lambda: channel not in fake.channels)  # noqa: B023
    _, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await fake.until(lambda: any(len(b["channels"]) == 2 for b in fake.bridges.values()))
    leg = originated(fake, "callback")[0].query["channelId"]
    agent_leg = originated(fake, "agent")[0].query["channelId"]
    served = CALLER if (await db_call(pool, CALLER))["state"] == "connected" else OTHER
    virtual = OTHER if served == CALLER else CALLER

    async def answered() -> bool:
        return (await db_call(pool, served))["callback_answered_at"] is not None

    await eventually(answered)
    # The stream drops and comes back: neither the virtual call nor the conversation
    # on the callback leg is taken for gone.
    reconciles = adapter.reconciles
    await fake.drop()
    await fake.wait_connected(2)
    await eventually(lambda: _true(adapter.reconciles > reconciles))
    assert (await db_call(pool, virtual))["state"] == "waiting"
    assert (await db_call(pool, served))["state"] == "connected"
    assert leg in fake.channels and agent_leg in fake.channels
    assert not fake.asked("DELETE", f"/ari/channels/{leg}")
    assert not fake.asked("DELETE", f"/ari/channels/{agent_leg}")

    # It drops again, and the rung-back caller hangs up while nobody listens.
    fake.accepting = False
    await fake.drop()
    fake.vanish(leg)
    await fake.until(lambda: any(code == 503 for _, code in fake.refused))
    fake.accepting = True
    await fake.wait_connected(3)
    await until_state(client, served, "completed")
    await fake.until(lambda: agent_leg not in fake.channels)
    assert (await db_call(pool, virtual))["state"] == "waiting"
    await panel.close()


async def test_an_agent_phone_that_fails_after_the_caller_answered_puts_the_call_back(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    """The caller picked up, the agent's phone is busy: as a failed connect (and as on
    Twilio), the call is a virtual call again in its place, the agent not responding, and
    the caller, who has nobody to talk to, is let go until the next agent takes it."""
    client = await callback_service(app_factory, fake)
    fake.answers["PJSIP/1001"] = False
    await take_callback(client, fake, "+12125550123")
    row = await db_call(pool, CALLER)
    _, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    await panel.state("not_responding")
    leg = originated(fake, "callback")[0].query["channelId"]
    assert len(originated(fake, "agent")) == 1
    # The caller had heard music while the agent's phone was tried; now they are let go.
    assert fake.asked("POST", f"/ari/channels/{leg}/moh")
    await fake.until(lambda: leg not in fake.channels)
    assert fake.asked("DELETE", f"/ari/channels/{leg}")

    async def back() -> bool:
        now = await db_call(pool, CALLER)
        return now["state"] == "waiting" and await waiting_ids(client) == [f"ari:{CALLER}"]

    await eventually(back)
    again = await db_call(pool, CALLER)
    assert again["callback_answered_at"] is None and again["service_key"] == row["service_key"]
    results = await pool.fetch("SELECT result FROM callback_attempts WHERE call_id = $1", row["id"])
    assert [r["result"] for r in results] == ["answered"]
    assert not fake.bridges
    await panel.close()


async def test_a_restarted_service_adopts_a_callback_conversation(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    """The service stops while a rung-back caller talks to the agent; the next one finds
    the callback leg in the application, keeps it, and ends the call when it hangs up."""
    client = await callback_service(app_factory, fake)
    await take_callback(client, fake, "+12125550123")
    _, panel = await agent_panel(client, "PJSIP/1001")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])

    async def answered() -> bool:
        return (await db_call(pool, CALLER))["callback_answered_at"] is not None

    await eventually(answered)
    await fake.until(lambda: any(len(b["channels"]) == 2 for b in fake.bridges.values()))
    leg = originated(fake, "callback")[0].query["channelId"]
    agent_leg = originated(fake, "agent")[0].query["channelId"]
    await panel.close()
    await client.close()

    again = await callback_service(app_factory, fake)
    await fake.wait_connected(2)
    adapter = again.app[app_keys.ARI]
    await eventually(lambda: _true(adapter.reconciles > 0))
    assert (await db_call(pool, CALLER))["state"] == "connected"
    assert leg in fake.channels and agent_leg in fake.channels
    await fake.hang_up(leg)
    await until_state(again, CALLER, "completed")
    await fake.until(lambda: agent_leg not in fake.channels and not fake.bridges)


async def test_a_caller_identified_into_the_rule_is_offered_then(
    app_factory: AppFactory, fake: FakeAri, pool: asyncpg.Pool[Any]
) -> None:
    """Offered when the gateway says so: not at arrival (an unknown caller, the rule is for
    platinum), but once typed digits identified a platinum customer."""
    client = await callback_service(app_factory, fake, ari_callback_prompt=PRESS_1)
    await make_queue(
        client,
        "general",
        callback={**CALLBACK_RULE, "tiers": ["platinum"]},
        wrap_up_seconds=0,
    )
    await make_customer(client, "77001", 30000, "+442079460018")
    await fake.caller_arrives(CALLER, "anonymous")
    await until_state(client, CALLER, "waiting")
    await fake.until(lambda: fake.asked("POST", f"/ari/channels/{CALLER}/moh"))
    await fake.press(CALLER, "77001#")
    await fake.until(lambda: fake.asked("POST", f"/ari/channels/{CALLER}/play"))
    assert (await call_of(client, CALLER) or {})["tier"] == "platinum"
    # Only now does a lone 1 take it (a withheld number: the caller types one).
    await fake.press(CALLER, "1#")
    await fake.press(CALLER, "2125550177#")
    await fake.until(lambda: CALLER not in fake.channels)
    assert (await db_call(pool, CALLER))["callback_number"] == "+12125550177"
