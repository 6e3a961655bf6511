"""A dispatch round ends on the offer that says no pair is left (``offer_next``'s ``more``).

The round used to end with one more ``offer_next`` that found nothing. Now it
stops when the last offer's ``more`` is false; these tests hold that this
never leaves a free agent beside a call it could take: ``more`` is true
whenever another pair exists, and routers racing on one database, each
stopping on ``more`` as ``Router.dispatch`` does, leave no pair behind.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg

from callcenter.db.pool import create_pool
from callcenter.queue.router import offer_next
from tests.integration.test_router import BASE, _add_agents, _add_call


async def _queues(conn: asyncpg.Connection[Any], *names: str) -> None:
    await conn.executemany(
        "INSERT INTO queues (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        [(n,) for n in names],
    )


async def test_more_says_whether_another_pair_is_left(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn:
        await _queues(conn, "general", "other")
        first, second = await _add_agents(conn, 2)
        for n in range(3):
            await _add_call(conn, n, BASE + timedelta(seconds=n), 0.0)
        row = await offer_next(conn)
        assert row is not None and row["more"], "a second agent and two more calls"
        row = await offer_next(conn)
        assert row is not None and not row["more"], "no free agent left"
        assert await offer_next(conn) is None

        # A free agent of another queue does not make a pair.
        await conn.execute("UPDATE waiting_calls SET offered_to = NULL, offer_id = NULL")
        await conn.execute("DELETE FROM call_offers")
        await conn.execute("UPDATE agents SET state = 'available'")
        await conn.execute("UPDATE agents SET queues = '{other}' WHERE id = $1", second)
        row = await offer_next(conn)
        assert row is not None and row["agent_id"] == first and not row["more"]
        assert await offer_next(conn) is None

        # The last call of a queue leaves nothing for a second agent of that queue.
        await conn.execute("DELETE FROM call_offers")
        await conn.execute("DELETE FROM waiting_calls")
        await conn.execute(
            "UPDATE agents SET queues = '{general}', state = 'available', idle_since = now()"
        )
        await _add_call(conn, 10, BASE, 0.0)
        row = await offer_next(conn)
        assert row is not None and not row["more"]
        assert await offer_next(conn) is None


async def test_routers_stopping_on_more_leave_no_pair_behind(db_url: str) -> None:
    """Six routers race, each ending its round as ``Router.dispatch`` does; afterwards
    no agent is free beside a call it could take, and nothing was offered twice."""
    pools = [await create_pool(db_url, min_size=1, max_size=2) for _ in range(6)]
    try:
        for agents_n, calls_n in [(40, 120), (120, 40), (30, 30), (1, 5), (5, 1)]:
            async with pools[0].acquire() as conn:
                await conn.execute("DELETE FROM call_offers")
                await conn.execute("DELETE FROM waiting_calls")
                await conn.execute("DELETE FROM calls")
                await conn.execute("DELETE FROM agent_presence")
                await conn.execute("DELETE FROM agents")
                agents = await _add_agents(conn, agents_n)
                for n in range(calls_n):
                    await _add_call(conn, n, BASE + timedelta(seconds=n), 0.0)

            async def router(p: asyncpg.Pool[Any]) -> list[asyncpg.Record]:
                made = []
                async with p.acquire() as conn:
                    while (row := await offer_next(conn)) is not None:
                        made.append(row)
                        if not row["more"]:
                            break
                return made

            rounds = await asyncio.gather(*(router(p) for p in pools))
            offers = [r for batch in rounds for r in batch]
            assert len(offers) == min(agents_n, calls_n), (agents_n, calls_n)
            assert len({r["call_id"] for r in offers}) == len(offers)
            assert len({r["agent_id"] for r in offers}) == len(offers)
            assert {r["agent_id"] for r in offers} <= set(agents)
            async with pools[0].acquire() as conn:
                assert await offer_next(conn) is None, "a pair was left behind"
    finally:
        for p in pools:
            await p.close()
