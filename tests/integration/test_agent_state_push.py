"""An agent's change is notified by the database with the agent's snapshot (migration 0024).

What the panel is pushed must be what a read gives, sent once per transaction
at commit (so it sees every part of the change), only for changes the panel
shows, and never longer than a notification may be.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from callcenter.events import CHANNEL, Event
from callcenter.queue import agents
from tests.integration.queue_helpers import Panel, enqueue, make_agent, make_queue

#: Seconds a notification may take to arrive before the test says it did not.
ARRIVAL_SECONDS = 10.0


class Listener:
    """The service's channel, heard on a connection of the test's own."""

    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self.conn = conn
        self.heard: asyncio.Queue[str] = asyncio.Queue()

    def _on(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        self.heard.put_nowait(str(payload))

    async def next_of_agent(self, agent_id: int) -> Event:
        """The next notification about ``agent_id`` (others are skipped)."""
        while True:
            payload = await asyncio.wait_for(self.heard.get(), ARRIVAL_SECONDS)
            event = Event.decode(payload)
            if event.kind == "agent" and event.key == str(agent_id):
                return event

    def drain(self) -> list[Event]:
        events = []
        while not self.heard.empty():
            events.append(Event.decode(self.heard.get_nowait()))
        return events


@pytest.fixture
async def listener(db_url: str) -> AsyncIterator[Listener]:
    conn = await asyncpg.connect(db_url)
    heard = Listener(conn)
    await conn.add_listener(CHANNEL, heard._on)
    try:
        yield heard
    finally:
        await conn.close()


async def _sync(pool: asyncpg.Pool[Any], listener: Listener) -> None:
    """Wait until every notification committed so far has arrived (a marker of ours)."""
    await pool.execute("SELECT pg_notify($1, 'test:marker')", CHANNEL)
    while True:
        payload = await asyncio.wait_for(listener.heard.get(), ARRIVAL_SECONDS)
        if payload == "test:marker":
            return


async def test_a_change_of_the_agent_sends_what_a_read_gives(
    client: TestClient[Any, Any], pool: asyncpg.Pool[Any], listener: Listener
) -> None:
    await make_queue(client, "general")
    agent_id, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    try:
        await panel.send(type="available")
        sent = await listener.next_of_agent(agent_id)
        assert sent.data is not None
        pushed = agents.snapshot_of(json.loads(sent.data))
        assert pushed.agent.state.value == "available" and pushed.offer is None
        async with pool.acquire() as conn:
            read = await agents.snapshot(conn, agent_id)
        assert read is not None
        assert pushed.version == read.version > 0
        assert pushed.agent.model_dump(exclude={"last_seen_at"}) == read.agent.model_dump(
            exclude={"last_seen_at"}
        )
        # An offer: the waiting call's row and the agent's are written by different
        # parts of one statement, and the snapshot sent at commit has both.
        await enqueue(client, "push-1")
        offered = await listener.next_of_agent(agent_id)
        while offered.data is None or json.loads(offered.data)["state"] != "offered":
            offered = await listener.next_of_agent(agent_id)
        snap = agents.snapshot_of(json.loads(offered.data))
        assert snap.offer is not None and snap.version > pushed.version
        assert snap.offer.call_id == (
            await pool.fetchval("SELECT id FROM calls WHERE external_id = 'push-1'")
        )
    finally:
        await panel.close()


async def test_one_notification_per_transaction_with_its_final_state(
    client: TestClient[Any, Any], pool: asyncpg.Pool[Any], listener: Listener
) -> None:
    agent_id, _ = await make_agent(client, "bea")
    # Two changes in one transaction: one notification, the state at commit.
    assert await _changes_between(pool, listener, agent_id, "bea") == ["offline"]


async def _changes_between(
    pool: asyncpg.Pool[Any], listener: Listener, agent_id: int, name: str
) -> list[str]:
    """The states notified for ``agent_id`` by a transaction of two changes, in order."""
    await _sync(pool, listener)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE agents SET state = 'available', state_since = now() WHERE id = $1", agent_id
        )
        await conn.execute(
            "UPDATE agents SET state = 'offline', state_since = now() WHERE id = $1", agent_id
        )
    await pool.execute("SELECT pg_notify($1, 'test:marker')", CHANNEL)
    states = []
    while True:
        payload = await asyncio.wait_for(listener.heard.get(), ARRIVAL_SECONDS)
        if payload == "test:marker":
            return states
        event = Event.decode(payload)
        if event.kind == "agent" and event.key == str(agent_id):
            assert event.data is not None
            data = json.loads(event.data)
            assert data["name"] == name
            states.append(data["state"])


async def test_changes_the_panel_does_not_show_send_nothing(
    client: TestClient[Any, Any], pool: asyncpg.Pool[Any], listener: Listener
) -> None:
    agent_id, _ = await make_agent(client, "cy")
    version = await pool.fetchval("SELECT state_version FROM agents WHERE id = $1", agent_id)
    await _sync(pool, listener)
    await pool.execute(
        "UPDATE agents SET token_expires_at = now() + interval '1 day' WHERE id = $1", agent_id
    )
    await pool.execute("UPDATE agents SET state = state WHERE id = $1", agent_id)
    await _sync(pool, listener)
    assert listener.drain() == []
    assert (
        await pool.fetchval("SELECT state_version FROM agents WHERE id = $1", agent_id) == version
    )


async def test_a_snapshot_too_long_for_a_notification_goes_as_a_bare_event(
    client: TestClient[Any, Any], pool: asyncpg.Pool[Any], listener: Listener
) -> None:
    agent_id, _ = await make_agent(client, "dee")
    long_queues = [f"queue-{i:04d}-{'x' * 40}" for i in range(200)]
    await _sync(pool, listener)
    await pool.execute("UPDATE agents SET queues = $2 WHERE id = $1", agent_id, long_queues)
    event = await listener.next_of_agent(agent_id)
    assert event.data is None and event.encode() == f"agent:{agent_id}"
    # And a read still gives it all.
    async with pool.acquire() as conn:
        read = await agents.snapshot(conn, agent_id)
    assert read is not None and read.agent.queues == long_queues
