"""The ARI adapter against a real Asterisk: Stasis->queued, accept->bridged, recovery times.

The service runs as its own process (``callcenter serve``) on the embedded
PostgreSQL in ``benchmarks/.work/pgdata-ari`` (or ``--database-url``), with
``CALLCENTER_ARI_URL`` pointing at a TCP proxy in front of the real Asterisk
of ``../shared/peers/asterisk`` (started here on a free port, stopped after).
Callers are ``Local/<digits>@incoming`` channels placed by this script's own
ARI application; the agent's phone is ``Local/age2t10@agents`` (answers at once).

* **Stasis->queued**: from Asterisk's timestamp of the caller entering
  ``Stasis`` (the ``ChannelDialplan`` event this script's application gets for
  the caller's channel) to the call's ``enqueued_at`` in the database (both
  clocks are this machine's; milliseconds).
* **accept->bridged**: from the panel's ``accept`` leaving this script to
  Asterisk's bridge holding the caller and the agent's leg (``GET /ari/bridges``
  polled every 2 ms, so up to 2 ms late).
* **recovery after the ARI socket is cut**: the proxy drops every connection
  and refuses new ones for 1 s; from letting connections through again to
  ``/readyz`` answering 200 (polled every 5 ms) and to a new caller queued.
* **recovery after an Asterisk restart**: from ``start.sh`` returning (ARI
  answers) to ``/readyz`` 200 and to a new caller queued.

    .venv/bin/python benchmarks/ari.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from common import (
    ROOT,
    WORK,
    fresh_database,
    load_average,
    machine,
    pct,
    start_service,
    wait_for,
)

from callcenter.db.embedded import start_embedded
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.peers.asterisk import INSTALLED, AsteriskPeer, Cutter, Driver, free_port

DB = "bench_ari"
PHONE = "Local/age2t10@agents"


async def poll(check: Any, every: float, limit: float = 30.0) -> float:
    """Seconds until ``check()`` is true (polled every ``every`` s, ``limit`` s at most)."""
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > limit:
            raise RuntimeError("timed out")
        await asyncio.sleep(every)
    return time.perf_counter() - started


async def until_queued(conn: asyncpg.Connection[Any], caller: str) -> None:
    async def queued() -> bool:
        return await queued_at(conn, caller) is not None

    await poll(queued, 0.005)


async def queued_at(conn: asyncpg.Connection[Any], channel: str) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT enqueued_at FROM calls WHERE external_id = $1 AND state = 'waiting'",
        f"ari:{channel}",
    )
    return value


def stasis_time(driver: Driver, channel: str) -> datetime | None:
    for e in driver.events:
        ch = e.get("channel") or {}
        if (
            e.get("type") == "ChannelDialplan"
            and ch.get("id") == channel
            and (ch.get("dialplan") or {}).get("app_name") == "Stasis"
        ):
            return datetime.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
    return None


async def one_caller(conn: asyncpg.Connection[Any], driver: Driver, digits: str) -> float:
    """Stasis->queued of a new caller, in ms."""
    _, caller = await driver.caller(digits)

    async def queued() -> bool:
        return await queued_at(conn, caller) is not None

    await poll(queued, 0.005)
    await poll(lambda: _true(stasis_time(driver, caller) is not None), 0.005)
    entered = stasis_time(driver, caller)
    at = await queued_at(conn, caller)
    assert entered is not None
    assert at is not None
    return (at - entered).total_seconds() * 1000


async def _true(value: bool) -> bool:
    return value


async def main(args: argparse.Namespace) -> None:
    server = None
    if args.database_url:
        server_url = args.database_url
    else:
        server = start_embedded(WORK / "pgdata-ari")
        server_url = server.url()
    tmp = Path(tempfile.mkdtemp(prefix="ari-bench-", dir=WORK))
    prefix = INSTALLED if (INSTALLED / "sbin" / "asterisk").exists() else tmp / "asterisk-test"
    peer = AsteriskPeer(tmp / "run", prefix)
    peer.start()
    cutter = Cutter(peer.port)
    await cutter.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = None
    driver = Driver(peer)
    results: dict[str, list[float]] = {
        "Stasis->queued": [],
        "accept->bridged": [],
        "socket cut: restore->ready": [],
        "socket cut: restore->caller queued": [],
        "restart: ARI up->ready": [],
        "restart: ARI up->caller queued": [],
    }
    try:
        url = await fresh_database(server_url, DB)
        service = start_service(
            url,
            port,
            {
                "CALLCENTER_API_TOKEN": ADMIN_TOKEN,
                "CALLCENTER_ARI_URL": cutter.url,
                "CALLCENTER_ARI_USER": "callcenter",
                "CALLCENTER_ARI_PASSWORD": peer.password,
                "CALLCENTER_ARI_RECONNECT_MAX_SECONDS": "1",
                "CALLCENTER_SWEEP_SECONDS": "0.2",
            },
        )
        await wait_for(f"{base}/readyz")
        await driver.open()
        load_start = load_average()
        conn = await asyncpg.connect(url)
        http = aiohttp.ClientSession(base_url=base, headers=ADMIN)
        resp = await http.post(
            "/api/agents", json={"name": "ada", "queues": ["general"], "endpoint": PHONE}
        )
        token = (await resp.json())["token"]
        ws = await http.ws_connect(f"/ws/agent?token={token}")

        async def next_of(kind: str) -> dict[str, Any]:
            while True:
                msg: dict[str, Any] = json.loads((await ws.receive(timeout=10)).data)
                if msg["type"] == kind:
                    return msg

        n = 0
        for _ in range(args.runs):
            # Stasis->queued, over several callers a run.
            for _ in range(args.callers):
                n += 1
                results["Stasis->queued"].append(await one_caller(conn, driver, f"1555{n:07d}"))
            await driver.clear()
            # accept->bridged.
            n += 1
            _, caller = await driver.caller(f"1555{n:07d}")
            await until_queued(conn, caller)
            await ws.send_str(json.dumps({"type": "available"}))
            offer = await next_of("offer")
            sent = time.perf_counter()
            await ws.send_str(json.dumps({"type": "accept", "offer_id": offer["offer_id"]}))

            async def bridged(caller: str = caller) -> bool:
                return len(await driver.bridged_with(caller)) == 1

            await poll(bridged, 0.002)
            results["accept->bridged"].append((time.perf_counter() - sent) * 1000)
            call_id = offer["call_id"]
            await ws.send_str(
                json.dumps({"type": "end", "call_id": call_id, "outcome": "completed"})
            )
            await driver.clear()
            await ws.send_str(json.dumps({"type": "offline"}))

            # The ARI socket cut for 1 s.
            cutter.cut()
            await poll(lambda: _status(http, 503), 0.005)
            await asyncio.sleep(1.0)  # the length of the outage being simulated
            cutter.restore()
            restored = time.perf_counter()
            await poll(lambda: _status(http, 200), 0.005)
            results["socket cut: restore->ready"].append((time.perf_counter() - restored) * 1000)
            n += 1
            _, caller = await driver.caller(f"1555{n:07d}")
            await until_queued(conn, caller)
            results["socket cut: restore->caller queued"].append(
                (time.perf_counter() - restored) * 1000
            )
            await driver.clear()

            # Asterisk restarted.
            await asyncio.to_thread(peer.stop)
            await asyncio.to_thread(peer.start)
            up = time.perf_counter()
            await driver.reopen()
            await poll(lambda: _status(http, 200), 0.005)
            results["restart: ARI up->ready"].append((time.perf_counter() - up) * 1000)
            n += 1
            _, caller = await driver.caller(f"1555{n:07d}")
            await until_queued(conn, caller)
            results["restart: ARI up->caller queued"].append((time.perf_counter() - up) * 1000)
            await driver.clear()
        await ws.close()
        await http.close()
        await conn.close()
        pg = await _pg_version(url)
        print(f"\n### Results, {time.strftime('%Y-%m-%d')}\n")
        print(f"`.venv/bin/python benchmarks/ari.py --runs {args.runs} --callers {args.callers}`")
        print(f"on {machine(pg)}; load {load_start} at the start, {load_average()} at the end;")
        print(f"Asterisk started in {', '.join(f'{s:.2f}' for s in peer.start_seconds)} s.\n")
        print("| measure | n | p50 ms | max ms |\n|---|---|---|---|")
        for name, values in results.items():
            print(f"| {name} | {len(values)} | {pct(values, 50):.1f} | {max(values):.1f} |")
    finally:
        await driver.close()
        if service is not None:
            service.terminate()
            service.wait(15)
        await cutter.close()
        peer.stop()
        if server is not None:
            server.stop()


async def _status(http: aiohttp.ClientSession, status: int) -> bool:
    async with http.get("/readyz") as resp:
        return resp.status == status


async def _pg_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        version: str = await conn.fetchval("SHOW server_version")
        return version
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--callers", type=int, default=10, help="Stasis->queued callers a run")
    parser.add_argument("--database-url")
    os.chdir(ROOT)
    asyncio.run(main(parser.parse_args()))
