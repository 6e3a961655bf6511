"""The wrap-up of a call whose panel this instance built, stored without reading the call.

The hub keeps what the panel showed (the call, its customer, the question)
while its pushed state is the call's wrap-up, and the desk checks the answer
against that and calls ``finish_wrap_up`` alone (migration 0026). Here: that
takes no read, and each way the guess can be wrong (an answer stored on the
call, a merge, another caller picked, the call taken back, an end too long
ago, a wrap-up stored elsewhere, a retry, the clock's end of the wrap-up)
gives the agent what the read always gave, with nothing written unchecked;
and that the function itself refuses a call still connected or ended too long
ago, the two things only the read had checked before. The statements are
counted on the instance's own pool, as the statement budget counts them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from callcenter import app_keys
from callcenter.agent_assist.desk.wrap_up import WRAP_UP_WINDOW, Shown, WrapUpDesk
from callcenter.agent_assist.protocol import WrapUp
from callcenter.app import create_app
from callcenter.config import Settings
from callcenter.db import pool as db_pool
from tests.conftest import ADMIN, AppFactory
from tests.integration.queue_helpers import (
    enqueue,
    eventually,
)
from tests.integration.statement_log import StatementLog
from tests.integration.test_finish_wrap_up import (
    PHONE,
    SERVICE,
    WrappingUp,
    _another_caller,
    _answer_on_the_call,
    _finish,
    _left,
    _merge,
    _taken_back,
    _wrapping_up,
)

#: The desk's two statements, by their names in the statement log.
DESK = {"desk/wrap_up:wrap_up_call", "desk/wrap_up:finish_wrap_up"}


@dataclass
class Counted:
    """A service instance whose pooled connections log every statement they complete."""

    client: TestClient[Any, Any]
    log: StatementLog

    @property
    def queries(self) -> list[tuple[str, str]]:
        return self.log.seen

    def desk_statements(self, since: int) -> list[str]:
        """The desk's two statements since ``since``, in the order they ran."""
        return [n.split(":")[1] for _, n in self.log.seen[since:] if n in DESK]


@pytest.fixture
async def service(
    pool: asyncpg.Pool[Any],  # opened first: the test's own statements are not counted
    counted: StatementLog,
    settings: Settings,
    db_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> AsyncIterator[Counted]:
    own = await db_pool.create_pool(db_url, min_size=1, max_size=8)
    try:
        app: web.Application = create_app(settings.model_copy(update=SERVICE), pool=own)
        client = await aiohttp_client(app, headers=ADMIN)
        yield Counted(client, counted)
        await client.close()
    finally:
        await own.close()


async def _send(w: WrappingUp, ref: str, value: Any = "YES", **fields: Any) -> dict[str, Any]:
    """The wrap-up with an answer to the question shown, sent on the panel: its ack or error."""
    await w.panel.send(
        type="wrap_up",
        call_id=w.call_id,
        notes="asked about fees",
        answer={"question_key": w.question, "value": value},
        ref=ref,
        **fields,
    )
    return await w.panel.until(lambda m: m.get("ref") == ref and m["type"] in ("ack", "error"))


async def test_the_wrap_up_of_a_call_whose_panel_was_built_here_reads_nothing(
    service: Counted, pool: asyncpg.Pool[Any]
) -> None:
    w = await _wrapping_up(service.client)
    since = len(service.queries)
    reply = await _send(w, "w")
    assert reply["type"] == "ack", reply
    await w.panel.state("available")
    assert service.desk_statements(since) == ["finish_wrap_up"]
    left = await _left(pool, w)
    assert left["wrapped"] and left["notes"] == "asked about fees" and left["audits"] == 1
    assert left["answers"] == ["yes"] and left["needs"] == {w.question: "yes"}


async def _out_of_time(pool: asyncpg.Pool[Any], w: WrappingUp, _: Any) -> None:
    await pool.execute(
        "UPDATE calls SET ended_at = ended_at - interval '2 hours' WHERE id = $1", w.call_id
    )


async def _wrapped_up_elsewhere(pool: asyncpg.Pool[Any], w: WrappingUp, value: Any) -> None:
    """The wrap-up stored past this hub (by its desk read first, as another instance's
    panel has it stored), the agent kept in its wrap-up: no push tells the hub."""
    desk: WrapUpDesk = w.desk
    message = {"type": "wrap_up", "call_id": w.call_id, "available": False}
    await desk.wrap_up(w.agent_id, WrapUp.model_validate(message), datetime.now(UTC))


NOT_MINE = "call {call} is not a call of yours"


@pytest.mark.parametrize(
    ("change", "status", "field", "detail"),
    [
        (_answer_on_the_call, 409, "answer", "already answered 'no' on call {call}"),
        (_merge, 409, "customer_id", "was merged into"),
        (_another_caller, 409, "answer.question_key", "no question was asked on call {call}"),
        (_taken_back, 404, "call_id", NOT_MINE),
        (_out_of_time, 409, "call_id", "call {call} ended too long ago to be wrapped up"),
        (_wrapped_up_elsewhere, 409, "call_id", "call {call} is already wrapped up"),
    ],
    ids=lambda v: v.__name__ if callable(v) else None,
)
async def test_a_wrong_guess_is_read_and_answered_as_the_read_always_answered(
    service: Counted,
    pool: asyncpg.Pool[Any],
    change: Any,
    status: int,
    field: str,
    detail: str,
) -> None:
    """Changed behind the hub's back (no push tells it): the wrap-up is stored against
    the guess, finish_wrap_up refuses with nothing written, the read gives the error."""
    w = await _wrapping_up(service.client)
    await change(pool, w, "no")
    before = await _left(pool, w)
    since = len(service.queries)
    reply = await _send(w, "w")
    assert reply["type"] == "error", reply
    assert reply["status"] == status and reply["field"] == field, reply
    assert detail.format(call=w.call_id) in reply["detail"], reply
    assert service.desk_statements(since) == ["finish_wrap_up", "wrap_up_call"]
    assert await _left(pool, w) == before


async def test_the_same_answer_stored_meanwhile_is_a_retry(
    service: Counted, pool: asyncpg.Pool[Any]
) -> None:
    w = await _wrapping_up(service.client)
    await _answer_on_the_call(pool, w, "yes")
    since = len(service.queries)
    reply = await _send(w, "w", True)
    assert reply["type"] == "ack", reply
    await w.panel.state("available")
    assert service.desk_statements(since) == ["finish_wrap_up", "wrap_up_call", "finish_wrap_up"]
    left = await _left(pool, w)
    assert left["wrapped"] and left["audits"] == 1 and left["answers"] == ["yes"]


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


async def test_a_retry_is_read_and_told_the_call_is_wrapped_up(
    service: Counted, pool: asyncpg.Pool[Any]
) -> None:
    w = await _wrapping_up(service.client)
    first = await _send(w, "first")
    assert first["type"] == "ack", first
    since = len(service.queries)
    again = await _send(w, "again", "no")
    assert again["type"] == "error" and again["status"] == 409, again
    assert again["detail"] == f"call {w.call_id} is already wrapped up", again
    assert service.desk_statements(since) == ["wrap_up_call"]
    left = await _left(pool, w)
    assert left["answers"] == ["yes"] and left["audits"] == 1


async def test_a_wrap_up_the_clock_ended_is_read(service: Counted, pool: asyncpg.Pool[Any]) -> None:
    """The agent's wrap-up time ran out (the panel was told): the call is read, then its
    wrap-up stored as ever, and the agent, free already, is left as it is."""
    w = await _wrapping_up(service.client, wrap_up_seconds=0.3)
    await w.panel.state("available")  # the clock
    since = len(service.queries)
    reply = await _send(w, "w")
    assert reply["type"] == "ack", reply
    assert service.desk_statements(since) == ["wrap_up_call", "finish_wrap_up"]
    left = await _left(pool, w)
    assert left["wrapped"] and left["answers"] == ["yes"] and left["agent"] == "available"


async def test_what_a_panel_showed_is_kept_only_until_the_wrap_up_or_the_last_socket(
    service: Counted,
) -> None:
    hub = service.client.app[app_keys.HUB]
    w = await _wrapping_up(service.client)
    assert hub._shown[w.agent_id] == Shown(w.call_id, w.customer_id, w.question, True)
    reply = await _send(w, "w")
    assert reply["type"] == "ack", reply
    assert w.agent_id not in hub._shown
    # Kept again for the next call's panel, and dropped with the agent's last socket.
    await w.panel.state("available")
    await enqueue(service.client, "pbx-2", ani=PHONE)
    offer = await w.panel.until(lambda m: m["type"] == "offer")
    await w.panel.send(type="accept", offer_id=offer["offer_id"])
    shown = await w.panel.until(lambda m: m["type"] == "panel")
    assert hub._shown[w.agent_id].call_id == shown["call_id"]
    await w.panel.close()

    async def dropped() -> bool:
        return w.agent_id not in hub._sockets and w.agent_id not in hub._shown

    await eventually(dropped)
