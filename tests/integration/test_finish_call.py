"""The server-side end of a call, ``finish_call`` (migration 0021), on its own.

Every end (the caller's hang-up, the agent's end, a supervisor's, the sweep's)
is this one statement: the lock, the checks ``CallDesk._finish`` made between
its statements, and the close. These tests call it directly and read what it
left: each ``result`` it answers and what changed (or did not) with it; the
events it sends; that ends racing on one call close it exactly once; and the
release at the peer it records: not needed, or claimed for the ending
instance's releaser (taken over by another when that one dies), or left to the
``release`` event of the others, and never claimed twice.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from callcenter import app_keys
from callcenter.events import CHANNEL, Event
from callcenter.queue.sql import Q
from callcenter.telephony_adapters.base import Incoming
from callcenter.telephony_adapters.sql import Q as T
from tests.conftest import AppFactory
from tests.integration.queue_helpers import (
    Panel,
    enqueue,
    eventually,
    make_agent,
    make_queue,
    take_call,
)
from tests.integration.telephony_helpers import RecordingConnector


async def _finish(
    conn: asyncpg.Connection[Any] | asyncpg.Pool[Any],
    call_id: int | None,
    outcome: str | None,
    *,
    external: str | None = None,
    expect: str | None = None,
    agent: int | None = None,
    spare_callback: bool = False,
    reason: str | None = "r",
    release_peers: list[str] | None = None,
    release_by: str | None = None,
    release_lease: float = 60.0,
    release_settled: str | None = None,
) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        Q["finish_call"],
        call_id,
        external,
        outcome,
        reason,
        expect,
        agent,
        spare_callback,
        CHANNEL,
        "agent:",
        "free:",
        "ended:",
        release_peers,
        release_by,
        release_lease,
        release_settled,
        "release:",
    )
    assert row is not None
    return row


async def _state(pool: asyncpg.Pool[Any], call_id: int) -> str:
    state: str = await pool.fetchval("SELECT state FROM calls WHERE id = $1", call_id)
    return state


async def test_each_result_says_what_the_end_did(
    client: TestClient[Any, Any], pool: asyncpg.Pool[Any]
) -> None:
    call_id = (await enqueue(client, "fc-1"))["call"]["id"]
    # Refused, and nothing changes: the call waits on.
    for outcome, kwargs, result in [
        ("completed", {}, "not_connected"),
        ("abandoned", {"expect": "connected"}, "unexpected"),
        ("abandoned", {"agent": 424242}, "not_yours"),
    ]:
        row = await _finish(pool, call_id, outcome, **kwargs)
        assert row["result"] == result, (outcome, kwargs, dict(row))
        assert await _state(pool, call_id) == "waiting"
    row = await _finish(pool, call_id, "abandoned", reason="gone")
    assert (row["result"], row["was"], row["state"]) == ("closed", "waiting", "abandoned")
    # The answer is the call as ``call`` reads it after the close: nothing to read back.
    after = await pool.fetchrow(Q["call"], call_id)
    assert after is not None
    assert {k: row[k] for k in dict(after)} == dict(after)
    assert row["end_reason"] == "gone" and row["held_by"] is None
    assert not await pool.fetchval("SELECT count(*) FROM waiting_calls")
    # A repeat of the same end is answered, another end of an ended call is a conflict.
    assert (await _finish(pool, call_id, "abandoned"))["result"] == "repeat"
    ended = await _finish(pool, call_id, "transferred")
    assert (ended["result"], ended["was"]) == ("ended", "abandoned")
    # The peer's hang-up of an ended call leaves it as it is.
    by_peer = await _finish(pool, None, None, external="fc-1")
    assert (by_peer["result"], by_peer["id"]) == ("repeat", call_id)
    # No such call, by our id or the peer's.
    assert (await _finish(pool, 987654, "abandoned"))["result"] == "not_found"
    unknown = await _finish(pool, None, None, external="nobody")
    assert unknown["result"] == "unknown" and unknown["id"] is None
    assert await pool.fetchval("SELECT count(*) FROM interactions") == 0  # nobody known


async def test_a_hang_up_by_state_completes_a_connected_call_and_tells_who_must_know(
    client: TestClient[Any, Any], pool: asyncpg.Pool[Any], db_url: str
) -> None:
    agent_id, token = await make_agent(client, "ada")
    panel, answer, _ = await take_call(client, token, "fc-2")
    call_id = answer["call"]["id"]
    listener = await asyncpg.connect(db_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[-1]))
    try:
        row = await _finish(pool, None, None, external="fc-2", reason="hangup")
        assert (row["result"], row["was"], row["state"]) == ("closed", "connected", "completed")
        assert row["held_by"] == agent_id and row["agent_id"] == agent_id
        agent = await pool.fetchrow("SELECT state, call_id FROM agents WHERE id = $1", agent_id)
        assert agent is not None and dict(agent) == {"state": "wrap_up", "call_id": call_id}
        # The queue has a wrap-up: the agent's panel is pushed (its new state comes with
        # the agents' trigger's notification), but it is not free yet.
        events = [Event.decode(await asyncio.wait_for(heard.get(), 5)) for _ in range(2)]
        assert {e.encode() for e in events} == {f"agent:{agent_id}", f"ended:{call_id}"}
        pushed = next(e for e in events if e.kind == "agent")
        assert pushed.data is not None and json.loads(pushed.data)["state"] == "wrap_up"
        await panel.state("wrap_up")
    finally:
        await listener.close()
        await panel.close()


async def test_an_agent_with_no_wrap_up_is_free_at_once(
    client: TestClient[Any, Any], pool: asyncpg.Pool[Any]
) -> None:
    await make_queue(client, "general", wrap_up_seconds=0)
    agent_id, token = await make_agent(client, "bob")
    panel, answer, _ = await take_call(client, token, "fc-3")
    row = await _finish(pool, answer["call"]["id"], "completed", agent=agent_id)
    assert row["result"] == "closed"
    state = await pool.fetchval("SELECT state FROM agents WHERE id = $1", agent_id)
    assert state == "available"
    await panel.state("available")
    await panel.close()


async def test_a_waiting_calls_offer_is_withdrawn_and_its_agent_freed(
    client: TestClient[Any, Any], pool: asyncpg.Pool[Any]
) -> None:
    agent_id, token = await make_agent(client, "cy")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    call_id = (await enqueue(client, "fc-4"))["call"]["id"]
    await panel.until(lambda m: m["type"] == "offer")
    row = await _finish(pool, None, None, external="fc-4", reason="hangup")
    assert (row["result"], row["state"], row["held_by"]) == ("closed", "abandoned", None)
    offer = await pool.fetchval("SELECT result FROM call_offers WHERE call_id = $1", call_id)
    assert offer == "withdrawn"
    # Not the agent's doing: it is free again.
    assert await pool.fetchval("SELECT state FROM agents WHERE id = $1", agent_id) == "available"
    await panel.state("available")
    await panel.close()


async def test_a_callback_call_is_spared_only_when_asked(
    client: TestClient[Any, Any], pool: asyncpg.Pool[Any]
) -> None:
    call_id = (await enqueue(client, "fc-5"))["call"]["id"]
    await pool.execute(
        "UPDATE calls SET callback_number = '+12125550199', callback_requested_at = now()"
        " WHERE id = $1",
        call_id,
    )
    spared = await _finish(pool, None, None, external="fc-5", spare_callback=True)
    assert spared["result"] == "callback" and spared["state"] == "waiting"
    assert await _state(pool, call_id) == "waiting"
    closed = await _finish(pool, call_id, None, spare_callback=False)
    assert (closed["result"], closed["state"]) == ("closed", "abandoned")


async def test_ends_racing_on_one_call_close_it_exactly_once(
    client: TestClient[Any, Any], pool: asyncpg.Pool[Any], db_url: str
) -> None:
    agent_id, token = await make_agent(client, "dee")
    panel, answer, _ = await take_call(client, token, "fc-6")
    call_id = answer["call"]["id"]
    # The caller's hang-up, the agent's end and a supervisor's, each several times at once.
    ends: list[dict[str, Any]] = [
        {"call_id": None, "outcome": None, "external": "fc-6"},
        {"call_id": call_id, "outcome": "completed", "agent": agent_id},
        {"call_id": call_id, "outcome": "transferred"},
    ] * 4
    conns = [await asyncpg.connect(db_url) for _ in ends]
    try:
        rows = await asyncio.gather(
            *(
                _finish(c, e["call_id"], e["outcome"], external=e.get("external"),
                        agent=e.get("agent"))
                for c, e in zip(conns, ends, strict=True)
            )
        )  # fmt: skip
    finally:
        for c in conns:
            await c.close()
    results = [r["result"] for r in rows]
    assert results.count("closed") == 1, results
    winner = next(r for r in rows if r["result"] == "closed")
    # Every other end saw it ended: the same outcome is a repeat, another a conflict.
    for r in rows:
        if r["result"] != "closed":
            assert r["was"] == winner["state"]
            assert r["result"] in ("repeat", "ended"), dict(r)
    interactions = await pool.fetchval(
        "SELECT count(*) FROM interactions WHERE (details->>'call_id')::bigint = $1", call_id
    )
    assert interactions <= 1  # one contact at most (none for a caller nobody knows)

    async def wrapping_up() -> bool:
        return await pool.fetchval("SELECT state FROM agents WHERE id = $1", agent_id) == (
            "wrap_up"
        )

    await eventually(wrapping_up)
    await panel.close()


async def _listening(db_url: str) -> tuple[asyncpg.Connection[Any], asyncio.Queue[str]]:
    listener = await asyncpg.connect(db_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[-1]))
    return listener, heard


async def _release(pool: asyncpg.Pool[Any], call_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT state, note, claimed_by, lease_until > now() AS live, done_at IS NOT NULL AS done"
        " FROM call_releases WHERE call_id = $1",
        call_id,
    )
    return row


async def test_the_release_is_recorded_by_the_end_or_left_to_the_event(
    app_factory: AppFactory, pool: asyncpg.Pool[Any], db_url: str
) -> None:
    client = await app_factory()
    gateway = client.app[app_keys.GATEWAY]
    calls = {}
    for name in ("settled", "claimed", "elsewhere"):
        view = await gateway.handle("generic", Incoming(f"fc-{name}"))
        assert view.call is not None
        calls[name] = view.call.id
    api_call = (await enqueue(client, "fc-api"))["call"]["id"]
    listener, heard = await _listening(db_url)
    try:
        # The peer reported the hang-up: recorded as not needed, nobody told.
        row = await _finish(
            pool, calls["settled"], "abandoned", release_peers=["generic", "twilio"],
            release_by="me", release_settled="the peer reported the hang-up",
        )  # fmt: skip
        assert (row["result"], row["release"]) == ("closed", "not_needed")
        stored = await _release(pool, calls["settled"])
        assert stored is not None and dict(stored) == {
            "state": "not_needed", "note": "the peer reported the hang-up",
            "claimed_by": "me", "live": False, "done": True,
        }  # fmt: skip
        # Ended on our side: claimed for the ending releaser, with what it needs.
        row = await _finish(
            pool, calls["claimed"], "abandoned", release_peers=["generic"], release_by="me"
        )
        assert (row["release"], row["peer"], row["peer_call_id"]) == (
            "claimed", "generic", "fc-claimed",
        )  # fmt: skip
        assert row["leg"] is None  # not a callback's ring
        stored = await _release(pool, calls["claimed"])
        assert stored is not None and dict(stored) == {
            "state": "claimed", "note": None, "claimed_by": "me", "live": True, "done": False,
        }  # fmt: skip
        # A peer this instance does not command, and an instance with no releaser:
        # nothing recorded, the other instances' releasers are told.
        row = await _finish(
            pool, calls["elsewhere"], "abandoned", release_peers=["twilio"], release_by="me"
        )
        assert row["release"] is None and await _release(pool, calls["elsewhere"]) is None
        # A call of no peer: nobody to let go of, nobody told.
        row = await _finish(pool, api_call, "abandoned")
        assert row["release"] is None and await _release(pool, api_call) is None
        events: set[str] = set()
        while not {f"ended:{api_call}", f"release:{calls['elsewhere']}"} <= events:
            events.add(await asyncio.wait_for(heard.get(), 5))
        releases = {e for e in events if e.startswith("release:")}
        assert releases == {f"release:{calls['elsewhere']}"}
    finally:
        await listener.close()


async def test_a_release_claimed_by_an_end_whose_instance_died_is_taken_over(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(sweep_seconds=60.0)
    gateway = client.app[app_keys.GATEWAY]
    releaser = client.app[app_keys.RELEASER]
    fake = RecordingConnector("generic")
    gateway.register(fake)
    view = await gateway.handle("generic", Incoming("fc-dead"))
    assert view.call is not None
    # Another instance ended it and claimed its release, then died before the hang-up.
    row = await _finish(
        pool, view.call.id, "abandoned", release_peers=["generic"], release_by="dead-host:1:x",
        release_lease=0.0,
    )  # fmt: skip
    assert row["release"] == "claimed" and fake.hangups == []
    # Its lease ran out at once: the catch-up of this instance takes the claim over.
    await releaser.catch_up()

    async def hung_up() -> bool:
        stored = await _release(pool, view.call.id)
        return stored is not None and stored["state"] == "released"

    await eventually(hung_up)
    stored = await _release(pool, view.call.id)
    assert stored is not None and stored["claimed_by"] == releaser.instance
    assert [c.peer_call_id for c in fake.hangups] == ["fc-dead"]


async def test_an_end_and_other_instances_claims_release_each_call_once(
    app_factory: AppFactory, pool: asyncpg.Pool[Any], db_url: str
) -> None:
    """Ends claiming their calls' releases while another instance's releaser claims
    the same calls (as on a ``release`` event or its catch-up): one claim per call,
    never taken from a live claim."""
    client = await app_factory()
    gateway = client.app[app_keys.GATEWAY]
    ids = []
    for n in range(12):
        view = await gateway.handle("generic", Incoming(f"fc-race-{n}"))
        assert view.call is not None
        ids.append(view.call.id)
    enders = [await asyncpg.connect(db_url) for _ in ids]
    claimer = await asyncpg.connect(db_url)
    try:

        async def claims() -> list[int]:
            won = []
            for _ in range(40):
                for call_id in ids:
                    row = await claimer.fetchrow(
                        T["claim_release"], call_id, ["generic"], "other", 60.0
                    )
                    if row is not None:
                        won.append(call_id)
                await asyncio.sleep(0)
            return won

        rows, won = await asyncio.gather(
            asyncio.gather(
                *(
                    _finish(c, call_id, "abandoned", release_peers=["generic"], release_by="ender")
                    for c, call_id in zip(enders, ids, strict=True)
                )
            ),
            claims(),
        )
    finally:
        for c in [*enders, claimer]:
            await c.close()
    ended_claims = [r["id"] for r in rows if r["release"] == "claimed"]
    # Every call's release was claimed exactly once: by its end, or by the other releaser.
    assert sorted(ended_claims + won) == sorted(ids)
    by = dict(await pool.fetch("SELECT call_id, claimed_by FROM call_releases"))
    assert by == {i: "ender" for i in ended_claims} | {i: "other" for i in won}
