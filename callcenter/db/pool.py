"""The asyncpg pool, configured for a hot path of short statements."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import asyncpg
import asyncpg.pool


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    # jsonb in and out as Python objects, so rooms never call json.dumps themselves.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, durable: bool = True
) -> asyncpg.Pool[Any]:
    """A pool whose connections decode jsonb and skip the per-acquire reset round trip.

    Plans are left to PostgreSQL's choice. Forcing generic plans saved the
    100 µs that counting the calls ahead spent planning on every enqueue, but a
    generic plan guesses a third of the table for a range on a parameter
    (``connected_at >= $2``, ``ended_at > $3``), which on a long call history
    is a sequential scan where an index range of the last seconds was meant.

    ``durable=False`` gives connections whose commits do not wait for the
    disk (``synchronous_commit = off``), for the router's soft state only:
    see ``Router``. PostgreSQL still never shows a half-done transaction,
    and a later durable commit makes every earlier one durable with it.

    asyncpg's default reset (``RESET ALL; UNLISTEN *; ...``) costs one extra
    round trip on every acquire. Nothing here leaves session state behind, and
    LISTEN runs on its own dedicated connection, never on a pooled one.
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_no_reset,
        command_timeout=30,
        server_settings={} if durable else {"synchronous_commit": "off"},
    )
    assert pool is not None
    return pool


async def _no_reset(conn: asyncpg.Connection[Any]) -> None:
    return None


#: A connection as the rooms take it: a plain one or one borrowed from the pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
