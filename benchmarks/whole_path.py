"""Whole-path benchmark: the demo's traffic, open loop at rising rates, until the knee.

Each call goes the whole way a real one does, through the doors a real peer
and a real agent use: the PBX posts a signed generic ``call.incoming`` (the
service identifies the caller and queues the call) → the router offers it to
an agent on ``/ws/agent`` → the agent accepts (the service tells the PBX
``connect``) → the agent ends the call at once (the service tells the PBX
``hangup``: the release) and wraps up with the learning question's answer.
The traffic is ``callcenter.simulation``'s, as in ``callcenter demo`` (the
same caller mix over the shipped 10,000 sample customers, the same queues and
overflow), with callers who never hang up and agents who never reject, never
let an offer ring out, talk and write for no time, and skip few questions:
all the time a call takes is the service's, the database's and the
generator's.

The service runs as its own process (``callcenter serve``) on the embedded
PostgreSQL; this process is the PBX (its callback server included) and the
agents. Rates rise step by step (``--rates``, ``--step-seconds`` each); after
each step the calls still in flight get ``--drain`` seconds to finish, so
each step starts empty. The run stops after the first step past the knee:
completed calls/s under 90 % of the offered rate, a whole-path p99 over
``--p99-limit`` ms, or calls lost.

Per step: p50/p99 of each stage, measured where a real peer or agent sees it
(``perf_counter`` in this process; ``Steps`` in the simulation):

* sent→queued: the webhook's round trip (identified and committed in its queue);
* queued→offer: until the offer reaches an agent's socket;
* offer→accept: the agent's accept until its ``ack``;
* accept→release: the agent's ``end`` (sent at once) until the PBX gets ``hangup``;
* accept→wrap-up: until the wrap-up (with the answer) is acknowledged;
  the release and the wrap-up run side by side after the end;
* sent→done: the whole path, until the later of the release and the wrap-up;

calls/s completed (calls done inside the step's measured window, after
``--warmup`` s), calls lost (answered 2xx by the service but not released
or not wrapped up by the end of the drain, or not in a final state in the
database then), the most agents busy at once (of ``--agents``: if it nears
them, calls waited for an agent and the step measured staffing, not the
software), and CPU per completed call and CPU use of the service process,
PostgreSQL (postmaster and every backend) and this process.

Baselines, in the same run on the same machine, before the steps:

* pgbench: the raw SQL of an enqueue plus a ``SKIP LOCKED`` claim on a bare
  table, 4 clients (``routing.pgbench_baseline``), in the same PostgreSQL;
* a do-nothing aiohttp webhook (``webhooks.serve_noop``): 50 closed-loop clients
  of this process's own HTTP client;
* a websocket echo (aiohttp server, the ``websockets`` client the simulated
  agents use): 50 closed-loop connections.

Each figure is printed with its ratio to the matching baseline, and the
CPU per call of the lowest rate is turned into a ceiling: the calls/s these
three processes could carry if they had every core to themselves.

``--statements`` loads ``pg_stat_statements`` into the embedded server (as
``routing.py --statements``) and prints each statement's executions and
server time per call over the measured steps; use it with one low rate
(``--rates 10``). The pids of the service and the postmaster go to stderr at
the start, for a profiler (``py-spy record --pid``); ``--series`` prints each
step's whole-path p50/max by second of the step to stderr.

    .venv/bin/python benchmarks/whole_path.py > report.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import routing
import webhooks
import websockets
from common import (
    BENCH_TOKEN,
    WORK,
    fresh_database,
    load_average,
    machine,
    pct,
    postmaster_pid,
    process_cpu_seconds,
    run_loop,
    serve_app,
    start_service,
    tree_cpu_seconds,
    wait_for,
    wait_port,
    wait_ready,
)

from callcenter.config import Settings
from callcenter.customers.importer import import_file
from callcenter.customers.store import CustomerRules
from callcenter.db.embedded import start_embedded
from callcenter.db.lifecycle import tune_embedded
from callcenter.db.pool import create_pool
from callcenter.simulation.agents import Behaviour
from callcenter.simulation.demo import customers_file
from callcenter.simulation.pbx import Pbx, PbxCall
from callcenter.simulation.population import load
from callcenter.simulation.summary import FINAL
from callcenter.simulation.traffic import Api, Plan, Traffic, new_run_id, set_up

DB = "bench_wholepath"
PGDATA = WORK / "pgdata-wholepath"
SECRET = "bench-wholepath-secret"

#: The stages reported, as (label, from step, to step); 'done' is the later of
#: 'release' and 'wrap_up'.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("sent→queued", "sent", "queued"),
    ("queued→offer", "queued", "offer"),
    ("offer→accept", "offer", "accept"),
    ("accept→panel", "accept", "panel"),
    ("accept→release", "accept", "release"),
    ("accept→wrap-up", "accept", "wrap_up"),
    ("sent→done", "sent", "done"),
)


# -- the baselines ---------------------------------------------------------------------


@dataclass
class Baselines:
    pgbench_tps: float = math.nan
    noop_rate: float = math.nan
    noop_ms: list[float] = field(default_factory=list)
    echo_rate: float = math.nan
    echo_ms: list[float] = field(default_factory=list)


def serve_echo(port: int) -> None:
    """The websocket baseline server: every text message straight back."""
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/echo", echo)
    serve_app(app, port)


async def echo_load(
    port: int, clients: int, warmup: float, duration: float
) -> tuple[int, list[float], float]:
    """``clients`` sockets, each sending a small JSON message and awaiting its echo."""
    times: list[float] = []
    count = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + duration

    async def client(n: int) -> None:
        nonlocal count
        async with websockets.connect(f"ws://127.0.0.1:{port}/echo") as ws:
            message = json.dumps({"type": "accept", "offer_id": n, "ref": n})
            while (t0 := time.perf_counter()) < stop:
                await ws.send(message)
                json.loads(await ws.recv())
                if t0 >= measure_from:
                    count += 1
                    times.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(client(n) for n in range(clients)))
    return count, times, time.perf_counter() - measure_from


async def baselines(args: argparse.Namespace, server_url: str) -> Baselines:
    b = Baselines()
    if args.baseline_seconds <= 0:
        return b
    print("baseline: pgbench SKIP LOCKED claim …", file=sys.stderr)
    b.pgbench_tps = await asyncio.to_thread(
        routing.pgbench_baseline, server_url, args.baseline_seconds, DB
    )
    print("baseline: do-nothing aiohttp webhook …", file=sys.stderr)
    noop = webhooks.start_noop(args.port + 1)
    try:
        await wait_for(f"http://127.0.0.1:{args.port + 1}/noop", lambda s: s == 405)
        r = await webhooks.drive(
            f"http://127.0.0.1:{args.port + 1}", webhooks.noop_pair, 50, 2.0,
            args.baseline_seconds, itertools.count(),
        )  # fmt: skip
        b.noop_rate, b.noop_ms = r.requests / r.seconds, r.incoming_ms
    finally:
        noop.terminate()
        noop.wait(10)
    print("baseline: websocket echo …", file=sys.stderr)
    echo = start_echo(args.port + 2)
    try:
        await wait_port(args.port + 2)
        n, times, seconds = await echo_load(args.port + 2, 50, 2.0, args.baseline_seconds)
        b.echo_rate, b.echo_ms = n / seconds, times
    finally:
        echo.terminate()
        echo.wait(10)
    return b


def start_echo(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--serve-echo", str(port)])


# -- one rate ----------------------------------------------------------------------------


class Cpu:
    """CPU seconds so far of the service, PostgreSQL and this process."""

    def __init__(self, service_pid: int, pg_pid: int | None) -> None:
        self.service_pid, self.pg_pid = service_pid, pg_pid

    def read(self) -> tuple[float, float, float]:
        pg = tree_cpu_seconds(self.pg_pid) if self.pg_pid is not None else math.nan
        return process_cpu_seconds(self.service_pid), pg, time.process_time()

    def waits(self) -> tuple[float, float, float]:
        """Seconds so far that the threads of each were runnable but not running:
        waiting for a core (Linux ``schedstat``; living threads only)."""
        pg = tree_run_wait(self.pg_pid) if self.pg_pid is not None else math.nan
        return run_wait(self.service_pid), pg, run_wait(os.getpid())


def run_wait(pid: int) -> float:
    """Seconds the threads of ``pid`` have waited on a run queue."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int((task / "schedstat").read_text().split()[1])
    except OSError:
        return 0.0
    return total / 1e9


def tree_run_wait(pid: int) -> float:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return run_wait(pid) + sum(tree_run_wait(int(c)) for c in children)


@dataclass
class Step:
    rate: float
    offered: float  # calls/s placed in the measured window
    completed: float  # calls/s done in the measured window
    placed: int  # calls of the step the service answered 2xx for
    lost: int
    not_final: int
    refused: int
    stages: dict[str, list[float]]  # ms, calls sent in the measured window
    busy_max: int
    xacts_per_call: float  # PostgreSQL transactions (commits and rollbacks) per completed call
    cpu_per_call: tuple[float, float, float]  # ms: service, PostgreSQL, generator
    cpu_use: tuple[float, float, float]  # share of a core during the sending
    # ms per call sent that the threads waited for a core, during the sending
    run_wait: tuple[float, float, float]
    load: str
    errors: list[str]
    missing: dict[str, int]  # lost calls by the steps they never reached


def times_of(steps: dict[str, float]) -> dict[str, float]:
    out = dict(steps)
    if "release" in out and "wrap_up" in out:
        out["done"] = max(out["release"], out["wrap_up"])
    return out


def busiest(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    most = now = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


async def one_rate(
    traffic: Traffic,
    rate: float,
    args: argparse.Namespace,
    cpu: Cpu,
    conn: asyncpg.Connection,
    name: str,
) -> Step:
    pbx = traffic.pbx
    traffic.plan.rate = rate
    traffic.run_id = f"{traffic.run_id.split('-')[0]}-{name}"
    prefix = f"demo-{traffic.run_id}-"
    refused0 = pbx.counts.refused + pbx.counts.failed
    errors0 = len(traffic.ledger.errors)
    stop = asyncio.Event()
    x0 = await xacts(conn)
    c0 = cpu.read()
    q0 = cpu.waits()
    t0 = time.perf_counter()
    callers = asyncio.create_task(traffic.callers(stop))
    await asyncio.sleep(args.warmup)
    w0 = time.perf_counter()
    await asyncio.sleep(args.step_seconds - args.warmup)
    stop.set()
    await callers
    t1 = time.perf_counter()
    c1 = cpu.read()
    q1 = cpu.waits()
    load = load_average()
    # Let the step's calls finish, so the next step starts empty.
    mine: list[PbxCall] = [c for k, c in pbx.calls.items() if k.startswith(prefix)]
    deadline = time.perf_counter() + args.drain
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.2)
        pending = [c for c in mine if c.phase != "ended"]
        unwrapped = [
            c for c in mine if c.id is not None and "wrap_up" not in pbx.steps.at.get(c.id, {})
        ]
        if not pending and not unwrapped:
            break
    c2 = cpu.read()
    await asyncio.sleep(1.0)  # backends flush their statistics about once a second
    x1 = await xacts(conn)
    placed = [c for c in mine if c.id is not None]
    at = {c.id: times_of(pbx.steps.at.get(c.id, {})) for c in placed if c.id is not None}
    lost = sum(1 for t in at.values() if "done" not in t)
    missing: dict[str, int] = {}
    for t in at.values():
        if "done" not in t:
            gap = "+".join(k for k in ("offer", "accept", "release", "wrap_up") if k not in t)
            missing[gap] = missing.get(gap, 0) + 1
    ids = list(at)
    not_final = await conn.fetchval(
        "SELECT count(*) FROM calls WHERE id = ANY($1::bigint[]) AND NOT (state = ANY($2))",
        ids, list(FINAL),
    )  # fmt: skip
    window = t1 - w0
    sent_in = [t for t in at.values() if w0 <= t["sent"] < t1]
    stages = {
        label: [(t[b] - t[a]) * 1000 for t in sent_in if a in t and b in t]
        for label, a, b in STAGES
    }
    done_in = sum(1 for t in at.values() if w0 <= t.get("done", -1) < t1)
    if args.series:
        by_second: dict[int, list[float]] = {}
        for t in at.values():
            by_second.setdefault(int(t["sent"] - t0), []).append(
                (t.get("done", math.inf) - t["sent"]) * 1000
            )
        print(
            "sent→done p50/max ms by second of the step: "
            + " ".join(f"{k}:{pct(v, 50):.0f}/{max(v):.0f}" for k, v in sorted(by_second.items())),
            file=sys.stderr,
        )
    busy = busiest(
        [(t["offer"], t["wrap_up"]) for t in at.values() if "offer" in t and "wrap_up" in t]
    )
    completed_calls = max(1, sum(1 for t in at.values() if "done" in t))
    per_call = tuple((b - a) * 1000 / completed_calls for a, b in zip(c0, c2, strict=True))
    use = tuple((b - a) / (t1 - t0) for a, b in zip(c0, c1, strict=True))
    sent_all = max(1, sum(1 for t in at.values() if t0 <= t["sent"] < t1))
    wait = tuple((b - a) * 1000 / sent_all for a, b in zip(q0, q1, strict=True))
    return Step(
        rate=rate,
        offered=len(sent_in) / window,
        completed=done_in / window,
        placed=len(placed),
        lost=lost,
        not_final=not_final,
        refused=pbx.counts.refused + pbx.counts.failed - refused0,
        stages=stages,
        busy_max=busy,
        xacts_per_call=(x1 - x0) / completed_calls,
        cpu_per_call=(per_call[0], per_call[1], per_call[2]),
        cpu_use=(use[0], use[1], use[2]),
        run_wait=(wait[0], wait[1], wait[2]),
        load=load,
        errors=traffic.ledger.errors[errors0:][:3],
        missing=missing,
    )


async def xacts(conn: asyncpg.Connection) -> int:
    """Transactions ended so far in this database (ours included: a few per step)."""
    found = await conn.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database "
        "WHERE datname = current_database()"
    )
    return int(found)


def past_knee(step: Step, args: argparse.Namespace) -> str | None:
    """Why ``step`` is past the knee, or None."""
    if step.completed < 0.9 * step.offered:
        return f"completed {step.completed:.0f}/s < 90 % of offered {step.offered:.0f}/s"
    whole = step.stages["sent→done"]
    if whole and pct(whole, 99) > args.p99_limit:
        return f"whole-path p99 {pct(whole, 99):.0f} ms > {args.p99_limit:g} ms"
    if step.lost or step.not_final or step.refused:
        return f"{step.lost} lost, {step.not_final} not final, {step.refused} refused"
    return None


# -- the run -----------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    server = start_embedded(PGDATA)
    await tune_embedded(server)  # as `callcenter serve` does
    server_url = server.url()
    if await routing.set_statements(server_url, args.statements):
        server.restart()
        server_url = server.url()
    service = None
    pbx = None
    try:
        url = await fresh_database(server_url, DB)
        rules = CustomerRules.from_settings(Settings(database_url=url))
        pool = await create_pool(url, min_size=1, max_size=4)
        try:
            await import_file(pool, customers_file(), rules, workers=False)
            await pool.execute("VACUUM ANALYZE")
            if args.statements:
                await pool.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        finally:
            await pool.close()
        population = await asyncio.to_thread(load, customers_file(), rules)
        base = f"http://127.0.0.1:{args.port}"
        # No callbacks taken and no redials: a callback's ring is seconds of the
        # simulated caller's time, not the service's, and this measures the service.
        pbx = Pbx(
            base,
            SECRET,
            random.Random(args.seed + 1),
            mean_patience=math.inf,
            mean_talk=math.inf,
            callback_take=0.0,
            redial=0.0,
        )
        callback = await pbx.start()
        service = start_service(
            url,
            args.port,
            {
                "CALLCENTER_GENERIC_WEBHOOK_SECRET": SECRET,
                "CALLCENTER_GENERIC_CALLBACK_URL": callback,
                "CALLCENTER_GENERIC_GATHER_UNKNOWN": "true",
            },
        )
        pg_pid = postmaster_pid(PGDATA)
        print(f"service pid {service.pid}, postmaster pid {pg_pid}", file=sys.stderr)
        cpu = Cpu(service.pid, pg_pid)
        await wait_ready(base)
        behaviour = Behaviour(
            reject=0, ignore=0, mean_talk=0, mean_wrap=0, skip=0.02, verify=0,
            talk_after_panel=True,
        )  # fmt: skip
        plan = Plan(
            rate=args.rates[0], agents=args.agents, seed=args.seed, mean_patience=math.inf,
            mean_talk=math.inf, behaviour=behaviour,
        )  # fmt: skip
        load_at_start = load_average()
        async with aiohttp.ClientSession() as http:
            api = Api(http, base, BENCH_TOKEN)
            floor = await set_up(api, plan, population.tiers, extra_agent=False, supervisor=False)
            traffic = Traffic(pbx, population, plan, floor, run_id=new_run_id())
            await traffic.start_agents()
            gc.freeze()  # as the service does: full collections walk only what the run makes
            found = await baselines(args, server_url)
            conn = await asyncpg.connect(url)
            version = await conn.fetchval("SHOW server_version")
            if args.warmup_step > 0:
                print(f"warm-up: {args.rates[0]:g} calls/s …", file=sys.stderr)
                warm = argparse.Namespace(**vars(args) | {"step_seconds": args.warmup_step})
                await one_rate(traffic, args.rates[0], warm, cpu, conn, "warm")
            steps: list[Step] = []
            knee = None
            if args.statements:
                await conn.execute("SELECT pg_stat_statements_reset()")
            for rate in args.rates:
                print(f"step: {rate:g} calls/s …", file=sys.stderr)
                step = await one_rate(traffic, rate, args, cpu, conn, f"{rate:g}")
                steps.append(step)
                print(row(step, found), file=sys.stderr)
                knee = past_knee(step, args)
                if knee is not None:
                    break
            if args.statements:
                await routing.print_statements(url, sum(s.placed for s in steps))
            await traffic.finish(drain_seconds=10)
            states = await conn.fetch(
                "SELECT state, count(*) AS n FROM calls GROUP BY 1 ORDER BY 1"
            )
            answers = await conn.fetchval("SELECT count(*) FROM answers")
            await conn.close()
        report(args, steps, found, knee, version, load_at_start, states, answers, traffic)
    finally:
        if pbx is not None:
            await pbx.close()
        if service is not None:
            service.terminate()
            service.wait(20)
        server.stop()


def _ms(values: list[float]) -> str:
    return f"{pct(values, 50):.0f} / {pct(values, 99):.0f}" if values else "–"


def row(s: Step, b: Baselines) -> str:
    stages = " | ".join(_ms(s.stages[label]) for label, _, _ in STAGES)
    cpu = " / ".join(f"{x:.1f}" for x in s.cpu_per_call)
    use = " / ".join(f"{x:.0%}" for x in s.cpu_use)
    wait = " / ".join(f"{x:.1f}" for x in s.run_wait)
    return (
        f"| {s.rate:g} | {s.offered:.0f} | {s.completed:.0f} "
        f"({s.completed / b.pgbench_tps:.3f} / {s.completed / b.noop_rate:.3f} / "
        f"{s.completed / b.echo_rate:.3f}) | {s.lost} / {s.not_final} / {s.refused} | "
        f"{stages} | {s.busy_max} | {s.xacts_per_call:.1f} | {cpu} | {use} | {wait} | {s.load} |"
    )


def report(
    args: argparse.Namespace,
    steps: list[Step],
    b: Baselines,
    knee: str | None,
    version: str,
    load_at_start: str,
    states: list[asyncpg.Record],
    answers: int,
    traffic: Traffic,
) -> None:
    print(f"\n## Whole path, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"command: `.venv/bin/python benchmarks/whole_path.py {' '.join(sys.argv[1:])}`")
    print(
        f"machine: {machine(version)}; service, PostgreSQL and the generator (PBX and "
        f"agents, one process) on the same machine; load average at start {load_at_start}\n"
    )
    print(
        f"{args.agents} agents; each step {args.step_seconds:g} s of Poisson arrivals, "
        f"measured after {args.warmup:g} s, then up to {args.drain:g} s to drain\n"
    )
    print("Baselines, same run, same machine:\n")
    print("| baseline | rate | p50 / p99 ms |\n|---|---:|---:|")
    print(f"| pgbench enqueue + SKIP LOCKED claim, 4 clients | {b.pgbench_tps:.0f} tps | |")
    print(f"| do-nothing aiohttp webhook, 50 clients | {b.noop_rate:.0f}/s | {_ms(b.noop_ms)} |")
    print(f"| websocket echo, 50 sockets | {b.echo_rate:.0f}/s | {_ms(b.echo_ms)} |")
    print()
    heads = " | ".join(f"{label} p50 / p99 ms" for label, _, _ in STAGES)
    print(
        "| asked/s | offered/s | completed/s (÷ pgbench / ÷ webhook / ÷ echo) "
        f"| lost / not final / refused | {heads} | most agents busy | DB transactions per call "
        "| CPU ms per call: service / PostgreSQL / generator "
        "| CPU use (of one core) | ms per call waiting for a core | load average |"
    )
    print("|" + "---|" * (10 + len(STAGES)))
    for s in steps:
        print(row(s, b))
    if steps:
        low = steps[0]
        total = sum(low.cpu_per_call)
        print(
            f"\nCPU per completed call at {low.rate:g} calls/s: {total:.1f} ms "
            f"(service {low.cpu_per_call[0]:.1f}, PostgreSQL {low.cpu_per_call[1]:.1f}, "
            f"generator {low.cpu_per_call[2]:.1f}); with {os.cpu_count()} idle cores for "
            f"these three alone the ceiling would be {os.cpu_count() * 1000 / total:.0f} "
            f"calls/s ({os.cpu_count() * 1000 / (total - low.cpu_per_call[2]):.0f} with the "
            "generator elsewhere)."
        )
        best = max(steps, key=lambda s: s.completed if past_knee(s, args) is None else 0)
        q = best.stages["sent→queued"]
        a = best.stages["offer→accept"]
        said = f"\nAt {best.rate:g} calls/s:"
        if q and a and b.noop_ms and b.echo_ms:
            said += (
                f" sent→queued p50 {pct(q, 50) / pct(b.noop_ms, 50):.1f}× the do-nothing "
                f"webhook's, offer→accept p50 {pct(a, 50) / pct(b.echo_ms, 50):.1f}× a "
                "websocket echo;"
            )
        print(f"{said} goal 1,000 calls/s: {best.completed / 1000:.2f} of it.")
    print(f"\nStopped: {knee or 'all rates passed'}.")
    for s in steps:
        if s.missing:
            print(
                f"Lost at {s.rate:g}/s, by the steps they never reached: "
                + ", ".join(f"{k or 'none'} {n}" for k, n in s.missing.items())
            )
    print(
        "Calls by state at the end (every step; calls still up at the end were hung up): "
        + ", ".join(f"{r['state']} {r['n']}" for r in states)
        + f"; answers stored {answers}, answers acknowledged to agents "
        f"{len(traffic.ledger.answered)} (+{len(traffic.ledger.skipped)} skipped)"
    )
    faults = traffic.faults()
    if faults:
        print("Faults: " + "; ".join(faults))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-echo":
        serve_echo(int(sys.argv[2]))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[10, 20, 30, 40, 50, 75, 100, 150, 200, 300, 400, 600, 800, 1000],
    )
    parser.add_argument("--step-seconds", type=float, default=25)
    parser.add_argument("--warmup", type=float, default=5, help="unmeasured seconds of each step")
    parser.add_argument("--drain", type=float, default=30, help="seconds for a step's calls to end")
    parser.add_argument("--p99-limit", type=float, default=2000, help="whole-path p99, ms")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--warmup-step", type=float, default=15, help="seconds at the first rate, not reported"
    )
    parser.add_argument("--series", action="store_true", help="per-second sent→done to stderr")
    parser.add_argument(
        "--statements",
        action="store_true",
        help="load pg_stat_statements and print each statement's executions per call",
    )
    parser.add_argument("--port", type=int, default=18381, help="service; baselines: +1, +2")
    parser.add_argument("--baseline-seconds", type=int, default=15, help="0 skips the baselines")
    parsed = parser.parse_args()
    if not 0 <= parsed.warmup < parsed.step_seconds:
        parser.error("--warmup must be at least 0 and shorter than --step-seconds")
    if parsed.warmup_step and parsed.warmup_step <= parsed.warmup:
        parser.error("--warmup-step must be 0 or longer than --warmup")
    run_loop(main(parsed))
