"""The gateway is the one door: one connection per event, and the peer in its own columns.

Before, one incoming call took three pooled connections (two only for
tombstone checks) and the bridger, the releaser and the ARI adapter parsed
the peer back out of ``external_id``. These tests hold the new shape: each
event of the gateway acquires exactly one connection, the peer and its call
id are stored by the gateway, and migration 0010 fills them in for the calls
stored before it by the rule ``split_external_id`` states.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import pytest

from callcenter import app_keys
from callcenter.db.migrate import known_migrations, migrate
from callcenter.telephony_adapters.base import Digits, Hangup, Incoming, split_external_id
from callcenter.telephony_adapters.gateway import TelephonyGateway
from tests.conftest import AppFactory, with_database
from tests.integration.queue_helpers import FAST, make_customer
from tests.integration.telephony_helpers import (
    accept_next_offer,
    available_panel,
    make_agent_with_endpoint,
)


class _CountingPool:
    """The gateway's pool, counting acquisitions (everything else passes through)."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self.pool = pool
        self.acquired = 0

    def acquire(self) -> AbstractAsyncContextManager[Any]:
        self.acquired += 1
        return self.pool.acquire()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


def _counting(gateway: TelephonyGateway, monkeypatch: pytest.MonkeyPatch) -> _CountingPool:
    """Count what the gateway and the desk it calls acquire, on the one shared pool."""
    counting = _CountingPool(gateway.pool)
    monkeypatch.setattr(gateway, "pool", counting)
    monkeypatch.setattr(gateway.desk, "pool", counting)
    return counting


async def test_each_event_takes_one_connection(
    app_factory: AppFactory, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await app_factory(**FAST)
    await make_customer(client, "C-1", 30_000, "+12125550100")
    gateway = client.app[app_keys.GATEWAY]
    counting = _counting(gateway, monkeypatch)

    created = await gateway.handle("generic", Incoming("one", ani="+12125550199"))
    assert created.created and created.waiting and counting.acquired == 1
    repeat = await gateway.handle("generic", Incoming("one", ani="+12125550199"))
    assert not repeat.created and counting.acquired == 2
    digits = await gateway.handle("generic", Digits("one", "C-1"))
    assert digits.digits == "identified" and counting.acquired == 3
    gone = await gateway.handle("generic", Hangup("one", cause="caller"))
    assert gone.call is not None and gone.call.state.value == "abandoned"
    assert counting.acquired == 4
    # Out of order: the hang-up leaves a tombstone, the late incoming records it gone.
    tomb = await gateway.handle("generic", Hangup("two"))
    assert tomb.call is None and counting.acquired == 5
    late = await gateway.handle("generic", Incoming("two", ani="+12125550100"))
    assert late.call is not None and late.call.state.value == "abandoned"
    assert counting.acquired == 6
    rows = await pool.fetch("SELECT external_id, peer, peer_call_id FROM calls ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("generic:one", "generic", "one"),
        ("generic:two", "generic", "two"),
    ]


async def test_a_connected_call_is_answered_with_its_agents_endpoint(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the generic reply dials comes in the gateway's answer, on the event's connection."""
    client = await app_factory(**FAST)
    gateway = client.app[app_keys.GATEWAY]
    agent_id, token = await make_agent_with_endpoint(client, "ada", "sip:ada@pbx.example")
    panel = await available_panel(client, token)
    first = await gateway.handle("twilio", Incoming("CA1", ani="+12125550101"))
    assert first.call is not None and first.agent is None
    assert await accept_next_offer(panel) == first.call.id
    counting = _counting(gateway, monkeypatch)
    again = await gateway.handle("twilio", Incoming("CA1", ani="+12125550101"))
    assert counting.acquired == 1
    assert again.agent is not None
    assert (again.agent.agent_id, again.agent.name, again.agent.endpoint) == (
        agent_id,
        "ada",
        "sip:ada@pbx.example",
    )
    await panel.close()


@pytest.fixture
async def empty_url(server_url: str) -> AsyncIterator[str]:
    name = f"p_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield with_database(server_url, name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def test_migration_0010_fills_the_peer_of_existing_calls(empty_url: str) -> None:
    ids = [
        "generic:pbx-42",
        "twilio:CA1",
        "ari:1754402591.17",
        "generic:a:b",
        "pbx-42",
        "other:x",
        "twilio:",
        ":y",
    ]
    before = [m for m in known_migrations() if m.version < 10]
    conn = await asyncpg.connect(empty_url)
    try:
        async with conn.transaction():
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for m in before:
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    m.version,
                    m.name,
                )
            await conn.execute(
                "INSERT INTO calls (external_id, queue, service_key)"
                " SELECT e, 'general', now() FROM unnest($1::text[]) AS e",
                ids,
            )
        applied = [m.version for m in await migrate(conn)]
        assert applied[0] == 10
        rows = await conn.fetch("SELECT external_id, peer, peer_call_id FROM calls ORDER BY id")
        got = {r["external_id"]: (r["peer"], r["peer_call_id"]) for r in rows}
        assert got == {
            e: split_external_id(e) or (None, None) for e in ids
        }  # the same rule, in SQL and in Python
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO calls (external_id, queue, service_key, peer, peer_call_id)"
                " VALUES ('generic:x', 'general', now(), 'twilio', 'x')"
            )
    finally:
        await conn.close()
