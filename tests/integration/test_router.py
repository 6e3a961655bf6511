"""The router on real SQL: no double claims, the starvation bound, two instances, bus reconnects."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from callcenter import app_keys
from callcenter.app import create_app
from callcenter.config import Settings
from callcenter.db.pool import create_pool
from callcenter.queue.calls import call_of
from callcenter.queue.policy import DEFAULT_CREDITS, serve_order, value_policy
from callcenter.queue.router import accept_offer, offer_next
from tests.conftest import ADMIN, AppFactory
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    eventually,
    make_agent,
    make_queue,
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)


async def _add_agents(conn: asyncpg.Connection[Any], n: int) -> list[int]:
    rows = await conn.fetch(
        """WITH a AS (
               INSERT INTO agents (name, token_sha256, queues, state, idle_since)
               SELECT 'a' || i, decode(md5(i::text), 'hex'), '{general}', 'available',
                      now() - make_interval(secs => i)
                 FROM generate_series(1, $1) AS i
               RETURNING id)
           INSERT INTO agent_presence (agent_id, last_seen_at)
           SELECT id, now() FROM a RETURNING agent_id AS id""",
        n,
    )
    return [r["id"] for r in rows]


async def _add_call(conn: asyncpg.Connection[Any], n: int, arrival: datetime, credit: float) -> int:
    call_id: int = await conn.fetchval(
        """WITH c AS (
               INSERT INTO calls (external_id, queue, credit_seconds, service_key, enqueued_at)
               VALUES ('x' || $1::int, 'general', $3,
                       $2::timestamptz - make_interval(secs => $3), $2)
               RETURNING id, service_key, enqueued_at)
           INSERT INTO waiting_calls (call_id, queue, service_key, enqueued_at)
           SELECT id, 'general', service_key, enqueued_at FROM c RETURNING call_id""",
        n,
        arrival,
        credit,
    )
    return call_id


async def test_concurrent_routers_never_offer_a_call_or_agent_twice(db_url: str) -> None:
    pools = [await create_pool(db_url, min_size=1, max_size=2) for _ in range(6)]
    try:
        async with pools[0].acquire() as conn:
            agents = await _add_agents(conn, 40)
            for n in range(120):
                await _add_call(conn, n, BASE + timedelta(seconds=n), 0.0)

        async def router(p: asyncpg.Pool[Any]) -> list[asyncpg.Record]:
            made = []
            async with p.acquire() as conn:
                while (row := await offer_next(conn)) is not None:
                    made.append(row)
            return made

        offers = [r for batch in await asyncio.gather(*(router(p) for p in pools)) for r in batch]
        assert len(offers) == len(agents)
        assert len({r["call_id"] for r in offers}) == len(offers)
        assert {r["agent_id"] for r in offers} == set(agents)
        # The head of the queue went out: the 40 oldest calls, nothing skipped for good.
        async with pools[0].acquire() as conn:
            offered = await conn.fetch(
                "SELECT call_id FROM waiting_calls WHERE offered_to IS NOT NULL ORDER BY call_id"
            )
            first_ids = await conn.fetch("SELECT id FROM calls ORDER BY id LIMIT 40")
        assert [r["call_id"] for r in offered] == [r["id"] for r in first_ids]
    finally:
        for p in pools:
            await p.close()


async def test_sql_serves_in_policy_order_and_the_starvation_bound_holds(
    pool: asyncpg.Pool[Any],
) -> None:
    """Seeded random arrivals of every tier, served one by one by the real claim."""
    policy = value_policy()
    tiers = list(DEFAULT_CREDITS)
    async with pool.acquire() as conn:
        (agent_id,) = await _add_agents(conn, 1)
        for seed in range(12):
            rnd = random.Random(seed)
            await conn.execute("DELETE FROM call_offers")
            await conn.execute("DELETE FROM waiting_calls")
            await conn.execute("DELETE FROM calls")
            offsets = sorted(rnd.uniform(0, 900) for _ in range(40))
            calls = []
            for n, offset in enumerate(offsets):
                arrival = BASE + timedelta(seconds=offset)
                credit = policy.credits[rnd.choice(tiers)]
                call_id = await _add_call(conn, seed * 1000 + n, arrival, credit)
                calls.append((arrival, credit, call_id))
            served = []
            while (row := await offer_next(conn)) is not None:
                served.append(row["call_id"])
                taken = await accept_offer(conn, row["offer_id"], agent_id)
                assert taken is not None
                await conn.execute(
                    "UPDATE agents SET state = 'available', idle_since = now() WHERE id = $1",
                    agent_id,
                )
            assert served == serve_order(calls)
            arrival_of = {cid: arrival for arrival, _, cid in calls}
            for i, earlier_served in enumerate(served):
                for later_served in served[i + 1 :]:
                    overtaker, overtaken = arrival_of[earlier_served], arrival_of[later_served]
                    if overtaker > overtaken:
                        assert (overtaker - overtaken).total_seconds() < policy.overtaking_bound


async def test_two_instances_share_one_queue(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    settings: Settings,
    db_url: str,
    pool: asyncpg.Pool[Any],
) -> None:
    """Agents on either instance, calls into either: each call answered once, none lost."""
    fast = settings.model_copy(update=FAST)
    second_pool = await create_pool(db_url, min_size=1, max_size=8)
    try:
        one = await aiohttp_client(create_app(fast, pool=pool), headers=ADMIN)
        two = await aiohttp_client(create_app(fast, pool=second_pool), headers=ADMIN)
        await make_queue(one, "general", wrap_up_seconds=0)
        panels = []
        for i in range(6):
            instance = one if i % 2 == 0 else two
            _, token = await make_agent(instance, f"agent{i}")
            panels.append(await Panel.open(instance, token))
        answered: list[int] = []
        total = 30

        async def work(panel: Panel) -> None:
            await panel.send(type="available")
            while len(answered) < total:
                try:
                    offer = await panel.until(lambda m: m["type"] == "offer", timeout=0.5)
                except AssertionError:
                    continue
                await panel.send(type="accept", offer_id=offer["offer_id"])
                ack = await panel.until(lambda m: m["type"] in ("ack", "error"))
                if ack["type"] == "error":
                    continue
                answered.append(ack["call_id"])
                await panel.send(type="end", call_id=ack["call_id"], outcome="completed")
                await panel.until(lambda m: m["type"] == "ack" and m["to"] == "end")
                await panel.send(type="available")

        workers = [asyncio.create_task(work(p)) for p in panels]
        for n in range(total):
            await enqueue(one if n % 2 else two, f"two-{n}", ani=f"+1212555{n:04d}")
        await asyncio.wait_for(asyncio.gather(*workers), timeout=60)

        assert len(answered) == total
        assert len(set(answered)) == total
        states = await pool.fetch("SELECT state, count(*) FROM calls GROUP BY state")
        assert {r["state"]: r["count"] for r in states} == {"completed": total}
        accepted = await pool.fetch(
            "SELECT call_id, count(*) FROM call_offers WHERE result = 'accepted' GROUP BY call_id"
        )
        assert len(accepted) == total
        assert all(r["count"] == 1 for r in accepted)
        # Offers of one call never overlap in time.
        overlapping = await pool.fetchval(
            """SELECT count(*) FROM call_offers a JOIN call_offers b
                 ON a.call_id = b.call_id AND a.id < b.id
                WHERE b.offered_at < coalesce(a.ended_at, 'infinity')"""
        )
        assert overlapping == 0
        assert await pool.fetchval("SELECT count(*) FROM waiting_calls") == 0
        for p in panels:
            await p.close()
    finally:
        await second_pool.close()


async def test_event_bus_reconnects_and_routing_goes_on(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST)
    bus = client.app[app_keys.BUS]
    _, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    killed = await pool.fetchval(
        """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
            WHERE datname = current_database() AND query LIKE 'LISTEN%'"""
    )
    assert killed >= 1

    async def reconnected() -> bool:
        return bus.reconnects >= 1 and bus.connected.is_set()

    await eventually(reconnected, timeout=10)
    call_id = (await enqueue(client, "after-reconnect"))["call"]["id"]
    offer = await panel.until(lambda m: m["type"] == "offer", timeout=5)
    assert offer["call_id"] == call_id
    await panel.close()


async def test_offers_commit_without_waiting_for_the_disk_calls_with_it(
    app_factory: AppFactory,
) -> None:
    """The router's soft state (offers, clocks, presence) and the calls' own
    writes go through different pools: only the first may skip the disk wait."""
    client = await app_factory(**FAST)
    router = client.app[app_keys.ROUTER]
    async with router.soft_pool.acquire() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "off"
    async with router.desk.pool.acquire() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"


@dataclass
class _Bridger:
    """This instance's bridger as the accept sees it (``calls.Bridges``), commanding
    the generic PBX only."""

    instance: str = "here"
    lease_seconds: float = 60.0

    def peers(self) -> list[str]:
        return ["generic"]

    def take(self, recorded: asyncpg.Record) -> None:
        raise AssertionError("the router hands the claim over, not accept_offer")


async def test_the_accept_claims_the_bridge_only_of_a_peer_here_and_with_no_live_claim(
    pool: asyncpg.Pool[Any],
) -> None:
    async with pool.acquire() as conn:
        (agent_id,) = await _add_agents(conn, 1)
        await conn.execute("UPDATE agents SET endpoint = 'sip:a1@pbx' WHERE id = $1", agent_id)

        async def accepted(n: int, peer: str) -> asyncpg.Record:
            call_id = await _add_call(conn, n, BASE, 0.0)
            await conn.execute(
                "UPDATE calls SET external_id = $2 || ':' || $3, peer = $2, peer_call_id = $3"
                " WHERE id = $1",
                call_id,
                peer,
                f"p{n}",
            )
            if n == 3:  # a live claim left by a connect that failed: it is still there
                await conn.execute(
                    "INSERT INTO call_bridges (call_id, agent_id, claimed_by, lease_until)"
                    " VALUES ($1, $2, 'there', now() + interval '1 minute')",
                    call_id,
                    agent_id,
                )
            offer = await offer_next(conn)
            assert offer is not None and offer["call_id"] == call_id
            row = await accept_offer(conn, offer["offer_id"], agent_id, _Bridger())
            assert row is not None and row["call_id"] == call_id
            await conn.execute(
                "UPDATE agents SET state = 'available', idle_since = now(), call_id = NULL"
                " WHERE id = $1",
                agent_id,
            )
            return row

        here = await accepted(1, "generic")
        assert here["bridge_id"] is not None and here["notified"] == 0
        claim = await conn.fetchrow("SELECT * FROM call_bridges WHERE id = $1", here["bridge_id"])
        assert (claim["call_id"], claim["agent_id"], claim["claimed_by"], claim["state"]) == (
            here["call_id"],
            agent_id,
            "here",
            "claimed",
        )
        # All the connect needs, as claim_bridge answers it: the call as the accept left it.
        assert (here["peer"], here["peer_call_id"], here["bridge_agent_id"]) == (
            "generic",
            "p1",
            agent_id,
        )
        assert (here["agent_name"], here["agent_endpoint"]) == ("a1", "sip:a1@pbx")
        record = call_of(here)
        assert record.state == "connected" and record.agent_id == agent_id
        assert record.connected_at is not None and record.offered_to is None

        elsewhere = await accepted(2, "twilio")
        assert elsewhere["bridge_id"] is None and elsewhere["notified"] == 1
        stale = await accepted(3, "generic")
        assert stale["bridge_id"] is None and stale["notified"] == 1
        claims = await conn.fetch(
            "SELECT claimed_by FROM call_bridges WHERE call_id = ANY ($1::bigint[])",
            [elsewhere["call_id"], stale["call_id"]],
        )
        assert [c["claimed_by"] for c in claims] == ["there"]
