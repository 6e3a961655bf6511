"""The wrap-up's one statement, ``finish_wrap_up`` (migration 0022), and the read before it.

The answer is checked in Python against what ``wrap_up_call`` read; the
function stores the wrap-up only if that still holds once it has locked the
call and the customer, and writes nothing otherwise. Here: it stores a call's
wrap-up once however many try at once, never over what changed meanwhile (an
answer stored on the call, a merge, another caller picked, the call taken
back), the desk then reads and checks again, and an answer stored by a
wrap-up is the same as one stored through the answers API.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from callcenter import app_keys
from callcenter.agent_assist.desk.wrap_up import W, WrapUpDesk
from callcenter.agent_assist.knowledge import store
from callcenter.agent_assist.protocol import WrapUp
from callcenter.db.pool import Conn
from callcenter.errors import Conflict
from callcenter.events import CHANNEL, Event, payloads
from tests.conftest import AppFactory
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    eventually,
    make_agent,
    make_customer,
    make_queue,
)

PHONE = "+12125550100"
#: Fast clocks, and only the bank each test writes (not the shipped one).
SERVICE = FAST | {"questions_file": None}
CARDS = {
    "key": "cards_elsewhere",
    "text": "Do you hold cards with another bank?",
    "kind": "yes_no",
    "priority": 10,
}


@dataclass
class WrappingUp:
    """An agent in the wrap-up of its call, which showed ``question``."""

    client: TestClient[Any, Any]
    panel: Panel
    token: str
    agent_id: int
    customer_id: int
    call_id: int
    question: str

    @property
    def desk(self) -> WrapUpDesk:
        desk: WrapUpDesk = self.client.app[app_keys.HUB].wrap_ups
        return desk


async def _wrapping_up(
    client: TestClient[Any, Any],
    question: dict[str, Any] = CARDS,
    *,
    wrap_up_seconds: float = 300,
) -> WrappingUp:
    """A queue whose wrap-up lasts ``wrap_up_seconds`` (long unless given), ``question``
    in the bank, a call taken and ended."""
    await make_queue(client, "general", wrap_up_seconds=wrap_up_seconds)
    resp = await client.post("/api/questions", json=question)
    assert resp.status == 201, await resp.text()
    customer_id = await make_customer(client, "C-1", 30000, PHONE)
    agent_id, token = await make_agent(client, "ada")
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    await enqueue(client, "pbx-1", ani=PHONE)
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    shown = await panel.until(lambda m: m["type"] == "panel")
    assert shown["question"]["key"] == question["key"]
    await panel.send(type="end", call_id=shown["call_id"])
    await panel.state("wrap_up")
    return WrappingUp(
        client, panel, token, agent_id, customer_id, shown["call_id"], question["key"]
    )


async def _finish(
    conn: Conn | asyncpg.Pool[Any],
    w: WrappingUp,
    value: Any = "yes",
    *,
    notes: str | None = "asked about fees",
) -> str:
    """``finish_wrap_up`` as the desk calls it, with an answer checked already."""
    events = payloads([Event("agent", str(w.agent_id)), Event("free", str(w.agent_id))])
    outcome: str = await conn.fetchval(
        W["finish_wrap_up"],
        w.call_id,
        w.agent_id,
        w.customer_id,
        "agent:ada",
        "127.0.0.1",
        {"notes": notes is not None, "question_key": w.question},
        notes,
        w.question,
        value,
        value is None,
        datetime.now(UTC),
        True,
        CHANNEL,
        events,
        False,  # no claim: these tests hold the wrap-up alone
    )
    return outcome


async def _left(pool: asyncpg.Pool[Any], w: WrappingUp) -> dict[str, Any]:
    """What a wrap-up writes, as it stands."""
    row = await pool.fetchrow(
        """SELECT c.wrapped_up_at IS NOT NULL AS wrapped, i.notes, a.state AS agent,
                  cu.needs,
                  (SELECT count(*) FROM customer_audit x
                    WHERE x.action = 'wrap_up' AND (x.detail->>'call_id')::bigint = c.id) AS audits,
                  (SELECT array_agg(v.value ORDER BY v.id) FROM answers v
                    WHERE v.call_id = c.id) AS answers
             FROM calls c
             JOIN interactions i ON i.id = c.interaction_id
             JOIN agents a ON a.id = $2
             JOIN customers cu ON cu.id = $3
            WHERE c.id = $1""",
        w.call_id,
        w.agent_id,
        w.customer_id,
    )
    assert row is not None
    return dict(row)


async def test_many_at_once_store_one_wrap_up_and_free_the_agent_once(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    w = await _wrapping_up(await app_factory(**SERVICE))
    conns = [await pool.acquire() for _ in range(6)]
    try:
        outcomes = await asyncio.gather(*(_finish(c, w) for c in conns))
    finally:
        for c in conns:
            await pool.release(c)
    assert sorted(outcomes) == ["done"] * 5 + ["stored"]
    left = await _left(pool, w)
    assert left["wrapped"] and left["notes"] == "asked about fees" and left["agent"] == "available"
    assert left["audits"] == 1 and left["answers"] == ["yes"]
    assert left["needs"] == {"cards_elsewhere": "yes"}
    await w.panel.state("available")


async def test_two_instances_sending_one_wrap_up_store_it_once(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    w = await _wrapping_up(await app_factory(**SERVICE))
    other = (await app_factory(**SERVICE)).app[app_keys.HUB].wrap_ups
    message = WrapUp.model_validate(
        {
            "type": "wrap_up",
            "call_id": w.call_id,
            "notes": "asked about fees",
            "answer": {"question_key": w.question, "value": True},
        }
    )

    async def send(desk: WrapUpDesk) -> str:
        try:
            await desk.wrap_up(w.agent_id, message, datetime.now(UTC))
        except Conflict as exc:  # read after the other stored it: as a resend is told
            return f"{exc.field}: {exc.detail}"
        return "ack"

    results = await asyncio.gather(*(send(d) for d in (w.desk, other, w.desk, other)))
    assert "ack" in results, results
    refused = f"call_id: call {w.call_id} is already wrapped up"
    assert all(r in ("ack", refused) for r in results), results
    left = await _left(pool, w)
    assert left["wrapped"] and left["audits"] == 1 and left["answers"] == ["yes"]
    await w.panel.state("available")


async def _answer_on_the_call(pool: Conn | asyncpg.Pool[Any], w: WrappingUp, value: Any) -> None:
    await pool.execute(
        "INSERT INTO answers (customer_id, question_key, value, skipped, call_id)"
        " VALUES ($1, $2, $3, false, $4)",
        w.customer_id,
        w.question,
        value,
        w.call_id,
    )


async def _merge(pool: asyncpg.Pool[Any], w: WrappingUp, _: Any) -> None:
    into = await make_customer(w.client, "C-2", 100, "+12125550102")
    await pool.execute("UPDATE customers SET merged_into = $2 WHERE id = $1", w.customer_id, into)


async def _another_caller(pool: asyncpg.Pool[Any], w: WrappingUp, _: Any) -> None:
    other = await make_customer(w.client, "C-3", 100, "+12125550103")
    await pool.execute(
        "UPDATE calls SET customer_id = $2, question_key = NULL WHERE id = $1", w.call_id, other
    )


async def _taken_back(pool: asyncpg.Pool[Any], w: WrappingUp, _: Any) -> None:
    await pool.execute("UPDATE calls SET agent_id = NULL WHERE id = $1", w.call_id)


@pytest.mark.parametrize(
    "change", [_answer_on_the_call, _merge, _another_caller, _taken_back], ids=lambda f: f.__name__
)
async def test_what_changed_after_the_check_is_never_written_over(
    app_factory: AppFactory, pool: asyncpg.Pool[Any], change: Any
) -> None:
    w = await _wrapping_up(await app_factory(**SERVICE))
    await change(pool, w, "no")
    before = await _left(pool, w)
    assert await _finish(pool, w, "yes") == "changed"
    assert await _left(pool, w) == before
    assert not before["wrapped"] and before["notes"] is None and before["audits"] == 0
    assert before["agent"] == "wrap_up"


async def _blocked_on_a_lock(pool: asyncpg.Pool[Any], task: asyncio.Task[Any]) -> None:
    """Until some statement waits for a row lock (the wrap-up's, the only one running)."""

    async def waiting() -> bool:
        assert not task.done(), task
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE '%finish_wrap_up%'"
            )
        )

    await eventually(waiting, timeout=10)


@pytest.mark.parametrize(("meanwhile", "refused"), [("no", True), ("yes", False)])
async def test_an_answer_stored_while_the_wrap_up_waited_is_checked_against(
    app_factory: AppFactory, pool: asyncpg.Pool[Any], meanwhile: str, refused: bool
) -> None:
    """An answer is stored on the call (as the answers API does it, under the customer's
    lock) while the wrap-up's statement waits for that lock: the wrap-up is read and
    checked again, a different answer is refused with nothing of it stored, the same
    one is a retry."""
    w = await _wrapping_up(await app_factory(**SERVICE))
    message = WrapUp.model_validate(
        {
            "type": "wrap_up",
            "call_id": w.call_id,
            "notes": "busy",
            "answer": {"question_key": w.question, "value": "YES"},
        }
    )
    holder = await pool.acquire()
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "SELECT 1 FROM customers WHERE id = $1 FOR NO KEY UPDATE", w.customer_id
        )
        task = asyncio.create_task(w.desk.wrap_up(w.agent_id, message, datetime.now(UTC)))
        await _blocked_on_a_lock(pool, task)
        # As store_answer does it under the customer's lock.
        await _answer_on_the_call(holder, w, meanwhile)
        await tx.commit()
        if refused:
            with pytest.raises(Conflict) as raised:
                await task
            assert raised.value.field == "answer"
            assert "already answered 'no' on call" in raised.value.detail
        else:
            await task
    finally:
        await pool.release(holder)
    left = await _left(pool, w)
    assert left["answers"] == [meanwhile]
    if refused:
        assert not left["wrapped"] and left["notes"] is None and left["audits"] == 0
        assert left["agent"] == "wrap_up"
    else:
        assert left["wrapped"] and left["notes"] == "busy" and left["audits"] == 1
        assert left["agent"] == "available"


@pytest.mark.parametrize(
    ("question", "raw", "stored"),
    [
        (CARDS, True, "yes"),
        (CARDS | {"key": "email_ok"}, " No ", "no"),
        (
            {"key": "channel", "text": "How?", "kind": "choice", "choices": ["phone", "E-mail"]},
            "e-mail",
            "E-mail",
        ),
        ({"key": "cards", "text": "How many?", "kind": "number", "max_value": 9}, 3.0, 3),
        ({"key": "cards", "text": "How many?", "kind": "number"}, 2.5, 2.5),
        ({"key": "bank", "text": "Which bank?", "kind": "text"}, "  First Bank ", "First Bank"),
        (CARDS, None, None),  # a skip: no needs
    ],
)
async def test_a_wrap_ups_answer_is_stored_as_the_answers_api_stores_it(
    app_factory: AppFactory,
    pool: asyncpg.Pool[Any],
    question: dict[str, Any],
    raw: Any,
    stored: Any,
) -> None:
    """Two homes write an answer and the needs profile (finish_wrap_up and the knowledge
    room's insert_answer): they leave the same rows."""
    w = await _wrapping_up(await app_factory(**SERVICE), question)
    answer = {"question_key": w.question} | ({"skipped": True} if raw is None else {"value": raw})
    message = WrapUp.model_validate({"type": "wrap_up", "call_id": w.call_id, "answer": answer})
    await w.desk.wrap_up(w.agent_id, message, datetime.now(UTC))
    other = await make_customer(w.client, "C-9", 30000, "+12125550199")
    async with pool.acquire() as conn:
        await store.store_answer(
            conn,
            customer_id=other,
            question_key=w.question,
            value=None if raw is None else stored,
            skipped=raw is None,
            now=datetime.now(UTC),
        )
    rows = await pool.fetch(
        "SELECT a.customer_id, a.value, a.skipped, c.needs FROM answers a"
        " JOIN customers c ON c.id = a.customer_id ORDER BY a.customer_id"
    )
    assert [r["customer_id"] for r in rows] == [w.customer_id, other]
    wrapped, api = ({k: r[k] for k in ("value", "skipped", "needs")} for r in rows)
    assert wrapped == api
    assert wrapped["value"] == stored and wrapped["skipped"] is (raw is None)
    assert wrapped["needs"] == ({} if raw is None else {w.question: stored})


async def test_a_panel_on_another_instance_wraps_the_call_up(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    """Nothing of the wrap-up is kept in the instance that put the question on the panel."""
    w = await _wrapping_up(await app_factory(**SERVICE))
    other = await app_factory(**SERVICE)
    elsewhere = await Panel.open(other, w.token)
    await elsewhere.state("wrap_up")
    await elsewhere.send(
        type="wrap_up",
        call_id=w.call_id,
        answer={"question_key": w.question, "value": "no"},
        ref="w",
    )
    ack = await elsewhere.until(lambda m: m["type"] in ("ack", "error"))
    assert ack["type"] == "ack" and ack["ref"] == "w", ack
    await w.panel.state("available")  # pushed by the first instance, told by the NOTIFY
    left = await _left(pool, w)
    assert left["wrapped"] and left["answers"] == ["no"] and left["needs"] == {w.question: "no"}
