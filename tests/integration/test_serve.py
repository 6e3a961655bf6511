"""The README's first command, as a user runs it: a fresh data folder, the
embedded PostgreSQL, /readyz, Ctrl-C, and a second start that keeps the data."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import psutil

from tests.conftest import ADMIN, ADMIN_TOKEN


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(data_dir: Path, port: int) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env |= {
        "CALLCENTER_DATA_DIR": str(data_dir),
        "CALLCENTER_PORT": str(port),
        "CALLCENTER_API_TOKEN": ADMIN_TOKEN,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callcenter",
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _wait_ready(session: aiohttp.ClientSession, base: str, deadline_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        try:
            async with session.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return time.monotonic() - started
        except (aiohttp.ClientError, TimeoutError):
            # serve takes its port before the database starts: until the app runs, a
            # request waits in the backlog, and on a busy machine outlasts the session's
            # 5 s timeout. Not ready yet, as a refused connection is.
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz did not answer 200 within {deadline_s} s")


def _postgres_running_in(pgdata: Path) -> bool:
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or []):
            return True
    return False


async def _interrupt(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_serve_starts_embedded_database_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), headers=ADMIN
    ) as session:
        proc = await _start(data_dir, port)
        try:
            await _wait_ready(session, base, 15)
            created = await session.post(
                f"{base}/api/customers",
                json={"customer_number": "C-SERVE", "phones": ["(212) 555-0100"]},
            )
            assert created.status == 201
        finally:
            if proc.returncode is None:
                out = await _interrupt(proc)
        assert "stopping" in out
        assert not _postgres_running_in(data_dir / "pgdata")

        proc = await _start(data_dir, port)
        try:
            await _wait_ready(session, base, 15)
            found = await session.get(f"{base}/api/customers", params={"phone": "+12125550100"})
            body = await found.json()
            assert [c["customer_number"] for c in body["customers"]] == ["C-SERVE"]
        finally:
            if proc.returncode is None:
                await _interrupt(proc)
        assert not _postgres_running_in(data_dir / "pgdata")
