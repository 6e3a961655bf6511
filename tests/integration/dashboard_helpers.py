"""Helpers for the dashboard tests: a signed-in supervisor, and calls with known figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import ADMIN


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def person(client: TestClient[Any, Any], name: str, role: str = "supervisor") -> str:
    """A person of ``role`` signed in: their session token."""
    made = await client.post("/api/people", json={"name": name, "role": role}, headers=ADMIN)
    assert made.status == 201, await made.text()
    password = (await made.json())["password"]
    session = await client.post("/api/session", json={"name": name, "password": password})
    assert session.status == 201, await session.text()
    token: str = (await session.json())["token"]
    return token


async def customer(conn: asyncpg.Connection[Any], number: str, tier: str, net: float) -> int:
    """A customer of ``tier`` whose net value (as the tiers use it) is ``net``."""
    customer_id: int = await conn.fetchval(
        "INSERT INTO customers (customer_number, name, lifetime_value, cost_to_serve,"
        " computed_tier) VALUES ($1, $2, $3, 0, $4) RETURNING id",
        number,
        f"Customer {number}",
        net,
        tier,
    )
    return customer_id


async def call(
    conn: asyncpg.Connection[Any],
    name: str,
    *,
    queue: str = "general",
    tier: str,
    customer_id: int | None,
    enqueued: float,
    connected: float | None = None,
    ended: float | None = None,
    state: str,
    agent_id: int | None = None,
    credit: float = 0.0,
    now: datetime,
) -> int:
    """A call with times given as seconds before ``now``; a waiting one is queued too."""

    def at(ago: float | None) -> datetime | None:
        return None if ago is None else now - timedelta(seconds=ago)

    enq = at(enqueued)
    assert enq is not None
    key = enq - timedelta(seconds=credit)
    call_id: int = await conn.fetchval(
        "INSERT INTO calls (external_id, queue, tier, customer_id, credit_seconds, service_key,"
        " state, agent_id, enqueued_at, connected_at, ended_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        name,
        queue,
        tier,
        customer_id,
        credit,
        key,
        state,
        agent_id,
        enq,
        at(connected),
        at(ended),
    )
    if state == "waiting":
        await conn.execute(
            "INSERT INTO waiting_calls (call_id, queue, service_key, enqueued_at)"
            " VALUES ($1, $2, $3, $4)",
            call_id,
            queue,
            key,
            enq,
        )
    return call_id


def utcnow() -> datetime:
    return datetime.now(UTC)
