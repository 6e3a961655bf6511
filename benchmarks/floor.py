"""The floor: what the bare messages of the chosen stack cost per message on this machine.

No business logic at all: each piece the service is built of, alone, driven
hard for ``--seconds`` after a short warm-up, its CPU read from ``/proc``
(user + system, not wall time). The servers and the load generators run in
their own processes (this script re-invoked with a hidden flag), so the CPU
of each side is read apart:

1. **HTTP request**: the do-nothing aiohttp server (``webhooks.serve_noop``:
   read the body, answer ``{}``), 50 closed-loop clients of aiohttp's client
   posting a small JSON body. The service serves requests (webhooks in) and
   sends them (commands to the PBX): the server's CPU per request is the
   first, the client's the second.
2. **Websocket message**: the echo server of ``whole_path.py``
   (``whole_path.serve_echo``), 50 sockets of the ``websockets`` client the
   simulated agents use, each sending a small JSON message and awaiting its
   echo: server CPU per echo is one message in and one out. To tell the two
   directions apart, the same server also answers each message with
   ``--burst`` messages of ``--ws-out-bytes`` (the mean size of what the
   service sends an agent); run once with one answer and once with
   ``--burst``, the difference is the cost of the extra messages sent, and
   what remains of the one-answer run is the message received.
3. **Database round trip**: the embedded PostgreSQL (its own cluster in
   ``benchmarks/.work/pgdata-floor``, tuned as ``callcenter serve`` tunes it),
   a fresh database, and a client process with ``--db-tasks`` asyncio tasks
   on the service's pool (``callcenter.db.pool.create_pool``, uvloop), each
   looping one short autocommit statement on its own row: a write
   (``UPDATE … SET n = n + 1``, ``synchronous_commit`` on, as the service's
   durable statements are) and, apart, a read (``SELECT n``). PostgreSQL's
   CPU is the postmaster's and all its children's (backends, WAL writer,
   checkpointer, autovacuum).

Then the **floor per call**: the messages one routed call of the whole-path
benchmark needs, each times its unit cost, on the service's side and on
PostgreSQL's, beside the goal of 1.5 ms. The counts are options; their
defaults come from the whole-path benchmark (see benchmarks/README.md, "The
floor").

    .venv/bin/python benchmarks/floor.py > report.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import websockets
from common import (
    WORK,
    fresh_database,
    load_average,
    machine,
    postmaster_pid,
    process_cpu_seconds,
    run_loop,
    serve_app,
    tree_cpu_seconds,
    wait_for,
    wait_port,
)

from callcenter.db.embedded import start_embedded
from callcenter.db.lifecycle import tune_embedded
from callcenter.db.pool import create_pool

DB = "bench_floor"
PGDATA = WORK / "pgdata-floor"
GOAL_US = 1500.0
#: What the HTTP and websocket clients send: about the size of a generic webhook
#: and of an agent's accept.
HTTP_BODY = json.dumps({"type": "call.incoming", "call_id": "floor-1", "from": "+12125550100"})
WS_MESSAGE = json.dumps({"type": "accept", "offer_id": 1, "ref": "accept"})
WRITE = "UPDATE floor_rows SET n = n + 1 WHERE id = $1"
READ = "SELECT n FROM floor_rows WHERE id = $1"


# -- the servers (child processes) ---------------------------------------------------------


def serve_burst(port: int) -> None:
    """``whole_path.serve_echo``, but each text message is answered with ``n``
    messages of ``size`` bytes (``/burst?n=…&size=…``)."""
    from aiohttp import WSMsgType, web

    async def burst(request: web.Request) -> web.WebSocketResponse:
        n = int(request.query.get("n", "1"))
        size = int(request.query.get("size", "0"))
        reply = json.dumps({"type": "state", "pad": ""})
        reply = json.dumps({"type": "state", "pad": "x" * max(0, size - len(reply))})
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                for _ in range(n):
                    await ws.send_str(reply)
        return ws

    app = web.Application()
    app.router.add_get("/burst", burst)
    serve_app(app, port)


# -- the load generators (child processes) ----------------------------------------------


@dataclass
class Window:
    """What a load generator measured over its window."""

    count: int  # operations completed in the window
    seconds: float
    client_cpu: float  # CPU seconds of the generator's process
    server_cpu: float  # CPU seconds of the server (its process, or PostgreSQL's tree)
    errors: int


async def measure(
    loop_once: Callable[[], Awaitable[bool]],
    workers: int,
    server_cpu: Callable[[], float],
    warmup: float,
    seconds: float,
) -> Window:
    """``workers`` closed loops of ``loop_once`` (True: it succeeded); only the
    ``seconds`` after ``warmup`` are counted."""
    done = errors = 0
    stop = False

    async def worker() -> None:
        nonlocal done, errors
        while not stop:
            if await loop_once():
                done += 1
            else:
                errors += 1

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    await asyncio.sleep(warmup)
    n0, e0, c0, s0, t0 = done, errors, time.process_time(), server_cpu(), time.perf_counter()
    await asyncio.sleep(seconds)
    n1, e1, c1, s1, t1 = done, errors, time.process_time(), server_cpu(), time.perf_counter()
    stop = True
    await asyncio.gather(*tasks)
    return Window(n1 - n0, t1 - t0, c1 - c0, s1 - s0, e1 - e0)


async def http_client(spec: dict[str, Any]) -> Window:
    url = f"http://127.0.0.1:{spec['port']}/noop"
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=spec["clients"])
    async with aiohttp.ClientSession(connector=connector) as http:

        async def once() -> bool:
            async with http.post(url, data=HTTP_BODY, headers=headers) as resp:
                await resp.read()
                return resp.status == 200

        return await measure(
            once,
            spec["clients"],
            lambda: process_cpu_seconds(spec["server_pid"]),
            spec["warmup"],
            spec["seconds"],
        )


async def ws_client(spec: dict[str, Any]) -> Window:
    """``spec['clients']`` sockets; one operation: a message sent, ``n`` answers read."""
    n = spec["n"]
    sockets = [await websockets.connect(spec["url"]) for _ in range(spec["clients"])]
    free = asyncio.Queue[Any]()
    for ws in sockets:
        free.put_nowait(ws)

    async def once() -> bool:
        ws = await free.get()
        try:
            await ws.send(WS_MESSAGE)
            for _ in range(n):
                json.loads(await ws.recv())
        finally:
            free.put_nowait(ws)
        return True

    try:
        return await measure(
            once,
            spec["clients"],
            lambda: process_cpu_seconds(spec["server_pid"]),
            spec["warmup"],
            spec["seconds"],
        )
    finally:
        for ws in sockets:
            await ws.close()


async def db_client(spec: dict[str, Any]) -> Window:
    tasks = spec["tasks"]
    pool = await create_pool(spec["url"], min_size=tasks, max_size=tasks)
    ids = iter(range(1, tasks + 1))
    write = spec["statement"] == "write"
    mine: dict[asyncio.Task[Any] | None, int] = {}

    async def once() -> bool:
        # Each task takes its own row at its first turn, so no two wait on one row lock.
        task = asyncio.current_task()
        row = mine.get(task)
        if row is None:
            row = mine[task] = next(ids)
        if write:
            await pool.execute(WRITE, row)
        else:
            await pool.fetchval(READ, row)
        return True

    try:
        return await measure(
            once, tasks, lambda: tree_cpu_seconds(spec["pg_pid"]), spec["warmup"], spec["seconds"]
        )
    finally:
        await pool.close()


CLIENTS: dict[str, Callable[[dict[str, Any]], Awaitable[Window]]] = {
    "http": http_client,
    "ws": ws_client,
    "db": db_client,
}


def client_main(kind: str, spec: str) -> None:
    window: Window = run_loop(CLIENTS[kind](json.loads(spec)))
    print(json.dumps(window.__dict__))


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Unit:
    """One measured piece: its rate and CPU µs per operation on each side."""

    name: str
    rate: float
    server_us: float
    client_us: float
    errors: int


def unit(name: str, w: Window) -> Unit:
    n = max(1, w.count)
    return Unit(name, w.count / w.seconds, w.server_cpu * 1e6 / n, w.client_cpu * 1e6 / n, w.errors)


async def run_client(kind: str, spec: dict[str, Any], limit: float) -> Window:
    """This script as the ``kind`` load generator; its window, or TimeoutError after
    ``limit`` seconds."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", kind, json.dumps(spec),
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(limit):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"the {kind} client failed ({proc.returncode})")
    return Window(**json.loads(out.decode().strip().splitlines()[-1]))


def start_child(flag: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, flag, str(port)])


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def main(args: argparse.Namespace) -> None:
    common = {"warmup": args.warmup, "seconds": args.seconds}
    limit = args.warmup + args.seconds + 60
    load_at_start = load_average()
    units: dict[str, Unit] = {}

    print("HTTP: do-nothing aiohttp server …", file=sys.stderr)
    server = start_child("--serve-noop", args.port)
    try:
        await wait_for(f"http://127.0.0.1:{args.port}/noop", lambda s: s == 405)
        spec = common | {"port": args.port, "clients": args.clients, "server_pid": server.pid}
        units["http"] = unit("http", await run_client("http", spec, limit))
    finally:
        stop_child(server)

    print("websocket: echo …", file=sys.stderr)
    server = start_child("--serve-echo", args.port + 1)
    try:
        await wait_port(args.port + 1)
        spec = common | {
            "url": f"ws://127.0.0.1:{args.port + 1}/echo",
            "clients": args.clients,
            "server_pid": server.pid,
            "n": 1,
        }
        units["echo"] = unit("echo", await run_client("ws", spec, limit))
    finally:
        stop_child(server)

    print(f"websocket: 1 and {args.burst} answers of {args.ws_out_bytes} bytes …", file=sys.stderr)
    server = start_child("--serve-burst", args.port + 2)
    try:
        await wait_port(args.port + 2)
        for n in (1, args.burst):
            url = f"ws://127.0.0.1:{args.port + 2}/burst?n={n}&size={args.ws_out_bytes}"
            spec = common | {"url": url, "clients": args.clients, "server_pid": server.pid, "n": n}
            units[f"burst{n}"] = unit(f"burst{n}", await run_client("ws", spec, limit))
    finally:
        stop_child(server)

    print("database: embedded PostgreSQL …", file=sys.stderr)
    pg = start_embedded(PGDATA)
    try:
        await tune_embedded(pg)  # as `callcenter serve` does
        url = await fresh_database(pg.url(), DB)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE TABLE floor_rows (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)"
            )
            await conn.execute(
                "INSERT INTO floor_rows (id) SELECT generate_series(1, $1)", args.db_tasks
            )
            await conn.execute("VACUUM ANALYZE floor_rows")
            version = await conn.fetchval("SHOW server_version")
            sync = await conn.fetchval("SHOW synchronous_commit")
            fsync = await conn.fetchval("SHOW fsync")
        finally:
            await conn.close()
        pg_pid = postmaster_pid(PGDATA)
        if pg_pid is None:
            raise RuntimeError(f"no postmaster.pid in {PGDATA}")
        for statement in ("write", "read"):
            print(f"database: {statement} …", file=sys.stderr)
            spec = common | {
                "url": url,
                "tasks": args.db_tasks,
                "pg_pid": pg_pid,
                "statement": statement,
            }
            units[statement] = unit(statement, await run_client("db", spec, limit))
    finally:
        pg.stop()

    report(args, units, version, load_at_start, f"synchronous_commit {sync}, fsync {fsync}")


# -- the report --------------------------------------------------------------------------------


def split(units: dict[str, Unit], burst: int) -> tuple[float, float]:
    """Server µs per websocket message received and per message sent (of the burst's size),
    from the runs with one answer and with ``burst`` answers; NaN if the difference is
    not positive (the runs too noisy to tell them apart)."""
    one, many = units["burst1"].server_us, units[f"burst{burst}"].server_us
    sent = (many - one) / (burst - 1)
    if not 0 < sent < one:
        return math.nan, math.nan
    return one - sent, sent


def report(
    args: argparse.Namespace, u: dict[str, Unit], version: str, load_at_start: str, durability: str
) -> None:
    print(f"\n## The floor, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"command: `.venv/bin/python benchmarks/floor.py {' '.join(sys.argv[1:])}`")
    print(
        f"machine: {machine(version)}; every server and load generator in its own process on "
        f"the same machine; load average at start {load_at_start}, at end {load_average()}\n"
    )
    print(
        f"Each piece {args.seconds:g} s measured after {args.warmup:g} s of warm-up; CPU is "
        "user + system from /proc. PostgreSQL: the embedded server, tuned as `callcenter "
        f"serve` tunes it, {durability}.\n"
    )
    received, sent = split(u, args.burst)
    print(
        "| piece | load | per second | server CPU µs per operation | client CPU µs per "
        "operation | errors |"
    )
    print("|---|---|---:|---:|---:|---:|")
    rows = (
        ("http", "HTTP request, do-nothing aiohttp server", f"{args.clients} aiohttp clients"),
        ("echo", "websocket echo (1 message in, 1 out)", f"{args.clients} `websockets` sockets"),
        ("burst1", f"websocket: 1 in, 1 out of {args.ws_out_bytes} B", f"{args.clients} sockets"),
        (
            f"burst{args.burst}",
            f"websocket: 1 in, {args.burst} out of {args.ws_out_bytes} B",
            f"{args.clients} sockets",
        ),
        ("write", "DB round trip: autocommit UPDATE", f"{args.db_tasks} tasks on `create_pool`"),
        ("read", "DB round trip: SELECT by key", f"{args.db_tasks} tasks on `create_pool`"),
    )
    for key, label, load in rows:
        x = u[key]
        server = "PostgreSQL " if key in ("write", "read") else ""
        print(
            f"| {label} | {load} | {x.rate:,.0f} | {server}{x.server_us:.0f} | "
            f"{x.client_us:.0f} | {x.errors} |"
        )
    print(
        f"\nWebsocket, server side, from the 1-answer and {args.burst}-answer runs: "
        f"{received:.0f} µs per message received, {sent:.0f} µs per message of "
        f"{args.ws_out_bytes} B sent."
    )
    if math.isnan(sent):
        # Too noisy to split: half an echo each way.
        received = sent = u["echo"].server_us / 2
        print(f"(Not told apart in this run; half an echo each way: {sent:.0f} µs.)")

    http_in = args.http_in * u["http"].server_us
    http_out = args.http_out * u["http"].client_us
    ws_in = args.ws_in * received
    ws_out = args.ws_out * sent
    db_client = args.db_round_trips * u["write"].client_us
    service = http_in + http_out + ws_in + ws_out + db_client
    postgres = args.db_round_trips * u["write"].server_us
    total = service + postgres
    print("\nFloor per call: the messages one routed call needs, times their unit cost.\n")
    print("| message | per call | side | µs per call |\n|---|---:|---|---:|")
    print(f"| HTTP request served (the webhook) | {args.http_in:g} | service | {http_in:.0f} |")
    print(f"| HTTP request sent (to the PBX) | {args.http_out:g} | service | {http_out:.0f} |")
    print(f"| websocket message received | {args.ws_in:g} | service | {ws_in:.0f} |")
    print(f"| websocket message sent | {args.ws_out:g} | service | {ws_out:.0f} |")
    print(
        f"| DB round trip, client side (write) | {args.db_round_trips:g} | service | "
        f"{db_client:.0f} |"
    )
    print(
        f"| DB round trip, server side (write) | {args.db_round_trips:g} | PostgreSQL | "
        f"{postgres:.0f} |"
    )
    print(f"| **total** | | | **{total:.0f}** |")
    reads = args.db_round_trips * (u["read"].client_us + u["read"].server_us)
    print(
        f"\n**Floor per call: {total / 1000:.2f} ms of CPU** (service {service / 1000:.2f}, "
        f"PostgreSQL {postgres / 1000:.2f}) against the goal of {GOAL_US / 1000:.1f} ms: "
        f"{total / GOAL_US:.2f}× the goal. With every round trip a read instead of a durable "
        f"write: {(total - db_client - postgres + reads) / 1000:.2f} ms. On "
        f"{os.cpu_count()} cores this floor alone would carry at most "
        f"{(os.cpu_count() or 1) * 1e6 / total:,.0f} calls/s."
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-noop":
        import webhooks

        webhooks.serve_noop(int(sys.argv[2]))
        raise SystemExit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-echo":
        import whole_path

        whole_path.serve_echo(int(sys.argv[2]))
        raise SystemExit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-burst":
        serve_burst(int(sys.argv[2]))
        raise SystemExit(0)
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        client_main(sys.argv[2], sys.argv[3])
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per piece")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds per piece")
    parser.add_argument("--clients", type=int, default=50, help="HTTP clients and websockets")
    parser.add_argument("--db-tasks", type=int, default=20, help="concurrent statements")
    parser.add_argument("--burst", type=int, default=5, help="answers per websocket message")
    parser.add_argument(
        "--ws-out-bytes", type=int, default=550, help="size of the answers (agent pushes' mean)"
    )
    parser.add_argument("--db-round-trips", type=float, default=7.6, help="per call")
    parser.add_argument("--http-in", type=float, default=1, help="webhooks per call")
    parser.add_argument("--http-out", type=float, default=2, help="requests to the PBX per call")
    parser.add_argument("--ws-in", type=float, default=3, help="agent messages received per call")
    parser.add_argument("--ws-out", type=float, default=9, help="agent messages sent per call")
    parser.add_argument("--port", type=int, default=18581, help="HTTP; websockets: +1, +2")
    parsed = parser.parse_args()
    if parsed.burst < 2:
        parser.error("--burst must be at least 2")
    run_loop(main(parsed))
