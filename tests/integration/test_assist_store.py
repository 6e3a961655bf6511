"""Answers given on a call (the agent's wrap-up path): retries, the question shown, races."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

import pytest
from aiohttp.test_utils import TestClient

from callcenter import app_keys
from callcenter.agent_assist.knowledge import store
from callcenter.errors import Conflict, InvalidAnswer, NotFound, NotPendingQuestion
from tests.conftest import AppFactory
from tests.integration.assist_helpers import Pool, write_bank
from tests.integration.queue_helpers import enqueue, eventually, make_customer

Client: TypeAlias = "TestClient[Any, Any]"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def api(app_factory: AppFactory, tmp_path: Path) -> Client:
    return await app_factory(questions_file=write_bank(tmp_path))


async def _call(client: Client, pool: Pool, customer_phone: str, external: str) -> int:
    body = await enqueue(client, external, ani=customer_phone)
    call_id: int = body["call"]["id"]
    return call_id


async def _show(pool: Pool, call_id: int, key: str) -> None:
    """What the hub does when it puts a question on the agent's panel."""
    async with pool.acquire() as conn:
        await conn.execute("UPDATE calls SET question_key = $2 WHERE id = $1", call_id, key)


async def _answers(pool: Pool, customer_id: int) -> list[tuple[str, Any, bool, int | None]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT question_key, value, skipped, call_id FROM answers"
            " WHERE customer_id = $1 ORDER BY id",
            customer_id,
        )
    return [(r["question_key"], r["value"], r["skipped"], r["call_id"]) for r in rows]


async def test_a_retried_wrap_up_stores_its_answer_once(api: Client, pool: Pool) -> None:
    customer = await make_customer(api, "C1", 100, "+12125550100")
    call_id = await _call(api, pool, "+12125550100", "pbx-1")
    async with pool.acquire() as conn:
        first = await store.record_answer(
            conn,
            customer_id=customer,
            call_id=call_id,
            agent_id=None,
            interaction_id=None,
            question_key="cards_elsewhere",
            value="Yes",
            now=NOW,
        )
        assert first is not None and first.key == "card_count"
        again = await store.store_answer(
            conn,
            customer_id=customer,
            call_id=call_id,
            question_key="cards_elsewhere",
            value=True,  # the same answer, spelled another way
            now=NOW + timedelta(seconds=5),
        )
        assert again.stored is False and again.answer.value == "yes"
        assert again.next is not None and again.next.key == "card_count"
        with pytest.raises(Conflict, match="already answered 'yes' on call"):
            await store.store_answer(
                conn,
                customer_id=customer,
                call_id=call_id,
                question_key="cards_elsewhere",
                value="no",
                now=NOW,
            )
        with pytest.raises(InvalidAnswer):  # a retry is checked like the first answer
            await store.store_answer(
                conn,
                customer_id=customer,
                call_id=call_id,
                question_key="cards_elsewhere",
                value=7,
                now=NOW,
            )
    assert await _answers(pool, customer) == [("cards_elsewhere", "yes", False, call_id)]


async def test_concurrent_retries_store_once(api: Client, pool: Pool) -> None:
    customer = await make_customer(api, "C1", 100, "+12125550100")
    call_id = await _call(api, pool, "+12125550100", "pbx-1")

    async def answer() -> bool:
        async with pool.acquire() as conn:
            recorded = await store.store_answer(
                conn,
                customer_id=customer,
                call_id=call_id,
                question_key="cards_elsewhere",
                value="no",
                now=NOW,
            )
        return recorded.stored

    results = await asyncio.gather(*(answer() for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    assert await _answers(pool, customer) == [("cards_elsewhere", "no", False, call_id)]


async def test_the_question_shown_on_the_call_may_be_answered_after_the_bank_changed(
    api: Client, pool: Pool
) -> None:
    customer = await make_customer(api, "C1", 100, "+12125550100")
    call_id = await _call(api, pool, "+12125550100", "pbx-1")
    await _show(pool, call_id, "cards_elsewhere")
    # meanwhile a supervisor puts contact_channel first
    resp = await api.patch("/api/questions/contact_channel", json={"priority": 1})
    assert resp.status == 200
    async with pool.acquire() as conn:
        assert (await store.pending_for(conn, customer, NOW)).key == "contact_channel"  # type: ignore[union-attr]
        nxt = await store.record_answer(
            conn,
            customer_id=customer,
            call_id=call_id,
            agent_id=None,
            interaction_id=None,
            question_key="cards_elsewhere",
            value="no",
            now=NOW,
        )
        assert nxt is not None and nxt.key == "contact_channel"
        with pytest.raises(NotPendingQuestion) as raised:
            await store.record_answer(
                conn,
                customer_id=customer,
                call_id=call_id,
                agent_id=None,
                interaction_id=None,
                question_key="card_count",
                value=2,
                now=NOW,
            )
    assert raised.value.status == 409 and raised.value.field == "answer"
    assert raised.value.detail == (
        "question 'card_count' is not the pending one ('contact_channel' is)"
    )


async def test_a_skip_on_a_call_keeps_needs_and_links_the_agent(api: Client, pool: Pool) -> None:
    customer = await make_customer(api, "C1", 100, "+12125550100")
    agent = await api.post("/api/agents", json={"name": "ada", "queues": ["general"]})
    agent_id = (await agent.json())["agent"]["id"]
    call_id = await _call(api, pool, "+12125550100", "pbx-1")
    async with pool.acquire() as conn:
        recorded = await store.store_answer(
            conn,
            customer_id=customer,
            call_id=call_id,
            agent_id=agent_id,
            question_key="cards_elsewhere",
            skipped=True,
            now=NOW,
        )
        assert recorded.answer.agent_id == agent_id and recorded.answer.skipped
        assert recorded.next is not None and recorded.next.key == "contact_channel"
        assert await conn.fetchval("SELECT needs FROM customers WHERE id = $1", customer) == {}
        # after the cooldown the skipped question is back
        later = await store.pending_for(conn, customer, NOW + timedelta(days=14))
        assert later is not None and later.key == "cards_elsewhere"


async def test_a_call_must_belong_to_the_customer(api: Client, pool: Pool) -> None:
    ada = await make_customer(api, "C1", 100, "+12125550100")
    await make_customer(api, "C2", 100, "+12125550101")
    bobs_call = await _call(api, pool, "+12125550101", "pbx-2")
    async with pool.acquire() as conn:
        with pytest.raises(Conflict, match="is not customer"):
            await store.store_answer(
                conn,
                customer_id=ada,
                call_id=bobs_call,
                question_key="cards_elsewhere",
                value="no",
                now=NOW,
            )
        with pytest.raises(NotFound, match="no call"):
            await store.store_answer(
                conn,
                customer_id=ada,
                call_id=987654,
                question_key="cards_elsewhere",
                value="no",
                now=NOW,
            )
    assert await _answers(pool, ada) == []


async def test_a_bank_change_on_one_instance_reaches_the_cache_of_another(
    app_factory: AppFactory, tmp_path: Path, pool: Pool
) -> None:
    first = await app_factory(questions_file=write_bank(tmp_path))
    second = await app_factory(questions_file=None)
    cache = second.app[app_keys.BANK_CACHE]
    before = await cache.get()
    assert before.question("contact_channel").priority == 20  # type: ignore[union-attr]
    resp = await first.patch("/api/questions/contact_channel", json={"priority": 3})
    assert resp.status == 200

    async def reloaded() -> bool:
        bank = await cache.get()
        question = bank.question("contact_channel")
        return question is not None and question.priority == 3

    await eventually(reloaded, timeout=5)
