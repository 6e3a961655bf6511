"""The service key has one home: the SQL function, and ``policy.service_key`` is its twin.

Production orders the queue with ``queue_service_key`` (migration 0009); the
policy's pure code (the simulator, the overtaking proof's tests, a newcomer
reading ``policy.py``) uses ``policy.service_key``. If the two ever disagree,
what the tests prove is not what the queue does, so they are compared here
on many random inputs, to the microsecond, on the real server; and the
statements that store a key are checked to store exactly the twin's value.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from callcenter.queue import policy
from callcenter.queue.sql import Q
from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, enqueue, make_customer, make_queue

#: Credits the policies hand out, and the queue offsets' bounds (0002's CHECK).
_CREDITS = [0.0, 20.0, 60.0, 120.0, policy.STRICT_RANK_CREDIT, 3 * policy.STRICT_RANK_CREDIT]
_OFFSETS = [-3600.0, -0.5, 0.0, 0.000_000_5, 300.0, 3600.0]


def _inputs(rng: random.Random, n: int) -> list[tuple[datetime, float, float]]:
    """Arrivals over two centuries to the microsecond; credits and offsets of every kind.

    Besides plain uniform values: the policies' own credits, the offsets'
    bounds, values on a half microsecond (where rounding could differ),
    fractions with many digits, and sums whose float addition is inexact.
    """
    start = datetime(1990, 1, 1, tzinfo=UTC)
    out = []
    for _ in range(n):
        arrival = start + timedelta(microseconds=rng.randrange(200 * 365 * 86_400 * 10**6))
        credit = rng.choice(
            [
                rng.choice(_CREDITS),
                rng.uniform(0, 120),
                rng.uniform(0, 4 * policy.STRICT_RANK_CREDIT),
                rng.randrange(10**9) / 2_000_000,  # on a half microsecond, often
                rng.randrange(1000) + 0.1 + 0.2,
            ]
        )
        offset = rng.choice([rng.choice(_OFFSETS), rng.uniform(-3600, 3600), 0.0])
        out.append((arrival, credit, offset))
    return out


async def test_the_sql_function_and_its_python_twin_agree(pool: asyncpg.Pool[Any]) -> None:
    inputs = _inputs(random.Random(20261204), 20_000)
    rows = await pool.fetch(
        """SELECT queue_service_key(a, c, o) AS key
             FROM unnest($1::timestamptz[], $2::float8[], $3::float8[]) WITH ORDINALITY
                  AS t (a, c, o, i)
            ORDER BY i""",
        [a for a, _, _ in inputs],
        [c for _, c, _ in inputs],
        [o for _, _, o in inputs],
    )
    assert len(rows) == len(inputs)
    wrong = [
        (a, c, o, r["key"], policy.service_key(a, c, o))
        for (a, c, o), r in zip(inputs, rows, strict=True)
        if r["key"] != policy.service_key(a, c, o)
    ]
    assert wrong == []


async def test_the_statements_store_the_twins_key(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """enqueue and set_key (an identification, a bump) store exactly what the twin computes."""
    client = await app_factory(**FAST)
    await make_queue(client, "general", offset_seconds=37.25)
    await make_customer(client, "P-1", 50_000, "+12125550100")
    gold = (await enqueue(client, "pbx-1", ani="+12125550100"))["call"]
    anonymous = (await enqueue(client, "pbx-2"))["call"]
    resp = await client.post(
        f"/api/calls/{anonymous['id']}/priority", json={"credit_seconds": 12.345_678_9}
    )
    assert resp.status == 200, await resp.text()
    for call_id in (gold["id"], anonymous["id"]):
        row = await pool.fetchrow(
            "SELECT c.enqueued_at, c.credit_seconds, c.service_key, w.service_key AS waiting_key"
            "  FROM calls c JOIN waiting_calls w ON w.call_id = c.id WHERE c.id = $1",
            call_id,
        )
        assert row is not None
        expected = policy.service_key(row["enqueued_at"], row["credit_seconds"], 37.25)
        assert row["service_key"] == expected == row["waiting_key"]
    assert gold["credit_seconds"] > 0


def test_no_statement_computes_a_key_by_itself() -> None:
    """Every key in the queue's SQL comes from the function, none from inline arithmetic."""
    computing = [name for name, sql in Q.items() if "queue_service_key(" in sql]
    assert sorted(computing) == ["enqueue", "record_gone_call", "set_key"]
    for name, sql in Q.items():
        for line in sql.splitlines():
            if "service_key" in line and "queue_service_key(" not in line:
                assert "make_interval" not in line and "interval" not in line, (name, line)
