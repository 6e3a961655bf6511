"""Locks are taken in one order: a call's waiting row before the call, and before the
agent it is offered to.

The claim and the accept take ``waiting_calls`` first; a hang-up that locked
``calls`` first and then deleted the waiting row deadlocked with an accept
crossing it (PostgreSQL aborted one after a second; the agent was told "the
database did not answer"). Found by the demo's test on a busy machine. Each
statement here that touches both tables must wait for a held waiting row
*before* it locks the call, which a third connection sees as the call still
free to lock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from callcenter import app_keys
from callcenter.queue.sql import Q
from tests.integration.queue_helpers import Panel, enqueue, eventually, make_agent, waits_behind


@pytest.mark.parametrize(
    ("statement", "extra"),
    [
        ("lock_call", ()),  # a supervisor's move of a waiting call
        # Every end: hang-up, the agent's end, a supervisor's (migration 0021).
        (
            "finish_call",
            (
                None,
                "abandoned",
                "r",
                None,
                None,
                False,
                "x",
                "agent:",
                "free:",
                "ended:",
                None,
                None,
                None,
                None,
                "release:",
            ),
        ),
        ("set_key", (45.0, True, None, None, None, 0.0)),  # a bump, digits, a new tier
    ],
)
async def test_a_waiting_calls_row_is_locked_before_the_call(
    client: TestClient[Any, Any], db_url: str, statement: str, extra: tuple[Any, ...]
) -> None:
    call_id = (await enqueue(client, f"lock-{statement}"))["call"]["id"]
    accepter, other, probe = [await asyncpg.connect(db_url) for _ in range(3)]
    try:
        # As an accept does: the waiting row first, the call next.
        holding = accepter.transaction()
        await holding.start()
        await accepter.execute("SELECT 1 FROM waiting_calls WHERE call_id = $1 FOR UPDATE", call_id)
        waiting = other.transaction()
        await waiting.start()
        blocked = asyncio.create_task(other.fetch(Q[statement], call_id, *extra))
        pid = other.get_server_pid()

        async def waits_for_a_lock() -> bool:
            state = await probe.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
            )
            return bool(state == "Lock")

        await eventually(waits_for_a_lock, timeout=30)
        # ... and it waits holding nothing of the call: the accept could go on.
        async with probe.transaction():
            await probe.execute("SELECT 1 FROM calls WHERE id = $1 FOR UPDATE NOWAIT", call_id)
        await holding.rollback()
        await asyncio.wait_for(blocked, 30)
        await waiting.rollback()
    finally:
        for conn in (accepter, other, probe):
            await conn.close()


@pytest.mark.parametrize("how", ["agent", "supervisor", "removed", "gone"])
async def test_going_offline_locks_the_offered_calls_row_before_the_agent(
    client: TestClient[Any, Any], db_url: str, how: str
) -> None:
    """The offered caller's hang-up holds the waiting row and then frees the agent; an
    offline that locked the agent first and then the waiting row deadlocked with it
    (PostgreSQL aborted one after a second). Every way of going offline (the agent's,
    a supervisor's, the agent removed, the sweep's for an agent no longer seen) now
    waits for the row first, holding nothing of the agent, and withdraws the offer."""
    agent_id, token = await make_agent(client, f"ada-{how}")
    call_id = (await enqueue(client, f"offline-{how}"))["call"]["id"]
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.until(lambda m: m["type"] == "offer")
    await panel.close()
    router = client.app[app_keys.ROUTER]
    pool = client.app[app_keys.POOL]
    if how == "gone":
        await pool.execute(
            "UPDATE agent_presence SET last_seen_at = now() - interval '1 day' WHERE agent_id = $1",
            agent_id,
        )

    async def go() -> None:
        if how == "agent":
            await router.offline(agent_id)
        elif how == "gone":
            await router.sweep()
        else:
            verb = client.post if how == "supervisor" else client.delete
            path = f"/api/agents/{agent_id}" + ("/offline" if how == "supervisor" else "")
            resp = await verb(path)
            assert resp.status == 200, await resp.text()

    hanging_up, probe = [await asyncpg.connect(db_url) for _ in range(2)]
    try:
        # As the end of the call does: the waiting row first.
        holding = hanging_up.transaction()
        await holding.start()
        await hanging_up.execute(
            "SELECT 1 FROM waiting_calls WHERE call_id = $1 FOR UPDATE", call_id
        )
        going = asyncio.create_task(go())
        await waits_behind(probe, hanging_up)
        # ... and it waits holding nothing of the agent: the end can free it.
        async with probe.transaction():
            await probe.execute("SELECT 1 FROM agents WHERE id = $1 FOR UPDATE NOWAIT", agent_id)
        await holding.rollback()
        await asyncio.wait_for(going, 30)
    finally:
        for conn in (hanging_up, probe):
            await conn.close()
    agent = await pool.fetchrow("SELECT state, removed_at FROM agents WHERE id = $1", agent_id)
    assert agent is not None and agent["state"] == "offline"
    assert (agent["removed_at"] is not None) == (how == "removed")
    offer = await pool.fetchrow("SELECT result FROM call_offers WHERE call_id = $1", call_id)
    assert offer is not None and offer["result"] == "withdrawn"
