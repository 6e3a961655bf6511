"""The assist panel over /ws/agent: history, one learning question, treatments, wrap-up."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from callcenter import app_keys
from tests.conftest import AppFactory
from tests.integration.queue_helpers import (
    FAST,
    Panel,
    enqueue,
    make_agent,
    make_customer,
    make_queue,
)

PHONE = "+12125550100"

CARDS = {
    "key": "cards_elsewhere",
    "text": "Do you hold cards with another bank?",
    "kind": "yes_no",
    "priority": 10,
}
HOW_MANY = {
    "key": "cards_count",
    "text": "How many cards do you hold elsewhere?",
    "kind": "choice",
    "choices": ["1", "2", "3+"],
    "condition": {"answer": "cards_elsewhere", "eq": "yes"},
    "priority": 20,
}
FEE_WAIVER = {
    "key": "fee_waiver",
    "title": "Offer the annual fee waiver",
    "kind": "offer",
    "detail": "Waive next year's card fee.",
    "condition": {
        "all": [{"tier": ["platinum", "gold"]}, {"answer": "cards_elsewhere", "eq": "yes"}]
    },
    "reason": "a valuable customer who also banks elsewhere",
}


async def setup(client: TestClient[Any, Any]) -> tuple[int, int, str]:
    """A queue without wrap-up, the bank above (the app runs without the shipped
    bank file), a platinum caller and an agent."""
    await make_queue(client, "general", wrap_up_seconds=0)
    for path, item in (
        ("/api/questions", CARDS),
        ("/api/questions", HOW_MANY),
        ("/api/treatments", FEE_WAIVER),
    ):
        resp = await client.post(path, json=item)
        assert resp.status == 201, await resp.text()
    customer_id = await make_customer(client, "C-1", 30000, PHONE)
    agent_id, token = await make_agent(client, "ada")
    return customer_id, agent_id, token


async def available_panel(client: TestClient[Any, Any], token: str) -> Panel:
    """The agent's panel, open and available for calls."""
    panel = await Panel.open(client, token)
    await panel.send(type="available")
    await panel.state("available")
    return panel


async def take_call(panel: Panel, client: TestClient[Any, Any], external: str) -> dict[str, Any]:
    """Hand in a call from the caller, accept its offer, return the panel message."""
    await enqueue(client, external, ani=PHONE)
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    panel_message = await panel.until(lambda m: m["type"] == "panel")
    assert panel_message["call_id"] == offer["call_id"]
    return panel_message


async def test_the_next_call_picks_up_where_the_last_one_left_off(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    customer_id, _, token = await setup(client)
    panel = await available_panel(client, token)

    first = await take_call(panel, client, "pbx-1")
    assert first["recognised"]["by"] == "phone" and PHONE in first["recognised"]["detail"]
    assert first["customer"]["id"] == customer_id and first["customer"]["tier"] == "platinum"
    assert first["customer"]["phones"] == [PHONE]
    assert first["history"]["items"] == [] and first["history"]["next_before"] is None
    assert first["needs"] == []
    assert first["question"]["key"] == "cards_elsewhere" and first["question"]["kind"] == "yes_no"
    assert first["treatments"] == []  # the fee waiver needs the answer first

    await panel.send(
        type="wrap_up",
        call_id=first["call_id"],
        notes="asked about card fees",
        answer={"question_key": "cards_elsewhere", "value": "yes"},
        ref="w1",
    )
    ack = await panel.until(lambda m: m["type"] in ("ack", "error"))
    assert ack["type"] == "ack" and ack["ref"] == "w1", ack
    agent = await pool.fetchrow("SELECT state, call_id FROM agents WHERE name = 'ada'")
    assert agent["state"] == "available" and agent["call_id"] is None

    second = await take_call(panel, client, "pbx-2")
    last = second["history"]["items"][0]
    assert last["call_id"] == first["call_id"] and last["notes"] == "asked about card fees"
    assert last["agent"] == "ada" and last["outcome"] == "completed"
    assert last["answer"]["question_key"] == "cards_elsewhere"
    assert last["answer"]["question"] == CARDS["text"] and last["answer"]["skipped"] is False
    assert [n["key"] for n in second["needs"]] == ["cards_elsewhere"]
    assert second["question"]["key"] == "cards_count"  # the follow-up, now eligible
    assert second["question"]["choices"] == ["1", "2", "3+"]
    [treatment] = second["treatments"]
    assert treatment["key"] == "fee_waiver" and treatment["reason"]

    customer = await pool.fetchrow("SELECT needs FROM customers WHERE id = $1", customer_id)
    assert "cards_elsewhere" in customer["needs"]


async def test_a_bad_wrap_up_changes_nothing_and_a_good_one_stores_once(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    customer_id, _, token = await setup(client)
    _, other_token = await make_agent(client, "bob", queues=["general"])
    panel = await available_panel(client, token)
    shown = await take_call(panel, client, "pbx-1")
    call_id = shown["call_id"]

    async def wrap(**fields: Any) -> dict[str, Any]:
        await panel.send(type="wrap_up", call_id=call_id, **fields)
        return await panel.until(lambda m: m["type"] in ("ack", "error"))

    wrong_kind = await wrap(answer={"question_key": "cards_elsewhere", "value": 17})
    assert wrong_kind["type"] == "error" and wrong_kind["status"] == 422, wrong_kind
    assert wrong_kind["field"].startswith("answer")
    not_pending = await wrap(answer={"question_key": "cards_count", "value": "2"})
    assert not_pending["status"] == 409 and "not the pending one" in not_pending["detail"]
    assert not_pending["field"] == "answer.question_key"
    # Nothing changed: the call is still up, nothing is stored.
    call = await pool.fetchrow("SELECT state, wrapped_up_at FROM calls WHERE id = $1", call_id)
    assert call["state"] == "connected" and call["wrapped_up_at"] is None
    assert await pool.fetchval("SELECT count(*) FROM answers") == 0

    # Another agent may neither wrap it up nor page its history.
    other = await Panel.open(client, other_token)
    await other.send(type="wrap_up", call_id=call_id, ref="x")
    refused = await other.until(lambda m: m["type"] == "error")
    assert refused["status"] == 404 and refused["ref"] == "x"
    await other.send(type="history", call_id=call_id, before=1)
    assert (await other.until(lambda m: m["type"] == "error"))["status"] == 404
    assert not any(m["type"] == "panel" for m in other.received)

    done = await wrap(answer={"question_key": "cards_elsewhere", "skipped": True}, notes="busy")
    assert done["type"] == "ack", done
    again = await wrap(answer={"question_key": "cards_elsewhere", "skipped": True})
    assert again["status"] == 409 and "already wrapped up" in again["detail"]
    rows = await pool.fetch(
        "SELECT skipped, call_id FROM answers WHERE customer_id = $1", customer_id
    )
    assert [(r["skipped"], r["call_id"]) for r in rows] == [(True, call_id)]
    call = await pool.fetchrow(
        "SELECT c.state, i.notes FROM calls c JOIN interactions i ON i.id = c.interaction_id"
        " WHERE c.id = $1",
        call_id,
    )
    assert call["state"] == "completed" and call["notes"] == "busy"
    # Skipped: the question waits out its cooldown, nothing else is eligible.
    nxt = await take_call(panel, client, "pbx-2")
    assert nxt["question"] is None
    assert nxt["history"]["items"][0]["answer"]["skipped"] is True


async def test_a_reconnecting_panel_gets_the_same_panel_and_question(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    _, _, token = await setup(client)
    panel = await available_panel(client, token)
    shown = await take_call(panel, client, "pbx-1")
    await panel.close()
    # The bank changes meanwhile: the call keeps the question it showed.
    await client.patch("/api/questions/cards_elsewhere", json={"priority": 90})
    resp = await client.post(
        "/api/questions",
        json={"key": "email_ok", "text": "May we email you?", "kind": "yes_no", "priority": 1},
    )
    assert resp.status == 201, await resp.text()

    again = await Panel.open(client, token)
    state = await again.next()
    assert state["type"] == "state" and state["agent"]["state"] == "on_call"
    reshown = await again.until(lambda m: m["type"] == "panel")
    assert reshown["call_id"] == shown["call_id"]
    assert reshown["question"] == shown["question"]
    await again.send(
        type="wrap_up",
        call_id=shown["call_id"],
        answer={"question_key": "cards_elsewhere", "value": "no"},
        ref=1,
    )
    assert (await again.until(lambda m: m["type"] in ("ack", "error")))["type"] == "ack"
    # The next call gets the new question, which the bank change put first.
    nxt = await take_call(again, client, "pbx-2")
    assert nxt["question"]["key"] == "email_ok"


async def test_the_history_is_paged(app_factory: AppFactory, pool: asyncpg.Pool[Any]) -> None:
    client = await app_factory(**FAST, questions_file=None)
    customer_id, _, token = await setup(client)
    await pool.execute(
        """INSERT INTO interactions (customer_id, started_at, ended_at, agent, outcome, notes)
           SELECT $1, now() - make_interval(days => k), now() - make_interval(days => k),
                  'old', 'completed', 'contact ' || k
             FROM generate_series(1, 45) AS k""",
        customer_id,
    )
    panel = await available_panel(client, token)
    shown = await take_call(panel, client, "pbx-1")
    page = shown["history"]
    assert [i["notes"] for i in page["items"]] == [f"contact {k}" for k in range(1, 21)]
    seen = list(page["items"])
    while page["next_before"] is not None:
        await panel.send(
            type="history", call_id=shown["call_id"], before=page["next_before"], ref=len(seen)
        )
        page = await panel.until(lambda m: m["type"] == "history")
        assert page["ref"] == len(seen)
        seen += page["items"]
    assert [i["notes"] for i in seen] == [f"contact {k}" for k in range(1, 46)]

    await panel.send(type="history", call_id=shown["call_id"] + 1000, before=1, ref="r")
    missing = await panel.until(lambda m: m["type"] == "error")
    assert missing["status"] == 404 and missing["field"] == "call_id"


async def test_an_unknown_caller_gets_a_panel_that_says_so(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    _, _, token = await setup(client)
    panel = await available_panel(client, token)
    await enqueue(client, "pbx-anon", ani="anonymous")
    offer = await panel.until(lambda m: m["type"] == "offer")
    await panel.send(type="accept", offer_id=offer["offer_id"])
    shown = await panel.until(lambda m: m["type"] == "panel")
    assert shown["recognised"]["by"] == "withheld"
    assert shown["customer"] is None and shown["question"] is None
    await panel.send(
        type="wrap_up",
        call_id=shown["call_id"],
        answer={"question_key": "cards_elsewhere", "value": "yes"},
    )
    refused = await panel.until(lambda m: m["type"] == "error")
    assert refused["status"] == 409 and "no question was asked" in refused["detail"]


async def _panel_entries(pool: asyncpg.Pool[Any], call_id: int) -> list[tuple[str, str | None]]:
    rows = await pool.fetch(
        "SELECT who, remote FROM customer_audit"
        " WHERE action = 'panel' AND (detail ->> 'call_id')::bigint = $1 ORDER BY id",
        call_id,
    )
    return [(r["who"], r["remote"]) for r in rows]


async def test_the_accepts_panel_is_the_one_a_read_builds_and_is_audited_once(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    _, _, token = await setup(client)
    panel = await available_panel(client, token)
    # A first call, so the second's panel has a history, needs and a follow-up question.
    first = await take_call(panel, client, "pbx-1")
    await panel.send(
        type="wrap_up",
        call_id=first["call_id"],
        notes="asked about card fees",
        answer={"question_key": "cards_elsewhere", "value": "yes"},
        ref="w1",
    )
    await panel.until(lambda m: m["type"] == "ack" and m["ref"] == "w1")
    await enqueue(client, "pbx-2", ani=PHONE)
    offer = await panel.until(lambda m: m["type"] == "offer")
    seen = len(panel.received)
    await panel.send(type="accept", offer_id=offer["offer_id"], ref="a")
    shown = await panel.until(lambda m: m["type"] == "panel")
    call_id = offer["call_id"]
    # On the socket: the ack, then the state that shows the call, then its panel.
    order = [
        (m["type"], m.get("agent", {}).get("state"))
        for m in panel.received[seen:]
        if m["type"] in ("ack", "state", "panel")
    ]
    assert order == [("ack", None), ("state", "on_call"), ("panel", None)], order
    assert shown["call_id"] == call_id

    # The same panel a read builds now (the question was stored by the accept's).
    async with pool.acquire() as conn:
        read = await client.app[app_keys.HUB].panels.build(conn, call_id, datetime.now(UTC))
    assert read is not None
    assert {k: v for k, v in shown.items() if k != "seq"} == read.model_dump(mode="json")
    assert shown["history"]["items"][0]["notes"] == "asked about card fees"
    assert shown["question"]["key"] == "cards_count" and shown["customer"]["tier"] == "platinum"
    # Audited once, as the accepting socket's read (the read above was nobody's), and
    # in the accept's own transaction: read by its statement, not by one after it.
    assert await _panel_entries(pool, call_id) == [("agent:ada", "127.0.0.1")]
    same = await pool.fetchval(
        "SELECT a.at = c.connected_at FROM customer_audit a JOIN calls c ON c.id = $1"
        " WHERE a.action = 'panel' AND (a.detail ->> 'call_id')::bigint = $1",
        call_id,
    )
    assert same is True
    await panel.close()


async def test_another_panel_of_the_agent_reads_the_call_as_before(
    app_factory: AppFactory, pool: asyncpg.Pool[Any]
) -> None:
    client = await app_factory(**FAST, questions_file=None)
    _, _, token = await setup(client)
    accepting = await available_panel(client, token)
    watching = await Panel.open(client, token)
    await watching.state("available")
    shown = await take_call(accepting, client, "pbx-1")
    also = await watching.until(lambda m: m["type"] == "panel")
    assert {k: v for k, v in also.items() if k != "seq"} == {
        k: v for k, v in shown.items() if k != "seq"
    }
    # One read with the accept, for the socket that accepted; one for the other, after.
    assert await _panel_entries(pool, shown["call_id"]) == [("agent:ada", "127.0.0.1")] * 2
    with_accept = await pool.fetch(
        "SELECT a.at = c.connected_at AS same FROM customer_audit a JOIN calls c ON c.id = $1"
        " WHERE a.action = 'panel' AND (a.detail ->> 'call_id')::bigint = $1 ORDER BY a.id",
        shown["call_id"],
    )
    assert [r["same"] for r in with_accept] == [True, False]
    await accepting.close()
    await watching.close()
