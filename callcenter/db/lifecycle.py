"""Bring the database up for a process: embedded server or URL, migrations, pool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
        await tune_embedded(server.url())
        yield server.url()
    finally:
        await asyncio.to_thread(server.stop)


#: Server settings for the embedded PostgreSQL that a hot queue needs. The
#: per-table autovacuum thresholds in the migrations only help if the launcher
#: looks often: with the default minute, a busy queue's tables collect tens of
#: thousands of dead rows between two looks and every claim wades through them.
#: (On your own server, set autovacuum_naptime the same way.)
EMBEDDED_SETTINGS = {"autovacuum_naptime": "5s"}


async def tune_embedded(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for name, value in EMBEDDED_SETTINGS.items():
            if await conn.fetchval("SELECT current_setting($1)", name) != value:
                await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


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
