"""What the benchmark scripts share: a fresh database, the service as a process, figures."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".work"
sys.path.insert(0, str(ROOT))

from callcenter.db.migrate import migrate


def run_loop(coro: Awaitable[Any]) -> Any:
    """``coro`` to its end on uvloop, as ``callcenter serve`` runs (asyncio's loop without it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    # Outside the try: an ImportError raised by ``coro`` itself is its own failure,
    # not a reason to run the finished coroutine a second time on asyncio.
    return uvloop.run(coro)  # type: ignore[arg-type]


def serve_app(app: aiohttp.web.Application, port: int) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` until the process is stopped: the body of a
    baseline server's child process (the do-nothing webhook, the websocket echo)."""

    async def run() -> None:
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    run_loop(run())


async def wait_port(port: int) -> None:
    """Until something listens on 127.0.0.1:``port`` (a child server that has started)."""
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def fresh_database(server_url: str, name: str) -> str:
    """An empty, migrated database ``name`` on the server; returns its URL."""
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = server_url.replace("/postgres?", f"/{name}?", 1)
    conn = await asyncpg.connect(url)
    await migrate(conn)
    await conn.close()
    return url


#: The bootstrap admin token the benchmarks' services run with (the API is closed by default).
BENCH_TOKEN = "benchmark-admin-token"
#: What every API request of a load generator carries.
AUTH = {"Authorization": f"Bearer {BENCH_TOKEN}"}


def start_service(
    url: str, port: int, extra_env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``callcenter serve`` as its own process on database ``url``."""
    env = os.environ | {
        "CALLCENTER_DATABASE_URL": url,
        "CALLCENTER_PORT": str(port),
        "CALLCENTER_LOG_LEVEL": "WARNING",
        "CALLCENTER_POOL_MAX_SIZE": "20",
        "CALLCENTER_API_TOKEN": BENCH_TOKEN,
        **(extra_env or {}),
    }
    return subprocess.Popen([sys.executable, "-m", "callcenter", "serve"], env=env)


async def wait_for(url: str, ok: Callable[[int], bool] = lambda status: status == 200) -> None:
    """Until ``url`` answers a status that ``ok`` accepts (30 s at most)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(url) as resp:
                    if ok(resp.status):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def wait_ready(base: str) -> None:
    await wait_for(f"{base}/readyz")


def machine(pg_version: str) -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if "model name" in ln), "?")
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {pg_version}"
    )


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` and of its children that
    exited and were reaped, so far (Linux ``/proc``); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    # After the command, state is field 3: utime, stime, cutime, cstime are fields 14-17.
    return sum(int(f) for f in fields[11:15]) / _TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants, living or reaped (a postmaster,
    its backends and the autovacuum workers that came and went)."""
    total = process_cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return total
    return total + sum(tree_cpu_seconds(int(c)) for c in children)


def postmaster_pid(pgdata: Path) -> int | None:
    """The running postmaster of the cluster in ``pgdata``, from its ``postmaster.pid``."""
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
