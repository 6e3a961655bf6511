"""The ARI adapter against a real Asterisk (``../shared/peers/asterisk``), the real service
and database.

One Asterisk runs for the module on a free port of 127.0.0.1 (``AsteriskPeer``);
callers and agent phones are Local channels from the peer's dialplan:
``Local/<digits>@incoming`` is a caller with caller id ``+<digits>``,
``ANSWERING_PHONE`` answers at once, ``Local/noanswer@agents`` rings for
ever, ``Local/busy@agents`` is busy. Every wait is bounded and waits for a
condition, never a fixed time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from websockets.asyncio.client import connect as ws_connect

from callcenter import app_keys
from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, Panel, make_customer, make_queue
from tests.integration.telephony_helpers import available_panel, make_agent_with_endpoint
from tests.peers.asterisk import INSTALLED, PEER_DIR, AsteriskPeer, Cutter, Driver, until

Client = TestClient[Any, Any]

#: An agent phone that answers at once. The peer's README says ``Local/agent1@agents``,
#: but its dialplan pattern is ``_agentX.``, and in a pattern ``n``/``N`` is any digit 2-9
#: (upper or lower case) and ``.`` needs one more character: ``agent1`` matches nothing
#: ("No such extension"), ``age2t10`` matches.
ANSWERING_PHONE = "Local/age2t10@agents"


@pytest.fixture(scope="module")
def asterisk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskPeer]:
    if not (PEER_DIR / "start.sh").exists():
        pytest.skip(f"no Asterisk peer at {PEER_DIR} (the repository's ../shared/peers/asterisk)")
    prefix = INSTALLED
    if not (INSTALLED / "sbin" / "asterisk").exists():
        # start.sh unpacks its tarball here (a folder that must not exist yet).
        prefix = tmp_path_factory.mktemp("asterisk-prefix") / "asterisk-test"
    peer = AsteriskPeer(Path(tmp_path_factory.mktemp("asterisk-run")), prefix)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
async def driver(asterisk: AsteriskPeer) -> AsyncIterator[Driver]:
    if asterisk.pid is None:  # a test that restarted it failed half-way
        asterisk.start()
    drv = Driver(asterisk)
    await drv.open()
    try:
        yield drv
    finally:
        try:
            await drv.clear()
        finally:
            await drv.close()


def ari_settings(asterisk: AsteriskPeer, url: str | None = None, **changes: Any) -> dict[str, Any]:
    return {
        **FAST,
        "ari_url": url or asterisk.url,
        "ari_user": "callcenter",
        "ari_password": SecretStr(asterisk.password),
        "ari_dtmf_timeout_seconds": 0.5,
        "ari_reconnect_max_seconds": 0.5,
        **changes,
    }


async def start(app_factory: AppFactory, asterisk: AsteriskPeer, **changes: Any) -> Client:
    client = await app_factory(**ari_settings(asterisk, **changes))
    adapter = client.app[app_keys.ARI]
    await until(_is(adapter.connected.is_set), "the service holds the ARI application")
    return client


def _is(check: Any) -> Any:
    async def run() -> bool:
        return bool(check())

    return run


async def call_of(client: Client, channel_id: str) -> dict[str, Any] | None:
    call = await client.app[app_keys.DESK].by_external_id(f"ari:{channel_id}")
    return None if call is None else call.model_dump(mode="json")


async def until_state(client: Client, channel_id: str, state: str, timeout: float = 10) -> float:
    async def check() -> bool:
        call = await call_of(client, channel_id)
        return call is not None and call["state"] == state

    return await until(check, f"call of {channel_id} {state}", timeout)


async def waiting_ids(client: Client) -> list[str]:
    resp = await client.get("/api/queues/general/calls")
    assert resp.status == 200
    return [c["call_id"] for c in (await resp.json())["calls"]]


async def agent(client: Client, endpoint: str) -> tuple[int, Panel]:
    agent_id, token = await make_agent_with_endpoint(client, "ada", endpoint)
    return agent_id, await available_panel(client, token)


async def accept(panel: Panel) -> int:
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    call_id: int = offer["call_id"]
    return call_id


async def agent_leg(driver: Driver) -> str:
    found: list[str] = []

    async def check() -> bool:
        found[:] = [
            c for c in await driver.channels() if c.startswith("cc-agent-") and ";" not in c
        ]
        return bool(found)

    await until(check, "an agent leg exists")
    return found[0]


# -- callers -------------------------------------------------------------------


async def test_a_caller_is_queued_answered_and_identified_by_phone(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver
) -> None:
    client = await start(app_factory, asterisk)
    await make_customer(client, "C-1", 30000, "+12125550123")
    _, caller = await driver.caller("12125550123")
    await until_state(client, caller, "waiting")
    call = await call_of(client, caller)
    assert call is not None and call["tier"] == "platinum"
    assert call["customer"] is not None and call["ani"] == "+12125550123"
    assert await waiting_ids(client) == [f"ari:{caller}"]

    async def answered() -> bool:
        return (await driver.channels())[caller]["state"] == "Up"

    await until(answered, "the service answered the caller")


async def test_a_customer_number_typed_with_dtmf_identifies_the_caller(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver
) -> None:
    client = await start(app_factory, asterisk)
    ada = await make_customer(client, "77001", 30000, "+442079460018")
    ours, caller = await driver.caller("15550000001")
    await until_state(client, caller, "waiting")
    assert (await call_of(client, caller) or {})["customer"] is None

    await driver.press(ours, "77001#")

    async def identified() -> bool:
        call = await call_of(client, caller)
        return bool(call and call["customer"] and call["customer"]["id"] == ada)

    await until(identified, "the typed number identified the caller")
    assert (await call_of(client, caller) or {})["tier"] == "platinum"


async def test_two_callers_are_ordered_by_value(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver
) -> None:
    client = await start(app_factory, asterisk)
    await make_customer(client, "C-9", 30000, "+12125550199")
    _, first = await driver.caller("15550000002")  # unknown: standard
    await until_state(client, first, "waiting")
    _, second = await driver.caller("12125550199")  # platinum, later
    await until_state(client, second, "waiting")
    assert await waiting_ids(client) == [f"ari:{second}", f"ari:{first}"]


async def test_a_caller_hanging_up_while_waiting_is_abandoned(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver
) -> None:
    client = await start(app_factory, asterisk)
    ours, caller = await driver.caller("15550000003")
    await until_state(client, caller, "waiting")
    await driver.hang_up(ours)
    await until_state(client, caller, "abandoned")
    assert await waiting_ids(client) == []


# -- agents --------------------------------------------------------------------


async def test_an_accepted_call_is_bridged_and_a_caller_hang_up_completes_it(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver
) -> None:
    client = await start(app_factory, asterisk)
    ours, caller = await driver.caller("15550000004")
    await until_state(client, caller, "waiting")
    agent_id, panel = await agent(client, ANSWERING_PHONE)
    await accept(panel)
    await panel.state("on_call")
    leg = await agent_leg(driver)

    async def bridged() -> bool:
        return await driver.bridged_with(caller) == [leg]

    await until(bridged, "the caller and the agent's leg share a bridge")
    await until_state(client, caller, "connected")

    await driver.hang_up(ours)
    await until_state(client, caller, "completed")

    async def torn_down() -> bool:
        return leg not in await driver.channels() and not await driver.bridges()

    await until(torn_down, "the agent's leg and the bridge are gone")
    call = await call_of(client, caller)
    assert call is not None and call["agent_id"] == agent_id
    await panel.state("wrap_up")
    await panel.close()


async def test_the_agent_hanging_up_ends_the_call(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver
) -> None:
    client = await start(app_factory, asterisk)
    _, caller = await driver.caller("15550000005")
    await until_state(client, caller, "waiting")
    _, panel = await agent(client, ANSWERING_PHONE)
    await accept(panel)
    leg = await agent_leg(driver)

    async def bridged() -> bool:
        return await driver.bridged_with(caller) == [leg]

    await until(bridged, "bridged")
    # The agent's phone hangs up (the dialled half of the Local leg).
    await driver.hang_up(f"{leg};2")
    await until_state(client, caller, "completed")

    async def caller_gone() -> bool:
        return caller not in await driver.channels()

    await until(caller_gone, "the caller is hung up too")
    await panel.state("wrap_up")
    await panel.close()


@pytest.mark.parametrize(
    ("endpoint", "ring"), [("Local/noanswer@agents", 2), ("Local/busy@agents", 15)]
)
async def test_a_phone_that_never_answers_or_is_busy_puts_the_call_back(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver, endpoint: str, ring: int
) -> None:
    """Defect 1: the ring outlasted the bridger's limit, which cut it off as 'outcome
    unknown'; the call stayed connected, the agent on call, the caller on hold."""
    client = await start(app_factory, asterisk, ari_ring_seconds=ring)
    _, caller = await driver.caller("15550000006")
    await until_state(client, caller, "waiting")
    key = (await call_of(client, caller) or {})["service_key"]
    _, panel = await agent(client, endpoint)
    await accept(panel)
    await panel.state("not_responding", timeout=ring + 10)
    await until_state(client, caller, "waiting")
    call = await call_of(client, caller)
    assert call is not None and call["service_key"] == key
    assert await waiting_ids(client) == [f"ari:{caller}"]
    # The caller is still there, on hold; the agent's leg is gone and was rung once.
    channels = await driver.channels()
    assert caller in channels and not [c for c in channels if c.startswith("cc-agent-")]
    assert not await driver.bridges()
    await panel.close()


# -- faults --------------------------------------------------------------------


async def test_the_ari_socket_cut_and_restored_reconciles(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver
) -> None:
    cutter = Cutter(asterisk.port)
    await cutter.start()
    try:
        client = await start(app_factory, asterisk, ari_url=cutter.url)
        adapter = client.app[app_keys.ARI]
        ours_a, gone = await driver.caller("15550000007")
        _, stays = await driver.caller("15550000008")
        await until_state(client, gone, "waiting")
        await until_state(client, stays, "waiting")

        cutter.cut()
        await until(_is(lambda: not adapter.connected.is_set()), "the service saw the cut")
        resp = await client.get("/readyz")
        assert (
            resp.status == 503
            and "ARI event websocket is not open" in (await resp.json())["detail"]
        )
        # A caller hangs up while nobody listens.
        await driver.hang_up(ours_a)
        connections = adapter.connections
        cutter.restore()
        await until(_is(lambda: adapter.connections > connections), "reconnected")

        await until_state(client, gone, "abandoned")
        assert await call_of(client, stays) is not None
        assert (await call_of(client, stays) or {})["state"] == "waiting"
        _, new = await driver.caller("15550000009")
        await until_state(client, new, "waiting")
        assert (await client.get("/readyz")).status == 200
    finally:
        await cutter.close()


async def test_another_client_taking_the_application_is_survived(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver
) -> None:
    """Defect 2: after ApplicationReplaced the adapter stayed deaf and said it was fine,
    and once the other client left Asterisk hung up every new caller."""
    client = await start(app_factory, asterisk)
    adapter = client.app[app_keys.ARI]
    connections = adapter.connections
    url = f"ws://127.0.0.1:{asterisk.port}/ari/events?app=callcenter"
    async with ws_connect(url, additional_headers=asterisk.auth_header, proxy=None) as intruder:
        # The service takes its application back: the intruder is replaced in turn.
        frame = await asyncio.wait_for(intruder.recv(), 10)
        assert json.loads(frame)["type"] == "ApplicationReplaced"
    await until(_is(lambda: adapter.connections > connections), "the service reconnected")
    await until(_is(adapter.connected.is_set), "the service holds the application")
    _, caller = await driver.caller("15550000010")
    await until_state(client, caller, "waiting")
    assert (await client.get("/readyz")).status == 200


async def test_asterisk_restarted_while_calls_wait(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver
) -> None:
    client = await start(app_factory, asterisk)
    adapter = client.app[app_keys.ARI]
    _, first = await driver.caller("15550000011")
    _, second = await driver.caller("15550000012")
    await until_state(client, first, "waiting")
    await until_state(client, second, "waiting")
    connections = adapter.connections

    await asyncio.to_thread(asterisk.restart)
    await driver.reopen()

    # The calls died with Asterisk: reconciling ends them; new callers are served.
    await until(_is(lambda: adapter.connections > connections), "reconnected", timeout=15)
    await until_state(client, first, "abandoned")
    await until_state(client, second, "abandoned")
    assert await waiting_ids(client) == []
    _, caller = await driver.caller("15550000013")
    await until_state(client, caller, "waiting")
    assert (await client.get("/readyz")).status == 200


# -- callbacks -------------------------------------------------------------------
#
# The shared dialplan is not ours to edit, so the callback dial string points at its
# agent phones: the caller "rung back" is ``ANSWERING_PHONE`` (picks up at once),
# ``Local/busy@agents`` or ``Local/noanswer@agents``; hanging up the rung-back caller
# is hanging up the ``;2`` half of the callback leg.

#: Callbacks offered to every caller at once, two rings a second apart.
CALLBACK_RULE = {"after_seconds": 0, "attempts": 2, "retry_seconds": 1}


def tone(path: Path, seconds: float = 0.2) -> str:
    """A short prompt Asterisk can play (8 kHz WAV); its ``sound:`` URI (no extension)."""
    import math
    import struct
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        frames = int(8000 * seconds)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 660 * i / 8000)))
                for i in range(frames)
            )
        )
    return f"sound:{path.with_suffix('')}"


async def callback_service(
    app_factory: AppFactory, asterisk: AsteriskPeer, rung: str, **changes: Any
) -> Client:
    client = await start(
        app_factory,
        asterisk,
        ari_callback_endpoint=rung,
        ari_callback_confirm_seconds=1.0,
        callback_ring_seconds=5.0,
        **changes,
    )
    await make_queue(client, "general", callback=CALLBACK_RULE, wrap_up_seconds=0)
    return client


async def db_call(client: Client, channel_id: str) -> dict[str, Any]:
    row = await client.app[app_keys.POOL].fetchrow(
        "SELECT id, state, service_key, callback_number, callback_requested_at,"
        " callback_answered_at, callback_attempts, end_reason FROM calls WHERE external_id = $1",
        f"ari:{channel_id}",
    )
    assert row is not None
    return dict(row)


def played(driver: Driver, caller: str, media: str, kind: str = "PlaybackFinished") -> int:
    """How many times ``media`` was played to ``caller`` (the driver hears both halves)."""
    return sum(
        1
        for e in driver.events
        if e["type"] == kind
        and e["playback"]["target_uri"] == f"channel:{caller}"
        and e["playback"]["media_uri"] == media
    )


async def take_callback(
    client: Client, driver: Driver, ours: str, caller: str, confirm: str, keys: str = "#"
) -> None:
    """The caller presses 1, hears the confirmation, and confirms with ``keys``."""
    heard = played(driver, caller, confirm)
    await driver.press(ours, "1#")
    await until(_is(lambda: played(driver, caller, confirm) > heard), "the confirmation prompt")
    await driver.press(ours, keys)


async def virtual_caller(client: Client, driver: Driver, digits: str, confirm: str) -> str:
    """A caller from ``+digits`` who holds, takes the callback and is let go: the
    service's channel, once their call waits as a callback."""
    ours, caller = await driver.caller(digits)
    await until_state(client, caller, "waiting")
    await take_callback(client, driver, ours, caller, confirm)

    async def virtual() -> bool:
        return (await db_call(client, caller))["callback_number"] is not None

    await until(virtual, "the call waits as a callback")
    return caller


async def kept_caller(
    app_factory: AppFactory,
    asterisk: AsteriskPeer,
    driver: Driver,
    tmp_path: Path,
    digits: str,
    *,
    rung: str,
    agent_at: str,
    **rule: Any,
) -> tuple[Client, str, Panel]:
    """A service that rings callers back at ``rung`` (the queue's callback rule changed
    by ``rule``), a caller from ``+digits`` waiting as a callback, and an available
    agent whose phone is ``agent_at``: the service, the caller's channel, the panel."""
    confirm = tone(tmp_path / "confirm.wav")
    client = await callback_service(
        app_factory, asterisk, rung, ari_callback_confirm_prompt=confirm
    )
    if rule:
        await make_queue(client, "general", callback={**CALLBACK_RULE, **rule})
    caller = await virtual_caller(client, driver, digits, confirm)
    _, panel = await agent(client, agent_at)
    return client, caller, panel


async def leg_named(driver: Driver, prefix: str) -> str:
    found: list[str] = []

    async def check() -> bool:
        found[:] = [c for c in await driver.channels() if c.startswith(prefix) and ";" not in c]
        return bool(found)

    await until(check, f"a channel {prefix}…")
    return found[0]


async def test_a_caller_takes_a_callback_keeps_their_place_and_is_rung_back_and_bridged(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver, tmp_path: Path
) -> None:
    press_1, confirm = tone(tmp_path / "press-1.wav"), tone(tmp_path / "confirm.wav")
    client = await callback_service(
        app_factory,
        asterisk,
        ANSWERING_PHONE,
        ari_callback_prompt=press_1,
        ari_callback_confirm_prompt=confirm,
    )
    callers: list[tuple[str, str]] = []
    for digits in ("12125550161", "12125550162", "12125550163"):
        callers.append(await driver.caller(digits))
        await until_state(client, callers[-1][1], "waiting")
    (ours_1, first), (ours_2, second), (_, third) = callers
    # The offer is played to each holding caller.
    for _, caller in callers:
        await until(_is(lambda c=caller: played(driver, c, press_1) == 1), "the offer prompt")
    order = await waiting_ids(client)
    assert order == [f"ari:{first}", f"ari:{second}", f"ari:{third}"]
    keys = {c: (await db_call(client, c))["service_key"] for _, c in callers}

    await take_callback(client, driver, ours_2, second, confirm)

    async def hung_up() -> bool:
        return second not in await driver.channels()

    await until(hung_up, "the service hangs the caller up")
    row = await db_call(client, second)
    assert row["state"] == "waiting" and row["callback_number"] == "+12125550162"
    # Same place, same key, for everyone.
    assert await waiting_ids(client) == order
    assert {c: (await db_call(client, c))["service_key"] for _, c in callers} == keys

    agent_id, panel = await agent(client, ANSWERING_PHONE)
    assert await accept(panel) == (await db_call(client, first))["id"]
    await until_state(client, first, "connected")
    await driver.hang_up(ours_1)
    await until_state(client, first, "completed")
    # The virtual call is next, ahead of the caller who came after it.
    offer = await panel.until(lambda m: m["type"] == "offer")
    assert offer["call_id"] == row["id"] and offer["callback"] == "+12125550162"
    await panel.send(type="accept", offer_id=offer["offer_id"])

    leg = await leg_named(driver, f"cc-callback-{row['id']}-")

    async def bridged() -> bool:
        others = await driver.bridged_with(leg)
        return len(others) == 1 and others[0].startswith(f"cc-agent-{row['id']}-")

    await until(bridged, "the rung-back caller and the agent share a bridge")

    async def answered() -> bool:
        now = await db_call(client, second)
        return now["callback_answered_at"] is not None and now["state"] == "connected"

    await until(answered, "the answer is recorded")
    agent_leg = (await driver.bridged_with(leg))[0]
    # The rung-back caller hangs up: completed; the agent's leg and the bridge go.
    await driver.hang_up(f"{leg};2")
    await until_state(client, second, "completed")

    async def torn_down() -> bool:
        channels = await driver.channels()
        return leg not in channels and agent_leg not in channels and not await driver.bridges()

    await until(torn_down, "the agent's leg and the bridge are gone")
    attempts = await client.app[app_keys.POOL].fetch(
        "SELECT result, agent_id, leg FROM callback_attempts WHERE call_id = $1", row["id"]
    )
    assert [dict(a) for a in attempts] == [{"result": "answered", "agent_id": agent_id, "leg": leg}]
    await panel.close()


async def test_a_callback_nobody_answers_frees_the_agent_retries_and_ends_callback_failed(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver, tmp_path: Path
) -> None:
    confirm = tone(tmp_path / "confirm.wav")
    client = await callback_service(
        app_factory, asterisk, "Local/busy@agents", ari_callback_confirm_prompt=confirm
    )
    ours, caller = await driver.caller("12125550164")
    await until_state(client, caller, "waiting")
    await take_callback(client, driver, ours, caller, confirm)
    call_id = 0

    async def virtual() -> bool:
        nonlocal call_id
        row = await db_call(client, caller)
        call_id = row["id"]
        return row["callback_number"] is not None

    await until(virtual, "the call waits as a callback")
    key = (await db_call(client, caller))["service_key"]
    agent_id, panel = await agent(client, ANSWERING_PHONE)
    assert await accept(panel) == call_id
    # Busy: the agent is free at once (not "not responding"), the call waits out the delay.
    await panel.state("available")
    missed = await db_call(client, caller)
    assert missed["state"] == "waiting" and missed["callback_attempts"] == 1
    assert missed["service_key"] == key
    # Back after a second, in its place, rung again, busy again: callback_failed.
    assert await accept(panel) == call_id
    await until_state(client, caller, "abandoned")
    ended = await db_call(client, caller)
    assert ended["end_reason"] == "callback_failed" and ended["callback_attempts"] == 2
    await panel.state("available")
    results = await client.app[app_keys.POOL].fetch(
        "SELECT result, agent_id FROM callback_attempts WHERE call_id = $1 ORDER BY id", call_id
    )
    assert [(r["result"], r["agent_id"]) for r in results] == [("no_answer", agent_id)] * 2
    # No agent leg was ever rung, and nothing of ours is left at Asterisk.
    assert not [c for c in await driver.channels() if c.startswith("cc-")]
    assert not await driver.bridges()
    await panel.close()


async def test_bad_callback_numbers_leave_the_caller_holding_in_their_place(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver, tmp_path: Path
) -> None:
    confirm = tone(tmp_path / "confirm.wav")
    client = await callback_service(
        app_factory, asterisk, ANSWERING_PHONE, ari_callback_confirm_prompt=confirm
    )
    ours, caller = await driver.caller("12125550165")
    await until_state(client, caller, "waiting")
    _, behind = await driver.caller("12125550166")
    await until_state(client, behind, "waiting")
    # A premium-rate number, then one that is no number.
    await take_callback(client, driver, ours, caller, confirm, keys="19005550100#")
    await take_callback(client, driver, ours, caller, confirm, keys="12#")
    # Still holding, in the application, first in line, and may take it properly now.
    assert caller in await driver.channels()
    assert (await db_call(client, caller))["callback_number"] is None
    await take_callback(client, driver, ours, caller, confirm, keys="2125550199#")

    async def virtual() -> bool:
        return (await db_call(client, caller))["callback_number"] == "+12125550199"

    await until(virtual, "the typed number is taken")
    assert await waiting_ids(client) == [f"ari:{caller}", f"ari:{behind}"]


async def test_a_supervisor_ending_the_call_while_the_callback_rings_calls_it_off(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver, tmp_path: Path
) -> None:
    client, caller, panel = await kept_caller(
        app_factory, asterisk, driver, tmp_path, "12125550167",
        rung="Local/noanswer@agents", agent_at=ANSWERING_PHONE,
    )  # fmt: skip
    row = await db_call(client, caller)
    assert await accept(panel) == row["id"]
    leg = await leg_named(driver, f"cc-callback-{row['id']}-")
    resp = await client.post(f"/api/calls/{row['id']}/end", json={"outcome": "transferred"})
    assert resp.status == 200, await resp.text()

    async def called_off() -> bool:
        result = await client.app[app_keys.POOL].fetchval(
            "SELECT result FROM callback_attempts WHERE call_id = $1", row["id"]
        )
        return result == "cancelled" and leg not in await driver.channels()

    await until(called_off, "the ring is called off")
    assert (await db_call(client, caller))["state"] == "transferred"
    assert not [c for c in await driver.channels() if c.startswith("cc-")]
    await panel.close()


async def test_a_supervisor_ending_the_call_while_the_agent_rings_lets_the_caller_go(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver, tmp_path: Path
) -> None:
    """The caller answered at once, but the agent's phone rings and rings."""
    client, caller, panel = await kept_caller(
        app_factory, asterisk, driver, tmp_path, "12125550168",
        rung=ANSWERING_PHONE, agent_at="Local/noanswer@agents",
    )  # fmt: skip
    row = await db_call(client, caller)
    assert await accept(panel) == row["id"]
    leg = await leg_named(driver, f"cc-callback-{row['id']}-")
    agent_leg = await leg_named(driver, f"cc-agent-{row['id']}-")

    async def answer_recorded() -> bool:
        return (await db_call(client, caller))["callback_answered_at"] is not None

    # The agent's leg exists once Asterisk saw the caller answer; our side records the
    # answer a moment later. End the call only then, or this is the "answered late" case.
    await until(answer_recorded, "the caller's answer is recorded")
    resp = await client.post(f"/api/calls/{row['id']}/end", json={"outcome": "transferred"})
    assert resp.status == 200, await resp.text()

    async def let_go() -> bool:
        channels = await driver.channels()
        return leg not in channels and agent_leg not in channels

    await until(let_go, "the caller and the agent's ringing phone are let go")
    ended = await db_call(client, caller)
    assert ended["state"] == "transferred" and ended["callback_answered_at"] is not None
    assert not await driver.bridges()
    await panel.close()


async def test_a_cut_ari_socket_keeps_the_callback_conversation(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver, tmp_path: Path
) -> None:
    confirm = tone(tmp_path / "confirm.wav")
    cutter = Cutter(asterisk.port)
    await cutter.start()
    try:
        client = await callback_service(
            app_factory,
            asterisk,
            ANSWERING_PHONE,
            ari_url=cutter.url,
            ari_callback_confirm_prompt=confirm,
        )
        adapter = client.app[app_keys.ARI]
        served_ours, served = await driver.caller("12125550169")
        await until_state(client, served, "waiting")
        await take_callback(client, driver, served_ours, served, confirm)
        waits_ours, waits = await driver.caller("12125550170")
        await until_state(client, waits, "waiting")
        await take_callback(client, driver, waits_ours, waits, confirm)

        async def both_virtual() -> bool:
            rows = [await db_call(client, c) for c in (served, waits)]
            return all(r["callback_number"] is not None for r in rows)

        await until(both_virtual, "both wait as callbacks")
        row = await db_call(client, served)
        _, panel = await agent(client, ANSWERING_PHONE)
        assert await accept(panel) == row["id"]
        leg = await leg_named(driver, f"cc-callback-{row['id']}-")

        async def answered() -> bool:
            return (await db_call(client, served))["callback_answered_at"] is not None

        await until(answered, "the callback is answered")

        async def bridged() -> bool:
            return bool(await driver.bridged_with(leg))

        await until(bridged, "the rung-back caller is bridged with the agent")
        agent_leg = (await driver.bridged_with(leg))[0]

        cutter.cut()
        await until(_is(lambda: not adapter.connected.is_set()), "the service saw the cut")
        connections, reconciles = adapter.connections, adapter.reconciles
        cutter.restore()
        await until(_is(lambda: adapter.reconciles > reconciles), "reconciled")
        assert adapter.connections > connections
        # Neither the virtual call nor the conversation on the callback leg is gone.
        assert (await db_call(client, waits))["state"] == "waiting"
        assert (await db_call(client, served))["state"] == "connected"
        assert await driver.bridged_with(leg) == [agent_leg]

        # The rung-back caller hangs up while nobody listens: reconciling ends the call.
        cutter.cut()
        await until(_is(lambda: not adapter.connected.is_set()), "the service saw the cut")
        await driver.hang_up(f"{leg};2")
        cutter.restore()
        await until_state(client, served, "completed")

        async def agent_leg_gone() -> bool:
            return agent_leg not in await driver.channels()

        await until(agent_leg_gone, "the agent's leg is let go")
        assert (await db_call(client, waits))["state"] == "waiting"
        await panel.close()
    finally:
        await cutter.close()


async def test_a_callback_that_rings_out_ends_callback_failed(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver, tmp_path: Path
) -> None:
    client, caller, panel = await kept_caller(
        app_factory, asterisk, driver, tmp_path, "12125550171",
        rung="Local/noanswer@agents", agent_at=ANSWERING_PHONE, attempts=1,
    )  # fmt: skip
    call_id = await accept(panel)
    leg = await leg_named(driver, f"cc-callback-{call_id}-")
    # Asterisk ends the ring at the originate's timeout (callback_ring_seconds, 5 s).
    await until_state(client, caller, "abandoned", timeout=15)
    ended = await db_call(client, caller)
    assert ended["end_reason"] == "callback_failed"
    row = await client.app[app_keys.POOL].fetchrow(
        "SELECT result, cause FROM callback_attempts WHERE call_id = $1", call_id
    )
    assert row["result"] == "no_answer" and "no answer" in row["cause"]
    await panel.state("available")
    assert leg not in await driver.channels()
    assert not [c for c in await driver.channels() if c.startswith("cc-")]
    await panel.close()


async def test_an_agent_phone_busy_after_the_caller_answered_puts_the_callback_back(
    app_factory: AppFactory, asterisk: AsteriskPeer, driver: Driver, tmp_path: Path
) -> None:
    client, caller, panel = await kept_caller(
        app_factory, asterisk, driver, tmp_path, "12125550172",
        rung=ANSWERING_PHONE, agent_at="Local/busy@agents",
    )  # fmt: skip
    key = (await db_call(client, caller))["service_key"]
    call_id = await accept(panel)
    await panel.state("not_responding")

    async def back() -> bool:
        row = await db_call(client, caller)
        return row["state"] == "waiting" and row["callback_answered_at"] is None

    await until(back, "the call is a virtual call again")
    assert (await db_call(client, caller))["service_key"] == key
    assert await waiting_ids(client) == [f"ari:{caller}"]
    result = await client.app[app_keys.POOL].fetchval(
        "SELECT result FROM callback_attempts WHERE call_id = $1", call_id
    )
    assert result == "answered"

    async def let_go() -> bool:
        return not [c for c in await driver.channels() if c.startswith("cc-")]

    await until(let_go, "the rung-back caller and the agent's leg are let go")
    await panel.close()
