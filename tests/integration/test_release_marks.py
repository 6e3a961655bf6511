"""The releases a releaser carried out are written a window at a time (issue 21).

``release_marks.ReleaseMarks`` writes the marks (``released`` or ``gone``) of
one window in one statement. These tests hold that every mark lands on its
own row with its own values, only on the claimer's own claims, that a write
the database refuses keeps its marks for the next, that a running writer
takes what one window brings in one statement, and that a releaser's stop
writes what is left (the whole app, a real release at the fake PBX).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from callcenter import app_keys
from callcenter.db.pool import create_pool
from callcenter.telephony_adapters.release_marks import ReleaseMarks
from tests.conftest import AppFactory
from tests.integration.queue_helpers import FAST, eventually
from tests.integration.telephony_fakes import GENERIC_SECRET, FakePBX, post_generic
from tests.integration.test_router import BASE, _add_call

ME = "host:1:mine"
OTHER = "host:2:theirs"


async def _claimed(pool: asyncpg.Pool[Any], n: int, claimer: str, first: int = 0) -> list[int]:
    """``n`` calls whose releases ``claimer`` holds."""
    ids = []
    async with pool.acquire() as conn:
        for i in range(first, first + n):
            call_id = await _add_call(conn, i, BASE + timedelta(seconds=i), 0.0)
            await conn.execute(
                "INSERT INTO call_releases (call_id, state, claimed_by, lease_until)"
                " VALUES ($1, 'claimed', $2, now() + interval '1 minute')",
                call_id,
                claimer,
            )
            ids.append(call_id)
    return ids


async def _rows(pool: asyncpg.Pool[Any], ids: list[int]) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT call_id, state, note, attempts, last_error, done_at, claimed_by"
        " FROM call_releases WHERE call_id = ANY($1) ORDER BY call_id",
        ids,
    )


async def test_one_statement_writes_each_mark_on_its_own_row(pool: asyncpg.Pool[Any]) -> None:
    mine = await _claimed(pool, 40, ME)
    theirs = await _claimed(pool, 2, OTHER, first=40)
    marks = ReleaseMarks(pool, ME)
    for n, call_id in enumerate(mine):
        if n % 2:
            marks.add(call_id, "gone", "no such call", f"why {n}")
        else:
            marks.add(call_id, "released", None, f"why {n}")
    marks.add(theirs[0], "released", None, "not mine to mark")  # another claimer's
    assert marks.pending == 41

    assert await marks.write() == 41
    assert (marks.statements, marks.written, marks.pending) == (1, 41, 0)
    rows = await _rows(pool, mine)
    for n, row in enumerate(rows):
        assert row["state"] == ("gone" if n % 2 else "released")
        assert row["note"] == f"why {n}" and row["attempts"] == 1
        assert row["last_error"] == ("no such call" if n % 2 else None)
        assert row["done_at"] is not None
    # The marks keep the order they were carried out in, as their times say.
    done = [r["done_at"] for r in rows]
    assert done == sorted(done)
    # Only the claimer's own claims are marked.
    assert [r["state"] for r in await _rows(pool, theirs)] == ["claimed", "claimed"]
    assert await marks.write() == 0 and marks.statements == 1  # nothing pending: no statement


async def test_a_write_the_database_refuses_keeps_its_marks(
    pool: asyncpg.Pool[Any], db_url: str
) -> None:
    ids = await _claimed(pool, 3, ME)
    gone = await create_pool(db_url, min_size=1, max_size=1)
    await gone.close()
    refused = ReleaseMarks(gone, ME)
    for call_id in ids:
        refused.add(call_id, "released", None, "ended on our side")
    with pytest.raises(asyncpg.InterfaceError):
        await refused.write()
    assert refused.pending == 3 and refused.written == 0
    # The same marks, written on a pool that works, in the order they were added.
    refused.pool = pool
    assert await refused.write() == 3
    assert [r["state"] for r in await _rows(pool, ids)] == ["released"] * 3


async def test_what_a_peer_said_that_cannot_be_stored_is_stored_cleaned(
    pool: asyncpg.Pool[Any],
) -> None:
    """A PBX's answer may hold a NUL (its body, decoded with replacement): the mark
    keeps the rest of it, and the window's other marks are written with it."""
    bad, good = await _claimed(pool, 2, ME)
    marks = ReleaseMarks(pool, ME)
    marks.add(bad, "gone", "410 from the PBX: no such call\x00\ud800", "ended on our side")
    marks.add(good, "released", None, "ended on our side")
    assert await marks.write() == 2 and marks.statements == 1
    rows = await _rows(pool, [bad, good])
    assert [r["state"] for r in rows] == ["gone", "released"]
    assert rows[0]["last_error"] == "410 from the PBX: no such call\ufffd\ufffd"


async def test_a_mark_the_database_refuses_is_dropped_alone(pool: asyncpg.Pool[Any]) -> None:
    """A value the database refuses (here a time out of its range) fails the batch: the
    marks are then written one by one, and only the refused one is dropped."""
    first, bad, last = await _claimed(pool, 3, ME)
    marks = ReleaseMarks(pool, ME)
    for call_id in (first, bad, last):
        marks.add(call_id, "released", None, "ended on our side")
    marks._pending[1] = replace(marks._pending[1], at=-1e300)  # done "1e300 s ago"
    assert await marks.write() == 2
    assert (marks.written, marks.dropped, marks.pending) == (2, 1, 0)
    states = [r["state"] for r in await _rows(pool, [first, bad, last])]
    assert states == ["released", "claimed", "released"]


async def test_a_running_writer_takes_a_windows_marks_in_one_statement(
    pool: asyncpg.Pool[Any],
) -> None:
    ids = await _claimed(pool, 5, ME)
    marks = ReleaseMarks(pool, ME, window_seconds=0.05)
    task = asyncio.create_task(marks.run())
    try:
        for call_id in ids:  # all within one window: added before the writer wakes
            marks.add(call_id, "released", None, "ended on our side")

        async def written() -> bool:
            return marks.written == 5

        await eventually(written)
        assert marks.statements == 1
    finally:
        task.cancel()
    assert [r["state"] for r in await _rows(pool, ids)] == ["released"] * 5


async def test_a_releasers_stop_writes_the_marks_left(
    app_factory: AppFactory,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    pool: asyncpg.Pool[Any],
) -> None:
    pbx = FakePBX()
    server = await aiohttp_server(pbx.app(), host="127.0.0.1")
    client = await app_factory(
        **FAST,
        generic_webhook_secret=SecretStr(GENERIC_SECRET),
        generic_callback_url=str(server.make_url("/pbx/commands")),
    )
    releaser = client.app[app_keys.RELEASER]
    releaser.marks.window_seconds = 3600.0  # no window ends within the test: only the stop
    event = {"type": "call.incoming", "call_id": "pbx-1", "from": "+12125550101"}
    status, reply = await post_generic(client, json.dumps(event).encode())
    assert status == 200, reply
    call_id = reply["call"]["id"]
    resp = await client.post(f"/api/calls/{call_id}/end", json={"outcome": "abandoned"})
    assert resp.status == 200, await resp.text()

    async def hung_up() -> bool:
        return any(c["action"] == "hangup" for c in pbx.commands) and releaser.marks.pending == 1

    await eventually(hung_up)
    (row,) = await _rows(pool, [call_id])
    assert row["state"] == "claimed"  # carried out, not written yet
    await client.close()  # the app stops, and its releaser with it
    (row,) = await _rows(pool, [call_id])
    assert row["state"] == "released"
    assert row["done_at"] < datetime.now(UTC)
