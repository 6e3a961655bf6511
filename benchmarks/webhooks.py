"""Webhook benchmark: webhook-to-queued latency and throughput, generic JSON and Twilio.

The service runs as its own process (``callcenter serve``) on the embedded
PostgreSQL (or ``--database-url``), with a generic secret, a Twilio auth
token and a public URL configured, so every request's signature is checked
as in production. This process is the telephony side: ``--clients``
concurrent clients (closed loop: each sends its next request when the last
answered), each repeating one call's life in two webhooks:

* generic: ``call.incoming`` (signed ``Callcenter-Signature``), then
  ``call.hangup`` for the same call id;
* twilio: the voice webhook (a full incoming-call form, signed
  ``X-Twilio-Signature``), then the status callback ``CallStatus=completed``.

The incoming's answer comes back after the call is committed in the queue,
so its round trip is the webhook-to-queued latency; the hang-up keeps the
queue short (the call ends abandoned), so the figures do not drift with a
growing backlog. Throughput counts both webhooks.

Baseline, in the same run with the same load generator: a minimal aiohttp
server (same event loop, ``AppRunner`` like the service) whose handler reads
the body and answers ``{}``. Ratio = ours ÷ baseline, so the figure shows
our overhead rather than the machine. With a Python load generator on the
same cores, the baseline's rate is bounded by the generator as much as by
the server: read the ratio as an upper bound of our overhead.

    .venv/bin/python benchmarks/webhooks.py --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import asyncpg
import common
from common import WORK, fresh_database, pct, serve_app, wait_for

from callcenter.db.embedded import start_embedded
from callcenter.db.lifecycle import tune_embedded
from callcenter.telephony_adapters import signing

DB = "bench_webhooks"
SECRET = "bench-generic-secret"
TOKEN = "bench-twilio-token"
ACCOUNT = "AC" + "0" * 32
PUBLIC = "https://cc.example.com"


def twilio_signature(url: str, params: list[tuple[str, str]]) -> str:
    data = url + "".join(f"{k}{v}" for k, v in sorted(params))
    return base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


# -- what each client sends --------------------------------------------------------

Request = tuple[str, bytes, dict[str, str]]


def generic_pair(n: int) -> tuple[Request, Request]:
    call_id = f"bench-{n}"
    now = int(time.time())
    incoming = json.dumps(
        {"type": "call.incoming", "call_id": call_id, "from": f"+1212555{n % 10000:04d}"}
    ).encode()
    hangup = json.dumps({"type": "call.hangup", "call_id": call_id, "cause": "bench"}).encode()
    path = "/telephony/generic/events"

    def req(body: bytes) -> Request:
        header = signing.header_value([SECRET.encode()], now, body)
        return path, body, {"Content-Type": "application/json", signing.HEADER: header}

    return req(incoming), req(hangup)


def twilio_pair(n: int) -> tuple[Request, Request]:
    sid = f"CA{n:032x}"
    caller = f"+1212555{n % 10000:04d}"
    base = [
        ("AccountSid", ACCOUNT), ("ApiVersion", "2010-04-01"), ("CallSid", sid),
        ("Called", "+14155550100"), ("Caller", caller), ("Direction", "inbound"),
        ("From", caller), ("FromCountry", "US"), ("To", "+14155550100"), ("ToCountry", "US"),
    ]  # fmt: skip

    def req(path: str, params: list[tuple[str, str]]) -> Request:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(PUBLIC + path, params),
        }
        return path, urlencode(params).encode(), headers

    return (
        req("/telephony/twilio/voice", [*base, ("CallStatus", "ringing")]),
        req("/telephony/twilio/status", [*base, ("CallStatus", "completed")]),
    )


def noop_pair(n: int) -> tuple[Request, Request]:
    a, b = generic_pair(n)
    return ("/noop", a[1], a[2]), ("/noop", b[1], b[2])


TARGETS: dict[str, Callable[[int], tuple[Request, Request]]] = {
    "noop": noop_pair,
    "generic": generic_pair,
    "twilio": twilio_pair,
}


@dataclass
class Result:
    incoming_ms: list[float] = field(default_factory=list)
    hangup_ms: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def drive(
    base: str, make: Callable[[int], tuple[Request, Request]], clients: int, warmup: float,
    duration: float, counter: itertools.count[int],
) -> Result:  # fmt: skip
    """``clients`` closed loops for ``warmup + duration`` s; only the last ``duration`` counts."""
    result = Result()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()
        measure_from = start + warmup
        stop = measure_from + duration

        async def send(req: Request) -> float | None:
            path, body, headers = req
            t0 = time.perf_counter()
            async with http.post(base + path, data=body, headers=headers) as resp:
                await resp.read()
                ok = resp.status == 200
                if not ok and len(result.samples) < 3:
                    result.samples.append(f"{resp.status} {(await resp.text())[:120]}")
            elapsed = (time.perf_counter() - t0) * 1000
            if t0 >= measure_from:
                result.requests += 1
                if not ok:
                    result.errors += 1
            return elapsed if ok else None

        async def client() -> None:
            while time.perf_counter() < stop:
                incoming, hangup = make(next(counter))
                t0 = time.perf_counter()
                first = await send(incoming)
                second = await send(hangup)
                if t0 >= measure_from:
                    if first is not None:
                        result.incoming_ms.append(first)
                    if second is not None:
                        result.hangup_ms.append(second)

        await asyncio.gather(*(client() for _ in range(clients)))
        result.seconds = time.perf_counter() - measure_from
    return result


# -- the servers -----------------------------------------------------------------------


def serve_noop(port: int) -> None:
    """The baseline server: read the body, answer ``{}``, nothing else."""
    from aiohttp import web

    async def noop(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/noop", noop)
    serve_app(app, port)


def start_service(url: str, port: int) -> subprocess.Popen[bytes]:
    secrets = {
        "CALLCENTER_GENERIC_WEBHOOK_SECRET": SECRET,
        "CALLCENTER_TWILIO_AUTH_TOKEN": TOKEN,
        "CALLCENTER_PUBLIC_URL": PUBLIC,
    }
    return common.start_service(url, port, secrets)


def start_noop(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--serve-noop", str(port)])


async def main(args: argparse.Namespace) -> None:
    server = None
    if args.database_url:
        server_url = args.database_url
    else:
        server = start_embedded(WORK / "pgdata-webhooks")
        await tune_embedded(server)  # as `callcenter serve` does
        server_url = server.url()
    service = noop = None
    try:
        url = await fresh_database(server_url, DB)
        service = start_service(url, args.port)
        noop = start_noop(args.port + 1)
        await wait_for(f"http://127.0.0.1:{args.port}/readyz")
        await wait_for(f"http://127.0.0.1:{args.port + 1}/noop", lambda s: s == 405)
        load_start = os.getloadavg()[0]
        counter = itertools.count()
        results: dict[str, Result] = {}
        # Interleaved rounds, so every target sees the same machine over the run.
        for _ in range(args.rounds):
            for name in args.targets:
                port = args.port + 1 if name == "noop" else args.port
                r = await drive(
                    f"http://127.0.0.1:{port}", TARGETS[name], args.clients, args.warmup,
                    args.duration / args.rounds, counter,
                )  # fmt: skip
                total = results.setdefault(name, Result())
                total.incoming_ms += r.incoming_ms
                total.hangup_ms += r.hangup_ms
                total.requests += r.requests
                total.errors += r.errors
                total.samples += r.samples
                total.seconds += r.seconds
        conn = await asyncpg.connect(url)
        rows = await conn.fetch(
            "SELECT split_part(external_id, ':', 1) AS peer, state, count(*) AS n "
            "FROM calls GROUP BY 1, 2 ORDER BY 1, 2"
        )
        waiting = await conn.fetchval("SELECT count(*) FROM waiting_calls")
        version = await conn.fetchval("SHOW server_version")
        await conn.close()

        print(f"\n## Webhooks, {time.strftime('%Y-%m-%d')}\n")
        print(f"command: `.venv/bin/python benchmarks/webhooks.py {' '.join(sys.argv[1:])}`")
        print(
            f"machine: {common.machine(version)}; service, baseline and load generator "
            "on the same machine; "
            f"load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end\n"
        )
        print(
            f"{args.clients} concurrent clients, closed loop, {args.duration:g} s measured per "
            f"target in {args.rounds} interleaved rounds (each after {args.warmup:g} s of "
            "warm-up)\n"
        )
        print(
            "| target | incoming p50 / p99 ms | hang-up p50 / p99 ms | webhooks/s | errors "
            "| p50 ratio | rate ratio |"
        )
        print("|---|---|---|---|---|---|---|")
        base = results.get("noop")
        for name, r in results.items():
            if not r.incoming_ms:
                print(f"| {name} | no answers | | | {r.errors} {r.samples} | | |")
                continue
            rate = r.requests / r.seconds if r.seconds else 0.0
            p50 = pct(r.incoming_ms, 50)
            ratios = "| |"
            if base is not None and base.incoming_ms and base.seconds:
                base_rate = base.requests / base.seconds
                ratios = f"| {p50 / pct(base.incoming_ms, 50):.1f}× | {rate / base_rate:.2f} |"
            print(
                f"| {name} | {p50:.2f} / {pct(r.incoming_ms, 99):.2f} | "
                f"{pct(r.hangup_ms, 50):.2f} / {pct(r.hangup_ms, 99):.2f} | {rate:.0f} | "
                f"{r.errors} {r.samples or ''} {ratios}"
            )
        print(
            "\ncalls stored by peer and state (warm-up included): "
            + ", ".join(f"{r['peer']} {r['state']} {r['n']}" for r in rows)
            + f"; still waiting {waiting}"
        )
    finally:
        for proc in (service, noop):
            if proc is not None:
                proc.terminate()
                proc.wait(20)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-noop":
        serve_noop(int(sys.argv[2]))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30, help="measured seconds per target")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--targets", nargs="+", default=["noop", "generic", "twilio"],
                        choices=sorted(TARGETS))  # fmt: skip
    parser.add_argument("--port", type=int, default=18281, help="service; the baseline: +1")
    parser.add_argument("--database-url")
    parsed = parser.parse_args()
    runner: Callable[[argparse.Namespace], Awaitable[None]] = main
    try:
        import uvloop

        uvloop.run(runner(parsed))
    except ImportError:
        asyncio.run(runner(parsed))
