"""The embedded server gets the settings a hot queue needs, restarting only when it must."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import psutil

from callcenter.db.embedded import start_embedded
from callcenter.db.lifecycle import memory_bytes, shared_buffers_mb, tune_embedded


def test_buffers_are_a_quarter_of_memory_within_bounds() -> None:
    assert shared_buffers_mb(None) == 128
    assert shared_buffers_mb(256 * 2**20) == 128
    assert shared_buffers_mb(4 * 2**30) == 1024
    assert shared_buffers_mb(64 * 2**30) == 2048
    found = memory_bytes()
    assert found is not None and found > 0


async def _state(url: str) -> tuple[str, str, object]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT current_setting('shared_buffers') AS buffers,"
            " current_setting('autovacuum_naptime') AS naptime,"
            " pg_postmaster_start_time() AS started"
        )
        assert row is not None
        return row["buffers"], row["naptime"], row["started"]
    finally:
        await conn.close()


async def test_tuning_applies_once_and_then_leaves_the_server_running(tmp_path: Path) -> None:
    server = start_embedded(tmp_path / "pgdata")
    try:
        await tune_embedded(server)
        buffers, naptime, started = await _state(server.url())
        target = shared_buffers_mb(memory_bytes())
        expected = f"{target // 1024}GB" if target % 1024 == 0 else f"{target}MB"
        assert (buffers, naptime) == (expected, "5s")
        # A second process on the same folder (migrate beside serve) finds
        # nothing to change and does not restart the server under the first.
        await tune_embedded(server)
        assert (await _state(server.url()))[2] == started
    finally:
        server.stop()


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(pgdata) in " ".join(p.info["cmdline"] or [])
    ]


def test_a_process_killed_earlier_does_not_keep_the_server_from_stopping(
    tmp_path: Path,
) -> None:
    pgdata = tmp_path / "pgdata"
    start_embedded(pgdata).stop()
    # A process that used the server and was killed: its pid stays in the
    # wheel's list of handles, and the wheel stops the server only when the
    # list is down to the last process.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (pgdata / ".handle_pids.json").write_text(json.dumps([gone.pid]))
    server = start_embedded(pgdata)
    try:
        assert _postmasters(pgdata.resolve())
        server.stop()
        assert not _postmasters(pgdata.resolve())
    finally:  # never leave a server behind, even when the test fails
        for postmaster in _postmasters(pgdata.resolve()):
            postmaster.kill()
