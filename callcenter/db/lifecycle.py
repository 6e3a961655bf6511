"""Bring the database up for a process: embedded server or URL, migrations, pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from callcenter.config import Settings
from callcenter.db.embedded import EmbeddedPostgres, start_embedded
from callcenter.db.migrate import migrate
from callcenter.db.pool import create_pool

_log = logging.getLogger(__name__)


@asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The configured URL, or an embedded server's (started here, stopped on exit)."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    server: EmbeddedPostgres = await asyncio.to_thread(start_embedded, settings.pgdata)
    try:
        await tune_embedded(server)
        yield server.url()
    finally:
        await asyncio.to_thread(server.stop)


def memory_bytes() -> int | None:
    """The memory this process may use: the machine's, or its container's limit if lower."""
    known: list[int] = []
    with contextlib.suppress(AttributeError, ValueError, OSError):  # not POSIX, or it won't say
        known.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            known.append(int(text))
    return min(known) if known else None


def shared_buffers_mb(memory: int | None) -> int:
    """A quarter of ``memory``, between 128 MB (PostgreSQL's default) and 2 GB."""
    if memory is None:
        return 128
    return max(128, min(2048, memory // 4 // 2**20))


def embedded_settings(buffers_mb: int) -> dict[str, str]:
    """Server settings for the embedded PostgreSQL that a hot queue needs.

    ``autovacuum_naptime``: the per-table autovacuum thresholds in the
    migrations only help if the launcher looks often; with the default minute
    a busy queue's tables collect tens of thousands of dead rows between two
    looks and every claim wades through them.

    ``shared_buffers``: PostgreSQL's default is 128 MB, and a day's calls,
    offers and contacts outgrow it within minutes at 200 calls/s (the routing
    benchmark's database reached 129 MB in ten); from then on every statement
    copies pages in from the OS cache and the latency per call climbs. A
    quarter of the memory, as PostgreSQL's own tuning advice goes; a
    container's limit counts, not the host's. (On your own server, set both
    the same way.)
    """
    return {"autovacuum_naptime": "5s", "shared_buffers": f"{buffers_mb}MB"}


async def tune_embedded(server: EmbeddedPostgres) -> None:
    """Apply ``embedded_settings``, restarting the server once if its buffers differ.

    The restart is decided by comparing the running server's buffers with
    the target, so a second process on the same data folder (``callcenter
    migrate`` beside ``serve``) finds nothing to do and never restarts it.
    """
    buffers_mb = shared_buffers_mb(memory_bytes())
    conn = await asyncpg.connect(server.url())
    try:
        for name, value in embedded_settings(buffers_mb).items():
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
        running = await conn.fetchval(
            "SELECT setting::bigint * pg_size_bytes(unit) FROM pg_settings"
            " WHERE name = 'shared_buffers'"
        )
    finally:
        await conn.close()
    if running != buffers_mb * 2**20:
        _log.info("restarting the embedded PostgreSQL for its new shared_buffers")
        await asyncio.to_thread(server.restart)


async def run_migrations(dsn: str) -> int:
    """Apply pending migrations; return how many ran."""
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    for m in applied:
        _log.info("migrated to %04d_%s", m.version, m.name)
    return len(applied)


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A migrated database's pool for the life of the block."""
    async with database_url(settings) as dsn:
        if settings.migrate_on_start:
            await run_migrations(dsn)
        pool = await create_pool(
            dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size
        )
        try:
            yield pool
        finally:
            await pool.close()
