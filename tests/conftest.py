"""Test harness: a real PostgreSQL, a migrated template, a fresh clone per test.

By default the session starts the embedded PostgreSQL in a temporary folder;
``CALLCENTER_TEST_DATABASE_URL`` points the tests at another server instead
(the URL's user must be allowed to create databases).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from callcenter.app import create_app
from callcenter.config import Settings
from callcenter.customers.store import CustomerRules
from callcenter.db import pool as db_pool
from callcenter.db.migrate import migrate
from callcenter.db.pool import create_pool
from tests.integration.statement_log import StatementLog

TEMPLATE = "callcenter_template"


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("CALLCENTER_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from callcenter.db.embedded import start_embedded

    server = start_embedded(Path(tmp_path_factory.mktemp("pg")) / "pgdata")
    try:
        yield server.url()
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def template_url(server_url: str) -> str:
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    url = with_database(server_url, TEMPLATE)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


@pytest.fixture
async def db_url(server_url: str, template_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        yield with_database(server_url, name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    p = await create_pool(db_url, min_size=1, max_size=8)
    try:
        yield p
    finally:
        await p.close()


#: The bootstrap admin token of the tests' services; ``client`` sends it unless told otherwise.
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,  # type: ignore[arg-type]
        data_dir=tmp_path,
        api_token=ADMIN_TOKEN,  # type: ignore[arg-type]
    )


@pytest.fixture
def rules(settings: Settings) -> CustomerRules:
    return CustomerRules.from_settings(settings)


@pytest.fixture
async def client(
    settings: Settings,
    pool: asyncpg.Pool[Any],
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
) -> TestClient[Any, Any]:
    # The database fixtures come first so they are torn down last, after the app.
    return await aiohttp_client(create_app(settings, pool=pool), headers=ADMIN)


AppFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def app_factory(
    settings: Settings,
    pool: asyncpg.Pool[Any],
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
) -> AppFactory:
    """Start an app on the test database with some settings changed (fast clocks, say).

    Each call is another service instance on the same database, as behind a load balancer.
    """

    async def start(
        *, headers: dict[str, str] | None = None, **changes: Any
    ) -> TestClient[Any, Any]:
        app = create_app(settings.model_copy(update=changes), pool=pool)
        return await aiohttp_client(app, headers=ADMIN if headers is None else headers)

    return start


@pytest.fixture
async def counted(monkeypatch: pytest.MonkeyPatch) -> StatementLog:
    """Every pool opened from now on logs its connections' statements here, named
    (``statement_log``): the round trips a test counts."""
    log = StatementLog()
    original = db_pool._init_connection

    async def init(conn: asyncpg.Connection[Any]) -> None:
        await original(conn)
        conn.add_query_logger(log.record)

    monkeypatch.setattr(db_pool, "_init_connection", init)
    return log
