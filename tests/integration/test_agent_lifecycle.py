"""An agent's lifecycle against what runs at the same time: a token reset or a
removal while a panel of that agent is opening; signing out on a call."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from callcenter.queue.sql import Q as QUEUE_Q
from tests.integration.queue_helpers import (
    Panel,
    agent_state,
    end_call,
    make_agent,
    make_queue,
    take_call,
    waits_behind,
    wrap_up_clock_ends,
)

Client = TestClient[Any, Any]


async def _closed_with(ws: Any, code: int, timeout: float = 5.0) -> None:
    """Read until the close frame; it must carry ``code``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"the panel is still open after {timeout} s")
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            raise AssertionError(f"the panel is still open after {timeout} s") from None
        if msg.type is WSMsgType.TEXT:
            continue
        assert msg.type is WSMsgType.CLOSE and msg.data == code, msg
        return


@pytest.mark.parametrize("how", ["reset", "remove"])
async def test_a_panel_opening_while_its_token_is_revoked_is_closed(
    client: Client, pool: asyncpg.Pool[Any], how: str
) -> None:
    """The hub closes the panels of a revoked token when it hears ``revoked``; a panel
    whose token was looked up just before the revoke, and that joins the hub's panels
    just after the hub looked for them, must be closed too, or the old token (a leaked
    one, a removed agent's) keeps a live panel for as long as it stays open."""
    await make_queue(client, "general")
    agent_id, token = await make_agent(client, "ada")
    # A panel open before the revoke: its close says the hub has looked for the panels.
    witness = await Panel.open(client, token)
    await witness.state("offline")
    async with pool.acquire() as holder, pool.acquire() as probe:
        tx = holder.transaction()
        await tx.start()
        # The token's look-up marks the agent seen: held here, after its snapshot.
        await holder.execute(
            "SELECT 1 FROM agent_presence WHERE agent_id = $1 FOR UPDATE", agent_id
        )
        opening = asyncio.create_task(client.ws_connect(f"/ws/agent?token={token}"))
        try:
            # The token's look-up (``agent_by_token``) has taken its snapshot and waits.
            await waits_behind(probe, holder, "%token_sha256 = $1%")
            if how == "reset":
                resp = await client.post(f"/api/agents/{agent_id}/token")
                assert resp.status == 201, await resp.text()
            else:
                resp = await client.delete(f"/api/agents/{agent_id}")
                assert resp.status == 200, await resp.text()
            await _closed_with(witness.ws, 4401)
        finally:
            await tx.rollback()
        ws = await opening
    # The look-up's snapshot predates the revoke, so the socket opened; it must not stay so.
    await _closed_with(ws, 4401)


# -- signing out on a call -----------------------------------------------------------------


@pytest.mark.parametrize("wrap_up_seconds", [0, 300])
async def test_offline_on_a_call_leaves_routing_when_the_call_is_over(
    client: Client, pool: Any, wrap_up_seconds: int
) -> None:
    """The page's sign-out on a call: the agent stays on the call (the caller is on the
    line), and what would make it available afterwards (no wrap-up, or the wrap-up's
    clock) leaves it offline, so no call is offered to its closed panel."""
    await make_queue(client, "general", wrap_up_seconds=wrap_up_seconds)
    agent_id, token = await make_agent(client, "ada")
    panel, _, shown = await take_call(client, token, "pbx-1")
    await panel.send(type="offline", ref="sign-out")
    await panel.until(lambda m: m["type"] == "ack" and m.get("ref") == "sign-out")
    await panel.close()
    assert await agent_state(pool, agent_id) == "on_call"
    await end_call(client, shown["call_id"])
    if wrap_up_seconds:
        assert await agent_state(pool, agent_id) == "wrap_up"
        await wrap_up_clock_ends(pool, agent_id)
    assert await agent_state(pool, agent_id) == "offline"
    # Back at the desk, the agent's own word makes it available as ever.
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")


async def test_a_panel_opened_again_takes_the_sign_out_back(client: Client, pool: Any) -> None:
    """Signed out on a call, then back on the desk before it ends: the agent is
    available after the call, as if it had never signed out."""
    await make_queue(client, "general", wrap_up_seconds=0)
    agent_id, token = await make_agent(client, "ada")
    panel, _, shown = await take_call(client, token, "pbx-1")
    await panel.send(type="offline", ref="sign-out")
    await panel.until(lambda m: m["type"] == "ack" and m.get("ref") == "sign-out")
    await panel.close()
    again = await Panel.open(client, token)
    await again.state("on_call")
    await end_call(client, shown["call_id"])
    await again.state("available")
    assert await agent_state(pool, agent_id) == "available"


async def test_offline_on_a_call_ending_meanwhile_leaves_routing(
    client: Client, pool: asyncpg.Pool[Any]
) -> None:
    """The sign-out's ``offline`` read the agent on its call, and the call's end committed
    before the mark was written: the mark, a statement of its own, then found the agent
    in its wrap-up and marked nothing, and the wrap-up's clock made the signed-out agent
    available. The end is held here uncommitted (its very statement, ``close_call``)
    while the ``offline`` comes in."""
    await make_queue(client, "general", wrap_up_seconds=300)
    agent_id, token = await make_agent(client, "ada")
    panel, _, shown = await take_call(client, token, "pbx-1")
    async with pool.acquire() as holder, pool.acquire() as probe:
        tx = holder.transaction()
        await tx.start()
        try:
            await holder.fetchval(
                "SELECT close_call($1, 'completed', 'test', $2, 300, 'test', '{}')",
                shown["call_id"],
                agent_id,
            )
            await panel.send(type="offline", ref="sign-out")
            # The panel's ``offline`` (``set_offline``) waits for the agent's row.
            await waits_behind(probe, holder, "%offline_after_call%")
        finally:
            await tx.commit()
    await panel.until(lambda m: m["type"] == "ack" and m.get("ref") == "sign-out")
    await panel.close()
    await pool.execute(
        "UPDATE agents SET wrap_up_until = now() - interval '1 second' WHERE id = $1"
        " AND state = 'wrap_up'",
        agent_id,
    )
    await pool.fetch(QUEUE_Q["wrap_ups_done"])
    assert await agent_state(pool, agent_id) == "offline"


async def test_offline_in_a_wrap_up_leaves_no_call_behind(client: Client, pool: Any) -> None:
    """The page's sign-out in a wrap-up (now sent) takes the agent offline: with neither
    the call nor the wrap-up's end still on its row, as a supervisor's ``force_offline``
    leaves it. Else the dashboard showed the offline agent still holding its last call
    and the agents' list a wrap-up ending in the future."""
    await make_queue(client, "general", wrap_up_seconds=300)
    agent_id, token = await make_agent(client, "ada")
    panel, _, shown = await take_call(client, token, "pbx-1")
    await end_call(client, shown["call_id"])
    await panel.state("wrap_up")
    await panel.send(type="offline", ref="sign-out")
    await panel.until(lambda m: m["type"] == "ack" and m.get("ref") == "sign-out")
    row = await pool.fetchrow(
        "SELECT state, call_id, wrap_up_until FROM agents WHERE id = $1", agent_id
    )
    assert dict(row) == {"state": "offline", "call_id": None, "wrap_up_until": None}
    resp = await client.get(f"/api/agents/{agent_id}")
    assert resp.status == 200, await resp.text()
    agent = await resp.json()
    assert (agent["state"], agent["call_id"], agent["wrap_up_until"]) == ("offline", None, None)
