"""PostgreSQL restarted under load, several times: offers resume and /readyz comes back.

Restarting PostgreSQL while calls and offers flow once killed the router's
dispatcher for good in 2 of 8 tries (asyncpg's ``InternalClientError`` on a
pooled connection meeting a backend that was shutting down): no call was
offered again and ``/readyz`` stayed 503. The race is intermittent, so the
server is restarted several times while calls arrive and agents take them.

This test has its own embedded server (the session's is shared by every
other test, which must not see it go away).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from callcenter import app_keys
from callcenter.app import create_app
from callcenter.config import Settings
from callcenter.db.embedded import EmbeddedPostgres, start_embedded
from callcenter.db.migrate import migrate
from callcenter.db.pool import create_pool
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.integration.queue_helpers import FAST, Panel, eventually, make_agent, make_queue

RESTARTS = 8
AGENTS = 6


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    """An embedded PostgreSQL for this test alone, migrated, stopped afterwards."""
    server = await asyncio.to_thread(start_embedded, tmp_path / "pgdata")
    try:
        conn = await asyncpg.connect(server.url())
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def _agent(
    client: TestClient[Any, Any], token: str, served: set[int], stop: asyncio.Event
) -> None:
    """A scripted agent that takes every call offered and ends it at once.

    It acts on each ``state`` it is pushed; when nothing comes for a while (a
    reply lost while the database was down), it acts again on the last state.
    Like the agent page, it reconnects when its socket is closed.
    """
    panel: Panel | None = None
    last: dict[str, Any] | None = None
    while not stop.is_set():
        if panel is None or panel.ws.closed:
            try:
                panel = await Panel.open(client, token)
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)  # refused while the database is down; a panel retries
                continue
            await panel.send(type="available")
        try:
            message: dict[str, Any] | None = await panel.next(timeout=0.5)
        except TimeoutError:
            message = None
        except AssertionError:  # the socket closed: reconnect
            continue
        if message is not None and message["type"] == "state":
            last = message
        elif message is not None and message["type"] != "error":
            continue
        if last is None:
            continue
        state = last["agent"]["state"]
        if state == "offered" and last["offer"] is not None:
            await panel.send(type="accept", offer_id=last["offer"]["offer_id"])
        elif state == "on_call" and last["call"] is not None:
            served.add(last["call"]["id"])
            await panel.send(type="end", call_id=last["call"]["id"], outcome="completed")
        elif state in ("wrap_up", "not_responding", "offline"):
            await panel.send(type="available")
    if panel is not None:
        await panel.close()


async def _callers(client: TestClient[Any, Any], accepted: list[str], stop: asyncio.Event) -> None:
    """Calls arriving all the time; the ones the service acknowledged are remembered."""
    n = 0
    while not stop.is_set():
        n += 1
        with contextlib.suppress(OSError, TimeoutError):
            resp = await client.post("/api/calls", json={"call_id": f"pbx-{n}", "queue": "general"})
            if resp.status in (200, 201):
                accepted.append(f"pbx-{n}")
        await asyncio.sleep(0.01)


async def test_offers_resume_and_readyz_recovers_after_postgresql_restarts(
    own_server: EmbeddedPostgres,
    tmp_path: Path,
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
) -> None:
    url = own_server.url()
    settings = Settings(
        database_url=url,  # type: ignore[arg-type]
        data_dir=tmp_path,
        api_token=ADMIN_TOKEN,  # type: ignore[arg-type]
    )
    # A long grace: the agents' presence must outlive the restarts, or they go offline.
    settings = settings.model_copy(update=FAST | {"agent_grace_seconds": 60.0})
    pool = await create_pool(url, min_size=1, max_size=8)
    stop = asyncio.Event()
    workers: list[asyncio.Task[None]] = []
    try:
        client = await aiohttp_client(create_app(settings, pool=pool), headers=ADMIN)
        router = client.app[app_keys.ROUTER]
        await make_queue(client, "general", wrap_up_seconds=0, offer_timeout_seconds=2)
        served: set[int] = set()
        for i in range(AGENTS):
            _, token = await make_agent(client, f"agent-{i}")
            workers.append(asyncio.create_task(_agent(client, token, served, stop)))
        accepted: list[str] = []
        workers.append(asyncio.create_task(_callers(client, accepted, stop)))

        async def ready() -> bool:
            return (await client.get("/readyz")).status == 200

        async def more_offers(than: int) -> bool:
            return router.offers_made > than + 3

        async def more_served(than: int) -> bool:
            return len(served) > than + 3

        for _ in range(RESTARTS):
            await eventually(functools.partial(more_offers, router.offers_made), timeout=60)
            await asyncio.to_thread(own_server.restart)
            # Offers resume, agents take calls again, and the service says it is ready.
            await eventually(functools.partial(more_offers, router.offers_made), timeout=60)
            await eventually(functools.partial(more_served, len(served)), timeout=60)
            await eventually(ready, timeout=60)

        stop.set()
        await asyncio.gather(*workers)
        assert router.failure is None
        # No acknowledged call was lost.
        async with pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT count(*) FROM calls WHERE external_id = ANY($1)",
                accepted,
            )
        assert found == len(accepted)
    finally:
        stop.set()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await pool.close()
