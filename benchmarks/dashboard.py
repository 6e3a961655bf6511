"""Dashboard benchmark: 50 open dashboards while the router works, and the stats' cost.

The service runs as its own process (``callcenter serve``) on the embedded
PostgreSQL; this process plays the telephony side (an open-loop stream of
``POST /api/calls`` at ``--rate`` calls/s), ``--agents`` panels that accept
every offer and end the call at once (as ``routing.py``'s), and, in the
second phase, ``--dashboards`` supervisors' sockets on ``/ws/dashboard``.

Measured, in the same run:

1. **Routing without dashboards** (the baseline): enqueue→offer p50/p99.
2. **Routing with the dashboards open**: the same figures, and their ratio to
   the baseline (the issue's target: p99 no more than 10 % worse).
3. **Dashboard lag**: once a second a probe call is enqueued in a queue no
   agent serves; the lag is the time from the enqueue's answer (the change is
   committed) to each dashboard's first message showing that queue's waiting
   count reach it; p50/p99 over every (probe, dashboard) pair.
4. **Stats cost as ``calls`` grows**: in this process, ``DashboardStats.read``
   (the one reading every update does) on a database holding ``--history``
   sizes of past calls (days before today), median of 50 steady-state readings
   after the first; flat means the history is never read.

    .venv/bin/python benchmarks/dashboard.py --rate 100 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from typing import Any

import aiohttp
import asyncpg
import websockets
from common import (
    WORK,
    fresh_database,
    load_average,
    machine,
    pct,
    postmaster_pid,
    process_cpu_seconds,
    start_service,
    tree_cpu_seconds,
    wait_ready,
)
from routing import Agents

from callcenter.config import Settings
from callcenter.customers.store import CustomerRules
from callcenter.customers.value import ordered_tiers
from callcenter.dashboard.stats import DashboardStats
from callcenter.db.embedded import start_embedded
from callcenter.db.lifecycle import tune_embedded
from callcenter.db.pool import create_pool
from callcenter.events import EventBus
from callcenter.queue.calls import CallDesk
from callcenter.queue.directory import QueueDirectory

DB = "bench_dashboard"
PGDATA = WORK / "pgdata-dashboard"
TOKEN = "bench-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


async def load(base: str, rate: float, duration: float) -> dict[int, float]:
    """Open-loop enqueues at ``rate`` into ``general``; send time by call id."""
    sent_at: dict[int, float] = {}
    async with aiohttp.ClientSession(
        headers=ADMIN, connector=aiohttp.TCPConnector(limit=64)
    ) as http:

        async def one(n: int) -> None:
            t0 = time.perf_counter()
            body = {"call_id": f"bench-{time.time_ns()}-{n}", "queue": "general"}
            async with http.post(f"{base}/api/calls", json=body) as resp:
                if resp.status == 201:
                    sent_at[(await resp.json())["call"]["id"]] = t0

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) - start < duration:
            while n < int((now - start) * rate):
                task = asyncio.create_task(one(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
    return sent_at


class Dashboard:
    """One supervisor's socket: records when the probe queue's waiting count rose."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}  # probe count -> first time shown
        self.messages = 0
        self.gaps = 0

    async def run(self, url: str, ready: asyncio.Event) -> None:
        async with websockets.connect(url, max_size=None) as ws:
            seq = 0
            async for raw in ws:
                now = time.time()
                m = json.loads(raw)
                self.messages += 1
                if m["seq"] != seq + 1:
                    self.gaps += 1
                seq = m["seq"]
                stats = (
                    m.get("board", {}).get("stats") if m["type"] == "snapshot" else m.get("stats")
                )
                if m["type"] == "snapshot":
                    ready.set()
                if stats:
                    for q in stats["queues"]:
                        if q["name"] == "probe":
                            self.seen.setdefault(q["waiting"], now)


def dashboards_process(url: str, n: int, seconds: float, out: Any, ready: Any) -> None:
    """``n`` dashboards in their own process (so parsing their messages does not slow the
    agents' clock in this one); after ``seconds`` puts (seen, messages, gaps) on ``out``."""

    async def run() -> None:
        boards = [Dashboard() for _ in range(n)]
        events = [asyncio.Event() for _ in boards]
        tasks = [asyncio.create_task(b.run(url, e)) for b, e in zip(boards, events, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)
        ready.set()
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.put(([b.seen for b in boards], [b.messages for b in boards], [b.gaps for b in boards]))

    asyncio.run(run())


async def phase(
    base: str, rate: float, duration: float, agents: Agents, probe: bool
) -> tuple[list[float], dict[int, float]]:
    """Load for ``duration``; returns enqueue→offer latencies (ms) and probe send times."""
    probes: dict[int, float] = {}

    async def probing() -> None:
        async with aiohttp.ClientSession(headers=ADMIN) as http:
            k = 0
            while True:
                await asyncio.sleep(1.0)
                body = {"call_id": f"probe-{time.time_ns()}", "queue": "probe"}
                async with http.post(f"{base}/api/calls", json=body) as resp:
                    assert resp.status == 201, await resp.text()
                    k += 1
                    probes[k] = time.time()

    prober = asyncio.create_task(probing()) if probe else None
    sent = await load(base, rate, duration)
    if prober is not None:
        prober.cancel()
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and not set(sent) <= set(agents.offered_at):
        await asyncio.sleep(0.1)
    lat = [(agents.offered_at[c] - t0) * 1000 for c, t0 in sent.items() if c in agents.offered_at]
    return lat, probes


async def stats_cost(url: str, sizes: list[int]) -> list[tuple[int, float, float, float]]:
    """(history rows, median ms, p90 ms) of a steady-state ``DashboardStats.read``, and
    the median ms of deriving the last hour's chart from its buckets."""
    settings = Settings(database_url=url)  # type: ignore[arg-type]
    rules = CustomerRules.from_settings(settings)
    pool = await create_pool(url, min_size=1, max_size=2)
    out = []
    try:
        have = 0
        for size in sizes:
            conn = await asyncpg.connect(url)  # no command timeout: a million rows take a while
            try:
                await conn.execute(
                    """INSERT INTO calls (external_id, queue, tier, service_key, state,
                                          enqueued_at, connected_at, ended_at)
                       SELECT 'hist-' || i, 'general', 'standard', t, 'completed', t,
                              t + interval '20 seconds', t + interval '200 seconds'
                         FROM generate_series($1::int + 1, $2::int) AS i,
                              LATERAL (SELECT now() - interval '2 days'
                                              - make_interval(secs => i % 2000000) AS t) x""",
                    have,
                    size,
                )
                await conn.execute("VACUUM ANALYZE calls")
            finally:
                await conn.close()
            have = size
            desk = CallDesk(
                pool, EventBus(url), QueueDirectory(ordered_tiers(rules.thresholds)), rules
            )
            stats = DashboardStats(desk, settings.stats_window_seconds)
            times = []
            charts = []
            async with pool.acquire() as conn:
                await stats.read(conn)  # the first reading reads the day once
                for _ in range(50):
                    t0 = time.perf_counter()
                    board = await stats.read(conn)
                    times.append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    stats.chart(board)  # the hub derives it once per 10 s bucket
                    charts.append((time.perf_counter() - t0) * 1000)
            out.append((size, statistics.median(times), pct(times, 90), statistics.median(charts)))
    finally:
        await pool.close()
    return out


async def main(args: argparse.Namespace) -> None:
    server = start_embedded(PGDATA)
    await tune_embedded(server)
    service = None
    try:
        url = await fresh_database(server.url(), DB)
        service = start_service(url, args.port, {"CALLCENTER_API_TOKEN": TOKEN})
        base = f"http://127.0.0.1:{args.port}"
        await wait_ready(base)
        async with aiohttp.ClientSession(headers=ADMIN) as http:
            for name, cfg in (("general", {"wrap_up_seconds": 0}), ("probe", {})):
                async with http.put(f"{base}/api/queues/{name}", json=cfg) as resp:
                    assert resp.status in (200, 201), await resp.text()
            tokens = []
            for i in range(args.agents):
                payload = {"name": f"bench{i}", "queues": ["general"]}
                async with http.post(f"{base}/api/agents", json=payload) as resp:
                    tokens.append((await resp.json())["token"])
            async with http.post(
                f"{base}/api/people", json={"name": "boss", "role": "supervisor"}
            ) as resp:
                password = (await resp.json())["password"]
            async with http.post(
                f"{base}/api/session", json={"name": "boss", "password": password}
            ) as resp:
                session = (await resp.json())["token"]
        agents = Agents()
        readies = [asyncio.Event() for _ in tokens]
        panels = [
            asyncio.create_task(agents.run(f"ws://127.0.0.1:{args.port}/ws/agent", t, r))
            for t, r in zip(tokens, readies, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
        load_start = load_average()
        await phase(base, args.rate, args.warmup, agents, probe=False)
        pg_pid = postmaster_pid(PGDATA)

        def cpu() -> tuple[float, float]:
            pg = tree_cpu_seconds(pg_pid) if pg_pid is not None else float("nan")
            return process_cpu_seconds(service.pid), pg

        ws_url = f"ws://127.0.0.1:{args.port}/ws/dashboard?token={session}"
        ctx = multiprocessing.get_context("spawn")
        base_lat: list[float] = []
        dash_lat: list[float] = []
        rounds: list[tuple[float, float]] = []  # p99 without, with, per round
        cpu_use = {"without": [0.0, 0.0, 0], "with": [0.0, 0.0, 0]}
        lags: list[float] = []
        missed = 0
        message_counts: list[int] = []
        gaps = 0
        probed = 0
        for _ in range(args.rounds):
            # Without, then with: the two take turns, so a slow minute of the machine
            # falls on both rather than on whichever ran then.
            c0 = cpu()
            got, _ = await phase(base, args.rate, args.duration, agents, probe=False)
            c1 = cpu()
            base_lat += got
            cpu_use["without"] = [
                cpu_use["without"][0] + c1[0] - c0[0],
                cpu_use["without"][1] + c1[1] - c0[1],
                int(cpu_use["without"][2]) + len(got),
            ]
            results = ctx.Queue()
            dash_ready = ctx.Event()
            proc = ctx.Process(
                target=dashboards_process,
                args=(ws_url, args.dashboards, args.duration + 15, results, dash_ready),
            )
            proc.start()
            await asyncio.to_thread(dash_ready.wait, 90)
            c2 = cpu()
            with_dash, probes = await phase(base, args.rate, args.duration, agents, probe=True)
            c3 = cpu()
            dash_lat += with_dash
            cpu_use["with"] = [
                cpu_use["with"][0] + c3[0] - c2[0],
                cpu_use["with"][1] + c3[1] - c2[1],
                int(cpu_use["with"][2]) + len(with_dash),
            ]
            seen_all, counts, gap_counts = await asyncio.to_thread(results.get, True, 120)
            proc.join(30)
            # The probe queue keeps its calls: this round's k-th probe makes it hold
            # the earlier rounds' probes plus k.
            probes = {probed + k: t0 for k, t0 in probes.items()}
            probed += len(probes)
            lags += [
                (seen[k] - t0) * 1000 for seen in seen_all for k, t0 in probes.items() if k in seen
            ]
            missed += sum(1 for seen in seen_all for k in probes if k not in seen)
            message_counts += counts
            gaps += sum(gap_counts)
            rounds.append((pct(got, 99), pct(with_dash, 99)))
        messages = sum(message_counts) / len(message_counts)
        load_end = load_average()
        for t in panels:
            t.cancel()
        await asyncio.gather(*panels, return_exceptions=True)
        service.terminate()
        service.wait(20)
        service = None
        conn = await asyncpg.connect(url)
        version = await conn.fetchval("SHOW server_version")
        await conn.close()
        print(f"\n## Dashboard, {time.strftime('%Y-%m-%d')}\n")
        print(f"command: `.venv/bin/python benchmarks/dashboard.py {' '.join(sys.argv[1:])}`")
        print(f"machine: {machine(version)}; service, agents, dashboards and load on one machine\n")
        print("| figure | value |\n|---|---|")
        print(
            f"| load | {args.rate:g} calls/s, {args.agents} agents, {args.rounds} rounds of "
            f"{args.duration:.0f} s without then {args.duration:.0f} s with dashboards |"
        )
        print(
            f"| enqueue→offer p50 / p99, no dashboard (baseline) | {pct(base_lat, 50):.1f} / "
            f"{pct(base_lat, 99):.1f} ms ({len(base_lat)} calls) |"
        )
        print(
            f"| enqueue→offer p50 / p99, {args.dashboards} dashboards open | "
            f"{pct(dash_lat, 50):.1f} / {pct(dash_lat, 99):.1f} ms ({len(dash_lat)} calls) |"
        )
        print(f"| ratio p99 with / without | {pct(dash_lat, 99) / pct(base_lat, 99):.2f} |")
        per_round = ", ".join(f"{a:.0f} → {b:.0f}" for a, b in rounds)
        print(f"| p99 per round, without → with (ms) | {per_round} |")
        per_call = [
            cpu_use[k][i] * 1000 / max(int(cpu_use[k][2]), 1)
            for k in ("without", "with")
            for i in (0, 1)
        ]
        print(
            "| CPU per call, service / PostgreSQL: without → with dashboards | "
            f"{per_call[0]:.2f} / {per_call[1]:.2f} → {per_call[2]:.2f} / {per_call[3]:.2f} ms |"
        )
        if lags:
            print(
                f"| dashboard lag (committed change → shown) p50 / p99 / max | "
                f"{pct(lags, 50):.0f} / {pct(lags, 99):.0f} / {max(lags):.0f} ms "
                f"({len(lags)} probe×dashboard, {missed} never shown) |"
            )
        print(f"| messages per dashboard per phase / seq gaps | {messages:.0f} / {gaps} |")
        print(f"| load average at start / end | {load_start} / {load_end} |")
        sizes = [int(s) for s in args.history.split(",")]
        cost = await stats_cost(url, sizes)
        for size, med, p90, chart_ms in cost:
            print(
                f"| stats reading with {size:,} past calls: median / p90 | "
                f"{med:.1f} / {p90:.1f} ms |"
            )
            print(f"| the hour's chart from the buckets, median | {chart_ms:.1f} ms |")
    finally:
        if service is not None:
            service.terminate()
            service.wait(20)
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--dashboards", type=int, default=50)
    parser.add_argument(
        "--rounds", type=int, default=3, help="phases without and with dashboards, alternated"
    )
    parser.add_argument("--history", default="10000,1000000")
    parser.add_argument("--port", type=int, default=18191)
    asyncio.run(main(parser.parse_args()))
