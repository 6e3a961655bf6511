"""Migrations on real databases: fresh, current, newer than the code, raced; and /readyz."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from callcenter.app import create_app
from callcenter.config import Settings
from callcenter.db.migrate import (
    MIGRATION_LOCK_KEY,
    current_version,
    known_migrations,
    latest_version,
    migrate,
)
from callcenter.db.pool import create_pool
from callcenter.errors import DatabaseNewerThanCode
from tests.conftest import ADMIN, with_database

Conn: TypeAlias = "asyncpg.Connection[Any]"
ClientFactory: TypeAlias = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

_TABLES = """
SELECT table_name FROM information_schema.tables
 WHERE table_schema = 'public' ORDER BY table_name
"""


@pytest.fixture
async def empty_url(server_url: str) -> AsyncIterator[str]:
    """A new database with nothing in it, dropped afterwards."""
    name = f"m_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield with_database(server_url, name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def _versions(conn: Conn) -> list[tuple[int, str]]:
    rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    return [(r["version"], r["name"]) for r in rows]


async def _tables(conn: Conn) -> list[str]:
    return [r["table_name"] for r in await conn.fetch(_TABLES)]


async def test_a_fresh_database_gets_every_migration_and_a_second_run_none(
    empty_url: str,
) -> None:
    shipped = [(m.version, m.name) for m in known_migrations()]
    assert shipped and shipped[-1][0] == latest_version()
    conn = await asyncpg.connect(empty_url)
    try:
        assert await current_version(conn) == 0
        assert await _tables(conn) == []
        applied = await migrate(conn)
        assert [(m.version, m.name) for m in applied] == shipped
        assert await _versions(conn) == shipped
        assert await current_version(conn) == latest_version()
        tables = await _tables(conn)
        assert {"customers", "customer_phones", "schema_migrations", "waiting_calls"} <= set(tables)

        assert await migrate(conn) == []
        assert await _versions(conn) == shipped
        assert await _tables(conn) == tables
    finally:
        await conn.close()


async def test_a_database_newer_than_the_code_is_refused_and_left_alone(
    empty_url: str,
) -> None:
    future = latest_version() + 1
    conn = await asyncpg.connect(empty_url)
    try:
        # Migrated by newer code: only the versions table and a version we do not know.
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future')", future
        )
        before = (await _versions(conn), await _tables(conn))

        with pytest.raises(DatabaseNewerThanCode) as raised:
            await migrate(conn)
        assert f"the database is at migration {future}" in raised.value.detail
        assert f"this code knows up to {latest_version()}" in raised.value.detail

        assert (await _versions(conn), await _tables(conn)) == before
        assert await _tables(conn) == ["schema_migrations"]
    finally:
        await conn.close()
    # The refusal let go of the migration lock.
    other = await asyncpg.connect(empty_url)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY)
    finally:
        await other.close()


async def _ready(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/readyz")
    body: dict[str, Any] = await resp.json(content_type=None)
    if resp.status != 200:
        assert resp.content_type == "application/problem+json"
        assert body["status"] == resp.status and body["title"] == "Not ready"
    return resp.status, body


async def test_readyz_is_503_until_the_database_is_at_the_latest_migration(
    aiohttp_client: ClientFactory, empty_url: str, tmp_path: Path
) -> None:
    migrations = known_migrations()
    assert len(migrations) >= 2, "a partly migrated database needs two migrations"
    settings = Settings(database_url=SecretStr(empty_url), data_dir=tmp_path)
    pool = await create_pool(empty_url, min_size=1, max_size=4)
    client = await aiohttp_client(create_app(settings, pool=pool), headers=ADMIN)
    try:
        status, body = await _ready(client)
        assert status == 503
        assert body["detail"] == (
            f"the database is at migration 0, the code expects {latest_version()}"
        )

        # Partly migrated: the first migration only, applied as migrate() would.
        first = migrations[0]
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(first.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                first.version,
                first.name,
            )
        status, body = await _ready(client)
        assert status == 503
        assert body["detail"] == (
            f"the database is at migration {first.version}, the code expects {latest_version()}"
        )

        async with pool.acquire() as conn:
            assert [m.version for m in await migrate(conn)] == [m.version for m in migrations[1:]]
        status, body = await _ready(client)
        assert (status, body) == (200, {"status": "ready", "migration": latest_version()})
    finally:
        await client.close()  # the app leaves an injected pool alone: stop it first
        await pool.close()


async def test_concurrent_migrations_apply_each_migration_once(empty_url: str) -> None:
    shipped = [m.version for m in known_migrations()]
    conns = [await asyncpg.connect(empty_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(m.version for result in results for m in result)
        assert applied == shipped
        # One runner did the work; the others waited for the lock and found nothing to do.
        assert sorted(len(r) for r in results) == [0, 0, len(shipped)]
        assert [v for v, _ in await _versions(conns[0])] == shipped
        # Nobody holds the lock any more.
        held = await conns[0].fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        )
        assert held == 0
    finally:
        for c in conns:
            await c.close()


async def test_a_migration_numbered_below_the_applied_ones_is_still_applied(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Branches merge out of order: a database at 0004 must still get a later-merged 0003."""
    from callcenter.db import migrate as migrate_module
    from callcenter.db.migrate import Migration

    shipped = known_migrations()
    conn = await asyncpg.connect(empty_url)
    try:
        await migrate(conn)
        late = Migration(
            version=max(m.version for m in shipped) - 1 if len(shipped) > 1 else 0,
            name="merged_late",
            sql="CREATE TABLE merged_late (id int)",
        )
        await conn.execute("DELETE FROM schema_migrations WHERE version = $1", late.version)
        with_late = [m for m in shipped if m.version != late.version] + [late]
        monkeypatch.setattr(
            migrate_module, "known_migrations", lambda: sorted(with_late, key=lambda m: m.version)
        )
        applied = await migrate(conn)
        assert [(m.version, m.name) for m in applied] == [(late.version, "merged_late")]
        assert "merged_late" in await _tables(conn)
        assert await migrate(conn) == []
    finally:
        await conn.close()
