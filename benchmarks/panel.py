"""Assist panel benchmark: from accept to the panel, for a caller with a long history.

The issue's target: the assist panel for a customer with 1,000 past contacts
is assembled in under 10 ms p99 from accept to message sent, measured on the
server and at a websocket client; the history is paged, not sent whole.

Setup: a fresh database with the shipped question bank and treatment rules,
one customer with ``--contacts`` past contacts (a third of them with a
learning answer), and 20,000 other customers with 5 contacts each so the
tables are not trivially small. The service runs as its own process.

Measured, ``--calls`` times:
* client: one agent panel over ``/ws/agent``; a call from the customer is
  handed in, the panel accepts the offer, and the time from sending
  ``accept`` to receiving ``panel`` is taken. Then it wraps the call up.
* server: ``PanelBuilder.build`` for the same call, in this process, on one
  pooled connection (the assembly alone, without the socket).
Baseline, same run: a ``ping`` → ``pong`` round trip on the same socket (the
cost of any message through the hub), and ``SELECT 1`` on the same connection.

    .venv/bin/python benchmarks/panel.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime

import aiohttp
import asyncpg
import websockets
from common import AUTH, WORK, fresh_database, load_average, machine, pct, start_service, wait_ready

from callcenter.agent_assist.knowledge.panel import PanelBuilder
from callcenter.agent_assist.knowledge.store import BankCache
from callcenter.db.embedded import start_embedded
from callcenter.db.lifecycle import tune_embedded
from callcenter.db.pool import create_pool

DB = "bench_panel"
PHONE = "+12125550100"


async def seed(url: str, contacts: int) -> None:
    conn = await asyncpg.connect(url)
    await conn.execute(
        """INSERT INTO customers (customer_number, name, lifetime_value, annual_margin,
                                  computed_tier)
           SELECT 'C' || i, 'Customer ' || i, (i % 997) * 10, (i % 97) * 3, 'standard'
             FROM generate_series(1, 20000) AS i"""
    )
    await conn.execute(
        """INSERT INTO interactions (customer_id, started_at, ended_at, agent, outcome, notes)
           SELECT c.id, now() - make_interval(days => k * 30),
                  now() - make_interval(days => k * 30), 'agent' || (k % 7), 'completed',
                  'note ' || k
             FROM customers c, generate_series(1, 5) AS k"""
    )
    vip = await conn.fetchval(
        """INSERT INTO customers (customer_number, name, lifetime_value, annual_margin,
                                  cost_to_serve, computed_tier)
           VALUES ('VIP-1', 'Ada Lovelace', 48000, 2400, 120, 'platinum') RETURNING id"""
    )
    await conn.execute(
        "INSERT INTO customer_phones (phone_e164, customer_id, source) VALUES ($1, $2, 'crm')",
        PHONE,
        vip,
    )
    await conn.execute(
        """INSERT INTO interactions (customer_id, started_at, ended_at, agent, outcome, notes)
           SELECT $1, now() - make_interval(hours => k * 20),
                  now() - make_interval(hours => k * 20) + interval '6 minutes',
                  'agent' || (k % 13), 'completed', 'asked about statement ' || k
             FROM generate_series(1, $2) AS k""",
        vip,
        contacts,
    )
    # A third of the contacts carry the answer to a text question of the bank.
    key = await conn.fetchval(
        "SELECT key FROM questions WHERE kind = 'text' AND active ORDER BY priority LIMIT 1"
    )
    if key is not None:
        await conn.execute(
            """INSERT INTO answers (customer_id, question_key, value, answered_at, interaction_id)
               SELECT customer_id, $2, to_jsonb('answer ' || id), started_at, id
                 FROM interactions WHERE customer_id = $1 AND id % 3 = 0""",
            vip,
            key,
        )
    await conn.execute("VACUUM ANALYZE")
    await conn.close()


async def main(args: argparse.Namespace) -> None:
    server = start_embedded(WORK / "pgdata-panel")
    service = None
    try:
        await tune_embedded(server)  # as `callcenter serve` does
        server_url = server.url()
        url = await fresh_database(server_url, DB)
        # It loads the shipped bank at start. The one bench agent sends its messages
        # back to back, far above the rate a person's panel is held to (20 a second).
        service = start_service(url, args.port, {"CALLCENTER_AGENT_MESSAGES_PER_SECOND": "1000"})
        base = f"http://127.0.0.1:{args.port}"
        await wait_ready(base)
        await seed(url, args.contacts)
        load_at_start = load_average()
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.put(f"{base}/api/queues/general", json={"wrap_up_seconds": 0}) as r:
                assert r.status in (200, 201), await r.text()
            async with http.post(
                f"{base}/api/agents", json={"name": "bench", "queues": ["general"]}
            ) as r:
                token = (await r.json())["token"]
            client, baseline, call_ids, history_items = await measure_client(
                http, base, token, args.calls
            )
        server_side, select1, built = await measure_server(url, call_ids)
        conn = await asyncpg.connect(url)
        version = await conn.fetchval("SHOW server_version")
        await conn.close()
        report(args, client, baseline, server_side, select1, history_items, built,
               version, load_at_start)  # fmt: skip
    finally:
        if service is not None:
            service.terminate()
            service.wait(20)
        server.stop()


async def measure_client(
    http: aiohttp.ClientSession, base: str, token: str, n: int
) -> tuple[list[float], list[float], list[int], int]:
    latencies: list[float] = []
    pings: list[float] = []
    call_ids: list[int] = []
    items = 0
    ws_url = base.replace("http", "ws") + f"/ws/agent?token={token}"
    async with websockets.connect(ws_url, max_size=None) as ws:

        async def until(kind: str, **match: object) -> dict[str, object]:
            while True:
                m = json.loads(await ws.recv())
                if m["type"] == "error":
                    raise RuntimeError(m)
                if m["type"] == kind and all(m.get(k) == v for k, v in match.items()):
                    return m

        await ws.send(json.dumps({"type": "available"}))
        await until("ack", to="available")
        for i in range(n + 20):  # the first 20 warm up
            body = {"call_id": f"panel-{i}", "queue": "general", "ani": PHONE}
            async with http.post(f"{base}/api/calls", json=body) as r:
                assert r.status == 201, await r.text()
            offer = await until("offer")
            t0 = time.perf_counter()
            await ws.send(json.dumps({"type": "accept", "offer_id": offer["offer_id"]}))
            panel = await until("panel")
            elapsed = (time.perf_counter() - t0) * 1000
            history = panel["history"]
            assert isinstance(history, dict)
            items = len(history["items"])
            t1 = time.perf_counter()
            await ws.send(json.dumps({"type": "ping", "ref": i}))
            await until("pong", ref=i)
            ping = (time.perf_counter() - t1) * 1000
            call_id = panel["call_id"]
            assert isinstance(call_id, int)
            await ws.send(json.dumps({"type": "wrap_up", "call_id": call_id, "ref": f"w{i}"}))
            await until("ack", ref=f"w{i}")
            if i >= 20:
                latencies.append(elapsed)
                pings.append(ping)
                call_ids.append(call_id)
    return latencies, pings, call_ids, items


async def measure_server(url: str, call_ids: list[int]) -> tuple[list[float], list[float], int]:
    pool = await create_pool(url, min_size=1, max_size=1)
    builder = PanelBuilder(BankCache(pool))
    times: list[float] = []
    select1: list[float] = []
    built = 0
    async with pool.acquire() as conn:
        for call_id in call_ids[:20]:
            await builder.build(conn, call_id, datetime.now(UTC))
        for call_id in call_ids:
            t0 = time.perf_counter()
            panel = await builder.build(conn, call_id, datetime.now(UTC))
            times.append((time.perf_counter() - t0) * 1000)
            built += panel is not None
            t1 = time.perf_counter()
            await conn.fetchval("SELECT 1")
            select1.append((time.perf_counter() - t1) * 1000)
    await pool.close()
    return times, select1, built


def report(
    args: argparse.Namespace,
    client: list[float],
    ping: list[float],
    server_side: list[float],
    select1: list[float],
    history_items: int,
    built: int,
    version: str,
    load_at_start: str,
) -> None:
    def row(name: str, v: list[float], base: list[float]) -> str:
        return (
            f"| {name} | {pct(v, 50):.2f} | {pct(v, 90):.2f} | {pct(v, 99):.2f} | "
            f"{max(v):.2f} | {pct(v, 99) / pct(base, 99):.1f} |"
        )

    print(f"\n## Assist panel, {time.strftime('%Y-%m-%d')}\n")
    print(f"command: `.venv/bin/python benchmarks/panel.py {' '.join(sys.argv[1:])}`")
    print(f"machine: {machine(version)}; service and client on the same machine")
    print(f"load average at start: {load_at_start}; at end: {load_average()}\n")
    print(
        f"customer with {args.contacts} past contacts (growing by one per call), "
        f"{args.calls} calls measured after 20 of warm-up; each panel carried "
        f"{history_items} history items (one page) and {built} of {len(server_side)} "
        "server builds found the call\n"
    )
    print("| ms | p50 | p90 | p99 | max | p99 ÷ baseline p99 |\n|---|---:|---:|---:|---:|---:|")
    print(row("client: `accept` sent → `panel` received", client, ping))
    print(row("baseline: `ping` → `pong` on the same socket", ping, ping))
    print(row("server: `PanelBuilder.build` alone", server_side, select1))
    print(row("baseline: `SELECT 1` on the same connection", select1, select1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--port", type=int, default=18182)
    try:
        import uvloop

        uvloop.run(main(parser.parse_args()))
    except ImportError:
        asyncio.run(main(parser.parse_args()))
