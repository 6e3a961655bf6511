"""The wrap-up of a call whose panel this instance built, stored without reading the call.

``finish_wrap_up`` (migration 0026) rechecks under the locks everything the
read before it gave, so that a wrap-up checked against a guess of it can
never be stored unchecked: here, that the call has ended, within the window.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from callcenter.agent_assist.desk.wrap_up import WRAP_UP_WINDOW
from tests.conftest import AppFactory
from tests.integration.test_finish_wrap_up import SERVICE, _finish, _left, _wrapping_up


async def test_a_connected_call_is_never_wrapped_up_by_the_function_alone(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """The guess says the call ended; finish_wrap_up finds it connected: nothing written."""
    w = await _wrapping_up(await app_factory(**SERVICE))
    await pool.execute(
        "UPDATE calls SET state = 'connected', ended_at = NULL WHERE id = $1", w.call_id
    )
    before = await _left(pool, w)
    assert await _finish(pool, w, "yes") == "changed"
    assert await _left(pool, w) == before


async def test_a_call_ended_too_long_ago_is_never_wrapped_up_by_the_function_alone(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    w = await _wrapping_up(await app_factory(**SERVICE))
    await pool.execute(
        "UPDATE calls SET ended_at = now() - $2::interval - interval '1 second' WHERE id = $1",
        w.call_id,
        WRAP_UP_WINDOW,
    )
    before = await _left(pool, w)
    assert await _finish(pool, w, "yes") == "changed"
    assert await _left(pool, w) == before


async def test_the_wrap_up_window_is_the_same_in_sql_and_python(pool: asyncpg.Pool[Any]) -> None:
    assert await pool.fetchval("SELECT wrap_up_window()") == WRAP_UP_WINDOW
